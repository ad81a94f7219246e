//! A zero-work AoE r11 responder: answers every ATA read and write at once, from RAM or with
//! zeros, so the load generator can be measured against a peer that costs (almost) nothing.
//! It is not a storage target: without [`ResponderConfig::ram`] written data is discarded.
//!
//! The reply logic ([`Replier`]: a reply built from one request frame) is pure and
//! allocation-free; [`Server`] is the I/O loop around it (a TPACKET_V2 receive ring in, a
//! PACKET_TX_RING out, replies built into preallocated buffers, nothing allocated per
//! frame). [`serve`] opens a server and runs it until a stop flag is set. Used by the
//! `xblade-responder` binary and by the crate's integration tests.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aoe_proto::ata::{self, opcode, AtaHeader, IdentifyStrings};
use aoe_proto::config::ConfigHeader;
use aoe_proto::{pad_reply, Command as AoeCommand, Header, Mac, SECTOR_SIZE};

use crate::packet::{self, Link, RxConfig, RxRing, RxVersion, Tx, TxMethod};

/// Largest image kept in RAM with [`ResponderConfig::ram`] (4 GiB).
pub const MAX_RAM_BYTES: u64 = 4 << 30;

/// Strings of the IDENTIFY DEVICE reply.
pub const IDENTIFY: IdentifyStrings<'static> = IdentifyStrings {
    serial: "BENCH-RESPONDER",
    firmware: "1",
    model: "xblade-bench test responder",
};

/// Frames taken from the receive ring (and replies sent) per turn of the loop.
const BATCH: usize = 256;
/// Receive ring size, in frames.
const RX_FRAMES: u32 = 4096;
/// Bytes of an AoE ATA frame before its sector data (Ethernet, AoE and ATA headers).
const ATA_HEADER_BYTES: usize = 36;
/// Ethernet header and one VLAN tag, beyond the MTU.
const L2_OVERHEAD: usize = 18;
/// Longest sleep in `ppoll` before the stop flag is looked at again.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// How the responder behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponderConfig {
    pub shelf: u16,
    pub slot: u8,
    pub capacity_sectors: u64,
    /// Keep written data and return it (else reads return zeros and writes are discarded).
    pub ram: bool,
    /// With `ram`: touch every page of the image at start, so that reads copy from memory
    /// of their own (as a target serving an image does) rather than from the one shared
    /// zero page the kernel maps for memory never written.
    pub populate_ram: bool,
    /// Flip one data byte in every Nth read reply (0: never).
    pub corrupt_read_every: u64,
    /// Ignore every Nth ATA request (0: never).
    pub drop_every: u64,
    /// Buffer count advertised in the Query Config reply.
    pub buffer_count: u16,
    /// Keep polling the receive ring this long after the last request before sleeping, so
    /// a closed-loop initiator's next request does not pay a wake-up (xblade's default).
    pub spin: Duration,
}

impl ResponderConfig {
    /// Zeros for reads, writes discarded, nothing corrupted or dropped, 256 buffers.
    pub fn new(shelf: u16, slot: u8, capacity_sectors: u64) -> ResponderConfig {
        ResponderConfig {
            shelf,
            slot,
            capacity_sectors,
            ram: false,
            populate_ram: false,
            corrupt_read_every: 0,
            drop_every: 0,
            buffer_count: 256,
            spin: Duration::ZERO,
        }
    }

    /// Bytes of RAM the image takes (0 without [`ResponderConfig::ram`]), or an
    /// `InvalidInput` error when that is more than [`MAX_RAM_BYTES`].
    pub fn ram_bytes(&self) -> io::Result<usize> {
        if !self.ram {
            return Ok(0);
        }
        self.capacity_sectors
            .checked_mul(SECTOR_SIZE as u64)
            .filter(|&b| b <= MAX_RAM_BYTES)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "an image of {} sectors is too large to keep in RAM: at most {} \
                         sectors ({} GiB)",
                        self.capacity_sectors,
                        MAX_RAM_BYTES / SECTOR_SIZE as u64,
                        MAX_RAM_BYTES >> 30
                    ),
                )
            })
    }
}

