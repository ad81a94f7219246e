//! XDP + AF_XDP plumbing over a veth pair in two throwaway network namespaces (root only).
//!
//! The test thread enters the target namespace (so `if_nametoindex`, the BPF link and the
//! AF_XDP bind all resolve there), attaches the XDP program, binds one AF_XDP socket per RX
//! queue and registers them in the XSKMAP. The client's AF_PACKET socket is created by a thread
//! that entered the client namespace (a socket stays in the namespace it was created in). The
//! client sends AoE frames; the ones for the served shelf.slot must arrive on an XSK RX ring,
//! everything else must pass (or drop) with the matching counter; a reply sent from the very
//! UMEM frame through the TX ring must reach the client.
//!
//! Many exports: each export's mask list is enforced in XDP for that export alone; wildcard
//! requests are redirected only while something they match is served (marker entries), and
//! `set_exports` / `set_export_mask` add, change and remove exactly what differs.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

use xblade::{
    xdp::{
        AttachedMode, XdpAttachMode, XdpCounters, XdpError, XdpExport, XdpProgram, MAX_ACL_ENTRIES,
        MAX_EXPORTS,
    },
    xsk::{self, BindMode, UmemConfig, UmemRegion, XskSocket},
};
use xblade_lab::{enter_ns, Lab, LabOptions, NetnsGuard};

const ETH_P_AOE: u16 = 0x88A2;
const SHELF: u16 = 1;
const SLOT: u8 = 2;
const WAIT: Duration = Duration::from_secs(2);
/// A source MAC that is not the client's (the client may put any source in its frames).
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0B];

const UMEM: UmemConfig = UmemConfig {
    frame_count: 64,
    frame_size: 4096,
    frame_headroom: 220,
    ring_size: 32,
};

// ---------------------------------------------------------------------------------------------
// Client side: a raw AF_PACKET socket bound to the client's veth end.

struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket on a thread inside `ns`, so that it lives in that namespace.
    fn open_in(ns: &str, ifname: &str) -> io::Result<Self> {
        let (ns, ifname) = (ns.to_owned(), ifname.to_owned());
        std::thread::spawn(move || {
            let _guard = enter_ns(&ns).map_err(io::Error::other)?;
            Self::open(&ifname)
        })
        .join()
        .map_err(|_| io::Error::other("client thread panicked"))?
    }

    fn open(ifname: &str) -> io::Result<Self> {
        let ifindex = xsk::ifindex(ifname).map_err(io::Error::other)?;
        let proto = ETH_P_AOE.to_be();
        // SAFETY: plain syscall; the result is checked and owned immediately.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for `frame.len()` bytes for the duration of the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    /// Next AoE frame whose tag is `tag`, or `None` after `timeout`.
    fn recv_tagged(&self, tag: [u8; 4], timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if !poll_in(&[self.fd.as_fd()], left) {
                return None;
            }
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 24 && buf[20..24] == tag {
                return Some(buf[..n as usize].to_vec());
            }
        }
    }
}

/// Waits until one of `fds` is readable; `true` if one is.
fn poll_in(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> bool {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    rc > 0
}

/// An AoE Query Config request (command 1), padded to the 60-byte minimum.
fn aoe_frame(
    dst: [u8; 6],
    src: [u8; 6],
    flags: u8,
    major: u16,
    minor: u8,
    tag: [u8; 4],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_P_AOE.to_be_bytes());
    f.extend_from_slice(&[flags, 0]);
    f.extend_from_slice(&major.to_be_bytes());
    f.extend_from_slice(&[minor, 1]);
    f.extend_from_slice(&tag);
    f.resize(60, 0);
    f
}

// ---------------------------------------------------------------------------------------------
// Target side.

struct Queue {
    umem: UmemRegion,
    sock: XskSocket,
}

/// Field order is drop order: program and sockets go while the thread is still in the target
/// namespace, the lab (namespaces) last.
struct Harness {
    prog: Option<XdpProgram>,
    queues: Vec<Queue>,
    client: PacketSocket,
    guard: Option<NetnsGuard>,
    lab: Lab,
}

