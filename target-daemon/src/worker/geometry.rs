//! The shape of a worker's buffer region: the frame size and headroom that put sector data
//! 512-byte aligned (what O_DIRECT needs), what one frame carries, and how the frames are
//! shared out between the fill ring, spare frames and bounce buffers.

use aoe_proto::{ata, AOE_HEADER_LEN, ETH_HEADER_LEN, SECTOR_SIZE};

use crate::netdev;
use crate::xsk::{UmemConfig, XDP_PACKET_HEADROOM};

use super::MAX_FRAGS;

/// UMEM frame size: one page (larger chunks are refused here).
pub const FRAME_SIZE: u32 = 4096;
/// Headroom after XDP_PACKET_HEADROOM, chosen so that sector data lands 512-byte aligned.
pub const FRAME_HEADROOM: u32 = 220;
/// Where sector data starts in a frame: both headrooms, then the Ethernet, AoE and ATA
/// headers (an untagged frame).
pub const DATA_OFFSET: u32 = XDP_PACKET_HEADROOM
    + FRAME_HEADROOM
    + (ETH_HEADER_LEN + AOE_HEADER_LEN + ata::HEADER_LEN) as u32;
const _: () = assert!(DATA_OFFSET == 512, "256 + 220 + 36 must be 512");
const _: () = assert!((DATA_OFFSET as usize).is_multiple_of(SECTOR_SIZE));

/// Most bounce buffer slots per worker.
const MAX_BOUNCE_SLOTS: u32 = 256;

/// One worker's frames: how many, and whether packets may span several (AF_XDP
/// multi-buffer, granted at bind time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub frame_count: u32,
    pub multi_buffer: bool,
}

impl Geometry {
    /// The UMEM and rings for this geometry: every frame can be on every ring at once.
    pub fn umem_config(frame_count: u32) -> UmemConfig {
        UmemConfig {
            frame_count,
            frame_size: FRAME_SIZE,
            frame_headroom: FRAME_HEADROOM,
            ring_size: frame_count,
        }
    }

    /// The bytes a received packet may occupy in its first frame.
    pub const fn frame_capacity() -> u32 {
        FRAME_SIZE - XDP_PACKET_HEADROOM - FRAME_HEADROOM
    }

    /// True when a frame of this MTU (plus the Ethernet header and one 802.1Q tag) does not
    /// fit in one UMEM frame: it needs AF_XDP multi-buffer.
    pub fn needs_multi_buffer(mtu: u32) -> bool {
        mtu + 18 > Self::frame_capacity()
    }

    /// The longest reply a worker can send: one frame, or with multi-buffer a head frame
    /// and MAX_FRAGS - 1 spare frames.
    pub fn reply_capacity(&self) -> usize {
        let head = Self::frame_capacity() as usize;
        if self.multi_buffer {
            head + (MAX_FRAGS - 1) * FRAME_SIZE as usize
        } else {
            head
        }
    }

    /// Sectors per AoE frame on a link of this MTU with these frames.
    pub fn max_sectors(&self, mtu: u32) -> u8 {
        netdev::max_sectors_per_frame(mtu, self.reply_capacity() as u32)
    }

    /// Frames kept out of the fill ring for replies that need a frame of their own: the
    /// tails of chained (jumbo) read replies, and the replies of a fan-out. A quarter of the
    /// frames with multi-buffer (a chained reply takes up to MAX_FRAGS - 1 while its read is
    /// in flight), else a sixteenth.
    pub fn spare_frames(&self) -> u32 {
        if self.multi_buffer {
            self.frame_count / 4
        } else {
            (self.frame_count / 16).max(1)
        }
    }

    /// Frames that cycle through the fill ring (indices `0..rx_frames`).
    pub fn rx_frames(&self) -> u32 {
        self.frame_count - self.spare_frames()
    }

    /// Bounce buffers: only requests whose data O_DIRECT cannot use in place (an 802.1Q tag
    /// shifts it off the 512-byte boundary; a jumbo write's later fragments) take one, for
    /// the time of their disk I/O; a request finding none free is dropped and retransmitted.
    pub fn bounce_slots(frame_count: u32) -> u32 {
        frame_count.min(MAX_BOUNCE_SLOTS)
    }

    /// Bytes per bounce buffer slot: room for the largest request's data, in whole frames
    /// (page aligned). Every worker has them: any export a reload adds may need them.
    pub fn bounce_len(max_sectors_per_frame: u8) -> usize {
        let data = usize::from(max_sectors_per_frame) * SECTOR_SIZE;
        data.div_ceil(FRAME_SIZE as usize).max(1) * FRAME_SIZE as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_jumbo_frames() {
        let plain = Geometry {
            frame_count: 4096,
            multi_buffer: false,
        };
        assert_eq!(Geometry::frame_capacity(), 3620);
        assert!(!Geometry::needs_multi_buffer(1500));
        assert!(Geometry::needs_multi_buffer(9000));
        assert_eq!(plain.max_sectors(1500), 2);
        assert_eq!(
            plain.max_sectors(9000),
            7,
            "without multi-buffer: one frame"
        );
        assert_eq!((plain.spare_frames(), plain.rx_frames()), (256, 3840));
        let jumbo = Geometry {
            multi_buffer: true,
            ..plain
        };
        assert_eq!(jumbo.max_sectors(9000), 17);
        assert_eq!(jumbo.reply_capacity(), 3620 + 3 * 4096);
        assert_eq!(jumbo.spare_frames(), 1024);
        let tiny = Geometry {
            frame_count: 64,
            multi_buffer: false,
        };
        assert_eq!(tiny.spare_frames(), 4);
    }

    #[test]
    fn bounce_buffers() {
        assert_eq!(Geometry::bounce_slots(64), 64);
        assert_eq!(Geometry::bounce_slots(4096), 256);
        assert_eq!(Geometry::bounce_len(2), 4096);
        assert_eq!(Geometry::bounce_len(17), 3 * 4096);
        assert_eq!(Geometry::bounce_len(0), 4096);
    }

    #[test]
    fn the_umem_matches() {
        let c = Geometry::umem_config(1024);
        assert_eq!(
            (c.frame_count, c.frame_size, c.frame_headroom, c.ring_size),
            (1024, 4096, 220, 1024)
        );
        assert!(c.validate().is_ok());
    }
}
