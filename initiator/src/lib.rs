//! A small ATA over Ethernet (AoE r11) initiator over an AF_PACKET socket: discovery,
//! IDENTIFY, pipelined reads and writes, FLUSH CACHE, and raw frames for tests of odd
//! requests. It is the project's own client for testing and benchmarking AoE targets.
//!
//! * Every tag has bit 31 set (the Linux aoe driver ignores such replies); the low bits
//!   name a slot of a preallocated in-flight table and a generation, so a late reply to a
//!   retransmitted request is recognised as stale (see [`tag`]).
//! * Only replies from the discovered target's MAC and shelf.slot, with R set and a tag of a
//!   live request, complete anything; everything else is counted and dropped.
//! * The pipelined API ([`Initiator::submit_read`], [`Initiator::submit_write`],
//!   [`Initiator::poll`]) allocates nothing per frame: request frames live in the slot table
//!   and read data is handed out as a slice of the receive buffer.
//! * Judging a received frame is a pure function ([`wire::classify`]), tested without a
//!   socket.

mod error;
mod slots;
mod socket;
pub mod tag;
pub mod wire;

use std::time::{Duration, Instant};

use aoe_proto::ata::{self, opcode, AtaHeader, AFLAG_EXTENDED, AFLAG_WRITE};
use aoe_proto::{ETH_HEADER_LEN, MAJOR_ANY, MINOR_ANY, SECTOR_SIZE};

pub use aoe_proto::Mac;
pub use error::{describe_ata_error, InitiatorError, Op, RequestError, TargetAddress};
pub use wire::{AtaRegisters, TargetInfo};

use crate::slots::SlotTable;
use crate::socket::PacketSocket;
use crate::wire::{ConfigVerdict, Expect, Peer, Stray, Verdict};

/// Largest LBA + 1 that LBA48 can address.
pub const LBA48_LIMIT: u64 = 1 << 48;
/// Deepest pipeline the tag layout supports.
pub const MAX_QUEUE_DEPTH: usize = tag::MAX_SLOTS;
/// Bytes before the sector data of an untagged ATA frame.
const ATA_FRAME_HEADER_BYTES: usize = 36;
/// Room for one 802.1Q tag on received frames.
const VLAN_ROOM_BYTES: usize = 4;
/// Frames taken from the socket before timers are looked at again, so that a flood of
/// frames cannot starve retransmissions and deadlines.
const RX_BATCH_FRAMES: usize = 1024;
/// LBA register 3 of IDENTIFY DEVICE as the Linux driver sends it (obsolete bits 7 and 5).
const IDENTIFY_LBA3: u8 = 0xA0;

/// How to reach the target and how hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitiatorConfig {
    /// Shelf (major) to talk to; [`MAJOR_ANY`] (0xFFFF) for the first that answers.
    pub shelf: u16,
    /// Slot (minor) to talk to; [`MINOR_ANY`] (0xFF) for the first that answers.
    pub slot: u8,
    /// How long to wait for the reply to one transmission.
    pub timeout_ms: u64,
    /// Retransmissions (each with a new tag) before a request fails with a timeout.
    pub retries: u32,
}

impl Default for InitiatorConfig {
    fn default() -> Self {
        InitiatorConfig {
            shelf: MAJOR_ANY,
            slot: MINOR_ANY,
            timeout_ms: 500,
            retries: 4,
        }
    }
}

/// Counters since [`Initiator::open`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitiatorStats {
    /// Requests submitted (retransmissions not counted), discovery queries included.
    pub requests: u64,
    /// Retransmissions after a timeout.
    pub retransmits: u64,
    /// Requests that completed successfully.
    pub completed_ok: u64,
    /// Requests that failed with an ATA status error.
    pub ata_errors: u64,
    /// Requests that failed with an AoE error (E flag).
    pub aoe_errors: u64,
    /// Requests that failed because no reply came after all retransmissions.
    pub timeouts: u64,
    /// Requests that failed because their reply was malformed (wrong data length, version).
    pub bad_replies: u64,
    /// AoE responses that matched no live request (other source, address, command, tag).
    pub stray_replies: u64,
    /// Of the strays: replies to a transmission that had been superseded or abandoned.
    pub stale_replies: u64,
    /// Frames sent that the kernel dropped for lack of buffers (retransmission covers them).
    pub send_drops: u64,
}

