//! Preferred busy polling of the NAPI context behind an AF_XDP socket: the socket options
//! `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` (`SOL_SOCKET`,
//! `<asm-generic/socket.h>`; Linux 5.11), as `Documentation/networking/af_xdp.rst` ("Busy
//! polling") describes them.
//!
//! With them set, each `recvfrom`, `sendto` and `poll` the application makes on the socket
//! runs one pass of the driver's NAPI poll (at most `SO_BUSY_POLL_BUDGET` packets) in the
//! caller's context, and the kernel prefers that over its own softirq processing: together
//! with the netdev's `napi_defer_hard_irqs` and `gro_flush_timeout`, interrupts stay off
//! while the application keeps calling, and come back (after `gro_flush_timeout`) when it
//! stops. AF_XDP calls never block, so `SO_BUSY_POLL`'s value (microseconds to spin in a
//! blocking call) acts only as the on switch: any non-zero value turns busy polling on.
//!
//! The calls poll only the NAPI context the socket is tied to (`SO_INCOMING_NAPI_ID`).
//! Since Linux 6.13 (commit "xsk: Bring back busy polling support") that id is resolved at
//! bind time, and only for a zero-copy socket: a copy-mode socket (veth, generic XDP, any
//! driver without zero-copy) has id 0, and its busy-poll calls poll nothing. Before 6.13 a
//! socket learned the id from its first packet, when the driver registered one. So read
//! [`NapiBusyPollState::napi_id`] after binding to know whether busy polling can work.

use std::{
    ffi::c_void,
    io, mem,
    os::fd::{AsRawFd, BorrowedFd},
};

use super::XskError;

/// `SO_INCOMING_NAPI_ID` (`<asm-generic/socket.h>`: 56 on x86, arm64, riscv and the other
/// generic architectures; libc does not export it for them).
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
const SO_INCOMING_NAPI_ID: libc::c_int = 56;

/// What to set on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiBusyPoll {
    /// `SO_BUSY_POLL`: microseconds a blocking call may spin (non-zero: on).
    pub busy_poll_us: u32,
    /// `SO_BUSY_POLL_BUDGET`: most packets one busy-poll pass processes.
    pub budget: u16,
}

/// The options as the kernel reports them after setting (read back with `getsockopt`).
/// The kernel's `sk_getsockopt` answers `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL` but not
/// `SO_BUSY_POLL_BUDGET` (ENOPROTOOPT, checked on 6.18): the budget is the value set, which
/// the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiBusyPollState {
    /// `SO_PREFER_BUSY_POLL`, read back.
    pub prefer: bool,
    /// `SO_BUSY_POLL`, in microseconds, read back.
    pub busy_poll_us: u32,
    /// `SO_BUSY_POLL_BUDGET`, in packets, as set (the kernel cannot report it).
    pub budget: u16,
    /// `SO_INCOMING_NAPI_ID`: the NAPI context busy polling drives; 0: none (yet), so the
    /// busy-poll calls poll nothing.
    pub napi_id: u32,
}

impl NapiBusyPollState {
    /// True when the kernel holds exactly what `wanted` asked for, preference on.
    pub fn matches(&self, wanted: &NapiBusyPoll) -> bool {
        self.prefer && self.busy_poll_us == wanted.busy_poll_us && self.budget == wanted.budget
    }
}

/// One of the three options, by its kernel name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPollOption {
    /// `SO_PREFER_BUSY_POLL`
    Prefer,
    /// `SO_BUSY_POLL`
    Usecs,
    /// `SO_BUSY_POLL_BUDGET`
    Budget,
}

impl BusyPollOption {
    /// The kernel's name of the option.
    pub fn name(self) -> &'static str {
        match self {
            BusyPollOption::Prefer => "SO_PREFER_BUSY_POLL",
            BusyPollOption::Usecs => "SO_BUSY_POLL",
            BusyPollOption::Budget => "SO_BUSY_POLL_BUDGET",
        }
    }

    /// The option number (`<asm-generic/socket.h>`, through libc for this architecture).
    fn number(self) -> libc::c_int {
        match self {
            BusyPollOption::Prefer => libc::SO_PREFER_BUSY_POLL,
            BusyPollOption::Usecs => libc::SO_BUSY_POLL,
            BusyPollOption::Budget => libc::SO_BUSY_POLL_BUDGET,
        }
    }
}

