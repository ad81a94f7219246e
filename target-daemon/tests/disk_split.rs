//! A disk request's latency splits into the disk's part and xblade's, and the split adds
//! up: pipelined reads and writes (depth 16, adjacent LBAs, so that some are merged) to two
//! exports backed by files on a real filesystem, one on the io_uring engine and one on the
//! synchronous engine, are each counted once in both parts, and the parts agree with the
//! end-to-end latency of the same requests, read from `xbladectl stats --json`, `xbladectl
//! stats`, `/metrics` and the exit summary. Needs root; skips with a printed reason
//! otherwise.
//!
//! What must hold, per disk request: `end_to_end = disk + xblade` exactly, all three
//! non-negative. Hence, over the requests of an interval (the difference of two readings):
//! * the three counts are equal, and equal the number of disk requests sent;
//! * `sum(end_to_end) = sum(disk) + sum(xblade)` exactly (sums are exact);
//! * the parts never exceed the whole: each quantile of `disk` and of `xblade` is at most the
//!   same quantile of `end_to_end` (a bucket is a monotonic function of the value, and the
//!   same rank is read);
//! * the whole is at most the parts' upper quartiles: at most a quarter of the requests have
//!   `disk > disk_p75`, at most a quarter `xblade > xblade_p75`, so at least half have
//!   `end_to_end <= disk_p75 + xblade_p75`; a reported quantile overstates by less than
//!   12.5 %, so `end_to_end_p50 < 1.125 * (disk_p75 + xblade_p75)`.
//!
//! `disk_p50 + xblade_p50 = end_to_end_p50` is NOT an invariant (medians do not add: they do
//! only when one part is nearly constant), so it is not tested.

mod common;

use std::time::Duration;

use common::{
    initiator_for, metric, metrics_addr, scrape_metrics, xbladectl, ConfigFile, Daemon, ExportSpec,
    TempDir,
};
use serde_json::Value;
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 8 << 20;
/// Reads and as many writes per export.
const REQUESTS: u64 = 256;
const DEPTH: usize = 16;
/// No retransmission may happen (it would be another disk request).
const REPLY_MS: u64 = 5000;

fn stats(lab: &Lab, config: &ConfigFile, args: &[&str]) -> String {
    let (status, stdout, stderr) = xbladectl(lab, &config.control, args);
    assert!(status.success(), "xbladectl {args:?}: {status}: {stderr}");
    stdout
}

fn export_json(lab: &Lab, config: &ConfigFile, name: &str) -> Value {
    let stdout = stats(lab, config, &["--json", "stats", name]);
    let reply: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("xbladectl --json stats: {e}: {stdout:?}"));
    reply["exports"][0].clone()
}

/// A histogram as `(upper_bound_ns, count)` buckets, plus its exact count and sum.
#[derive(Debug)]
struct Reading {
    buckets: Vec<(u64, u64)>,
    count: u64,
    sum_ns: u64,
}

impl Reading {
    fn of(export: &Value, field: &str) -> Reading {
        let h = &export[field];
        let number = |v: &Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("{field}: not a number in {h}"))
        };
        Reading {
            buckets: h["buckets"]
                .as_array()
                .unwrap_or_else(|| panic!("{field}.buckets missing in {export}"))
                .iter()
                .map(|b| (number(&b[0]), number(&b[1])))
                .collect(),
            count: number(&h["count"]),
            sum_ns: number(&h["sum_ns"]),
        }
    }

    /// This reading minus an earlier one of the same histogram.
    fn since(&self, earlier: &Reading) -> Reading {
        let before = |bound: u64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, n)| *n)
        };
        Reading {
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, n)| (bound, n - before(bound)))
                .collect(),
            count: self.count - earlier.count,
            sum_ns: self.sum_ns - earlier.sum_ns,
        }
    }

    /// The upper bound of the bucket holding rank `ceil(quantile * count)` (the daemon's
    /// definition).
    fn quantile_ns(&self, quantile: f64) -> u64 {
        let total: u64 = self.buckets.iter().map(|(_, n)| n).sum();
        let rank = ((quantile * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(bound, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return bound;
            }
        }
        panic!("empty histogram: {self:?}")
    }
}