/// What the responder saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// Read requests answered with data.
    pub reads: u64,
    /// Write requests acknowledged.
    pub writes: u64,
    /// ATA requests ignored on purpose ([`ResponderConfig::drop_every`]).
    pub dropped: u64,
    /// Read replies corrupted on purpose ([`ResponderConfig::corrupt_read_every`]).
    pub corrupted: u64,
}

/// Sectors one ATA frame holds at `mtu` (advertised in the Query Config reply).
pub fn sectors_per_frame(mtu: u32) -> u8 {
    let bytes = (mtu as usize).saturating_sub(ATA_HEADER_BYTES);
    u8::try_from(bytes / SECTOR_SIZE).unwrap_or(u8::MAX)
}

/// The pure half: builds the reply to one request frame. Holds the RAM image (if any) and
/// the counters; allocates only in [`Replier::new`].
pub struct Replier {
    cfg: ResponderConfig,
    own: Mac,
    spf: u8,
    identify: [u8; SECTOR_SIZE],
    ram: Vec<u8>,
    stats: ResponderStats,
    /// ATA requests seen (for [`ResponderConfig::drop_every`]).
    seen: u64,
}

impl Replier {
    /// A replier answering from `own` MAC and advertising `spf` sectors per frame. Fails
    /// (without aborting) when the RAM image is too large or cannot be allocated.
    pub fn new(cfg: ResponderConfig, own: Mac, spf: u8) -> io::Result<Replier> {
        let bytes = cfg.ram_bytes()?;
        let mut ram = zeroed(bytes)?;
        if cfg.populate_ram {
            for page in ram.chunks_mut(4096) {
                // SAFETY: a valid, aligned pointer to the page's first byte. Volatile, so
                // the store is not dropped as redundant on memory known to be zero: the
                // write fault is the point (the page gets a frame of its own).
                unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
            }
        }
        Ok(Replier {
            cfg,
            own,
            spf,
            identify: ata::identify_data(cfg.capacity_sectors, IDENTIFY),
            ram,
            stats: ResponderStats::default(),
            seen: 0,
        })
    }

    pub fn config(&self) -> &ResponderConfig {
        &self.cfg
    }

    pub fn sectors_per_frame(&self) -> u8 {
        self.spf
    }

    pub fn stats(&self) -> ResponderStats {
        self.stats
    }

    /// Builds the reply to `frame` in `out` and returns its length; `None` when there is
    /// none to send (not a request for this shelf.slot, not Query Config or ATA, malformed,
    /// dropped on purpose, or a reply that would not fit in `out`).
    pub fn answer(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let cfg = self.cfg;
        let h = Header::parse(frame).ok()?;
        if h.is_response() || !h.addresses(cfg.shelf, cfg.slot) {
            return None;
        }
        let body = h.reply(self.own, cfg.shelf, cfg.slot).encode(out).ok()?;
        if h.command == AoeCommand::QueryConfig as u8 {
            ConfigHeader {
                buffer_count: cfg.buffer_count,
                firmware_version: 1,
                sector_count: self.spf,
                aoe_version: 1,
                ccmd: 0,
                string_len: 0,
            }
            .encode(out, body)
            .ok()?;
            return pad_reply(out, body + 8);
        }
        if h.command != AoeCommand::Ata as u8 {
            return None;
        }
        let req = AtaHeader::parse(frame, h.body_offset()).ok()?;
        self.seen += 1;
        if cfg.drop_every > 0 && self.seen.is_multiple_of(cfg.drop_every) {
            self.stats.dropped += 1;
            return None;
        }
        req.encode(out, body).ok()?;
        let data_in = ata::data_offset(h.body_offset());
        let data_out = ata::data_offset(body);
        let n = usize::from(req.sector_count);
        let lba = req.lba();
        let in_range = lba
            .checked_add(n as u64)
            .is_some_and(|end| end <= cfg.capacity_sectors);
        let byte = usize::try_from(lba)
            .unwrap_or(usize::MAX)
            .saturating_mul(SECTOR_SIZE);
        let bytes = n * SECTOR_SIZE;
        let (status, error, len) = match req.cmd_status {
            opcode::IDENTIFY_DEVICE => {
                out.get_mut(data_out..data_out + SECTOR_SIZE)?
                    .copy_from_slice(&self.identify);
                (0x40, 0, data_out + SECTOR_SIZE)
            }
            opcode::READ_SECTORS_EXT | opcode::READ_SECTORS if in_range => {
                self.stats.reads += 1;
                let dst = out.get_mut(data_out..data_out + bytes)?;
                match byte
                    .checked_add(bytes)
                    .and_then(|end| self.ram.get(byte..end))
                {
                    Some(src) => dst.copy_from_slice(src),
                    None => dst.fill(0),
                }
                if cfg.corrupt_read_every > 0
                    && self.stats.reads.is_multiple_of(cfg.corrupt_read_every)
                    && n > 0
                {
                    dst[100] ^= 0x01;
                    self.stats.corrupted += 1;
                }
                (0x40, 0, data_out + bytes)
            }
            opcode::WRITE_SECTORS_EXT | opcode::WRITE_SECTORS if in_range => {
                self.stats.writes += 1;
                let src = frame.get(data_in..data_in + bytes)?;
                if let Some(dst) = byte
                    .checked_add(bytes)
                    .and_then(|end| self.ram.get_mut(byte..end))
                {
                    dst.copy_from_slice(src);
                }
                (0x40, 0, data_out)
            }
            opcode::READ_SECTORS_EXT
            | opcode::READ_SECTORS
            | opcode::WRITE_SECTORS_EXT
            | opcode::WRITE_SECTORS => (0x41, ata::error::IDNF, data_out),
            opcode::FLUSH_CACHE | opcode::FLUSH_CACHE_EXT => (0x40, 0, data_out),
            _ => (0x41, ata::error::ABRT, data_out),
        };
        AtaHeader::encode_reply(out, body, status, error, 0).ok()?;
        pad_reply(out, len)
    }
}

