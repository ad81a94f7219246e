//! AF_XDP preferred busy polling (`--napi-busy-poll-us`) on a veth pair: the socket options
//! are set (the daemon logs what it reads back with getsockopt), the worker drives the
//! socket itself (a recvfrom on every pass of its loop, counted with strace), and the data
//! path stays correct.
//!
//! What this cannot show here: the kernel running the NAPI poll inside those calls. Since
//! Linux 6.13 a copy-mode socket (veth is always copy mode) has no NAPI id, so its
//! busy-poll calls poll nothing; the test checks that xblade reports exactly that (napi_id
//! 0 and a warning). On a zero-copy NIC the id is non-zero and /proc/net/netstat's
//! BusyPollRxPackets grows. Needs root; skips with a printed reason otherwise.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{have_program, initiator, pattern, xbladectl, xbladectl_json, Daemon, TempDir};
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 16 << 20;

/// How many recvfrom(2) calls `pid` (all its threads) makes in `window`, by strace.
fn recvfrom_calls(pid: i32, dir: &TempDir, window: Duration) -> usize {
    let out = dir.0.join(format!("strace-{pid}.txt"));
    let status = Command::new("timeout")
        .args(["-s", "INT", &format!("{}", window.as_secs_f64())])
        .args(["strace", "-f", "-qq", "-e", "trace=recvfrom", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .status()
        .expect("run strace");
    // timeout exits 124 when it had to stop strace, which is the normal case here.
    assert!(matches!(status.code(), Some(0 | 124)), "strace: {status:?}");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    text.lines().filter(|l| l.contains("recvfrom(")).count()
}

#[test]
fn napi_busy_polling_sets_the_options_and_drives_the_socket_from_the_worker() {
    require_root!();
    if !have_program("strace") {
        eprintln!("skipped: needs strace");
        return;
    }
    let lab = Lab::new("bpoll", LabOptions::with_rx_queues(1)).expect("lab");
    let dir = TempDir::new("bpoll");
    let image = dir.image("disk.img", IMAGE_BYTES);
    // Busy-poll (never sleep) in both runs, so that only the NAPI driving differs.
    let base = [
        "--xdp-mode",
        "native",
        "--busy-poll",
        "--no-pin",
        "--no-state",
    ];
    let window = Duration::from_secs(2);

    // Control: a busy-polling worker in copy mode makes no recvfrom (the fill ring never
    // asks for a wake-up), so every call counted below is the busy-poll drive.
    let daemon = Daemon::start(&lab, &dir, &image, &base);
    let mut client = initiator(&lab, 1000, 4);
    client.write(1, &pattern(1, 1, 1)).expect("write");
    let control = recvfrom_calls(daemon.pid(), &dir, window);
    eprintln!("without napi busy polling: {control} recvfrom in {window:?}");
    assert!(control < 100, "{control} recvfrom calls without the option");
    drop(client);
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());

    let control = dir.0.join("control.sock");
    let control_arg = control.to_str().expect("utf-8 path");
    let mut args = base.to_vec();
    args.extend(["--napi-busy-poll-us", "20", "--napi-busy-poll-budget", "64"]);
    args.extend(["--control", control_arg]);
    let daemon = Daemon::start(&lab, &dir, &image, &args);
    let log = daemon.log();
    let serving: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker serving"))
        .collect();
    assert_eq!(serving.len(), 1, "one queue, one worker: {log}");
    // Read back from the kernel with getsockopt, except the budget, which it cannot report.
    for field in [
        "bind_mode=copy",
        "napi_prefer_busy_poll=true",
        "napi_busy_poll_us=20",
        "napi_busy_poll_budget=64",
        "napi_id=0",
    ] {
        assert!(
            serving[0].contains(field),
            "{field} missing: {}",
            serving[0]
        );
    }
    assert!(
        log.contains("napi busy polling has no NAPI context to poll"),
        "copy mode is reported as such: {log}"
    );

    let (status, reply) = xbladectl_json(&lab, &control, "status");
    assert!(status.success(), "{reply}");
    let iface = &reply["interfaces"][0];
    assert_eq!(
        (
            iface["napi_busy_poll_us"].as_u64(),
            iface["napi_busy_poll_budget"].as_u64(),
            iface["napi_busy_poll_queues_with_napi"].as_u64()
        ),
        (Some(20), Some(64), Some(0)),
        "{reply}"
    );
    let (status, text, _) = xbladectl(&lab, &control, &["status"]);
    assert!(status.success());
    let line = format!(
        "{}: NAPI busy polling 20 µs, budget 64; NAPI context on 0 of 1 queues (a socket \
         without one polls nothing: copy mode)",
        lab.target_if()
    );
    assert!(text.contains(&line), "{text}");

    let mut client = initiator(&lab, 1000, 4);
    let driven = recvfrom_calls(daemon.pid(), &dir, window);
    eprintln!("with napi busy polling: {driven} recvfrom in {window:?}");
    assert!(
        driven >= 1000,
        "only {driven} recvfrom calls in {window:?}: the worker does not drive the socket"
    );

    let started = Instant::now();
    let write = |c: &mut aoe_initiator::Initiator, i: u64| {
        c.submit_write(i * 2, &pattern(i * 2, 3, 2), i * 2)
            .expect("submit write")
    };
    assert_eq!(
        common::pipelined(&mut client, 16, 1000, write, |_| {}),
        1000
    );
    let read = |c: &mut aoe_initiator::Initiator, i: u64| {
        c.submit_read(i * 2, 2, i * 2).expect("submit read")
    };
    let check = |c: &aoe_initiator::Completion<'_>| {
        assert!(c.data == &pattern(c.user, 3, 2)[..], "lba {}", c.user)
    };
    assert_eq!(common::pipelined(&mut client, 16, 1000, read, check), 1000);
    eprintln!(
        "with napi busy polling: 1000 writes + 1000 verified reads in {:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().retransmits, 0);
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

#[test]
fn napi_busy_polling_with_generic_xdp_warns_that_it_has_no_effect() {
    require_root!();
    let lab = Lab::new("bpollg", LabOptions::with_rx_queues(1)).expect("lab");
    let dir = TempDir::new("bpollg");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let args = [
        "--xdp-mode",
        "generic",
        "--no-pin",
        "--no-state",
        "--napi-busy-poll-us",
        "20",
    ];
    let daemon = Daemon::start(&lab, &dir, &image, &args);
    let log = daemon.log();
    assert!(
        log.contains("napi_busy_poll_us has no effect with generic (skb) XDP"),
        "{log}"
    );
    let mut client = initiator(&lab, 500, 2);
    client.write(7, &pattern(7, 1, 1)).expect("write");
    let mut back = vec![0u8; 512];
    client.read(7, &mut back).expect("read");
    assert!(back == pattern(7, 1, 1));
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
}
