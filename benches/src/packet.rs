//! AF_PACKET with PACKET_MMAP rings: a receive ring (TPACKET_V2 or TPACKET_V3) on a
//! socket bound to the AoE ethertype, and a transmit side on a second socket bound to the
//! interface with protocol 0 (so it receives nothing): either a TPACKET_V2 TX ring (frames
//! are written into shared memory, one `send` kicks them all out) or `sendmmsg` batches.
//! This module holds every `unsafe` block of the crate (and [`cpu_time`], a getrusage).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aoe_proto::{Mac, ETHERTYPE_AOE};

/// Socket buffer asked for on the transmit socket (SO_SNDBUFFORCE, root only; best effort).
const SNDBUF_BYTES: libc::c_int = 8 << 20;

/// The interface a socket is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: i32,
    pub mac: Mac,
    pub mtu: u32,
}

/// Which TPACKET version the receive ring uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RxVersion {
    /// Fixed-size frame slots; every frame is handed over (and wakes `poll`) at once.
    V2,
    /// Variable-size frames packed in blocks; a block is handed over when full or when its
    /// retire timeout expires, so replies can wait up to that timeout.
    V3,
}

/// How frames are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxMethod {
    /// PACKET_TX_RING (TPACKET_V2): frames copied into a shared ring, one `send` per batch.
    Ring,
    /// `sendmmsg`: one system call per batch, straight from the request buffers.
    Sendmmsg,
}

/// Shape of the receive ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxConfig {
    pub version: RxVersion,
    /// Room for one frame (V2: the slot size; V3: the largest frame).
    pub frame_size: u32,
    pub block_size: u32,
    pub blocks: u32,
    /// V3 block retire timeout in milliseconds (0: the kernel's default).
    pub retire_ms: u32,
}

impl RxConfig {
    /// A ring for frames up to `mtu` bytes of payload, with room for about `frames` of them.
    pub fn for_mtu(
        version: RxVersion,
        mtu: u32,
        frames: u32,
        block_kib: u32,
        retire_ms: u32,
    ) -> RxConfig {
        // tpacket header, sockaddr_ll, alignment, Ethernet header and one VLAN tag.
        let frame_size = (mtu + 128).next_power_of_two().max(2048);
        let block_size = (block_kib.max(4) * 1024)
            .next_power_of_two()
            .max(frame_size);
        let per_block = block_size / frame_size;
        let blocks = frames.div_ceil(per_block).max(match version {
            RxVersion::V2 => 1,
            RxVersion::V3 => 8,
        });
        RxConfig {
            version,
            frame_size,
            block_size,
            blocks,
            retire_ms,
        }
    }

    pub fn bytes(&self) -> usize {
        self.block_size as usize * self.blocks as usize
    }
}

