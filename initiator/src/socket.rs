//! An AF_PACKET SOCK_RAW socket bound to one interface and to ethertype 0x88A2. This module
//! holds every `unsafe` block of the crate: thin wrappers over socket(2), ioctl(2),
//! bind(2), setsockopt(2), send(2), recvfrom(2) and ppoll(2).
//!
//! The socket belongs to the network namespace of the thread that opens it; the interface
//! index, MAC address and MTU are all read through the socket itself, so they come from
//! that same namespace (sysfs would show the namespace of the mount, not the thread's).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use aoe_proto::{Mac, ETHERTYPE_AOE};

use crate::error::InitiatorError;

/// Receive buffer asked for, so that a deep pipeline of replies is not dropped by the
/// kernel while we are busy. Best effort: failure to get it is not an error.
const RCVBUF_BYTES: libc::c_int = 4 << 20;

/// An open, bound packet socket.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

/// What [`PacketSocket::open`] learns about the interface.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    pub mac: Mac,
    pub mtu_bytes: u32,
}

impl PacketSocket {
    pub fn open(ifname: &str) -> Result<(PacketSocket, LinkInfo), InitiatorError> {
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
            return Err(InitiatorError::InvalidInterfaceName {
                ifname: ifname.to_owned(),
            });
        }
        // Protocol 0: the socket receives nothing until bind() names the ethertype and the
        // interface, so no frame of another interface can be queued in between.
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => InitiatorError::PermissionDenied {
                    ifname: ifname.to_owned(),
                },
                _ => socket_error("socket(AF_PACKET, SOCK_RAW)", ifname, err),
            });
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns; OwnedFd
        // closes it exactly once, on drop, including on every error return below.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket {
            fd,
            ifname: ifname.to_owned(),
        };

        let mut ifr = sock.ifreq();
        sock.ioctl(libc::SIOCGIFINDEX, &mut ifr, "ioctl(SIOCGIFINDEX)")?;
        // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote the ifindex member of the union.
        let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };

        let mut ifr = sock.ifreq();
        sock.ioctl(libc::SIOCGIFHWADDR, &mut ifr, "ioctl(SIOCGIFHWADDR)")?;
        // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the hwaddr member (a sockaddr
        // whose first six data bytes are the Ethernet address).
        let hwaddr = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        if hwaddr.sa_family != libc::ARPHRD_ETHER {
            return Err(socket_error(
                "checking the link type",
                ifname,
                io::Error::other(format!(
                    "not an Ethernet interface (ARPHRD {})",
                    hwaddr.sa_family
                )),
            ));
        }
        let mut mac = [0u8; 6];
        for (out, byte) in mac.iter_mut().zip(hwaddr.sa_data.iter()) {
            // c_char to u8: a bit-for-bit reinterpretation of the address byte.
            *out = *byte as u8;
        }

        let mut ifr = sock.ifreq();
        sock.ioctl(libc::SIOCGIFMTU, &mut ifr, "ioctl(SIOCGIFMTU)")?;
        // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the mtu member of the union.
        let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
        let mtu_bytes = u32::try_from(mtu).unwrap_or(0);

        sock.bind(ifindex)?;
        // Frames sent by other sockets of this host on the interface are of no interest;
        // older kernels lack the option, and recv() also drops outgoing frames itself.
        let _ = sock.set_int_option(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        if sock
            .set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF_BYTES)
            .is_err()
        {
            let _ = sock.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF_BYTES);
        }
        Ok((
            sock,
            LinkInfo {
                mac: Mac(mac),
                mtu_bytes,
            },
        ))
    }

    /// An `ifreq` naming our interface, the rest zeroed.
    fn ifreq(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain old data (arrays, integers and a union of such); all-zero
        // bytes are a valid value of it.
        let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
        // The name was checked in open(): shorter than IFNAMSIZ, no NUL; the zeroed tail
        // terminates it.
        for (dst, src) in ifr.ifr_name.iter_mut().zip(self.ifname.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr
    }

    fn ioctl(
        &self,
        request: libc::c_ulong,
        ifr: &mut libc::ifreq,
        what: &'static str,
    ) -> Result<(), InitiatorError> {
        // SAFETY: every request passed here (SIOCGIF*) reads the NUL-terminated name from and
        // writes one union member into the `ifreq` that `ifr` points to, which is valid and
        // exclusively borrowed for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, ifr as *mut libc::ifreq) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENODEV) {
                return Err(InitiatorError::NoSuchInterface {
                    ifname: self.ifname.clone(),
                });
            }
            return Err(socket_error(what, &self.ifname, err));
        }
        Ok(())
    }

    fn bind(&self, ifindex: libc::c_int) -> Result<(), InitiatorError> {
        // SAFETY: sockaddr_ll is plain old data; all-zero bytes are a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = ETHERTYPE_AOE.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll that outlives the call, and the length
        // passed is its exact size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(socket_error(
                "bind(AF_PACKET)",
                &self.ifname,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn set_int_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: the option value is a c_int that lives across the call; the length passed
        // is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast::<libc::c_void>(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one complete Ethernet frame. Returns `Ok(false)` when the kernel had no buffer
    /// for it (ENOBUFS, EAGAIN): the frame is lost like on a congested wire, and the caller's
    /// retransmission timer covers it.
    pub fn send(&self, frame: &[u8]) -> Result<bool, InitiatorError> {
        loop {
            // SAFETY: `frame` is a valid, initialised byte slice for the duration of the
            // call; the kernel only reads `frame.len()` bytes from it. The socket is bound,
            // so no destination address is needed.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if rc >= 0 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => return Ok(false),
                _ => return Err(socket_error("send", &self.ifname, err)),
            }
        }
    }

    /// Receives one frame without blocking. Returns its full length, which exceeds
    /// `buf.len()` when it was truncated, or `None` when nothing is queued. Frames this
    /// host sent are skipped.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, InitiatorError> {
        loop {
            // SAFETY: sockaddr_ll is plain old data; all-zero bytes are a valid value.
            let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes and the kernel writes at
            // most that many; `from`/`from_len` are a valid sockaddr buffer and its size.
            // MSG_TRUNC makes the return value the frame's real length.
            let rc = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_ll).cast::<libc::sockaddr>(),
                    &mut from_len,
                )
            };
            if rc >= 0 {
                if from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                // rc >= 0 was just checked, so the conversion is lossless.
                return Ok(Some(rc as usize));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(socket_error("recvfrom", &self.ifname, err)),
            }
        }
    }

    /// Waits until a frame is queued or `timeout` passes (`None`: forever). Returns whether
    /// the socket is readable. An interrupted wait returns `Ok(false)` early; callers loop.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool, InitiatorError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(t.subsec_nanos()),
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(core::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `pfd` is one valid pollfd and the count passed is 1; `ts_ptr` is null or
        // points to `ts`, which outlives the call; a null signal mask leaves it unchanged.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, core::ptr::null()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(socket_error("ppoll", &self.ifname, err));
        }
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(socket_error(
                "ppoll",
                &self.ifname,
                io::Error::other("socket error (is the interface gone?)"),
            ));
        }
        Ok(rc > 0)
    }
}

fn socket_error(syscall: &'static str, ifname: &str, source: io::Error) -> InitiatorError {
    InitiatorError::Socket {
        syscall,
        ifname: ifname.to_owned(),
        source,
    }
}
