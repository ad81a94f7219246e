//! The data path end to end over a veth pair between two throwaway network namespaces:
//! xblade on one end, the project's initiator and aoeping (Debian aoetools) on the other.
//! Needs root; skips with a printed reason otherwise.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_initiator::RequestError;
use aoe_proto::ata;
use common::{initiator, pattern, wait_for, Daemon, TempDir, SHELF, SLOT};
use rand::{Rng, SeedableRng};
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 64 << 20;
const CAPACITY_SECTORS: u64 = IMAGE_BYTES / 512;

#[test]
fn random_data_round_trips_at_random_lbas_including_the_last_sector() {
    require_root!();
    let lab = Lab::new("rand", LabOptions::default()).expect("lab");
    let dir = TempDir::new("rand");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut client = initiator(&lab, 500, 4);
    assert_eq!(
        client.capacity_sectors().expect("identify"),
        CAPACITY_SECTORS
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut written = Vec::new();
    for round in 0..200u64 {
        let (lba, data) = common::random_extent(&mut rng, round, CAPACITY_SECTORS);
        client.write(lba, &data).expect("write");
        written.push((lba, data));
    }
    // Later writes win where ranges overlap: check against a model of the disk.
    let mut model = std::collections::BTreeMap::new();
    for (lba, data) in &written {
        for (i, sector) in data.chunks(512).enumerate() {
            model.insert(lba + i as u64, sector.to_vec());
        }
    }
    for (lba, sector) in &model {
        let mut back = vec![0u8; 512];
        client.read(*lba, &mut back).expect("read");
        assert_eq!(&back, sector, "sector {lba} differs");
    }
    assert!(
        model.contains_key(&(CAPACITY_SECTORS - 1)),
        "the last sector was written"
    );

    // One sector past the end is refused with ATA IDNF, not the AoE error flag.
    let mut buf = vec![0u8; 512];
    match client.read(CAPACITY_SECTORS, &mut buf) {
        Err(e) => match e.request_error() {
            Some(RequestError::Ata { status, error }) => {
                assert_eq!((*status, *error), (ata::status::FAILED, ata::error::IDNF));
            }
            other => panic!("expected ATA IDNF, got {other:?} ({e})"),
        },
        Ok(()) => panic!("read past the end succeeded"),
    }
    client.flush().expect("FLUSH CACHE EXT");
    assert_eq!(
        client.check_power_mode().expect("CHECK POWER MODE"),
        ata::POWER_MODE_ACTIVE
    );
    assert_eq!(
        client.stats().retransmits,
        0,
        "no retransmits on an idle veth"
    );

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert!(exit.stdout.contains("disk i/o 0;"), "{}", exit.stdout);
    assert!(exit.stdout.contains("flushes 1"), "{}", exit.stdout);
}

#[test]
fn aoeping_sees_the_target_and_its_capacity() {
    require_root!();
    let lab = Lab::new("ping", LabOptions::default()).expect("lab");
    let dir = TempDir::new("ping");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);

    let aoeping = |args: &[&str]| {
        let out = lab
            .command_in_client("aoeping")
            .args(["-s", "5"])
            .args(args)
            .args([&SHELF.to_string(), &SLOT.to_string(), lab.client_if()])
            .output()
            .expect("run aoeping (apt-get install aoetools)");
        assert!(out.status.success(), "aoeping {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fields = aoeping(&["-I"]);
    assert!(fields.contains("model: xblade AoE target"), "{fields}");
    assert!(fields.contains("serial_number: XB1.0"), "{fields}");

    // aoeping -i dumps the IDENTIFY sector as hex; capacity comes from words 100-103.
    let dump = aoeping(&["-i"]);
    let hex: Vec<u8> = dump
        .lines()
        .skip_while(|l| !l.contains("device identify response"))
        .skip(1)
        .flat_map(|l| {
            l.split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
                .collect::<Vec<_>>()
        })
        .collect();
    let identify: [u8; 512] = hex
        .get(..512)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_else(|| panic!("short dump:\n{dump}"));
    assert_eq!(ata::identify_capacity_sectors(&identify), CAPACITY_SECTORS);

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit array; CPU_SET writes inside it; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn a_frame_on_every_rx_queue_is_served() {
    require_root!();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs 2 CPUs to steer frames to 2 queues");
        return;
    }
    let lab = Lab::new("mq", LabOptions::with_rx_queues(2)).expect("lab");
    // XPS on the client end: a frame sent from CPU n leaves on TX queue n, which veth
    // delivers on the peer's RX queue n.
    let xps = format!(
        "echo 1 > /sys/class/net/{0}/queues/tx-0/xps_cpus && echo 2 > /sys/class/net/{0}/queues/tx-1/xps_cpus",
        lab.client_if()
    );
    let status = lab
        .command_in_client("sh")
        .args(["-c", &xps])
        .status()
        .expect("set XPS");
    assert!(status.success());
    let dir = TempDir::new("mq");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    assert!(
        common::read(&daemon.stderr).contains("queues=2"),
        "{}",
        common::read(&daemon.stderr)
    );

    std::thread::scope(|s| {
        for cpu in 0..2 {
            let lab = &lab;
            s.spawn(move || {
                pin(cpu);
                let mut client = initiator(lab, 500, 4);
                let data = pattern(cpu as u64, 7, 2);
                for i in 0..50 {
                    client
                        .write(cpu as u64 * 1000 + i * 2, &data)
                        .expect("write");
                    let mut back = vec![0u8; 1024];
                    client
                        .read(cpu as u64 * 1000 + i * 2, &mut back)
                        .expect("read");
                    assert_eq!(back, data);
                }
            });
        }
    });
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let per_queue: Vec<u64> = exit
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("queues"))
        .expect("queues line in the summary")
        .split(';')
        .filter_map(|part| {
            part.split_whitespace()
                .rev()
                .nth(1)
                .and_then(|n| n.parse().ok())
        })
        .collect();
    assert_eq!(per_queue.len(), 2, "{}", exit.stdout);
    assert!(
        per_queue.iter().all(|&n| n >= 100),
        "each queue served its CPU's requests: {}",
        exit.stdout
    );
}

fn xdp_attached(lab: &Lab) -> bool {
    let out = lab
        .command_in_target("ip")
        .args(["-d", "link", "show", "dev", lab.target_if()])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn kill_9_leaves_no_xdp_program_attached() {
    require_root!();
    let lab = Lab::new("kill9", LabOptions::default()).expect("lab");
    let dir = TempDir::new("kill9");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    assert!(xdp_attached(&lab), "xblade attached its XDP program");
    let exit = daemon.kill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit.status),
        Some(libc::SIGKILL)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&lab) {
        assert!(
            Instant::now() < deadline,
            "XDP program still attached 5 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the interface is usable again: a new daemon attaches.
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
    assert!(!xdp_attached(&lab), "a clean stop detaches too");
}

#[test]
fn sigterm_during_a_write_load_loses_no_acknowledged_write() {
    require_root!();
    let lab = Lab::new("term", LabOptions::default()).expect("lab");
    let dir = TempDir::new("term");
    let image = dir.image("disk.img", IMAGE_BYTES);
    // Three daemon lifetimes, each ended by SIGTERM under load, each writing its own range.
    // `-s` (O_DSYNC) makes each write wait for the device, so writes are still in flight
    // when the signal lands (without it they often all complete first).
    let mut acked = Vec::new();
    for round in 0..3u64 {
        acked.extend(sigterm_round(&lab, &dir, &image, round * 8192));
    }

    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut client = initiator(&lab, 500, 4);
    let mut back = vec![0u8; 1024];
    for lba in &acked {
        client.read(*lba, &mut back).expect("read back");
        assert!(
            back == pattern(*lba, 1, 2),
            "acknowledged write at lba {lba} lost"
        );
    }
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
}

/// Starts `xblade -s` on `image`, runs a pipelined write load (depth 32, 2 sectors per
/// write from `first_lba` on), stops submitting once 2000 writes are acknowledged and sends
/// SIGTERM right away, with writes in flight. Every write sent before the signal must be
/// answered (the README: every in-flight I/O completes and is answered). Returns the
/// acknowledged LBAs.
fn sigterm_round(lab: &Lab, dir: &TempDir, image: &std::path::Path, first_lba: u64) -> Vec<u64> {
    let daemon = Daemon::start(lab, dir, image, &["-s"]);
    let mut client = initiator(lab, 200, 2);
    client.set_queue_depth(32).expect("queue depth");

    // The load runs until `stop`; it then submits nothing more, says so (`stopped`, with
    // the requests still in flight), and waits for every answer.
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked_count, stop, stopped) = (
            Arc::clone(&acked_count),
            Arc::clone(&stop),
            Arc::clone(&stopped),
        );
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut next_lba = first_lba;
            let mut in_flight_at_stop = None;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let stopping = stop.load(Ordering::SeqCst);
                // Until the stop, and once more when it comes (so that a full window of
                // writes is in flight when the main thread sends the signal).
                let submitting = (!stopping || in_flight_at_stop.is_none())
                    && failed.is_empty()
                    && next_lba + 2 <= CAPACITY_SECTORS;
                while submitting && client.in_flight() < 32 {
                    client
                        .submit_write(next_lba, &pattern(next_lba, 1, 2), next_lba)
                        .expect("submit");
                    next_lba += 2;
                }
                if stopping && in_flight_at_stop.is_none() {
                    in_flight_at_stop = Some(client.in_flight());
                    stopped.store(true, Ordering::SeqCst);
                }
                let submitting = submitting && !stopping;
                if !submitting && client.in_flight() == 0 {
                    break;
                }
                client
                    .poll(50, |c| match c.result {
                        Ok(()) => {
                            acked.push(c.user);
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => failed.push((c.user, e)),
                    })
                    .expect("poll");
            }
            let submitted = (next_lba - first_lba) / 2;
            (acked, failed, submitted, in_flight_at_stop.unwrap_or(0))
        })
    };
    // A load well under way (events, not a fixed sleep), then the signal while requests are
    // in flight.
    let reached = wait_for(Duration::from_secs(20), || {
        acked_count.load(Ordering::SeqCst) >= 2000
    });
    stop.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let acked_at_signal = acked_count.load(Ordering::SeqCst);
    let exit = daemon.terminate(Duration::from_secs(15));
    let (acked, failed, submitted, in_flight_at_stop) = load.join().expect("load thread");
    assert!(
        reached,
        "only {} writes acknowledged in 20 s",
        acked_count.load(Ordering::SeqCst)
    );
    assert!(exit.status.success(), "{exit:?}");
    assert!(exit.stdout.contains("xblade summary"), "{}", exit.stdout);
    eprintln!(
        "from lba {first_lba}: {} writes acknowledged ({} after SIGTERM), {} unanswered, of \
         {submitted} submitted; {in_flight_at_stop} in flight at the signal",
        acked.len(),
        acked.len() - acked_at_signal,
        failed.len()
    );
    assert!(
        in_flight_at_stop > 0,
        "SIGTERM came with no request in flight"
    );
    assert!(
        failed.is_empty(),
        "{} of the {submitted} writes sent before SIGTERM were not answered: {:?}",
        failed.len(),
        &failed[..failed.len().min(4)]
    );
    assert_eq!(acked.len() as u64, submitted, "every write answered");
    acked
}

