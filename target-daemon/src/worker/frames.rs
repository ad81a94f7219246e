//! Addressing inside a worker's buffer region: UMEM frames first, then the bounce buffers
//! (a small pool of slots, used only when O_DIRECT alignment forces a copy).

use crate::xsk::{UmemConfig, UmemRegion, XDP_PACKET_HEADROOM};

/// The worker's view of its [`UmemRegion`].
pub(super) struct FrameMap {
    region: UmemRegion,
    frame_size: u32,
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
        let map = FrameMap {
            region,
            frame_size: config.frame_size,
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
        u64::from(index) * u64::from(self.frame_size)
    }

    /// The chunk (frame start) address of any address inside it.
    pub(super) fn chunk_of(&self, addr: u64) -> u64 {
        addr - addr % u64::from(self.frame_size)
    }

    /// The frame index of a UMEM address, or `None` outside the UMEM.
    pub(super) fn index_of(&self, addr: u64) -> Option<u32> {
        let index = addr / u64::from(self.frame_size);
        (index < u64::from(self.frame_count)).then_some(index as u32)
    }

    /// Bytes from `addr` to the end of its frame.
    pub(super) fn room_after(&self, addr: u64) -> usize {
        (u64::from(self.frame_size) - addr % u64::from(self.frame_size)) as usize
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