impl fmt::Debug for Replier {
    /// Everything but the contents of the RAM image.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replier")
            .field("cfg", &self.cfg)
            .field("own", &self.own)
            .field("spf", &self.spf)
            .field("ram_bytes", &self.ram.len())
            .field("stats", &self.stats)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

/// `bytes` zeroed bytes, or an `OutOfMemory` error where `vec![0; bytes]` would abort.
fn zeroed(bytes: usize) -> io::Result<Vec<u8>> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    // Probe with a fallible allocation first: `vec![0; n]` aborts the process when the
    // allocator refuses, but (as calloc) leaves the pages untouched until used, which
    // `try_reserve` followed by `resize` would not.
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate {} MiB for the RAM image", bytes >> 20),
        )
    })?;
    drop(probe);
    Ok(vec![0u8; bytes])
}

/// The I/O half: one interface, a receive ring, a transmit ring, and preallocated reply
/// buffers. Opened in the calling thread's network namespace.
pub struct Server {
    link: Link,
    rx: RxRing,
    tx: Tx,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    replier: Replier,
    spin: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("link", &self.link)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("replier", &self.replier)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the sockets on `ifname` and allocates everything the loop needs. Once this
    /// returns, requests are received (and answered as soon as [`Server::run`] runs).
    pub fn open(ifname: &str, cfg: ResponderConfig) -> io::Result<Server> {
        // Checked before any socket is opened, so a bad size is reported as such.
        cfg.ram_bytes()?;
        let link = packet::link_info(ifname).map_err(|e| context(e, "interface", ifname))?;
        let rx = RxRing::open(
            &link,
            RxConfig::for_mtu(RxVersion::V2, link.mtu, RX_FRAMES, 256, 0),
        )
        .map_err(|e| context(e, "opening the receive ring on", ifname))?;
        let frame_cap = link.mtu as usize + L2_OVERHEAD;
        let tx = Tx::open(&link, TxMethod::Ring, frame_cap, BATCH)
            .map_err(|e| context(e, "opening the transmit ring on", ifname))?;
        let replier = Replier::new(cfg, link.mac, sectors_per_frame(link.mtu))?;
        Ok(Server {
            link,
            rx,
            tx,
            bufs: vec![vec![0u8; frame_cap]; BATCH],
            lens: vec![0; BATCH],
            replier,
            spin: cfg.spin,
        })
    }

    /// The interface served (index, MAC, MTU).
    pub fn link(&self) -> Link {
        self.link
    }

    /// Sectors per frame advertised (from the MTU).
    pub fn sectors_per_frame(&self) -> u8 {
        self.replier.sectors_per_frame()
    }

    /// Counters so far.
    pub fn stats(&self) -> ResponderStats {
        self.replier.stats()
    }