/// A shared mapping of a packet ring, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the socket's ring; no existing memory is
        // affected. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Pointer to byte `offset`; `offset + size` must be within the mapping.
    fn at(&self, offset: usize, size: usize) -> Option<*mut u8> {
        (offset.checked_add(size)? <= self.len)
            // SAFETY: offset is within the mapping (checked just above).
            .then(|| unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// The u32 at `offset` (4-byte aligned) as an atomic shared with the kernel.
    fn status(&self, offset: usize) -> Option<&AtomicU32> {
        let p = self.at(offset, 4)?;
        if !(p as usize).is_multiple_of(4) {
            return None;
        }
        // SAFETY: in bounds and aligned (checked); the kernel and we access ring status
        // words only atomically, and the mapping outlives the reference (bound to &self).
        Some(unsafe { &*p.cast::<AtomicU32>() })
    }

    /// Bytes `offset..offset + len`, or `None` when out of bounds.
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let p = self.at(offset, len)?;
        // SAFETY: in bounds (checked). The caller owns this part of the ring (its status
        // word says so) until it hands it back, so the kernel does not write it meanwhile.
        Some(unsafe { core::slice::from_raw_parts(p, len) })
    }

    fn bytes_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let p = self.at(offset, len)?;
        // SAFETY: as for `bytes`, and &mut self makes the slice the only one we hand out.
        Some(unsafe { core::slice::from_raw_parts_mut(p, len) })
    }

    /// Reads a `T` at `offset` (unaligned read of a ring header).
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let p = self.at(offset, mem::size_of::<T>())?;
        // SAFETY: in bounds (checked); T is a plain C struct of integers, valid for any bits.
        Some(unsafe { p.cast::<T>().read_unaligned() })
    }

    fn write<T: Copy>(&mut self, offset: usize, value: T) -> Option<()> {
        let p = self.at(offset, mem::size_of::<T>())?;
        // SAFETY: in bounds (checked); we own this frame (status AVAILABLE) until we hand it
        // to the kernel.
        unsafe { p.cast::<T>().write_unaligned(value) };
        Some(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned; no reference into it outlives self.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked. Protocol 0: nothing is received before
    // bind() names the interface and ethertype.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn ioctl(fd: RawFd, request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `ifr` is a valid ifreq for the interface ioctls used here.
    let rc = unsafe { libc::ioctl(fd, request as _, ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Index, MAC and MTU of `ifname` in the calling thread's network namespace.
pub fn link_info(ifname: &str) -> io::Result<Link> {
    let fd = packet_socket()?;
    let raw = fd.as_raw_fd();
    let mut ifr = ifreq(ifname)?;
    ioctl(raw, libc::SIOCGIFINDEX, &mut ifr)?;
    // SAFETY: SIOCGIFINDEX succeeded and wrote the ifindex member.
    let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };
    let mut ifr = ifreq(ifname)?;
    ioctl(raw, libc::SIOCGIFHWADDR, &mut ifr)?;
    // SAFETY: SIOCGIFHWADDR succeeded and wrote the hwaddr member.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = *src as u8;
    }
    let mut ifr = ifreq(ifname)?;
    ioctl(raw, libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: SIOCGIFMTU succeeded and wrote the mtu member.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(Link {
        ifindex,
        mac: Mac(mac),
        mtu: u32::try_from(mtu).unwrap_or(1500),
    })
}

fn bind(fd: RawFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: a valid sockaddr_ll and its exact size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `timeout` for `events` on `fd`; `Ok(false)` on timeout or signal.
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: one valid pollfd, a valid timespec, and no signal mask change.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, core::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINTR) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(io::Error::other("socket error (is the interface gone?)"));
    }
    Ok(rc > 0)
}

/// Offset of the frame data in a TPACKET_V2 TX frame (TPACKET2_HDRLEN - sockaddr_ll).
const TX_DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - mem::size_of::<libc::sockaddr_ll>();
const STATUS_USER: u32 = libc::TP_STATUS_USER;
const STATUS_KERNEL: u32 = libc::TP_STATUS_KERNEL;

/// The receive ring: frames of the AoE ethertype arriving on one interface.
#[derive(Debug)]
pub struct RxRing {
    map: Mapping,
    fd: OwnedFd,
    cfg: RxConfig,
    /// V2: next frame slot; V3: next block.
    next: usize,
}

impl RxRing {
    pub fn open(link: &Link, cfg: RxConfig) -> io::Result<RxRing> {
        let fd = packet_socket()?;
        let raw = fd.as_raw_fd();
        let version = match cfg.version {
            RxVersion::V2 => libc::tpacket_versions::TPACKET_V2,
            RxVersion::V3 => libc::tpacket_versions::TPACKET_V3,
        } as libc::c_int;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        // Our own transmit socket's frames would otherwise be copied into the ring too.
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &1 as &libc::c_int,
        )?;
        let frames = cfg.block_size / cfg.frame_size * cfg.blocks;
        match cfg.version {
            RxVersion::V2 => {
                let req = libc::tpacket_req {
                    tp_block_size: cfg.block_size,
                    tp_block_nr: cfg.blocks,
                    tp_frame_size: cfg.frame_size,
                    tp_frame_nr: frames,
                };
                setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
            }
            RxVersion::V3 => {
                let req = libc::tpacket_req3 {
                    tp_block_size: cfg.block_size,
                    tp_block_nr: cfg.blocks,
                    tp_frame_size: cfg.frame_size,
                    tp_frame_nr: frames,
                    tp_retire_blk_tov: cfg.retire_ms,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
            }
        }
        let map = Mapping::new(raw, cfg.bytes())?;
        bind(raw, link.ifindex, ETHERTYPE_AOE)?;
        Ok(RxRing {
            map,
            fd,
            cfg,
            next: 0,
        })
    }

    pub fn config(&self) -> RxConfig {
        self.cfg
    }

    /// Hands every frame the kernel has filled (up to about `max`) to `f`, returns them to
    /// the kernel, and returns how many there were.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        match self.cfg.version {
            RxVersion::V2 => self.drain_v2(max, &mut f),
            RxVersion::V3 => self.drain_v3(max, &mut f),
        }
    }

    fn drain_v2(&mut self, max: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let frame_size = self.cfg.frame_size as usize;
        let slots = self.cfg.bytes() / frame_size;
        let mut n = 0;
        while n < max {
            let base = self.next * frame_size;
            let Some(status) = self.map.status(base) else {
                break;
            };
            if status.load(Ordering::Acquire) & STATUS_USER == 0 {
                break;
            }
            if let Some(h) = self.map.read::<libc::tpacket2_hdr>(base) {
                let start = base + usize::from(h.tp_mac);
                let len = h.tp_snaplen as usize;
                if usize::from(h.tp_mac) + len <= frame_size {
                    if let Some(frame) = self.map.bytes(start, len) {
                        f(frame);
                    }
                }
            }
            status.store(STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % slots;
            n += 1;
        }
        n
    }

    fn drain_v3(&mut self, max: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let block_size = self.cfg.block_size as usize;
        let blocks = self.cfg.blocks as usize;
        // block_status is the first field of tpacket_hdr_v1, after version and offset_to_priv.
        let status_offset = 8;
        let mut n = 0;
        while n < max {
            let base = self.next * block_size;
            let Some(status) = self.map.status(base + status_offset) else {
                break;
            };
            if status.load(Ordering::Acquire) & STATUS_USER == 0 {
                break;
            }
            let Some(bh) = self.map.read::<libc::tpacket_hdr_v1>(base + status_offset) else {
                break;
            };
            let mut offset = bh.offset_to_first_pkt as usize;
            for _ in 0..bh.num_pkts {
                let Some(h) = self.map.read::<libc::tpacket3_hdr>(base + offset) else {
                    break;
                };
                let start = offset + usize::from(h.tp_mac);
                let len = h.tp_snaplen as usize;
                if start + len <= block_size {
                    if let Some(frame) = self.map.bytes(base + start, len) {
                        f(frame);
                    }
                }
                n += 1;
                if h.tp_next_offset == 0 {
                    break;
                }
                offset += h.tp_next_offset as usize;
            }
            status.store(STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % blocks;
        }
        n
    }

    /// Whether a frame (V2) or block (V3) is ready to be taken, without a system call.
    pub fn ready(&self) -> bool {
        let offset = match self.cfg.version {
            RxVersion::V2 => self.next * self.cfg.frame_size as usize,
            RxVersion::V3 => self.next * self.cfg.block_size as usize + 8,
        };
        self.map
            .status(offset)
            .is_some_and(|s| s.load(Ordering::Acquire) & STATUS_USER != 0)
    }

    /// Waits until frames are ready or `timeout` passes; `Ok(false)` when nothing came.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        wait_fd(self.fd.as_raw_fd(), libc::POLLIN, timeout)
    }

    /// Frames the kernel dropped for want of ring space since the previous call.
    pub fn take_drops(&self) -> u64 {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = match self.cfg.version {
            RxVersion::V2 => mem::size_of::<libc::tpacket_stats>(),
            RxVersion::V3 => mem::size_of::<libc::tpacket_stats_v3>(),
        } as libc::socklen_t;
        // SAFETY: `stats` is at least `len` bytes and outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return 0;
        }
        u64::from(stats.tp_drops)
    }
}

