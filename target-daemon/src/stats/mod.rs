//! Counters and service-latency histograms: written by one worker each, read by the main
//! thread for periodic reports, the exit summary and the `stats` control command.
//!
//! [`WorkerCounters`] count per worker (per RX queue); [`ExportCounters`] count per export
//! on one worker, with a lock-free [`AtomicHistogram`] of latencies; the control plane keeps
//! the latter in a [`StatsRegistry`].

mod export;
pub mod histogram;
mod registry;

pub use export::{ExportCounters, ExportSnapshot};
pub use histogram::{quantile_of, AtomicHistogram, HistogramSnapshot};
pub use registry::{DiskSplit, ServedLatency, StatsRegistry};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::target::{DropReason, ReplyKind};

/// One worker's counters. Each has a single writer (its worker, Relaxed increments on a
/// cache line no other worker writes) and is read racily for reports.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub rx_frames: AtomicU64,
    pub tx_frames: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    /// Replies without disk I/O: identify, power mode, config, mask, reserve.
    pub immediate_replies: AtomicU64,
    pub ata_errors: AtomicU64,
    pub aoe_errors: AtomicU64,
    /// Disk I/O that failed (reported to the initiator as an ATA error).
    pub io_errors: AtomicU64,
    /// Sector data copied through a bounce buffer (alignment).
    pub bounced: AtomicU64,
    /// Requests merged into a neighbour's disk operation.
    pub merged: AtomicU64,
    /// Descriptors naming a frame its sender did not hold (ignored rather than used twice).
    pub frame_anomalies: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_response: AtomicU64,
    pub dropped_not_for_us: AtomicU64,
    pub dropped_masked: AtomicU64,
    pub dropped_config_mismatch: AtomicU64,
    /// Requests dropped for want of spare frames for a chained reply (retransmitted).
    pub dropped_no_buffer: AtomicU64,
    /// Changes from the wire refused because the export is locked (a mask list edit, a
    /// config string set, a change of the operator's reservation). Answered, not dropped.
    pub refused_locked: AtomicU64,
    /// Time the worker spent awake (working or spinning for work) and asleep waiting for
    /// an event, in ns.
    pub busy_ns: AtomicU64,
    pub idle_ns: AtomicU64,
    /// A gauge, not a counter (so not in [`CounterSnapshot`]): the most RX frames the
    /// kernel may hold for reception (the worker's fill depth, `worker/fill_depth.rs`).
    pub fill_depth_frames: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl WorkerCounters {
    /// Adds `by` to a counter this worker alone writes: a plain load and store, no
    /// locked read-modify-write.
    pub fn add(&self, field: impl Fn(&Self) -> &AtomicU64, by: u64) {
        bump(field(self), by);
    }

    /// Sets the fill depth gauge.
    pub fn set_fill_depth(&self, frames: u32) {
        self.fill_depth_frames
            .store(u64::from(frames), Ordering::Relaxed);
    }

    pub fn fill_depth(&self) -> u64 {
        self.fill_depth_frames.load(Ordering::Relaxed)
    }

    pub fn count_drop(&self, reason: DropReason) {
        bump(
            match reason {
                DropReason::Malformed => &self.dropped_malformed,
                DropReason::Response => &self.dropped_response,
                DropReason::NotForUs => &self.dropped_not_for_us,
                DropReason::Masked => &self.dropped_masked,
                DropReason::ConfigMismatch => &self.dropped_config_mismatch,
                DropReason::Ambiguous => &self.dropped_not_for_us,
            },
            1,
        );
    }

    pub fn count_reply(&self, kind: ReplyKind) {
        bump(
            match kind {
                ReplyKind::AtaError => &self.ata_errors,
                ReplyKind::AoeError(_) => &self.aoe_errors,
                ReplyKind::RefusedLocked => &self.refused_locked,
                _ => &self.immediate_replies,
            },
            1,
        );
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            rx_frames: get(&self.rx_frames),
            tx_frames: get(&self.tx_frames),
            reads: get(&self.reads),
            writes: get(&self.writes),
            flushes: get(&self.flushes),
            read_bytes: get(&self.read_bytes),
            written_bytes: get(&self.written_bytes),
            immediate_replies: get(&self.immediate_replies),
            ata_errors: get(&self.ata_errors),
            aoe_errors: get(&self.aoe_errors),
            io_errors: get(&self.io_errors),
            bounced: get(&self.bounced),
            merged: get(&self.merged),
            frame_anomalies: get(&self.frame_anomalies),
            dropped: get(&self.dropped_malformed)
                + get(&self.dropped_response)
                + get(&self.dropped_not_for_us)
                + get(&self.dropped_masked)
                + get(&self.dropped_config_mismatch)
                + get(&self.dropped_no_buffer),
            dropped_masked: get(&self.dropped_masked),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_no_buffer: get(&self.dropped_no_buffer),
            refused_locked: get(&self.refused_locked),
            dropped_not_for_us: get(&self.dropped_not_for_us),
            dropped_response: get(&self.dropped_response),
            dropped_config_mismatch: get(&self.dropped_config_mismatch),
            busy_ns: get(&self.busy_ns),
            idle_ns: get(&self.idle_ns),
        }
    }
}