    /// Answers requests until `stop` is set (looked at least every 20 ms); returns the
    /// counters, or the first socket error (e.g. the interface went away).
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<ResponderStats> {
        let Server {
            rx,
            tx,
            bufs,
            lens,
            replier,
            ..
        } = self;
        let spin = self.spin;
        let mut last_request = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut n = 0;
            rx.drain(BATCH, |frame| {
                let (Some(out), Some(len)) = (bufs.get_mut(n), lens.get_mut(n)) else {
                    return;
                };
                if let Some(l) = replier.answer(frame, out) {
                    *len = l;
                    n += 1;
                }
            });
            if n > 0 {
                let frames = bufs.iter().zip(lens.iter()).take(n).map(|(b, &l)| &b[..l]);
                tx.send(frames)?;
                last_request = Instant::now();
            } else if last_request.elapsed() < spin {
                std::hint::spin_loop();
            } else {
                rx.wait(POLL_TIMEOUT)?;
            }
        }
        Ok(replier.stats())
    }
}

/// Opens a [`Server`] on `ifname` (in the calling thread's network namespace) and answers
/// requests until `stop` is set.
pub fn serve(ifname: &str, cfg: ResponderConfig, stop: &AtomicBool) -> io::Result<ResponderStats> {
    Server::open(ifname, cfg)?.run(stop)
}

