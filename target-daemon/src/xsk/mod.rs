//! A thin AF_XDP layer over libc: the UMEM ([`UmemRegion`]), the socket ([`XskSocket`]) and
//! its four rings ([`FillRing`], [`CompRing`], [`RxRing`], [`TxRing`]).
//!
//! We do not use libxdp or a crate wrapping it because the UMEM must be a mapping we own (one
//! `mmap`, also registered with io_uring as fixed buffers). The kernel interface is documented
//! in `Documentation/networking/af_xdp.rst`; the identifiers used here (`XDP_UMEM_REG`,
//! `XDP_MMAP_OFFSETS`, `XDP_RING_NEED_WAKEUP`, ...) are those of `<linux/if_xdp.h>`.
//!
//! Typical use, per RX queue:
//! 1. [`UmemRegion::new`] and [`XskSocket::new`] (zero-copy when the driver can, else copy);
//! 2. put the socket's fd in the XDP program's XSKMAP at the queue id;
//! 3. fill the fill ring with free frames, then loop: RX ring → process → TX ring → kick →
//!    completion ring → fill ring.

mod busy_poll;
mod ring;
mod socket;
mod umem;

use std::{
    ffi::CString,
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

pub use busy_poll::{BusyPollOption, NapiBusyPoll, NapiBusyPollState};
pub use ring::{CompRing, ConsumerRing, FillRing, ProducerRing, RxRing, TxRing};
pub use socket::{
    BindMode, BindOptions, Kick, Rings, XskSocket, XskStatistics, XskStatisticsReader,
};
pub use umem::{UmemConfig, UmemRegion, XDP_PACKET_HEADROOM, XDP_UMEM_MIN_CHUNK_SIZE};

/// Everything that can go wrong setting up or driving an AF_XDP socket. Each message names the
/// failing step and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The UMEM or ring geometry breaks a kernel rule.
    #[error("invalid UMEM configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Not a possible interface name.
    #[error(
        "invalid network interface name {name:?} (1 to 15 bytes, no '/', ':', whitespace or NUL)"
    )]
    InvalidInterfaceName {
        /// The name as given.
        name: String,
    },
    /// The interface does not exist (in this thread's network namespace).
    #[error("no such network interface '{name}' (see `ip link`)")]
    NoSuchInterface {
        /// The name (or `#ifindex`).
        name: String,
    },
    /// `mmap` of the UMEM failed.
    #[error("cannot map {len} bytes for the UMEM: {source} (use fewer frames or free memory)")]
    UmemMap {
        /// Bytes requested.
        len: usize,
        /// The errno.
        source: io::Error,
    },
    /// `socket(AF_XDP)` refused for lack of privilege.
    #[error("creating an AF_XDP socket needs root or CAP_NET_RAW: {source}")]
    PermissionDenied {
        /// The errno.
        source: io::Error,
    },
    /// The kernel has no AF_XDP.
    #[error("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS=y is needed): {source}")]
    Unsupported {
        /// The errno.
        source: io::Error,
    },
    /// `socket(AF_XDP)` failed otherwise.
    #[error("socket(AF_XDP) failed: {source}")]
    Socket {
        /// The errno.
        source: io::Error,
    },
    /// `XDP_UMEM_REG` could not pin the memory.
    #[error(
        "registering {len} bytes of UMEM (XDP_UMEM_REG) failed: {source}; the UMEM is locked \
         memory: run as root or raise RLIMIT_MEMLOCK (`ulimit -l`, LimitMEMLOCK= in systemd)"
    )]
    UmemLocked {
        /// Bytes being registered.
        len: usize,
        /// The errno (ENOMEM, EPERM or EAGAIN).
        source: io::Error,
    },
    /// `XDP_UMEM_REG` failed otherwise.
    #[error("registering the UMEM (XDP_UMEM_REG) failed: {source}")]
    UmemRegister {
        /// The errno.
        source: io::Error,
    },
    /// Sizing one of the rings failed.
    #[error("creating the {ring} ring with {size} entries failed: {source}")]
    RingSetup {
        /// Which ring.
        ring: &'static str,
        /// Entries requested.
        size: u32,
        /// The errno.
        source: io::Error,
    },
    /// `getsockopt(XDP_MMAP_OFFSETS)` failed.
    #[error("reading the ring layout (XDP_MMAP_OFFSETS) failed: {source}")]
    MmapOffsets {
        /// The errno.
        source: io::Error,
    },
    /// The kernel predates `XDP_RING_NEED_WAKEUP`.
    #[error(
        "kernel too old: its rings have no flags word, so XDP_USE_NEED_WAKEUP is unavailable \
         (Linux 5.4 or later is needed)"
    )]
    KernelTooOld,
    /// `XDP_MMAP_OFFSETS` described a layout this code cannot use safely.
    #[error("the kernel reported an unusable layout for the {ring} ring (XDP_MMAP_OFFSETS)")]
    RingLayout {
        /// Which ring.
        ring: &'static str,
    },
    /// `mmap` of a ring failed.
    #[error("mapping the {ring} ring failed: {source}")]
    RingMap {
        /// Which ring.
        ring: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// bind: EBUSY.
    #[error("queue {queue_id} of {ifname} is already used by another AF_XDP socket")]
    QueueBusy {
        /// The queue.
        queue_id: u32,
        /// The interface.
        ifname: String,
    },
    /// bind: EINVAL, almost always a queue id at or above the RX queue count.
    #[error(
        "cannot bind to queue {queue_id} of {ifname}: {source} (does the queue exist? \
         see `ethtool -l {ifname}` or /sys/class/net/{ifname}/queues)"
    )]
    NoSuchQueue {
        /// The queue.
        queue_id: u32,
        /// The interface.
        ifname: String,
        /// The errno.
        source: io::Error,
    },
    /// bind failed otherwise.
    #[error("binding an AF_XDP socket to queue {queue_id} of {ifname} failed: {source}")]
    Bind {
        /// The queue.
        queue_id: u32,
        /// The interface.
        ifname: String,
        /// The errno.
        source: io::Error,
    },
    /// A wakeup syscall failed with a real error.
    #[error("{call} on the AF_XDP socket failed: {source}")]
    Wakeup {
        /// `sendto` or `recvfrom`.
        call: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// A `getsockopt(SOL_XDP)` query failed.
    #[error("getsockopt({option}) on the AF_XDP socket failed: {source}")]
    GetSockOpt {
        /// The option.
        option: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// Setting a busy-polling option was refused for lack of privilege.
    #[error(
        "setting {option} on the AF_XDP socket was refused: {source}; SO_PREFER_BUSY_POLL \
         and a SO_BUSY_POLL_BUDGET above 8 (and, on older kernels, SO_BUSY_POLL above \
         net.core.busy_read = {busy_read}) need CAP_NET_ADMIN: start xblade as root or with \
         CAP_NET_ADMIN (it sets them before dropping privileges), or leave \
         napi_busy_poll_us unset",
        busy_read = busy_read_us.map_or_else(|| "?".to_owned(), |us| format!("{us} µs"))
    )]
    BusyPollDenied {
        /// The option refused.
        option: BusyPollOption,
        /// `net.core.busy_read` (`/proc/sys/net/core/busy_read`), if readable.
        busy_read_us: Option<u32>,
        /// The errno.
        source: io::Error,
    },
    /// The kernel has no (preferred) busy polling.
    #[error(
        "this kernel does not know {option}: {source}; preferred busy polling needs Linux \
         5.11 or later built with CONFIG_NET_RX_BUSY_POLL: leave napi_busy_poll_us unset"
    )]
    BusyPollUnsupported {
        /// The option refused.
        option: BusyPollOption,
        /// The errno (ENOPROTOOPT).
        source: io::Error,
    },
    /// A busy-polling option failed otherwise.
    #[error("setsockopt({option}) on the AF_XDP socket failed: {source}")]
    BusyPoll {
        /// The option.
        option: BusyPollOption,
        /// The errno.
        source: io::Error,
    },
    /// The RX queue count could not be determined.
    #[error("cannot count the RX queues of {ifname}: {reason}")]
    QueueCount {
        /// The interface.
        ifname: String,
        /// Why.
        reason: String,
    },
}