/// One finished request of the pipelined API.
#[derive(Debug)]
pub struct Completion<'a> {
    /// The caller's cookie from `submit_*`.
    pub user: u64,
    pub lba: u64,
    pub sectors: u8,
    pub result: Result<(), RequestError>,
    /// Read data (exactly `sectors` x 512 bytes) on a successful read; empty otherwise.
    /// Borrowed from the receive buffer: copy it out before the callback returns.
    pub data: &'a [u8],
    /// From the first transmission to the reply (or to giving up).
    pub latency_ns: u64,
    /// The reply's ATA registers, when a valid reply arrived.
    pub registers: Option<AtaRegisters>,
    /// Transmissions it took (1 when no retransmission was needed).
    pub attempts: u32,
}

/// An AoE initiator bound to one interface (see the crate documentation).
#[derive(Debug)]
pub struct Initiator {
    sock: PacketSocket,
    ifname: String,
    config: InitiatorConfig,
    own_mac: Mac,
    /// Sectors per frame the interface MTU allows ((MTU - 36) / 512, at most 255).
    mtu_sectors: u8,
    target: Option<TargetInfo>,
    peer: Option<Peer>,
    /// Sectors per ATA frame actually used: min(target's, MTU's).
    sectors_per_frame: u8,
    /// Depth set by [`Initiator::set_queue_depth`], else the target's buffer count.
    requested_depth: Option<usize>,
    table: SlotTable,
    /// One received frame; reused for every receive.
    rx: Box<[u8]>,
    /// Sequence number of discovery queries (their tags are `bit 31 | sequence`).
    config_query_seq: u32,
    stats: InitiatorStats,
}

impl Initiator {
    /// Opens an AF_PACKET socket on `ifname` in the calling thread's network namespace.
    /// Needs root (CAP_NET_RAW). Sends nothing: [`Initiator::discover`] does, and every
    /// request calls it first when no target is known yet.
    pub fn open(ifname: &str, config: InitiatorConfig) -> Result<Self, InitiatorError> {
        let (sock, link) = PacketSocket::open(ifname)?;
        let mtu_bytes = link.mtu_bytes as usize;
        let mtu_sectors = mtu_bytes.saturating_sub(ATA_FRAME_HEADER_BYTES) / SECTOR_SIZE;
        if mtu_sectors == 0 {
            return Err(InitiatorError::MtuTooSmall {
                ifname: ifname.to_owned(),
                mtu_bytes: link.mtu_bytes,
            });
        }
        let rx_bytes = ETH_HEADER_LEN + VLAN_ROOM_BYTES + mtu_bytes;
        Ok(Initiator {
            sock,
            ifname: ifname.to_owned(),
            config,
            own_mac: link.mac,
            mtu_sectors: u8::try_from(mtu_sectors).unwrap_or(u8::MAX),
            target: None,
            peer: None,
            sectors_per_frame: 0,
            requested_depth: None,
            table: SlotTable::new(0, 0),
            rx: vec![0u8; rx_bytes].into_boxed_slice(),
            config_query_seq: 0,
            stats: InitiatorStats::default(),
        })
    }

    pub fn own_mac(&self) -> Mac {
        self.own_mac
    }

    pub fn config(&self) -> InitiatorConfig {
        self.config
    }

    /// The target found by the last [`Initiator::discover`], if any.
    pub fn target(&self) -> Option<&TargetInfo> {
        self.target.as_ref()
    }

    /// Sectors per ATA frame in use (0 before discovery).
    pub fn sectors_per_frame(&self) -> u8 {
        self.sectors_per_frame
    }

    /// Requests the pipelined API keeps in flight at most (0 before discovery).
    pub fn queue_depth(&self) -> usize {
        self.table.depth()
    }

    /// Sets the pipeline depth (1..=[`MAX_QUEUE_DEPTH`]) instead of the target's buffer
    /// count. A depth above the buffer count makes the target drop requests (they are then
    /// retransmitted). Only while nothing is in flight.
    pub fn set_queue_depth(&mut self, depth: usize) -> Result<(), InitiatorError> {
        if !(1..=MAX_QUEUE_DEPTH).contains(&depth) {
            return Err(InitiatorError::BadQueueDepth {
                requested: depth,
                max: MAX_QUEUE_DEPTH,
            });
        }
        self.ensure_idle()?;
        self.requested_depth = Some(depth);
        if self.peer.is_some() {
            self.table = SlotTable::new(depth, self.frame_capacity_bytes());
        }
        Ok(())
    }

    pub fn stats(&self) -> InitiatorStats {
        self.stats
    }

