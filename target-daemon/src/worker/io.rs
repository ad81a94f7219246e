//! Disk I/O for one request: where its sector data lives (the head frame, further received
//! fragments, spare frames for a chained reply, or a bounce buffer), the io_uring operation
//! that moves it, and the reply once it is done.

use tracing::warn;

use super::plan::{self, Bounce, Extent};
use super::{Answered, Worker, MAX_FRAGS, MAX_MERGE};
use crate::backend::IoMode;
use crate::stats::ExportCounters;
use crate::target::{IoKind, IoOutcome, IoRequest};

/// A disk I/O in flight, keyed by its head frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    /// The export's slot in the worker's slab (and io_uring file table).
    export: u32,
    io: IoRequest,
    /// The packet's address in the UMEM (as the RX descriptor gave it).
    packet_addr: u64,
    started_ns: u64,
    /// When the I/O was submitted (stamped just before the `io_uring_enter` that submits
    /// it, or before the synchronous call); a merged I/O's leader holds it for all.
    submitted_ns: u64,
    bounce: Bounce,
    /// The bounce buffer slot, when `bounce` is not [`Bounce::None`].
    bounce_slot: u32,
    /// Frames held besides the head: a write's further fragments (their descriptor
    /// addresses) or a chained read reply's spare frames (chunk addresses).
    extra: [u64; MAX_FRAGS - 1],
    extra_count: usize,
    /// The pieces of frames the data occupies, in file order.
    pieces: [libc::iovec; MAX_FRAGS],
    piece_count: usize,
    /// What io_uring is given: the pieces, or (bouncing) the bounce buffer and at most
    /// the head piece. Lives in the in-flight table until the completion, so READV/WRITEV
    /// may read it whenever the kernel issues them.
    vector: [libc::iovec; MAX_VECTOR],
    vector_count: usize,
    /// The leader of a merged I/O (requests adjacent in the file that arrived together,
    /// moved by one READV/WRITEV) lists the head frames of the others, in file order; only
    /// the leader's completion comes back.
    members: [u32; MAX_MERGE - 1],
    member_count: usize,
}

/// Most iovecs one operation is given: a chain's fragments, or a merge's members.
const MAX_VECTOR: usize = if MAX_FRAGS > MAX_MERGE {
    MAX_FRAGS
} else {
    MAX_MERGE
};

/// A request that may be merged with its neighbours in the same RX batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mergeable {
    export: u32,
    index: u32,
    head: libc::xdp_desc,
    io: IoRequest,
    started_ns: u64,
}

const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

impl InFlight {
    fn pieces(&self) -> &[libc::iovec] {
        &self.pieces[..self.piece_count]
    }

    fn push_piece(&mut self, base: *mut u8, len: usize) {
        self.pieces[self.piece_count] = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        self.piece_count += 1;
    }
}

/// True when O_DIRECT can use `piece` in place: `mem_align`-aligned address, whole sectors.
fn direct_ok(piece: &libc::iovec, mem_align: u32) -> bool {
    (piece.iov_base as usize).is_multiple_of(mem_align as usize)
        && piece.iov_len.is_multiple_of(aoe_proto::SECTOR_SIZE)
}

impl Worker {
    /// Starts the disk I/O of a request of `export` that arrived in `head` (frame `index`)
    /// and `extras`, or (single-frame reads and writes) holds it until the end of the RX
    /// batch so that it can be merged with its neighbours in the file.
    pub(super) fn queue_or_start_io(
        &mut self,
        export: u32,
        index: u32,
        head: libc::xdp_desc,
        extras: &[libc::xdp_desc],
        io: IoRequest,
        started_ns: u64,
    ) {
        let single_frame = extras.is_empty()
            && (io.kind == IoKind::Write
                || (io.kind == IoKind::Read
                    && io.reply_len as usize <= self.frames.map.room_after(head.addr)));
        let e = self.exports.get(export);
        if e.io_mode != IoMode::Null {
            // The disk, a mapped copy or a bounce buffer writes into the frame.
            self.known_zero.written(index);
        }
        // A mapped transfer is a memcpy: merging would save nothing.
        let mergeable = e.io_mode != IoMode::Null && e.mapping().is_none();
        if self.merge && single_frame && mergeable && io.kind != IoKind::Flush {
            self.merge_batch.push(Mergeable {
                export,
                index,
                head,
                io,
                started_ns,
            });
        } else {
            self.start_io(export, index, head, extras, io, started_ns);
        }
    }

