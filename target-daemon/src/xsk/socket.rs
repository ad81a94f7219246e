//! The AF_XDP socket: UMEM registration, ring setup and mapping, bind, wakeups.

use std::{
    ffi::c_void,
    fmt, io, mem,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr::NonNull,
};

use super::{
    busy_poll::{self, NapiBusyPoll, NapiBusyPollState},
    ring::{CompRing, FillRing, RxRing, TxRing},
    UmemConfig, UmemRegion, XskError,
};

/// How the socket got bound (reported by the kernel through `XDP_OPTIONS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// `XDP_ZEROCOPY`: the driver DMAs straight into UMEM frames.
    ZeroCopy,
    /// `XDP_COPY`: the kernel copies each frame between the driver's buffers and the UMEM
    /// (always the case on veth and with generic XDP).
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Kernel counters of one socket (`XDP_STATISTICS`, `struct xdp_statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than an invalid descriptor (e.g. no fill entry).
    pub rx_dropped: u64,
    /// Invalid descriptors seen on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors seen on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty on a kick.
    pub tx_ring_empty_descs: u64,
}

/// Split mutable borrows of the four rings, so that a worker can, for example, move
/// descriptors from RX to TX in one loop.
#[derive(Debug)]
pub struct Rings<'a> {
    /// Fill ring: give free frames to the kernel.
    pub fill: &'a mut FillRing,
    /// Completion ring: take back frames the kernel has sent.
    pub comp: &'a mut CompRing,
    /// RX ring: received frames.
    pub rx: &'a mut RxRing,
    /// TX ring: frames to send.
    pub tx: &'a mut TxRing,
}

/// One mmapped ring region (`XDP_PGOFF_RX_RING`, ...); unmapped on drop.
#[derive(Debug)]
struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly one mapping made in `map_ring` and unmapped only
        // here; the ring views into it are dropped before (see XskSocket's field order).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// What a TX kick achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// The kernel took what it could (or needs nothing more now).
    Done,
    /// It stopped at its per-call budget with descriptors left: kick again.
    Again,
}

/// How to bind an [`XskSocket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOptions {
    /// Ask for `XDP_USE_SG` (multi-buffer packets); granted if the kernel and driver can.
    pub multi_buffer: bool,
    /// `XDP_USE_NEED_WAKEUP`: the kernel says when it needs a syscall to make progress, so
    /// an idle or busy application makes none otherwise. Off only to measure what it buys.
    pub need_wakeup: bool,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`), set once the socket is bound; `None`: off.
    pub napi_busy_poll: Option<NapiBusyPoll>,
}

impl Default for BindOptions {
    fn default() -> Self {
        Self {
            multi_buffer: false,
            need_wakeup: true,
            napi_busy_poll: None,
        }
    }
}

/// An AF_XDP socket bound to one queue of one interface, with its four rings mapped.
///
/// The socket does not own its UMEM: the kernel pins the UMEM pages at `XDP_UMEM_REG`, so
/// dropping the [`UmemRegion`] first is memory safe, though it makes the frames unreachable.
#[derive(Debug)]
pub struct XskSocket {
    // Field order is drop order: ring views, then their mappings, then the socket.
    fill: FillRing,
    comp: CompRing,
    rx: RxRing,
    tx: TxRing,
    _maps: [RingMap; 4],
    fd: OwnedFd,
    ifindex: u32,
    queue_id: u32,
    bind_mode: BindMode,
    multi_buffer: bool,
    /// The busy-polling options as read back from the kernel; `None`: not set.
    napi_busy_poll: Option<NapiBusyPollState>,
}

// SAFETY: the ring pointers point into mappings owned by this struct, which have no thread
// affinity; moving the socket to another thread moves sole ownership of all of them.
unsafe impl Send for XskSocket {}

impl XskSocket {
    /// Creates a socket (`socket(AF_XDP, SOCK_RAW)`), registers the first
    /// [`UmemRegion::umem_len`] bytes of `umem` as its UMEM (`XDP_UMEM_REG`), sizes the fill,
    /// completion, RX and TX rings (`XDP_UMEM_FILL_RING`, `XDP_UMEM_COMPLETION_RING`,
    /// `XDP_RX_RING`, `XDP_TX_RING`), maps them as described by `XDP_MMAP_OFFSETS`, and binds to
    /// `queue_id` of `ifindex` with `XDP_USE_NEED_WAKEUP`, trying `XDP_ZEROCOPY` first and
    /// falling back to `XDP_COPY`.
    ///
    /// The fill ring starts empty: give it frames before expecting any RX.
    pub fn new(
        ifindex: u32,
        queue_id: u32,
        umem: &UmemRegion,
        config: &UmemConfig,
    ) -> Result<Self, XskError> {
        Self::with_options(ifindex, queue_id, umem, config, BindOptions::default())
    }

    /// As [`XskSocket::new`]; with `multi_buffer` it first asks for `XDP_USE_SG`, so that a
    /// packet larger than one frame arrives (and may be sent) as a chain of descriptors
    /// linked by `XDP_PKT_CONTD`. Kernels or drivers without it bind without;
    /// [`XskSocket::multi_buffer`] says what was granted. With `napi_busy_poll` it sets the
    /// preferred busy-polling options once bound ([`NapiBusyPoll`]) and keeps what the kernel
    /// reports back ([`XskSocket::napi_busy_poll`]).
    pub fn with_options(
        ifindex: u32,
        queue_id: u32,
        umem: &UmemRegion,
        config: &UmemConfig,
        options: BindOptions,
    ) -> Result<Self, XskError> {
        let multi_buffer = options.multi_buffer;
        let wakeup = if options.need_wakeup {
            libc::XDP_USE_NEED_WAKEUP
        } else {
            0
        };
        config.validate()?;
        if config.frame_size != umem.frame_size() || config.frame_count != umem.frame_count() {
            return Err(XskError::InvalidConfig {
                reason: format!(
                    "config says {} frames of {} bytes but the UMEM region has {} of {}",
                    config.frame_count,
                    config.frame_size,
                    umem.frame_count(),
                    umem.frame_size()
                ),
            });
        }

        // SAFETY: plain syscall; the result is checked and owned immediately.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => XskError::PermissionDenied { source },
                Some(libc::EAFNOSUPPORT) => XskError::Unsupported { source },
                _ => XskError::Socket { source },
            });
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.umem_len() as u64,
            chunk_size: config.frame_size,
            headroom: config.frame_headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &reg).map_err(|source| {
            match source.raw_os_error() {
                Some(libc::ENOMEM | libc::EPERM | libc::EAGAIN) => XskError::UmemLocked {
                    len: umem.umem_len(),
                    source,
                },
                _ => XskError::UmemRegister { source },
            }
        })?;

        let size = config.ring_size;
        let size_int = i32::try_from(size).map_err(|_| XskError::InvalidConfig {
            reason: format!("ring_size {size} is too large"),
        })?;
        for (option, ring) in [
            (libc::XDP_UMEM_FILL_RING, "fill"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion"),
            (libc::XDP_RX_RING, "RX"),
            (libc::XDP_TX_RING, "TX"),
        ] {
            setsockopt(fd.as_fd(), option, &size_int).map_err(|source| XskError::RingSetup {
                ring,
                size,
                source,
            })?;
        }

        let off = mmap_offsets(fd.as_fd())?;
        let desc_size = mem::size_of::<libc::xdp_desc>();
        let addr_size = mem::size_of::<u64>();
        let fill_map = map_ring(
            fd.as_fd(),
            "fill",
            &off.fr,
            size,
            addr_size,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )?;
        let comp_map = map_ring(
            fd.as_fd(),
            "completion",
            &off.cr,
            size,
            addr_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )?;
        let rx_map = map_ring(
            fd.as_fd(),
            "RX",
            &off.rx,
            size,
            desc_size,
            libc::XDP_PGOFF_RX_RING,
        )?;
        let tx_map = map_ring(
            fd.as_fd(),
            "TX",
            &off.tx,
            size,
            desc_size,
            libc::XDP_PGOFF_TX_RING,
        )?;

        // SAFETY: each mapping was created by `map_ring` with room for `desc + size * entry`
        // bytes at the kernel-reported offsets (the kernel aligns the indices to 4 bytes and
        // the entries to 8), `size` is a validated power of two, the mappings live in
        // `_maps` for as long as the rings, and the kernel is the only other party.
        let (fill, comp, rx, tx) = unsafe {
            (
                FillRing::new(fill_map.ptr, &off.fr, size),
                CompRing::new(comp_map.ptr, &off.cr, size),
                RxRing::new(rx_map.ptr, &off.rx, size),
                TxRing::new(tx_map.ptr, &off.tx, size),
            )
        };

        let ifname = super::ifname_of(ifindex);
        let bind_err = |source: io::Error| match source.raw_os_error() {
            Some(libc::EBUSY) => XskError::QueueBusy {
                queue_id,
                ifname: ifname.clone(),
            },
            Some(libc::ENODEV) => XskError::NoSuchInterface {
                name: ifname.clone(),
            },
            Some(libc::EINVAL) => XskError::NoSuchQueue {
                queue_id,
                ifname: ifname.clone(),
                source,
            },
            _ => XskError::Bind {
                queue_id,
                ifname: ifname.clone(),
                source,
            },
        };
        // A failed bind leaves the socket unbound with its UMEM and rings intact (xsk_bind()
        // only commits on success), so the next attempt can simply follow: zero-copy before
        // copy mode, and with XDP_USE_SG (when asked for) before without.
        let sg_choices: &[u16] = if multi_buffer {
            &[libc::XDP_USE_SG, 0]
        } else {
            &[0]
        };
        let mut granted_sg = false;
        let mut last_err = None;
        'bound: for &sg in sg_choices {
            for mode in [libc::XDP_ZEROCOPY, libc::XDP_COPY] {
                match bind(fd.as_fd(), ifindex, queue_id, mode | sg | wakeup) {
                    Ok(()) => {
                        granted_sg = sg != 0;
                        last_err = None;
                        break 'bound;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(bind_err(e)),
                    Err(e) => {
                        // EOPNOTSUPP: no zero-copy (veth, generic XDP) or no multi-buffer.
                        tracing::debug!(ifname = %ifname, queue_id, mode, sg, error = %e, "bind refused; trying the next mode");
                        last_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = last_err {
            return Err(bind_err(e));
        }
        let bind_mode = query_bind_mode(fd.as_fd())?;
        tracing::debug!(ifname = %ifname, queue_id, mode = %bind_mode, "AF_XDP socket bound");
        let napi_busy_poll = match &options.napi_busy_poll {
            Some(wanted) => Some(busy_poll::apply(fd.as_fd(), wanted)?),
            None => None,
        };

        Ok(Self {
            fill,
            comp,
            rx,
            tx,
            _maps: [fill_map, comp_map, rx_map, tx_map],
            fd,
            ifindex,
            queue_id,
            bind_mode,
            multi_buffer: granted_sg,
            napi_busy_poll,
        })
    }

    /// The preferred busy-polling options as the kernel holds them (read back after
    /// setting); `None` when [`BindOptions::napi_busy_poll`] was.
    pub fn napi_busy_poll(&self) -> Option<NapiBusyPollState> {
        self.napi_busy_poll
    }

    /// Whether the socket was bound with `XDP_USE_SG` (multi-buffer packets).
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// The socket descriptor: for the XSKMAP, `poll(2)`, or an io_uring poll request.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Queue the socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Whether the kernel bound the socket in zero-copy or copy mode.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// All four rings at once.
    pub fn rings(&mut self) -> Rings<'_> {
        Rings {
            fill: &mut self.fill,
            comp: &mut self.comp,
            rx: &mut self.rx,
            tx: &mut self.tx,
        }
    }

    /// The fill ring.
    pub fn fill(&mut self) -> &mut FillRing {
        &mut self.fill
    }

    /// The completion ring.
    pub fn comp(&mut self) -> &mut CompRing {
        &mut self.comp
    }

    /// The RX ring.
    pub fn rx(&mut self) -> &mut RxRing {
        &mut self.rx
    }

    /// The TX ring.
    pub fn tx(&mut self) -> &mut TxRing {
        &mut self.tx
    }

    /// Tells the kernel to process the TX ring: `sendto(fd, NULL, 0, MSG_DONTWAIT)`. Call it
    /// after submitting when [`TxRing::needs_wakeup`] says so. In copy mode the kernel sends
    /// at most a budget of descriptors per call (32 by default) and answers `EAGAIN` when
    /// more remain: then this returns [`Kick::Again`], and the caller kicks again. `EBUSY`,
    /// `ENOBUFS` (no room: retry on a later kick), `ENETDOWN` (link down) and `EINTR` are not
    /// errors.
    pub fn kick_tx(&self) -> Result<Kick, XskError> {
        // SAFETY: a zero-length send with null buffer and address is valid for AF_XDP (the
        // kernel reads neither); `fd` is open.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            return Ok(Kick::Again);
        }
        wakeup_result(rc, "sendto").map(|()| Kick::Done)
    }

    /// Tells the kernel that the fill ring has entries again: `recvfrom(fd, NULL, 0,
    /// MSG_DONTWAIT)`. Call it after filling when [`FillRing::needs_wakeup`] says so (only a
    /// zero-copy driver ever sets it; in copy mode the call is a cheap no-op). `poll(2)` on
    /// [`fd`](Self::fd) wakes the driver as well.
    pub fn wake_rx(&self) -> Result<(), XskError> {
        // SAFETY: a zero-length receive with null buffer and address is valid for AF_XDP;
        // `fd` is open.
        let rc = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        wakeup_result(rc, "recvfrom")
    }

    /// The kernel's drop and error counters for this socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> Result<XskStatistics, XskError> {
        read_statistics(self.fd.as_fd())
    }

    /// A second descriptor of this socket that reads only its `XDP_STATISTICS`, for the
    /// control plane while a worker owns the socket (`F_DUPFD_CLOEXEC`).
    pub fn statistics_reader(&self) -> Result<XskStatisticsReader, XskError> {
        let fd = self.fd.try_clone().map_err(|source| XskError::GetSockOpt {
            option: "XDP_STATISTICS (duplicating the socket descriptor)",
            source,
        })?;
        Ok(XskStatisticsReader { fd })
    }
}

/// Reads one AF_XDP socket's `XDP_STATISTICS` through a descriptor of its own: the kernel
/// keeps the socket (and its counters) while either descriptor is open. Reading them does
/// not touch the rings, so it is safe while a worker serves the socket.
#[derive(Debug)]
pub struct XskStatisticsReader {
    fd: OwnedFd,
}

impl XskStatisticsReader {
    pub fn read(&self) -> Result<XskStatistics, XskError> {
        read_statistics(self.fd.as_fd())
    }
}

/// `getsockopt(fd, SOL_XDP, XDP_STATISTICS)`.
fn read_statistics(fd: BorrowedFd<'_>) -> Result<XskStatistics, XskError> {
    // SAFETY: xdp_statistics is plain integers; all-zero is a valid value.
    let mut st: libc::xdp_statistics = unsafe { mem::zeroed() };
    // An older kernel fills only the first three fields (xdp_statistics_v1); the others
    // stay zero.
    getsockopt(fd, libc::XDP_STATISTICS, &mut st).map_err(|source| XskError::GetSockOpt {
        option: "XDP_STATISTICS",
        source,
    })?;
    Ok(XskStatistics {
        rx_dropped: st.rx_dropped,
        rx_invalid_descs: st.rx_invalid_descs,
        tx_invalid_descs: st.tx_invalid_descs,
        rx_ring_full: st.rx_ring_full,
        rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: st.tx_ring_empty_descs,
    })
}

fn wakeup_result(rc: isize, call: &'static str) -> Result<(), XskError> {
    if rc >= 0 {
        return Ok(());
    }
    let source = io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => Ok(()),
        _ => Err(XskError::Wakeup { call, source }),
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(mem::size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call; the kernel
    // copies them and keeps no reference.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            option,
            (value as *const T).cast::<c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(SOL_XDP, option)` into `value`; returns the length the kernel wrote.
fn getsockopt<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &mut T) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(mem::size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` points to `len` writable bytes; the kernel writes at most `len` of them
    // (it clamps to the length we pass) and reports how many in `len`. Callers only use
    // plain-integer `T`s, for which any bytes are valid.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            option,
            (value as *mut T).cast::<c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mmap_offsets(fd: BorrowedFd<'_>) -> Result<libc::xdp_mmap_offsets, XskError> {
    // SAFETY: xdp_mmap_offsets is plain integers; all-zero is a valid value.
    let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
    let len = getsockopt(fd, libc::XDP_MMAP_OFFSETS, &mut off)
        .map_err(|source| XskError::MmapOffsets { source })?;
    // Kernels before 5.4 return the shorter xdp_mmap_offsets_v1, which has no `flags`
    // word: no XDP_RING_NEED_WAKEUP, which the data path relies on.
    if len < mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(XskError::KernelTooOld);
    }
    Ok(off)
}

fn map_ring(
    fd: BorrowedFd<'_>,
    ring: &'static str,
    off: &libc::xdp_ring_offset,
    size: u32,
    entry_size: usize,
    pgoff: libc::off_t,
) -> Result<RingMap, XskError> {
    let overflow = || XskError::InvalidConfig {
        reason: format!("the {ring} ring of {size} entries is too large"),
    };
    let entries = (size as usize)
        .checked_mul(entry_size)
        .ok_or_else(overflow)?;
    let len = usize::try_from(off.desc)
        .ok()
        .and_then(|d| d.checked_add(entries))
        .ok_or_else(overflow)?;
    // Every index word must lie inside the mapping too.
    let words_fit = [off.producer, off.consumer, off.flags].iter().all(|&o| {
        usize::try_from(o)
            .is_ok_and(|o| o.checked_add(4).is_some_and(|end| end <= len) && o % 4 == 0)
    });
    if !words_fit || !off.desc.is_multiple_of(8) {
        return Err(XskError::RingLayout { ring });
    }
    // SAFETY: maps a kernel-provided ring object of `len` bytes at an address of the kernel's
    // choosing; nothing in this process can alias it. The result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            pgoff,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(XskError::RingMap {
            ring,
            source: io::Error::last_os_error(),
        });
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(XskError::RingMap {
        ring,
        source: io::Error::from_raw_os_error(libc::ENOMEM),
    })?;
    Ok(RingMap { ptr, len })
}

fn bind(fd: BorrowedFd<'_>, ifindex: u32, queue_id: u32, flags: u16) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue_id,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `addr` is a valid sockaddr_xdp and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_xdp).cast::<libc::sockaddr>(),
            mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn query_bind_mode(fd: BorrowedFd<'_>) -> Result<BindMode, XskError> {
    let mut opts = libc::xdp_options { flags: 0 };
    getsockopt(fd, libc::XDP_OPTIONS, &mut opts).map_err(|source| XskError::GetSockOpt {
        option: "XDP_OPTIONS",
        source,
    })?;
    Ok(if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
        BindMode::ZeroCopy
    } else {
        BindMode::Copy
    })
}