/// Plain values of [`WorkerCounters`] at one moment; sums over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub immediate_replies: u64,
    pub ata_errors: u64,
    pub aoe_errors: u64,
    pub io_errors: u64,
    pub bounced: u64,
    pub merged: u64,
    pub frame_anomalies: u64,
    pub dropped: u64,
    pub dropped_masked: u64,
    pub dropped_malformed: u64,
    pub dropped_no_buffer: u64,
    pub refused_locked: u64,
    pub dropped_not_for_us: u64,
    pub dropped_response: u64,
    pub dropped_config_mismatch: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
}

impl CounterSnapshot {
    pub fn requests(&self) -> u64 {
        self.reads
            + self.writes
            + self.flushes
            + self.immediate_replies
            + self.ata_errors
            + self.aoe_errors
            + self.refused_locked
    }

    pub fn merge(&mut self, other: &CounterSnapshot) {
        self.rx_frames += other.rx_frames;
        self.tx_frames += other.tx_frames;
        self.reads += other.reads;
        self.writes += other.writes;
        self.flushes += other.flushes;
        self.read_bytes += other.read_bytes;
        self.written_bytes += other.written_bytes;
        self.immediate_replies += other.immediate_replies;
        self.ata_errors += other.ata_errors;
        self.aoe_errors += other.aoe_errors;
        self.io_errors += other.io_errors;
        self.bounced += other.bounced;
        self.merged += other.merged;
        self.frame_anomalies += other.frame_anomalies;
        self.dropped += other.dropped;
        self.dropped_masked += other.dropped_masked;
        self.dropped_malformed += other.dropped_malformed;
        self.dropped_no_buffer += other.dropped_no_buffer;
        self.refused_locked += other.refused_locked;
        self.dropped_not_for_us += other.dropped_not_for_us;
        self.dropped_response += other.dropped_response;
        self.dropped_config_mismatch += other.dropped_config_mismatch;
        self.busy_ns += other.busy_ns;
        self.idle_ns += other.idle_ns;
    }

    /// The change since `earlier`, for rates.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            rx_frames: self.rx_frames - earlier.rx_frames,
            tx_frames: self.tx_frames - earlier.tx_frames,
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            flushes: self.flushes - earlier.flushes,
            read_bytes: self.read_bytes - earlier.read_bytes,
            written_bytes: self.written_bytes - earlier.written_bytes,
            immediate_replies: self.immediate_replies - earlier.immediate_replies,
            ata_errors: self.ata_errors - earlier.ata_errors,
            aoe_errors: self.aoe_errors - earlier.aoe_errors,
            io_errors: self.io_errors - earlier.io_errors,
            bounced: self.bounced - earlier.bounced,
            merged: self.merged - earlier.merged,
            frame_anomalies: self.frame_anomalies - earlier.frame_anomalies,
            dropped: self.dropped - earlier.dropped,
            dropped_masked: self.dropped_masked - earlier.dropped_masked,
            dropped_malformed: self.dropped_malformed - earlier.dropped_malformed,
            dropped_no_buffer: self.dropped_no_buffer - earlier.dropped_no_buffer,
            refused_locked: self.refused_locked - earlier.refused_locked,
            dropped_not_for_us: self.dropped_not_for_us - earlier.dropped_not_for_us,
            dropped_response: self.dropped_response - earlier.dropped_response,
            dropped_config_mismatch: self.dropped_config_mismatch - earlier.dropped_config_mismatch,
            busy_ns: self.busy_ns - earlier.busy_ns,
            idle_ns: self.idle_ns - earlier.idle_ns,
        }
    }
}

/// The exit summary: totals and latency percentiles.
pub struct Summary<'a> {
    pub counters: CounterSnapshot,
    /// Requests served by each RX queue's worker: (interface, queue id, requests).
    pub per_queue: &'a [(String, u32, u64)],
    /// RX ring to TX ring, of every answered request (the exports' histograms summed:
    /// bucket bounds, at most 12.5 % above the exact value).
    pub latency: &'a HistogramSnapshot,
    /// The disk's part and xblade's of the disk requests.
    pub split: &'a DiskSplit,
    pub elapsed_s: f64,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        let us = |q: f64| self.latency.quantile_ns(q) as f64 / 1000.0;
        writeln!(f, "xblade summary after {:.1} s", self.elapsed_s)?;
        writeln!(
            f,
            "  requests {} (reads {}, writes {}, flushes {}, other {})",
            c.requests(),
            c.reads,
            c.writes,
            c.flushes,
            c.immediate_replies
        )?;
        writeln!(
            f,
            "  bytes    read {} MiB, written {} MiB",
            c.read_bytes >> 20,
            c.written_bytes >> 20
        )?;
        writeln!(
            f,
            "  errors   ata {}, aoe {}, disk i/o {}; refused locked {}; dropped frames {} (masked {}, malformed {}, no buffer {}); bounced {}; merged {}",
            c.ata_errors,
            c.aoe_errors,
            c.io_errors,
            c.refused_locked,
            c.dropped,
            c.dropped_masked,
            c.dropped_malformed,
            c.dropped_no_buffer,
            c.bounced,
            c.merged
        )?;
        write!(f, "  queues  ")?;
        for (iface, queue_id, requests) in self.per_queue {
            write!(f, " {iface} q{queue_id}: {requests} requests;")?;
        }
        writeln!(f)?;
        if c.frame_anomalies > 0 {
            writeln!(
                f,
                "  frames   {} descriptors named a frame their sender did not hold (ignored)",
                c.frame_anomalies
            )?;
        }
        if self.latency.count() == 0 {
            writeln!(f, "  latency  no samples")?;
        } else {
            writeln!(
                f,
                "  latency  p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} samples)",
                us(0.5),
                us(0.99),
                us(0.999),
                self.latency.max_ns as f64 / 1000.0,
                self.latency.count()
            )?;
        }
        write!(f, "  split    {}", SplitLine(self.split))
    }
}

