//! `xbladectl stats`: every counter of a [`StatsReply`] as tables, and the compact number
//! formats `monitor` shares.

use crate::control::{ExportStats, InterfaceStats, LatencyStats, QueueStats, StatsReply};

use super::format::{aligned_table, human_duration, human_size, Align};

/// A table whose first column is left-aligned and the others right-aligned (numbers), two
/// spaces apart, without trailing blanks.
pub fn number_table(rows: &[Vec<String>]) -> String {
    aligned_table(rows, Align::Right)
}

/// A latency in at most 6 characters: `850ns`, `24.6us`, `512us`, `1.25ms`, `3.00s`; `-`
/// for none.
pub fn human_latency(ns: Option<u64>) -> String {
    let Some(ns) = ns else {
        return "-".to_owned();
    };
    if ns < 1000 {
        return format!("{ns}ns");
    }
    let mut value = ns as f64 / 1000.0;
    for unit in ["us", "ms"] {
        if value < 999.5 {
            return with_precision(value, unit);
        }
        value /= 1000.0;
    }
    if value < 999.5 {
        with_precision(value, "s")
    } else {
        format!("{:.0}s", value.min(99_999.0))
    }
}

/// `value` with 2, 1 or 0 decimals so that it takes at most 4 characters (below 999.5).
fn with_precision(value: f64, unit: &str) -> String {
    if value < 9.995 {
        format!("{value:.2}{unit}")
    } else if value < 99.95 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// A rate or count in at most 6 characters: `0`, `12.5`, `999.9`, `12.3k`, `4.6M`, `1.2G`.
pub fn human_rate(value: f64) -> String {
    if !(value.is_finite() && value > 0.0) {
        return "0".to_owned();
    }
    if value < 999.95 {
        return if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.1}")
        };
    }
    let mut value = value / 1000.0;
    for unit in ["k", "M", "G", "T"] {
        if value < 999.95 {
            return format!("{value:.1}{unit}");
        }
        value /= 1000.0;
    }
    "huge".to_owned()
}

/// The share of `busy_ns` in `busy_ns + idle_ns`, as `42.0%`; `-` when both are 0.
pub fn busy_percent(busy_ns: u64, idle_ns: u64) -> String {
    let total = busy_ns.saturating_add(idle_ns);
    if total == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", busy_ns as f64 * 100.0 / total as f64)
}