impl Harness {
    fn new(tag: &str, rx_queues: u32, mode: XdpAttachMode) -> Harness {
        let lab = Lab::new(tag, LabOptions::with_rx_queues(rx_queues)).expect("lab");
        let client =
            PacketSocket::open_in(lab.client_ns(), lab.client_if()).expect("AF_PACKET socket");
        let guard = lab.enter_target_thread().expect("enter target ns");

        // The thread's namespace decides what names resolve to: the client's interface is not
        // visible here, the target's is.
        assert!(
            xsk::ifindex(lab.client_if()).is_err(),
            "thread is not in the target ns"
        );
        let ifindex = xsk::ifindex(lab.target_if()).expect("target ifindex");
        assert_eq!(
            xsk::queue_count(lab.target_if()).expect("queue count"),
            rx_queues
        );

        let mut prog = XdpProgram::attach(lab.target_if(), mode).expect("attach XDP");
        prog.serve_target(SHELF, SLOT).expect("serve");
        let mut queues = Vec::new();
        for queue_id in 0..rx_queues {
            let umem = UmemRegion::new(&UMEM, 0).expect("UMEM");
            let mut sock = XskSocket::new(ifindex, queue_id, &umem, &UMEM).expect("XSK bind");
            // veth has no zero-copy support: the fallback must have happened.
            assert_eq!(sock.bind_mode(), BindMode::Copy);
            // Hand the first half of the frames to the kernel; the rest stay free for TX.
            let fill = sock.fill();
            let n = fill.reserve(UMEM.ring_size);
            assert_eq!(n, UMEM.ring_size);
            for i in 0..n {
                fill.write(i, umem.frame_addr(i));
            }
            fill.submit(n);
            prog.register_socket(queue_id, sock.fd()).expect("XSKMAP");
            queues.push(Queue { umem, sock });
        }
        Harness {
            prog: Some(prog),
            queues,
            client,
            guard: Some(guard),
            lab,
        }
    }

    fn prog(&self) -> &XdpProgram {
        self.prog.as_ref().expect("program attached")
    }

    fn prog_mut(&mut self) -> &mut XdpProgram {
        self.prog.as_mut().expect("program attached")
    }

    /// A request (Query Config) to `major`.`minor` from source MAC `src`.
    fn request(&self, src: [u8; 6], major: u16, minor: u8, tag: [u8; 4]) -> Vec<u8> {
        aoe_frame(self.lab.target_mac(), src, 0x10, major, minor, tag)
    }

    /// Sends `frame`, checks that it arrives on an XSK RX ring as sent and is counted as
    /// redirected, and gives the frame back to the fill ring.
    fn expect_redirect(&mut self, frame: &[u8]) {
        let before = self.counters();
        self.client.send(frame);
        let (q, desc) = self.xsk_recv(WAIT).unwrap_or_else(|| {
            panic!(
                "no frame on an XSK RX ring for {:02x?}: {:?}",
                &frame[16..19],
                self.counters()
            )
        });
        assert_eq!(self.frame_mut(q, &desc), frame, "received bytes");
        self.wait_counters("redirect", |c| c.redirect == before.redirect + 1);
        let sock = &mut self.queues[q].sock;
        sock.rx().release(1);
        let fill = sock.fill();
        assert_eq!(fill.reserve(1), 1);
        fill.write(0, desc.addr);
        fill.submit(1);
        if fill.needs_wakeup() {
            sock.wake_rx().expect("wake rx");
        }
    }

    /// Sends `frame` and checks that the counter `field` picks it up and nothing is redirected.
    fn expect_verdict(&mut self, frame: &[u8], what: &str, field: fn(&XdpCounters) -> u64) {
        let before = self.counters();
        self.client.send(frame);
        let after = self.wait_counters(what, |c| field(c) == field(&before) + 1);
        self.assert_no_xsk_frame();
        assert_eq!(
            after.redirect, before.redirect,
            "{what}: nothing redirected"
        );
    }

    fn expect_pass_other_target(&mut self, frame: &[u8]) {
        self.expect_verdict(frame, "pass_other_target", |c| c.pass_other_target);
    }

    fn expect_drop_acl(&mut self, frame: &[u8]) {
        self.expect_verdict(frame, "drop_acl", |c| c.drop_acl);
    }

    fn counters(&self) -> XdpCounters {
        self.prog().counters().expect("counters")
    }

