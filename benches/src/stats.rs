//! Counters and latency histograms. Everything is allocated in [`Stats::new`]; recording a
//! completion allocates nothing.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded exactly (larger ones are clamped to it): 60 s.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Significant decimal digits of the histograms (0.1 % resolution).
const SIGFIG: u8 = 3;

fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIG).expect("valid histogram bounds")
}

/// Completions of one kind of request in the measured window.
#[derive(Clone, Debug)]
pub struct OpStats {
    pub ops: u64,
    pub bytes: u64,
    /// Submit-to-reply latency of successful requests, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl OpStats {
    pub fn new() -> OpStats {
        OpStats {
            ops: 0,
            bytes: 0,
            latency: histogram(),
        }
    }

    fn reset(&mut self) {
        self.ops = 0;
        self.bytes = 0;
        self.latency.reset();
    }

    fn record(&mut self, latency_ns: u64, bytes: u64) {
        self.ops += 1;
        self.bytes += bytes;
        self.latency
            .saturating_record(latency_ns.clamp(1, MAX_LATENCY_NS));
    }
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

/// One export's share of a run with several (`--exports`, `--targets`): its completions in
/// the measured window, reads and writes in one histogram, and the failures of its own
/// requests. Stray replies and ring drops cannot be told apart by export: they are only in
/// the run's [`Stats::errors`].
#[derive(Clone, Debug)]
pub struct ExportStats {
    pub reads: u64,
    pub writes: u64,
    /// Reads and writes together.
    pub all: OpStats,
    /// Retransmits, timeouts, ATA/AoE errors, bad replies and verify failures of this
    /// export's requests (whole run, like [`Stats::errors`]).
    pub errors: ErrorCounts,
}

impl Default for ExportStats {
    fn default() -> Self {
        ExportStats::new()
    }
}

impl ExportStats {
    pub fn new() -> ExportStats {
        ExportStats {
            reads: 0,
            writes: 0,
            all: OpStats::new(),
            errors: ErrorCounts::default(),
        }
    }

    pub fn record(&mut self, kind: Kind, latency_ns: u64, bytes: u64) {
        match kind {
            Kind::Read => self.reads += 1,
            Kind::Write => self.writes += 1,
        }
        self.all.record(latency_ns, bytes);
    }

    /// Forgets the performance numbers (at the end of the warm-up); errors are kept.
    pub fn reset_performance(&mut self) {
        self.reads = 0;
        self.writes = 0;
        self.all.reset();
    }
}

/// Things that went wrong, counted over the whole run (warm-up and final drain included, so
/// that no failure is ever hidden).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Transmissions after a timeout (each with a new tag).
    pub retransmits: u64,
    /// Requests given up after the last retransmission.
    pub timeouts: u64,
    /// Replies with an ATA error status (status & 0xA9).
    pub ata_errors: u64,
    /// Replies with the AoE error flag.
    pub aoe_errors: u64,
    /// Replies that matched a request but were malformed (data length, version, header).
    pub bad_replies: u64,
    /// Read sectors that were not data written to their LBA (see `--verify`).
    pub verify_failures: u64,
    /// AoE responses that matched no live request (other source, address or command,
    /// foreign tag).
    pub stray_replies: u64,
    /// Replies to a transmission that had been retransmitted or abandoned since.
    pub stale_replies: u64,
    /// Frames the kernel refused to send (counted, then covered by retransmission).
    pub tx_drops: u64,
    /// Frames the kernel dropped because the receive ring was full.
    pub rx_ring_drops: u64,
}

impl ErrorCounts {
    /// Failed requests: those that make a run's numbers suspect.
    pub fn failed_requests(&self) -> u64 {
        self.timeouts + self.ata_errors + self.aoe_errors + self.bad_replies
    }
}

/// How the event loop ran, over the whole run: how well sends and receives were batched
/// and how often it slept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoopCounts {
    /// Turns of the loop (take replies, send requests, maybe sleep).
    pub turns: u64,
    /// Turns that slept in ppoll (no reply was ready).
    pub sleeps: u64,
    /// Send calls (each one system call for any number of frames).
    pub sends: u64,
    pub frames_sent: u64,
    /// Frames taken from the receive ring (replies and anything else of the AoE type).
    pub frames_received: u64,
}

impl LoopCounts {
    pub fn frames_per_send(&self) -> f64 {
        ratio(self.frames_sent, self.sends)
    }

    /// Frames taken per turn that took any.
    pub fn frames_per_receiving_turn(&self) -> f64 {
        ratio(self.frames_received, self.turns.saturating_sub(self.sleeps))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// Per-second numbers for the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interval {
    pub ops: u64,
    pub bytes: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// All the statistics of a run.
#[derive(Clone, Debug)]
pub struct Stats {
    pub read: OpStats,
    pub write: OpStats,
    pub errors: ErrorCounts,
    pub io: LoopCounts,
    interval: OpStats,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            read: OpStats::new(),
            write: OpStats::new(),
            errors: ErrorCounts::default(),
            io: LoopCounts::default(),
            interval: OpStats::new(),
        }
    }

