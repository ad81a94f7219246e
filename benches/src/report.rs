//! The run's report: one serialisable value, printed as a table on stdout and written as
//! JSON with `--json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::packet::{RxVersion, TxMethod};
use crate::stats::{op_summary, ErrorCounts, ExportStats, LoopCounts, OpSummary, Stats};
use crate::workload::Pattern;

/// The target as discovery and IDENTIFY found it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub iface: String,
    pub shelf: u16,
    pub slot: u8,
    pub mac: String,
    pub capacity_sectors: u64,
    /// Sectors per frame the target advertises.
    pub advertised_sectors: u8,
    /// Requests the target queues per initiator before dropping.
    pub buffer_count: u16,
    pub firmware_version: u16,
    pub mtu: u32,
}

/// The workload and transport actually used.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigReport {
    /// Requests in flight over all exports together.
    pub queue_depth: usize,
    /// Exports the load is spread over (round robin per request).
    pub exports: usize,
    pub read_pct: u8,
    pub sectors: u8,
    pub request_bytes: usize,
    pub pattern: Pattern,
    pub span_sectors: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub verify: bool,
    pub timeout_ms: u64,
    pub retries: u32,
    pub seed: u64,
    pub tx: TxMethod,
    pub rx_ring: RxVersion,
    pub rx_ring_bytes: usize,
    pub rx_block_bytes: u32,
    pub rx_block_timeout_ms: u32,
    pub spin_us: u64,
    /// New requests per second at most (0: no limit).
    pub max_iops: u64,
}

/// Performance in the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub seconds: f64,
    pub read: OpSummary,
    pub write: OpSummary,
    pub all: OpSummary,
}

/// CPU the generator itself used in the measured window.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuReport {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / wall time: 1.0 is one core fully busy.
    pub cores: f64,
    /// CPU microseconds per completed request.
    pub us_per_op: f64,
}

/// CPU the target process (--target-pid) used in the measured window, read from
/// /proc/PID/stat at its start and end.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TargetCpuReport {
    pub pid: u32,
    /// utime + stime in clock ticks at the start and the end of the measured window.
    pub ticks_start: u64,
    pub ticks_end: u64,
    pub clock_ticks_per_s: u64,
    /// CPU seconds in the window.
    pub seconds: f64,
    /// CPU microseconds per request completed in the window (None without requests).
    pub us_per_request: Option<f64>,
}

impl TargetCpuReport {
    pub fn new(pid: u32, ticks: (u64, u64), hz: u64, ops: u64) -> TargetCpuReport {
        let seconds = ticks.1.saturating_sub(ticks.0) as f64 / hz.max(1) as f64;
        TargetCpuReport {
            pid,
            ticks_start: ticks.0,
            ticks_end: ticks.1,
            clock_ticks_per_s: hz,
            seconds,
            us_per_request: (ops > 0).then(|| seconds * 1e6 / ops as f64),
        }
    }
}

/// Batching of the event loop (whole run).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct IoReport {
    #[serde(flatten)]
    pub counts: LoopCounts,
    pub frames_per_send: f64,
    pub frames_per_receiving_turn: f64,
}

/// One export's share of the run.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub shelf: u16,
    pub slot: u8,
    pub mac: String,
    pub capacity_sectors: u64,
    pub advertised_sectors: u8,
    pub buffer_count: u16,
    /// Sectors of this export used, from LBA 0.
    pub span_sectors: u64,
    /// Requests completed in the measured window.
    pub reads: u64,
    pub writes: u64,
    /// Reads and writes together (no `cdf`: the run's is in `results`).
    pub results: OpSummary,
    /// This export's part of all requests completed in the measured window.
    pub share: f64,
    /// Failures of this export's requests (whole run); stray replies and ring drops are
    /// counted only in the run's `errors`.
    pub errors: ErrorCounts,
}

impl ExportReport {
    /// `target` as discovery found it, `stats` as the run measured it over `seconds`.
    pub fn new(
        target: &TargetReport,
        span_sectors: u64,
        stats: &ExportStats,
        seconds: f64,
        total_ops: u64,
    ) -> ExportReport {
        let mut results = op_summary(&stats.all, seconds);
        results.cdf = Vec::new();
        ExportReport {
            shelf: target.shelf,
            slot: target.slot,
            mac: target.mac.clone(),
            capacity_sectors: target.capacity_sectors,
            advertised_sectors: target.advertised_sectors,
            buffer_count: target.buffer_count,
            span_sectors,
            reads: stats.reads,
            writes: stats.writes,
            share: if total_ops > 0 {
                results.ops as f64 / total_ops as f64
            } else {
                0.0
            },
            results,
            errors: stats.errors,
        }
    }
}

