//! `xbladectl monitor`: what happened between two `stats` readings, as an 80-column table
//! like `iostat -x`: rates per export (with latency quantiles over the interval alone, from
//! the difference of the two readings' histogram buckets) and drops per queue.
//!
//! Counters only grow while an export keeps its generation; an export that a reload
//! replaced (new generation) or added since the first reading counts from zero, and a
//! queue whose worker was restarted (its counters fell) counts from zero too, so no rate is
//! ever negative.

use std::collections::BTreeMap;

use crate::control::{ExportStats, LatencyStats, QueueStats, StatsReply};
use crate::stats::quantile_of;

use super::format::human_duration;
use super::stats::{busy_percent, human_latency, human_rate, queue_name};

/// Widest first column; with eight 6-character columns two spaces apart a row is then 80
/// characters.
const NAME_WIDTH: usize = 16;
const COLUMN_WIDTH: usize = 6;

/// One refresh: the header and a row per export and per queue of `after`.
pub fn format_interval(before: &StatsReply, after: &StatsReply) -> String {
    // A daemon that restarted between the readings: everything counts from zero.
    let restarted = before.pid != after.pid || after.uptime_ns < before.uptime_ns;
    let empty = StatsReply::default();
    let before = if restarted { &empty } else { before };
    let seconds = after.uptime_ns.saturating_sub(before.uptime_ns) as f64 / 1e9;
    let per_second = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let mut out = format!(
        "xblade pid {}, up {}, over the last {seconds:.1} s\n",
        after.pid,
        human_duration(after.uptime_ns / 1_000_000_000),
    );
    out.push_str(&row(&[
        "EXPORT", "r/s", "w/s", "rMB/s", "wMB/s", "inflt", "p50", "p99", "errs",
    ]));
    for e in &after.exports {
        let zero = ExportStats::default();
        let old = before
            .exports
            .iter()
            .find(|o| o.name == e.name && o.generation == e.generation)
            .unwrap_or(&zero);
        let (p50, p99) = interval_quantiles(&old.latency, &e.latency);
        out.push_str(&row(&[
            &e.name,
            &human_rate(per_second(e.reads.saturating_sub(old.reads))),
            &human_rate(per_second(e.writes.saturating_sub(old.writes))),
            &human_rate(per_second(e.read_bytes.saturating_sub(old.read_bytes)) / 1e6),
            &human_rate(per_second(e.written_bytes.saturating_sub(old.written_bytes)) / 1e6),
            &human_rate(e.in_flight as f64),
            &human_latency(p50),
            &human_latency(p99),
            &human_rate(errors(e).saturating_sub(errors(old)) as f64),
        ]));
    }
    out.push_str(&row(&["QUEUE", "rx/s", "tx/s", "drop/s", "xsk/s", "busy"]));
    for q in &after.queues {
        let zero = QueueStats::default();
        let old = before
            .queues
            .iter()
            .find(|o| o.interface == q.interface && o.queue == q.queue)
            .filter(|o| o.rx_frames <= q.rx_frames && o.busy_ns <= q.busy_ns)
            .unwrap_or(&zero);
        out.push_str(&row(&[
            &queue_name(q),
            &human_rate(per_second(q.rx_frames.saturating_sub(old.rx_frames))),
            &human_rate(per_second(q.tx_frames.saturating_sub(old.tx_frames))),
            &human_rate(per_second(drops(q).saturating_sub(drops(old)))),
            &human_rate(per_second(xsk_drops(q).saturating_sub(xsk_drops(old)))),
            &busy_percent(
                q.busy_ns.saturating_sub(old.busy_ns),
                q.idle_ns.saturating_sub(old.idle_ns),
            ),
        ]));
    }
    out
}

/// Requests answered with an error (disk errors are among the ATA errors).
fn errors(e: &ExportStats) -> u64 {
    e.ata_errors + e.aoe_errors
}

/// Frames the worker dropped, for any reason.
fn drops(q: &QueueStats) -> u64 {
    q.dropped_malformed
        + q.dropped_not_for_us
        + q.dropped_response
        + q.dropped_config_mismatch
        + q.dropped_no_buffer
        + q.dropped_masked
}

/// Frames the kernel dropped before the worker saw them (`XDP_STATISTICS`).
fn xsk_drops(q: &QueueStats) -> u64 {
    q.xsk.rx_dropped + q.xsk.rx_ring_full + q.xsk.rx_invalid_descs + q.xsk.tx_invalid_descs
}

/// p50 and p99 of the samples recorded between two readings of one histogram; `None`
/// without samples.
pub fn interval_quantiles(
    before: &LatencyStats,
    after: &LatencyStats,
) -> (Option<u64>, Option<u64>) {
    let old: BTreeMap<u64, u64> = before.buckets.iter().map(|&[b, n]| (b, n)).collect();
    let diff: Vec<(u64, u64)> = after
        .buckets
        .iter()
        .map(|&[bound, n]| {
            (
                bound,
                n.saturating_sub(old.get(&bound).copied().unwrap_or(0)),
            )
        })
        .collect();
    if diff.iter().all(|&(_, n)| n == 0) {
        return (None, None);
    }
    let q = |quantile| Some(quantile_of(diff.iter().copied(), quantile));
    (q(0.5), q(0.99))
}

