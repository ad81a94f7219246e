//! A worker's frames: addressing inside its buffer region (UMEM frames first, then the
//! bounce buffers, a small pool of slots used only when O_DIRECT alignment forces a copy),
//! and the pool that owns them: which frames the kernel holds (the ownership ledger), the
//! spare frames, the free bounce slots, and the frames waiting to go back to the fill ring
//! (as many as the fill depth allows: [`super::fill_depth`]).

use crate::xsk::{FillRing, UmemConfig, UmemRegion, XDP_PACKET_HEADROOM};

use super::fill_depth::FillDepth;
use super::Geometry;

/// The worker's view of its [`UmemRegion`].
pub(super) struct FrameMap {
    region: UmemRegion,
    frame_size: u32,
    /// log2 of `frame_size` (a power of two: `UmemConfig::validate`), so that the per-frame
    /// address arithmetic is a shift and a mask, not a 64-bit division (the compiler cannot
    /// know the size is a power of two; a `div` costs tens of cycles, and a request took
    /// five to seven of them).
    frame_shift: u32,
    frame_count: u32,
    /// XDP_PACKET_HEADROOM + the UMEM's frame headroom: where a received packet starts.
    packet_offset: u64,
    /// Bytes per bounce buffer slot (0 when the I/O mode never bounces).
    bounce_len: usize,
    bounce_slots: u32,
}

impl FrameMap {
    pub(super) fn new(
        region: UmemRegion,
        config: &UmemConfig,
        bounce_len: usize,
        bounce_slots: u32,
    ) -> FrameMap {
        assert!(
            config.frame_size.is_power_of_two(),
            "frame size {} is not a power of two",
            config.frame_size
        );
        let map = FrameMap {
            region,
            frame_size: config.frame_size,
            frame_shift: config.frame_size.trailing_zeros(),
            frame_count: config.frame_count,
            packet_offset: u64::from(XDP_PACKET_HEADROOM + config.frame_headroom),
            bounce_len,
            bounce_slots,
        };
        assert!(
            map.region.umem_len() + bounce_slots as usize * bounce_len <= map.region.len(),
            "region too small for its bounce buffers"
        );
        map
    }

    pub(super) fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub(super) fn packet_offset(&self) -> u64 {
        self.packet_offset
    }

    pub(super) fn chunk_addr(&self, index: u32) -> u64 {
        u64::from(index) << self.frame_shift
    }

    /// `addr`'s offset inside its frame.
    pub(super) fn offset_in_frame(&self, addr: u64) -> u64 {
        addr & (u64::from(self.frame_size) - 1)
    }

    /// The chunk (frame start) address of any address inside it.
    pub(super) fn chunk_of(&self, addr: u64) -> u64 {
        addr - self.offset_in_frame(addr)
    }

    /// The frame index of a UMEM address, or `None` outside the UMEM.
    pub(super) fn index_of(&self, addr: u64) -> Option<u32> {
        let index = addr >> self.frame_shift;
        (index < u64::from(self.frame_count)).then_some(index as u32)
    }

    /// Bytes from `addr` to the end of its frame.
    pub(super) fn room_after(&self, addr: u64) -> usize {
        (u64::from(self.frame_size) - self.offset_in_frame(addr)) as usize
    }