/// How evenly the load fell on the exports (IOPS per export in the measured window).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Balance {
    pub min_iops: f64,
    pub max_iops: f64,
    /// max / min (1.0: perfectly even).
    pub max_over_min: f64,
}

impl Balance {
    pub fn of(exports: &[ExportReport]) -> Option<Balance> {
        let iops = exports.iter().map(|e| e.results.iops);
        let min = iops.clone().fold(f64::INFINITY, f64::min);
        let max = iops.fold(0.0, f64::max);
        (!exports.is_empty()).then_some(Balance {
            min_iops: min,
            max_iops: max,
            max_over_min: if min > 0.0 { max / min } else { f64::INFINITY },
        })
    }
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The first export (the only one without `--exports`/`--targets`).
    pub target: TargetReport,
    pub config: ConfigReport,
    /// Over all exports together.
    pub results: Results,
    /// Each export's share, in the order given.
    pub exports: Vec<ExportReport>,
    /// Spread of the per-export IOPS (absent when no export completed anything).
    pub balance: Option<Balance>,
    /// Counted over the whole run, warm-up and final drain included.
    pub errors: ErrorCounts,
    pub cpu: CpuReport,
    /// The target's CPU in the measured window (with --target-pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<TargetCpuReport>,
    /// How the event loop ran (whole run).
    pub io: IoReport,
    /// Requests still unanswered when the final drain gave up.
    pub abandoned: usize,
    pub interrupted: bool,
    /// The first verify failures and failed requests, as text.
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(
        target: TargetReport,
        config: ConfigReport,
        stats: &Stats,
        seconds: f64,
        cpu: (f64, f64),
    ) -> Report {
        let all = op_summary(&stats.combined(), seconds);
        let all_ops = all.ops;
        let (user_s, sys_s) = cpu;
        Report {
            target,
            config,
            results: Results {
                seconds,
                read: op_summary(&stats.read, seconds),
                write: op_summary(&stats.write, seconds),
                all,
            },
            exports: Vec::new(),
            balance: None,
            errors: stats.errors,
            io: IoReport {
                counts: stats.io,
                frames_per_send: stats.io.frames_per_send(),
                frames_per_receiving_turn: stats.io.frames_per_receiving_turn(),
            },
            cpu: CpuReport {
                user_s,
                sys_s,
                cores: if seconds > 0.0 {
                    (user_s + sys_s) / seconds
                } else {
                    0.0
                },
                us_per_op: if all_ops > 0 {
                    (user_s + sys_s) * 1e6 / all_ops as f64
                } else {
                    0.0
                },
            },
            target_cpu: None,
            abandoned: 0,
            interrupted: false,
            failures: Vec::new(),
        }
    }