#[test]
fn a_disk_requests_latency_splits_into_parts_that_add_up() {
    require_root!();
    let lab = Lab::new("split", LabOptions::default()).expect("lab");
    // Under the test's temp dir: a real filesystem (ext4 here), so O_DIRECT and io_uring.
    let dir = TempDir::new("split");
    let iface = lab.target_if().to_owned();
    let mut config = ConfigFile::new(&dir);
    config.exports = vec![
        ExportSpec::new(1, 0, dir.image("uring.img", IMAGE_BYTES), &[&iface]),
        ExportSpec::new(1, 1, dir.image("sync.img", IMAGE_BYTES), &[&iface]),
    ];
    // The defaults' engine for e1.0; the last table (e1.1) gets the synchronous one.
    let text = config
        .toml()
        .replace("[defaults]\n", "[defaults]\nio_engine = \"uring\"\n")
        + "io_engine = \"sync\"\n";
    common::write_atomically(&config.path, &text);
    let daemon = Daemon::start_config(
        &lab,
        &dir,
        &config.path,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&lab, &config.control);

    let mut disk_requests = 0;
    for (slot, name) in [(0u8, "e1.0"), (1, "e1.1")] {
        let mut client = initiator_for(&lab, lab.client_if(), 1, slot, REPLY_MS, 0);
        // Discovery went through the worker (a Query Config: no disk).
        let before = export_json(&lab, &config, name);
        let sector = |i: u64| vec![(i % 251) as u8; 512];
        let write = |c: &mut aoe_initiator::Initiator, i: u64| {
            c.submit_write(i, &sector(i), i).expect("submit write")
        };
        assert_eq!(
            common::pipelined(&mut client, DEPTH, REQUESTS, write, |_| {}),
            REQUESTS
        );
        let read =
            |c: &mut aoe_initiator::Initiator, i: u64| c.submit_read(i, 1, i).expect("submit read");
        let check = |c: &aoe_initiator::Completion<'_>| {
            assert!(c.data == &sector(c.user)[..], "{name}: lba {}", c.user)
        };
        assert_eq!(
            common::pipelined(&mut client, DEPTH, REQUESTS, read, check),
            REQUESTS
        );
        assert_eq!(
            client.stats().retransmits,
            0,
            "{name}: the initiator retransmitted: the daemon saw more requests than sent"
        );
        let after = export_json(&lab, &config, name);
        let sent = 2 * REQUESTS;
        disk_requests += sent;

        // Every disk request in both parts, once; nothing else in them.
        let [end_to_end, disk, xblade] = ["latency", "disk_latency", "xblade_latency"]
            .map(|field| Reading::of(&after, field).since(&Reading::of(&before, field)));
        assert_eq!(
            (end_to_end.count, disk.count, xblade.count),
            (sent, sent, sent),
            "{name}: {after}"
        );
        assert_eq!(
            Reading::of(&after, "disk_latency").count,
            sent,
            "{name}: only disk requests are split: {after}"
        );
        // Per request the parts add up to the whole, so the exact sums do.
        assert_eq!(
            end_to_end.sum_ns,
            disk.sum_ns + xblade.sum_ns,
            "{name}: {end_to_end:?} {disk:?} {xblade:?}"
        );
        for q in [0.5, 0.99] {
            let e = end_to_end.quantile_ns(q);
            assert!(
                disk.quantile_ns(q) <= e && xblade.quantile_ns(q) <= e,
                "{name}: a part's q{q} exceeds the whole's {e}: {disk:?} {xblade:?}"
            );
        }
        let e50 = end_to_end.quantile_ns(0.5) as f64;
        let parts75 = (disk.quantile_ns(0.75) + xblade.quantile_ns(0.75)) as f64;
        assert!(
            e50 < 1.125 * parts75,
            "{name}: end-to-end p50 {e50} ns is above the parts' p75s ({parts75} ns) by more than the bucket error"
        );
        eprintln!(
            "{name}: end-to-end p50 {} ns; disk p50 {} ns; xblade p50 {} ns",
            end_to_end.quantile_ns(0.5),
            disk.quantile_ns(0.5),
            xblade.quantile_ns(0.5)
        );

        // The same counts in /metrics.
        let body = scrape_metrics(&lab, metrics);
        for family in [
            "xblade_disk_duration_seconds_count",
            "xblade_service_overhead_seconds_count",
        ] {
            assert_eq!(
                metric(&body, family, &[("export", name)]),
                Some(sent as f64),
                "{family}{{export={name}}} in:\n{body}"
            );
        }
    }

    // The human table: DISK-IO counts the disk requests of each export.
    let table = stats(&lab, &config, &["stats"]);
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.contains("DISK-IO"))
        .unwrap_or_else(|| panic!("no DISK-IO column in:\n{table}"))
        .split_whitespace()
        .collect();
    let column = header.iter().position(|&h| h == "DISK-IO").expect("column");
    eprintln!("{table}");
    for name in ["e1.0", "e1.1"] {
        let row: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.len() == header.len())
            .unwrap_or_else(|| panic!("no latency row for {name} in:\n{table}"));
        assert_eq!(row[column], (2 * REQUESTS).to_string(), "{table}");
    }

    // The exit summary's line counts them all.
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let line = exit
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("split"))
        .unwrap_or_else(|| panic!("no split line in:\n{}", exit.stdout));
    assert!(
        line.contains(&format!("disk requests {disk_requests}:")),
        "{line}"
    );
    eprintln!("{line}");
}