    /// A successful request: its latency and the bytes it moved.
    pub fn record(&mut self, kind: Kind, latency_ns: u64, bytes: u64) {
        let op = match kind {
            Kind::Read => &mut self.read,
            Kind::Write => &mut self.write,
        };
        op.record(latency_ns, bytes);
        self.interval.record(latency_ns, bytes);
    }

    /// Forgets the performance numbers (at the end of the warm-up); errors are kept.
    pub fn reset_performance(&mut self) {
        self.read.reset();
        self.write.reset();
        self.interval.reset();
    }

    /// The numbers since the previous call, for a progress line.
    pub fn take_interval(&mut self) -> Interval {
        let i = &mut self.interval;
        let out = Interval {
            ops: i.ops,
            bytes: i.bytes,
            p50_ns: i.latency.value_at_quantile(0.5),
            p99_ns: i.latency.value_at_quantile(0.99),
        };
        i.reset();
        out
    }

    /// Reads and writes together.
    pub fn combined(&self) -> OpStats {
        let mut all = self.read.clone();
        all.ops += self.write.ops;
        all.bytes += self.write.bytes;
        // Same bounds on both sides: adding cannot fail.
        let _ = all.latency.add(&self.write.latency);
        all
    }
}

/// Latency percentiles, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub max_ns: u64,
    /// Requests slower than the median by more than [`DELAYED_BY_NS`]: the step in the tail
    /// that stalls of the machine itself put there (a vCPU that the host does not run for
    /// 10 to 50 µs delays whatever request is in flight on it). At queue depth 1 these per
    /// second, next to `xblade-stalls`' count of such stalls, tell the machine's tail from
    /// the target's.
    pub delayed_ops: u64,
    /// The p99 of the requests not in `delayed_ops` (the value at quantile
    /// 0.99 x (ops - delayed) / ops of all of them): the tail the target itself makes when
    /// the machine's stalls are set aside. Only meaningful where the delayed requests per
    /// second match the machine's stall rate for every target (bench.sh measures both).
    pub p99_undelayed_ns: u64,
}

/// How much slower than the median a request must be to count in
/// [`LatencySummary::delayed_ops`].
pub const DELAYED_BY_NS: u64 = 10_000;

/// The percentiles of `h`, or `None` when it is empty.
pub fn latency_summary(h: &Histogram<u64>) -> Option<LatencySummary> {
    if h.is_empty() {
        return None;
    }
    let p50_ns = h.value_at_quantile(0.5);
    // The first value that counts as delayed, rounded up to the histogram's resolution
    // so that the median's own bucket never counts.
    let delayed_from_ns = h.lowest_equivalent(p50_ns.saturating_add(DELAYED_BY_NS));
    let delayed_ops = h.len() - h.count_between(0, delayed_from_ns.saturating_sub(1));
    // delayed_ops < len: the median's bucket never counts, and it holds at least one value.
    let undelayed_share = (h.len() - delayed_ops) as f64 / h.len() as f64;
    Some(LatencySummary {
        min_ns: h.min(),
        mean_ns: h.mean(),
        p50_ns,
        p90_ns: h.value_at_quantile(0.9),
        p99_ns: h.value_at_quantile(0.99),
        p99_9_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        delayed_ops,
        p99_undelayed_ns: h.value_at_quantile(0.99 * undelayed_share),
    })
}

/// Rates and latency of one kind of request over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpSummary {
    pub ops: u64,
    pub bytes: u64,
    pub iops: f64,
    /// Megabytes (10^6 bytes) per second of sector data.
    pub mb_per_s: f64,
    pub latency: Option<LatencySummary>,
    /// The latency distribution for plots: (quantile, ns) at every percent and in the
    /// tail (99.5, 99.9, 99.95, 99.99 %, max); empty when there are no samples.
    pub cdf: Vec<(f64, u64)>,
}

/// Quantiles at which [`OpSummary::cdf`] samples the distribution.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    (1..100)
        .map(|p| f64::from(p) / 100.0)
        .chain([0.995, 0.999, 0.9995, 0.9999, 1.0])
}

