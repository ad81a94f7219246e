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
            entry.blocks.clear();
        }
        Arc::clone(entry.blocks.entry((iface.to_owned(), queue)).or_default())
    }

    /// Forgets an export that is no longer served (a reload removed it).
    pub fn remove(&mut self, key: ExportKey) {
        self.exports.remove(&key);
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

    /// The disk's part and xblade's of every disk request, summed over every export still
    /// registered (an export a reload removed or replaced took its counts with it).
    pub fn disk_split(&self) -> DiskSplit {
        let mut split = DiskSplit::default();
        for block in self.exports.values().flat_map(|e| e.blocks.values()) {
            split.disk.merge(&block.disk_latency.snapshot());
            split.xblade.merge(&block.xblade_latency.snapshot());
        }
        split
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
        let split = r.disk_split();
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
}