    /// Starts the I/O held back by [`Worker::queue_or_start_io`]: runs of requests of one
    /// kind whose byte ranges follow each other (as an initiator splits one larger I/O into
    /// frames) become one READV/WRITEV; the rest start one by one.
    pub(super) fn flush_merge_batch(&mut self) {
        let batch = std::mem::take(&mut self.merge_batch);
        let extent = |m: &Mergeable| Extent {
            export: m.export,
            kind: m.io.kind,
            offset_bytes: m.io.offset_bytes,
            len_bytes: m.io.len_bytes,
        };
        for run in plan::merge_runs(&batch, extent) {
            let run = &batch[run];
            if run.len() == 1 || !self.start_merged(run) {
                for m in run {
                    self.start_io(m.export, m.index, m.head, &[], m.io, m.started_ns);
                }
            }
        }
        // Keep the allocation: the batch vector never grows past MAX_BATCH.
        self.merge_batch = batch;
        self.merge_batch.clear();
    }

    /// One READV/WRITEV for `run` (adjacent single-frame requests of one kind). Returns
    /// false, having started nothing, when a member's data cannot be used in place.
    fn start_merged(&mut self, run: &[Mergeable]) -> bool {
        let export = run[0].export;
        let (io_mode, file, sync_fd) = {
            let e = self.exports.get(export);
            (e.io_mode, e.file, e.sync_fd)
        };
        let Some(file) = file else {
            return false;
        };
        let mut flights = [None; MAX_MERGE];
        for (slot, m) in flights.iter_mut().zip(run) {
            let mut flight = Self::new_flight(export, m.head, m.io, m.started_ns);
            match m.io.kind {
                IoKind::Read => {
                    let planned = self.plan_read(&mut flight);
                    debug_assert!(planned && flight.extra_count == 0, "single-frame read");
                }
                _ => self.plan_write(&mut flight, m.head, &[]),
            }
            let in_place = match io_mode {
                IoMode::Direct { mem_align } => {
                    flight.pieces().iter().all(|p| direct_ok(p, mem_align))
                }
                IoMode::Buffered => true,
                IoMode::Null => false,
            };
            if !in_place || flight.piece_count != 1 {
                return false;
            }
            *slot = Some(flight);
        }
        let leader_index = run[0].index;
        let mut leader = flights[0].expect("planned above");
        for (i, (m, flight)) in run.iter().zip(&flights).enumerate() {
            let flight = flight.expect("planned above");
            leader.vector[i] = flight.pieces[0];
            if i > 0 {
                leader.members[i - 1] = m.index;
                debug_assert!(self.in_flight[m.index as usize].is_none());
                self.in_flight[m.index as usize] = Some(flight);
            }
        }
        leader.vector_count = run.len();
        if sync_fd.is_some() {
            leader.submitted_ns = self.clock.now_ns();
        }
        leader.member_count = run.len() - 1;
        let kind = leader.io.kind;
        let offset = leader.io.offset_bytes;
        let stored = self.in_flight[leader_index as usize].insert(leader);
        let vector = stored.vector.as_ptr();
        self.in_flight_count += run.len() as u32;
        for _ in run {
            self.exports.io_started(export);
        }
        self.counters.add(|c| &c.merged, run.len() as u64 - 1);
        let user_data = u64::from(leader_index);
        if let Some(fd) = sync_fd {
            // SAFETY: as below; the call returns before anything else touches the buffers.
            let result = unsafe { sync_transfer(fd, kind, vector, run.len(), offset) };
            let completed_ns = self.clock.now_ns();
            self.complete_io(leader_index, result, completed_ns);
            return true;
        }
        self.unstamped.push(leader_index);
        // SAFETY: every iovec names a frame one of the members owns, inside the registered
        // region; nothing else touches them until the leader's completion is reaped; the
        // iovec array lives in the in-flight table, never reallocated, until then.
        unsafe {
            let write = kind == IoKind::Write;
            self.ring
                .push_transfer(file, write, vector, run.len() as u32, offset, user_data);
        }
        true
    }