fn latency_of(latency: &LatencyStats, ns: u64) -> String {
    human_latency((latency.count > 0).then_some(ns))
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn export_rows(exports: &[ExportStats]) -> String {
    let mut rows = vec![header(&[
        "EXPORT",
        "READS",
        "WRITES",
        "OTHER",
        "READ",
        "WRITTEN",
        "ATA-ERR",
        "AOE-ERR",
        "DISK-ERR",
        "MASKED",
        "RESERVED",
        "LOCKED",
        "IN-FLIGHT",
    ])];
    rows.extend(exports.iter().map(|e| {
        vec![
            e.name.clone(),
            e.reads.to_string(),
            e.writes.to_string(),
            e.other.to_string(),
            human_size(e.read_bytes),
            human_size(e.written_bytes),
            e.ata_errors.to_string(),
            e.aoe_errors.to_string(),
            e.disk_errors.to_string(),
            e.refused_masked.to_string(),
            e.refused_reserved.to_string(),
            e.refused_locked.to_string(),
            e.in_flight.to_string(),
        ]
    }));
    let mut out = number_table(&rows);
    out.push('\n');
    // End to end, then (of the requests that went to the disk) the disk's part and
    // xblade's.
    let mut rows = vec![header(&[
        "EXPORT",
        "ANSWERED",
        "P50",
        "P99",
        "P99.9",
        "MAX",
        "DISK-IO",
        "DISK:P50",
        "DISK:P99",
        "XBLADE:P50",
        "XBLADE:P99",
    ])];
    rows.extend(exports.iter().map(|e| {
        let (l, d, x) = (&e.latency, &e.disk_latency, &e.xblade_latency);
        vec![
            e.name.clone(),
            l.count.to_string(),
            latency_of(l, l.p50_ns),
            latency_of(l, l.p99_ns),
            latency_of(l, l.p999_ns),
            latency_of(l, l.max_ns),
            d.count.to_string(),
            latency_of(d, d.p50_ns),
            latency_of(d, d.p99_ns),
            latency_of(x, x.p50_ns),
            latency_of(x, x.p99_ns),
        ]
    }));
    out.push_str(&number_table(&rows));
    out
}

/// `eth1:0`: an interface and one of its RX queues.
pub fn queue_name(q: &QueueStats) -> String {
    format!("{}:{}", q.interface, q.queue)
}

fn queue_rows(queues: &[QueueStats]) -> String {
    let mut rows = vec![header(&[
        "QUEUE",
        "RX-FRAMES",
        "TX-FRAMES",
        "MALFORMED",
        "NOT-FOR-US",
        "RESPONSE",
        "MISMATCH",
        "NO-BUFFER",
        "MASKED",
        "BOUNCED",
        "MERGED",
        "BUSY",
    ])];
    rows.extend(queues.iter().map(|q| {
        vec![
            queue_name(q),
            q.rx_frames.to_string(),
            q.tx_frames.to_string(),
            q.dropped_malformed.to_string(),
            q.dropped_not_for_us.to_string(),
            q.dropped_response.to_string(),
            q.dropped_config_mismatch.to_string(),
            q.dropped_no_buffer.to_string(),
            q.dropped_masked.to_string(),
            q.bounced.to_string(),
            q.merged.to_string(),
            busy_percent(q.busy_ns, q.idle_ns),
        ]
    }));
    let mut out = number_table(&rows);
    out.push('\n');
    let mut rows = vec![header(&[
        "QUEUE",
        "XSK:RX_DROPPED",
        "RX_RING_FULL",
        "RX_FILL_RING_EMPTY",
        "TX_RING_EMPTY",
        "RX_INVALID",
        "TX_INVALID",
        "FILL-DEPTH",
    ])];
    rows.extend(queues.iter().map(|q| {
        vec![
            queue_name(q),
            q.xsk.rx_dropped.to_string(),
            q.xsk.rx_ring_full.to_string(),
            q.xsk.rx_fill_ring_empty_descs.to_string(),
            q.xsk.tx_ring_empty_descs.to_string(),
            q.xsk.rx_invalid_descs.to_string(),
            q.xsk.tx_invalid_descs.to_string(),
            q.fill_depth_frames.to_string(),
        ]
    }));
    out.push_str(&number_table(&rows));
    out
}

fn interface_rows(interfaces: &[InterfaceStats]) -> String {
    let mut rows = vec![header(&[
        "INTERFACE",
        "XDP:REDIRECT",
        "PASS:NOT-AOE",
        "PASS:RESPONSE",
        "PASS:OTHER",
        "PASS:NO-SOCKET",
        "DROP:ACL",
        "DROP:MALFORMED",
    ])];
    rows.extend(interfaces.iter().map(|i| {
        vec![
            i.name.clone(),
            i.xdp_redirect.to_string(),
            i.xdp_pass_not_aoe.to_string(),
            i.xdp_pass_response.to_string(),
            i.xdp_pass_other_target.to_string(),
            i.xdp_pass_no_socket.to_string(),
            i.xdp_drop_acl.to_string(),
            i.xdp_drop_malformed.to_string(),
        ]
    }));
    number_table(&rows)
}

/// `xbladectl stats`: counters since start (or since a reload replaced the export).
pub fn format_stats(stats: &StatsReply) -> String {
    let mut out = format!(
        "xblade {}, pid {}, up {}: counts since start (an export's since it was last replaced)\n\n",
        stats.version,
        stats.pid,
        human_duration(stats.uptime_ns / 1_000_000_000),
    );
    if stats.exports.is_empty() {
        out.push_str("no exports\n");
    } else {
        out.push_str(&export_rows(&stats.exports));
    }
    out.push('\n');
    if stats.queues.is_empty() {
        out.push_str("no queues (no interface is attached)\n");
    } else {
        out.push_str(&queue_rows(&stats.queues));
        out.push('\n');
        out.push_str(&interface_rows(&stats.interfaces));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::tests::sample_stats;

    #[test]
    fn compact_numbers() {
        assert_eq!(human_latency(None), "-");
        assert_eq!(human_latency(Some(850)), "850ns");
        assert_eq!(human_latency(Some(24_575)), "24.6us");
        assert_eq!(human_latency(Some(9_999)), "10.0us");
        assert_eq!(human_latency(Some(999_999)), "1.00ms");
        assert_eq!(human_latency(Some(1_250_000)), "1.25ms");
        assert_eq!(human_latency(Some(3_000_000_000)), "3.00s");
        assert_eq!(human_latency(Some(u64::MAX)), "99999s");
        assert_eq!(human_rate(0.0), "0");
        assert_eq!(human_rate(-3.0), "0");
        assert_eq!(human_rate(f64::NAN), "0");
        assert_eq!(human_rate(12.0), "12");
        assert_eq!(human_rate(12.54), "12.5");
        assert_eq!(human_rate(999.96), "1.0k");
        assert_eq!(human_rate(12_345.0), "12.3k");
        assert_eq!(human_rate(4.6e6), "4.6M");
        assert_eq!(human_rate(1e18), "huge");
        for v in [0.5, 999.9, 999_949.0, 9.9e8, 9.9e14] {
            assert!(human_rate(v).len() <= 6, "{v}");
        }
        assert_eq!(busy_percent(0, 0), "-");
        assert_eq!(busy_percent(1, 3), "25.0%");
    }

    #[test]
    fn stats_tables() {
        assert_eq!(
            format_stats(&sample_stats()),
            "xblade 0.1.0, pid 4242, up 1h00m: counts since start (an export's since it was last replaced)\n\
             \n\
             EXPORT  READS  WRITES  OTHER     READ    WRITTEN  ATA-ERR  AOE-ERR  DISK-ERR  MASKED  RESERVED  LOCKED  IN-FLIGHT\n\
             e1.0     1200     800     12  1.2 MiB  800.0 KiB        0        1         0       0         0       0          2\n\
             \n\
             EXPORT  ANSWERED     P50     P99   P99.9     MAX  DISK-IO  DISK:P50  DISK:P99  XBLADE:P50  XBLADE:P99\n\
             e1.0        2012  24.6us  57.3us  90.1us  88.0us     2000    20.5us    49.2us      4.09us      8.19us\n\
             \n\
             QUEUE   RX-FRAMES  TX-FRAMES  MALFORMED  NOT-FOR-US  RESPONSE  MISMATCH  NO-BUFFER  MASKED  BOUNCED  MERGED  BUSY\n\
             eth1:0       2013       2012          1           0         0         0          0       0        0       0  0.0%\n\
             \n\
             QUEUE   XSK:RX_DROPPED  RX_RING_FULL  RX_FILL_RING_EMPTY  TX_RING_EMPTY  RX_INVALID  TX_INVALID  FILL-DEPTH\n\
             eth1:0               0             5                   0              0           0           0         512\n\
             \n\
             INTERFACE  XDP:REDIRECT  PASS:NOT-AOE  PASS:RESPONSE  PASS:OTHER  PASS:NO-SOCKET  DROP:ACL  DROP:MALFORMED\n\
             eth1               2013            40              0           0               0         0               0\n"
        );
    }
}