fn context(e: io::Error, what: &str, ifname: &str) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (needs root: raw AF_PACKET sockets)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("{what} {ifname}: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aoe_initiator::wire::{self, ConfigVerdict, Expect, Peer};
    use aoe_initiator::TargetAddress;
    use aoe_proto::ata::{AFLAG_EXTENDED, AFLAG_WRITE};

    const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const CLIENT: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const SPF: u8 = 2;

    fn peer() -> Peer {
        Peer {
            own_mac: CLIENT,
            target_mac: OWN,
            shelf: 3,
            slot: 1,
        }
    }

    fn replier(tweak: impl FnOnce(&mut ResponderConfig)) -> Replier {
        let mut cfg = ResponderConfig::new(3, 1, 64);
        tweak(&mut cfg);
        Replier::new(cfg, OWN, SPF).unwrap()
    }

    fn request(cmd: u8, lba: u64, sectors: u8, data: &[u8]) -> Vec<u8> {
        let write = cmd == opcode::WRITE_SECTORS_EXT;
        let ata = AtaHeader {
            aflags: AFLAG_EXTENDED | if write { AFLAG_WRITE } else { 0 },
            err_feature: 0,
            sector_count: sectors,
            cmd_status: cmd,
            lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        };
        let mut frame = vec![0u8; 1514];
        let len = wire::encode_ata_request(&mut frame, &peer(), 0x8000_0007, &ata, data).unwrap();
        frame.truncate(len);
        frame
    }

    /// Sends `req` through `r` and validates the reply as the initiator does.
    fn exchange(r: &mut Replier, req: &[u8], expect: Expect) -> Result<Vec<u8>, String> {
        let mut out = [0u8; 1518];
        let len = r.answer(req, &mut out).ok_or("no reply")?;
        let frame = &out[..len];
        let header = Header::parse(frame).unwrap();
        assert!(header.is_response());
        assert_eq!(header.src, OWN);
        assert_eq!(header.dst, CLIENT);
        assert_eq!(header.tag, 0x8000_0007);
        wire::validate_ata_reply(frame, &header, expect)
            .map(|reply| frame[reply.data].to_vec())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn query_config_advertises_buffers_and_sectors() {
        let mut r = replier(|c| c.buffer_count = 99);
        let mut query = [0u8; 64];
        let address = TargetAddress { shelf: 3, slot: 1 };
        let len = wire::encode_config_query(&mut query, CLIENT, address, 0x8000_0001).unwrap();
        let mut out = [0u8; 1518];
        let n = r.answer(&query[..len], &mut out).unwrap();
        match wire::parse_config_reply(&out[..n], address, |t| t == 0x8000_0001) {
            ConfigVerdict::Target(info) => {
                assert_eq!(info.mac, OWN);
                assert_eq!(info.buffer_count, 99);
                assert_eq!(info.sectors_per_frame, SPF);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identify_reports_the_capacity_and_strings() {
        let mut r = replier(|_| {});
        let req = request(opcode::IDENTIFY_DEVICE, 0, 1, &[]);
        let data = exchange(&mut r, &req, Expect::Data { sectors: 1 }).unwrap();
        let data: &[u8; SECTOR_SIZE] = data.as_slice().try_into().unwrap();
        assert_eq!(ata::identify_capacity_sectors(data), 64);
        assert!(ata::identify_string(data, 27..47).starts_with("xblade-bench test responder"));
    }

    #[test]
    fn null_mode_reads_zeros_and_discards_writes() {
        let mut r = replier(|_| {});
        let data = vec![0xabu8; 2 * SECTOR_SIZE];
        let w = request(opcode::WRITE_SECTORS_EXT, 4, 2, &data);
        exchange(&mut r, &w, Expect::NoData).unwrap();
        let rd = request(opcode::READ_SECTORS_EXT, 4, 2, &[]);
        let back = exchange(&mut r, &rd, Expect::Data { sectors: 2 }).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        assert_eq!(
            r.stats(),
            ResponderStats {
                reads: 1,
                writes: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn ram_mode_returns_what_was_written() {
        let mut r = replier(|c| c.ram = true);
        let data: Vec<u8> = (0..2 * SECTOR_SIZE).map(|i| i as u8).collect();
        let w = request(opcode::WRITE_SECTORS_EXT, 62, 2, &data);
        exchange(&mut r, &w, Expect::NoData).unwrap();
        let rd = request(opcode::READ_SECTORS_EXT, 62, 2, &[]);
        assert_eq!(
            exchange(&mut r, &rd, Expect::Data { sectors: 2 }).unwrap(),
            data
        );
    }

    #[test]
    fn beyond_the_capacity_is_idnf() {
        let mut r = replier(|c| c.ram = true);
        let rd = request(opcode::READ_SECTORS_EXT, 63, 2, &[]);
        let err = exchange(&mut r, &rd, Expect::Data { sectors: 2 }).unwrap_err();
        assert!(
            err.contains("0x10") || err.to_lowercase().contains("idnf"),
            "{err}"
        );
        assert_eq!(r.stats().reads, 0);
    }

    #[test]
    fn other_addresses_and_responses_get_no_reply() {
        let mut r = replier(|c| c.slot = 2);
        let rd = request(opcode::READ_SECTORS_EXT, 0, 1, &[]);
        let mut out = [0u8; 1518];
        assert_eq!(r.answer(&rd, &mut out), None);
        let mut r = replier(|_| {});
        let mut reply = [0u8; 1518];
        let n = r.answer(&rd, &mut reply).unwrap();
        assert_eq!(r.answer(&reply[..n], &mut out), None);
        assert_eq!(r.answer(&rd[..20], &mut out), None);
    }

    #[test]
    fn drops_and_corrupts_on_request() {
        let mut r = replier(|c| {
            c.drop_every = 3;
            c.corrupt_read_every = 2;
        });
        let rd = request(opcode::READ_SECTORS_EXT, 0, 1, &[]);
        let mut out = [0u8; 1518];
        let replies: Vec<bool> = (0..6).map(|_| r.answer(&rd, &mut out).is_some()).collect();
        assert_eq!(replies, [true, true, false, true, true, false]);
        let s = r.stats();
        assert_eq!((s.reads, s.dropped, s.corrupted), (4, 2, 2));
    }

    #[test]
    fn ram_size_is_checked_not_aborted() {
        let mut cfg = ResponderConfig::new(1, 0, MAX_RAM_BYTES / SECTOR_SIZE as u64 + 1);
        assert_eq!(cfg.ram_bytes().unwrap(), 0, "no RAM without --ram");
        cfg.ram = true;
        let err = Replier::new(cfg, OWN, SPF).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        cfg.capacity_sectors = u64::MAX;
        assert!(cfg.ram_bytes().is_err());
        cfg.capacity_sectors = 8;
        assert_eq!(cfg.ram_bytes().unwrap(), 8 * SECTOR_SIZE);
    }

    #[test]
    fn sectors_per_frame_follows_the_mtu() {
        assert_eq!(sectors_per_frame(1500), 2);
        assert_eq!(sectors_per_frame(9000), 17);
        assert_eq!(sectors_per_frame(0), 0);
        assert_eq!(sectors_per_frame(u32::MAX), u8::MAX);
    }
}