#[test]
fn read_only_and_window_are_enforced() {
    require_root!();
    let lab = Lab::new("win", LabOptions::default()).expect("lab");
    let dir = TempDir::new("win");
    let image = dir.image("disk.img", IMAGE_BYTES);
    // Mark the sectors just outside and inside the window in the file itself.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("open image");
        f.write_all_at(&[0xAA; 512], 99 * 512).expect("mark");
        f.write_all_at(&[0xBB; 512], 100 * 512).expect("mark");
        f.write_all_at(&[0xCC; 512], 199 * 512).expect("mark");
        f.write_all_at(&[0xDD; 512], 200 * 512).expect("mark");
    }
    let daemon = Daemon::start(&lab, &dir, &image, &["-r", "-o", "100", "-l", "100"]);
    let mut client = initiator(&lab, 500, 2);
    assert_eq!(client.capacity_sectors().expect("identify"), 100);
    let mut sector = vec![0u8; 512];
    client.read(0, &mut sector).expect("read first");
    assert!(
        sector.iter().all(|&b| b == 0xBB),
        "lba 0 is file sector 100"
    );
    client.read(99, &mut sector).expect("read last");
    assert!(
        sector.iter().all(|&b| b == 0xCC),
        "lba 99 is file sector 199"
    );
    let err = client.read(100, &mut sector).expect_err("past the window");
    assert!(
        matches!(
            err.request_error(),
            Some(RequestError::Ata {
                error: ata::error::IDNF,
                ..
            })
        ),
        "{err}"
    );
    let err = client.write(0, &[0u8; 512]).expect_err("read-only");
    assert!(
        matches!(
            err.request_error(),
            Some(RequestError::Ata {
                error: ata::error::ABRT,
                ..
            })
        ),
        "{err}"
    );
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
    let bytes = std::fs::read(&image).expect("read image");
    assert!(
        bytes[100 * 512..101 * 512].iter().all(|&b| b == 0xBB),
        "read-only: nothing written"
    );
}