    /// Broadcasts a Query Config (to the configured shelf.slot, which may be wildcards),
    /// retransmitting with a new tag every `timeout_ms` up to `retries` times, and adopts
    /// the first target that answers: its MAC and address become the destination of every
    /// later request, its sector count caps the frame size and its buffer count the queue
    /// depth.
    pub fn discover(&mut self) -> Result<TargetInfo, InitiatorError> {
        self.discover_peer().map(|(info, _)| info)
    }

    fn discover_peer(&mut self) -> Result<(TargetInfo, Peer), InitiatorError> {
        self.ensure_idle()?;
        let want = TargetAddress {
            shelf: self.config.shelf,
            slot: self.config.slot,
        };
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let first_seq = self.config_query_seq;
        let attempts = self.config.retries.saturating_add(1);
        for _ in 0..attempts {
            let tag = tag::USER_TAG_BIT | (self.config_query_seq & !tag::USER_TAG_BIT);
            self.config_query_seq = self.config_query_seq.wrapping_add(1);
            let sent = self.config_query_seq.wrapping_sub(first_seq) & !tag::USER_TAG_BIT;
            // Any reply to any of our queries so far will do (a slow target answers late).
            let ours = |t: u32| {
                t & tag::USER_TAG_BIT != 0
                    && (t & !tag::USER_TAG_BIT).wrapping_sub(first_seq) & !tag::USER_TAG_BIT < sent
            };
            let mut query = [0u8; 32];
            let len = wire::encode_config_query(&mut query, self.own_mac, want, tag)
                .map_err(|_| self.frame_too_long(32))?;
            if !self.sock.send(&query[..len])? {
                self.stats.send_drops += 1;
            }
            self.stats.requests += 1;
            let deadline = Instant::now().checked_add(timeout);
            loop {
                for _ in 0..RX_BATCH_FRAMES {
                    let Some(len) = self.sock.recv(&mut self.rx)? else {
                        break;
                    };
                    let Some(frame) = self.rx.get(..len) else {
                        continue; // truncated: longer than the MTU, not a config reply
                    };
                    match wire::parse_config_reply(frame, want, ours) {
                        ConfigVerdict::Ignored => {}
                        ConfigVerdict::Refused { mac, code } => {
                            return Err(InitiatorError::DiscoverRefused { mac, code });
                        }
                        ConfigVerdict::Target(info) => {
                            let peer = self.adopt(&info)?;
                            return Ok((info, peer));
                        }
                    }
                }
                if !self.wait_until(deadline)? {
                    break;
                }
            }
        }
        Err(InitiatorError::NoTarget {
            ifname: self.ifname.clone(),
            address: want,
            attempts,
            timeout_ms: self.config.timeout_ms,
        })
    }

    /// Takes `info` as the target: peer addresses, frame size, slot table.
    fn adopt(&mut self, info: &TargetInfo) -> Result<Peer, InitiatorError> {
        let sectors = info.sectors_per_frame.min(self.mtu_sectors);
        if sectors == 0 {
            return Err(InitiatorError::UnusableTarget {
                mac: info.mac,
                sectors_per_frame: info.sectors_per_frame,
            });
        }
        self.sectors_per_frame = sectors;
        let peer = Peer {
            own_mac: self.own_mac,
            target_mac: info.mac,
            shelf: info.shelf,
            slot: info.slot,
        };
        self.peer = Some(peer);
        let depth = self
            .requested_depth
            .unwrap_or_else(|| usize::from(info.buffer_count).clamp(1, MAX_QUEUE_DEPTH));
        self.table = SlotTable::new(depth, self.frame_capacity_bytes());
        self.target = Some(info.clone());
        Ok(peer)
    }

    fn frame_capacity_bytes(&self) -> usize {
        ATA_FRAME_HEADER_BYTES + ata::data_len(self.sectors_per_frame)
    }

    /// IDENTIFY DEVICE: the 512 bytes of identify data.
    pub fn identify(&mut self) -> Result<[u8; SECTOR_SIZE], InitiatorError> {
        let header = AtaHeader {
            aflags: 0,
            err_feature: 0,
            sector_count: 1,
            cmd_status: opcode::IDENTIFY_DEVICE,
            lba_bytes: [0, 0, 0, IDENTIFY_LBA3, 0, 0],
        };
        let mut data = [0u8; SECTOR_SIZE];
        self.run_one(
            Op::Identify,
            header,
            Expect::Data { sectors: 1 },
            Some(&mut data),
        )?;
        Ok(data)
    }