    /// Sets the per-export part of the report.
    pub fn set_exports(&mut self, exports: Vec<ExportReport>) {
        self.balance = Balance::of(&exports);
        self.exports = exports;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let t = &self.target;
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "target   {}.{} ({}) on {}: {} sectors ({:.1} MiB), {} sectors/frame advertised, \
             buffer count {}, MTU {}",
            t.shelf,
            t.slot,
            t.mac,
            t.iface,
            t.capacity_sectors,
            t.capacity_sectors as f64 * 512.0 / 1048576.0,
            t.advertised_sectors,
            t.buffer_count,
            t.mtu
        );
        if self.exports.len() > 1 {
            let _ = writeln!(
                s,
                "exports  {} (each new request to the next in turn), {} in flight each on average",
                self.exports.len(),
                c.queue_depth as f64 / self.exports.len() as f64
            );
        }
        let _ = writeln!(
            s,
            "workload {:?} {}% read, {} sectors ({} B) per request, queue depth {}{}, span {} \
             sectors{}, {:.1} s after {:.1} s warm-up, verify {}, timeout {} ms x {} retries, seed {}",
            c.pattern,
            c.read_pct,
            c.sectors,
            c.request_bytes,
            c.queue_depth,
            if c.exports > 1 { " in all" } else { "" },
            c.span_sectors,
            if c.exports > 1 { " per export" } else { "" },
            c.duration_s,
            c.warmup_s,
            if c.verify { "on" } else { "off" },
            c.timeout_ms,
            c.retries,
            c.seed
        );
        let _ = writeln!(
            s,
            "I/O      rx TPACKET_{:?} ring of {} KiB, tx {:?}, spin {} us{}",
            c.rx_ring,
            c.rx_ring_bytes / 1024,
            c.tx,
            c.spin_us,
            if c.max_iops > 0 {
                format!(", paced to at most {} new requests/s", c.max_iops)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "", "ops", "IOPS", "MB/s", "min", "p50", "p99", "p99.9", "max", "mean"
        );
        for (name, op) in [
            ("read", &self.results.read),
            ("write", &self.results.write),
            ("all", &self.results.all),
        ] {
            if op.ops == 0 && name != "all" {
                continue;
            }
            let _ = write!(
                s,
                "{:<6} {:>10} {:>10.0} {:>9.2}",
                name, op.ops, op.iops, op.mb_per_s
            );
            match op.latency {
                Some(l) => {
                    let _ = writeln!(
                        s,
                        " {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                        format_ns(l.min_ns),
                        format_ns(l.p50_ns),
                        format_ns(l.p99_ns),
                        format_ns(l.p99_9_ns),
                        format_ns(l.max_ns),
                        format_ns(l.mean_ns as u64)
                    );
                }
                None => {
                    let _ = writeln!(s);
                }
            }
        }
        if self.exports.len() > 1 {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<8} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>6} {:>8} {:>7}",
                "export", "ops", "IOPS", "share", "p50", "p99", "p99.9", "retx", "failed", "verify"
            );
            for x in &self.exports {
                let l = x.results.latency;
                let at = |f: fn(&crate::stats::LatencySummary) -> u64| {
                    l.as_ref()
                        .map_or_else(|| "-".to_owned(), |l| format_ns(f(l)))
                };
                let _ = writeln!(
                    s,
                    "{:<8} {:>10} {:>10.0} {:>6.2}% {:>9} {:>9} {:>9} {:>6} {:>8} {:>7}",
                    format!("e{}.{}", x.shelf, x.slot),
                    x.results.ops,
                    x.results.iops,
                    x.share * 100.0,
                    at(|l| l.p50_ns),
                    at(|l| l.p99_ns),
                    at(|l| l.p99_9_ns),
                    x.errors.retransmits,
                    x.errors.failed_requests(),
                    x.errors.verify_failures
                );
            }
            if let Some(b) = self.balance {
                let _ = writeln!(
                    s,
                    "balance  {:.0} to {:.0} IOPS per export (max/min {:.3})",
                    b.min_iops, b.max_iops, b.max_over_min
                );
            }
        }
        let e = &self.errors;
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "errors   (whole run) retransmits {}, timeouts {}, ATA errors {}, AoE errors {}, \
             bad replies {}, verify failures {}, stray replies {} ({} stale), tx drops {}, \
             rx ring drops {}",
            e.retransmits,
            e.timeouts,
            e.ata_errors,
            e.aoe_errors,
            e.bad_replies,
            e.verify_failures,
            e.stray_replies,
            e.stale_replies,
            e.tx_drops,
            e.rx_ring_drops
        );
        let _ = writeln!(
            s,
            "cpu      {:.2} cores (user {:.2} s, sys {:.2} s in {:.2} s), {:.2} us per request",
            self.cpu.cores,
            self.cpu.user_s,
            self.cpu.sys_s,
            self.results.seconds,
            self.cpu.us_per_op
        );
        let io = &self.io;
        let _ = writeln!(
            s,
            "loop     {} turns, {} slept; {:.1} frames per send, {:.1} replies per turn that had any",
            io.counts.turns, io.counts.sleeps, io.frames_per_send, io.frames_per_receiving_turn
        );
        if self.abandoned > 0 {
            let _ = writeln!(
                s,
                "abandoned {} requests still unanswered at exit",
                self.abandoned
            );
        }
        if self.interrupted {
            let _ = writeln!(s, "interrupted: the measured window was cut short");
        }
        for f in &self.failures {
            let _ = writeln!(s, "failure  {f}");
        }
        s
    }
}