/// Index of `ifname` in the calling thread's network namespace (`if_nametoindex(3)`).
pub fn ifindex(ifname: &str) -> Result<u32, XskError> {
    let name = checked_ifname(ifname)?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(XskError::NoSuchInterface {
            name: ifname.to_owned(),
        });
    }
    Ok(index)
}

/// Number of RX queues of `ifname`: the `rx-*` entries of /sys/class/net/IFNAME/queues (the
/// kernel's `real_num_rx_queues`, the bound that AF_XDP bind checks).
///
/// /sys shows the network namespace it was mounted in, which is not the calling thread's after
/// a `setns(2)` (only `ip netns exec` remounts it). When sysfs does not show this thread's
/// interface of that name, the count comes from `ETHTOOL_GCHANNELS` instead (RX-only plus
/// combined channels), which follows the thread's namespace.
pub fn queue_count(ifname: &str) -> Result<u32, XskError> {
    let index = ifindex(ifname)?;
    let class = PathBuf::from("/sys/class/net").join(ifname);
    let sysfs_index = fs::read_to_string(class.join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if sysfs_index == Some(index) {
        let queues = class.join("queues");
        let entries = fs::read_dir(&queues).map_err(|e| XskError::QueueCount {
            ifname: ifname.to_owned(),
            reason: format!("{}: {e}", queues.display()),
        })?;
        let count = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"rx-"))
            .count();
        return u32::try_from(count)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| XskError::QueueCount {
                ifname: ifname.to_owned(),
                reason: format!("{} lists no rx-* queue", queues.display()),
            });
    }
    ethtool_rx_queues(ifname)
}