#[test]
fn null_backend_with_busy_poll_reads_zeros_and_discards_writes() {
    require_root!();
    let lab = Lab::new("null", LabOptions::default()).expect("lab");
    let dir = TempDir::new("null");
    let spec = std::path::PathBuf::from("null:1G");
    let daemon = Daemon::start(&lab, &dir, &spec, &["--busy-poll"]);
    let mut client = initiator(&lab, 500, 2);
    assert_eq!(client.capacity_sectors().expect("identify"), 1 << 21);
    client.write(7, &[0xEE; 1024]).expect("write");
    let mut back = vec![0xAAu8; 1024];
    client.read(7, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 0), "the null backend reads zeros");
    client.flush().expect("flush");
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        exit.stdout.contains("reads 1, writes 1, flushes 1"),
        "{}",
        exit.stdout
    );
}

/// The null backend writes only the zeros a read's frame does not hold already
/// (worker::known_zero). With 64 frames each is reused many times, in turn carrying write
/// data (which the kernel writes into it), IDENTIFY replies (which xblade writes into it)
/// and reads of one and two sectors: every read must still come back all zeros.
#[test]
fn null_reads_stay_zero_while_frames_carry_writes_and_other_replies() {
    require_root!();
    let lab = Lab::new("nullz", LabOptions::default()).expect("lab");
    let dir = TempDir::new("nullz");
    let spec = std::path::PathBuf::from("null:1G");
    let daemon = Daemon::start(&lab, &dir, &spec, &["--frames", "64"]);
    let mut client = initiator(&lab, 500, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x2e40);
    let mut reads = 0;
    for round in 0..400u32 {
        let sectors = rng.gen_range(1..=2usize);
        let lba = rng.gen_range(0..1_000_000u64);
        // At random: frames are handed out in a fixed cycle, which a fixed pattern of
        // requests could match so that reads never land in a frame a write used.
        match rng.gen_range(0..3) {
            0 => client.write(lba, &vec![0xEE; 2 * 512]).expect("write"),
            1 => {
                client.identify().expect("identify");
            }
            _ => {}
        }
        let mut back = vec![0xAAu8; sectors * 512];
        client.read(lba, &mut back).expect("read");
        reads += 1;
        let stray = back.iter().position(|&b| b != 0);
        assert_eq!(
            stray, None,
            "round {round}: a {sectors}-sector read is not all zeros"
        );
    }
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    // At least every read (an initiator retransmission is served again).
    let served = common::summary_count(&exit.stdout, "reads").unwrap_or(0);
    assert!(
        served >= reads,
        "{served} reads served, {reads} sent:\n{}",
        exit.stdout
    );
}

