//! How many RX frames a worker keeps on the fill ring.
//!
//! The kernel takes fill ring entries in order, so a frame handed over is received into
//! again only after every frame ahead of it. With all of a worker's RX frames on the ring
//! (3840 of the default 4096), each frame is reused about 15 MiB of frames later, long out
//! of the CPU's caches, and writing a read's data into it stalls on cache misses (measured
//! on 2026-12-03: with 512 frames instead of 4096 the worker's userspace time per 1 KiB null
//! read fell from 0.45 to 0.37 µs; docs/PERFORMANCE.md). So the worker keeps only `depth`
//! frames on the ring and hands over the most recently freed first; the others wait with
//! the worker (the coldest at the bottom of its stack).
//!
//! The kernel drops what it receives while the fill ring is empty, and the frames it
//! holds for reception are those on the fill ring plus those received and still waiting on
//! the RX ring: a worker that finds three quarters of the depth waiting on the RX ring (a
//! burst, or the worker fell behind) doubles the depth, up to every RX frame. The depth
//! never shrinks, so a burst that once came close to the limit cannot come close again at
//! the same depth.
//!
//! Pure bookkeeping: [`FillDepth::refill`] is told what the ring holds and returns how many
//! frames to hand over; the frame pool does the ring work.

/// Frames on the fill ring to begin with: 2 MiB of 4 KiB frames, a reuse distance that
/// stays in this machine's caches, and 8 full RX batches (`--batch` is at most 64).
pub(super) const START_DEPTH: u32 = 512;

/// The fill ring's depth policy of one worker.
#[derive(Debug)]
pub(super) struct FillDepth {
    /// Most frames the kernel holds for reception at once (on the fill ring, or received
    /// and waiting on the RX ring).
    depth: u32,
    /// Every RX frame: the depth never goes above it.
    max: u32,
}

impl FillDepth {
    /// `capped` false: every RX frame goes on the ring (the depth starts at the maximum).
    pub fn new(rx_frames: u32, capped: bool) -> FillDepth {
        FillDepth {
            depth: if capped {
                START_DEPTH.min(rx_frames)
            } else {
                rx_frames
            },
            max: rx_frames,
        }
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// How many of the `held` free frames to hand over when the kernel holds `with_kernel`
    /// for reception.
    pub fn refill(&self, with_kernel: u32, held: u32) -> u32 {
        self.depth.saturating_sub(with_kernel).min(held)
    }

    /// `waiting` descriptors wait on the RX ring: at three quarters of the depth or more, the
    /// fill ring was close to empty, and the depth doubles (up to every RX frame). Returns the
    /// new depth if it grew.
    pub fn rx_backlog(&mut self, waiting: u32) -> Option<u32> {
        if waiting < self.depth - self.depth / 4 || self.depth >= self.max {
            return None;
        }
        self.depth = self.depth.saturating_mul(2).min(self.max);
        Some(self.depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_start_depth_and_gives_what_the_kernel_used() {
        let depth = FillDepth::new(3840, true);
        assert_eq!(depth.depth(), START_DEPTH);
        assert_eq!(depth.refill(0, 3840), START_DEPTH);
        // The kernel received 64 frames and the worker took them off the RX ring.
        assert_eq!(depth.refill(START_DEPTH - 64, 3840 - START_DEPTH), 64);
        // Nothing taken, nothing given; fewer held than the kernel lacks: all of them.
        assert_eq!(depth.refill(START_DEPTH, 3840), 0);
        assert_eq!(depth.refill(0, 100), 100);
    }

    #[test]
    fn uncapped_gives_every_frame_and_never_grows() {
        let mut depth = FillDepth::new(3840, false);
        assert_eq!(depth.refill(0, 3840), 3840);
        assert_eq!(depth.refill(3000, 840), 840);
        assert_eq!(depth.rx_backlog(3840), None);
    }

    #[test]
    fn a_small_pool_caps_the_depth() {
        let mut depth = FillDepth::new(48, true);
        assert_eq!(depth.depth(), 48);
        assert_eq!(depth.refill(0, 48), 48);
        assert_eq!(depth.rx_backlog(48), None);
    }

    #[test]
    fn a_backlog_of_three_quarters_doubles_the_depth_up_to_every_frame() {
        let mut depth = FillDepth::new(3840, true);
        assert_eq!(depth.rx_backlog(START_DEPTH * 3 / 4 - 1), None);
        assert_eq!(depth.rx_backlog(START_DEPTH * 3 / 4), Some(2 * START_DEPTH));
        // The kernel holds the 384 waiting frames: the rest of the new depth goes over.
        assert_eq!(
            depth.refill(START_DEPTH * 3 / 4, 3000),
            2 * START_DEPTH - START_DEPTH * 3 / 4
        );
        assert_eq!(depth.rx_backlog(START_DEPTH), None);
        assert_eq!(depth.rx_backlog(2 * START_DEPTH), Some(4 * START_DEPTH));
        // 2048 -> 3840 (every frame), and no further.
        assert_eq!(depth.rx_backlog(4 * START_DEPTH), Some(3840));
        assert_eq!(depth.rx_backlog(3840), None);
        assert_eq!(depth.depth(), 3840);
    }
}