    /// A request's in-flight record before planning: no pieces, frames or bounce buffer.
    fn new_flight(export: u32, head: libc::xdp_desc, io: IoRequest, started_ns: u64) -> InFlight {
        InFlight {
            export,
            io,
            packet_addr: head.addr,
            started_ns,
            submitted_ns: 0,
            bounce: Bounce::None,
            bounce_slot: 0,
            extra: [0; MAX_FRAGS - 1],
            extra_count: 0,
            pieces: [EMPTY_IOV; MAX_FRAGS],
            piece_count: 0,
            vector: [EMPTY_IOV; MAX_VECTOR],
            vector_count: 0,
            members: [0; MAX_MERGE - 1],
            member_count: 0,
        }
    }

    /// Starts the disk I/O of a request that arrived in `head` (frame `index`) and `extras`.
    pub(super) fn start_io(
        &mut self,
        export: u32,
        index: u32,
        head: libc::xdp_desc,
        extras: &[libc::xdp_desc],
        io: IoRequest,
        started_ns: u64,
    ) {
        let (io_mode, file, sync_fd) = {
            let e = self.exports.get(export);
            (e.io_mode, e.file, e.sync_fd)
        };
        let mut flight = Self::new_flight(export, head, io, started_ns);
        match io.kind {
            IoKind::Flush => self.recycle_extras(extras),
            IoKind::Read => {
                self.recycle_extras(extras);
                if !self.plan_read(&mut flight) {
                    self.counters.add(|c| &c.dropped_no_buffer, 1);
                    self.frames.recycle(head.addr);
                    return;
                }
            }
            IoKind::Write => self.plan_write(&mut flight, head, extras),
        }
        self.exports.io_started(export);
        let Some(file) = file.filter(|_| io_mode != IoMode::Null) else {
            if io.kind == IoKind::Read {
                self.zero_fill_read(index, &flight);
            }
            // The null backend: no disk, no split.
            self.finish_io(&flight, true, None);
            return;
        };
        if io.kind != IoKind::Flush && self.exports.get(export).mapping().is_some() {
            self.transfer_mapped(&flight);
            return;
        }
        if !self.choose_vector(&mut flight, io_mode) {
            // No bounce buffer free: drop the request (the initiator retransmits it).
            self.exports.io_done(&mut self.ring, export);
            self.counters.add(|c| &c.dropped_no_buffer, 1);
            for &addr in &flight.extra[..flight.extra_count] {
                self.release_frame(addr);
            }
            self.frames.recycle(head.addr);
            return;
        }
        if sync_fd.is_some() {
            flight.submitted_ns = self.clock.now_ns();
        }
        let slot = &mut self.in_flight[index as usize];
        debug_assert!(slot.is_none(), "frame {index} already has I/O in flight");
        let stored = slot.insert(flight);
        self.in_flight_count += 1;
        let user_data = u64::from(index);
        let (vector, count) = (stored.vector.as_ptr(), stored.vector_count);
        let offset = io.offset_bytes;
        if let Some(fd) = sync_fd {
            // SAFETY: as for the io_uring operations below; the call returns before
            // anything else touches the buffers.
            let result = unsafe { sync_transfer(fd, io.kind, vector, count, offset) };
            let completed_ns = self.clock.now_ns();
            self.complete_io(index, result, completed_ns);
            return;
        }
        self.unstamped.push(index);
        match io.kind {
            IoKind::Flush => self.ring.push_fdatasync(file, user_data),
            // SAFETY: the buffers are frames this request owns, or its bounce buffer, all
            // inside the registered region; nothing else touches them until the completion
            // is reaped; the iovec array lives in the in-flight table, which is never
            // reallocated, until then.
            IoKind::Read | IoKind::Write => unsafe {
                let write = io.kind == IoKind::Write;
                self.ring
                    .push_transfer(file, write, vector, count as u32, offset, user_data);
            },
        }
    }

