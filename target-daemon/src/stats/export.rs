//! One export's counters on one worker, and their sum over workers.
//!
//! A worker gets a fresh [`ExportCounters`] with each `Serve` command (allocated by the
//! control plane, never on the per-frame path) and is its only writer; the control plane
//! keeps an `Arc` of it in the [`StatsRegistry`](super::StatsRegistry) and reads it at any
//! moment with `Relaxed` loads, without a lock and without a message to the worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::control::{ExportStats, LatencyStats};
use aoe_proto::AoeError;

use crate::target::ReplyKind;

use super::histogram::{AtomicHistogram, HistogramSnapshot};

/// The counters of one export on one worker. Memory per (worker, export): 12 counters and
/// three 1696-byte histograms, 5184 bytes with the cache-line alignment (1024 exports on
/// two queues: 10.1 MiB; 4096 exports on four queues: 81 MiB).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ExportCounters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    /// Flush, identify, check power mode, Query Config, Mac Mask List, Reserve/Release.
    pub other: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    /// Answered with an ATA error, failed disk I/O included.
    pub ata_errors: AtomicU64,
    pub aoe_errors: AtomicU64,
    pub disk_errors: AtomicU64,
    /// Dropped by the worker because the mask list does not list the sender (requests the
    /// XDP program drops for that reason are counted per interface, `xdp_drop_acl`).
    pub refused_masked: AtomicU64,
    /// Answered with AoE error 6 (another host holds the reservation); also in
    /// `aoe_errors`.
    pub refused_reserved: AtomicU64,
    /// Changes from the wire refused because the export is locked (answered with the
    /// protocol's error, counted here alone).
    pub refused_locked: AtomicU64,
    /// Requests waiting for the disk now (a gauge, stored by the writer).
    pub in_flight: AtomicU64,
    /// RX ring to TX ring, of every answered request except the replies to a wildcard
    /// Query Config (built one spare frame at a time, when frames allow: not a service
    /// time).
    pub latency: AtomicHistogram,
    /// Of the requests that went to the disk: the disk's own part, from submission (the
    /// io_uring_enter that hands the SQE to the kernel, or the start of the synchronous
    /// call) to completion (the CQE reaped, or the call returned).
    pub disk_latency: AtomicHistogram,
    /// Of the same requests: xblade's part, `latency` minus `disk_latency` (RX ring to
    /// submission, plus completion to TX ring). Recorded with the same sample as the two
    /// others, so the three counts agree.
    pub xblade_latency: AtomicHistogram,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl ExportCounters {
    /// Adds `by` to a counter only this counter block's worker writes: a plain load and
    /// store, no locked read-modify-write.
    pub fn add(&self, field: impl Fn(&Self) -> &AtomicU64, by: u64) {
        bump(field(self), by);
    }

    /// A reply without disk I/O was sent (or, for an ATA error, decided).
    pub fn count_reply(&self, kind: ReplyKind) {
        match kind {
            ReplyKind::AtaError => bump(&self.ata_errors, 1),
            ReplyKind::AoeError(error) => {
                bump(&self.aoe_errors, 1);
                if error == AoeError::TargetReserved {
                    bump(&self.refused_reserved, 1);
                }
            }
            ReplyKind::Ata | ReplyKind::Config | ReplyKind::MaskList | ReplyKind::Reserve => {
                bump(&self.other, 1)
            }
            ReplyKind::RefusedLocked => bump(&self.refused_locked, 1),
        }
    }

    pub fn set_in_flight(&self, requests: u32) {
        self.in_flight.store(u64::from(requests), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ExportSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportSnapshot {
            reads: get(&self.reads),
            writes: get(&self.writes),
            other: get(&self.other),
            read_bytes: get(&self.read_bytes),
            written_bytes: get(&self.written_bytes),
            ata_errors: get(&self.ata_errors),
            aoe_errors: get(&self.aoe_errors),
            disk_errors: get(&self.disk_errors),
            refused_masked: get(&self.refused_masked),
            refused_reserved: get(&self.refused_reserved),
            refused_locked: get(&self.refused_locked),
            in_flight: get(&self.in_flight),
            latency: self.latency.snapshot(),
            disk_latency: self.disk_latency.snapshot(),
            xblade_latency: self.xblade_latency.snapshot(),
        }
    }
}

/// Plain values of [`ExportCounters`]; sums over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSnapshot {
    pub reads: u64,
    pub writes: u64,
    pub other: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub ata_errors: u64,
    pub aoe_errors: u64,
    pub disk_errors: u64,
    pub refused_masked: u64,
    pub refused_reserved: u64,
    pub refused_locked: u64,
    pub in_flight: u64,
    pub latency: HistogramSnapshot,
    pub disk_latency: HistogramSnapshot,
    pub xblade_latency: HistogramSnapshot,
}

