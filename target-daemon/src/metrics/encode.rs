//! A [`StatsReply`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Pure: the numbers come in as a snapshot the control thread already read (the workers'
//! counters are single-writer atomics read with plain loads, never locked), and the text
//! goes out as a `String`. The families are built as plain values of the `prometheus`
//! crate's data model and written by its `TextEncoder`, which does the label escaping and
//! the `+Inf` bucket; nothing is registered anywhere and nothing outlives one scrape.
//!
//! Every family, its labels and what it counts:
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `xblade_build_info` | gauge (always 1) | `version`, `revision` |
//! | `xblade_start_time_seconds` | gauge | |
//! | `xblade_requests_total` | counter | `export`, `op` = `read`, `write`, `other` |
//! | `xblade_bytes_total` | counter | `export`, `direction` = `read`, `write` |
//! | `xblade_errors_total` | counter | `export`, `kind` = `ata`, `aoe`, `disk` |
//! | `xblade_refused_total` | counter | `export`, `reason` = `masked`, `reserved` |
//! | `xblade_in_flight` | gauge | `export` |
//! | `xblade_request_duration_seconds` | histogram | `export` |
//! | `xblade_disk_duration_seconds` | histogram | `export` |
//! | `xblade_service_overhead_seconds` | histogram | `export` |
//! | `xblade_xdp_frames_total` | counter | `interface`, `verdict` |
//! | `xblade_xsk_drops_total` | counter | `interface`, `queue`, `reason` (`struct xdp_statistics` field) |
//! | `xblade_queue_frames_total` | counter | `interface`, `queue`, `direction` = `rx`, `tx` |
//! | `xblade_queue_requests_total` | counter | `interface`, `queue`, `kind` = `bounced`, `merged` |
//! | `xblade_worker_drops_total` | counter | `interface`, `queue`, `reason` |
//! | `xblade_worker_seconds_total` | counter | `interface`, `queue`, `state` = `busy`, `idle` |
//! | `xblade_queue_fill_depth_frames` | gauge | `interface`, `queue` |
//!
//! A family with no sample (no export yet, no interface up) is left out, as Prometheus
//! client libraries do.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use crate::control::protocol::{ExportStats, LatencyStats, QueueStats, StatsReply};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The upper bounds of `xblade_request_duration_seconds`'s buckets, in ns: fixed, so that
/// every scrape (and every xblade) has the same `le` labels, from 5 µs (a request served
/// from memory on a fast NIC) to 10 s (a disk in trouble).
pub const DURATION_BOUNDS_NS: [u64; 20] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The git revision the binary was built from (set by build.rs), or `unknown`.
pub const REVISION: &str = match option_env!("XBLADE_GIT_REV") {
    Some(revision) => revision,
    None => "unknown",
};

/// The process-wide facts a [`StatsReply`] does not carry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Process<'a> {
    /// `xblade_build_info`'s labels.
    pub version: &'a str,
    pub revision: &'a str,
    /// When the daemon started, in seconds since the Unix epoch.
    pub start_time_s: f64,
}