    /// The null backend's read: the data area reads zero. Only the bytes of the head frame
    /// not known to be zero are written (`KnownZero`); the spare frames' pieces in full.
    fn zero_fill_read(&mut self, index: u32, flight: &InFlight) {
        let pieces = flight.pieces();
        let Some((head, spares)) = pieces.split_first() else {
            return;
        };
        let offset = self.frames.map.offset_in_frame(flight.packet_addr) as usize
            + flight.io.data_offset as usize;
        let (from, to) = self.known_zero.zero_fill(index, offset, head.iov_len);
        assert!(
            to <= self.frames.map.frame_size() as usize,
            "zero fill past the frame"
        );
        // SAFETY: the head piece starts at `offset` in frame `index`, which this request
        // owns (planned above); `from..to` starts there and ends at most at the frame's
        // end (`KnownZero` never reports beyond it).
        unsafe { std::ptr::write_bytes(head.iov_base.cast::<u8>(), 0, to - from) };
        for piece in spares {
            // SAFETY: each piece lies in a spare frame this request owns (planned above).
            unsafe { std::ptr::write_bytes(piece.iov_base.cast::<u8>(), 0, piece.iov_len) };
        }
    }

    /// Lays a read's data out over the head frame and, for what does not fit, spare frames.
    /// Returns false when there are not enough spare frames.
    fn plan_read(&mut self, flight: &mut InFlight) -> bool {
        let io = flight.io;
        let len = io.len_bytes as usize;
        let frame_size = self.frames.map.frame_size() as usize;
        let head_room = self.frames.map.room_after(flight.packet_addr) - io.data_offset as usize;
        let Some(layout) = plan::read_layout(len, head_room, frame_size) else {
            return false;
        };
        if layout.spare_frames > self.frames.spare_count() {
            return false;
        }
        flight.push_piece(
            self.frames
                .map
                .ptr(flight.packet_addr, io.data_offset as usize),
            layout.head_bytes,
        );
        for i in 0..layout.spare_frames {
            // Counted above: the pool has the spares this needs.
            let Some(spare) = self.frames.pop_spare() else {
                break;
            };
            let chunk = self.frames.map.chunk_addr(spare);
            flight.extra[flight.extra_count] = chunk;
            flight.extra_count += 1;
            let bytes = layout.spare_bytes(i, len, frame_size);
            flight.push_piece(self.frames.map.ptr(chunk, 0), bytes);
        }
        true
    }

    /// Lays a write's data out over the fragments it arrived in (only the data the sector
    /// count names: trailing padding is not written).
    fn plan_write(
        &mut self,
        flight: &mut InFlight,
        head: libc::xdp_desc,
        extras: &[libc::xdp_desc],
    ) {
        let mut lens = [0usize; MAX_FRAGS];
        let descs = std::iter::once(&head).chain(extras);
        for (len, d) in lens.iter_mut().zip(descs.clone()) {
            *len = d.len as usize;
        }
        let count = 1 + extras.len();
        let data_offset = flight.io.data_offset as usize;
        let pieces = plan::write_pieces(data_offset, &lens[..count], flight.io.len_bytes as usize);
        for (d, &(offset, take)) in descs.zip(&pieces) {
            if take > 0 {
                flight.push_piece(self.frames.map.ptr(d.addr, offset), take);
            }
        }
        debug_assert_eq!(
            flight.pieces().iter().map(|p| p.iov_len).sum::<usize>(),
            flight.io.len_bytes as usize,
            "decide() checked that the fragments hold the data"
        );
        for d in extras {
            flight.extra[flight.extra_count] = d.addr;
            flight.extra_count += 1;
        }
    }