/// Summarises `op` over a window of `seconds`.
pub fn op_summary(op: &OpStats, seconds: f64) -> OpSummary {
    let rate = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    OpSummary {
        ops: op.ops,
        bytes: op.bytes,
        iops: rate(op.ops),
        mb_per_s: rate(op.bytes) / 1e6,
        latency: latency_summary(&op.latency),
        cdf: if op.latency.is_empty() {
            Vec::new()
        } else {
            cdf_quantiles()
                .map(|q| (q, op.latency.value_at_quantile(q)))
                .collect()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut s = Stats::new();
        // 1..=1000 us, one each.
        for us in 1..=1000u64 {
            s.record(Kind::Read, us * 1000, 1024);
        }
        let sum = op_summary(&s.read, 2.0);
        assert_eq!(sum.ops, 1000);
        assert_eq!(sum.bytes, 1_024_000);
        assert!((sum.iops - 500.0).abs() < 1e-9);
        assert!((sum.mb_per_s - 0.512).abs() < 1e-9);
        let l = sum.latency.unwrap();
        let near = |v: u64, want: u64| v.abs_diff(want) <= want / 500 + 1;
        assert!(near(l.min_ns, 1_000), "{l:?}");
        assert!(near(l.p50_ns, 500_000), "{l:?}");
        assert!(near(l.p90_ns, 900_000), "{l:?}");
        assert!(near(l.p99_ns, 990_000), "{l:?}");
        assert!(near(l.p99_9_ns, 999_000), "{l:?}");
        assert!(near(l.max_ns, 1_000_000), "{l:?}");
        assert!((l.mean_ns - 500_500.0).abs() < 1_000.0, "{l:?}");
        // Slower than 500 us + 10 us: 511..=1000 us, give or take the buckets' width; the
        // p99 of the other 510 is near 505 us.
        assert!(l.delayed_ops.abs_diff(490) <= 2, "{l:?}");
        assert!(near(l.p99_undelayed_ns, 505_000), "{l:?}");
    }

    #[test]
    fn delayed_ops_count_the_step_in_the_tail() {
        let mut s = Stats::new();
        // 985 requests near 7 us, 15 delayed by a 20 us stall: the step at p98.5.
        for i in 0..985u64 {
            s.record(Kind::Read, 7_000 + i % 50, 1024);
        }
        for _ in 0..15 {
            s.record(Kind::Read, 27_000, 1024);
        }
        let l = op_summary(&s.read, 1.0).latency.unwrap();
        assert_eq!(l.delayed_ops, 15, "{l:?}");
        // p99 of all falls in the step; p99 of the 985 undelayed is near 7.049 us.
        assert!(l.p99_ns >= 26_900, "{l:?}");
        assert!((7_040..7_060).contains(&l.p99_undelayed_ns), "{l:?}");
        // Just below the threshold does not count; just above does.
        let mut s = Stats::new();
        s.record(Kind::Write, 7_000, 512);
        s.record(Kind::Write, 7_000, 512);
        s.record(Kind::Write, 16_900, 512);
        s.record(Kind::Write, 17_100, 512);
        let l = op_summary(&s.write, 1.0).latency.unwrap();
        assert_eq!(l.delayed_ops, 1, "{l:?}");
    }

    #[test]
    fn combined_merges_reads_and_writes() {
        let mut s = Stats::new();
        s.record(Kind::Read, 10_000, 512);
        s.record(Kind::Write, 30_000, 1024);
        s.record(Kind::Write, 50_000, 1024);
        let all = s.combined();
        assert_eq!((all.ops, all.bytes), (3, 2560));
        assert_eq!(all.latency.len(), 3);
        assert!(all.latency.max() >= 49_950);
        assert_eq!(s.read.ops, 1, "combined() leaves the parts alone");
    }

    #[test]
    fn export_stats_count_kinds_and_reset_like_the_run() {
        let mut e = ExportStats::new();
        e.record(Kind::Read, 10_000, 1024);
        e.record(Kind::Write, 20_000, 1024);
        e.record(Kind::Write, 0, 1024);
        e.errors.retransmits = 2;
        assert_eq!((e.reads, e.writes, e.all.ops, e.all.bytes), (1, 2, 3, 3072));
        assert_eq!(e.all.latency.len(), 3);
        e.reset_performance();
        assert_eq!((e.reads, e.writes, e.all.ops), (0, 0, 0));
        assert!(e.all.latency.is_empty());
        assert_eq!(e.errors.retransmits, 2, "errors survive the warm-up");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut s = Stats::new();
        s.record(Kind::Write, 0, 0);
        s.record(Kind::Write, u64::MAX, 0);
        assert_eq!(s.write.latency.len(), 2);
        assert!(s.write.latency.max() >= MAX_LATENCY_NS - MAX_LATENCY_NS / 1000);
    }

    #[test]
    fn reset_keeps_errors_and_interval_restarts() {
        let mut s = Stats::new();
        s.record(Kind::Read, 5_000, 512);
        s.errors.timeouts = 2;
        s.errors.ata_errors = 1;
        assert_eq!(s.errors.failed_requests(), 3);
        let i = s.take_interval();
        assert_eq!(i.ops, 1);
        assert!(i.p99_ns >= 4_990);
        assert_eq!(s.take_interval(), Interval::default());
        s.reset_performance();
        assert_eq!(s.read.ops, 0);
        assert!(s.read.latency.is_empty());
        assert_eq!(s.errors.timeouts, 2);
        assert!(latency_summary(&s.read.latency).is_none());
        let io = LoopCounts {
            turns: 10,
            sleeps: 4,
            sends: 5,
            frames_sent: 20,
            frames_received: 12,
        };
        assert_eq!(io.frames_per_send(), 4.0);
        assert_eq!(io.frames_per_receiving_turn(), 2.0);
        assert_eq!(LoopCounts::default().frames_per_send(), 0.0);
        let empty = op_summary(&s.read, 0.0);
        assert_eq!((empty.iops, empty.mb_per_s), (0.0, 0.0));
    }
}