    /// The bytes from `addr` to the end of its frame.
    ///
    /// Callers pass addresses of frames the worker owns at that moment (the kernel handed
    /// them over on the RX or completion ring, or they never left the worker).
    pub(super) fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let len = self.room_after(addr);
        assert!(
            addr as usize + len <= self.region.umem_len(),
            "address outside the UMEM"
        );
        // SAFETY: [addr, addr + len) lies inside the UMEM (asserted above), which is mapped
        // for the region's lifetime. The worker owns this frame (the kernel returns it only
        // through the fill or TX ring), and the slice borrows `self` mutably, so no other
        // slice of it is alive.
        unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().add(addr as usize), len) }
    }

    /// Asks the CPU to start loading the cache line at `addr` (a frame the kernel just
    /// handed over), so that parsing its headers a few descriptors later does not wait for
    /// the miss. A hint: nothing happens for an address outside the UMEM, or off x86-64.
    pub(super) fn prefetch(&self, addr: u64) {
        #[cfg(target_arch = "x86_64")]
        if (addr as usize) < self.region.umem_len() {
            // SAFETY: `addr` lies inside the UMEM (checked above), which is mapped for the
            // region's lifetime, so the offset pointer stays inside one allocation.
            // PREFETCHT0 needs sse, which every x86-64 CPU has (the target's baseline), and
            // only hints: it never faults, reads nothing into the program and writes nothing.
            unsafe {
                let line = self.region.as_ptr().add(addr as usize);
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line.cast::<i8>(),
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }

    /// Address of byte `offset` after `addr` in the mapping.
    pub(super) fn ptr(&self, addr: u64, offset: usize) -> *mut u8 {
        let at = addr as usize + offset;
        assert!(at < self.region.umem_len(), "address outside the UMEM");
        // SAFETY: in bounds of the mapping (asserted above).
        unsafe { self.region.as_ptr().add(at) }
    }

    /// Bounce buffer `slot`: `bounce_len` page-aligned bytes after the UMEM.
    pub(super) fn bounce_ptr(&self, slot: u32) -> *mut u8 {
        let offset = self.region.umem_len() + slot as usize * self.bounce_len;
        assert!(
            slot < self.bounce_slots && offset + self.bounce_len <= self.region.len(),
            "no bounce buffer slot {slot}"
        );
        // SAFETY: in bounds of the mapping (asserted above).
        unsafe { self.region.as_ptr().add(offset) }
    }

    pub(super) fn bounce_len(&self) -> usize {
        self.bounce_len
    }
}

/// A descriptor that named a frame its sender did not hold, or an address outside the UMEM:
/// ignored (never used twice), and counted by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Anomaly {
    /// The kernel returned a frame it did not hold.
    NotWithKernel {
        addr: u64,
    },
    /// A frame released (or recycled) twice.
    Twice {
        index: u32,
    },
    OutsideUmem {
        addr: u64,
    },
}

/// Every frame of a worker and who holds it. Frames `0..rx_frames` cycle through the fill
/// ring; the rest are spare frames, for the tails of chained replies and for fan-out
/// replies. A frame is handed over only by its owner: the ledger turns a descriptor naming
/// a frame the kernel does not hold into an [`Anomaly`] instead of a frame used twice.
pub(super) struct FramePool {
    pub map: FrameMap,
    rx_frames: u32,
    /// Free spare frames (indices).
    spare: Vec<u32>,
    /// Free bounce buffer slots.
    bounce_free: Vec<u32>,
    /// Which frames the kernel holds (fill, RX, TX or completion ring) rather than the
    /// worker.
    with_kernel: Vec<bool>,
    /// Free RX frames, to give back to the fill ring (chunk addresses): a stack, the most
    /// recently freed (the warmest in the cache) on top.
    recycle: Vec<u64>,
    /// How many RX frames the kernel may hold for reception.
    fill_depth: FillDepth,
    /// RX frames the kernel holds for reception: handed over on the fill ring and not yet
    /// back on the RX ring.
    rx_with_kernel: u32,
}

impl FramePool {
    /// Every frame starts with the worker: the RX frames waiting to be recycled into the
    /// fill ring (frame 0 on top), the others spare. Nothing is allocated after this.
    /// `fill_cap`: keep only part of the RX frames on the fill ring ([`super::fill_depth`]).
    pub fn new(map: FrameMap, geometry: Geometry, bounce_slots: u32, fill_cap: bool) -> FramePool {
        let frame_count = geometry.frame_count;
        let rx_frames = geometry.rx_frames();
        FramePool {
            fill_depth: FillDepth::new(rx_frames, fill_cap),
            rx_with_kernel: 0,
            recycle: (0..rx_frames).rev().map(|i| map.chunk_addr(i)).collect(),
            map,
            rx_frames,
            spare: (rx_frames..frame_count).collect(),
            bounce_free: (0..bounce_slots).rev().collect(),
            with_kernel: vec![false; frame_count as usize],
        }
    }

