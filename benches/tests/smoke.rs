//! The bench against the real vblade 25 for about 2 s, over a veth pair between two
//! throwaway namespaces, in data-verify mode with a read/write mix: it must complete
//! requests and find no verify failure. Needs root and vblade; skips otherwise. vblade,
//! the namespaces and the image are removed on every path (guards).

mod common;

use common::{describe, run_bench, TempFile};
use xblade_lab::{Lab, LabOptions, Vblade};

const SHELF: u16 = 3;
const SLOT: u8 = 1;

#[test]
fn verified_mixed_load_against_vblade() {
    if !xblade_lab::require_root() || !Vblade::available() {
        return;
    }
    // Field order = drop order: vblade, then the lab, then the image.
    let image = TempFile::sparse("smoke", 32 << 20);
    let lab = Lab::new("bsmoke", LabOptions::default()).expect("lab");
    let log = TempFile::path_in_tmp("smoke-vblade.log");
    let vblade = Vblade::start(&lab, SHELF, SLOT, &image.0, log.0.clone()).expect("start vblade");

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
            "2",
            "--timeout-ms",
            "200",
            "--quiet",
        ],
    );
    drop(vblade);
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("JSON report");
    let all = &report["results"]["all"];
    let ops = all["ops"].as_u64().unwrap();
    assert!(
        ops > 100,
        "only {ops} requests completed: {}",
        describe(&out)
    );
    assert!(report["results"]["read"]["ops"].as_u64().unwrap() > 0);
    assert!(report["results"]["write"]["ops"].as_u64().unwrap() > 0);
    assert_eq!(report["errors"]["verify_failures"], 0, "{report:#}");
    assert_eq!(report["errors"]["ata_errors"], 0, "{report:#}");
    assert_eq!(report["errors"]["aoe_errors"], 0, "{report:#}");
    assert_eq!(report["errors"]["timeouts"], 0, "{report:#}");
    assert_eq!(report["target"]["capacity_sectors"], 65536);
    assert_eq!(
        report["config"]["sectors"], 2,
        "vblade advertises 2 sectors at MTU 1500"
    );
    let p99 = all["latency"]["p99_ns"].as_u64().unwrap();
    assert!(p99 > 0 && p99 < 10_000_000_000, "{p99}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("IOPS") && stdout.contains("verify failures 0"),
        "{stdout}"
    );
    drop(lab);
}
