//! The I/O planner: pure decisions about where a request's sector data lies and how the
//! disk moves it, in byte counts and indices only (no frames, no pointers, no syscalls), so
//! each is unit-tested on its own. The worker turns the plans into iovecs over its frames.

use std::ops::Range;

use aoe_proto::SECTOR_SIZE;

use crate::target::IoKind;

use super::{MAX_FRAGS, MAX_MERGE};

/// A request held back for merging, as the planner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The export's slot: requests of different exports never merge.
    pub export: u32,
    pub kind: IoKind,
    pub offset_bytes: u64,
    pub len_bytes: u32,
}

/// Splits a batch into runs that one disk operation can serve: consecutive requests of one
/// export and one kind whose byte ranges follow each other (as an initiator splits a larger
/// I/O into frames), at most [`MAX_MERGE`] long. Every index is in exactly one run, in order.
pub fn merge_runs<'a, T>(
    batch: &'a [T],
    extent: impl Fn(&T) -> Extent + 'a,
) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = extent(batch.get(start)?);
        let mut end_bytes = first.offset_bytes + u64::from(first.len_bytes);
        let mut end = start + 1;
        while let Some(next) = batch.get(end).map(&extent) {
            if end - start == MAX_MERGE
                || next.export != first.export
                || next.kind != first.kind
                || next.offset_bytes != end_bytes
            {
                break;
            }
            end_bytes += u64::from(next.len_bytes);
            end += 1;
        }
        let run = start..end;
        start = end;
        Some(run)
    })
}

/// Where a read's data goes: the head frame (after the reply header) takes whole sectors up
/// to its end, and spare frames (whole frames) take the rest; the reply leaves as a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLayout {
    /// Bytes read into the head frame.
    pub head_bytes: usize,
    /// Spare frames for the rest; each takes a whole frame but the last.
    pub spare_frames: usize,
}

/// Lays out `len_bytes` of read data behind a reply header that leaves `head_room` bytes in
/// the head frame, over frames of `frame_size` bytes. `None` when a reply would need more
/// than [`MAX_FRAGS`] frames.
pub fn read_layout(len_bytes: usize, head_room: usize, frame_size: usize) -> Option<ReadLayout> {
    let head_bytes = len_bytes.min(head_room - head_room % SECTOR_SIZE);
    let spare_frames = (len_bytes - head_bytes).div_ceil(frame_size);
    (spare_frames < MAX_FRAGS).then_some(ReadLayout {
        head_bytes,
        spare_frames,
    })
}

impl ReadLayout {
    /// The bytes of spare frame `i` (0-based) of a read of `len_bytes`.
    pub fn spare_bytes(&self, i: usize, len_bytes: usize, frame_size: usize) -> usize {
        (len_bytes - self.head_bytes - i * frame_size).min(frame_size)
    }
}

/// Where a write's data lies in the fragments it arrived in: for each fragment (the head
/// first), the offset and length of the data in it. Only the `len_bytes` the sector count
/// names are taken (trailing padding is not written); fragments with none get length 0.
/// `fragment_lens[0]` is the head's length, whose data starts at `data_offset`.
pub fn write_pieces(
    data_offset: usize,
    fragment_lens: &[usize],
    len_bytes: usize,
) -> [(usize, usize); MAX_FRAGS] {
    let mut pieces = [(0, 0); MAX_FRAGS];
    let mut rest = len_bytes;
    for (i, (piece, &len)) in pieces.iter_mut().zip(fragment_lens).enumerate() {
        let offset = if i == 0 { data_offset } else { 0 };
        let take = rest.min(len.saturating_sub(offset));
        *piece = (offset, take);
        rest -= take;
    }
    pieces
}

/// Whether, and how, a request's data goes through a bounce buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounce {
    /// The disk reads and writes the frames themselves.
    None,
    /// All the data goes through the bounce buffer (copied in before a write, out after a
    /// read).
    Whole,
    /// A chained write: the head frame's data is written in place, the rest is gathered
    /// into the bounce buffer.
    Tail,
}