    /// Capacity in sectors, from IDENTIFY (words 100-103 when LBA48, else 60-61).
    pub fn capacity_sectors(&mut self) -> Result<u64, InitiatorError> {
        Ok(ata::identify_capacity_sectors(&self.identify()?))
    }

    /// FLUSH CACHE EXT (0xEA). Strict: a target that does not implement it fails with an
    /// ATA ABRT error (vblade does); see [`Initiator::flush_cache`].
    pub fn flush(&mut self) -> Result<(), InitiatorError> {
        let header = AtaHeader {
            aflags: AFLAG_EXTENDED,
            cmd_status: opcode::FLUSH_CACHE_EXT,
            ..AtaHeader::default()
        };
        self.run_one(Op::Flush, header, Expect::NoData, None)
            .map(|_| ())
    }

    /// FLUSH CACHE (0xE7), the LBA28 form, which every target (vblade too) accepts.
    pub fn flush_cache(&mut self) -> Result<(), InitiatorError> {
        let header = AtaHeader {
            cmd_status: opcode::FLUSH_CACHE,
            lba_bytes: AtaHeader::lba_bytes_for(0, false),
            ..AtaHeader::default()
        };
        self.run_one(Op::Flush, header, Expect::NoData, None)
            .map(|_| ())
    }

    /// CHECK POWER MODE: the reply's sector count register (0xFF: active or idle).
    pub fn check_power_mode(&mut self) -> Result<u8, InitiatorError> {
        let header = AtaHeader {
            cmd_status: opcode::CHECK_POWER_MODE,
            lba_bytes: AtaHeader::lba_bytes_for(0, false),
            ..AtaHeader::default()
        };
        let registers = self.run_one(Op::CheckPowerMode, header, Expect::NoData, None)?;
        Ok(registers.sector_count)
    }