/// What one [`Tx::send`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: usize,
    /// Frames the kernel would not take (no buffer); retransmission covers them.
    pub dropped: usize,
}

#[derive(Debug)]
enum TxKind {
    Ring {
        map: Mapping,
        frame_size: usize,
        frames: usize,
        head: usize,
    },
    Mmsg {
        msgs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
    },
}

/// The transmit side (see the module documentation).
#[derive(Debug)]
pub struct Tx {
    fd: OwnedFd,
    kind: TxKind,
    method: TxMethod,
}

impl Tx {
    /// A sender for frames up to `max_frame` bytes, `batch` at a time at most.
    pub fn open(link: &Link, method: TxMethod, max_frame: usize, batch: usize) -> io::Result<Tx> {
        let fd = packet_socket()?;
        let raw = fd.as_raw_fd();
        // Best effort: a deep queue of jumbo frames must not hit the default send buffer.
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SNDBUF_BYTES);
        // Straight to the driver: a load generator wants no qdisc in its path.
        let _ = setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &1 as &libc::c_int,
        );
        let batch = batch.max(1);
        let kind = match method {
            TxMethod::Ring => {
                let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
                setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
                // A malformed frame is skipped rather than stopping the ring.
                setsockopt(raw, libc::SOL_PACKET, libc::PACKET_LOSS, &1 as &libc::c_int)?;
                let frame_size = (max_frame + TX_DATA_OFFSET).next_power_of_two().max(2048);
                let block_size = frame_size.max(64 * 1024);
                let frames = (4 * batch).next_power_of_two().max(block_size / frame_size);
                let blocks = (frames * frame_size).div_ceil(block_size);
                let frames = blocks * (block_size / frame_size);
                let as_u32 =
                    |v: usize| u32::try_from(v).map_err(|_| io::Error::other("TX ring too large"));
                let req = libc::tpacket_req {
                    tp_block_size: as_u32(block_size)?,
                    tp_block_nr: as_u32(blocks)?,
                    tp_frame_size: as_u32(frame_size)?,
                    tp_frame_nr: as_u32(frames)?,
                };
                setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)?;
                let map = Mapping::new(raw, block_size * blocks)?;
                TxKind::Ring {
                    map,
                    frame_size,
                    frames,
                    head: 0,
                }
            }
            TxMethod::Sendmmsg => {
                // SAFETY: plain old data; all zeroes is valid (null pointers, zero lengths).
                let msg: libc::mmsghdr = unsafe { mem::zeroed() };
                let iov = libc::iovec {
                    iov_base: core::ptr::null_mut(),
                    iov_len: 0,
                };
                TxKind::Mmsg {
                    msgs: vec![msg; batch],
                    iovs: vec![iov; batch],
                }
            }
        };
        bind(raw, link.ifindex, 0)?;
        Ok(Tx { fd, kind, method })
    }

    pub fn method(&self) -> TxMethod {
        self.method
    }

    /// Sends `frames` (complete Ethernet frames) with as few system calls as possible.
    pub fn send<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<SendOutcome> {
        let fd = self.fd.as_raw_fd();
        match &mut self.kind {
            TxKind::Ring {
                map,
                frame_size,
                frames: n,
                head,
            } => ring_send(fd, map, *frame_size, *n, head, frames),
            TxKind::Mmsg { msgs, iovs } => mmsg_send(fd, msgs, iovs, frames),
        }
    }
}

