//! A thin typed layer over one io_uring instance (io_uring_setup(2), io_uring_enter(2),
//! io_uring_register(2)) for one worker thread: a sparse registered file table with one slot
//! per export the worker serves (IORING_REGISTER_FILES2 / IORING_REGISTER_FILES_UPDATE), the
//! worker's whole buffer region registered as fixed buffer 0, and the handful of operations
//! the data path submits.

use std::io;
use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// A backing file as an operation names it: its slot in the registered file table, and its
/// descriptor (used instead when the registered table is switched off for measurement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub slot: u32,
    pub fd: RawFd,
}
/// Index of the worker's buffer region in the registered buffer table (IORING_REGISTER_BUFFERS).
const FIXED_BUFFER: u16 = 0;

#[derive(Debug, thiserror::Error)]
pub enum UringError {
    #[error(
        "io_uring_setup failed: {0} (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)"
    )]
    Setup(#[source] io::Error),
    #[error("registering {what} with io_uring failed: {source} (RLIMIT_MEMLOCK too small? try `ulimit -l unlimited`)")]
    Register {
        what: &'static str,
        source: io::Error,
    },
    #[error("io_uring_enter failed: {0}")]
    Enter(#[source] io::Error),
}

/// How the ring was set up, for the start-up log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFlavour {
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG.
    DeferTaskrun,
    /// IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, for kernels without the above.
    CoopTaskrun,
}

/// One completion (struct io_uring_cqe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub user_data: u64,
    /// Bytes transferred, or a negative errno.
    pub result: i32,
    /// IORING_CQE_F_MORE: a multishot request stays armed.
    pub more: bool,
}

/// One io_uring, owned by the thread that created it (required by SINGLE_ISSUER and
/// DEFER_TASKRUN: completions run only when this thread enters the ring).
pub struct Ring {
    ring: IoUring,
    flavour: RingFlavour,
    /// The registered buffer region: fixed reads and writes must fall inside it.
    buffer_start: usize,
    buffer_end: usize,
    /// Slots in the registered file table.
    file_slots: u32,
    /// Use the registered files and buffer (READ_FIXED/WRITE_FIXED on fixed files); off
    /// only to measure what they buy.
    fixed: bool,
}