    /// The frame of `addr`, just returned by the kernel on the RX or completion ring, is the
    /// worker's again; returns its index. An anomaly means the descriptor must be ignored.
    pub fn take_from_kernel(&mut self, addr: u64) -> Result<u32, Anomaly> {
        match self.map.index_of(addr) {
            Some(index) if self.with_kernel[index as usize] => {
                self.with_kernel[index as usize] = false;
                Ok(index)
            }
            _ => Err(Anomaly::NotWithKernel { addr }),
        }
    }

    /// The frame of `addr` goes to the kernel on the TX ring.
    pub fn hand_to_kernel(&mut self, addr: u64) {
        if let Some(index) = self.map.index_of(addr) {
            self.with_kernel[index as usize] = true;
        }
    }

    /// Gives a frame the worker is done with back where it belongs: the fill ring, or the
    /// spare pool.
    pub fn release(&mut self, addr: u64) -> Result<(), Anomaly> {
        match self.map.index_of(addr) {
            Some(index) if self.with_kernel[index as usize] => Err(Anomaly::Twice { index }),
            Some(index) if index >= self.rx_frames => {
                self.spare.push(index);
                Ok(())
            }
            Some(_) => {
                self.recycle(addr);
                Ok(())
            }
            None => Err(Anomaly::OutsideUmem { addr }),
        }
    }

    /// Queues the frame of `addr` (any address inside it) for the fill ring.
    pub fn recycle(&mut self, addr: u64) {
        self.recycle.push(self.map.chunk_of(addr));
    }

    pub fn spare_count(&self) -> usize {
        self.spare.len()
    }

    pub fn pop_spare(&mut self) -> Option<u32> {
        self.spare.pop()
    }

    pub fn push_spare(&mut self, index: u32) {
        debug_assert!(index >= self.rx_frames);
        self.spare.push(index);
    }

    pub fn pop_bounce(&mut self) -> Option<u32> {
        self.bounce_free.pop()
    }

    pub fn push_bounce(&mut self, slot: u32) {
        self.bounce_free.push(slot);
    }

    /// The fill depth: most RX frames the kernel holds for reception at once.
    pub fn fill_depth(&self) -> u32 {
        self.fill_depth.depth()
    }

    /// `n` descriptors came back on the RX ring: frames the kernel no longer holds for
    /// reception.
    pub fn received(&mut self, n: u32) {
        self.rx_with_kernel = self.rx_with_kernel.saturating_sub(n);
    }

    /// `waiting` descriptors wait on the RX ring (the worker is behind): may raise the fill
    /// depth ([`FillDepth::rx_backlog`]). Returns the new depth if it grew.
    pub fn rx_backlog(&mut self, waiting: u32) -> Option<u32> {
        self.fill_depth.rx_backlog(waiting)
    }

    /// Hands recycled frames to the kernel on the fill ring, the most recently freed first,
    /// until it holds the fill depth for reception; the rest wait for a later turn. Returns
    /// how many it skipped because they were recycled twice or lie outside the UMEM
    /// (anomalies, to be counted; callers recycle only frames they hold).
    pub fn fill(&mut self, fill: &mut FillRing) -> u64 {
        let held = u32::try_from(self.recycle.len()).unwrap_or(u32::MAX);
        let give = self.fill_depth.refill(self.rx_with_kernel, held);
        if give == 0 {
            return 0;
        }
        // The fill ring holds as many entries as there are frames, so it has room for every
        // frame the worker holds.
        let reserved = fill.reserve(give);
        let start = self.recycle.len() - reserved as usize;
        let mut written = 0;
        let mut twice = 0;
        for &addr in self.recycle[start..].iter().rev() {
            let Some(index) = self.map.index_of(addr) else {
                twice += 1;
                continue;
            };
            if std::mem::replace(&mut self.with_kernel[index as usize], true) {
                twice += 1;
                continue;
            }
            fill.write(written, addr);
            written += 1;
        }
        fill.submit(written);
        self.rx_with_kernel += written;
        self.recycle.truncate(start);
        twice
    }
}