    /// Waits until `pred(counters)` holds.
    fn wait_counters(&self, what: &str, pred: impl Fn(&XdpCounters) -> bool) -> XdpCounters {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = self.counters();
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {c:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The first frame to arrive on any socket: (queue index, descriptor).
    fn xsk_recv(&mut self, timeout: Duration) -> Option<(usize, libc::xdp_desc)> {
        let deadline = Instant::now() + timeout;
        loop {
            for (q, queue) in self.queues.iter_mut().enumerate() {
                let rx = queue.sock.rx();
                if rx.peek(1) == 1 {
                    return Some((q, rx.desc(0)));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let fds: Vec<_> = self.queues.iter().map(|q| q.sock.fd()).collect();
            poll_in(&fds, left.min(Duration::from_millis(50)));
        }
    }

    fn frame_mut(&mut self, q: usize, desc: &libc::xdp_desc) -> &mut [u8] {
        let umem = &self.queues[q].umem;
        let (addr, len) = (desc.addr as usize, desc.len as usize);
        assert!(addr
            .checked_add(len)
            .is_some_and(|end| end <= umem.umem_len()));
        // SAFETY: the range lies inside the UMEM (checked above). The kernel handed this frame
        // to us through the RX ring and does not touch it until we give it back through the
        // fill or TX ring; `&mut self` keeps the slice unique on our side.
        unsafe { std::slice::from_raw_parts_mut(umem.as_ptr().add(addr), len) }
    }

    fn assert_no_xsk_frame(&mut self) {
        if let Some((q, d)) = self.xsk_recv(Duration::from_millis(100)) {
            panic!("unexpected frame on queue {q}: {} bytes", d.len);
        }
    }

    /// Sends a request for SHELF.SLOT, receives it on an XSK, turns it into a reply in place,
    /// transmits it from the same frame and checks that the client gets it.
    fn round_trip(&mut self, tag: [u8; 4], major: u16, minor: u8) {
        let (cmac, tmac) = (self.lab.client_mac(), self.lab.target_mac());
        let request = aoe_frame(tmac, cmac, 0x10, major, minor, tag);
        let before = self.counters();
        self.client.send(&request);

        let (q, desc) = self.xsk_recv(WAIT).expect("frame on an XSK RX ring");
        // XDP_PACKET_HEADROOM (256) + frame_headroom (220) = 476: byte 36 lands at offset 512.
        assert_eq!(
            desc.addr % u64::from(UMEM.frame_size),
            476,
            "packet offset in its frame"
        );
        assert_eq!(self.frame_mut(q, &desc), &request[..], "received bytes");
        self.wait_counters("redirect", |c| c.redirect == before.redirect + 1);

        // Reply from the same frame: swap MACs, set the response flag.
        let frame = self.frame_mut(q, &desc);
        frame.copy_within(6..12, 0);
        frame[6..12].copy_from_slice(&tmac);
        frame[14] = 0x18;
        let reply = frame.to_vec();

        let sock = &mut self.queues[q].sock;
        let rings = sock.rings();
        assert_eq!(rings.tx.reserve(1), 1);
        rings.tx.write(0, desc);
        rings.tx.submit(1);
        rings.rx.release(1);
        // In copy mode the kernel only transmits from inside sendto(); it must say so.
        assert!(
            rings.tx.needs_wakeup(),
            "copy-mode TX ring must ask for a wakeup"
        );
        sock.kick_tx().expect("kick");

        let got = self
            .client
            .recv_tagged(tag, WAIT)
            .expect("reply at the client");
        assert_eq!(got, reply);
        assert_eq!(&got[0..6], &cmac);
        assert_eq!(&got[6..12], &tmac);
        assert_eq!(got[14], 0x18);

        // The frame comes back on the completion ring; recycle it into the fill ring.
        let sock = &mut self.queues[q].sock;
        let deadline = Instant::now() + WAIT;
        while sock.comp().peek(1) == 0 {
            assert!(Instant::now() < deadline, "no TX completion");
            std::thread::sleep(Duration::from_millis(1));
        }
        let addr = sock.comp().addr(0);
        assert_eq!(addr, desc.addr, "completion returns the sent address");
        sock.comp().release(1);
        let fill = sock.fill();
        assert_eq!(fill.reserve(1), 1);
        fill.write(0, addr);
        fill.submit(1);
        if fill.needs_wakeup() {
            sock.wake_rx().expect("wake rx");
        }
        let stats = sock.statistics().expect("XDP_STATISTICS");
        assert_eq!(stats.rx_dropped, 0, "{stats:?}");
        assert_eq!(stats.tx_invalid_descs, 0, "{stats:?}");
    }

    /// Drops the program and checks that nothing stays attached.
    fn detach_and_check(&mut self) {
        assert!(xdp_attached(&self.lab), "attached before drop");
        drop(self.prog.take());
        assert!(!xdp_attached(&self.lab), "still attached after drop");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.prog = None;
        self.queues.clear();
        self.guard = None;
    }
}

/// Whether `ip -d link show` lists an XDP program on the target interface.
fn xdp_attached(lab: &Lab) -> bool {
    let out = lab
        .command_in_target("ip")
        .args(["-d", "link", "show", "dev", lab.target_if()])
        .output()
        .expect("ip link show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn full_path(tag: &str, rx_queues: u32, mode: XdpAttachMode, expect: AttachedMode) {
    if !xblade_lab::require_root() {
        return;
    }
    let mut h = Harness::new(tag, rx_queues, mode);
    assert_eq!(h.prog().mode(), expect);
    h.round_trip(*b"\x00\x00\x00\x01", SHELF, SLOT);
    h.round_trip(*b"\x00\x00\x00\x02", 0xFFFF, SLOT); // any shelf
    h.round_trip(*b"\x00\x00\x00\x03", SHELF, 0xFF); // any slot
    h.detach_and_check();
}

#[test]
fn generic_one_queue() {
    full_path("gen1", 1, XdpAttachMode::Generic, AttachedMode::Generic);
}

#[test]
fn native_one_queue() {
    full_path("nat1", 1, XdpAttachMode::Native, AttachedMode::Native);
}

#[test]
fn generic_two_queues() {
    full_path("gen2", 2, XdpAttachMode::Generic, AttachedMode::Generic);
}

#[test]
fn native_two_queues() {
    full_path("nat2", 2, XdpAttachMode::Native, AttachedMode::Native);
}

#[test]
fn verdicts_and_acl() {
    if !xblade_lab::require_root() {
        return;
    }
    let mut h = Harness::new("verdicts", 1, XdpAttachMode::Generic);
    let (cmac, tmac) = (h.lab.client_mac(), h.lab.target_mac());

    // Another shelf: passed to the kernel, not redirected.
    let c0 = h.counters();
    h.client
        .send(&aoe_frame(tmac, cmac, 0x10, 9, SLOT, [0, 0, 1, 1]));
    let c1 = h.wait_counters("pass_other_target", |c| {
        c.pass_other_target == c0.pass_other_target + 1
    });
    h.assert_no_xsk_frame();

    // A response (R flag) for our own shelf.slot: passed.
    h.client
        .send(&aoe_frame(tmac, cmac, 0x18, SHELF, SLOT, [0, 0, 1, 2]));
    let c2 = h.wait_counters("pass_response", |c| c.pass_response == c1.pass_response + 1);
    h.assert_no_xsk_frame();

    // Not AoE at all: passed untouched.
    let mut other = aoe_frame(tmac, cmac, 0x10, SHELF, SLOT, [0, 0, 1, 3]);
    other[12..14].copy_from_slice(&0x88B5u16.to_be_bytes()); // IEEE local experimental
    h.client.send(&other);
    let c3 = h.wait_counters("pass_not_aoe", |c| c.pass_not_aoe == c2.pass_not_aoe + 1);
    h.assert_no_xsk_frame();

    // AoE ethertype but shorter than the 10-byte AoE header: dropped.
    h.client
        .send(&aoe_frame(tmac, cmac, 0x10, SHELF, SLOT, [0; 4])[..20]);
    let c4 = h.wait_counters("drop_malformed", |c| {
        c.drop_malformed == c3.drop_malformed + 1
    });
    h.assert_no_xsk_frame();

    // One 802.1Q tag is looked through (the veth does not strip it on this path).
    let mut tagged = aoe_frame(tmac, cmac, 0x10, 9, SLOT, [0, 0, 1, 4]);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    h.client.send(&tagged);
    let c5 = h.wait_counters("tagged other target", |c| {
        c.pass_other_target == c4.pass_other_target + 1
    });
    h.assert_no_xsk_frame();
    assert_eq!(c5.redirect, c0.redirect, "nothing was redirected");
    assert_eq!(c5.drop_acl, 0);

    // ACL without the client: dropped.
    h.prog
        .as_mut()
        .expect("prog")
        .set_acl(&[[0x02, 0, 0, 0, 0, 1]])
        .expect("acl");
    h.client
        .send(&aoe_frame(tmac, cmac, 0x10, SHELF, SLOT, [0, 0, 1, 5]));
    h.wait_counters("drop_acl", |c| c.drop_acl == 1);
    h.assert_no_xsk_frame();

    // ACL with the client: served. Then ACL off: served.
    h.prog
        .as_mut()
        .expect("prog")
        .set_acl(&[[0x02, 0, 0, 0, 0, 1], cmac])
        .expect("acl");
    h.round_trip([0, 0, 1, 6], SHELF, SLOT);
    h.prog
        .as_mut()
        .expect("prog")
        .set_acl(&[])
        .expect("acl off");
    h.round_trip([0, 0, 1, 7], SHELF, SLOT);
    assert_eq!(h.counters().drop_acl, 1);

    // A socket-less queue: unregistering is not in the API, so check with a fresh program.
    h.detach_and_check();
}

#[test]
fn no_socket_passes() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("nosock", LabOptions::with_rx_queues(1)).expect("lab");
    let client = PacketSocket::open_in(lab.client_ns(), lab.client_if()).expect("AF_PACKET");
    let _guard = lab.enter_target_thread().expect("enter target ns");
    let mut prog = XdpProgram::attach(lab.target_if(), XdpAttachMode::Generic).expect("attach");
    prog.serve_target(SHELF, SLOT).expect("serve");
    client.send(&aoe_frame(
        lab.target_mac(),
        lab.client_mac(),
        0x10,
        SHELF,
        SLOT,
        [0, 0, 2, 1],
    ));
    let deadline = Instant::now() + WAIT;
    while prog.counters().expect("counters").pass_no_socket == 0 {
        assert!(Instant::now() < deadline, "pass_no_socket never counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(
        prog.register_socket(64, client.fd.as_fd()),
        Err(XdpError::QueueOutOfRange { queue_id: 64 })
    ));
    assert!(matches!(
        prog.serve_target(0xFFFF, 1),
        Err(XdpError::InvalidTarget { .. })
    ));
    let too_many = macs(MAX_ACL_ENTRIES + 1);
    assert!(matches!(
        prog.set_acl(&too_many),
        Err(XdpError::AclTooLarge { count }) if count == MAX_ACL_ENTRIES + 1
    ));
}

/// Waits until `pred` holds for `prog`'s counters.
fn wait_for(prog: &XdpProgram, what: &str, pred: impl Fn(&XdpCounters) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = prog.counters().expect("counters");
        if pred(&c) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {c:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `n` distinct locally administered MACs.
fn macs(n: usize) -> Vec<[u8; 6]> {
    (0..n as u32)
        .map(|i| {
            let b = i.to_be_bytes();
            [0x02, 0xAA, b[0], b[1], b[2], b[3]]
        })
        .collect()
}

fn export(major: u16, minor: u8, mask: &[[u8; 6]]) -> XdpExport {
    XdpExport {
        major,
        minor,
        mask: mask.to_vec(),
    }
}

#[test]
fn per_export_acl() {
    if !xblade_lab::require_root() {
        return;
    }
    let mut h = Harness::new("peracl", 1, XdpAttachMode::Generic);
    let cmac = h.lab.client_mac();
    let (a, b) = ((SHELF, SLOT), (SHELF, SLOT + 1));

    // A admits the client only, B admits OTHER_MAC only.
    h.prog_mut()
        .set_exports(&[export(a.0, a.1, &[cmac]), export(b.0, b.1, &[OTHER_MAC])])
        .expect("set_exports");
    assert_eq!(
        h.prog().exports(),
        [export(a.0, a.1, &[cmac]), export(b.0, b.1, &[OTHER_MAC])]
    );
    h.round_trip([0, 0, 3, 1], a.0, a.1);
    let f = h.request(cmac, b.0, b.1, [0, 0, 3, 2]);
    h.expect_drop_acl(&f);
    let f = h.request(OTHER_MAC, b.0, b.1, [0, 0, 3, 3]);
    h.expect_redirect(&f);
    let f = h.request(OTHER_MAC, a.0, a.1, [0, 0, 3, 4]);
    h.expect_drop_acl(&f);
    // Wildcards are not ACL-checked in XDP (userspace checks each export's list).
    h.round_trip([0, 0, 3, 5], 0xFFFF, b.1);
    h.round_trip([0, 0, 3, 6], SHELF, 0xFF);

    // One export's list changes; the other's does not.
    h.prog_mut()
        .set_export_mask(b.0, b.1, &[OTHER_MAC, cmac])
        .expect("mask B");
    h.round_trip([0, 0, 3, 7], b.0, b.1);
    let f = h.request(OTHER_MAC, a.0, a.1, [0, 0, 3, 8]);
    h.expect_drop_acl(&f);
    // An empty list turns A's ACL off.
    h.prog_mut().set_export_mask(a.0, a.1, &[]).expect("mask A");
    let f = h.request(OTHER_MAC, a.0, a.1, [0, 0, 3, 9]);
    h.expect_redirect(&f);
    assert_eq!(
        h.prog().exports(),
        [export(a.0, a.1, &[]), export(b.0, b.1, &[OTHER_MAC, cmac])]
    );

    // set_acl (the one-export API) gives every export the same list.
    h.prog_mut().set_acl(&[OTHER_MAC]).expect("set_acl");
    let f = h.request(cmac, a.0, a.1, [0, 0, 3, 10]);
    h.expect_drop_acl(&f);
    let f = h.request(cmac, b.0, b.1, [0, 0, 3, 11]);
    h.expect_drop_acl(&f);

    // Errors change nothing.
    let prog = h.prog_mut();
    assert!(matches!(
        prog.set_export_mask(9, 9, &[cmac]),
        Err(XdpError::NotServed { major: 9, minor: 9 })
    ));
    assert!(matches!(
        prog.set_export_mask(SHELF, 0xFF, &[cmac]),
        Err(XdpError::InvalidTarget { .. })
    ));
    assert!(matches!(
        prog.set_exports(&[export(1, 1, &[]), export(1, 1, &[cmac])]),
        Err(XdpError::DuplicateExport { major: 1, minor: 1 })
    ));
    assert!(matches!(
        prog.set_exports(&[export(0xFFFF, 1, &[])]),
        Err(XdpError::InvalidTarget { .. })
    ));
    let f = h.request(OTHER_MAC, b.0, b.1, [0, 0, 3, 12]);
    h.expect_redirect(&f);
    h.detach_and_check();
}

#[test]
fn partial_wildcards_and_markers() {
    if !xblade_lab::require_root() {
        return;
    }
    let mut h = Harness::new("wild", 1, XdpAttachMode::Generic);
    let cmac = h.lab.client_mac();
    let mut tag = 0u32;
    let mut next_tag = || {
        tag += 1;
        (0x0400_0000 | tag).to_be_bytes()
    };

    // Only e1.2 (from Harness::new): shelf 7 and slot 5 are not served here.
    let f = h.request(cmac, 7, 0xFF, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 0xFFFF, 5, next_tag());
    h.expect_pass_other_target(&f);
    h.round_trip(next_tag(), SHELF, 0xFF);
    h.round_trip(next_tag(), 0xFFFF, SLOT);
    h.round_trip(next_tag(), 0xFFFF, 0xFF);

    // e7.1, e7.5, e3.1 join (e1.2 stays); the masks do not matter for wildcards.
    let all = [
        export(SHELF, SLOT, &[]),
        export(7, 1, &[OTHER_MAC]),
        export(7, 5, &[]),
        export(3, 1, &[]),
    ];
    h.prog_mut().set_exports(&all).expect("set_exports");
    for (major, minor) in [(7, 0xFF), (0xFFFF, 5), (0xFFFF, 1), (3, 0xFF)] {
        let f = h.request(cmac, major, minor, next_tag());
        h.expect_redirect(&f);
    }
    let f = h.request(cmac, 7, 1, next_tag());
    h.expect_drop_acl(&f);
    let f = h.request(cmac, 9, 0xFF, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 0xFFFF, 4, next_tag());
    h.expect_pass_other_target(&f);

    // Removing e7.1: its frames pass; shelf 7 (e7.5) and slot 1 (e3.1) are still served.
    h.prog_mut()
        .set_exports(&[all[0].clone(), all[2].clone(), all[3].clone()])
        .expect("remove e7.1");
    let f = h.request(OTHER_MAC, 7, 1, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 7, 0xFF, next_tag());
    h.expect_redirect(&f);
    let f = h.request(cmac, 0xFFFF, 1, next_tag());
    h.expect_redirect(&f);

    // Removing e7.5, the last of shelf 7 and of slot 5: both markers go.
    h.prog_mut()
        .set_exports(&[all[0].clone(), all[3].clone()])
        .expect("remove e7.5");
    let f = h.request(cmac, 7, 5, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 7, 0xFF, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 0xFFFF, 5, next_tag());
    h.expect_pass_other_target(&f);
    let f = h.request(cmac, 0xFFFF, 1, next_tag());
    h.expect_redirect(&f);
    h.round_trip(next_tag(), SHELF, SLOT);

    // Nothing served: not even the full wildcard is redirected.
    h.prog_mut().set_exports(&[]).expect("remove all");
    assert!(h.prog().exports().is_empty());
    for (major, minor) in [(0xFFFF, 0xFF), (SHELF, SLOT), (SHELF, 0xFF), (0xFFFF, 1)] {
        let f = h.request(cmac, major, minor, next_tag());
        h.expect_pass_other_target(&f);
    }
    // serve_target brings e1.2 and its wildcards back.
    h.prog_mut().serve_target(SHELF, SLOT).expect("serve");
    h.round_trip(next_tag(), 0xFFFF, 0xFF);
    h.detach_and_check();
}

#[test]
fn map_capacity_and_limits() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("capacity", LabOptions::with_rx_queues(1)).expect("lab");
    let client = PacketSocket::open_in(lab.client_ns(), lab.client_if()).expect("AF_PACKET");
    let _guard = lab.enter_target_thread().expect("enter target ns");
    let mut prog = XdpProgram::attach(lab.target_if(), XdpAttachMode::Generic).expect("attach");

    // The worst case for `targets`: MAX_EXPORTS exports on as many shelves, every slot value
    // used (MAX_EXPORTS shelf markers, 255 slot markers, the full wildcard), and `acl` full.
    let per_export = MAX_ACL_ENTRIES / MAX_EXPORTS;
    let all_macs = macs(MAX_ACL_ENTRIES);
    let exports: Vec<XdpExport> = (0..MAX_EXPORTS)
        .map(|i| XdpExport {
            major: i as u16,
            minor: (i % 255) as u8,
            mask: all_macs[i * per_export..(i + 1) * per_export].to_vec(),
        })
        .collect();
    prog.set_exports(&exports).expect("a full table fits");
    assert_eq!(prog.exports(), exports);

    // One more export, or one more MAC anywhere, is refused with the limit named.
    let mut more = exports.clone();
    more.push(export(0xFFFE, 0, &[]));
    match prog.set_exports(&more) {
        Err(e @ XdpError::TooManyExports { .. }) => {
            assert!(e.to_string().contains(&MAX_EXPORTS.to_string()), "{e}");
        }
        other => panic!("expected TooManyExports, got {other:?}"),
    }
    match prog.set_export_mask(5, 5, &macs(per_export + 1)) {
        Err(e @ XdpError::AclTooLarge { .. }) => {
            eprintln!("{e}");
            assert!(e.to_string().contains(&MAX_ACL_ENTRIES.to_string()), "{e}");
        }
        other => panic!("expected AclTooLarge, got {other:?}"),
    }
    let half = MAX_ACL_ENTRIES / 2 + 1;
    assert!(matches!(
        prog.set_exports(&[export(1, 1, &macs(half)), export(1, 2, &macs(half))]),
        Err(XdpError::AclTooLarge { count }) if count == 2 * half
    ));

    // Still the full table: e5.5's list admits its MACs and no others (no socket: the admitted
    // frame passes as pass_no_socket).
    let tmac = lab.target_mac();
    client.send(&aoe_frame(
        tmac,
        exports[5].mask[0],
        0x10,
        5,
        5,
        [0, 0, 5, 1],
    ));
    wait_for(&prog, "pass_no_socket", |c| c.pass_no_socket == 1);
    client.send(&aoe_frame(
        tmac,
        exports[6].mask[0],
        0x10,
        5,
        5,
        [0, 0, 5, 2],
    ));
    wait_for(&prog, "drop_acl", |c| c.drop_acl == 1);
    client.send(&aoe_frame(tmac, OTHER_MAC, 0x10, 0xFFFF, 200, [0, 0, 5, 3]));
    wait_for(&prog, "slot marker", |c| c.pass_no_socket == 2);

    // Shrinking to nothing and growing back in one call each.
    prog.set_exports(&[]).expect("empty");
    client.send(&aoe_frame(
        tmac,
        OTHER_MAC,
        0x10,
        0xFFFF,
        0xFF,
        [0, 0, 5, 4],
    ));
    wait_for(&prog, "nothing served", |c| c.pass_other_target == 1);
    let swapped: Vec<XdpExport> = exports
        .iter()
        .rev()
        .map(|e| XdpExport {
            mask: e.mask.iter().rev().copied().collect(),
            ..e.clone()
        })
        .collect();
    prog.set_exports(&swapped).expect("full again");
    assert_eq!(prog.exports(), exports, "sorted, masks sorted");
}

#[test]
fn already_attached_and_errors() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("busy", LabOptions::with_rx_queues(1)).expect("lab");
    let _guard = lab.enter_target_thread().expect("enter target ns");
    let ifname = lab.target_if();

    assert!(matches!(
        XdpProgram::attach("xbl-nonexist0", XdpAttachMode::Generic),
        Err(XdpError::NoSuchInterface { .. })
    ));
    // The client's interface exists, but not in this thread's namespace.
    assert!(matches!(
        XdpProgram::attach(lab.client_if(), XdpAttachMode::Generic),
        Err(XdpError::NoSuchInterface { .. })
    ));

    // Our own BPF link holds the interface.
    let first = XdpProgram::attach(ifname, XdpAttachMode::Generic).expect("first attach");
    for mode in [
        XdpAttachMode::Generic,
        XdpAttachMode::Native,
        XdpAttachMode::Auto,
    ] {
        match XdpProgram::attach(ifname, mode) {
            Err(e @ XdpError::AlreadyAttached { .. }) => {
                eprintln!("link held, second attach ({mode:?}): {e}");
                assert!(e
                    .to_string()
                    .contains(&format!("ip link set dev {ifname} xdp off")));
            }
            other => panic!("{mode:?}: expected AlreadyAttached, got {other:?}"),
        }
    }
    drop(first);
    assert!(!xdp_attached(&lab));

    // A program attached the legacy way (netlink, as `ip link set ... xdpgeneric obj` does).
    let obj = concat!(env!("OUT_DIR"), "/xblade.bpf.o");
    let status = lab
        .command_in_target("ip")
        .args([
            "link",
            "set",
            "dev",
            ifname,
            "xdpgeneric",
            "obj",
            obj,
            "sec",
            "xdp.frags",
        ])
        .status()
        .expect("ip link set xdpgeneric");
    assert!(status.success());
    assert!(xdp_attached(&lab));
    for mode in [
        XdpAttachMode::Generic,
        XdpAttachMode::Native,
        XdpAttachMode::Auto,
    ] {
        match XdpProgram::attach(ifname, mode) {
            Err(e @ XdpError::AlreadyAttached { .. }) => {
                eprintln!("netlink program present, attach ({mode:?}): {e}");
            }
            other => panic!("{mode:?}: expected AlreadyAttached, got {other:?}"),
        }
    }
    let status = lab
        .command_in_target("ip")
        .args(["link", "set", "dev", ifname, "xdpgeneric", "off"])
        .status()
        .expect("ip link set xdpgeneric off");
    assert!(status.success());

    // Two sockets on one queue.
    let ifindex = xsk::ifindex(ifname).expect("ifindex");
    let umem = UmemRegion::new(&UMEM, 0).expect("UMEM");
    let _sock = XskSocket::new(ifindex, 0, &umem, &UMEM).expect("bind");
    let umem2 = UmemRegion::new(&UMEM, 0).expect("UMEM");
    match XskSocket::new(ifindex, 0, &umem2, &UMEM) {
        Err(e @ xsk::XskError::QueueBusy { .. }) => eprintln!("second socket: {e}"),
        other => panic!("expected QueueBusy, got {other:?}"),
    }
    match XskSocket::new(ifindex, 5, &umem2, &UMEM) {
        Err(e @ xsk::XskError::NoSuchQueue { .. }) => eprintln!("queue 5: {e}"),
        other => panic!("expected NoSuchQueue, got {other:?}"),
    }
}

#[test]
fn auto_mode_and_large_mtu() {
    if !xblade_lab::require_root() {
        return;
    }
    let lab = Lab::new("automtu", LabOptions::with_rx_queues(1)).expect("lab");
    let _guard = lab.enter_target_thread().expect("enter target ns");
    let prog = XdpProgram::attach(lab.target_if(), XdpAttachMode::Auto).expect("auto");
    assert_eq!(
        prog.mode(),
        AttachedMode::Native,
        "veth supports native XDP at MTU 1500"
    );
    drop(prog);

    // veth refuses a program without frags support in native mode when the *peer's* MTU
    // exceeds what one page holds (~3.5 KB): veth_xdp_set() returns ERANGE. Ours is
    // SEC("xdp.frags"), so native XDP works at jumbo MTU.
    for (ns, ifname) in [
        (lab.target_ns(), lab.target_if()),
        (lab.client_ns(), lab.client_if()),
    ] {
        let ok = Command::new("ip")
            .args(["-n", ns, "link", "set", "dev", ifname, "mtu", "9000"])
            .status()
            .expect("ip")
            .success();
        assert!(ok);
    }
    let prog =
        XdpProgram::attach(lab.target_if(), XdpAttachMode::Native).expect("native at MTU 9000");
    assert_eq!(prog.mode(), AttachedMode::Native);
    drop(prog);
    let prog = XdpProgram::attach(lab.target_if(), XdpAttachMode::Auto).expect("auto");
    assert_eq!(
        prog.mode(),
        AttachedMode::Native,
        "auto takes native at MTU 9000 too"
    );
}