/// An 802.1Q-tagged request puts the sector data 4 bytes off the 512-byte boundary that
/// O_DIRECT needs: the worker must bounce it through an aligned buffer, and say so.
#[test]
fn vlan_tagged_requests_are_served_through_bounce_buffers() {
    use aoe_proto::ata::{opcode, AtaHeader, AFLAG_EXTENDED, AFLAG_WRITE};
    use aoe_proto::{Command, Header, Mac};
    require_root!();
    let lab = Lab::new("vlan", LabOptions::default()).expect("lab");
    let dir = TempDir::new("vlan");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut client = initiator(&lab, 500, 2);
    let target: Mac = client.target().expect("discovered").mac;
    let own = client.own_mac();
    let tagged = |command: u8, aflags: u8, tag: u32, data: &[u8]| {
        let mut frame = vec![0u8; 40 + data.len()];
        let header = Header {
            dst: target,
            src: own,
            vlan_tci: Some(5),
            version: 1,
            flags: 0,
            error: 0,
            major: SHELF,
            minor: SLOT,
            command: Command::Ata as u8,
            tag,
        };
        let body = header.encode(&mut frame).expect("header");
        AtaHeader {
            aflags,
            err_feature: 0,
            sector_count: 1,
            cmd_status: command,
            lba_bytes: AtaHeader::lba_bytes_for(10, true),
        }
        .encode(&mut frame, body)
        .expect("ata header");
        frame[40..].copy_from_slice(data);
        frame
    };
    let data = pattern(10, 3, 1);
    let write = tagged(
        opcode::WRITE_SECTORS_EXT,
        AFLAG_EXTENDED | AFLAG_WRITE,
        0x8000_0101,
        &data,
    );
    let reply = client
        .exchange_raw(&write, Some(0x8000_0101), 2000)
        .expect("exchange")
        .expect("write reply");
    // The client's kernel moves a received tag into packet metadata (AF_PACKET shows the
    // frame untagged), so locate the ATA header from what the socket shows.
    let body = Header::parse(&reply).expect("reply").body_offset();
    assert_eq!(
        AtaHeader::parse(&reply, body).expect("ata").cmd_status,
        ata::status::OK
    );

    let read = tagged(opcode::READ_SECTORS_EXT, AFLAG_EXTENDED, 0x8000_0102, &[]);
    let reply = client
        .exchange_raw(&read, Some(0x8000_0102), 2000)
        .expect("exchange")
        .expect("read reply");
    let body = Header::parse(&reply).expect("reply").body_offset();
    assert_eq!(
        reply.get(body + 12..body + 12 + 512),
        Some(&data[..]),
        "tagged read returns the tagged write"
    );
    let mut back = vec![0u8; 512];
    client.read(10, &mut back).expect("untagged read");
    assert_eq!(back, data);

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        exit.stdout.contains("bounced 2"),
        "one write and one read bounced: {}",
        exit.stdout
    );
}

