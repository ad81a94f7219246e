//! Addressing inside a worker's buffer region: UMEM frames first, then one bounce buffer
//! per frame when O_DIRECT alignment may need them.

use crate::xsk::{UmemConfig, UmemRegion, XDP_PACKET_HEADROOM};

/// The worker's view of its [`UmemRegion`].
pub(super) struct FrameMap {
    region: UmemRegion,
    frame_size: u32,
    frame_count: u32,
    /// XDP_PACKET_HEADROOM + the UMEM's frame headroom: where a received packet starts.
    packet_offset: u64,
}

impl FrameMap {
    pub(super) fn new(region: UmemRegion, config: &UmemConfig) -> FrameMap {
        FrameMap {
            region,
            frame_size: config.frame_size,
            frame_count: config.frame_count,
            packet_offset: u64::from(XDP_PACKET_HEADROOM + config.frame_headroom),
        }
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

    /// The frame index of a UMEM address, or `None` outside the UMEM.
    pub(super) fn index_of(&self, addr: u64) -> Option<u32> {
        let index = addr / u64::from(self.frame_size);
        (index < u64::from(self.frame_count)).then_some(index as u32)
    }

    /// The bytes from `packet_addr` to the end of its frame.
    ///
    /// Callers pass addresses the kernel gave on the RX or completion ring (or that this
    /// worker made), for frames the worker owns at that moment.
    pub(super) fn frame_mut(&mut self, packet_addr: u64) -> &mut [u8] {
        let frame_end = (packet_addr / u64::from(self.frame_size) + 1) * u64::from(self.frame_size);
        assert!(
            frame_end <= self.region.umem_len() as u64,
            "packet address outside the UMEM"
        );
        // SAFETY: [packet_addr, frame_end) lies inside the UMEM (asserted above), which is
        // mapped for the region's lifetime. The worker owns this frame (the kernel handed it
        // over on the RX ring and gets it back only on the fill or TX ring), and the slice
        // borrows `self` mutably, so no other slice of it is alive.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.region.as_ptr().add(packet_addr as usize),
                (frame_end - packet_addr) as usize,
            )
        }
    }

    /// Address of the sector data of the packet at `packet_addr`.
    pub(super) fn data_ptr(&self, packet_addr: u64, data_offset: u32) -> *mut u8 {
        let offset = packet_addr as usize + data_offset as usize;
        assert!(
            offset < self.region.umem_len(),
            "data offset outside the UMEM"
        );
        // SAFETY: in bounds of the mapping (asserted above).
        unsafe { self.region.as_ptr().add(offset) }
    }

    /// The bounce buffer of frame `index`: a whole, page-aligned frame after the UMEM.
    pub(super) fn bounce_ptr(&self, index: u32) -> *mut u8 {
        let offset = self.region.umem_len() + index as usize * self.frame_size as usize;
        assert!(
            offset + self.frame_size as usize <= self.region.len(),
            "no bounce buffers mapped for this I/O mode"
        );
        // SAFETY: in bounds of the mapping (asserted above).
        unsafe { self.region.as_ptr().add(offset) }
    }
}
