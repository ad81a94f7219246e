//! The `xblade-responder` binary as scripts/bench.sh runs it: started in a lab's target
//! namespace, it must say it is exporting, serve the bench (verified mixed load at depth 8
//! from RAM, about 1 s), and on SIGTERM exit 0 with its counts. Also its refusals of bad
//! input (no panic, one error line, non-zero exit), which need no root. The namespaces,
//! logs and the process are removed or killed on every path (guards).

mod common;

use std::fs::File;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{describe, run_bench, TempFile};
use xblade_lab::{Lab, LabOptions};

const RESPONDER: &str = env!("CARGO_BIN_EXE_xblade-responder");
const SHELF: u16 = 6;
const SLOT: u8 = 4;
const SECTORS: u64 = 65536; // 32 MiB

/// `xblade-responder` in the lab's target namespace; SIGKILLed and reaped on drop if still
/// running.
struct Process {
    child: Option<Child>,
    log: TempFile,
}

impl Process {
    fn start(lab: &Lab, args: &[&str]) -> Process {
        // One log per lab: the tests of this file run in parallel.
        let log = TempFile::path_in_tmp(&format!("responder-{}.log", lab.target_if()));
        let out = File::create(&log.0).expect("create responder log");
        let err = out.try_clone().expect("dup log");
        let child = lab
            .command_in_target(RESPONDER)
            .args(args)
            .arg(lab.target_if())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn xblade-responder");
        let mut p = Process {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.log_text().contains("exporting") {
            let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("xblade-responder exited ({status}): {}", p.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "xblade-responder did not start: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    /// [`Process::start`] exporting e`SHELF`.`SLOT` of `SECTORS`, with `extra` options.
    fn start_export(lab: &Lab, extra: &[&str]) -> Process {
        let (shelf, slot, sectors) = (SHELF.to_string(), SLOT.to_string(), SECTORS.to_string());
        let mut args = vec![
            "--shelf",
            &shelf,
            "--slot",
            &slot,
            "--size-sectors",
            &sectors,
        ];
        args.extend_from_slice(extra);
        Process::start(lab, &args)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log.0).unwrap_or_default()
    }

    /// SIGTERM (`ip netns exec` execs the program, so the child's pid is the responder's),
    /// then waits up to 5 s for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("already reaped");
        // SAFETY: kill(2) on our own child's pid; the child is not reaped yet, so the pid
        // cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().expect("wait for xblade-responder") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within 5 s of SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("xblade-responder log:\n{}", self.log_text());
        }
    }
}

#[test]
fn the_bench_runs_verified_against_the_responder_binary() {
    if !xblade_lab::require_root() {
        return;
    }
    // Field order = drop order: the responder, then the lab.
    let lab = Lab::new("bresp", LabOptions::default()).expect("lab");
    let mut responder = Process::start_export(&lab, &["--ram", "--buffer-count", "64"]);
    let started = responder.log_text();
    assert!(
        started.contains(&format!("exporting e{SHELF}.{SLOT} on {}", lab.target_if())),
        "{started}"
    );

    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "8",
            "--read-pct",
            "50",
            "--verify",
            "--warmup-s",
            "0.2",
            "--duration-s",
            "1",
            "--timeout-ms",
            "200",
            "--quiet",
        ],
    );
    let status = responder.terminate();
    let log = responder.log_text();
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("JSON report");
    assert!(
        report["results"]["all"]["ops"].as_u64().unwrap() > 100,
        "{report:#}"
    );
    assert!(
        report["results"]["read"]["ops"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(
        report["results"]["write"]["ops"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    for error in ["verify_failures", "ata_errors", "aoe_errors", "timeouts"] {
        assert_eq!(report["errors"][error], 0, "{error}: {report:#}");
    }
    assert_eq!(report["target"]["capacity_sectors"], SECTORS);
    assert_eq!(report["target"]["buffer_count"], 64);
    assert_eq!(report["config"]["sectors"], 2, "MTU 1500 holds 2 sectors");

    assert!(status.success(), "exit {status}: {log}");
    let counts = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no counts line: {log}"));
    let count = |word: &str| -> u64 {
        let before = counts.split(word).next().unwrap_or("");
        let n = before.trim_end().rsplit([' ', ',']).next().unwrap_or("");
        n.parse()
            .unwrap_or_else(|_| panic!("no {word} count in {counts:?}"))
    };
    assert!(count(" reads") > 0, "{counts}");
    assert!(count(" writes") > 0, "{counts}");
    assert!(!log.contains("panicked"), "{log}");
    drop(lab);
}

/// `--max-iops` holds the generator to its pace: 2000 new requests a second against a
/// responder that could answer tens of thousands, and the report says so.
#[test]
fn the_bench_holds_the_pace_of_max_iops() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("bpace", LabOptions::default()).expect("lab");
    let mut responder = Process::start_export(&lab, &[]);
    let (out, report) = run_bench(
        &lab,
        SHELF,
        SLOT,
        &[
            "--queue-depth",
            "16",
            "--max-iops",
            "2000",
            "--warmup-s",
            "0.2",
            "--duration-s",
            "1.5",
            "--quiet",
        ],
    );
    responder.terminate();
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("JSON report");
    assert_eq!(report["config"]["max_iops"], 2000, "{report:#}");
    let iops = report["results"]["all"]["iops"].as_f64().unwrap();
    // At most the pace plus one burst of catch-up and the warm-up's requests finishing in
    // the window (about 2030/s over 1.5 s); unpaced, this link answers 50k+ per second.
    assert!(
        (1500.0..=2100.0).contains(&iops),
        "{iops} IOPS at --max-iops 2000: {report:#}"
    );
    drop(lab);
}

/// Runs the binary (here, without a namespace) and returns (status, stdout + stderr).
fn run_responder(args: &[&str]) -> (ExitStatus, String) {
    common::run_binary(RESPONDER, args)
}

#[test]
fn bad_input_is_refused_without_a_panic() {
    let (status, text) = run_responder(&[]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("IFACE"), "{text}");

    let (status, text) = run_responder(&["--ram", "--size-sectors", "1099511627776", "lo"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("too large to keep in RAM"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    let (status, text) = run_responder(&["--size-sectors", "0", "lo"]);
    assert_eq!(status.code(), Some(2), "{text}");

    let (status, text) = run_responder(&["xblade-no-such-if0"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("xblade-no-such-if0"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    let (status, text) = run_responder(&["--help"]);
    assert!(status.success(), "{text}");
    assert!(text.contains("NOT a storage target"), "{text}");
    assert!(text.contains("scripts/bench.sh"), "{text}");
}