/// One line: the name left-aligned in [`NAME_WIDTH`] (shortened in the middle if longer),
/// the values right-aligned in [`COLUMN_WIDTH`].
fn row(cells: &[&str]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i == 0 {
            line.push_str(&format!("{:<NAME_WIDTH$}", fit_name(cell)));
        } else {
            line.push_str(&format!("  {cell:>COLUMN_WIDTH$}"));
        }
    }
    let mut line = line.trim_end().to_owned();
    line.push('\n');
    line
}

fn fit_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= NAME_WIDTH {
        return name.to_owned();
    }
    let keep = NAME_WIDTH - 1;
    let head: String = chars[..keep / 2].iter().collect();
    let tail: String = chars[chars.len() - (keep - keep / 2)..].iter().collect();
    format!("{head}~{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::XskStats;

    fn export(name: &str, generation: u64, reads: u64, buckets: Vec<[u64; 2]>) -> ExportStats {
        ExportStats {
            name: name.into(),
            generation,
            reads,
            read_bytes: reads * 1024,
            latency: LatencyStats {
                count: buckets.iter().map(|b| b[1]).sum(),
                buckets,
                ..LatencyStats::default()
            },
            ..ExportStats::default()
        }
    }

    fn reading(uptime_ns: u64, exports: Vec<ExportStats>, queues: Vec<QueueStats>) -> StatsReply {
        StatsReply {
            pid: 7,
            uptime_ns,
            exports,
            queues,
            ..StatsReply::default()
        }
    }

    #[test]
    fn rates_and_interval_quantiles() {
        let before = reading(
            1_000_000_000,
            vec![export("e1.0", 1, 100, vec![[20_479, 100]])],
            vec![QueueStats {
                interface: "eth1".into(),
                rx_frames: 100,
                busy_ns: 100,
                idle_ns: 100,
                ..QueueStats::default()
            }],
        );
        // Over 2 s: 200 more reads, all slower than the first 100.
        let after = reading(
            3_000_000_000,
            vec![export("e1.0", 1, 300, vec![[20_479, 100], [90_111, 200]])],
            vec![QueueStats {
                interface: "eth1".into(),
                rx_frames: 300,
                dropped_malformed: 4,
                busy_ns: 300,
                idle_ns: 700,
                xsk: XskStats {
                    rx_ring_full: 2,
                    ..XskStats::default()
                },
                ..QueueStats::default()
            }],
        );
        assert_eq!(
            format_interval(&before, &after),
            "xblade pid 7, up 3s, over the last 2.0 s\n\
             EXPORT               r/s     w/s   rMB/s   wMB/s   inflt     p50     p99    errs\n\
             e1.0                 100       0     0.1       0       0  90.1us  90.1us       0\n\
             QUEUE               rx/s    tx/s  drop/s   xsk/s    busy\n\
             eth1:0               100       0       2       1   25.0%\n"
        );
    }

    #[test]
    fn a_replaced_export_or_a_restarted_worker_never_gives_negative_rates() {
        let before = reading(
            1_000_000_000,
            vec![export("e1.0", 1, 1_000_000, vec![[20_479, 1_000_000]])],
            vec![QueueStats {
                interface: "eth1".into(),
                rx_frames: 1_000_000,
                ..QueueStats::default()
            }],
        );
        let after = reading(
            2_000_000_000,
            vec![export("e1.0", 2, 50, vec![[4095, 50]])],
            vec![QueueStats {
                interface: "eth1".into(),
                rx_frames: 10,
                ..QueueStats::default()
            }],
        );
        let text = format_interval(&before, &after);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "e1.0                  50       0     0.1       0       0  4.09us  4.09us       0"
        );
        assert_eq!(
            lines[4],
            "eth1:0                10       0       0       0       -"
        );
        // A daemon that restarted (another pid) counts from zero too.
        let mut other = after.clone();
        other.pid = 8;
        other.uptime_ns = 500_000_000;
        assert!(format_interval(&before, &other).contains("over the last 0.5 s"));
    }

    #[test]
    fn the_widest_case_fits_eighty_columns() {
        // Every column at its widest over one second.
        let big = 999_000_000_000_000;
        let e = ExportStats {
            name: "e65535.255".into(),
            reads: big,
            writes: big,
            read_bytes: big,
            written_bytes: big,
            ata_errors: big,
            in_flight: big,
            latency: LatencyStats {
                buckets: vec![[u64::MAX, big]],
                ..LatencyStats::default()
            },
            ..ExportStats::default()
        };
        let q = QueueStats {
            interface: "enp129s0f1np1v2".into(),
            queue: 4095,
            rx_frames: big,
            tx_frames: big,
            dropped_malformed: big,
            busy_ns: big,
            xsk: XskStats {
                rx_dropped: big,
                ..XskStats::default()
            },
            ..QueueStats::default()
        };
        let before = reading(0, vec![], vec![]);
        let after = reading(1_000_000_000, vec![e], vec![q]);
        let text = format_interval(&before, &after);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
        }
        assert!(
            text.contains(
                "\ne65535.255        999.0T  999.0T  999.0M  999.0M  999.0T  99999s  99999s  999.0T\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nenp129s~1v2:4095  "), "{text}");
    }
}