    /// Decides what io_uring reads into or writes from: the pieces themselves where the
    /// I/O mode allows, else (O_DIRECT alignment) a bounce buffer, gathering a write's data
    /// into it now. Returns false when a bounce buffer is needed and none is free.
    fn choose_vector(&mut self, flight: &mut InFlight, io_mode: IoMode) -> bool {
        let count = flight.piece_count;
        flight.vector[..count].copy_from_slice(&flight.pieces[..count]);
        flight.vector_count = count;
        let IoMode::Direct { mem_align } = io_mode else {
            return true;
        };
        let pieces = flight.pieces;
        let mut in_place = [false; MAX_FRAGS];
        for (ok, piece) in in_place.iter_mut().zip(&pieces[..count]) {
            *ok = direct_ok(piece, mem_align);
        }
        let bounce_kind = plan::bounce_for(flight.io.kind, &in_place[..count]);
        if bounce_kind == Bounce::None {
            return true;
        }
        let Some(slot) = self.frames.pop_bounce() else {
            return false;
        };
        flight.bounce_slot = slot;
        let bounce = self.frames.map.bounce_ptr(slot);
        let head_in_place = bounce_kind == Bounce::Tail;
        let first_bounced = usize::from(head_in_place);
        let mut at = 0;
        if flight.io.kind == IoKind::Write {
            for piece in &pieces[first_bounced..count] {
                debug_assert!(at + piece.iov_len <= self.frames.map.bounce_len());
                // SAFETY: the piece lies in a frame this request owns; the bounce buffer
                // has room for the request's data (sized for the largest) and does not
                // overlap the UMEM.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        piece.iov_base.cast::<u8>(),
                        bounce.add(at),
                        piece.iov_len,
                    )
                };
                at += piece.iov_len;
            }
            self.counters.add(|c| &c.bounced, 1);
        } else {
            at = flight.io.len_bytes as usize;
        }
        let bounce_iov = libc::iovec {
            iov_base: bounce.cast(),
            iov_len: at,
        };
        flight.bounce = bounce_kind;
        if head_in_place {
            flight.vector[..2].copy_from_slice(&[pieces[0], bounce_iov]);
            flight.vector_count = 2;
        } else {
            flight.vector[0] = bounce_iov;
            flight.vector_count = 1;
        }
        true
    }

    /// The mapped engine: copies a planned read or write between its frames and the
    /// export's mapped window, and answers it. When the window turns out poisoned (the file
    /// lost pages under it), the request fails and the export falls back to preadv/pwritev.
    fn transfer_mapped(&mut self, flight: &InFlight) {
        let export = self.exports.get(flight.export);
        let Some(window) = export.mapping() else {
            debug_assert!(false, "start_io checked the mapping");
            self.finish_io(flight, false, None);
            return;
        };
        let io = flight.io;
        let submitted_ns = self.clock.now_ns();
        // SAFETY: the pieces lie in frames this request owns (planned by plan_read or
        // plan_write), which nothing else touches until its reply is queued below.
        let done = unsafe {
            match io.kind {
                IoKind::Read => window.read_into(io.offset_bytes, flight.pieces()),
                _ => window.write_from(io.offset_bytes, flight.pieces()),
            }
        };
        let disk_ns = self.clock.now_ns().saturating_sub(submitted_ns);
        if !done {
            self.counters.add(|c| &c.io_errors, 1);
            if window.poisoned() {
                let key = export.target.key();
                self.exports.stop_mapping(flight.export);
                warn!(queue_id = self.queue_id, export = %key,
                    "the backing file lost pages under its mapping (truncated, or a hole on a full file system); \
                     answered with an ATA error, serving this export with preadv/pwritev from now on");
            }
        }
        self.finish_io(flight, done, Some(disk_ns));
    }

    /// Stamps the disk I/O queued since the last submission as submitted now: one clock
    /// read, none when no disk I/O was queued. Called just before the submission.
    pub(super) fn stamp_submissions(&mut self) {
        if self.unstamped.is_empty() {
            return;
        }
        let now_ns = self.clock.now_ns();
        for &index in &self.unstamped {
            if let Some(flight) = &mut self.in_flight[index as usize] {
                flight.submitted_ns = now_ns;
            }
        }
        self.unstamped.clear();
    }

    /// Handles the completion of the I/O of head frame `index` with io_uring result
    /// `result`, seen by the worker at `completed_ns`.
    pub(super) fn complete_io(&mut self, index: u32, result: i32, completed_ns: u64) {
        let Some(flight) = self
            .in_flight
            .get_mut(index as usize)
            .and_then(Option::take)
        else {
            warn!(
                queue_id = self.queue_id,
                index, "completion for a frame with no I/O in flight"
            );
            return;
        };
        self.in_flight_count -= 1;
        let disk_ns = Some(completed_ns.saturating_sub(flight.submitted_ns));
        if flight.member_count > 0 {
            self.complete_merged(&flight, result, disk_ns);
            return;
        }
        let io = flight.io;
        let done = match io.kind {
            IoKind::Flush => result >= 0,
            IoKind::Read | IoKind::Write => result == io.len_bytes as i32,
        };
        if !done {
            self.counters.add(|c| &c.io_errors, 1);
            let errors = self
                .counters
                .io_errors
                .load(std::sync::atomic::Ordering::Relaxed);
            if errors.is_power_of_two() {
                let cause = if result < 0 {
                    std::io::Error::from_raw_os_error(-result).to_string()
                } else {
                    format!("short transfer: {result} of {} bytes", io.len_bytes)
                };
                warn!(queue_id = self.queue_id, kind = ?io.kind, offset_bytes = io.offset_bytes, errors,
                    "disk I/O failed: {cause}; answered with an ATA error");
            }
        }
        if done && io.kind == IoKind::Read && flight.bounce == Bounce::Whole {
            let mut from = self.frames.map.bounce_ptr(flight.bounce_slot).cast_const();
            for piece in flight.pieces() {
                // SAFETY: the bounce buffer holds the len_bytes just read, which the pieces
                // (frames this request owns) add up to; they do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(from, piece.iov_base.cast::<u8>(), piece.iov_len);
                    from = from.add(piece.iov_len);
                }
            }
            self.counters.add(|c| &c.bounced, 1);
        }
        self.finish_io(&flight, done, disk_ns);
    }

    /// A merged I/O finished: each member succeeded if the transfer covered its range; each
    /// spent the leader's `disk_ns` on the disk.
    fn complete_merged(&mut self, leader: &InFlight, result: i32, disk_ns: Option<u64>) {
        let transferred = u64::try_from(result).unwrap_or(0);
        let mut covered_end = u64::from(leader.io.len_bytes);
        let members = leader.members;
        let member_count = leader.member_count;
        let mut failed = 0u64;
        let leader_done = transferred >= covered_end;
        failed += u64::from(!leader_done);
        self.finish_io(leader, leader_done, disk_ns);
        for &index in &members[..member_count] {
            let Some(member) = self
                .in_flight
                .get_mut(index as usize)
                .and_then(Option::take)
            else {
                warn!(
                    queue_id = self.queue_id,
                    index, "merged member with no I/O in flight"
                );
                continue;
            };
            self.in_flight_count -= 1;
            covered_end += u64::from(member.io.len_bytes);
            let done = transferred >= covered_end;
            failed += u64::from(!done);
            self.finish_io(&member, done, disk_ns);
        }
        if failed > 0 {
            // Counted per request, like the ATA errors the initiators see.
            self.counters.add(|c| &c.io_errors, failed);
            warn!(
                queue_id = self.queue_id,
                result, failed, "merged disk I/O failed or was short; answered with ATA errors"
            );
        }
    }

    /// Builds and queues the reply of a finished I/O, and releases the frames it held.
    /// `disk_ns`: submission to completion, for I/O that went to the disk.
    fn finish_io(&mut self, flight: &InFlight, done: bool, disk_ns: Option<u64>) {
        if flight.bounce != Bounce::None {
            self.frames.push_bounce(flight.bounce_slot);
        }
        // The reply is built and counted before the export may be released below.
        let head = self.frames.map.frame_mut(flight.packet_addr);
        let export = self.exports.get(flight.export);
        let len = export.target.complete(head, &flight.io, outcome_of(done));
        let io = flight.io;
        count_export_io(&export.stats, io, done);
        let answered = Answered {
            started_ns: flight.started_ns,
            export: self.exports.stats_tag(flight.export),
            disk_ns,
        };
        self.exports.io_done(&mut self.ring, flight.export);
        if done {
            self.count_done(io);
        }
        let extras = &flight.extra[..flight.extra_count];
        let chained_reply = done && io.kind == IoKind::Read && !extras.is_empty();
        if chained_reply {
            let head_len = io.data_offset as usize + flight.pieces[0].iov_len;
            self.queue_tx(
                flight.packet_addr,
                head_len,
                libc::XDP_PKT_CONTD,
                Some(answered),
            );
            for (i, (chunk, piece)) in extras.iter().zip(&flight.pieces[1..]).enumerate() {
                let more = if i + 1 < extras.len() {
                    libc::XDP_PKT_CONTD
                } else {
                    0
                };
                self.queue_tx(*chunk, piece.iov_len, more, None);
            }
            return;
        }
        for &addr in extras {
            // A write's fragments go back to the fill ring; a failed read's spare frames
            // to the spare pool.
            self.release_frame(addr);
        }
        self.queue_tx(flight.packet_addr, len, 0, Some(answered));
    }

    fn count_done(&self, io: IoRequest) {
        match io.kind {
            IoKind::Read => {
                self.counters.add(|c| &c.reads, 1);
                self.counters
                    .add(|c| &c.read_bytes, u64::from(io.len_bytes));
            }
            IoKind::Write => {
                self.counters.add(|c| &c.writes, 1);
                self.counters
                    .add(|c| &c.written_bytes, u64::from(io.len_bytes));
            }
            IoKind::Flush => self.counters.add(|c| &c.flushes, 1),
        }
    }

    /// Returns received fragments after the head to the fill ring.
    pub(super) fn recycle_extras(&mut self, extras: &[libc::xdp_desc]) {
        for d in extras {
            self.frames.recycle(d.addr);
        }
    }
}