/// The summary's line on disk requests: the disk's part and xblade's, p50 and p99 (bucket
/// bounds: at most 12.5 % above the exact value).
struct SplitLine<'a>(&'a DiskSplit);

impl fmt::Display for SplitLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DiskSplit { disk, xblade } = self.0;
        if disk.count() == 0 {
            return write!(f, "no disk requests");
        }
        let us = |h: &HistogramSnapshot, q: f64| h.quantile_ns(q) as f64 / 1000.0;
        write!(
            f,
            "disk requests {}: on the disk p50 {:.1} us, p99 {:.1} us; in xblade p50 {:.1} us, p99 {:.1} us",
            disk.count(),
            us(disk, 0.5),
            us(disk, 0.99),
            us(xblade, 0.5),
            us(xblade, 0.99)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_snapshot_and_merge() {
        let c = WorkerCounters::default();
        c.add(|c| &c.reads, 3);
        c.add(|c| &c.read_bytes, 3 * 1024);
        c.count_drop(DropReason::Masked);
        c.count_drop(DropReason::Malformed);
        c.count_reply(ReplyKind::AtaError);
        c.count_reply(ReplyKind::Config);
        c.count_reply(ReplyKind::RefusedLocked);
        let s = c.snapshot();
        assert_eq!(
            (s.reads, s.read_bytes, s.dropped, s.dropped_masked),
            (3, 3072, 2, 1)
        );
        assert_eq!(
            (
                s.ata_errors,
                s.immediate_replies,
                s.refused_locked,
                s.aoe_errors
            ),
            (1, 1, 1, 0)
        );
        assert_eq!(s.requests(), 6);
        let mut total = s;
        total.merge(&s);
        assert_eq!((total.requests(), total.refused_locked), (12, 2));
        assert_eq!(total.since(&s), s);
    }

    #[test]
    fn split_line() {
        let mut split = DiskSplit::default();
        let disk = AtomicHistogram::default();
        let xblade = AtomicHistogram::default();
        for _ in 0..3 {
            disk.record(200_000);
            xblade.record(9_000);
        }
        disk.record(1_000_000);
        xblade.record(30_000);
        split.disk = disk.snapshot();
        split.xblade = xblade.snapshot();
        // Bucket bounds: 200 µs lies in [196.6, 213.0] µs, 9 µs in [8.19, 9.22] µs; the
        // p99 is the maximum.
        assert_eq!(
            SplitLine(&split).to_string(),
            "disk requests 4: on the disk p50 213.0 us, p99 1000.0 us; in xblade p50 9.2 us, p99 30.0 us"
        );
    }

    #[test]
    fn the_summary_prints_the_served_latency() {
        let h = AtomicHistogram::default();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let latency = h.snapshot();
        let text = Summary {
            counters: CounterSnapshot::default(),
            per_queue: &[("eth0".into(), 0, 5), ("eth0".into(), 1, 7)],
            latency: &latency,
            split: &DiskSplit::default(),
            elapsed_s: 1.0,
        }
        .to_string();
        // Bucket bounds: the 500th sample (500 µs) lies in [491.5, 524.3) µs, the 990th
        // in [983.0, 1048.6) µs; p99.9 and max are the largest sample.
        assert!(
            text.contains(
                "latency  p50 524.3 us, p99 1000.0 us, p99.9 1000.0 us, max 1000.0 us (1000 samples)"
            ),
            "{text}"
        );
        assert!(text.ends_with("\n  split    no disk requests"), "{text}");
        assert!(
            text.contains("eth0 q0: 5 requests; eth0 q1: 7 requests;"),
            "{text}"
        );
        let empty = Summary {
            counters: CounterSnapshot::default(),
            per_queue: &[],
            latency: &HistogramSnapshot::default(),
            split: &DiskSplit::default(),
            elapsed_s: 1.0,
        }
        .to_string();
        assert!(empty.contains("latency  no samples"));
    }
}