/// A latency for people: "850ns", "12.3us", "4.56ms", "1.20s".
pub fn format_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Kind;

    fn sample() -> Report {
        let mut stats = Stats::new();
        for i in 0..100u64 {
            stats.record(Kind::Read, 20_000 + i * 100, 1024);
        }
        stats.record(Kind::Write, 50_000, 1024);
        stats.errors.retransmits = 3;
        let target = TargetReport {
            iface: "xbc-x".into(),
            shelf: 1,
            slot: 0,
            mac: "02:00:00:00:00:01".into(),
            capacity_sectors: 131072,
            advertised_sectors: 2,
            buffer_count: 16,
            firmware_version: 0x4019,
            mtu: 1500,
        };
        let config = ConfigReport {
            queue_depth: 16,
            exports: 1,
            read_pct: 99,
            sectors: 2,
            request_bytes: 1024,
            pattern: Pattern::Random,
            span_sectors: 131072,
            warmup_s: 1.0,
            duration_s: 2.0,
            verify: true,
            timeout_ms: 500,
            retries: 5,
            seed: 1,
            tx: TxMethod::Sendmmsg,
            rx_ring: RxVersion::V2,
            rx_ring_bytes: 2 << 20,
            rx_block_bytes: 65536,
            rx_block_timeout_ms: 1,
            spin_us: 0,
            max_iops: 0,
        };
        Report::new(target, config, &stats, 2.0, (0.5, 0.25))
    }

    #[test]
    fn rates_and_cpu_are_derived_from_the_window() {
        let r = sample();
        assert_eq!(r.results.all.ops, 101);
        assert!((r.results.all.iops - 50.5).abs() < 1e-9);
        assert!((r.results.read.mb_per_s - 0.0512).abs() < 1e-9);
        assert!((r.cpu.cores - 0.375).abs() < 1e-9);
        assert!((r.cpu.us_per_op - 750_000.0 / 101.0).abs() < 1e-6);
    }

    #[test]
    fn json_has_the_fields_scripts_read() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["results"]["all"]["ops"], 101);
        assert_eq!(v["errors"]["verify_failures"], 0);
        assert_eq!(v["errors"]["retransmits"], 3);
        assert_eq!(v["config"]["pattern"], "random");
        assert_eq!(v["config"]["tx"], "sendmmsg");
        assert_eq!(v["config"]["rx_ring"], "v2");
        assert!(v["results"]["read"]["latency"]["p99_ns"].as_u64().unwrap() >= 29_000);
        assert!(v["results"]["read"]["latency"]["p99_9_ns"].is_u64());
        assert!(v["results"]["read"]["latency"]["delayed_ops"].is_u64());
        assert!(v["results"]["read"]["latency"]["p99_undelayed_ns"].is_u64());
        assert!(
            v["results"]["seconds"].is_f64(),
            "bench_report.py divides delayed_ops by it"
        );
        assert!(v["results"]["all"]["iops"].is_f64());
        assert!(v["cpu"]["cores"].is_f64());
        assert!(v["io"]["turns"].is_u64(), "flattened counts");
        assert!(v["io"]["frames_per_send"].is_f64());
    }

    #[test]
    fn table_shows_rows_and_errors() {
        let text = sample().table();
        assert!(text.contains("read "), "{text}");
        assert!(text.contains("write "), "{text}");
        assert!(text.contains("retransmits 3"), "{text}");
        assert!(text.contains("0.38 cores"), "{text}");
        assert!(!text.contains("abandoned"), "{text}");
    }

    #[test]
    fn exports_report_their_share_and_balance() {
        let mut r = sample();
        let mut a = ExportStats::new();
        let mut b = ExportStats::new();
        for i in 0..60u64 {
            a.record(Kind::Read, 20_000 + i, 1024);
        }
        for _ in 0..41 {
            b.record(Kind::Write, 30_000, 1024);
        }
        b.errors.retransmits = 3;
        let second = TargetReport {
            slot: 1,
            ..r.target.clone()
        };
        let total = r.results.all.ops;
        let exports = vec![
            ExportReport::new(&r.target, 131072, &a, 2.0, total),
            ExportReport::new(&second, 131072, &b, 2.0, total),
        ];
        r.config.exports = 2;
        r.set_exports(exports);
        let bal = r.balance.unwrap();
        assert!((bal.min_iops - 20.5).abs() < 1e-9 && (bal.max_iops - 30.0).abs() < 1e-9);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["exports"][1]["slot"], 1);
        assert_eq!(v["exports"][0]["reads"], 60);
        assert_eq!(v["exports"][1]["writes"], 41);
        assert_eq!(v["exports"][1]["errors"]["retransmits"], 3);
        assert!(v["exports"][0]["results"]["cdf"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!((v["exports"][0]["share"].as_f64().unwrap() - 60.0 / 101.0).abs() < 1e-9);
        assert!(v["exports"][0]["results"]["latency"]["p99_ns"].is_u64());
        assert_eq!(v["config"]["exports"], 2);
        let text = r.table();
        assert!(text.contains("e1.1 "), "{text}");
        assert!(text.contains("to 30 IOPS per export"), "{text}");
        assert!(text.contains("queue depth 16 in all"), "{text}");
        assert!(
            !sample().table().contains("balance"),
            "one export: no per-export table"
        );
    }

    #[test]
    fn latencies_format_with_their_unit() {
        assert_eq!(format_ns(850), "850ns");
        assert_eq!(format_ns(12_345), "12.3us");
        assert_eq!(format_ns(4_560_000), "4.56ms");
        assert_eq!(format_ns(1_200_000_000), "1.20s");
    }
}
