//! Where the control plane keeps every export's counter blocks, one per worker that serves
//! it, so that `stats` reads them at any moment without asking the workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use xblade_target::ExportKey;

use super::export::{ExportCounters, ExportSnapshot};
use super::histogram::HistogramSnapshot;

/// The worker a counter block belongs to: interface name and RX queue.
type WorkerId = (String, u32);

#[derive(Debug, Default)]
struct ExportEntry {
    generation: u64,
    blocks: BTreeMap<WorkerId, Arc<ExportCounters>>,
}

/// Every served export's counter blocks. Owned by the control plane thread; the workers
/// only ever see their own blocks.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    exports: BTreeMap<ExportKey, ExportEntry>,
    /// Blocks of exports a reload removed or replaced that a worker may still write: the
    /// last replies of a retiring export record their latency after it left the registry.
    /// Folded into `retired` once the registry holds the last reference (the worker
    /// reused the slot, or stopped), so their number stays bounded by the workers' slots.
    retiring: Vec<Arc<ExportCounters>>,
    /// The latency of every export no longer registered, for the exit summary.
    retired: ServedLatency,
}

impl StatsRegistry {
    /// The block the worker of `iface` queue `queue` writes for `key` in its version
    /// `generation`. A new generation (a reload replaced the export) starts every block
    /// again at zero. A worker that restarts on the same queue (the interface was attached
    /// again) keeps counting in the block of its predecessor, which has stopped: each block
    /// still has one writer at a time, and counters never go back.
    pub fn counters_for(
        &mut self,
        key: ExportKey,
        generation: u64,
        iface: &str,
        queue: u32,
    ) -> Arc<ExportCounters> {
        let entry = self.exports.entry(key).or_default();
        if entry.generation != generation {
            entry.generation = generation;
            self.retiring
                .extend(std::mem::take(&mut entry.blocks).into_values());
        }
        let block = Arc::clone(entry.blocks.entry((iface.to_owned(), queue)).or_default());
        self.sweep();
        block
    }

    /// Forgets an export that is no longer served (a reload removed it); its latency stays
    /// in the exit summary's.
    pub fn remove(&mut self, key: ExportKey) {
        if let Some(entry) = self.exports.remove(&key) {
            self.retiring.extend(entry.blocks.into_values());
        }
        self.sweep();
    }

    /// Folds the retiring blocks no worker holds any more into `retired`.
    fn sweep(&mut self) {
        let retired = &mut self.retired;
        self.retiring.retain(|block| {
            let held = Arc::strong_count(block) > 1;
            if !held {
                retired.add(block);
            }
            held
        });
    }

    /// `key`'s counters summed over its workers, and its generation; zeros before any
    /// worker served it.
    pub fn read(&self, key: ExportKey) -> (u64, ExportSnapshot) {
        let Some(entry) = self.exports.get(&key) else {
            return (0, ExportSnapshot::default());
        };
        let mut total = ExportSnapshot::default();
        for block in entry.blocks.values() {
            total.merge(&block.snapshot());
        }
        (entry.generation, total)
    }

    /// The latency of every request answered since start-up, of every export that was
    /// ever served (removed and replaced versions included): for the exit summary.
    pub fn served_latency(&self) -> ServedLatency {
        let mut total = self.retired.clone();
        let registered = self.exports.values().flat_map(|e| e.blocks.values());
        for block in registered.chain(&self.retiring) {
            total.add(block);
        }
        total
    }
}

/// Latency histograms summed over counter blocks (see [`ExportCounters::latency`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedLatency {
    /// RX ring to TX ring, of every answered request.
    pub latency: HistogramSnapshot,
    /// The disk requests' latency in two parts: the disk's own, and xblade's.
    pub split: DiskSplit,
}

impl ServedLatency {
    fn add(&mut self, block: &ExportCounters) {
        self.latency.merge(&block.latency.snapshot());
        self.split.disk.merge(&block.disk_latency.snapshot());
        self.split.xblade.merge(&block.xblade_latency.snapshot());
    }
}

/// A disk request's latency in two parts (see [`ExportCounters::disk_latency`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskSplit {
    pub disk: HistogramSnapshot,
    pub xblade: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_sum_and_restart_with_a_new_generation() {
        let mut r = StatsRegistry::default();
        let key = ExportKey::new(1, 0);
        let q0 = r.counters_for(key, 7, "eth0", 0);
        let q1 = r.counters_for(key, 7, "eth0", 1);
        q0.add(|c| &c.reads, 2);
        q1.add(|c| &c.reads, 3);
        assert_eq!(r.read(key).1.reads, 5);
        q0.disk_latency.record(100_000);
        q1.disk_latency.record(200_000);
        q1.xblade_latency.record(5_000);
        let split = r.served_latency().split;
        assert_eq!((split.disk.count(), split.disk.max_ns), (2, 200_000));
        assert_eq!((split.xblade.count(), split.xblade.sum_ns), (1, 5_000));
        // The same worker again (re-attached): the same block.
        assert!(Arc::ptr_eq(&q0, &r.counters_for(key, 7, "eth0", 0)));
        // A new version of the export starts at zero.
        let fresh = r.counters_for(key, 8, "eth0", 0);
        assert!(!Arc::ptr_eq(&q0, &fresh));
        assert_eq!(r.read(key), (8, ExportSnapshot::default()));
        r.remove(key);
        assert_eq!(r.read(key).0, 0);
    }

    #[test]
    fn the_summary_keeps_the_latency_of_removed_and_replaced_exports() {
        let mut r = StatsRegistry::default();
        let (a, b) = (ExportKey::new(1, 0), ExportKey::new(1, 1));
        let a7 = r.counters_for(a, 7, "eth0", 0);
        a7.latency.record(10_000);
        // Replaced by generation 8: the old block still counts, and so does what its
        // worker records into it while the old version's last replies go out.
        let a8 = r.counters_for(a, 8, "eth0", 0);
        a8.latency.record(20_000);
        a7.latency.record(30_000);
        let b1 = r.counters_for(b, 1, "eth0", 0);
        b1.latency.record(40_000);
        r.remove(b);
        b1.latency.record(50_000);
        let total = r.served_latency();
        assert_eq!((total.latency.count(), total.latency.max_ns), (5, 50_000));
        // Once the workers let go, the blocks are folded and freed; nothing is lost.
        drop((a7, b1));
        r.remove(ExportKey::new(9, 9));
        assert!(r.retiring.is_empty());
        assert_eq!(r.served_latency(), total);
        drop(a8);
        r.remove(a);
        assert_eq!(r.served_latency(), total);
        assert!(r.retiring.is_empty());
    }
}