/// `struct ethtool_channels` (`<linux/ethtool.h>`), not in libc.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `ETHTOOL_GCHANNELS`.
const ETHTOOL_GCHANNELS: u32 = 0x3c;

fn ethtool_rx_queues(ifname: &str) -> Result<u32, XskError> {
    let err = |reason: String| XskError::QueueCount {
        ifname: ifname.to_owned(),
        reason,
    };
    // SAFETY: plain syscall; the result is checked and owned immediately. The socket is only
    // a handle for the ioctl and lives in the calling thread's network namespace.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(err(format!(
            "socket(AF_INET): {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: ifreq is plain data (a name and a union of integers/pointers); zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *dst = *src as libc::c_char; // checked_ifname (via ifindex) bounded the length
    }
    req.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS reads the NUL-terminated name and writes one
    // `struct ethtool_channels` through ifru_data, which points to `channels`, live and
    // exclusively borrowed for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(err(format!(
            "/sys shows another network namespace and ETHTOOL_GCHANNELS failed: {}",
            io::Error::last_os_error()
        )));
    }
    let count = channels.rx_count.saturating_add(channels.combined_count);
    if count == 0 {
        return Err(err("ETHTOOL_GCHANNELS reports no RX channel".into()));
    }
    Ok(count)
}

/// `ifname` as a C string, if it can be an interface name at all (`dev_valid_name()`).
fn checked_ifname(ifname: &str) -> Result<CString, XskError> {
    let valid = !ifname.is_empty()
        && ifname.len() < libc::IFNAMSIZ
        && ifname != "."
        && ifname != ".."
        && !ifname
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if !valid {
        return Err(XskError::InvalidInterfaceName {
            name: ifname.to_owned(),
        });
    }
    CString::new(ifname).map_err(|_| XskError::InvalidInterfaceName {
        name: ifname.to_owned(),
    })
}

/// Name of interface `ifindex` for messages, or `#<ifindex>` if it has none.
pub(crate) fn ifname_of(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `buf` has the IFNAMSIZ bytes if_indextoname may write (NUL included).
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{ifindex}");
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated string into `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        for bad in [
            "",
            "a/b",
            "a b",
            "a:0",
            "0123456789abcdef",
            ".",
            "..",
            "a\0b",
        ] {
            assert!(
                matches!(ifindex(bad), Err(XskError::InvalidInterfaceName { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ifindex("xbl-nonexist0"),
            Err(XskError::NoSuchInterface { .. })
        ));
        assert_eq!(ifindex("lo").expect("lo"), 1);
    }

    #[test]
    fn loopback_has_a_queue() {
        assert!(queue_count("lo").expect("lo") >= 1);
    }
}
