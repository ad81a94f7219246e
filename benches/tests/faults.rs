//! The bench against an in-process responder that answers at once, from RAM: verify mode
//! at depth, and the failure paths (corrupted reads must fail the run, dropped requests
//! must be retransmitted with new tags, an unreachable target must fail cleanly). Needs
//! root; skips otherwise.

mod common;

use common::{describe, run_bench, Responder, ResponderConfig};
use xblade_lab::{Lab, LabOptions};

const SHELF: u16 = 5;
const SLOT: u8 = 2;
const CAPACITY: u64 = 16 << 11; // 16 MiB

fn ram_target(tag: &str, tweak: impl FnOnce(&mut ResponderConfig)) -> Option<(Lab, Responder)> {
    if !xblade_lab::require_root() {
        return None;
    }
    let lab = Lab::new(tag, LabOptions::default()).expect("lab");
    let mut cfg = ResponderConfig::new(SHELF, SLOT, CAPACITY);
    cfg.ram = true;
    tweak(&mut cfg);
    let responder = Responder::start(&lab, cfg);
    Some((lab, responder))
}

#[test]
fn verify_passes_at_depth_over_a_small_span() {
    let Some((lab, responder)) = ram_target("bverify", |_| {}) else {
        return;
    };
    // A small span makes requests meet the same blocks often: the in-flight rule and the
    // generation table are exercised hard.
    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "64",
            "--read-pct",
            "50",
            "--verify",
            "--span-sectors",
            "512",
            "--warmup-s",
            "0",
            "--duration-s",
            "1.5",
            "--quiet",
        ],
    );
    let seen = responder.stop();
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("report");
    assert_eq!(report["errors"]["verify_failures"], 0, "{report:#}");
    assert!(
        report["results"]["read"]["ops"].as_u64().unwrap() > 1000,
        "{report:#}"
    );
    assert!(seen.writes > 1000, "{seen:?}");
    assert_eq!(report["config"]["sectors"], 2);
    drop(lab);
}

#[test]
fn corrupted_reads_fail_the_run() {
    let Some((lab, responder)) = ram_target("bcorrupt", |c| c.corrupt_read_every = 50) else {
        return;
    };
    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "4",
            "--read-pct",
            "50",
            "--verify",
            "--span-sectors",
            "256",
            "--warmup-s",
            "0",
            "--duration-s",
            "0.5",
            "--quiet",
        ],
    );
    let seen = responder.stop();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = report.expect("report");
    let failures = report["errors"]["verify_failures"].as_u64().unwrap();
    // A corrupted reply of a block never written is not detectable (old content is
    // unknown); the others all are.
    assert!(
        failures > 0 && failures <= seen.corrupted,
        "{failures} vs {seen:?}"
    );
    let text = report["failures"][0].as_str().unwrap();
    assert!(text.contains("corrupt data at byte 100"), "{text}");
    drop(lab);
}

#[test]
fn dropped_requests_are_retransmitted_and_complete() {
    let Some((lab, responder)) = ram_target("bdrop", |c| c.drop_every = 97) else {
        return;
    };
    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "16",
            "--read-pct",
            "50",
            "--verify",
            "--timeout-ms",
            "20",
            "--warmup-s",
            "0",
            "--duration-s",
            "1",
            "--quiet",
        ],
    );
    let seen = responder.stop();
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("report");
    let retransmits = report["errors"]["retransmits"].as_u64().unwrap();
    assert!(
        seen.dropped > 0 && retransmits >= seen.dropped - 16,
        "{retransmits} vs {seen:?}"
    );
    assert_eq!(report["errors"]["timeouts"], 0, "{report:#}");
    assert_eq!(report["errors"]["verify_failures"], 0, "{report:#}");
    let max = report["results"]["all"]["latency"]["max_ns"]
        .as_u64()
        .unwrap();
    assert!(
        max >= 20_000_000,
        "a retransmitted request waited a timeout: {max}"
    );
    drop(lab);
}

#[test]
fn no_target_is_a_clean_error() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("bnone", LabOptions::default()).expect("lab");
    let (out, report) = run_bench(&lab, SHELF, SLOT, &["--timeout-ms", "50", "--retries", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(report.is_none());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no AoE target"), "{stderr}");
    drop(lab);
}

#[test]
fn the_loop_sleeps_while_waiting() {
    let Some((lab, responder)) = ram_target("bsleep", |_| {}) else {
        return;
    };
    // Quiet and longer than a second: a timer that stops advancing (as the progress tick
    // once did without progress lines) makes the loop spin instead of sleeping.
    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "1",
            "--warmup-s",
            "0.2",
            "--duration-s",
            "1.5",
            "--quiet",
        ],
    );
    drop(responder);
    assert!(out.status.success(), "{}", describe(&out));
    let io = &report.expect("report")["io"];
    let n = |k: &str| io[k].as_u64().unwrap();
    assert!(n("sleeps") > 0, "{io:#}");
    // A turn that does not sleep takes at least one frame, but for the odd timer.
    let awake = n("turns") - n("sleeps");
    assert!(
        awake <= n("frames_received") + 100,
        "the loop spins: {io:#}"
    );
    drop(lab);
}