impl ExportSnapshot {
    pub fn merge(&mut self, other: &ExportSnapshot) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.other += other.other;
        self.read_bytes += other.read_bytes;
        self.written_bytes += other.written_bytes;
        self.ata_errors += other.ata_errors;
        self.aoe_errors += other.aoe_errors;
        self.disk_errors += other.disk_errors;
        self.refused_masked += other.refused_masked;
        self.refused_reserved += other.refused_reserved;
        self.refused_locked += other.refused_locked;
        self.in_flight += other.in_flight;
        self.latency.merge(&other.latency);
        self.disk_latency.merge(&other.disk_latency);
        self.xblade_latency.merge(&other.xblade_latency);
    }

    /// The protocol's view (name, shelf, slot and generation are the caller's).
    pub fn to_export_stats(&self) -> ExportStats {
        ExportStats {
            reads: self.reads,
            writes: self.writes,
            other: self.other,
            read_bytes: self.read_bytes,
            written_bytes: self.written_bytes,
            ata_errors: self.ata_errors,
            aoe_errors: self.aoe_errors,
            disk_errors: self.disk_errors,
            refused_masked: self.refused_masked,
            refused_reserved: self.refused_reserved,
            refused_locked: self.refused_locked,
            in_flight: self.in_flight,
            latency: latency_stats(&self.latency),
            disk_latency: latency_stats(&self.disk_latency),
            xblade_latency: latency_stats(&self.xblade_latency),
            ..ExportStats::default()
        }
    }
}

/// The protocol's view of a histogram.
fn latency_stats(h: &HistogramSnapshot) -> LatencyStats {
    LatencyStats {
        count: h.count(),
        sum_ns: h.sum_ns,
        p50_ns: h.quantile_ns(0.5),
        p99_ns: h.quantile_ns(0.99),
        p999_ns: h.quantile_ns(0.999),
        max_ns: h.max_ns,
        buckets: h.non_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_land_in_their_counters() {
        let c = ExportCounters::default();
        for kind in [
            ReplyKind::Ata,
            ReplyKind::Config,
            ReplyKind::MaskList,
            ReplyKind::Reserve,
            ReplyKind::AtaError,
            ReplyKind::AoeError(AoeError::UnrecognizedCommand),
            ReplyKind::AoeError(AoeError::TargetReserved),
        ] {
            c.count_reply(kind);
        }
        c.add(|c| &c.reads, 2);
        c.set_in_flight(3);
        c.latency.record(20_000);
        c.disk_latency.record(15_000);
        c.xblade_latency.record(5_000);
        let mut s = c.snapshot();
        assert_eq!(
            (s.other, s.ata_errors, s.aoe_errors, s.refused_reserved),
            (4, 1, 2, 1)
        );
        s.merge(&c.snapshot());
        let e = s.to_export_stats();
        assert_eq!((e.reads, e.other, e.in_flight), (4, 8, 6));
        assert_eq!(e.latency.count, 2);
        assert_eq!(e.latency.buckets.len(), 1);
        assert_eq!(e.latency.max_ns, 20_000);
        assert_eq!((e.disk_latency.count, e.disk_latency.max_ns), (2, 15_000));
        assert_eq!(
            (e.xblade_latency.count, e.xblade_latency.sum_ns),
            (2, 10_000)
        );
        assert!(std::mem::size_of::<ExportCounters>() <= 5184);
    }
}