/// Counts a request whose disk I/O ended in its export's counters: a failure is a disk
/// error answered with an ATA error; a flush is one of the "other" requests.
fn count_export_io(stats: &ExportCounters, io: IoRequest, done: bool) {
    if !done {
        stats.add(|c| &c.disk_errors, 1);
        stats.add(|c| &c.ata_errors, 1);
        return;
    }
    match io.kind {
        IoKind::Read => {
            stats.add(|c| &c.reads, 1);
            stats.add(|c| &c.read_bytes, u64::from(io.len_bytes));
        }
        IoKind::Write => {
            stats.add(|c| &c.writes, 1);
            stats.add(|c| &c.written_bytes, u64::from(io.len_bytes));
        }
        IoKind::Flush => stats.add(|c| &c.other, 1),
    }
}

fn outcome_of(done: bool) -> IoOutcome {
    if done {
        IoOutcome::Done
    } else {
        IoOutcome::Failed
    }
}

/// The synchronous engine: preadv(2) / pwritev(2) / fdatasync(2) on the calling thread, for
/// backing files whose I/O never blocks on a device (tmpfs) but that io_uring would hand to
/// a worker thread (they cannot be issued with IOCB_NOWAIT). Returns what io_uring would:
/// bytes transferred, or a negative errno.
///
/// # Safety
/// `vector` must point to `count` iovecs naming memory valid for the transfer, which
/// nothing else touches during the call.
unsafe fn sync_transfer(
    fd: std::os::fd::RawFd,
    kind: IoKind,
    vector: *const libc::iovec,
    count: usize,
    offset: u64,
) -> i32 {
    loop {
        // SAFETY: guaranteed by the caller; fd is the open backing file.
        let rc = unsafe {
            match kind {
                IoKind::Read => libc::preadv(fd, vector, count as i32, offset as libc::off_t),
                IoKind::Write => libc::pwritev(fd, vector, count as i32, offset as libc::off_t),
                IoKind::Flush => libc::fdatasync(fd) as isize,
            }
        };
        if rc >= 0 {
            return i32::try_from(rc).unwrap_or(i32::MAX);
        }
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return -errno;
        }
    }
}
