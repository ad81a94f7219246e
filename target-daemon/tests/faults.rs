//! Bad input and faults over a veth pair between two throwaway network namespaces: a blast
//! of malformed and mutated frames, disk errors (a full tmpfs, a corrupted btrfs block) that
//! must come back as ATA errors while the daemon keeps serving, durability of acknowledged
//! writes across SIGKILL, FLUSH CACHE, and bursts larger than one AF_XDP TX kick. Needs root;
//! skips with a printed reason otherwise.

mod common;

use std::fs;
use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_initiator::{Initiator, RequestError};
use aoe_proto::ata::{self, opcode, AtaHeader, AFLAG_EXTENDED, AFLAG_WRITE};
use aoe_proto::mask::{dcmd, mcmd, Directive, MaskHeader};
use aoe_proto::reserve::{rcmd, ReserveHeader};
use aoe_proto::{Header, Mac, FLAG_ERROR, MAJOR_ANY, MINOR_ANY, MIN_FRAME_LEN};
use common::{
    ata_frame, child_pids, config_frame, have_program, initiator, mask_frame, open_flags_of,
    pattern, request_header, reserve_frame, summary_count, wait_for, Daemon, Mount, TempDir,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 64 << 20;
const CAPACITY_SECTORS: u64 = IMAGE_BYTES / 512;

const CMD_ATA: u8 = 0;
const CMD_CONFIG: u8 = 1;
const CMD_MASK: u8 = 2;
const CMD_RESERVE: u8 = 3;

fn read_ext(lba: u64, sectors: u8) -> AtaHeader {
    AtaHeader {
        aflags: AFLAG_EXTENDED,
        sector_count: sectors,
        cmd_status: opcode::READ_SECTORS_EXT,
        lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        ..AtaHeader::default()
    }
}

fn write_ext(lba: u64, sectors: u8) -> AtaHeader {
    AtaHeader {
        aflags: AFLAG_EXTENDED | AFLAG_WRITE,
        sector_count: sectors,
        cmd_status: opcode::WRITE_SECTORS_EXT,
        lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        ..AtaHeader::default()
    }
}

// ---------------------------------------------------------------------------------------
// The blast

/// Sectors written with known data before the blast, which no blast frame may overwrite:
/// the first 2048 and the last 16.
fn protected() -> [Range<u64>; 2] {
    [0..2048, CAPACITY_SECTORS - 16..CAPACITY_SECTORS]
}

/// Where blast writes that would land in a protected range are moved to.
const SAFE_WRITES: Range<u64> = 8192..65536;

/// Generates the blast: random, truncated, mutated and otherwise malformed AoE frames.
struct Fuzzer {
    rng: StdRng,
    target: Mac,
    client: Mac,
    templates: Vec<Vec<u8>>,
}

impl Fuzzer {
    fn new(seed: u64, target: Mac, client: Mac) -> Fuzzer {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tag = 0x8100_0000u32;
        let mut h = |command: u8| {
            tag += 1;
            request_header(target, client, command, tag)
        };
        let random_mac = |rng: &mut StdRng| {
            let mut m = [0u8; 6];
            rng.fill(&mut m[..]);
            m[0] &= 0xfe;
            Mac(m)
        };
        let safe = |rng: &mut StdRng| rng.gen_range(SAFE_WRITES);
        let mut templates = Vec::new();
        // Every ATA opcode a target serves, and some it does not.
        let lba = safe(&mut rng);
        templates.push(ata_frame(&h(CMD_ATA), &read_ext(lba, 1), &[]));
        templates.push(ata_frame(&h(CMD_ATA), &read_ext(3, 2), &[]));
        templates.push(ata_frame(
            &h(CMD_ATA),
            &read_ext(CAPACITY_SECTORS - 1, 2),
            &[],
        ));
        let lba28_read = AtaHeader {
            sector_count: 2,
            cmd_status: opcode::READ_SECTORS,
            lba_bytes: AtaHeader::lba_bytes_for(100, false),
            ..AtaHeader::default()
        };
        templates.push(ata_frame(&h(CMD_ATA), &lba28_read, &[]));
        let lba = safe(&mut rng);
        templates.push(ata_frame(&h(CMD_ATA), &write_ext(lba, 2), &[0x5a; 1024]));
        let lba = safe(&mut rng);
        let lba28_write = AtaHeader {
            aflags: AFLAG_WRITE,
            sector_count: 1,
            cmd_status: opcode::WRITE_SECTORS,
            lba_bytes: AtaHeader::lba_bytes_for(lba, false),
            ..AtaHeader::default()
        };
        templates.push(ata_frame(&h(CMD_ATA), &lba28_write, &[0xa5; 512]));
        for (cmd, count, lba3, aflags) in [
            (opcode::IDENTIFY_DEVICE, 1, 0xa0, 0),
            (opcode::FLUSH_CACHE_EXT, 0, 0, AFLAG_EXTENDED),
            (opcode::FLUSH_CACHE, 0, 0xe0, 0),
            (opcode::CHECK_POWER_MODE, 0, 0xe0, 0),
            (opcode::SMART, 1, 0xa0, 0),
            (0x99, 0, 0, 0),
        ] {
            let a = AtaHeader {
                aflags,
                sector_count: count,
                cmd_status: cmd,
                lba_bytes: [0, 0x4f, 0xc2, lba3, 0, 0],
                ..AtaHeader::default()
            };
            templates.push(ata_frame(&h(CMD_ATA), &a, &[]));
        }
        // Query Config, every CCmd.
        for (ccmd, string) in [
            (0u8, &b""[..]),
            (1, b"fuzz"),
            (2, b"fu"),
            (3, b"fuzz-config"),
            (4, &[b'x'; 1000][..]),
            (4, b""),
        ] {
            let mut hdr = h(CMD_CONFIG);
            hdr.dst = Mac::BROADCAST;
            templates.push(config_frame(&hdr, ccmd, string));
        }
        // MAC Mask List: read, and edits (adds are defused before sending, see `sanitize`).
        templates.push(mask_frame(&h(CMD_MASK), mcmd::READ, &[]));
        let directives: Vec<(u8, Mac)> = (0..4)
            .map(|i| {
                let d = [dcmd::NONE, dcmd::DELETE, dcmd::ADD, 7][i % 4];
                (d, random_mac(&mut rng))
            })
            .collect();
        templates.push(mask_frame(&h(CMD_MASK), mcmd::EDIT, &directives));
        // Reserve/Release: read, set, force set, release.
        templates.push(reserve_frame(&h(CMD_RESERVE), rcmd::READ, &[]));
        let one = random_mac(&mut rng);
        templates.push(reserve_frame(&h(CMD_RESERVE), rcmd::SET, &[one]));
        let two = [random_mac(&mut rng), random_mac(&mut rng)];
        templates.push(reserve_frame(&h(CMD_RESERVE), rcmd::FORCE_SET, &two));
        templates.push(reserve_frame(&h(CMD_RESERVE), rcmd::SET, &[]));
        Fuzzer {
            rng,
            target,
            client,
            templates,
        }
    }

    fn template(&mut self) -> Vec<u8> {
        let i = self.rng.gen_range(0..self.templates.len());
        let mut frame = self.templates[i].clone();
        // A fresh tag (bit 31 set), so replies do not look like anything the client waits for.
        let tag: u32 = self.rng.gen::<u32>() | 0x8000_0000;
        frame[20..24].copy_from_slice(&tag.to_be_bytes());
        frame
    }

    fn random_mac(&mut self) -> Mac {
        let mut m = [0u8; 6];
        self.rng.fill(&mut m[..]);
        Mac(m)
    }

    /// A length in 14..=max, mostly short (where the parsers' edge cases are).
    fn length(&mut self, max: usize) -> usize {
        if self.rng.gen_bool(0.7) {
            self.rng.gen_range(14..=max.min(80))
        } else {
            self.rng.gen_range(14..=max)
        }
    }

    /// The next frame of kind `kind` (0..8).
    fn frame(&mut self, kind: usize) -> Vec<u8> {
        match kind {
            // Random bytes with the AoE ethertype.
            0 => {
                let len = self.length(1514);
                let mut f = vec![0u8; len];
                self.rng.fill(&mut f[..]);
                let dst = match self.rng.gen_range(0..3) {
                    0 => self.target,
                    1 => Mac::BROADCAST,
                    _ => self.random_mac(),
                };
                f[0..6].copy_from_slice(&dst.0);
                if self.rng.gen_bool(0.5) {
                    f[6..12].copy_from_slice(&self.client.0);
                }
                f[12..14].copy_from_slice(&[0x88, 0xa2]);
                if len > 14 && self.rng.gen_bool(0.5) {
                    f[14] = 0x10 | (f[14] & 0x07); // version 1, no R
                }
                f
            }
            // A valid request cut short.
            1 => {
                let mut f = self.template();
                let len = self.rng.gen_range(14..f.len());
                f.truncate(len);
                f
            }
            // A valid request with a few bytes changed (and maybe a random tail).
            2 => {
                let mut f = self.template();
                for _ in 0..self.rng.gen_range(1..=8) {
                    let i = self.rng.gen_range(14..f.len());
                    f[i] = self.rng.gen();
                }
                if self.rng.gen_bool(0.3) {
                    let extra = self.rng.gen_range(0..=(1514 - f.len()).min(600));
                    f.extend((0..extra).map(|_| self.rng.gen::<u8>()));
                }
                f
            }
            // Wrong versions.
            3 => {
                let mut f = self.template();
                let version = [0u8, 2, 3, 7, 15][self.rng.gen_range(0..5)];
                f[14] = (version << 4) | (f[14] & 0x0f);
                f
            }
            // Sector counts above the maximum, with any amount of data.
            4 => {
                let count = self.rng.gen_range(3..=255u8);
                let lba = self.rng.gen_range(0..CAPACITY_SECTORS);
                let a = match self.rng.gen_range(0..4) {
                    0 => read_ext(lba, count),
                    1 => write_ext(lba, count),
                    2 => AtaHeader {
                        sector_count: count,
                        cmd_status: opcode::READ_SECTORS,
                        lba_bytes: AtaHeader::lba_bytes_for(lba, false),
                        ..AtaHeader::default()
                    },
                    _ => AtaHeader {
                        aflags: AFLAG_WRITE,
                        sector_count: count,
                        cmd_status: opcode::WRITE_SECTORS,
                        lba_bytes: AtaHeader::lba_bytes_for(lba, false),
                        ..AtaHeader::default()
                    },
                };
                let data_len = self.rng.gen_range(0..=1478usize);
                let data: Vec<u8> = (0..data_len).map(|_| self.rng.gen()).collect();
                let tag = self.rng.gen::<u32>() | 0x8000_0000;
                ata_frame(
                    &request_header(self.target, self.client, CMD_ATA, tag),
                    &a,
                    &data,
                )
            }
            // Directive and MAC counts that lie.
            5 => {
                let tag = self.rng.gen::<u32>() | 0x8000_0000;
                if self.rng.gen_bool(0.5) {
                    let present = self.rng.gen_range(0..4);
                    let directives: Vec<(u8, Mac)> = (0..present)
                        .map(|_| (dcmd::DELETE, self.random_mac()))
                        .collect();
                    let h = request_header(self.target, self.client, CMD_MASK, tag);
                    let mut f = mask_frame(&h, self.rng.gen_range(0..3), &directives);
                    f[27] = self.rng.gen_range(present as u8..=255);
                    f
                } else {
                    let present = self.rng.gen_range(0..4);
                    let macs: Vec<Mac> = (0..present).map(|_| self.random_mac()).collect();
                    let h = request_header(self.target, self.client, CMD_RESERVE, tag);
                    let mut f = reserve_frame(&h, self.rng.gen_range(0..4), &macs);
                    f[25] = self.rng.gen_range(present as u8..=255);
                    if self.rng.gen_bool(0.5) {
                        f.resize(f.len().max(MIN_FRAME_LEN), 0);
                    }
                    f
                }
            }
            // VLAN tags: one 802.1Q tag (served), two, or an 802.1ad tag.
            6 => {
                let f = self.template();
                let tpid: &[u8] = match self.rng.gen_range(0..4) {
                    0 | 1 => &[0x81, 0x00],
                    2 => &[0x88, 0xa8],
                    _ => &[0x81, 0x00, 0x00, 0x07, 0x81, 0x00],
                };
                let tci: u16 = self.rng.gen_range(0..4096);
                let mut out = f[..12].to_vec();
                out.extend_from_slice(tpid);
                out.extend_from_slice(&tci.to_be_bytes());
                out.extend_from_slice(&f[12..]);
                if self.rng.gen_bool(0.3) {
                    let len = self.rng.gen_range(14..out.len());
                    out.truncate(len);
                }
                out.truncate(1518);
                out
            }
            // Odd flags and addresses: R or E set in a request, reserved bits, wildcards,
            // other shelves and slots.
            _ => {
                let mut f = self.template();
                match self.rng.gen_range(0..5) {
                    0 => f[14] |= 0x08,
                    1 => f[14] |= 0x04,
                    2 => f[14] |= self.rng.gen_range(1..4),
                    3 => {
                        f[16..18].copy_from_slice(&MAJOR_ANY.to_be_bytes());
                        f[18] = MINOR_ANY;
                    }
                    _ => {
                        let major: u16 = self.rng.gen();
                        f[16..18].copy_from_slice(&major.to_be_bytes());
                        f[18] = self.rng.gen();
                    }
                }
                f
            }
        }
    }

    /// Keeps the blast from doing what a client is allowed to do but the test must not see:
    /// overwriting the known data, and turning the mask list on (which would lock the
    /// client out and send every later frame to the XDP drop). Judged by the specification
    /// (aoe_proto's reading of the frame); a daemon that read a frame differently and wrote
    /// somewhere else shows up in the final check.
    fn sanitize(&mut self, frame: &mut [u8]) {
        let Ok(h) = Header::parse(frame) else {
            return;
        };
        if h.is_response() || h.version != 1 {
            return;
        }
        let body = h.body_offset();
        match h.command {
            CMD_ATA => {
                let Ok(a) = AtaHeader::parse(frame, body) else {
                    return;
                };
                if !matches!(
                    a.cmd_status,
                    opcode::WRITE_SECTORS | opcode::WRITE_SECTORS_EXT
                ) {
                    return;
                }
                let count = match a.sector_count {
                    0 => 256,
                    n => u64::from(n),
                };
                let start = a.lba();
                let hits = protected()
                    .iter()
                    .any(|r| start < r.end && start.saturating_add(count) > r.start);
                if hits {
                    let lba = self.rng.gen_range(SAFE_WRITES);
                    let mut bytes = AtaHeader::lba_bytes_for(lba, a.is_extended());
                    if !a.is_extended() {
                        bytes[3] = (a.lba_bytes[3] & 0xf0) | (bytes[3] & 0x0f);
                        bytes[4] = a.lba_bytes[4];
                        bytes[5] = a.lba_bytes[5];
                    }
                    frame[body + 4..body + 10].copy_from_slice(&bytes);
                }
            }
            CMD_MASK => {
                let Ok(m) = MaskHeader::parse(frame, body) else {
                    return;
                };
                if m.mcmd != mcmd::EDIT {
                    return;
                }
                for index in 0..usize::from(m.directive_count) {
                    match Directive::parse(frame, body, index) {
                        Ok(d) if d.dcmd == dcmd::ADD => {
                            frame[body + 4 + index * 8 + 1] = 0x03; // undefined DCmd
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            CMD_RESERVE => {
                // A SET or FORCE SET naming anybody would reserve the target for MACs that
                // are not the client, and every later ATA frame would be refused as
                // reserved before it reaches validation: make them reads. Judged by the
                // RCmd byte alone, whatever the MAC count claims (a daemon may read MACs
                // from the padding).
                if let Some(rcmd_byte) = frame.get_mut(body) {
                    if matches!(*rcmd_byte, rcmd::SET | rcmd::FORCE_SET) {
                        *rcmd_byte = rcmd::READ;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Drains every frame queued on the client's socket.
fn drain(client: &mut Initiator) {
    let mut buf = vec![0u8; 2048];
    while client.recv_raw(&mut buf, 50).expect("recv_raw").is_some() {}
}

/// Sends Query Config reads (broadcast, a new tag every 250 ms) until one of them is
/// answered, for up to 10 s; every other frame received meanwhile is dropped. Returns how
/// many queries it took, or `None` if none was answered.
fn sync(client: &mut Initiator, target: Mac, tag: &mut u32) -> Option<u32> {
    let first = tag.wrapping_add(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let mut queries = 0;
    while Instant::now() < deadline {
        *tag = tag.wrapping_add(1);
        let mut h = request_header(target, client.own_mac(), CMD_CONFIG, *tag);
        h.dst = Mac::BROADCAST;
        client
            .send_raw(&config_frame(&h, 0, b""))
            .expect("send sync");
        queries += 1;
        let resend_at = Instant::now() + Duration::from_millis(250);
        loop {
            let left = resend_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(len) = client
                .recv_raw(&mut buf, left.as_millis() as u64 + 1)
                .expect("recv_raw")
            else {
                break;
            };
            let Ok(reply) = Header::parse(&buf[..len]) else {
                continue;
            };
            if reply.is_response()
                && reply.command == CMD_CONFIG
                && reply.src == target
                && (first..=*tag).contains(&reply.tag)
            {
                return Some(queries);
            }
        }
    }
    None
}

#[test]
fn a_blast_of_malformed_frames_leaves_the_daemon_serving_and_the_data_intact() {
    require_root!();
    let lab = Lab::new("blast", LabOptions::default()).expect("lab");
    let dir = TempDir::new("blast");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let target = Mac(lab.target_mac());
    let mut client = initiator(&lab, 500, 4);
    let own = client.own_mac();

    // Known data first.
    let known: Vec<(u64, Vec<u8>)> = protected()
        .iter()
        .map(|r| (r.start, pattern(r.start, 11, (r.end - r.start) as usize)))
        .collect();
    for (lba, data) in &known {
        client.write(*lba, data).expect("write known data");
    }

    let mut fuzzer = Fuzzer::new(0xb1a57, target, own);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // Every template cut at every length up to 80 bytes.
    for t in fuzzer.templates.clone() {
        for len in 14..t.len().min(81) {
            frames.push(t[..len].to_vec());
        }
    }
    const TOTAL: usize = 120_000;
    const KINDS: usize = 8;
    let mut per_kind = [0usize; KINDS];
    while frames.len() < TOTAL {
        let kind = frames.len() % KINDS;
        frames.push(fuzzer.frame(kind));
        per_kind[kind] += 1;
    }
    for f in &mut frames {
        fuzzer.sanitize(f);
    }

    // Send in bursts; after each, a Query Config round trip (the target answers in order, so
    // the burst has been taken off the link) keeps the veth and XSK rings from overflowing.
    // Replies to the blast are drained as it goes, so the client's socket buffer does not
    // overflow and take the sync's reply with it.
    const BURST: usize = 64;
    let started = Instant::now();
    let mut sync_tag = 0x8200_0000u32;
    let mut sync_queries = 0u32;
    let mut buf = vec![0u8; 2048];
    for (i, burst) in frames.chunks(BURST).enumerate() {
        for (j, f) in burst.iter().enumerate() {
            client.send_raw(f).expect("send_raw");
            if j % 16 == 15 {
                while client.recv_raw(&mut buf, 0).expect("recv_raw").is_some() {}
            }
        }
        match sync(&mut client, target, &mut sync_tag) {
            Some(queries) => sync_queries += queries,
            None => panic!(
                "the daemon stopped answering after {} frames",
                (i + 1) * BURST
            ),
        }
    }
    let elapsed = started.elapsed();
    let rate = frames.len() as f64 / elapsed.as_secs_f64();
    eprintln!(
        "blast: {} frames in {:.2} s = {:.0} frames/s (kinds {:?}; {} send drops; {} sync queries for {} bursts)",
        frames.len(),
        elapsed.as_secs_f64(),
        rate,
        per_kind,
        client.stats().send_drops,
        sync_queries,
        frames.len().div_ceil(BURST)
    );
    assert!(frames.len() >= 100_000);
    drain(&mut client);

    // Still serving, and nothing the blast did sticks where it must not.
    let mut h = request_header(target, own, CMD_RESERVE, 0x8300_0001);
    h.dst = target;
    let reply = client
        .exchange_raw(
            &reserve_frame(&h, rcmd::FORCE_SET, &[]),
            Some(0x8300_0001),
            2000,
        )
        .expect("exchange_raw")
        .expect("a release is answered");
    let rh = Header::parse(&reply).expect("reply");
    let r = ReserveHeader::parse(&reply, rh.body_offset()).expect("reserve reply");
    assert_eq!((rh.flags & FLAG_ERROR, r.nmacs), (0, 0), "released");
    let h = request_header(target, own, CMD_MASK, 0x8300_0002);
    let reply = client
        .exchange_raw(&mask_frame(&h, mcmd::READ, &[]), Some(0x8300_0002), 2000)
        .expect("exchange_raw")
        .expect("a mask read is answered");
    let mh = Header::parse(&reply).expect("reply");
    let m = MaskHeader::parse(&reply, mh.body_offset()).expect("mask reply");
    assert_eq!(
        m.directive_count, 0,
        "the blast added nobody to the mask list"
    );
    client.discover().expect("discover after the blast");
    assert_eq!(
        client.capacity_sectors().expect("identify after the blast"),
        CAPACITY_SECTORS
    );
    for (lba, data) in &known {
        let mut back = vec![0u8; data.len()];
        client.read(*lba, &mut back).expect("read known data");
        if let Some(i) = back.iter().zip(data).position(|(a, b)| a != b) {
            panic!("known data changed at lba {}", lba + (i / 512) as u64);
        }
    }
    let fresh = pattern(5000, 12, 16);
    client.write(5000, &fresh).expect("write after the blast");
    let mut back = vec![0u8; fresh.len()];
    client.read(5000, &mut back).expect("read after the blast");
    assert_eq!(back, fresh);

    let exit = daemon.terminate(Duration::from_secs(15));
    assert!(exit.status.success(), "{exit:?}");
    eprintln!("{}", exit.stdout);

    // Liveness: every burst was answered, nearly always by its first resync query.
    let bursts = frames.len().div_ceil(BURST) as u32;
    assert!(
        sync_queries <= bursts + bursts / 20,
        "{sync_queries} resync queries for {bursts} bursts"
    );
    // The daemon's accounting of the blast.
    let out = &exit.stdout;
    let count = |label: &str| {
        summary_count(out, label).unwrap_or_else(|| panic!("no {label:?} in the summary:\n{out}"))
    };
    let requests = count("requests");
    let (reads, writes) = (count("reads"), count("writes"));
    let (ata_errors, aoe_errors) = (count("ata"), count("aoe"));
    let dropped = count("dropped frames");
    let xdp_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("xdp"))
        .unwrap_or_else(|| panic!("no xdp line in the summary:\n{out}"));
    let xdp = |label: &str| {
        summary_count(xdp_line, label)
            .unwrap_or_else(|| panic!("no {label:?} on the xdp line: {xdp_line}"))
    };
    let redirected = xdp("redirected");
    let xdp_seen = redirected
        + xdp("dropped by ACL")
        + xdp("malformed")
        + xdp("not AoE")
        + xdp("responses")
        + xdp("other targets")
        + xdp("no socket");
    // Wrong versions (kind 3) and sector counts above the maximum (kind 4) are refused
    // with an AoE error each.
    assert!(
        aoe_errors >= (per_kind[3] + per_kind[4]) as u64,
        "{aoe_errors} AoE errors for {} wrong versions and {} over-long requests:\n{out}",
        per_kind[3],
        per_kind[4]
    );
    // ATA frames reach validation and the disk: refused ones are ATA errors (bad LBAs,
    // unknown opcodes), the rest are served. A reservation for somebody else would turn
    // all of them into AoE errors (target reserved). The known data and the final write
    // are 1040 writes of the total.
    assert!(
        ata_errors >= 1000 && reads >= 1500 && writes >= 2500,
        "the blast's ATA frames were not validated and served: {ata_errors} ATA errors, \
         {reads} reads, {writes} writes:\n{out}"
    );
    // Every frame XDP handed to the daemon was served or dropped for a counted reason.
    assert_eq!(
        requests + dropped,
        redirected,
        "requests + dropped frames != frames redirected to the daemon:\n{out}"
    );
    // Every frame sent reached XDP (the client's own requests add a few thousand).
    let sent = (frames.len() as u64 + u64::from(sync_queries)) - client.stats().send_drops;
    assert!(
        xdp_seen >= sent && xdp_seen <= sent + 10_000,
        "{sent} frames sent, {xdp_seen} seen by XDP:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Disk errors

fn ata_error(err: &aoe_initiator::InitiatorError) -> Option<(u8, u8)> {
    match err.request_error() {
        Some(RequestError::Ata { status, error }) => Some((*status, *error)),
        _ => None,
    }
}

/// Sends one raw WRITE EXT or READ EXT and returns the reply frame.
fn raw_ata(client: &mut Initiator, target: Mac, tag: u32, a: &AtaHeader, data: &[u8]) -> Vec<u8> {
    let h = request_header(target, client.own_mac(), CMD_ATA, tag);
    let reply = client
        .exchange_raw(&ata_frame(&h, a, data), Some(tag), 2000)
        .expect("exchange_raw")
        .expect("an ATA request is answered");
    assert!(reply.len() >= MIN_FRAME_LEN, "short reply {reply:02x?}");
    reply
}

#[test]
fn a_full_file_system_fails_writes_with_ata_abort_and_the_daemon_keeps_serving() {
    require_root!();
    // tmpfs has no O_DIRECT; `auto` picks the synchronous engine there.
    full_file_system("enospc", "auto", ", sync");
}

#[test]
fn a_full_file_system_fails_io_uring_writes_with_ata_abort_too() {
    require_root!();
    full_file_system("enospcu", "uring", ", io_uring");
}

#[test]
fn a_full_file_system_fails_mapped_writes_with_ata_abort_too() {
    require_root!();
    // Mapped, a write into a hole the full tmpfs cannot fill raises SIGBUS: the daemon must
    // survive it, answer ABRT and go on with pwritev.
    let log = full_file_system("enospcm", "mmap", ", mmap");
    assert!(
        log.contains("lost pages under its mapping"),
        "the fall-back from the mapping is logged:\n{log}"
    );
}

/// Writes 12 MiB into an image on an 8 MiB tmpfs with `--io-engine ENGINE` (the daemon must
/// log `logged`, the engine it uses): the writes beyond the space fail with ATA ABRT, the
/// rest reads back, and the daemon keeps serving. Returns the daemon's log.
fn full_file_system(name: &str, engine: &str, logged: &str) -> String {
    let lab = Lab::new(name, LabOptions::default()).expect("lab");
    let dir = TempDir::new(name);
    let mnt = Mount::new(
        &["-t", "tmpfs", "-o", "size=8M"],
        Path::new("tmpfs"),
        &dir.0.join("mnt"),
    );
    let image = mnt.0.join("disk.img");
    fs::File::create(&image)
        .and_then(|f| f.set_len(IMAGE_BYTES))
        .expect("sparse image on the tmpfs");
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state", "--io-engine", engine]);
    assert!(
        daemon.log().contains(logged),
        "--io-engine {engine}: expected {logged:?} in the log:\n{}",
        daemon.log()
    );
    let target = Mac(lab.target_mac());
    let mut client = initiator(&lab, 1000, 2);
    client.set_queue_depth(32).expect("depth");

    // 12 MiB of writes into 8 MiB of space.
    const SECTORS: u64 = 24 * 1024;
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    let mut other = Vec::new();
    let mut next = 0u64;
    while next < SECTORS || client.in_flight() > 0 {
        while next < SECTORS && client.in_flight() < 32 {
            client
                .submit_write(next, &pattern(next, 1, 2), next)
                .expect("submit");
            next += 2;
        }
        client
            .poll(1000, |c| match c.result {
                Ok(()) => acked.push(c.user),
                Err(RequestError::Ata { status, error }) => failed.push((c.user, status, error)),
                Err(e) => other.push((c.user, e)),
            })
            .expect("poll");
    }
    eprintln!(
        "{} writes acknowledged ({} KiB), {} failed",
        acked.len(),
        acked.len(),
        failed.len()
    );
    assert!(other.is_empty(), "not ATA errors: {other:?}");
    assert_eq!(client.stats().aoe_errors, 0, "the AoE E flag is never set");
    assert!(!failed.is_empty(), "writes beyond the space fail");
    assert!(
        acked.len() >= 4 * 1024 && acked.len() <= 8 * 1024,
        "{} KiB written into an 8 MiB tmpfs",
        acked.len()
    );
    for (lba, status, error) in &failed {
        assert_eq!(
            (*status, *error),
            (ata::status::FAILED, ata::error::ABRT),
            "write at {lba}"
        );
    }
    // The same on the wire: status 0x41, error ABRT, no E flag, padded.
    let (lba, _, _) = failed[failed.len() - 1];
    let reply = raw_ata(
        &mut client,
        target,
        0x8400_0001,
        &write_ext(lba, 2),
        &[7; 1024],
    );
    let h = Header::parse(&reply).expect("reply");
    assert_eq!(h.flags & FLAG_ERROR, 0, "no AoE error flag: {reply:02x?}");
    let regs = AtaHeader::parse(&reply, h.body_offset()).expect("ATA reply");
    assert_eq!(
        (regs.cmd_status, regs.err_feature),
        (ata::status::FAILED, ata::error::ABRT)
    );

    // Reads keep working: every acknowledged write reads back, the rest reads too.
    let mut back = vec![0u8; SECTORS as usize * 512];
    client.read(0, &mut back).expect("read the whole range");
    for lba in &acked {
        let at = *lba as usize * 512;
        assert!(
            back[at..at + 1024] == pattern(*lba, 1, 2)[..],
            "acknowledged write at {lba} reads back different"
        );
    }
    // Rewriting space that is already allocated still works.
    let lba = acked[acked.len() / 2];
    client.write(lba, &pattern(lba, 2, 2)).expect("overwrite");
    let mut two = vec![0u8; 1024];
    client.read(lba, &mut two).expect("read the overwrite");
    assert_eq!(two, pattern(lba, 2, 2));
    client.identify().expect("identify");

    let log = daemon.log();
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    // Failed disk I/O is counted per request (a retransmitted request may fail twice).
    let io_errors = summary_count(&exit.stdout, "disk i/o").expect("disk i/o counter");
    assert!(
        io_errors >= failed.len() as u64,
        "{io_errors} disk errors counted for {} failed writes:\n{}",
        failed.len(),
        exit.stdout
    );
    assert_eq!(
        summary_count(&exit.stdout, "aoe"),
        Some(0),
        "{}",
        exit.stdout
    );
    drop(mnt);
    log
}

#[test]
fn a_read_error_comes_back_as_ata_unc_and_the_daemon_keeps_serving() {
    require_root!();
    // This kernel has no device-mapper (no dm `error` target) and no fault injection; a data
    // block whose btrfs checksum no longer matches reliably makes pread return EIO.
    if !have_program("mkfs.btrfs") {
        eprintln!("skipped: needs mkfs.btrfs (apt-get install btrfs-progs) to make a read fail");
        return;
    }
    let lab = Lab::new("eio", LabOptions::default()).expect("lab");
    let dir = TempDir::new("eio");
    let fs_image = dir.image("btrfs.img", 256 << 20);
    let out = Command::new("mkfs.btrfs")
        .arg("-q")
        .arg(&fs_image)
        .output()
        .expect("run mkfs.btrfs");
    assert!(out.status.success(), "mkfs.btrfs: {out:?}");
    let at = dir.0.join("mnt");

    // A 1 MiB image on btrfs with distinct contents in every sector.
    const SECTORS: u64 = 2048;
    let contents = pattern(0, 5, SECTORS as usize);
    let mnt = Mount::new(&["-o", "loop"], &fs_image, &at);
    let image = at.join("disk.img");
    {
        use std::io::Write;
        let mut f = fs::File::create(&image).expect("create image");
        f.write_all(&contents).expect("write image");
        f.sync_all().expect("fsync image");
    }
    mnt.unmount();

    // Corrupt the 4 KiB btrfs block holding sectors 8..16 behind the file system's back.
    let raw = fs::read(&fs_image).expect("read the btrfs image");
    let sector8 = &contents[8 * 512..9 * 512];
    let hits: Vec<usize> = raw
        .windows(512)
        .enumerate()
        .filter(|(i, w)| i % 512 == 0 && *w == sector8)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "sector 8's data is stored once");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&fs_image)
            .expect("open the btrfs image");
        f.write_all_at(&[0xff; 512], hits[0] as u64)
            .expect("corrupt");
        f.sync_all().expect("fsync");
    }
    drop(raw);
    let mnt = Mount::new(&["-o", "loop"], &fs_image, &at);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let target = Mac(lab.target_mac());
    let mut client = initiator(&lab, 1000, 2);
    assert_eq!(client.capacity_sectors().expect("identify"), SECTORS);

    let mut buf = vec![0u8; 8 * 512];
    client.read(0, &mut buf).expect("sectors 0..8 read");
    assert!(buf == contents[..8 * 512]);
    for lba in 8..16u64 {
        let mut sector = vec![0u8; 512];
        let err = client
            .read(lba, &mut sector)
            .expect_err("a corrupted sector");
        assert_eq!(
            ata_error(&err),
            Some((ata::status::FAILED, ata::error::UNC)),
            "lba {lba}: {err}"
        );
    }
    let mut two = vec![0u8; 1024];
    let err = client
        .read(7, &mut two)
        .expect_err("a read spanning the bad block");
    assert_eq!(
        ata_error(&err),
        Some((ata::status::FAILED, ata::error::UNC))
    );
    // On the wire: status 0x41, error UNC, no E flag, no data, padded.
    let reply = raw_ata(&mut client, target, 0x8500_0001, &read_ext(9, 1), &[]);
    let h = Header::parse(&reply).expect("reply");
    assert_eq!(h.flags & FLAG_ERROR, 0, "no AoE error flag: {reply:02x?}");
    let regs = AtaHeader::parse(&reply, h.body_offset()).expect("ATA reply");
    assert_eq!(
        (regs.cmd_status, regs.err_feature),
        (ata::status::FAILED, ata::error::UNC)
    );
    // The rest of the disk is fine, before and after the errors, and writes work.
    let mut rest = vec![0u8; (SECTORS as usize - 16) * 512];
    client.read(16, &mut rest).expect("sectors 16.. read");
    assert!(rest == contents[16 * 512..]);
    client.write(100, &pattern(100, 6, 2)).expect("write");
    client.read(100, &mut two).expect("read back");
    assert_eq!(two, pattern(100, 6, 2));
    assert_eq!(client.stats().aoe_errors, 0);

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let io_errors = summary_count(&exit.stdout, "disk i/o").expect("disk i/o counter");
    assert!(io_errors >= 10, "{}", exit.stdout);
    drop(mnt);
}

// ---------------------------------------------------------------------------------------
// Durability

/// Runs a pipelined write load (depth 32, 2 sectors per write at distinct LBAs), SIGKILLs
/// the daemon once `kill_after` writes are acknowledged, restarts it on the same image and
/// checks every acknowledged write. Returns (acknowledged, submitted).
fn sigkill_mid_load(lab: &Lab, dir: &TempDir, name: &str, args: &[&str]) -> (usize, u64) {
    const KILL_AFTER: usize = 1500;
    const GENERATION: u64 = 21;
    let image = dir.image(name, IMAGE_BYTES);
    let daemon = Daemon::start(lab, dir, &image, args);
    // SIGKILL keeps the page cache, so the kill cannot tell `-s` from no `-s`: check how the
    // running daemon opened the image instead.
    let flags = open_flags_of(daemon.pid(), &image);
    assert!(!flags.is_empty(), "{args:?}: the daemon has {image:?} open");
    let sync = args.contains(&"-s");
    // Direct I/O unless the daemon said it fell back to buffered I/O (a file system that
    // refuses O_DIRECT).
    let direct = !daemon.log().contains("buffered");
    for f in &flags {
        assert_eq!(
            (f & libc::O_DSYNC == libc::O_DSYNC, f & libc::O_DIRECT != 0),
            (sync, direct),
            "{args:?}: image opened with flags {f:#o} (O_DSYNC {:#o}, O_DIRECT {:#o})",
            libc::O_DSYNC,
            libc::O_DIRECT
        );
    }
    let mut client = initiator(lab, 200, 2);
    client.set_queue_depth(32).expect("queue depth");

    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked_count, stop) = (Arc::clone(&acked_count), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut failed = 0u64;
            let mut next_lba = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let submitting = !stop.load(Ordering::Relaxed)
                    && failed == 0
                    && next_lba + 2 <= CAPACITY_SECTORS;
                while submitting && client.in_flight() < 32 {
                    client
                        .submit_write(next_lba, &pattern(next_lba, GENERATION, 2), next_lba)
                        .expect("submit");
                    next_lba += 2;
                }
                if !submitting && client.in_flight() == 0 {
                    break;
                }
                client
                    .poll(50, |c| match c.result {
                        Ok(()) => {
                            acked.push(c.user);
                            acked_count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => failed += 1,
                    })
                    .expect("poll");
            }
            (acked, failed, next_lba)
        })
    };
    let reached = wait_for(Duration::from_secs(30), || {
        acked_count.load(Ordering::Relaxed) >= KILL_AFTER
    });
    let exit = daemon.kill();
    stop.store(true, Ordering::Relaxed);
    let (acked, failed, submitted) = load.join().expect("load thread");
    assert!(
        reached,
        "only {} writes acknowledged in 30 s",
        acked_count.load(Ordering::Relaxed)
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit.status),
        Some(libc::SIGKILL),
        "{exit:?}"
    );
    eprintln!(
        "{args:?}: SIGKILL after {} acknowledged writes; {failed} unanswered; {} submitted",
        acked.len(),
        submitted / 2
    );

    let daemon = Daemon::start(lab, dir, &image, args);
    let mut client = initiator(lab, 500, 4);
    let mut back = vec![0u8; submitted as usize * 512];
    client.read(0, &mut back).expect("read back");
    for lba in &acked {
        let at = *lba as usize * 512;
        assert!(
            back[at..at + 1024] == pattern(*lba, GENERATION, 2)[..],
            "{args:?}: acknowledged write at lba {lba} lost"
        );
    }
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    (acked.len(), submitted / 2)
}

#[test]
fn sigkill_during_a_write_load_loses_no_acknowledged_write() {
    require_root!();
    let lab = Lab::new("kill", LabOptions::default()).expect("lab");
    let dir = TempDir::new("kill");
    sigkill_mid_load(&lab, &dir, "plain.img", &["--no-state"]);
    sigkill_mid_load(&lab, &dir, "sync.img", &["--no-state", "-s"]);
}

#[test]
fn flush_cache_succeeds_and_is_counted() {
    require_root!();
    let lab = Lab::new("flush", LabOptions::default()).expect("lab");
    let dir = TempDir::new("flush");
    let image = dir.image("disk.img", IMAGE_BYTES);
    // The data reaches the file through the page cache without any sync, so count the
    // fdatasync(2) calls: the synchronous engine makes them itself, under strace.
    if !have_program("strace") {
        eprintln!("skipped: needs strace (apt-get install strace) to count fdatasync calls");
        return;
    }
    let trace = dir.0.join("strace.out");
    let trace_arg = trace.to_string_lossy().into_owned();
    let daemon = Daemon::start_wrapped(
        &lab,
        &dir,
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=fdatasync",
            "-o",
            &trace_arg,
        ],
        &image,
        &["--no-state", "--io-engine", "sync"],
    );
    let strace_pid = daemon.pid();
    let xblade_pid = *child_pids(strace_pid).first().expect("xblade under strace");
    let fdatasyncs = || {
        common::read(&trace)
            .lines()
            .filter(|l| l.contains("fdatasync(") && l.trim_end().ends_with("= 0"))
            .count()
    };
    let mut client = initiator(&lab, 1000, 2);
    assert_eq!(fdatasyncs(), 0, "no fdatasync before a FLUSH CACHE");
    for round in 0..3u64 {
        client
            .write(round * 64, &pattern(round * 64, 31, 32))
            .expect("write");
        client.flush().expect("FLUSH CACHE EXT");
    }
    client.flush_cache().expect("FLUSH CACHE");
    client.flush_cache().expect("FLUSH CACHE");
    // SIGTERM goes to xblade itself; strace exits with its status.
    // SAFETY: kill(2) on a process that is alive (the strace child is not reaped yet).
    unsafe { libc::kill(xblade_pid, libc::SIGTERM) };
    let exit = daemon.wait_exit(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert_eq!(
        fdatasyncs(),
        5,
        "one successful fdatasync per FLUSH CACHE (EXT):\n{}",
        common::read(&trace)
    );
    assert_eq!(
        summary_count(&exit.stdout, "flushes"),
        Some(5),
        "{}",
        exit.stdout
    );
    // What was flushed is in the file.
    let bytes = fs::read(&image).expect("read image");
    for round in 0..3usize {
        let at = round * 64 * 512;
        assert!(bytes[at..at + 32 * 512] == pattern(round as u64 * 64, 31, 32)[..]);
    }
}

// ---------------------------------------------------------------------------------------
// Bursts

/// CPU time (user + system, in clock ticks) of process `pid` so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')': utime and stime are the
    // 12th and 13th of them.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum()
}

/// More requests at once than one AF_XDP copy-mode TX kick sends (the kernel transmits at
/// most 32 descriptors per sendto): every reply must still leave without waiting for
/// another request to arrive, the idle daemon must not spin, and SIGTERM must not have to
/// wait for replies stuck in the TX ring.
#[test]
fn a_burst_of_requests_is_answered_without_another_request() {
    require_root!();
    let lab = Lab::new("burst", LabOptions::default()).expect("lab");
    let dir = TempDir::new("burst");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let target = Mac(lab.target_mac());
    let mut client = initiator(&lab, 500, 4);
    let own = client.own_mac();
    const PER_BURST: u32 = 40;
    let mut buf = vec![0u8; 2048];
    for round in 0..30u32 {
        // 40 Query Config reads back to back, then nothing: all 40 replies must come.
        let base = 0x8700_0000 + round * 0x100;
        // Past the spin window (50 us idle, 1 ms with I/O in flight), so the worker is
        // asleep when the burst comes and must be woken by it.
        std::thread::sleep(Duration::from_millis(20));
        for i in 0..PER_BURST {
            let mut h = request_header(target, own, CMD_CONFIG, base + i);
            h.dst = Mac::BROADCAST;
            client
                .send_raw(&config_frame(&h, 0, b""))
                .expect("send_raw");
        }
        let mut answered = 0;
        let deadline = Instant::now() + Duration::from_millis(500);
        while answered < PER_BURST && Instant::now() < deadline {
            if let Some(len) = client.recv_raw(&mut buf, 50).expect("recv_raw") {
                let h = Header::parse(&buf[..len]);
                if h.is_ok_and(|h| h.is_response() && (base..base + PER_BURST).contains(&h.tag)) {
                    answered += 1;
                }
            }
        }
        if answered < PER_BURST {
            let before = cpu_ticks(daemon.pid());
            std::thread::sleep(Duration::from_secs(1));
            let spent = cpu_ticks(daemon.pid()) - before;
            let stopping = Instant::now();
            let exit = daemon.terminate(Duration::from_secs(30));
            panic!(
                "round {round}: {answered} of {PER_BURST} requests sent back to back answered \
                 within 500 ms; the idle daemon then used {spent} clock ticks of CPU in 1 s; \
                 SIGTERM took {:?}:\n{}",
                stopping.elapsed(),
                exit.stderr
                    .lines()
                    .filter(|l| l.contains("WARN"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    // Idle after the bursts, the daemon sleeps.
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_ticks(daemon.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(daemon.pid()) - before;
    eprintln!("idle after the bursts: {spent} clock ticks of CPU in 1 s");
    assert!(
        spent <= 10,
        "the idle daemon used {spent} clock ticks of CPU in 1 s"
    );
    let stopping = Instant::now();
    let exit = daemon.terminate(Duration::from_secs(30));
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        stopping.elapsed()
    );
}
