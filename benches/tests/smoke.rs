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

/// `--exports 3`: three vblade processes (slots 4, 5, 6 of one shelf, one image each) under
/// one verified mixed load. Every export must get its share, with no verify failure on any.
/// `--targets` names the same exports as a list.
#[test]
fn verified_load_spread_over_three_exports() {
    if !xblade_lab::require_root() || !Vblade::available() {
        return;
    }
    let images: Vec<TempFile> = (0..3)
        .map(|i| TempFile::sparse(&format!("spread{i}"), 8 << 20))
        .collect();
    let lab = Lab::new("bspread", LabOptions::default()).expect("lab");
    let logs: Vec<TempFile> = (0..3)
        .map(|i| TempFile::path_in_tmp(&format!("spread-vblade{i}.log")))
        .collect();
    let vblades: Vec<Vblade> = images
        .iter()
        .zip(&logs)
        .enumerate()
        .map(|(i, (image, log))| {
            Vblade::start(&lab, SHELF, 4 + i as u8, &image.0, log.0.clone()).expect("vblade")
        })
        .collect();
    let args = [
        "--queue-depth",
        "6",
        "--read-pct",
        "50",
        "--verify",
        "--warmup-s",
        "0.2",
        "--duration-s",
        "1.5",
        "--timeout-ms",
        "200",
        "--quiet",
    ];
    let (out, report) = run_bench(
        &lab,
        SHELF,
        4,
        &[&["--exports", "3"][..], &args[..]].concat(),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report = report.expect("JSON report");
    assert_eq!(report["config"]["exports"], 3);
    assert_eq!(report["config"]["queue_depth"], 6, "the total depth");
    assert_eq!(report["errors"]["verify_failures"], 0, "{report:#}");
    let exports = report["exports"].as_array().expect("exports");
    assert_eq!(exports.len(), 3);
    let total = report["results"]["all"]["ops"].as_u64().unwrap();
    let mut sum = 0;
    for (i, e) in exports.iter().enumerate() {
        assert_eq!(e["shelf"], SHELF);
        assert_eq!(e["slot"], 4 + i as u64);
        assert_eq!(e["capacity_sectors"], 16384);
        let ops = e["results"]["ops"].as_u64().unwrap();
        assert!(
            e["reads"].as_u64().unwrap() > 0 && e["writes"].as_u64().unwrap() > 0,
            "{e:#}"
        );
        assert!(ops * 4 > total, "e{SHELF}.{}: {ops} of {total}", 4 + i);
        assert_eq!(e["errors"]["verify_failures"], 0);
        sum += ops;
    }
    assert_eq!(sum, total, "the exports add up to the total");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("e{SHELF}.6 ")), "{stdout}");

    // The same exports as a list (--shelf and --slot are then not given).
    let json = TempFile::path_in_tmp("spread-targets.json");
    let list = format!("{SHELF}.6,{SHELF}.4");
    let out = lab
        .command_in_client(common::BENCH)
        .args(["--iface", lab.client_if(), "--targets", &list, "--json"])
        .arg(&json.0)
        .args(args)
        .output()
        .expect("run xblade-bench");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json.0).unwrap()).unwrap();
    let slots: Vec<u64> = report["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, [6, 4]);
    assert_eq!(
        report["target"]["slot"], 6,
        "the first export is the report's target"
    );
    assert_eq!(report["errors"]["verify_failures"], 0, "{report:#}");
    drop(vblades);
    drop(lab);
}
