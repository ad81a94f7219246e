//! Link events from the kernel: a raw `NETLINK_ROUTE` socket subscribed to `RTMGRP_LINK`,
//! which the kernel tells about every interface that appears, changes (up/down, MTU, MAC,
//! carrier) or disappears in this network namespace.
//!
//! Poll [`LinkWatcher::fd`] for `POLLIN`, then call [`LinkWatcher::drain`], which never
//! blocks. Events can be lost when they come faster than they are read; the watcher then
//! reports [`LinkEvent::Overrun`], after which the daemon must re-read the state of every
//! interface it cares about (e.g. from sysfs).
//!
//! Messages are parsed defensively: every length is bounds-checked, offsets advance by the
//! 4-byte `NLMSG_ALIGN`/`RTA_ALIGN` rule, and anything malformed is reported as an overrun
//! rather than guessed at.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tracing::warn;

use super::client::os_message;

// Netlink and rtnetlink ABI constants (<linux/netlink.h>, <linux/rtnetlink.h>,
// <linux/if_link.h>, <linux/if.h>); stable kernel ABI.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
/// `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32.
const IFINFOMSG_LEN: usize = 16;
const RTA_HDRLEN: usize = 4;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
/// The attribute type without the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;
const RTMGRP_LINK: u32 = 1;

/// The receive buffer: link messages are a few KiB at most.
const RECV_BUF: usize = 64 * 1024;
/// The socket's kernel receive queue we ask for, to make overruns rare.
const SOCKET_RCVBUF: libc::c_int = 1 << 20;