fn kick(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer: the kernel transmits the ring's pending
    // frames.
    let rc = unsafe { libc::send(fd, core::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(()),
            _ => Err(e),
        };
    }
    Ok(())
}

fn ring_send<'a>(
    fd: RawFd,
    map: &mut Mapping,
    frame_size: usize,
    n: usize,
    head: &mut usize,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<SendOutcome> {
    let mut out = SendOutcome::default();
    let mut pending = 0;
    for frame in frames {
        if frame.len() + TX_DATA_OFFSET > frame_size {
            out.dropped += 1;
            continue;
        }
        let base = *head * frame_size;
        let mut free = false;
        for attempt in 0..3 {
            let status = map
                .status(base)
                .map_or(u32::MAX, |s| s.load(Ordering::Acquire));
            if status == libc::TP_STATUS_AVAILABLE || status == libc::TP_STATUS_WRONG_FORMAT {
                free = true;
                break;
            }
            // The ring is full of frames the kernel has not finished with: send what is
            // pending and wait for a slot.
            if pending > 0 {
                kick(fd)?;
                pending = 0;
            }
            if attempt < 2 {
                wait_fd(fd, libc::POLLOUT, Duration::from_millis(10))?;
            }
        }
        if !free {
            out.dropped += 1;
            continue;
        }
        let Some(data) = map.bytes_mut(base + TX_DATA_OFFSET, frame.len()) else {
            out.dropped += 1;
            continue;
        };
        data.copy_from_slice(frame);
        let len = frame.len() as u32;
        // tp_len and tp_snaplen follow tp_status.
        map.write(base + 4, len);
        map.write(base + 8, len);
        if let Some(status) = map.status(base) {
            status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        }
        *head = (*head + 1) % n;
        pending += 1;
        out.sent += 1;
    }
    if pending > 0 {
        kick(fd)?;
    }
    Ok(out)
}