/// Why a snapshot could not be rendered (a bug: every family built here has a name and
/// samples). The scrape gets a 500 with this message.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the metrics: {0}")]
pub struct EncodeError(#[from] prometheus::Error);

/// The whole exposition: every family of the table above, in that order.
pub fn render(stats: &StatsReply, process: &Process) -> Result<String, EncodeError> {
    let families: Vec<MetricFamily> = families(stats, process)
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect();
    let mut text = String::with_capacity(16 * 1024);
    TextEncoder::new().encode_utf8(&families, &mut text)?;
    Ok(text)
}

/// The families, empty ones included.
fn families(stats: &StatsReply, process: &Process) -> Vec<MetricFamily> {
    let mut out = vec![
        family(
            "xblade_build_info",
            "The running xblade's version and git revision; always 1.",
            MetricType::GAUGE,
            vec![gauge(
                &[("version", process.version), ("revision", process.revision)],
                1.0,
            )],
        ),
        family(
            "xblade_start_time_seconds",
            "When the daemon started, in seconds since the Unix epoch.",
            MetricType::GAUGE,
            vec![gauge(&[], process.start_time_s)],
        ),
    ];
    out.extend(export_families(&stats.exports));
    out.extend(interface_families(stats));
    out
}

fn export_families(exports: &[ExportStats]) -> Vec<MetricFamily> {
    let per_export = |values: &dyn Fn(&ExportStats) -> Vec<(&'static str, u64)>, label: &str| {
        exports
            .iter()
            .flat_map(|e| {
                values(e)
                    .into_iter()
                    .map(|(value, n)| counter(&[("export", &e.name), (label, value)], n))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    vec![
        family(
            "xblade_requests_total",
            "AoE requests answered, by export and kind: ATA reads, ATA writes, and every other command.",
            MetricType::COUNTER,
            per_export(
                &|e| vec![("read", e.reads), ("write", e.writes), ("other", e.other)],
                "op",
            ),
        ),
        family(
            "xblade_bytes_total",
            "Sector data read from and written to the export, in bytes.",
            MetricType::COUNTER,
            per_export(
                &|e| vec![("read", e.read_bytes), ("write", e.written_bytes)],
                "direction",
            ),
        ),
        family(
            "xblade_errors_total",
            "Requests answered with an ATA error (disk errors included), an AoE error, and disk I/O that failed.",
            MetricType::COUNTER,
            per_export(
                &|e| {
                    vec![
                        ("ata", e.ata_errors),
                        ("aoe", e.aoe_errors),
                        ("disk", e.disk_errors),
                    ]
                },
                "kind",
            ),
        ),
        family(
            "xblade_refused_total",
            "Requests refused: the sender is not on the mask list, another host holds the reservation, or a change from the wire to a locked export.",
            MetricType::COUNTER,
            per_export(
                &|e| {
                    vec![
                        ("masked", e.refused_masked),
                        ("reserved", e.refused_reserved),
                        ("locked", e.refused_locked),
                    ]
                },
                "reason",
            ),
        ),
        family(
            "xblade_in_flight",
            "Requests received and not yet answered, at the moment of the scrape.",
            MetricType::GAUGE,
            exports
                .iter()
                .map(|e| gauge(&[("export", &e.name)], e.in_flight as f64))
                .collect(),
        ),
        family(
            "xblade_request_duration_seconds",
            "Service latency of answered requests, from receipt to reply.",
            MetricType::HISTOGRAM,
            exports
                .iter()
                .map(|e| histogram(&[("export", &e.name)], &e.latency))
                .collect(),
        ),
        family(
            "xblade_disk_duration_seconds",
            "Of requests that went to the disk: the disk's part, from submission to completion.",
            MetricType::HISTOGRAM,
            exports
                .iter()
                .map(|e| histogram(&[("export", &e.name)], &e.disk_latency))
                .collect(),
        ),
        family(
            "xblade_service_overhead_seconds",
            "Of requests that went to the disk: xblade's part, receipt to submission plus completion to reply.",
            MetricType::HISTOGRAM,
            exports
                .iter()
                .map(|e| histogram(&[("export", &e.name)], &e.xblade_latency))
                .collect(),
        ),
    ]
}

fn interface_families(stats: &StatsReply) -> Vec<MetricFamily> {
    let xdp = stats
        .interfaces
        .iter()
        .flat_map(|i| {
            [
                ("redirect", i.xdp_redirect),
                ("pass_not_aoe", i.xdp_pass_not_aoe),
                ("pass_response", i.xdp_pass_response),
                ("pass_other_target", i.xdp_pass_other_target),
                ("pass_no_socket", i.xdp_pass_no_socket),
                ("drop_acl", i.xdp_drop_acl),
                ("drop_malformed", i.xdp_drop_malformed),
            ]
            .map(|(verdict, n)| counter(&[("interface", &i.name), ("verdict", verdict)], n))
        })
        .collect();
    let per_queue = |values: &dyn Fn(&QueueStats) -> Vec<(&'static str, f64)>, label: &str| {
        stats
            .queues
            .iter()
            .flat_map(|q| {
                let queue = q.queue.to_string();
                values(q)
                    .into_iter()
                    .map(|(value, n)| {
                        counter_f64(
                            &[
                                ("interface", &q.interface),
                                ("queue", &queue),
                                (label, value),
                            ],
                            n,
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    vec![
        family(
            "xblade_xdp_frames_total",
            "Frames the XDP program redirected to xblade, passed to the kernel or dropped, by verdict.",
            MetricType::COUNTER,
            xdp,
        ),
        family(
            "xblade_xsk_drops_total",
            "The AF_XDP socket's XDP_STATISTICS counters (struct xdp_statistics), by field.",
            MetricType::COUNTER,
            per_queue(
                &|q| {
                    let x = &q.xsk;
                    [
                        ("rx_dropped", x.rx_dropped),
                        ("rx_invalid_descs", x.rx_invalid_descs),
                        ("tx_invalid_descs", x.tx_invalid_descs),
                        ("rx_ring_full", x.rx_ring_full),
                        ("rx_fill_ring_empty_descs", x.rx_fill_ring_empty_descs),
                        ("tx_ring_empty_descs", x.tx_ring_empty_descs),
                    ]
                    .map(|(reason, n)| (reason, n as f64))
                    .to_vec()
                },
                "reason",
            ),
        ),
        family(
            "xblade_queue_frames_total",
            "Frames a worker received from and sent to its RX/TX queue.",
            MetricType::COUNTER,
            per_queue(
                &|q| vec![("rx", q.rx_frames as f64), ("tx", q.tx_frames as f64)],
                "direction",
            ),
        ),
        family(
            "xblade_queue_requests_total",
            "Requests whose data went through a bounce buffer, and requests merged into a neighbour's disk operation.",
            MetricType::COUNTER,
            per_queue(
                &|q| vec![("bounced", q.bounced as f64), ("merged", q.merged as f64)],
                "kind",
            ),
        ),
        family(
            "xblade_worker_drops_total",
            "Frames a worker dropped without an answer, by reason.",
            MetricType::COUNTER,
            per_queue(
                &|q| {
                    [
                        ("malformed", q.dropped_malformed),
                        ("not_for_us", q.dropped_not_for_us),
                        ("response", q.dropped_response),
                        ("config_mismatch", q.dropped_config_mismatch),
                        ("no_buffer", q.dropped_no_buffer),
                        ("masked", q.dropped_masked),
                    ]
                    .map(|(reason, n)| (reason, n as f64))
                    .to_vec()
                },
                "reason",
            ),
        ),
        family(
            "xblade_worker_seconds_total",
            "Time a worker spent working (busy) and waiting for events (idle).",
            MetricType::COUNTER,
            per_queue(
                &|q| vec![("busy", seconds(q.busy_ns)), ("idle", seconds(q.idle_ns))],
                "state",
            ),
        ),
        family(
            "xblade_queue_fill_depth_frames",
            "The most RX frames the kernel may hold for reception (the worker's fill depth).",
            MetricType::GAUGE,
            stats
                .queues
                .iter()
                .map(|q| {
                    let queue = q.queue.to_string();
                    gauge(
                        &[("interface", &q.interface), ("queue", &queue)],
                        q.fill_depth_frames as f64,
                    )
                })
                .collect(),
        ),
    ]
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
    Metric::from_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    )
}

fn counter(labels: &[(&str, &str)], value: u64) -> Metric {
    counter_f64(labels, value as f64)
}

fn counter_f64(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut metric = labelled(labels);
    let mut counter = Counter::default();
    counter.set_value(value);
    metric.set_counter(counter);
    metric
}

fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut metric = labelled(labels);
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    metric.set_gauge(gauge);
    metric
}

fn histogram(labels: &[(&str, &str)], latency: &LatencyStats) -> Metric {
    let cumulative = cumulative_buckets(latency);
    let mut histogram = Histogram::default();
    histogram.set_sample_count(sample_count(latency));
    histogram.set_sample_sum(seconds(latency.sum_ns));
    histogram.set_bucket(
        DURATION_BOUNDS_NS
            .iter()
            .zip(cumulative)
            .map(|(&bound_ns, count)| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(seconds(bound_ns));
                bucket.set_cumulative_count(count);
                bucket
            })
            .collect(),
    );
    let mut metric = labelled(labels);
    metric.set_histogram(histogram);
    metric
}

/// `_count` (and the `+Inf` bucket): the reply's count, or the buckets' total if a racy
/// read made that larger, so that no bucket ever exceeds `+Inf`.
fn sample_count(latency: &LatencyStats) -> u64 {
    let in_buckets: u64 = latency.buckets.iter().map(|[_, n]| n).sum();
    latency.count.max(in_buckets)
}

/// The cumulative count at each of [`DURATION_BOUNDS_NS`]. A source bucket (`[bound_ns,
/// count]`: its samples are at most `bound_ns`) counts in every fixed bucket whose bound is
/// at least `bound_ns`, so that no fixed bucket counts a sample above its `le`; a sample
/// may land one fixed bucket higher than its value, within the source histogram's
/// resolution. Source buckets above the last bound count only in `+Inf`.
pub fn cumulative_buckets(latency: &LatencyStats) -> [u64; DURATION_BOUNDS_NS.len()] {
    let mut per_bound = [0u64; DURATION_BOUNDS_NS.len()];
    for &[bound_ns, count] in &latency.buckets {
        if let Some(i) = DURATION_BOUNDS_NS.iter().position(|&b| b >= bound_ns) {
            per_bound[i] += count;
        }
    }
    let mut running = 0u64;
    per_bound.map(|n| {
        running += n;
        running
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{InterfaceStats, QueueStats, XskStats};

    const PROCESS: Process = Process {
        version: "0.1.0",
        revision: "abc123",
        start_time_s: 1_767_225_600.5,
    };

    fn sample() -> StatsReply {
        StatsReply {
            version: "0.1.0".into(),
            pid: 42,
            uptime_ns: 3_000_000_000,
            exports: vec![ExportStats {
                name: "e1.0".into(),
                shelf: 1,
                slot: 0,
                generation: 1,
                reads: 10,
                writes: 5,
                other: 2,
                read_bytes: 10 * 4096,
                written_bytes: 5 * 1024,
                ata_errors: 3,
                aoe_errors: 1,
                disk_errors: 2,
                refused_masked: 4,
                refused_reserved: 6,
                refused_locked: 8,
                in_flight: 7,
                latency: LatencyStats {
                    count: 17,
                    sum_ns: 1_500_000,
                    p50_ns: 20_000,
                    p99_ns: 900_000,
                    p999_ns: 900_000,
                    max_ns: 20_000_000_000,
                    // 3 at <= 4 µs, 5 at <= 10 µs (exactly a bound), 6 at <= 10.007 µs
                    // (just above it), 2 at <= 0.9 ms, 1 above the last bound.
                    buckets: vec![
                        [4_000, 3],
                        [10_000, 5],
                        [10_007, 6],
                        [900_000, 2],
                        [20_000_000_000, 1],
                    ],
                },
                // 15 disk requests: 9 at <= 20 µs, 6 at <= 0.9 ms on the disk; xblade's
                // part 12 at <= 4 µs, 3 at <= 10 µs.
                disk_latency: LatencyStats {
                    count: 15,
                    sum_ns: 1_200_000,
                    buckets: vec![[20_000, 9], [900_000, 6]],
                    ..LatencyStats::default()
                },
                xblade_latency: LatencyStats {
                    count: 15,
                    sum_ns: 60_000,
                    buckets: vec![[4_000, 12], [10_000, 3]],
                    ..LatencyStats::default()
                },
            }],
            queues: vec![QueueStats {
                interface: "eth\"1\\".into(),
                queue: 0,
                rx_frames: 100,
                tx_frames: 99,
                bounced: 1,
                merged: 2,
                dropped_malformed: 3,
                dropped_not_for_us: 4,
                dropped_response: 5,
                dropped_config_mismatch: 6,
                dropped_no_buffer: 7,
                dropped_masked: 9,
                busy_ns: 1_500_000_000,
                idle_ns: 250_000,
                fill_depth_frames: 1024,
                xsk: XskStats {
                    rx_dropped: 11,
                    rx_invalid_descs: 12,
                    tx_invalid_descs: 13,
                    rx_ring_full: 14,
                    rx_fill_ring_empty_descs: 15,
                    tx_ring_empty_descs: 16,
                },
            }],
            interfaces: vec![InterfaceStats {
                name: "eth\"1\\".into(),
                xdp_redirect: 100,
                xdp_pass_not_aoe: 21,
                xdp_pass_response: 22,
                xdp_pass_other_target: 23,
                xdp_pass_no_socket: 24,
                xdp_drop_acl: 25,
                xdp_drop_malformed: 26,
            }],
        }
    }

    /// The whole exposition of [`sample`], byte for byte. The interface is named
    /// `eth"1\` to check label escaping.
    const EXPECTED: &str = r#"# HELP xblade_build_info The running xblade's version and git revision; always 1.
# TYPE xblade_build_info gauge
xblade_build_info{version="0.1.0",revision="abc123"} 1
# HELP xblade_start_time_seconds When the daemon started, in seconds since the Unix epoch.
# TYPE xblade_start_time_seconds gauge
xblade_start_time_seconds 1767225600.5
# HELP xblade_requests_total AoE requests answered, by export and kind: ATA reads, ATA writes, and every other command.
# TYPE xblade_requests_total counter
xblade_requests_total{export="e1.0",op="read"} 10
xblade_requests_total{export="e1.0",op="write"} 5
xblade_requests_total{export="e1.0",op="other"} 2
# HELP xblade_bytes_total Sector data read from and written to the export, in bytes.
# TYPE xblade_bytes_total counter
xblade_bytes_total{export="e1.0",direction="read"} 40960
xblade_bytes_total{export="e1.0",direction="write"} 5120
# HELP xblade_errors_total Requests answered with an ATA error (disk errors included), an AoE error, and disk I/O that failed.
# TYPE xblade_errors_total counter
xblade_errors_total{export="e1.0",kind="ata"} 3
xblade_errors_total{export="e1.0",kind="aoe"} 1
xblade_errors_total{export="e1.0",kind="disk"} 2
# HELP xblade_refused_total Requests refused: the sender is not on the mask list, another host holds the reservation, or a change from the wire to a locked export.
# TYPE xblade_refused_total counter
xblade_refused_total{export="e1.0",reason="masked"} 4
xblade_refused_total{export="e1.0",reason="reserved"} 6
xblade_refused_total{export="e1.0",reason="locked"} 8
# HELP xblade_in_flight Requests received and not yet answered, at the moment of the scrape.
# TYPE xblade_in_flight gauge
xblade_in_flight{export="e1.0"} 7
# HELP xblade_request_duration_seconds Service latency of answered requests, from receipt to reply.
# TYPE xblade_request_duration_seconds histogram
xblade_request_duration_seconds_bucket{export="e1.0",le="0.000005"} 3
xblade_request_duration_seconds_bucket{export="e1.0",le="0.00001"} 8
xblade_request_duration_seconds_bucket{export="e1.0",le="0.000025"} 14
xblade_request_duration_seconds_bucket{export="e1.0",le="0.00005"} 14
xblade_request_duration_seconds_bucket{export="e1.0",le="0.0001"} 14
xblade_request_duration_seconds_bucket{export="e1.0",le="0.00025"} 14
xblade_request_duration_seconds_bucket{export="e1.0",le="0.0005"} 14
xblade_request_duration_seconds_bucket{export="e1.0",le="0.001"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.0025"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.005"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.01"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.025"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.05"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.1"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.25"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="0.5"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="1"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="2.5"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="5"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="10"} 16
xblade_request_duration_seconds_bucket{export="e1.0",le="+Inf"} 17
xblade_request_duration_seconds_sum{export="e1.0"} 0.0015
xblade_request_duration_seconds_count{export="e1.0"} 17
# HELP xblade_disk_duration_seconds Of requests that went to the disk: the disk's part, from submission to completion.
# TYPE xblade_disk_duration_seconds histogram
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.000005"} 0
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.00001"} 0
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.000025"} 9
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.00005"} 9
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.0001"} 9
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.00025"} 9
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.0005"} 9
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.001"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.0025"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.005"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.01"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.025"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.05"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.1"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.25"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="0.5"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="1"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="2.5"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="5"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="10"} 15
xblade_disk_duration_seconds_bucket{export="e1.0",le="+Inf"} 15
xblade_disk_duration_seconds_sum{export="e1.0"} 0.0012
xblade_disk_duration_seconds_count{export="e1.0"} 15
# HELP xblade_service_overhead_seconds Of requests that went to the disk: xblade's part, receipt to submission plus completion to reply.
# TYPE xblade_service_overhead_seconds histogram
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.000005"} 12
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.00001"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.000025"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.00005"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.0001"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.00025"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.0005"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.001"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.0025"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.005"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.01"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.025"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.05"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.1"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.25"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="0.5"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="1"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="2.5"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="5"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="10"} 15
xblade_service_overhead_seconds_bucket{export="e1.0",le="+Inf"} 15
xblade_service_overhead_seconds_sum{export="e1.0"} 0.00006
xblade_service_overhead_seconds_count{export="e1.0"} 15
# HELP xblade_xdp_frames_total Frames the XDP program redirected to xblade, passed to the kernel or dropped, by verdict.
# TYPE xblade_xdp_frames_total counter
xblade_xdp_frames_total{interface="eth\"1\\",verdict="redirect"} 100
xblade_xdp_frames_total{interface="eth\"1\\",verdict="pass_not_aoe"} 21
xblade_xdp_frames_total{interface="eth\"1\\",verdict="pass_response"} 22
xblade_xdp_frames_total{interface="eth\"1\\",verdict="pass_other_target"} 23
xblade_xdp_frames_total{interface="eth\"1\\",verdict="pass_no_socket"} 24
xblade_xdp_frames_total{interface="eth\"1\\",verdict="drop_acl"} 25
xblade_xdp_frames_total{interface="eth\"1\\",verdict="drop_malformed"} 26
# HELP xblade_xsk_drops_total The AF_XDP socket's XDP_STATISTICS counters (struct xdp_statistics), by field.
# TYPE xblade_xsk_drops_total counter
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="rx_dropped"} 11
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="rx_invalid_descs"} 12
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="tx_invalid_descs"} 13
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="rx_ring_full"} 14
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="rx_fill_ring_empty_descs"} 15
xblade_xsk_drops_total{interface="eth\"1\\",queue="0",reason="tx_ring_empty_descs"} 16
# HELP xblade_queue_frames_total Frames a worker received from and sent to its RX/TX queue.
# TYPE xblade_queue_frames_total counter
xblade_queue_frames_total{interface="eth\"1\\",queue="0",direction="rx"} 100
xblade_queue_frames_total{interface="eth\"1\\",queue="0",direction="tx"} 99
# HELP xblade_queue_requests_total Requests whose data went through a bounce buffer, and requests merged into a neighbour's disk operation.
# TYPE xblade_queue_requests_total counter
xblade_queue_requests_total{interface="eth\"1\\",queue="0",kind="bounced"} 1
xblade_queue_requests_total{interface="eth\"1\\",queue="0",kind="merged"} 2
# HELP xblade_worker_drops_total Frames a worker dropped without an answer, by reason.
# TYPE xblade_worker_drops_total counter
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="malformed"} 3
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="not_for_us"} 4
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="response"} 5
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="config_mismatch"} 6
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="no_buffer"} 7
xblade_worker_drops_total{interface="eth\"1\\",queue="0",reason="masked"} 9
# HELP xblade_worker_seconds_total Time a worker spent working (busy) and waiting for events (idle).
# TYPE xblade_worker_seconds_total counter
xblade_worker_seconds_total{interface="eth\"1\\",queue="0",state="busy"} 1.5
xblade_worker_seconds_total{interface="eth\"1\\",queue="0",state="idle"} 0.00025
# HELP xblade_queue_fill_depth_frames The most RX frames the kernel may hold for reception (the worker's fill depth).
# TYPE xblade_queue_fill_depth_frames gauge
xblade_queue_fill_depth_frames{interface="eth\"1\\",queue="0"} 1024
"#;

    #[test]
    fn exact_text_of_a_sample() {
        let text = render(&sample(), &PROCESS).unwrap();
        for (i, (got, want)) in text.lines().zip(EXPECTED.lines()).enumerate() {
            assert_eq!(got, want, "line {}", i + 1);
        }
        assert_eq!(text, EXPECTED);
    }

    #[test]
    fn cumulative_buckets_never_undercount_a_bound() {
        let latency = |buckets: Vec<[u64; 2]>| LatencyStats {
            buckets,
            ..LatencyStats::default()
        };
        assert_eq!(cumulative_buckets(&latency(vec![])), [0; 20]);
        // Everything at or below the first bound.
        let first = cumulative_buckets(&latency(vec![[1, 2], [5_000, 3]]));
        assert_eq!(first, [5; 20]);
        // Above the last bound: only +Inf.
        assert_eq!(
            cumulative_buckets(&latency(vec![[10_000_000_001, 9]])),
            [0; 20]
        );
        // Non-decreasing, and each count is exactly the samples whose source bound fits.
        let buckets: Vec<[u64; 2]> = (1..60u64).map(|i| [i * i * i * 40_000, i]).collect();
        let cumulative = cumulative_buckets(&latency(buckets.clone()));
        for (i, &bound) in DURATION_BOUNDS_NS.iter().enumerate() {
            let expected: u64 = buckets
                .iter()
                .filter(|[b, _]| *b <= bound)
                .map(|[_, n]| n)
                .sum();
            assert_eq!(cumulative[i], expected, "le {bound} ns");
        }
        assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn count_covers_every_bucket() {
        // A racy read whose count lags its buckets still has +Inf >= every bucket.
        let mut stats = sample();
        stats.exports[0].latency.count = 1;
        let text = render(&stats, &PROCESS).unwrap();
        assert!(text
            .contains("xblade_request_duration_seconds_bucket{export=\"e1.0\",le=\"+Inf\"} 17\n"));
        assert!(text.contains("xblade_request_duration_seconds_count{export=\"e1.0\"} 17\n"));
    }

    #[test]
    fn empty_families_are_left_out() {
        let text = render(&StatsReply::default(), &PROCESS).unwrap();
        assert_eq!(
            text,
            "# HELP xblade_build_info The running xblade's version and git revision; always 1.\n\
             # TYPE xblade_build_info gauge\n\
             xblade_build_info{version=\"0.1.0\",revision=\"abc123\"} 1\n\
             # HELP xblade_start_time_seconds When the daemon started, in seconds since the Unix epoch.\n\
             # TYPE xblade_start_time_seconds gauge\n\
             xblade_start_time_seconds 1767225600.5\n"
        );
    }

    /// An independent parser reads back every sample with its labels and value.
    /// (prometheus-parse does not unescape label values: the escaping is checked by
    /// [`exact_text_of_a_sample`] alone, and here the interface has a plain name.)
    #[test]
    fn a_prometheus_parser_reads_it_back() {
        let mut stats = sample();
        stats.queues[0].interface = "eth1".into();
        stats.interfaces[0].name = "eth1".into();
        let text = render(&stats, &PROCESS).unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let find = |name: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| s.value.clone())
        };
        use prometheus_parse::Value;
        assert_eq!(
            find(
                "xblade_requests_total",
                &[("export", "e1.0"), ("op", "read")]
            ),
            Some(Value::Counter(10.0))
        );
        assert_eq!(
            find("xblade_in_flight", &[("export", "e1.0")]),
            Some(Value::Gauge(7.0))
        );
        assert_eq!(
            find(
                "xblade_xsk_drops_total",
                &[("interface", "eth1"), ("reason", "rx_ring_full")]
            ),
            Some(Value::Counter(14.0))
        );
        let Some(Value::Histogram(buckets)) =
            find("xblade_request_duration_seconds", &[("export", "e1.0")])
        else {
            panic!("no histogram in {:?}", scrape.samples);
        };
        assert_eq!(buckets.len(), 21);
        assert_eq!(buckets[1].less_than, 0.00001);
        assert_eq!(buckets[1].count, 8.0);
        assert!(buckets[20].less_than.is_infinite());
        assert_eq!(buckets[20].count, 17.0);
        assert_eq!(
            scrape.docs["xblade_in_flight"],
            "Requests received and not yet answered, at the moment of the scrape."
        );
        // Every family of the module's table is there.
        for family in [
            "xblade_build_info",
            "xblade_start_time_seconds",
            "xblade_requests_total",
            "xblade_bytes_total",
            "xblade_errors_total",
            "xblade_refused_total",
            "xblade_in_flight",
            "xblade_request_duration_seconds",
            "xblade_xdp_frames_total",
            "xblade_xsk_drops_total",
            "xblade_queue_frames_total",
            "xblade_queue_requests_total",
            "xblade_worker_drops_total",
            "xblade_worker_seconds_total",
            "xblade_queue_fill_depth_frames",
        ] {
            assert!(scrape.docs.contains_key(family), "{family}");
        }
    }
}