/// MTU 9000: 17 sectors per frame, requests and replies spanning several UMEM frames
/// (AF_XDP multi-buffer), in native and generic XDP.
#[test]
fn jumbo_frames_carry_17_sectors() {
    require_root!();
    for mode in ["native", "generic"] {
        let lab = Lab::new(
            "jumbo",
            LabOptions {
                mtu: Some(9000),
                ..LabOptions::default()
            },
        )
        .expect("lab");
        let dir = TempDir::new("jumbo");
        let image = dir.image("disk.img", IMAGE_BYTES);
        let daemon = Daemon::start(&lab, &dir, &image, &["--xdp-mode", mode]);
        let mut client = initiator(&lab, 500, 4);
        assert_eq!(
            client.target().expect("discovered").sectors_per_frame,
            17,
            "{mode}"
        );
        assert_eq!(client.sectors_per_frame(), 17);
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut written = Vec::new();
        for round in 0..40u64 {
            let sectors = [17usize, 34, 1, 8, 16, 40][round as usize % 6];
            let lba = if round == 0 {
                CAPACITY_SECTORS - 17
            } else {
                rng.gen_range(0..CAPACITY_SECTORS - 40) / 64 * 64 + round
            };
            let mut data = vec![0u8; sectors * 512];
            rng.fill(&mut data[..]);
            client.write(lba, &data).expect("write");
            written.push((lba, data));
        }
        for (lba, data) in &written {
            let mut back = vec![0u8; data.len()];
            client.read(*lba, &mut back).expect("read");
            assert!(&back == data, "{mode}: data at lba {lba} differs");
        }
        // Many more chained replies than there are spare frames: each must give its spare
        // frames back (a leak once dropped every read after about a thousand).
        let submit = |c: &mut aoe_initiator::Initiator, i: u64| {
            c.submit_read((i % 64) * 17, 17, i).expect("submit read")
        };
        assert_eq!(
            common::pipelined(&mut client, 16, 3000, submit, |_| {}),
            3000,
            "{mode}"
        );
        assert_eq!(client.stats().retransmits, 0, "{mode}");
        let exit = daemon.terminate(Duration::from_secs(10));
        assert!(exit.status.success(), "{exit:?}");
        assert!(exit.stdout.contains("disk i/o 0;"), "{}", exit.stdout);
        assert!(exit.stdout.contains("no buffer 0)"), "{}", exit.stdout);
        eprintln!("{mode}:\n{}", exit.stdout);
    }
}