/// What O_DIRECT needs: given whether each piece can be used in place (aligned address,
/// whole sectors), whether the request bounces.
pub fn bounce_for(kind: IoKind, in_place: &[bool]) -> Bounce {
    if in_place.iter().all(|&ok| ok) {
        Bounce::None
    } else if kind == IoKind::Write && in_place.len() > 1 && in_place[0] {
        Bounce::Tail
    } else {
        Bounce::Whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(export: u32, kind: IoKind, sector: u64, sectors: u32) -> Extent {
        Extent {
            export,
            kind,
            offset_bytes: sector * 512,
            len_bytes: sectors * 512,
        }
    }

    fn runs(batch: &[Extent]) -> Vec<Range<usize>> {
        merge_runs(batch, |e| *e).collect()
    }

    #[test]
    fn adjacent_requests_of_one_export_and_kind_merge() {
        use IoKind::{Read, Write};
        let batch = [
            extent(0, Read, 0, 2),
            extent(0, Read, 2, 2),
            extent(0, Read, 4, 2),
            extent(0, Write, 6, 2), // other kind
            extent(0, Write, 8, 2),
            extent(1, Write, 10, 2), // other export, though adjacent in bytes
            extent(1, Write, 20, 2), // a gap
            extent(1, Write, 18, 2), // behind, not after
        ];
        assert_eq!(runs(&batch), [0..3, 3..5, 5..6, 6..7, 7..8]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn runs_stop_at_the_merge_limit_and_cover_every_request() {
        let batch: Vec<Extent> = (0..2 * MAX_MERGE as u64 + 3)
            .map(|i| extent(0, IoKind::Read, 2 * i, 2))
            .collect();
        let all = runs(&batch);
        assert_eq!(
            all,
            [
                0..MAX_MERGE,
                MAX_MERGE..2 * MAX_MERGE,
                2 * MAX_MERGE..batch.len()
            ]
        );
    }

    #[test]
    fn read_layouts() {
        // MTU 1500: 2 sectors fit behind the header in the head frame.
        let room = 3620 - 36;
        assert_eq!(
            read_layout(1024, room, 4096),
            Some(ReadLayout {
                head_bytes: 1024,
                spare_frames: 0
            })
        );
        // Jumbo: 17 sectors; the head takes 7 whole sectors, two spare frames the rest.
        let layout = read_layout(17 * 512, room, 4096).unwrap();
        assert_eq!(layout.head_bytes, 7 * 512);
        assert_eq!(layout.spare_frames, 2);
        assert_eq!(layout.spare_bytes(0, 17 * 512, 4096), 4096);
        assert_eq!(
            layout.spare_bytes(1, 17 * 512, 4096),
            17 * 512 - 7 * 512 - 4096
        );
        // A reply longer than MAX_FRAGS frames is refused.
        assert_eq!(read_layout(MAX_FRAGS * 4096, room, 4096), None);
        assert_eq!(
            read_layout(0, room, 4096),
            Some(ReadLayout {
                head_bytes: 0,
                spare_frames: 0
            })
        );
    }

    #[test]
    fn write_pieces_skip_the_header_and_the_padding() {
        // One frame: 36-byte header, 1024 bytes of data, 4 bytes of padding.
        assert_eq!(write_pieces(36, &[36 + 1028], 1024)[..1], [(36, 1024)]);
        // An 8228-byte jumbo write in three fragments (3620, 3620, 988 bytes): 16 sectors.
        let p = write_pieces(36, &[3620, 3620, 988], 16 * 512);
        assert_eq!(p[..3], [(36, 3584), (0, 3620), (0, 988)]);
        assert_eq!(p.iter().map(|(_, len)| len).sum::<usize>(), 16 * 512);
        // Padding after the data in the last fragment is left out.
        let p = write_pieces(36, &[3620, 3620, 988 + 60], 16 * 512);
        assert_eq!(p[2], (0, 988));
        // A header longer than the head fragment takes nothing from it.
        assert_eq!(write_pieces(36, &[20, 600], 512)[..2], [(36, 0), (0, 512)]);
    }

    #[test]
    fn bounce_decisions() {
        assert_eq!(bounce_for(IoKind::Read, &[true]), Bounce::None);
        assert_eq!(bounce_for(IoKind::Read, &[]), Bounce::None);
        assert_eq!(bounce_for(IoKind::Read, &[false]), Bounce::Whole);
        assert_eq!(bounce_for(IoKind::Read, &[true, false]), Bounce::Whole);
        assert_eq!(
            bounce_for(IoKind::Write, &[true, false, false]),
            Bounce::Tail
        );
        assert_eq!(bounce_for(IoKind::Write, &[false, true]), Bounce::Whole);
        assert_eq!(bounce_for(IoKind::Write, &[false]), Bounce::Whole);
    }
}