/// What is known about an interface after an `RTM_NEWLINK` or `RTM_DELLINK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    /// `IFLA_IFNAME`.
    pub name: Option<String>,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_LOWER_UP`: the carrier is up.
    pub lower_up: bool,
    /// All of `ifi_flags` (`IFF_*`).
    pub flags: u32,
    /// `IFLA_ADDRESS`, when it is an Ethernet MAC.
    pub mac: Option<[u8; 6]>,
    /// `RTM_DELLINK`: the interface is gone.
    pub deleted: bool,
}

/// One thing the kernel said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// An interface appeared or changed (`deleted == false`), or disappeared.
    Link(LinkInfo),
    /// Events were lost (the queue overflowed, or a message could not be parsed): re-read
    /// the state of every interface.
    Overrun,
}

/// Why the watcher could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket for link events: {} (is this a Linux kernel with rtnetlink?)", os_message(.0))]
    Socket(#[source] io::Error),
    #[error("cannot subscribe to link events (RTMGRP_LINK): {}", os_message(.0))]
    Bind(#[source] io::Error),
}

/// A subscription to the kernel's link events.
#[derive(Debug)]
pub struct LinkWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
}

fn set_int_option(fd: RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int whose exact size is passed; `fd` is a valid socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl LinkWatcher {
    /// Opens a non-blocking, close-on-exec `NETLINK_ROUTE` socket subscribed to
    /// `RTMGRP_LINK` in the calling thread's network namespace.
    pub fn open() -> Result<LinkWatcher, NetlinkError> {
        // SAFETY: plain syscall; the result is checked and owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(NetlinkError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A bigger queue makes overruns rarer; FORCE works as root beyond rmem_max. Neither
        // is essential.
        if set_int_option(fd.as_raw_fd(), libc::SO_RCVBUFFORCE, SOCKET_RCVBUF).is_err() {
            let _ = set_int_option(fd.as_raw_fd(), libc::SO_RCVBUF, SOCKET_RCVBUF);
        }
        // SAFETY: sockaddr_nl is plain old data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // the kernel assigns a port id
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: `addr` is an initialized sockaddr_nl whose exact size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NetlinkError::Bind(io::Error::last_os_error()));
        }
        Ok(LinkWatcher {
            fd,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending message without blocking and returns its link events, in order.
    /// Consecutive overruns are reported once.
    pub fn drain(&mut self) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        loop {
            // SAFETY: sockaddr_nl is plain old data; all zeroes is a valid value.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `self.buf` is valid for writes of its length; `from`/`from_len` describe
            // a writable sockaddr_nl. MSG_TRUNC makes the result the datagram's real length.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // The kernel dropped messages for lack of room in the queue.
                    Some(libc::ENOBUFS) => push_overrun(&mut events),
                    _ => {
                        warn!("reading link events: {}", os_message(&e));
                        push_overrun(&mut events);
                        break;
                    }
                }
                continue;
            }
            // `n` is non-negative here.
            let n = n as usize;
            if n > self.buf.len() {
                // Truncated: a message we could not see whole.
                push_overrun(&mut events);
                continue;
            }
            if from.nl_pid != 0 {
                // Only the kernel speaks for the kernel.
                continue;
            }
            parse(&self.buf[..n], &mut events);
        }
        events
    }

    #[cfg(test)]
    fn set_receive_buffer(&self, bytes: libc::c_int) -> io::Result<()> {
        set_int_option(self.fd.as_raw_fd(), libc::SO_RCVBUFFORCE, bytes)
    }
}

impl AsRawFd for LinkWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

fn push_overrun(events: &mut Vec<LinkEvent>) {
    if events.last() != Some(&LinkEvent::Overrun) {
        events.push(LinkEvent::Overrun);
    }
}

/// `NLMSG_ALIGN` / `RTA_ALIGN`: rounds up to a multiple of 4 (saturating).
fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses one netlink datagram (any number of messages) and appends its link events to
/// `out`. Malformed input appends [`LinkEvent::Overrun`]; it never panics.
pub fn parse(datagram: &[u8], out: &mut Vec<LinkEvent>) {
    let mut rest = datagram;
    while !rest.is_empty() {
        let (Some(len), Some(kind)) = (u32_at(rest, 0), u16_at(rest, 4)) else {
            push_overrun(out);
            return;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            push_overrun(out);
            return;
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match kind {
            RTM_NEWLINK | RTM_DELLINK => match parse_link(payload, kind == RTM_DELLINK) {
                Some(info) => out.push(LinkEvent::Link(info)),
                None => push_overrun(out),
            },
            NLMSG_OVERRUN => push_overrun(out),
            NLMSG_NOOP | NLMSG_ERROR | NLMSG_DONE => {}
            _ => {}
        }
        // The last message need not be padded.
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
}

/// An `ifinfomsg` and its attributes; `None` if malformed.
fn parse_link(payload: &[u8], deleted: bool) -> Option<LinkInfo> {
    if payload.len() < IFINFOMSG_LEN {
        return None;
    }
    let index = u32_at(payload, 4)? as i32;
    if index <= 0 {
        return None;
    }
    let flags = u32_at(payload, 8)?;
    let mut info = LinkInfo {
        ifindex: index as u32,
        name: None,
        mtu: None,
        up: flags & IFF_UP != 0,
        lower_up: flags & IFF_LOWER_UP != 0,
        flags,
        mac: None,
        deleted,
    };
    let mut attrs = payload.get(align4(IFINFOMSG_LEN)..).unwrap_or(&[]);
    while attrs.len() >= RTA_HDRLEN {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)? & NLA_TYPE_MASK;
        if len < RTA_HDRLEN || len > attrs.len() {
            return None;
        }
        let data = &attrs[RTA_HDRLEN..len];
        match kind {
            IFLA_IFNAME => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                info.name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            IFLA_MTU => info.mtu = u32_at(data, 0),
            IFLA_ADDRESS => info.mac = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    // ---- hand-built messages --------------------------------------------------------------

    fn rta(kind: u16, data: &[u8]) -> Vec<u8> {
        let len = (RTA_HDRLEN + data.len()) as u16;
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(align4(v.len()), 0);
        v
    }

    fn ifinfo(index: i32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0u8 /* AF_UNSPEC */, 0];
        v.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        v.extend_from_slice(&index.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&0xffff_ffffu32.to_ne_bytes()); // change
        for a in attrs {
            v.extend_from_slice(a);
        }
        v
    }

    fn nlmsg(kind: u16, payload: &[u8], pad: bool) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes()); // flags
        v.extend_from_slice(&0u32.to_ne_bytes()); // seq
        v.extend_from_slice(&0u32.to_ne_bytes()); // pid
        v.extend_from_slice(payload);
        if pad {
            v.resize(align4(v.len()), 0);
        }
        v
    }

    fn eth1_attrs() -> Vec<Vec<u8>> {
        vec![
            rta(IFLA_IFNAME, b"eth1\0"),
            rta(IFLA_MTU, &9000u32.to_ne_bytes()),
            rta(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]),
            rta(42, &[1, 2, 3]), // unknown: skipped
        ]
    }

    fn eth1(deleted: bool) -> LinkInfo {
        LinkInfo {
            ifindex: 7,
            name: Some("eth1".into()),
            mtu: Some(9000),
            up: true,
            lower_up: true,
            flags: IFF_UP | IFF_LOWER_UP,
            mac: Some([2, 0, 0, 0, 0, 1]),
            deleted,
        }
    }

    fn parsed(buf: &[u8]) -> Vec<LinkEvent> {
        let mut out = Vec::new();
        parse(buf, &mut out);
        out
    }

    #[test]
    fn newlink_and_dellink() {
        let payload = ifinfo(7, IFF_UP | IFF_LOWER_UP, &eth1_attrs());
        assert_eq!(
            parsed(&nlmsg(RTM_NEWLINK, &payload, true)),
            [LinkEvent::Link(eth1(false))]
        );
        assert_eq!(
            parsed(&nlmsg(RTM_DELLINK, &payload, true)),
            [LinkEvent::Link(eth1(true))]
        );
        let down = ifinfo(3, 0, &[rta(IFLA_IFNAME, b"lo")]);
        assert_eq!(
            parsed(&nlmsg(RTM_NEWLINK, &down, false)),
            [LinkEvent::Link(LinkInfo {
                ifindex: 3,
                name: Some("lo".into()), // no NUL: taken whole
                mtu: None,
                up: false,
                lower_up: false,
                flags: 0,
                mac: None,
                deleted: false,
            })]
        );
    }

    #[test]
    fn several_messages_in_one_datagram() {
        let payload = ifinfo(7, IFF_UP | IFF_LOWER_UP, &eth1_attrs());
        let mut buf = nlmsg(RTM_NEWLINK, &payload, true);
        buf.extend(nlmsg(20 /* RTM_NEWADDR: ignored */, &[0; 8], true));
        buf.extend(nlmsg(NLMSG_DONE, &[0; 4], true));
        // An odd-length last message without padding.
        let odd = ifinfo(7, IFF_UP | IFF_LOWER_UP, &[rta(IFLA_IFNAME, b"eth1\0")]);
        let mut odd_msg = nlmsg(RTM_DELLINK, &odd, false);
        odd_msg.push(0xaa); // one stray byte inside the message, so its length is odd
        let len = odd_msg.len() as u32;
        odd_msg[..4].copy_from_slice(&len.to_ne_bytes());
        buf.extend(odd_msg);
        let events = parsed(&buf);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], LinkEvent::Link(eth1(false)));
        assert!(
            matches!(&events[1], LinkEvent::Link(l) if l.deleted && l.name.as_deref() == Some("eth1"))
        );
    }

    #[test]
    fn overrun_message_and_flags_on_attribute_types() {
        assert_eq!(
            parsed(&nlmsg(NLMSG_OVERRUN, &[], true)),
            [LinkEvent::Overrun]
        );
        let nested_flag = ifinfo(9, 0, &[rta(IFLA_IFNAME | 0x8000, b"x\0")]);
        assert!(matches!(
            &parsed(&nlmsg(RTM_NEWLINK, &nested_flag, true))[..],
            [LinkEvent::Link(l)] if l.name.as_deref() == Some("x")
        ));
    }

    #[test]
    fn short_attributes_are_not_read_past() {
        let payload = ifinfo(
            5,
            0,
            &[
                rta(IFLA_MTU, &[1, 2]),          // too short for a u32
                rta(IFLA_ADDRESS, &[1; 20]),     // not an Ethernet MAC
                rta(IFLA_IFNAME, &[0xff, 0xfe]), // not UTF-8
            ],
        );
        let events = parsed(&nlmsg(RTM_NEWLINK, &payload, true));
        let [LinkEvent::Link(info)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(info.mtu, None);
        assert_eq!(info.mac, None);
        assert!(info.name.is_some());
    }

    #[test]
    fn every_truncation_is_an_overrun_never_a_panic() {
        let msg = nlmsg(
            RTM_NEWLINK,
            &ifinfo(7, IFF_UP | IFF_LOWER_UP, &eth1_attrs()),
            true,
        );
        assert!(parsed(&[]).is_empty());
        for cut in 1..msg.len() {
            assert_eq!(parsed(&msg[..cut]), [LinkEvent::Overrun], "cut at {cut}");
        }
    }

    #[test]
    fn bad_lengths() {
        let good = ifinfo(7, IFF_UP | IFF_LOWER_UP, &eth1_attrs());
        // nlmsg_len below the header size (0 would loop forever if trusted), or past the end.
        for len in [0u32, 1, 15, 10_000, u32::MAX] {
            let mut msg = nlmsg(RTM_NEWLINK, &good, true);
            msg[..4].copy_from_slice(&len.to_ne_bytes());
            assert_eq!(parsed(&msg), [LinkEvent::Overrun], "nlmsg_len {len}");
        }
        // An ifinfomsg cut short inside a well-formed message.
        assert_eq!(
            parsed(&nlmsg(RTM_NEWLINK, &good[..8], true)),
            [LinkEvent::Overrun]
        );
        // rta_len 0, 3 (below the header) or past the message.
        for rta_len in [0u16, 3, 200] {
            let mut payload = good.clone();
            payload[IFINFOMSG_LEN..IFINFOMSG_LEN + 2].copy_from_slice(&rta_len.to_ne_bytes());
            assert_eq!(
                parsed(&nlmsg(RTM_NEWLINK, &payload, true)),
                [LinkEvent::Overrun],
                "rta_len {rta_len}"
            );
        }
        // A non-positive ifindex.
        assert_eq!(
            parsed(&nlmsg(RTM_NEWLINK, &ifinfo(0, 0, &[]), true)),
            [LinkEvent::Overrun]
        );
        assert_eq!(
            parsed(&nlmsg(RTM_NEWLINK, &ifinfo(-3, 0, &[]), true)),
            [LinkEvent::Overrun]
        );
        // Good, then garbage: the good event survives, the garbage is an overrun.
        let mut buf = nlmsg(RTM_NEWLINK, &good, true);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parsed(&buf),
            [LinkEvent::Link(eth1(false)), LinkEvent::Overrun]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            parse(&bytes, &mut out);
            prop_assert!(out.len() <= bytes.len() / NLMSG_HDRLEN + 1);
        }

        #[test]
        fn mutated_messages_never_panic(
            at in 0usize..96,
            value in any::<u8>(),
            cut in 0usize..128,
        ) {
            let mut msg = nlmsg(RTM_NEWLINK, &ifinfo(7, IFF_UP, &eth1_attrs()), true);
            if at < msg.len() {
                msg[at] = value;
            }
            msg.truncate(cut.max(1));
            let mut out = Vec::new();
            parse(&msg, &mut out);
        }
    }

    // ---- the real kernel (root) -----------------------------------------------------------

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail and touches no memory.
        unsafe { libc::geteuid() == 0 }
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip`: {e} (apt-get install iproute2)"));
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Deletes a link this test created, on every exit path.
    struct LinkGuard(String);

    impl Drop for LinkGuard {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.0])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Runs `test` on a thread of its own in a fresh network namespace (which vanishes with
    /// the thread, and everything in it); `fresh` tells whether that worked, or whether it
    /// runs in the current namespace. Skips (returns) when not root.
    fn in_network_namespace(name: &'static str, test: impl FnOnce(bool) + Send + 'static) {
        if !is_root() {
            eprintln!("skipping {name}: needs root (network namespaces, veth links)");
            return;
        }
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare(2) touches no memory; CLONE_NEWNET moves only this thread (and
            // the processes it spawns) into a new network namespace.
            let fresh = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
            if !fresh {
                eprintln!(
                    "{name}: cannot create a network namespace ({}); using the current one",
                    io::Error::last_os_error()
                );
            }
            test(fresh);
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    fn wait_for(
        watcher: &mut LinkWatcher,
        what: &str,
        mut wanted: impl FnMut(&LinkInfo) -> bool,
    ) -> LinkInfo {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: watcher.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            for event in watcher.drain() {
                if let LinkEvent::Link(info) = &event {
                    if wanted(info) {
                        return info.clone();
                    }
                }
                seen.push(event);
            }
        }
        panic!("no event for {what}; saw {seen:?}");
    }

    #[test]
    fn veth_lifecycle_events() {
        in_network_namespace("veth_lifecycle_events", |_| {
            let pid = std::process::id();
            let (a, b) = (format!("xblnl{pid}a"), format!("xblnl{pid}b"));
            let mut watcher = LinkWatcher::open().unwrap();
            assert!(watcher.drain().is_empty(), "nothing pending at first");

            let guard = LinkGuard(a.clone());
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            let new = wait_for(&mut watcher, "NEWLINK", |l| {
                !l.deleted && l.name.as_deref() == Some(&*a)
            });
            assert!(!new.up);
            assert!(new.mtu.is_some());
            assert!(new.mac.is_some());
            let index = new.ifindex;

            ip(&["link", "set", &a, "mtu", "1400"]);
            let changed = wait_for(&mut watcher, "the new MTU", |l| {
                l.ifindex == index && l.mtu == Some(1400)
            });
            assert_eq!(changed.name.as_deref(), Some(&*a));

            ip(&["link", "set", &a, "up"]);
            wait_for(&mut watcher, "IFF_UP", |l| l.ifindex == index && l.up);

            ip(&["link", "del", &a]);
            let gone = wait_for(&mut watcher, "DELLINK", |l| l.ifindex == index && l.deleted);
            assert_eq!(gone.name.as_deref(), Some(&*a));
            drop(guard);
        });
    }

    #[test]
    fn queue_overflow_is_reported() {
        in_network_namespace("queue_overflow_is_reported", |fresh| {
            if !fresh {
                eprintln!("skipping queue_overflow_is_reported outside a fresh namespace");
                return;
            }
            let mut watcher = LinkWatcher::open().unwrap();
            watcher.set_receive_buffer(0).unwrap(); // the kernel's minimum
            let pid = std::process::id();
            let batch: String = (0..16)
                .map(|i| format!("link add xblo{pid}a{i} type veth peer name xblo{pid}b{i}\n"))
                .collect();
            let mut child = Command::new("ip")
                .args(["-batch", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success());
            let events = watcher.drain();
            assert!(
                events.contains(&LinkEvent::Overrun),
                "expected an overrun: {events:?}"
            );
            // Still usable afterwards (with room for both ends' messages again).
            watcher.set_receive_buffer(SOCKET_RCVBUF).unwrap();
            let name = format!("xblo{pid}z");
            ip(&[
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("xblo{pid}y"),
            ]);
            wait_for(&mut watcher, "NEWLINK after overrun", |l| {
                l.name.as_deref() == Some(&*name)
            });
        });
    }
}