    /// Reads `buf.len() / 512` sectors from `lba`, in frames of at most
    /// [`Initiator::sectors_per_frame`] sectors, up to [`Initiator::queue_depth`] in flight.
    /// On the first failure the rest is abandoned and the error names its LBA.
    pub fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), InitiatorError> {
        let total_sectors = self.check_transfer(lba, buf.len())?;
        let mut out = Transfer::Read(buf);
        self.transfer(lba, total_sectors, &mut out)
    }

    /// Writes `data` (a whole number of sectors) at `lba`; pipelined like [`Initiator::read`].
    pub fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), InitiatorError> {
        let total_sectors = self.check_transfer(lba, data.len())?;
        let mut src = Transfer::Write(data);
        self.transfer(lba, total_sectors, &mut src)
    }

    fn check_transfer(&mut self, lba: u64, len_bytes: usize) -> Result<u64, InitiatorError> {
        if !len_bytes.is_multiple_of(SECTOR_SIZE) {
            return Err(InitiatorError::UnalignedLength { len_bytes });
        }
        let sectors = (len_bytes / SECTOR_SIZE) as u64;
        if lba.checked_add(sectors).is_none_or(|end| end > LBA48_LIMIT) {
            return Err(InitiatorError::LbaOutOfRange { lba, sectors });
        }
        self.ensure_idle()?;
        self.ensure_target()?;
        Ok(sectors)
    }

    fn transfer(
        &mut self,
        lba: u64,
        total_sectors: u64,
        io: &mut Transfer<'_>,
    ) -> Result<(), InitiatorError> {
        let per_frame = u64::from(self.sectors_per_frame);
        let depth = self.table.depth();
        let mut next = 0u64; // sectors submitted so far
        let mut failure: Option<InitiatorError> = None;
        let op = match io {
            Transfer::Read(_) => Op::Read,
            Transfer::Write(_) => Op::Write,
        };
        while failure.is_none() && (next < total_sectors || self.in_flight() > 0) {
            while next < total_sectors && self.in_flight() < depth {
                // per_frame <= 255, so the cast is lossless.
                let sectors = per_frame.min(total_sectors - next) as u8;
                let chunk_lba = lba + next;
                let submitted = match io {
                    Transfer::Read(_) => self.submit_read(chunk_lba, sectors, next),
                    Transfer::Write(data) => {
                        let range = byte_range(next, sectors);
                        match data.get(range) {
                            Some(chunk) => self.submit_write(chunk_lba, chunk, next),
                            None => Err(InitiatorError::UnalignedLength {
                                len_bytes: data.len(),
                            }),
                        }
                    }
                };
                if let Err(e) = submitted {
                    self.table.abandon_all();
                    return Err(e);
                }
                next += u64::from(sectors);
            }
            self.poll(u64::MAX, |c| {
                if failure.is_some() {
                    return;
                }
                match c.result {
                    Ok(()) => {
                        if let Transfer::Read(buf) = io {
                            let range = byte_range(c.user, c.sectors);
                            if let Some(dst) = buf.get_mut(range) {
                                if dst.len() == c.data.len() {
                                    dst.copy_from_slice(c.data);
                                }
                            }
                        }
                    }
                    Err(source) => {
                        failure = Some(InitiatorError::Request {
                            op,
                            lba: c.lba,
                            sectors: c.sectors,
                            source,
                        });
                    }
                }
            })?;
        }
        if let Some(e) = failure {
            self.table.abandon_all();
            return Err(e);
        }
        Ok(())
    }

    /// Queues a READ SECTORS EXT of `sectors` (1..=[`Initiator::sectors_per_frame`]) at
    /// `lba`; its [`Completion`] carries `user`.
    pub fn submit_read(&mut self, lba: u64, sectors: u8, user: u64) -> Result<(), InitiatorError> {
        self.ensure_target()?;
        self.check_request(lba, usize::from(sectors))?;
        let header = AtaHeader {
            aflags: AFLAG_EXTENDED,
            err_feature: 0,
            sector_count: sectors,
            cmd_status: opcode::READ_SECTORS_EXT,
            lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        };
        self.submit(Op::Read, header, Expect::Data { sectors }, lba, &[], user)
    }

    /// Queues a WRITE SECTORS EXT of `data` (1..=[`Initiator::sectors_per_frame`] whole
    /// sectors) at `lba`. The data is copied into the request frame at once.
    pub fn submit_write(&mut self, lba: u64, data: &[u8], user: u64) -> Result<(), InitiatorError> {
        self.ensure_target()?;
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(InitiatorError::UnalignedLength {
                len_bytes: data.len(),
            });
        }
        let sectors = data.len() / SECTOR_SIZE;
        self.check_request(lba, sectors)?;
        // check_request bounded sectors by sectors_per_frame (a u8).
        let sectors = sectors as u8;
        let header = AtaHeader {
            aflags: AFLAG_EXTENDED | AFLAG_WRITE,
            err_feature: 0,
            sector_count: sectors,
            cmd_status: opcode::WRITE_SECTORS_EXT,
            lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        };
        self.submit(Op::Write, header, Expect::NoData, lba, data, user)
    }

    fn check_request(&self, lba: u64, sectors: usize) -> Result<(), InitiatorError> {
        if sectors == 0 || sectors > usize::from(self.sectors_per_frame) {
            return Err(InitiatorError::BadSectorCount {
                sectors,
                max_sectors: self.sectors_per_frame,
            });
        }
        let sectors = sectors as u64;
        if lba.checked_add(sectors).is_none_or(|end| end > LBA48_LIMIT) {
            return Err(InitiatorError::LbaOutOfRange { lba, sectors });
        }
        Ok(())
    }

    /// Requests in flight in the pipelined API.
    pub fn in_flight(&self) -> usize {
        self.table.in_flight()
    }

    /// Fills a free slot with the request and sends it.
    fn submit(
        &mut self,
        op: Op,
        header: AtaHeader,
        expect: Expect,
        lba: u64,
        data: &[u8],
        user: u64,
    ) -> Result<(), InitiatorError> {
        let peer = self.ensure_target()?;
        let depth = self.table.depth();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let Some((index, slot)) = self.table.acquire() else {
            return Err(InitiatorError::QueueFull { depth });
        };
        let tag = slot.next_transmission(index);
        let capacity = slot.frame.len();
        let frame_len = match wire::encode_ata_request(&mut slot.frame, &peer, tag, &header, data) {
            Ok(len) => len,
            Err(_) => {
                self.table.release(index);
                return Err(InitiatorError::FrameTooLong {
                    len_bytes: ATA_FRAME_HEADER_BYTES + data.len(),
                    max_bytes: capacity,
                });
            }
        };
        let now = Instant::now();
        slot.op = op;
        slot.expect = expect;
        slot.lba = lba;
        slot.sectors = header.sector_count;
        slot.user = user;
        slot.attempts = 1;
        slot.submitted_at = now;
        slot.deadline = deadline_after(now, timeout);
        slot.frame_len = frame_len;
        let sent = match slot.frame.get(..frame_len) {
            Some(frame) => self.sock.send(frame),
            None => Ok(false),
        };
        match sent {
            Ok(true) => {}
            Ok(false) => self.stats.send_drops += 1,
            Err(e) => {
                self.table.release(index);
                return Err(e);
            }
        }
        self.stats.requests += 1;
        Ok(())
    }

    /// Waits up to `timeout_ms` for completions, retransmitting requests whose reply is
    /// late and failing those out of retries, and calls `f` for each completion. Returns as
    /// soon as at least one request completed (after taking the replies already queued), when
    /// `timeout_ms` has passed, or at once when nothing is in flight. Returns the number of
    /// completions.
    pub fn poll(
        &mut self,
        timeout_ms: u64,
        mut f: impl FnMut(Completion<'_>),
    ) -> Result<usize, InitiatorError> {
        let end = Instant::now().checked_add(Duration::from_millis(timeout_ms));
        let mut completed = 0;
        loop {
            if self.table.in_flight() == 0 {
                return Ok(completed);
            }
            completed += self.drain(&mut f)?;
            let now = Instant::now();
            completed += self.expire(now, &mut f)?;
            if completed > 0 || self.table.in_flight() == 0 {
                return Ok(completed);
            }
            if end.is_some_and(|e| e <= now) {
                return Ok(0);
            }
            let wake = match (end, self.table.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.sock
                .wait_readable(wake.map(|w| w.saturating_duration_since(now)))?;
        }
    }

    /// Takes the queued frames (up to a batch) and completes the requests they answer.
    fn drain(&mut self, f: &mut impl FnMut(Completion<'_>)) -> Result<usize, InitiatorError> {
        let Some(peer) = self.peer else {
            return Ok(0);
        };
        let Self {
            sock,
            rx,
            table,
            stats,
            ..
        } = self;
        let mut completed = 0;
        for _ in 0..RX_BATCH_FRAMES {
            let Some(len) = sock.recv(rx)? else {
                break;
            };
            let Some(frame) = rx.get(..len) else {
                stats.stray_replies += 1; // longer than our MTU allows: not a reply to us
                continue;
            };
            let verdict = wire::classify(frame, &peer, |slot, generation| {
                table.lookup(slot, generation)
            });
            let (index, outcome) = match verdict {
                Verdict::NotResponse => continue,
                Verdict::Stray(why) => {
                    stats.stray_replies += 1;
                    if why == Stray::Stale {
                        stats.stale_replies += 1;
                    }
                    continue;
                }
                Verdict::Reply { slot, outcome } => (slot, outcome),
            };
            let Some(slot) = table.get(index) else {
                continue; // classify() only matches live slots
            };
            let (result, data, registers) = match outcome {
                Ok(reply) => {
                    stats.completed_ok += 1;
                    (
                        Ok(()),
                        frame.get(reply.data).unwrap_or_default(),
                        Some(reply.registers),
                    )
                }
                Err(e) => {
                    match e {
                        RequestError::Ata { .. } => stats.ata_errors += 1,
                        RequestError::Aoe { .. } => stats.aoe_errors += 1,
                        _ => stats.bad_replies += 1,
                    }
                    (Err(e), &[][..], None)
                }
            };
            let completion = Completion {
                user: slot.user,
                lba: slot.lba,
                sectors: slot.sectors,
                result,
                data,
                latency_ns: elapsed_ns(slot.submitted_at),
                registers,
                attempts: slot.attempts,
            };
            table.release(index);
            f(completion);
            completed += 1;
        }
        Ok(completed)
    }

    /// Retransmits every request whose deadline passed, or fails it when out of retries.
    fn expire(
        &mut self,
        now: Instant,
        f: &mut impl FnMut(Completion<'_>),
    ) -> Result<usize, InitiatorError> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let max_attempts = self.config.retries.saturating_add(1);
        let mut completed = 0;
        while let Some(index) = self.table.first_expired(now) {
            let Some(slot) = self.table.get_mut(index) else {
                break;
            };
            if slot.attempts < max_attempts {
                let tag = slot.next_transmission(index);
                slot.attempts += 1;
                slot.deadline = deadline_after(now, timeout);
                let frame = slot.frame.get_mut(..slot.frame_len).unwrap_or_default();
                // The frame was built by encode_ata_request, so its header parses.
                let sent = match wire::set_tag(frame, tag) {
                    Ok(()) => self.sock.send(frame)?,
                    Err(_) => false,
                };
                self.stats.retransmits += 1;
                if !sent {
                    self.stats.send_drops += 1;
                }
                continue;
            }
            let completion = Completion {
                user: slot.user,
                lba: slot.lba,
                sectors: slot.sectors,
                result: Err(RequestError::Timeout {
                    attempts: slot.attempts,
                    timeout_ms: self.config.timeout_ms,
                    last_tag: slot.tag(index),
                }),
                data: &[],
                latency_ns: elapsed_ns(slot.submitted_at),
                registers: None,
                attempts: slot.attempts,
            };
            self.stats.timeouts += 1;
            self.table.release(index);
            f(completion);
            completed += 1;
        }
        Ok(completed)
    }

    /// Runs one non-pipelined command to completion and returns the reply's registers;
    /// copies its data into `out` when given.
    fn run_one(
        &mut self,
        op: Op,
        header: AtaHeader,
        expect: Expect,
        mut out: Option<&mut [u8; SECTOR_SIZE]>,
    ) -> Result<AtaRegisters, InitiatorError> {
        self.ensure_idle()?;
        self.ensure_target()?;
        self.submit(op, header, expect, 0, &[], 0)?;
        let mut done: Option<Result<AtaRegisters, RequestError>> = None;
        let outcome = loop {
            if let Some(outcome) = done.take() {
                break outcome;
            }
            self.poll(u64::MAX, |c| {
                done = Some(c.result.map(|()| {
                    if let Some(out) = out.as_deref_mut() {
                        if c.data.len() == out.len() {
                            out.copy_from_slice(c.data);
                        }
                    }
                    c.registers.unwrap_or_default()
                }));
            })?;
        };
        outcome.map_err(|source| InitiatorError::Request {
            op,
            lba: 0,
            sectors: header.sector_count,
            source,
        })
    }

    /// Sends `frame` as is and waits up to `timeout_ms` for an AoE response (R set) whose tag
    /// is `tag`, or for the first response when `tag` is `None`; from any source. For tests
    /// of odd requests. Only while nothing is in flight.
    pub fn exchange_raw(
        &mut self,
        frame: &[u8],
        tag: Option<u32>,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, InitiatorError> {
        self.ensure_idle()?;
        self.send_raw(frame)?;
        let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms));
        loop {
            for _ in 0..RX_BATCH_FRAMES {
                let Some(len) = self.sock.recv(&mut self.rx)? else {
                    break;
                };
                let Some(reply) = self.rx.get(..len) else {
                    continue;
                };
                let Ok(header) = aoe_proto::Header::parse(reply) else {
                    continue;
                };
                if header.is_response() && tag.is_none_or(|t| t == header.tag) {
                    return Ok(Some(reply.to_vec()));
                }
            }
            if !self.wait_until(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Sends `frame` (a whole Ethernet frame, header included) as is.
    pub fn send_raw(&mut self, frame: &[u8]) -> Result<(), InitiatorError> {
        let max_bytes = self.rx.len();
        if frame.len() > max_bytes {
            return Err(InitiatorError::FrameTooLong {
                len_bytes: frame.len(),
                max_bytes,
            });
        }
        if !self.sock.send(frame)? {
            self.stats.send_drops += 1;
        }
        Ok(())
    }

    /// Receives the next AoE frame of any kind into `buf`, waiting up to `timeout_ms`.
    /// Returns the bytes written (a frame longer than `buf` is cut to it), or `None` on
    /// timeout. Frames it takes are not seen by the pipelined API: use it while idle.
    pub fn recv_raw(
        &mut self,
        buf: &mut [u8],
        timeout_ms: u64,
    ) -> Result<Option<usize>, InitiatorError> {
        self.ensure_idle()?;
        let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms));
        loop {
            if let Some(len) = self.sock.recv(buf)? {
                return Ok(Some(len.min(buf.len())));
            }
            if !self.wait_until(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Waits for a frame to arrive, at most until `deadline` (`None`: no limit). Returns
    /// `false`, without waiting, once the deadline has passed.
    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, InitiatorError> {
        let now = Instant::now();
        let left = match deadline {
            Some(d) if d <= now => return Ok(false),
            Some(d) => Some(d - now),
            None => None,
        };
        self.sock.wait_readable(left)?;
        Ok(true)
    }

    fn ensure_idle(&self) -> Result<(), InitiatorError> {
        match self.table.in_flight() {
            0 => Ok(()),
            in_flight => Err(InitiatorError::Busy { in_flight }),
        }
    }

    /// The peer, discovering the target first when none is known.
    fn ensure_target(&mut self) -> Result<Peer, InitiatorError> {
        if let Some(peer) = self.peer {
            return Ok(peer);
        }
        self.discover_peer().map(|(_, peer)| peer)
    }

    fn frame_too_long(&self, len_bytes: usize) -> InitiatorError {
        InitiatorError::FrameTooLong {
            len_bytes,
            max_bytes: self.rx.len(),
        }
    }
}

/// Where a blocking transfer's data goes or comes from.
enum Transfer<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// Byte range of `sectors` sectors starting `first_sector` sectors into a buffer. Saturates
/// instead of overflowing; out-of-range results are rejected by the caller's `get`.
fn byte_range(first_sector: u64, sectors: u8) -> core::ops::Range<usize> {
    let start = usize::try_from(first_sector)
        .unwrap_or(usize::MAX)
        .saturating_mul(SECTOR_SIZE);
    start..start.saturating_add(ata::data_len(sectors))
}

fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    // A timeout too large to represent is as good as "a year from now".
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_saturate() {
        assert_eq!(byte_range(0, 2), 0..1024);
        assert_eq!(byte_range(3, 1), 1536..2048);
        let r = byte_range(u64::MAX, 2);
        assert_eq!(r.start, usize::MAX);
    }

    /// The receive path's matching, end to end without a socket: slot table, tags, classify.
    #[test]
    fn retransmission_makes_the_first_reply_stale() {
        let peer = Peer {
            own_mac: Mac([2, 0, 0, 0, 0, 1]),
            target_mac: Mac([2, 0, 0, 0, 0, 2]),
            shelf: 7,
            slot: 1,
        };
        let mut table = SlotTable::new(4, 36 + 1024);
        let header = AtaHeader {
            aflags: AFLAG_EXTENDED,
            sector_count: 2,
            cmd_status: opcode::READ_SECTORS_EXT,
            lba_bytes: AtaHeader::lba_bytes_for(99, true),
            ..AtaHeader::default()
        };
        let (index, slot) = table.acquire().unwrap();
        slot.expect = Expect::Data { sectors: 2 };
        let first_tag = slot.next_transmission(index);
        let len =
            wire::encode_ata_request(&mut slot.frame, &peer, first_tag, &header, &[]).unwrap();
        slot.frame_len = len;
        let first_request = slot.frame[..len].to_vec();
        let second_tag = slot.next_transmission(index);
        wire::set_tag(&mut slot.frame[..len], second_tag).unwrap();
        let second_request = slot.frame[..len].to_vec();

        let reply_to = |request: &[u8]| {
            let mut frame = request.to_vec();
            frame.resize(36 + 1024, 0xab);
            aoe_proto::Header::parse(request)
                .unwrap()
                .reply(peer.target_mac, peer.shelf, peer.slot)
                .encode(&mut frame)
                .unwrap();
            AtaHeader::encode_reply(&mut frame, 24, 0x40, 0, 0).unwrap();
            frame
        };
        let live = |s, g| table.lookup(s, g);
        assert_eq!(
            wire::classify(&reply_to(&first_request), &peer, live),
            Verdict::Stray(Stray::Stale)
        );
        let second_reply = reply_to(&second_request);
        match wire::classify(&second_reply, &peer, live) {
            Verdict::Reply {
                slot,
                outcome: Ok(reply),
            } => {
                assert_eq!(slot, index);
                assert!(second_reply[reply.data].iter().all(|&b| b == 0xab));
            }
            other => panic!("{other:?}"),
        }
        table.release(index);
        assert_eq!(
            wire::classify(&second_reply, &peer, |s, g| table.lookup(s, g)),
            Verdict::Stray(Stray::Stale),
            "a duplicate reply after completion"
        );
    }

    #[test]
    fn default_config_uses_wildcards() {
        let c = InitiatorConfig::default();
        assert_eq!((c.shelf, c.slot), (0xffff, 0xff));
    }

    #[test]
    fn open_rejects_bad_names_without_a_socket() {
        for bad in ["", "a-name-longer-than-15", "nul\0inside"] {
            assert!(matches!(
                Initiator::open(bad, InitiatorConfig::default()),
                Err(InitiatorError::InvalidInterfaceName { .. })
            ));
        }
    }
}