impl std::fmt::Display for BusyPollOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sets `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET` and then `SO_PREFER_BUSY_POLL` on `fd`, and
/// reads back the two the kernel reports ([`NapiBusyPollState`]).
///
/// The kernel wants `CAP_NET_ADMIN` for `SO_PREFER_BUSY_POLL` and for a budget above the
/// socket's current one (8); older kernels also for `SO_BUSY_POLL` above
/// `net.core.busy_read`. xblade sets them while it creates its sockets, before any
/// privilege drop.
pub fn apply(fd: BorrowedFd<'_>, wanted: &NapiBusyPoll) -> Result<NapiBusyPollState, XskError> {
    let usecs = i32::try_from(wanted.busy_poll_us).map_err(|_| XskError::BusyPoll {
        option: BusyPollOption::Usecs,
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    for (option, value) in [
        (BusyPollOption::Usecs, usecs),
        (BusyPollOption::Budget, i32::from(wanted.budget)),
        (BusyPollOption::Prefer, 1),
    ] {
        set_int(fd, option.number(), value).map_err(|source| busy_poll_error(option, source))?;
    }
    let (prefer, busy_poll_us) = read(fd)?;
    Ok(NapiBusyPollState {
        prefer,
        busy_poll_us,
        budget: wanted.budget,
        napi_id: napi_id(fd)?,
    })
}

/// `SO_INCOMING_NAPI_ID` of `fd`: the NAPI context its busy polling drives (0: none).
pub fn napi_id(fd: BorrowedFd<'_>) -> Result<u32, XskError> {
    let id = get_int(fd, SO_INCOMING_NAPI_ID).map_err(|source| XskError::GetSockOpt {
        option: "SO_INCOMING_NAPI_ID",
        source,
    })?;
    Ok(u32::try_from(id).unwrap_or(0))
}

/// Reads `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL` (µs) of `fd`.
pub fn read(fd: BorrowedFd<'_>) -> Result<(bool, u32), XskError> {
    let get = |option: BusyPollOption| {
        get_int(fd, option.number()).map_err(|source| busy_poll_error(option, source))
    };
    let prefer = get(BusyPollOption::Prefer)?;
    let usecs = get(BusyPollOption::Usecs)?;
    Ok((prefer != 0, u32::try_from(usecs).unwrap_or(0)))
}

fn busy_poll_error(option: BusyPollOption, source: io::Error) -> XskError {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => XskError::BusyPollDenied {
            option,
            busy_read_us: std::fs::read_to_string("/proc/sys/net/core/busy_read")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            source,
        },
        Some(libc::ENOPROTOOPT) => XskError::BusyPollUnsupported { option, source },
        _ => XskError::BusyPoll { option, source },
    }
}

/// `setsockopt(fd, SOL_SOCKET, option, &value, sizeof(int))`.
fn set_int(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size; the kernel copies
    // it and keeps no reference.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast::<c_void>(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(fd, SOL_SOCKET, option)` of an int-valued option.
fn get_int(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a writable c_int and `len` its size; the kernel writes at most
    // `len` bytes and any bytes are a valid c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast::<c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// Any socket carries the SOL_SOCKET options: a UDP socket needs no privilege.
    fn udp_socket() -> OwnedFd {
        // SAFETY: plain syscall; the result is checked and owned at once.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }

    #[test]
    fn option_numbers_are_the_kernels() {
        // <asm-generic/socket.h> (x86, arm64, riscv, ...).
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            assert_eq!(BusyPollOption::Usecs.number(), 46);
            assert_eq!(BusyPollOption::Prefer.number(), 69);
            assert_eq!(BusyPollOption::Budget.number(), 70);
        }
    }

    #[test]
    fn set_values_read_back_when_privileged() {
        let fd = udp_socket();
        let wanted = NapiBusyPoll {
            busy_poll_us: 20,
            budget: 64,
        };
        match apply(fd.as_fd(), &wanted) {
            Ok(state) => assert!(state.matches(&wanted), "{state:?}"),
            // Unprivileged test runs: the error must name the capability.
            Err(e @ XskError::BusyPollDenied { .. }) => {
                assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_fresh_socket_does_not_prefer_busy_polling_and_has_no_napi_context() {
        let fd = udp_socket();
        let (prefer, _) = read(fd.as_fd()).unwrap();
        assert!(!prefer);
        assert_eq!(napi_id(fd.as_fd()).unwrap(), 0);
    }

    #[test]
    fn a_refused_value_names_the_option() {
        // The kernel takes budgets up to U16_MAX only; NapiBusyPoll cannot express more,
        // so provoke EINVAL through SO_BUSY_POLL's int conversion instead.
        let e = apply(
            udp_socket().as_fd(),
            &NapiBusyPoll {
                busy_poll_us: u32::MAX,
                budget: 8,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("SO_BUSY_POLL"), "{e}");
    }
}