impl Ring {
    /// Sets up a ring with `entries` submission slots (completion queue twice that).
    pub fn new(entries: u32, defer_taskrun: bool) -> Result<Ring, UringError> {
        let deferred = if defer_taskrun {
            IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_cqsize(entries * 2)
                .build(entries)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        let (ring, flavour) = match deferred {
            Ok(ring) => (ring, RingFlavour::DeferTaskrun),
            Err(_) => (
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .setup_cqsize(entries * 2)
                    .build(entries)
                    .map_err(UringError::Setup)?,
                RingFlavour::CoopTaskrun,
            ),
        };
        Ok(Ring {
            ring,
            flavour,
            buffer_start: 0,
            buffer_end: 0,
            file_slots: 0,
            fixed: true,
        })
    }

    pub fn flavour(&self) -> RingFlavour {
        self.flavour
    }

    /// Registers an empty file table of `slots` entries (IORING_REGISTER_FILES2 with
    /// IORING_RSRC_REGISTER_SPARSE), filled by [`Ring::set_file`].
    pub fn register_file_table(&mut self, slots: u32) -> Result<(), UringError> {
        self.ring
            .submitter()
            .register_files_sparse(slots)
            .map_err(|source| UringError::Register {
                what: "the file table",
                source,
            })?;
        self.file_slots = slots;
        Ok(())
    }

    /// Puts `file.fd` in slot `file.slot` (IORING_REGISTER_FILES_UPDATE). The table holds its
    /// own reference: operations already issued keep the file they resolved.
    pub fn set_file(&mut self, file: FileRef) -> Result<(), UringError> {
        self.update_file_slot(file.slot, file.fd)
    }

    /// Empties slot `slot`. Only once no operation naming it is still queued: one that the
    /// kernel has not issued yet resolves the slot when it is issued.
    pub fn clear_file(&mut self, slot: u32) -> Result<(), UringError> {
        self.update_file_slot(slot, -1)
    }

    fn update_file_slot(&mut self, slot: u32, fd: RawFd) -> Result<(), UringError> {
        assert!(slot < self.file_slots, "file slot {slot} outside the table");
        self.ring
            .submitter()
            .register_files_update(slot, &[fd])
            .map(|_| ())
            .map_err(|source| UringError::Register {
                what: "a backing file",
                source,
            })
    }

    /// Registers `[base, base + len)` as fixed buffer 0 (IORING_REGISTER_BUFFERS): the
    /// kernel pins the pages once instead of on every read and write.
    ///
    /// # Safety
    /// The region must stay mapped, and must not be unmapped or remapped, for as long as
    /// this ring exists (the worker owns both and drops the ring first).
    pub unsafe fn register_buffer(&mut self, base: *mut u8, len: usize) -> Result<(), UringError> {
        let iovec = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        // SAFETY: the caller guarantees the region outlives the ring; the kernel copies the
        // iovec array during the call.
        unsafe { self.ring.submitter().register_buffers(&[iovec]) }.map_err(|source| {
            UringError::Register {
                what: "the UMEM buffers",
                source,
            }
        })?;
        self.buffer_start = base as usize;
        self.buffer_end = base as usize + len;
        Ok(())
    }

    fn in_fixed_buffer(&self, buf: *const u8, len: u32) -> bool {
        let start = buf as usize;
        start >= self.buffer_start && start.saturating_add(len as usize) <= self.buffer_end
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every entry is built by the push_* methods below, whose callers
        // guarantee that the buffers they name stay valid until the completion is reaped.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        // The worker sizes the ring for every frame it owns plus its polls, and submits
        // before the queue can fill: a full queue is a sizing bug, not an input error.
        assert!(
            pushed.is_ok(),
            "io_uring submission queue full: ring sized too small"
        );
    }

    /// Stops using the registered file and buffer: plain IORING_OP_READ/WRITE on the raw
    /// descriptor, so the kernel looks the file up and pins the pages on every operation.
    pub fn disable_fixed(&mut self) {
        self.fixed = false;
    }

    /// Queues IORING_OP_READ_FIXED of `len` bytes at file `offset` into `buf`.
    ///
    /// # Safety
    /// `buf..buf + len` must lie in the registered buffer and stay untouched by anyone else
    /// until the completion for `user_data` is reaped.
    pub unsafe fn push_read(
        &mut self,
        file: FileRef,
        buf: *mut u8,
        len: u32,
        offset: u64,
        user_data: u64,
    ) {
        debug_assert!(self.in_fixed_buffer(buf, len));
        let entry = if self.fixed {
            opcode::ReadFixed::new(types::Fixed(file.slot), buf, len, FIXED_BUFFER)
                .offset(offset)
                .build()
        } else {
            opcode::Read::new(types::Fd(file.fd), buf, len)
                .offset(offset)
                .build()
        }
        .user_data(user_data);
        self.push(entry);
    }

    /// Queues IORING_OP_WRITE_FIXED of `len` bytes from `buf` to file `offset`.
    ///
    /// # Safety
    /// As for [`Ring::push_read`]; the bytes must not change until the completion.
    pub unsafe fn push_write(
        &mut self,
        file: FileRef,
        buf: *const u8,
        len: u32,
        offset: u64,
        user_data: u64,
    ) {
        debug_assert!(self.in_fixed_buffer(buf, len));
        let entry = if self.fixed {
            opcode::WriteFixed::new(types::Fixed(file.slot), buf, len, FIXED_BUFFER)
                .offset(offset)
                .build()
        } else {
            opcode::Write::new(types::Fd(file.fd), buf, len)
                .offset(offset)
                .build()
        }
        .user_data(user_data);
        self.push(entry);
    }

    /// Queues IORING_OP_READV of the `count` buffers at `iovecs` from file `offset`
    /// (buffers anywhere: for frame chains, whose pieces are not one contiguous range).
    ///
    /// # Safety
    /// The iovec array and every buffer it names must stay valid, and untouched by anyone
    /// else, until the completion for `user_data` is reaped.
    pub unsafe fn push_readv(
        &mut self,
        file: FileRef,
        iovecs: *const libc::iovec,
        count: u32,
        offset: u64,
        user_data: u64,
    ) {
        let entry = if self.fixed {
            opcode::Readv::new(types::Fixed(file.slot), iovecs, count)
                .offset(offset)
                .build()
        } else {
            opcode::Readv::new(types::Fd(file.fd), iovecs, count)
                .offset(offset)
                .build()
        }
        .user_data(user_data);
        self.push(entry);
    }

    /// Queues IORING_OP_WRITEV of the `count` buffers at `iovecs` to file `offset`.
    ///
    /// # Safety
    /// As for [`Ring::push_readv`]; the bytes must not change until the completion.
    pub unsafe fn push_writev(
        &mut self,
        file: FileRef,
        iovecs: *const libc::iovec,
        count: u32,
        offset: u64,
        user_data: u64,
    ) {
        let entry = if self.fixed {
            opcode::Writev::new(types::Fixed(file.slot), iovecs, count)
                .offset(offset)
                .build()
        } else {
            opcode::Writev::new(types::Fd(file.fd), iovecs, count)
                .offset(offset)
                .build()
        }
        .user_data(user_data);
        self.push(entry);
    }

    /// Queues the read (`write` false) or write of the `count` buffers at `iovecs` at file
    /// `offset`: READ_FIXED/WRITE_FIXED for a single buffer (it lies in the registered
    /// region), READV/WRITEV for several.
    ///
    /// # Safety
    /// As for [`Ring::push_readv`] and [`Ring::push_read`]: the iovec array and the buffers
    /// stay valid and untouched by anyone else until the completion for `user_data` is
    /// reaped; a single buffer lies in the registered region.
    pub unsafe fn push_transfer(
        &mut self,
        file: FileRef,
        write: bool,
        iovecs: *const libc::iovec,
        count: u32,
        offset: u64,
        user_data: u64,
    ) {
        debug_assert!(count > 0);
        // SAFETY: the caller guarantees `iovecs` points to `count` valid iovecs.
        let first = unsafe { *iovecs };
        // SAFETY (all four): guaranteed by the caller, as documented above.
        unsafe {
            match (write, count) {
                (false, 1) => self.push_read(
                    file,
                    first.iov_base.cast(),
                    first.iov_len as u32,
                    offset,
                    user_data,
                ),
                (false, _) => self.push_readv(file, iovecs, count, offset, user_data),
                (true, 1) => self.push_write(
                    file,
                    first.iov_base.cast(),
                    first.iov_len as u32,
                    offset,
                    user_data,
                ),
                (true, _) => self.push_writev(file, iovecs, count, offset, user_data),
            }
        }
    }

    /// Queues IORING_OP_FSYNC with IORING_FSYNC_DATASYNC (fdatasync(2)) of a backing file.
    pub fn push_fdatasync(&mut self, file: FileRef, user_data: u64) {
        let entry = if self.fixed {
            opcode::Fsync::new(types::Fixed(file.slot))
        } else {
            opcode::Fsync::new(types::Fd(file.fd))
        }
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(user_data);
        self.push(entry);
    }

    /// Queues a multishot IORING_OP_POLL_ADD of `events` (POLLIN, ...) on `fd`: one
    /// completion per readiness wake-up until it ends (a completion without `more`).
    pub fn push_poll_multishot(&mut self, fd: RawFd, events: u32, user_data: u64) {
        let entry = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(true)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Queues a one-shot IORING_OP_POLL_ADD of `events` on `fd`: one completion, when `fd`
    /// is ready (at once if it already is when the kernel arms it).
    pub fn push_poll_oneshot(&mut self, fd: RawFd, events: u32, user_data: u64) {
        let entry = opcode::PollAdd::new(types::Fd(fd), events)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Submits what is queued without waiting (and runs deferred completions if the
    /// kernel flagged some: IORING_SQ_TASKRUN).
    pub fn submit(&mut self) -> Result<(), UringError> {
        // Nothing queued, no deferred completions to run, no overflow to flush: no syscall.
        let sq = self.ring.submission();
        if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
            return Ok(());
        }
        drop(sq);
        enter_outcome(|| self.ring.submit())
    }

    /// Submits what is queued and waits for at least one completion.
    pub fn submit_and_wait(&mut self) -> Result<(), UringError> {
        enter_outcome(|| self.ring.submit_and_wait(1))
    }

    /// Submits what is queued and waits for at least one completion, or `timeout_ns`
    /// (IORING_ENTER_EXT_ARG with a timeout: a timer, not a request in the ring).
    pub fn submit_and_wait_timeout(&mut self, timeout_ns: u32) -> Result<(), UringError> {
        let timeout = types::Timespec::new().nsec(timeout_ns);
        let args = types::SubmitArgs::new().timespec(&timeout);
        enter_outcome(|| self.ring.submitter().submit_with_args(1, &args))
    }

    /// Moves up to `out.len()` completions into `out`; returns how many.
    pub fn reap(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        for (slot, cqe) in out.iter_mut().zip(self.ring.completion()) {
            *slot = Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                more: cqueue::more(cqe.flags()),
            };
            n += 1;
        }
        n
    }
}

/// io_uring_enter's transient failures are not errors for a loop that reaps and comes
/// back: EINTR (a signal; the caller checks its state), EBUSY (the completion queue
/// overflowed; reaping makes room) and ETIME (a timed wait ran out).
fn enter_outcome(f: impl FnOnce() -> io::Result<usize>) -> Result<(), UringError> {
    match f() {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EBUSY | libc::ETIME)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(UringError::Enter(e)),
    }
}
