//! The initiator against the real vblade 25, over a veth pair between two throwaway network
//! namespaces (xblade-lab). Needs root and vblade on PATH; skips with a printed reason
//! otherwise. Every exit path kills vblade and removes the namespaces and the image
//! (guards, dropped in that order).

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aoe_initiator::{Initiator, InitiatorConfig, InitiatorError, RequestError};
use aoe_proto::ata::{identify_string, AtaHeader};
use aoe_proto::{Header, MAJOR_ANY, MINOR_ANY, SECTOR_SIZE};
use xblade_lab::{Lab, LabOptions, TempDir, Vblade};

const SHELF: u16 = 1;
const SLOT: u8 = 2;
const IMAGE_BYTES: u64 = 64 << 20;
const CAPACITY_SECTORS: u64 = IMAGE_BYTES / SECTOR_SIZE as u64;

/// Sends `signal` (e.g. "STOP", "CONT") to `vblade`, by its pid.
fn signal(vblade: &Vblade, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(vblade.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", vblade.pid());
}

/// vblade serving a sparse 64 MiB image on the target end of a fresh lab. Fields drop in
/// order: vblade first, then the namespaces, then the image.
struct Fixture {
    vblade: Vblade,
    lab: Lab,
    _dir: TempDir,
}

impl Fixture {
    /// `None` (after printing why) when the test cannot run here.
    fn start(tag: &str) -> Option<Fixture> {
        if !xblade_lab::require_root() {
            return None;
        }
        if !Vblade::available() {
            return None;
        }
        let dir = TempDir::new(tag);
        let image = dir.0.join("disk.img");
        File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .expect("create sparse image");
        let lab = Lab::new(tag, LabOptions::default()).expect("create lab");
        let vblade = Vblade::start(&lab, SHELF, SLOT, &image, dir.0.join("vblade.log"))
            .expect("start vblade");
        Some(Fixture {
            vblade,
            lab,
            _dir: dir,
        })
    }

    /// Runs `f` on a thread inside the client namespace with an initiator opened there.
    fn client<R: Send>(
        &self,
        config: InitiatorConfig,
        f: impl FnOnce(&mut Initiator) -> R + Send,
    ) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ns = self
                    .lab
                    .enter_client_thread()
                    .expect("enter client namespace");
                let mut ini =
                    Initiator::open(self.lab.client_if(), config).expect("open initiator");
                f(&mut ini)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

fn config() -> InitiatorConfig {
    InitiatorConfig {
        shelf: SHELF,
        slot: SLOT,
        timeout_ms: 200,
        retries: 10,
    }
}

/// SplitMix64, for reproducible random data and addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn request_error(e: &InitiatorError) -> &RequestError {
    e.request_error()
        .unwrap_or_else(|| panic!("expected a request error, got {e:?}"))
}

#[test]
fn discover_and_identify() {
    let Some(fx) = Fixture::start("disc") else {
        return;
    };
    let target_mac = fx.lab.target_mac();
    fx.client(config(), |ini| {
        let info = ini.discover().expect("discover");
        assert_eq!(info.mac.0, target_mac);
        assert_eq!((info.shelf, info.slot), (SHELF, SLOT));
        assert_eq!(info.buffer_count, 16, "vblade's default -b");
        assert_eq!(info.sectors_per_frame, 2, "(1500 - 36) / 512");
        assert_eq!(info.firmware_version, 0x4019, "0x4000 + vblade version 25");
        assert_eq!(info.aoe_version, 1);
        assert!(info.config_string.is_empty());
        assert_eq!(ini.sectors_per_frame(), 2);
        assert_eq!(ini.queue_depth(), 16);

        let id = ini.identify().expect("identify");
        assert_eq!(
            aoe_proto::ata::identify_capacity_sectors(&id),
            CAPACITY_SECTORS
        );
        assert_eq!(ini.capacity_sectors().expect("capacity"), CAPACITY_SECTORS);
        assert_eq!(identify_string(&id, 27..47), "Coraid EtherDrive vblade");
        assert_eq!(identify_string(&id, 23..27), "V25");
        assert_eq!(ini.check_power_mode().expect("check power mode"), 0xFF);
        let stats = ini.stats();
        assert_eq!(
            (stats.ata_errors, stats.aoe_errors, stats.timeouts),
            (0, 0, 0)
        );
    });

    // Wildcards find the same target and learn its real address.
    let any = InitiatorConfig {
        shelf: MAJOR_ANY,
        slot: MINOR_ANY,
        ..config()
    };
    fx.client(any, |ini| {
        let info = ini.discover().expect("discover with wildcards");
        assert_eq!((info.shelf, info.slot), (SHELF, SLOT));
        assert_eq!(ini.capacity_sectors().expect("capacity"), CAPACITY_SECTORS);
    });

    // A shelf nobody serves: a clear error after the configured attempts.
    let wrong = InitiatorConfig {
        shelf: SHELF + 1,
        timeout_ms: 50,
        retries: 1,
        ..config()
    };
    fx.client(wrong, |ini| {
        let started = Instant::now();
        match ini.discover() {
            Err(InitiatorError::NoTarget { attempts: 2, .. }) => {}
            other => panic!("expected NoTarget, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Every request needs a target: they report the same error.
        assert!(matches!(
            ini.identify(),
            Err(InitiatorError::NoTarget { .. })
        ));
    });
    drop(fx);
}

#[test]
fn write_read_back_and_errors() {
    let Some(fx) = Fixture::start("rw") else {
        return;
    };
    fx.client(config(), |ini| {
        let capacity = ini.capacity_sectors().expect("capacity");
        assert_eq!(capacity, CAPACITY_SECTORS);
        let mut rng = Rng(0x5eed);
        let mut written = vec![0u8; 9 * SECTOR_SIZE];
        let mut read = vec![0u8; 9 * SECTOR_SIZE];
        for round in 0..60 {
            // 1..=9 sectors: one to five frames of at most 2 sectors.
            let sectors = if round == 1 { 1 } else { 1 + rng.next() % 9 };
            let lba = match round {
                0 | 1 => capacity - sectors, // ends on the last sector
                2 => 0,
                _ => rng.next() % (capacity - sectors + 1),
            };
            let len = sectors as usize * SECTOR_SIZE;
            rng.fill(&mut written[..len]);
            ini.write(lba, &written[..len])
                .unwrap_or_else(|e| panic!("write {sectors} at {lba}: {}", chain(&e)));
            read[..len].fill(0);
            ini.read(lba, &mut read[..len])
                .unwrap_or_else(|e| panic!("read {sectors} at {lba}: {}", chain(&e)));
            assert!(
                written[..len] == read[..len],
                "round {round}: lba {lba}, {sectors} sectors differ"
            );
        }
        ini.read(0, &mut []).expect("an empty read is a no-op");

        // Past the end: vblade answers ATA status 0x41 (DRDY|ERR), error 0x10 (IDNF), with a
        // bare 36-byte reply; the whole request and a request that straddles the end alike.
        let mut buf = vec![0u8; 2 * SECTOR_SIZE];
        let mut last_before = vec![0u8; SECTOR_SIZE];
        rng.fill(&mut last_before);
        ini.write(capacity - 1, &last_before)
            .expect("write last sector");
        for (lba, sectors) in [(capacity, 1usize), (capacity - 1, 2), (capacity + 1000, 2)] {
            let err = ini
                .read(lba, &mut buf[..sectors * SECTOR_SIZE])
                .expect_err("read past the end");
            assert_eq!(
                *request_error(&err),
                RequestError::Ata {
                    status: 0x41,
                    error: 0x10
                },
                "{}",
                chain(&err)
            );
            assert!(matches!(err, InitiatorError::Request { lba: l, .. } if l == lba));
            let err = ini
                .write(lba, &buf[..sectors * SECTOR_SIZE])
                .expect_err("write past the end");
            assert!(request_error(&err).is_out_of_range(), "{}", chain(&err));
        }
        // The straddling write was refused whole: the last sector is untouched.
        let mut last = vec![0u8; SECTOR_SIZE];
        ini.read(capacity - 1, &mut last).expect("read last sector");
        assert!(last == last_before);

        // Caller mistakes are caught before anything is sent.
        assert!(matches!(
            ini.read(0, &mut [0u8; 100]),
            Err(InitiatorError::UnalignedLength { len_bytes: 100 })
        ));
        assert!(matches!(
            ini.write(u64::MAX, &[0u8; 512]),
            Err(InitiatorError::LbaOutOfRange { .. })
        ));
        assert!(matches!(
            ini.submit_read(0, 3, 0),
            Err(InitiatorError::BadSectorCount {
                sectors: 3,
                max_sectors: 2
            })
        ));

        // vblade 25 has no FLUSH CACHE EXT: it aborts it (and acknowledges 0xE7 without
        // syncing anything).
        let err = ini.flush().expect_err("vblade aborts FLUSH CACHE EXT");
        assert_eq!(
            *request_error(&err),
            RequestError::Ata {
                status: 0x41,
                error: 0x04
            }
        );
        ini.flush_cache().expect("FLUSH CACHE");

        let stats = ini.stats();
        assert_eq!(stats.timeouts, 0, "{stats:?}");
        assert_eq!(stats.aoe_errors, 0, "{stats:?}");
    });
    drop(fx);
}

#[test]
fn raw_frames_show_vblade_reply_sizes() {
    let Some(fx) = Fixture::start("raw") else {
        return;
    };
    let target_mac = aoe_proto::Mac(fx.lab.target_mac());
    fx.client(config(), |ini| {
        let own = ini.own_mac();
        // Query Config, 32 bytes like the Linux driver's.
        let tag = 0x8000_1234;
        let mut query = [0u8; 32];
        let addr = aoe_initiator::TargetAddress {
            shelf: SHELF,
            slot: SLOT,
        };
        aoe_initiator::wire::encode_config_query(&mut query, own, addr, tag).unwrap();
        let reply = ini
            .exchange_raw(&query, Some(tag), 1000)
            .expect("exchange")
            .expect("vblade answers a Query Config");
        let h = Header::parse(&reply).unwrap();
        assert_eq!((h.src, h.tag, h.flags & 0x0c), (target_mac, tag, 0x08));
        // vblade does not pad: 32 bytes (header only, empty config string) on veth.
        assert_eq!(reply.len(), 32, "vblade pads its config replies now?");

        // A read past the end, built by hand: the error reply is 36 bytes, unpadded.
        let peer = aoe_initiator::wire::Peer {
            own_mac: own,
            target_mac,
            shelf: SHELF,
            slot: SLOT,
        };
        let read = AtaHeader {
            aflags: aoe_proto::ata::AFLAG_EXTENDED,
            sector_count: 1,
            cmd_status: aoe_proto::ata::opcode::READ_SECTORS_EXT,
            lba_bytes: AtaHeader::lba_bytes_for(CAPACITY_SECTORS, true),
            ..AtaHeader::default()
        };
        let mut frame = [0u8; 36];
        let tag = 0x8000_4321;
        aoe_initiator::wire::encode_ata_request(&mut frame, &peer, tag, &read, &[]).unwrap();
        let reply = ini
            .exchange_raw(&frame, Some(tag), 1000)
            .unwrap()
            .expect("ATA reply");
        assert_eq!(reply.len(), 36);
        let ata = AtaHeader::parse(&reply, 24).unwrap();
        assert_eq!((ata.cmd_status, ata.err_feature), (0x41, 0x10));

        // An AoE version 2 request: vblade answers anyway and echoes the version.
        let mut v2 = query;
        v2[14] = 0x20;
        v2[20..24].copy_from_slice(&0x8000_0002u32.to_be_bytes());
        let reply = ini.exchange_raw(&v2, Some(0x8000_0002), 1000).unwrap();
        let reply = reply.expect("vblade answers a version 2 query");
        assert_eq!(reply[14] >> 4, 2, "vblade echoes the request's version");

        // A request for another shelf is ignored: recv_raw times out.
        let mut other = query;
        other[16..18].copy_from_slice(&(SHELF + 5).to_be_bytes());
        ini.send_raw(&other).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(ini.recv_raw(&mut buf, 200).unwrap(), None);
    });
    drop(fx);
}

#[test]
fn pipelined_depth_16() {
    let Some(fx) = Fixture::start("pipe") else {
        return;
    };
    fx.client(config(), |ini| {
        ini.discover().expect("discover");
        ini.set_queue_depth(16).unwrap();
        assert_eq!(ini.queue_depth(), 16);
        const REQUESTS: u64 = 400;
        const SECTORS: u8 = 2;
        let pattern = |lba: u64, buf: &mut [u8]| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (lba as u8) ^ (i as u8).wrapping_mul(31) ^ (lba >> 8) as u8;
            }
        };
        let lba_of = |n: u64| 1000 + n * 7; // spread out, non-contiguous
        let mut data = [0u8; 2 * SECTOR_SIZE];
        let mut seen = vec![0u8; REQUESTS as usize];
        let mut max_in_flight = 0;
        let mut latencies_ns = Vec::with_capacity(REQUESTS as usize);

        // Writes.
        let mut next = 0;
        let mut done = 0;
        while done < REQUESTS {
            while next < REQUESTS && ini.in_flight() < ini.queue_depth() {
                pattern(lba_of(next), &mut data);
                ini.submit_write(lba_of(next), &data, next)
                    .expect("submit_write");
                next += 1;
            }
            max_in_flight = max_in_flight.max(ini.in_flight());
            if ini.in_flight() == 16 {
                assert!(matches!(
                    ini.submit_read(0, 1, 0),
                    Err(InitiatorError::QueueFull { depth: 16 })
                ));
            }
            done += ini
                .poll(5_000, |c| {
                    c.result
                        .as_ref()
                        .unwrap_or_else(|e| panic!("write {}: {e}", c.lba));
                    assert_eq!(c.lba, lba_of(c.user));
                    seen[c.user as usize] += 1;
                })
                .expect("poll") as u64;
        }
        assert_eq!(max_in_flight, 16);
        assert!(seen.iter().all(|&n| n == 1));

        // Reads, checked in the completion callback.
        let (mut next, mut done) = (0, 0);
        while done < REQUESTS {
            while next < REQUESTS && ini.in_flight() < ini.queue_depth() {
                ini.submit_read(lba_of(next), SECTORS, next)
                    .expect("submit_read");
                next += 1;
            }
            done += ini
                .poll(5_000, |c| {
                    c.result
                        .as_ref()
                        .unwrap_or_else(|e| panic!("read {}: {e}", c.lba));
                    assert_eq!(c.sectors, SECTORS);
                    let mut want = [0u8; 2 * SECTOR_SIZE];
                    pattern(c.lba, &mut want);
                    assert!(c.data == want, "lba {} read back wrong data", c.lba);
                    seen[c.user as usize] += 1;
                    latencies_ns.push(c.latency_ns);
                })
                .expect("poll") as u64;
        }
        assert!(seen.iter().all(|&n| n == 2));
        assert_eq!(ini.in_flight(), 0);
        assert_eq!(ini.poll(0, |_| panic!("nothing is in flight")).unwrap(), 0);
        latencies_ns.sort_unstable();
        let stats = ini.stats();
        eprintln!(
            "pipelined: {} requests, median read latency {} us, {stats:?}",
            2 * REQUESTS,
            latencies_ns[latencies_ns.len() / 2] / 1000
        );
        assert_eq!(
            stats.timeouts + stats.ata_errors + stats.aoe_errors + stats.bad_replies,
            0
        );
    });
    drop(fx);
}

#[test]
fn cli_against_vblade() {
    let Some(fx) = Fixture::start("cli") else {
        return;
    };
    let client = |args: &[&str]| {
        let mut cmd = fx
            .lab
            .command_in_client(env!("CARGO_BIN_EXE_xblade-client"));
        cmd.args([
            "--shelf",
            "1",
            "--slot",
            "2",
            "--timeout-ms",
            "200",
            fx.lab.client_if(),
        ]);
        cmd.args(args);
        cmd
    };
    let out = client(&["discover"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mac = aoe_proto::Mac(fx.lab.target_mac()).to_string();
    assert!(
        stdout.contains(&mac) && stdout.contains("1.2") && stdout.contains("0x4019"),
        "{stdout}"
    );

    let out = client(&["identify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("131072 sectors"), "{stdout}");

    let out = client(&[
        "verify",
        "--count",
        "30",
        "--seed",
        "7",
        "--max-sectors",
        "20",
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 mismatches"), "{stdout}");

    // Write from stdin, read to stdout.
    let mut child = client(&["write", "--lba", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let payload: Vec<u8> = (0..3 * SECTOR_SIZE).map(|i| (i * 7) as u8).collect();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&payload).unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
    let out = client(&["read", "--lba", "10", "--sectors", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, payload);

    // A length that is not whole sectors: one clear line, non-zero exit.
    let mut child = client(&["write", "--lba", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&[1, 2, 3]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("not a whole number of 512-byte sectors"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Past the end: the ATA error in one line.
    let out = client(&["read", "--lba", "131072", "--sectors", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("IDNF"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = client(&["flush"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FLUSH CACHE;"));
    drop(fx);
}

#[test]
fn retransmits_timeouts_and_stale_replies() {
    let Some(fx) = Fixture::start("retx") else {
        return;
    };
    let vblade = &fx.vblade;
    let quick = InitiatorConfig {
        timeout_ms: 100,
        retries: 2,
        ..config()
    };
    fx.client(quick, |ini| {
        ini.discover().expect("discover");
        let mut sector = [0u8; SECTOR_SIZE];
        ini.write(5, &[0xa5; SECTOR_SIZE]).expect("write");

        // A stopped target: three transmissions, each with a new tag, then a timeout that
        // names the last tag.
        signal(vblade, "STOP");
        let started = Instant::now();
        let err = ini
            .read(5, &mut sector)
            .expect_err("no reply while vblade is stopped");
        let waited = started.elapsed();
        signal(vblade, "CONT");
        match request_error(&err) {
            RequestError::Timeout {
                attempts: 3,
                timeout_ms: 100,
                last_tag,
            } => assert_ne!(last_tag & 0x8000_0000, 0),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(matches!(
            err,
            InitiatorError::Request {
                lba: 5,
                sectors: 1,
                ..
            }
        ));
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        let stats = ini.stats();
        assert_eq!((stats.retransmits, stats.timeouts), (2, 1), "{stats:?}");

        // vblade now answers all three old transmissions: stale, counted, ignored; the next
        // read gets its own answer.
        ini.read(5, &mut sector).expect("read after CONT");
        assert_eq!(sector, [0xa5; SECTOR_SIZE]);
        let stats = ini.stats();
        assert_eq!(stats.stale_replies, 3, "{stats:?}");
    });

    // A target that stalls for less than the retry budget: the retransmission wins and the
    // reply to the first transmission is recognised as stale. Driven by events, not by
    // sleeps: vblade resumes only once the initiator has retransmitted, and the retry budget
    // (100 x 100 ms) is far longer than any scheduling delay of a loaded machine.
    let patient = InitiatorConfig {
        timeout_ms: 100,
        retries: 100,
        ..config()
    };
    fx.client(patient, |ini| {
        ini.discover().expect("discover");
        let mut sector = [0u8; SECTOR_SIZE];
        ini.read(5, &mut sector).expect("read before the stall");
        signal(vblade, "STOP");
        let before = ini.stats();
        ini.submit_read(5, 1, 7).expect("submit");
        let mut result = None;
        let mut take = |c: aoe_initiator::Completion<'_>| {
            result = Some((c.user, c.result.clone(), c.data.to_vec()));
        };
        let limit = Instant::now() + Duration::from_secs(5);
        while ini.stats().retransmits == before.retransmits {
            assert!(Instant::now() < limit, "no retransmission in 5 s");
            assert_eq!(
                ini.poll(20, &mut take).expect("poll"),
                0,
                "vblade is stopped"
            );
        }
        signal(vblade, "CONT");
        let limit = Instant::now() + Duration::from_secs(10);
        while ini.in_flight() > 0 {
            assert!(Instant::now() < limit, "no reply 10 s after CONT");
            ini.poll(100, &mut take).expect("poll");
        }
        let (user, outcome, data) = result.expect("a completion");
        assert_eq!(user, 7);
        outcome.expect("read recovers by retransmission");
        assert_eq!(data, [0xa5; SECTOR_SIZE]);
        // The reply to the first transmission came before the one that completed the read
        // (vblade answers in order); anything later is taken by the next request.
        ini.read(5, &mut sector).expect("read after the stall");
        let after = ini.stats();
        assert!(after.retransmits > before.retransmits, "{after:?}");
        assert!(after.stale_replies > before.stale_replies, "{after:?}");
        assert_eq!(after.timeouts, before.timeouts);
    });
    drop(fx);
}
