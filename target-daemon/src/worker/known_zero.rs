//! Which bytes of each frame are known to be zero, so that the null backend answers a read
//! without writing zeros over zeros.
//!
//! A null read used to `memset` its whole data area (1 KiB at MTU 1500): 16 cache lines
//! written per request into a frame last touched one fill-ring cycle ago, the largest
//! part of what a read cost more than a write in the cost split (PERFORMANCE.md,
//! "Per-request cuts"). After that fill, the data area is zero; the next time
//! the frame comes back on the RX ring the kernel has written only the new request (tens
//! of bytes) into it. So each frame keeps a watermark, `zero_from`: every byte from there
//! to the frame's end is zero. It is
//! - lowered by a zero fill that reaches it ([`KnownZero::zero_fill`]);
//! - raised past every byte the kernel wrote on reception ([`KnownZero::received`]), with
//!   a margin for a NIC that writes a little beyond the packet (a cache line, an FCS);
//! - set to the frame's end (nothing known) by [`KnownZero::written`], which the worker
//!   calls for every other use of the frame that may write into it: any reply built in
//!   it, any disk or mapped I/O into or out of it.
//!
//! Frames start known zero from their first byte: the UMEM is an anonymous mapping, which
//! the kernel hands over zeroed (`UmemRegion`). Only RX frames are tracked; spare frames
//! are filled in full.

/// Bytes past the end of a received packet that still count as written by the kernel:
/// the packet's last cache line is rounded up and one more line added.
const RX_MARGIN_BYTES: usize = 64;
const LINE_BYTES: usize = 64;
/// A fill that stops at most this short of the known zeros is extended to them, so that
/// the watermark comes down again after a longer request (a write's data) was received.
const MAX_EXTENSION_BYTES: usize = 256;

pub(super) struct KnownZero {
    /// Per tracked frame: the offset from the frame's start from which every byte to
    /// `frame_size` is zero.
    zero_from: Vec<u32>,
    frame_size: u32,
    /// Off (`--tune-no-zero-skip`): every zero fill writes everything.
    enabled: bool,
}

impl KnownZero {
    /// Tracks frames `0..frame_count` (the RX frames) of `frame_size` bytes.
    pub(super) fn new(frame_count: u32, frame_size: u32, enabled: bool) -> KnownZero {
        KnownZero {
            zero_from: vec![0; frame_count as usize],
            frame_size,
            enabled,
        }
    }

    /// The kernel wrote `len` bytes from `offset` of frame `index` (an RX descriptor).
    pub(super) fn received(&mut self, index: u32, offset: usize, len: usize) {
        let Some(zero_from) = self.zero_from.get_mut(index as usize) else {
            return;
        };
        let written_to = (offset + len).next_multiple_of(LINE_BYTES) + RX_MARGIN_BYTES;
        let written_to = written_to.min(self.frame_size as usize) as u32;
        *zero_from = (*zero_from).max(written_to);
    }

    /// Frame `index` may have been written anywhere: nothing is known until a zero fill.
    pub(super) fn written(&mut self, index: u32) {
        if let Some(zero_from) = self.zero_from.get_mut(index as usize) {
            *zero_from = self.frame_size;
        }
    }

    /// Bytes `offset..offset + len` of frame `index` must read zero: returns the range the
    /// caller must fill (it starts at `offset`; possibly empty, possibly a little longer
    /// than asked, up to the known zeros), and records what is zero after that fill.
    pub(super) fn zero_fill(&mut self, index: u32, offset: usize, len: usize) -> (usize, usize) {
        let end = offset + len;
        let Some(zero_from) = self.zero_from.get_mut(index as usize) else {
            return (offset, end);
        };
        if !self.enabled {
            return (offset, end);
        }
        let known = *zero_from as usize;
        if known <= offset {
            return (offset, offset);
        }
        let fill_end = if known <= end + MAX_EXTENSION_BYTES {
            known
        } else {
            end
        };
        // The fill makes offset..fill_end zero; when it meets the known zeros, everything
        // from `offset` to the frame's end is.
        if fill_end == known {
            *zero_from = offset as u32;
        }
        (offset, fill_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_frame_needs_no_fill_and_a_received_request_only_its_own_bytes() {
        let mut z = KnownZero::new(4, 4096, true);
        assert_eq!(z.zero_fill(1, 292, 1024), (292, 292));
        // The next request arrives: the kernel wrote 60 bytes at 256 (to 316, rounded up
        // to 320, plus a line: 384); only 292..384 needs filling.
        z.received(1, 256, 60);
        assert_eq!(z.zero_fill(1, 292, 1024), (292, 384));
        assert_eq!(z.zero_fill(1, 292, 1024), (292, 292));
        // Other frames are untouched.
        z.received(2, 256, 60);
        assert_eq!(z.zero_fill(3, 292, 1024), (292, 292));
    }

    #[test]
    fn after_a_write_request_the_fill_reaches_the_known_zeros_again() {
        let mut z = KnownZero::new(1, 4096, true);
        // A write request's data: 1060 bytes at 256, known zero from 1408 on. A read
        // of 1024 at 292 ends at 1316: extended to 1408.
        z.received(0, 256, 1060);
        assert_eq!(z.zero_fill(0, 292, 1024), (292, 1408));
        assert_eq!(z.zero_fill(0, 292, 1024), (292, 292));
    }

    #[test]
    fn any_other_use_forgets_what_was_known_and_only_the_asked_range_is_filled() {
        let mut z = KnownZero::new(1, 4096, true);
        z.written(0);
        assert_eq!(z.zero_fill(0, 292, 1024), (292, 1316));
        assert_eq!(z.zero_fill(0, 292, 1024), (292, 1316));
        // A fill that is far from the known zeros does not move them.
        let mut z = KnownZero::new(1, 4096, true);
        z.received(0, 256, 2000);
        assert_eq!(z.zero_fill(0, 292, 108), (292, 400));
        assert_eq!(z.zero_fill(0, 292, 2000), (292, 2368));
        assert_eq!(z.zero_fill(0, 292, 3000), (292, 292));
    }

    #[test]
    fn the_margin_stops_at_the_frame_end_and_off_fills_everything() {
        let mut z = KnownZero::new(1, 2048, true);
        z.received(0, 0, 2040);
        assert_eq!(z.zero_fill(0, 100, 1948), (100, 2048));
        let mut off = KnownZero::new(1, 4096, false);
        assert_eq!(off.zero_fill(0, 292, 1024), (292, 1316));
        assert_eq!(off.zero_fill(0, 292, 1024), (292, 1316));
        // Out of range: filled in full, no panic.
        assert_eq!(z.zero_fill(9, 0, 10), (0, 10));
        z.received(9, 0, 10);
        z.written(9);
    }
}
