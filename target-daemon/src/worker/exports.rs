//! The exports one worker serves, and what each needs on the data path.
//!
//! Exports live in a slab whose index is also the export's slot in the worker's io_uring
//! file table, and an [`ExportTable`] maps shelf.slot to the slab. A reload replaces or
//! removes an export without waiting: the table stops routing requests to the old version at
//! once, and the old version keeps its slab slot (and its file slot) until the disk I/O it
//! has in flight completes. A file slot is emptied only then: an operation the kernel has
//! not issued yet resolves its fixed file when it is issued.

use std::os::fd::RawFd;
use std::sync::Arc;

use xblade_target::{ExportKey, ExportTable, Route, Target};

use crate::backend::mapped::MappedWindow;
use crate::backend::{Backend, IoMode};
use crate::stats::ExportCounters;
use crate::uring::{FileRef, Ring, UringError};

/// Most exports one worker holds, replaced versions still finishing their I/O included: the
/// size of its io_uring file table. Twice what an interface may serve
/// ([`crate::xdp::MAX_EXPORTS`]), so that a reload can replace every export at once.
pub const MAX_EXPORT_SLOTS: u32 = 2 * crate::xdp::MAX_EXPORTS as u32;

/// An export as the control plane hands it to a worker.
#[derive(Clone, Debug)]
pub struct ServedExport {
    /// The export on this worker's link (its MAC and sector count).
    pub target: Target,
    pub backend: Arc<Backend>,
    /// Synchronous disk I/O on the worker thread instead of io_uring (memory-backed files).
    pub sync_io: bool,
    /// This export's counters on this worker (its writer), read by the control plane.
    pub stats: Arc<ExportCounters>,
}

/// An export in a worker's slab.
pub(super) struct Export {
    pub target: Target,
    pub io_mode: IoMode,
    /// The backing file's slot and descriptor; `None` for the null backend.
    pub file: Option<FileRef>,
    /// The descriptor, when disk I/O is synchronous.
    pub sync_fd: Option<RawFd>,
    /// Requests of this export whose disk I/O has not completed.
    in_flight: u32,
    /// Removed or replaced: no new requests; freed when `in_flight` reaches 0.
    retiring: bool,
    pub stats: Arc<ExportCounters>,
    /// The mapped window is served: the backend has one, and it was not poisoned when
    /// this worker last looked (then the export falls back to `sync_fd`).
    mapped: bool,
    /// Keeps the descriptors above (and the mapping) alive while the worker may use them.
    backend: Arc<Backend>,
}

impl Export {
    /// The mapped window, while it serves this export.
    pub fn mapping(&self) -> Option<&MappedWindow> {
        self.backend.mapping().filter(|_| self.mapped)
    }
}

/// Why an export could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("a worker serves at most {MAX_EXPORT_SLOTS} exports (including replaced ones still finishing their I/O)")]
    Full,
    #[error(transparent)]
    Uring(#[from] UringError),
}

/// Names the counter block of the export a reply answers, for replies that wait for the TX
/// ring after their export may have been released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StatsTag {
    slot: u32,
    /// The slot's [`SlotStats::uses`] when the reply was made.
    uses: u32,
}

/// The counter block of the export last served in a slab slot. It outlives the export's
/// release, so that its last replies still record their latency when they reach the TX
/// ring; `uses` counts the exports served in the slot, so that such a reply never records
/// into the block of a later export.
struct SlotStats {
    counters: Arc<ExportCounters>,
    uses: u32,
}

pub(super) struct Exports {
    slab: Vec<Option<Export>>,
    /// One per slab slot.
    stats: Vec<SlotStats>,
    free: Vec<u32>,
    table: ExportTable<u32>,
}

impl Exports {
    pub fn new() -> Exports {
        Exports {
            slab: Vec::new(),
            stats: Vec::new(),
            free: Vec::new(),
            table: ExportTable::default(),
        }
    }