/// The hidden switches that turn the fast-path mechanisms off (for measuring what each
/// buys) must leave the data path correct.
#[test]
fn tuning_switches_keep_the_data_path_correct() {
    require_root!();
    let lab = Lab::new("tune", LabOptions::default()).expect("lab");
    let dir = TempDir::new("tune");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let args = [
        "--tune-no-need-wakeup",
        "--tune-no-fixed",
        "--tune-no-defer-taskrun",
        "--batch",
        "1",
        "--no-pin",
    ];
    let daemon = Daemon::start(&lab, &dir, &image, &args);
    let mut client = initiator(&lab, 500, 2);
    let submit = |c: &mut aoe_initiator::Initiator, i: u64| {
        c.submit_write(i * 2, &pattern(i * 2, 5, 2), i)
            .expect("submit")
    };
    assert_eq!(common::pipelined(&mut client, 16, 200, submit, |_| {}), 200);
    let mut back = vec![0u8; 1024];
    for lba in (0..400u64).step_by(2) {
        client.read(lba, &mut back).expect("read");
        assert!(back == pattern(lba, 5, 2), "lba {lba}");
    }
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
}

/// Requests for adjacent sectors that arrive together are merged into one disk operation
/// (as an initiator splits a large I/O into frames); each still gets its own reply.
#[test]
fn adjacent_requests_are_merged_and_each_answered() {
    require_root!();
    // Both disk I/O engines: io_uring, and synchronous syscalls (auto for tmpfs).
    for engine in ["uring", "sync"] {
        let lab = Lab::new("merge", LabOptions::default()).expect("lab");
        let dir = TempDir::new("merge");
        let image = dir.image("disk.img", IMAGE_BYTES);
        let daemon = Daemon::start(&lab, &dir, &image, &["--io-engine", engine]);
        let mut client = initiator(&lab, 500, 2);
        let write = |c: &mut aoe_initiator::Initiator, i: u64| {
            c.submit_write(i * 2, &pattern(i * 2, 9, 2), i * 2)
                .expect("submit write")
        };
        assert_eq!(common::pipelined(&mut client, 64, 512, write, |_| {}), 512);
        let read = |c: &mut aoe_initiator::Initiator, i: u64| {
            c.submit_read(i * 2, 2, i * 2).expect("submit read")
        };
        let check = |c: &aoe_initiator::Completion<'_>| {
            assert!(c.data == &pattern(c.user, 9, 2)[..], "lba {}", c.user)
        };
        assert_eq!(common::pipelined(&mut client, 64, 512, read, check), 512);
        let exit = daemon.terminate(Duration::from_secs(10));
        assert!(exit.status.success(), "{exit:?}");
        let merged: u64 = exit
            .stdout
            .split("merged ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("merged count in the summary");
        eprintln!("{}", exit.stdout);
        assert!(
            merged > 0,
            "{engine}: sequential pipelined requests were merged: {}",
            exit.stdout
        );
    }
}