fn mmsg_send<'a>(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    iovs: &mut [libc::iovec],
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<SendOutcome> {
    let mut out = SendOutcome::default();
    let mut frames = frames.into_iter().peekable();
    while frames.peek().is_some() {
        let mut count = 0;
        for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            let Some(frame) = frames.next() else { break };
            iov.iov_base = frame.as_ptr().cast_mut().cast();
            iov.iov_len = frame.len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_len = 0;
            count += 1;
        }
        let mut done = 0;
        let mut waits = 0;
        while done < count {
            let rest = &mut msgs[done..count];
            // SAFETY: every header in `rest` points to one iovec in `iovs`, which points to a
            // frame borrowed for 'a (alive across the call); the kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                done += rc as usize;
                out.sent += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) if waits < 2 => {
                    waits += 1;
                    wait_fd(fd, libc::POLLOUT, Duration::from_millis(10))?;
                }
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    out.dropped += count - done;
                    break;
                }
                _ => return Err(e),
            }
        }
    }
    Ok(out)
}

/// User and system CPU time this process has used so far.
/// User + system time of process `pid` (all its threads), in clock ticks, from
/// /proc/PID/stat (fields 14 and 15); None if it cannot be read (no such process).
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// utime + stime of a /proc/PID/stat line. The command name (field 2) is in parentheses
/// and may hold spaces, so the fields are counted from after its last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (the unit of [`process_ticks`]).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: rusage is plain old data; all zeroes is valid.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: `ru` is a valid rusage the kernel fills.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let d = |t: libc::timeval| {
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_usec).unwrap_or(0).saturating_mul(1000),
        )
    };
    (d(ru.ru_utime), d(ru.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_config_fits_frames_and_blocks() {
        let c = RxConfig::for_mtu(RxVersion::V2, 1500, 1024, 64, 0);
        assert_eq!(c.frame_size, 2048);
        assert_eq!(c.block_size, 64 * 1024);
        assert_eq!(c.blocks, 32);
        let j = RxConfig::for_mtu(RxVersion::V3, 9000, 512, 64, 1);
        assert_eq!(j.frame_size, 16384);
        assert!(j.block_size >= j.frame_size);
        assert!(j.blocks >= 8);
        let tiny = RxConfig::for_mtu(RxVersion::V2, 1500, 1, 4, 0);
        assert_eq!((tiny.block_size, tiny.blocks), (4096, 1));
        assert_eq!(TX_DATA_OFFSET, 32);
    }

    #[test]
    fn stat_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let line = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 25 0 0 20 0 3 0 99 0 0";
        assert_eq!(parse_stat_ticks(line), Some(42));
        assert_eq!(parse_stat_ticks("1234 (x) S 1"), None);
        assert!(process_ticks(std::process::id()).is_some());
    }
}