    /// Starts serving `served` (a new export, or a new version of one: the old version
    /// retires). Returns its slab slot.
    pub fn serve(&mut self, ring: &mut Ring, served: ServedExport) -> Result<u32, ServeError> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if (self.slab.len() as u32) < MAX_EXPORT_SLOTS => {
                self.slab.push(None);
                self.stats.push(SlotStats {
                    counters: Arc::clone(&served.stats),
                    uses: 0,
                });
                self.slab.len() as u32 - 1
            }
            None => return Err(ServeError::Full),
        };
        let file = served.backend.raw_fd().map(|fd| FileRef { slot, fd });
        if let Some(file) = file {
            if let Err(e) = ring.set_file(file) {
                self.free.push(slot);
                return Err(e.into());
            }
        }
        let key = served.target.key();
        served.stats.set_in_flight(0);
        let slot_stats = &mut self.stats[slot as usize];
        slot_stats.counters = Arc::clone(&served.stats);
        slot_stats.uses = slot_stats.uses.wrapping_add(1);
        self.slab[slot as usize] = Some(Export {
            io_mode: served.backend.io_mode,
            sync_fd: file.filter(|_| served.sync_io).map(|f| f.fd),
            file,
            target: served.target,
            in_flight: 0,
            retiring: false,
            stats: served.stats,
            mapped: served.backend.mapping().is_some(),
            backend: served.backend,
        });
        if let Some(old) = self.table.insert(key, slot) {
            self.retire_slot(ring, old);
        }
        Ok(slot)
    }

    /// Stops routing requests to `key`; its I/O in flight still completes.
    pub fn retire(&mut self, ring: &mut Ring, key: ExportKey) -> bool {
        match self.table.remove(key) {
            Some(slot) => {
                self.retire_slot(ring, slot);
                true
            }
            None => false,
        }
    }

    fn retire_slot(&mut self, ring: &mut Ring, slot: u32) {
        if let Some(export) = self.slab[slot as usize].as_mut() {
            export.retiring = true;
            if export.in_flight == 0 {
                self.release(ring, slot);
            }
        }
    }

    fn release(&mut self, ring: &mut Ring, slot: u32) {
        if let Some(export) = self.slab[slot as usize].take() {
            if export.file.is_some() {
                if let Err(e) = ring.clear_file(slot) {
                    // The slot keeps a reference to a file nobody routes to; it is
                    // overwritten when the slot is reused.
                    tracing::warn!("could not empty io_uring file slot {slot}: {e}");
                }
            }
            self.free.push(slot);
        }
    }

    /// Where a request goes: a slab slot, a fan-out, or nowhere.
    pub fn route(&self, major: u16, minor: u8, command: u8) -> Route {
        match self.table.route(major, minor, command) {
            Route::One(index) => match self.table.at(index) {
                Some((_, &slot)) => Route::One(slot as usize),
                None => Route::None,
            },
            other => other,
        }
    }

    /// The slab slots of the exports a request to `major`.`minor` reaches, from table index
    /// `from` on, with the table index of each (to resume a fan-out).
    pub fn matching(
        &self,
        major: u16,
        minor: u8,
        from: usize,
    ) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.table
            .matching(major, minor, from)
            .filter_map(|i| self.table.at(i).map(|(_, &slot)| (i, slot)))
    }

    /// The export in slab slot `slot`. Slots come from [`Exports::route`],
    /// [`Exports::matching`] or an in-flight request, and stay filled until released.
    pub fn get(&self, slot: u32) -> &Export {
        match self.slab.get(slot as usize).and_then(Option::as_ref) {
            Some(export) => export,
            None => panic!("export slot {slot} is empty"),
        }
    }

    /// The export in `slot` stops using its mapped window (poisoned): preadv/pwritev from
    /// now on.
    pub fn stop_mapping(&mut self, slot: u32) {
        if let Some(export) = self.slab.get_mut(slot as usize).and_then(Option::as_mut) {
            export.mapped = false;
        }
    }

    /// The tag a reply of the export in `slot` carries to the TX ring.
    pub fn stats_tag(&self, slot: u32) -> StatsTag {
        StatsTag {
            slot,
            uses: self.stats.get(slot as usize).map_or(0, |s| s.uses),
        }
    }

    /// The counter block of the export a reply tagged `tag` answers, unless the slot has
    /// served another export since.
    pub fn stats_of(&self, tag: StatsTag) -> Option<&ExportCounters> {
        self.stats
            .get(tag.slot as usize)
            .filter(|s| s.uses == tag.uses)
            .map(|s| &*s.counters)
    }

    pub fn io_started(&mut self, slot: u32) {
        if let Some(export) = self.slab[slot as usize].as_mut() {
            export.in_flight += 1;
            export.stats.set_in_flight(export.in_flight);
        }
    }

    /// One request of `slot` finished its disk I/O; a retiring export with none left is
    /// released.
    pub fn io_done(&mut self, ring: &mut Ring, slot: u32) {
        let Some(export) = self.slab[slot as usize].as_mut() else {
            return;
        };
        debug_assert!(export.in_flight > 0);
        export.in_flight = export.in_flight.saturating_sub(1);
        export.stats.set_in_flight(export.in_flight);
        if export.retiring && export.in_flight == 0 {
            self.release(ring, slot);
        }
    }
}