fn start_error(lab: &Lab, args: &[&str], iface: Option<&str>, image: &std::path::Path) -> String {
    let out = lab
        .command_in_target(common::xblade_bin())
        .args(args)
        .args(["1", "0", iface.unwrap_or(lab.target_if())])
        .arg(image)
        .output()
        .expect("run xblade");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("xblade: error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "exactly one error line: {stderr}");
    error_lines[0].to_owned()
}

#[test]
fn user_errors_get_one_clear_line_and_a_nonzero_exit() {
    require_root!();
    let lab = Lab::new("errs", LabOptions::default()).expect("lab");
    let dir = TempDir::new("errs");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let tiny = dir.image("tiny.img", 100);

    let line = start_error(&lab, &[], Some("nosuch0"), &image);
    assert!(
        line.contains("no such network interface 'nosuch0'"),
        "{line}"
    );
    let line = start_error(&lab, &[], None, &dir.0.join("missing.img"));
    assert!(line.contains("no such file"), "{line}");
    let line = start_error(&lab, &[], None, &tiny);
    assert!(line.contains("smaller than one 512-byte sector"), "{line}");
    let line = start_error(&lab, &["-o", "200000"], None, &image);
    assert!(line.contains("does not fit"), "{line}");

    // Without privileges: one line that says what is needed.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod dir");
    std::fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod image");
    let out = lab
        .command_in_target("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::xblade_bin())
        .args(["1", "0", lab.target_if()])
        .arg(&image)
        .output()
        .expect("run xblade unprivileged");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("need root"), "{stderr}");

    // A second daemon on the same interface: the XDP program slot is taken.
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let line = start_error(&lab, &[], None, &image);
    assert!(line.contains("already has an XDP program"), "{line}");
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
}

/// The fill ring's depth cap (worker/fill_depth.rs): with the worker stopped, the kernel
/// receives only as many frames as the worker left it for reception (512 to begin with;
/// the rest of a burst is dropped), and a backlog that large doubles what it gets next time.
#[test]
fn a_burst_while_the_worker_is_stopped_raises_the_fill_depth() {
    use aoe_proto::ata::{opcode, AtaHeader, AFLAG_EXTENDED};
    use aoe_proto::{Header, Mac};
    require_root!();
    const START_DEPTH: usize = 512;
    const BURST: u32 = 1600;
    let lab = Lab::new("burst", LabOptions::with_rx_queues(1)).expect("lab");
    let dir = TempDir::new("burst");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let control = dir.0.join("control.sock");
    let control_arg = control.to_str().expect("utf-8 path");
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-pin", "--control", control_arg]);
    // The gauge in `xbladectl stats` (and /metrics) follows the depth.
    let fill_depth = || {
        let (status, stats) = common::xbladectl_json(&lab, &control, "stats");
        assert!(status.success(), "{stats}");
        stats["queues"][0]["fill_depth_frames"].as_u64()
    };
    assert_eq!(fill_depth(), Some(START_DEPTH as u64), "the start depth");
    let sock = common::RawSocket::open_in_client(&lab, lab.client_if(), 64 << 20);
    let target = Mac(lab.target_mac());
    let mut tag = 0u32;
    let mut burst_answered = |daemon: &Daemon| -> usize {
        let first_tag = tag;
        daemon.signal(libc::SIGSTOP);
        // kill(2) returns before the threads have stopped: wait until every one has.
        let stopped = || {
            std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
                .expect("the daemon's threads")
                .filter_map(Result::ok)
                .all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        stat.rsplit(')').next().is_some_and(|s| {
                            s.trim_start().starts_with('t') || s.trim_start().starts_with('T')
                        })
                    })
                })
        };
        assert!(
            wait_for(Duration::from_secs(5), stopped),
            "the daemon stopped"
        );
        for i in 0..BURST {
            let read = AtaHeader {
                aflags: AFLAG_EXTENDED,
                sector_count: 1,
                cmd_status: opcode::READ_SECTORS_EXT,
                lba_bytes: AtaHeader::lba_bytes_for(u64::from(i), true),
                ..AtaHeader::default()
            };
            let header = common::request_header(target, sock.mac, 0, tag);
            sock.send(&common::ata_frame(&header, &read, &[]));
            tag += 1;
        }
        daemon.signal(libc::SIGCONT);
        let mut buf = vec![0u8; 2048];
        let mut answered = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Some(len) = sock.recv_until(&mut buf, deadline) {
            let Ok(reply) = Header::parse(&buf[..len]) else {
                continue;
            };
            if reply.flags & aoe_proto::FLAG_RESPONSE != 0 && (first_tag..tag).contains(&reply.tag)
            {
                assert_eq!(reply.flags & aoe_proto::FLAG_ERROR, 0, "an error reply");
                answered.insert(reply.tag);
            }
        }
        answered.len()
    };
    let first = burst_answered(&daemon);
    let second = burst_answered(&daemon);
    let depth_after = fill_depth();
    let log = daemon.log();
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
    eprintln!("burst of {BURST} while stopped: {first} answered, then {second}");
    for line in log.lines().filter(|l| l.contains("fill_depth")) {
        eprintln!("{line}");
    }
    assert_eq!(
        first, START_DEPTH,
        "the kernel had the start depth of frames for reception"
    );
    assert!(
        log.contains("fill_depth=1024"),
        "grew after the first burst: {log}"
    );
    assert_eq!(second, 2 * START_DEPTH, "then twice as many");
    assert!(log.contains("fill_depth=2048"), "and grew again: {log}");
    assert_eq!(
        depth_after,
        Some(4 * START_DEPTH as u64),
        "the stats say so"
    );
}
