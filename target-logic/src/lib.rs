//! One exported device and every decision it makes about a request.
//!
//! [`Target::decide`] looks at a received frame and either drops it, turns it into its
//! reply in place, or names the disk I/O the reply waits for; [`Target::complete`] finishes
//! such a reply when the I/O is done. Pure logic: no sockets, no files, no clocks, so every
//! decision is unit-tested without root.

mod control;
mod operator;
#[cfg(test)]
mod proptests;
mod state;
mod table;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aoe_proto::ata::{self, opcode, AtaHeader, IdentifyStrings};
use aoe_proto::{
    pad_reply, AoeError, Command, Header, Mac, AOE_VERSION, MIN_FRAME_LEN, SECTOR_SIZE,
};

pub use state::{
    MacList, MaskEdit, StringTooLong, TargetState, TooManyMacs, MAX_MASK_ENTRIES,
    MAX_RESERVE_ENTRIES,
};
pub use table::{ExportKey, ExportTable, Route};

/// The fixed properties of an exported device as served on one link (the sector count per
/// frame follows that link's MTU; see [`Target::on_link`]).
#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub major: u16,
    pub minor: u8,
    /// Size of the export in sectors (the window `-l`, or the file less `-o`).
    pub size_sectors: u64,
    /// First sector of the export within the backing file (`-o`).
    pub offset_sectors: u64,
    pub read_only: bool,
    /// Sectors per ATA frame, advertised in Query Config and enforced (error 2 above it).
    pub max_sectors_per_frame: u8,
    /// Requests queued per initiator, advertised in Query Config.
    pub buffer_count: u16,
    pub firmware_version: u16,
    pub serial: String,
    pub model: String,
}

/// Why a frame gets no reply. Counted, never logged per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not AoE, or shorter than its command's header.
    Malformed,
    /// A response (R set): a target never answers those.
    Response,
    /// Addressed to another MAC, or to another shelf.slot.
    NotForUs,
    /// The mask list is non-empty and does not list the sender.
    Masked,
    /// A Query Config test or prefix test that did not match: silence is the answer.
    ConfigMismatch,
    /// A command other than Query Config with a wildcard address that several exports
    /// match (see [`Route::Ambiguous`]).
    Ambiguous,
}

/// What the disk must do before a reply can go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Read `len_bytes` at `offset_bytes` into the frame at `data_offset`.
    Read,
    /// Write the frame's `len_bytes` at `data_offset` to `offset_bytes`.
    Write,
    /// fdatasync the backing file.
    Flush,
}

/// Disk I/O a reply waits for. The reply header is already in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub kind: IoKind,
    /// Byte offset in the backing file (window offset included).
    pub offset_bytes: u64,
    pub len_bytes: u32,
    /// Where the sector data starts in the frame.
    pub data_offset: u32,
    /// Where the ATA header starts in the frame, for [`Target::complete`].
    pub body_offset: u32,
    /// Reply length before padding.
    pub reply_len: u32,
}

/// Control-plane state an immediate reply changed: the daemon mirrors and persists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateChange {
    ConfigString,
    MaskList,
    Reservation,
}

/// The outcome of [`Target::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// The reply is in the frame: send `len` bytes.
    Reply {
        len: usize,
        kind: ReplyKind,
        change: Option<StateChange>,
    },
    /// Submit the I/O, then call [`Target::complete`].
    Io(IoRequest),
}

/// What an immediate reply answered, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// An ATA command answered without disk I/O (identify, power mode, zero-length).
    Ata,
    /// An ATA error (status 0x41) such as IDNF or ABRT.
    AtaError,
    /// An AoE error (E flag).
    AoeError(AoeError),
    Config,
    MaskList,
    Reserve,
    /// A change refused because the export is locked (see [`Target::set_locked`]): a Mac
    /// Mask List edit answered with MError 1, a Query Config set with AoE error 4, or a
    /// Reserve/Release set of an operator's reservation with AoE error 6. Counted as this
    /// alone, not as an AoE error.
    RefusedLocked,
}

/// How a disk I/O ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOutcome {
    Done,
    /// The kernel returned an error or a short transfer.
    Failed,
}

/// What arrived: the first fragment's length, all fragments' length, and how long a reply
/// may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub total_len: usize,
    pub reply_capacity: usize,
}

/// State shared between the workers that serve one target.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<TargetState>,
    /// True while the mask list or the reservation is non-empty: only then does the ATA
    /// path take the lock.
    restricted: AtomicBool,
    /// The mask list and config string are the operator's alone (see [`Target::set_locked`]).
    locked: AtomicBool,
}

/// One exported device, as a worker sees it. Cheap to clone: workers share the state.
#[derive(Clone, Debug)]
pub struct Target {
    config: Arc<TargetConfig>,
    own_mac: Mac,
    identify: Arc<[u8; SECTOR_SIZE]>,
    shared: Arc<Shared>,
}

/// The IDENTIFY DEVICE sector of an export.
fn identify_for(config: &TargetConfig) -> [u8; SECTOR_SIZE] {
    ata::identify_data(
        config.size_sectors,
        IdentifyStrings {
            serial: &config.serial,
            firmware: env!("CARGO_PKG_VERSION"),
            model: &config.model,
        },
    )
}

impl Target {
    pub fn new(config: TargetConfig, own_mac: Mac, initial: TargetState) -> Target {
        let identify = identify_for(&config);
        let shared = Shared::default();
        shared.restricted.store(
            !initial.mask.is_empty() || !initial.reservation.is_empty(),
            Ordering::Relaxed,
        );
        *shared.state.lock().unwrap_or_else(|e| e.into_inner()) = initial;
        Target {
            config: Arc::new(config),
            own_mac,
            identify: Arc::new(identify),
            shared: Arc::new(shared),
        }
    }

    /// The same export served on another link: its own MAC and the sector count that link's
    /// MTU allows; the config string, mask list and reservation stay shared with `self`.
    pub fn on_link(&self, own_mac: Mac, max_sectors_per_frame: u8) -> Target {
        let config = TargetConfig {
            max_sectors_per_frame,
            ..(*self.config).clone()
        };
        Target {
            config: Arc::new(config),
            own_mac,
            identify: Arc::clone(&self.identify),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The same export with new fixed properties (a reload changed its size, window, or
    /// read-only flag), keeping the state initiators set. The caller keeps `major`/`minor`.
    pub fn reconfigured(&self, config: TargetConfig) -> Target {
        debug_assert_eq!(
            (config.major, config.minor),
            (self.config.major, self.config.minor)
        );
        let identify = identify_for(&config);
        Target {
            config: Arc::new(config),
            own_mac: self.own_mac,
            identify: Arc::new(identify),
            shared: Arc::clone(&self.shared),
        }
    }

    /// True when `other` shares this export's state (it is the same export, maybe on another
    /// link or reconfigured).
    pub fn same_export(&self, other: &Target) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Replaces the part of the mask list a configuration manages: `old_seed` entries leave,
    /// `new_seed` entries join; entries initiators added stay. Returns true if the list
    /// changed. Entries past the list's capacity are left out (and reported by the count
    /// returned in `Err`).
    pub fn reseed_mask(&self, old_seed: &[Mac], new_seed: &[Mac]) -> Result<bool, usize> {
        let mut state = self.lock();
        let before = state.mask.clone();
        for mac in old_seed.iter().filter(|m| !new_seed.contains(m)) {
            state.mask.remove(*mac);
        }
        let mut left_out = 0;
        for mac in new_seed {
            if state.mask.add(*mac).is_err() {
                left_out += 1;
            }
        }
        self.update_restricted(&state);
        let changed = state.mask != before;
        drop(state);
        match left_out {
            0 => Ok(changed),
            n => Err(n),
        }
    }

    pub fn config(&self) -> &TargetConfig {
        &self.config
    }

    /// This export's shelf.slot.
    pub fn key(&self) -> ExportKey {
        ExportKey::new(self.config.major, self.config.minor)
    }

    pub fn own_mac(&self) -> Mac {
        self.own_mac
    }

    /// A copy of the control-plane state (for persisting and for the XDP ACL map).
    pub fn state(&self) -> TargetState {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, TargetState> {
        // A worker that panicked while holding the lock left the state as consistent as
        // any single assignment makes it: keep serving rather than poison every worker.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_restricted(&self, state: &TargetState) {
        let restricted = !state.mask.is_empty() || !state.reservation.is_empty();
        self.shared.restricted.store(restricted, Ordering::Release);
    }

    /// Decides what to do with the `len`-byte frame at the start of `frame`; `frame.len()`
    /// is the buffer's capacity, which bounds every reply. Replies are written in place.
    pub fn decide(&self, frame: &mut [u8], len: usize) -> Action {
        self.decide_chained(
            frame,
            Received {
                len,
                total_len: len,
                reply_capacity: frame.len(),
            },
        )
    }

    /// [`Target::decide`] for a packet that may continue in further frames (AF_XDP
    /// multi-buffer): `frame` holds the first fragment (`rx.len` bytes; every header is in
    /// it), `rx.total_len` counts all fragments, and a read's reply may be up to
    /// `rx.reply_capacity` bytes (the worker chains frames for what does not fit in
    /// `frame`). Immediate replies always fit in `frame`.
    pub fn decide_chained(&self, frame: &mut [u8], rx: Received) -> Action {
        match frame.get(..rx.len).map(Header::parse) {
            Some(Ok(hdr)) => self.decide_parsed(frame, rx, &hdr),
            _ => Action::Drop(DropReason::Malformed),
        }
    }

    /// [`Target::decide_chained`] for a request whose header the caller already parsed (a
    /// worker does, to route it): `hdr` is `Header::parse(&frame[..rx.len])`.
    pub fn decide_parsed(&self, frame: &mut [u8], rx: Received, hdr: &Header) -> Action {
        let len = rx.len;
        // Every reply is padded to 60 bytes: a buffer that cannot hold one gets none.
        if frame.len() < MIN_FRAME_LEN || frame.len() < len {
            return Action::Drop(DropReason::Malformed);
        }
        if hdr.is_response() {
            return Action::Drop(DropReason::Response);
        }
        if hdr.dst != self.own_mac && !hdr.dst.is_multicast() {
            return Action::Drop(DropReason::NotForUs);
        }
        if !hdr.addresses(self.config.major, self.config.minor) {
            return Action::Drop(DropReason::NotForUs);
        }
        if self.shared.restricted.load(Ordering::Acquire) && !self.lock().admits(hdr.src) {
            return Action::Drop(DropReason::Masked);
        }
        let reply = hdr.reply(self.own_mac, self.config.major, self.config.minor);
        if hdr.version != AOE_VERSION {
            return self.aoe_error(frame, len, reply, AoeError::UnsupportedVersion);
        }
        match Command::from_code(hdr.command) {
            Some(Command::Ata) => self.ata(frame, rx, hdr, reply),
            Some(Command::QueryConfig) => control::query_config(self, frame, len, hdr, reply),
            Some(Command::MacMaskList) => control::mask_list(self, frame, len, hdr, reply),
            Some(Command::ReserveRelease) => control::reserve(self, frame, len, hdr, reply),
            None => self.aoe_error(frame, len, reply, AoeError::UnrecognizedCommand),
        }
    }

    /// Finishes the reply of an [`IoRequest`]: ATA status OK, or the error the failure maps
    /// to (UNC for reads, ABRT for writes and flushes). Returns the padded reply length.
    pub fn complete(&self, frame: &mut [u8], io: &IoRequest, outcome: IoOutcome) -> usize {
        let body = io.body_offset as usize;
        let (status, error, len) = match (outcome, io.kind) {
            (IoOutcome::Done, _) => (ata::status::OK, 0, io.reply_len as usize),
            (IoOutcome::Failed, IoKind::Read) => {
                (ata::status::FAILED, ata::error::UNC, ata::data_offset(body))
            }
            (IoOutcome::Failed, IoKind::Write | IoKind::Flush) => (
                ata::status::FAILED,
                ata::error::ABRT,
                ata::data_offset(body),
            ),
        };
        // The header fit when decide() accepted the request, and the frame is the same.
        let encoded = AtaHeader::encode_reply(frame, body, status, error, 0);
        debug_assert!(encoded.is_ok());
        pad_reply(frame, len).unwrap_or(len)
    }

    /// The unsolicited Query Config reply a target broadcasts at start-up (tag 0). Returns
    /// the frame length, or `None` if `frame` is too small.
    pub fn announcement(&self, frame: &mut [u8]) -> Option<usize> {
        let request = Header {
            dst: self.own_mac,
            src: Mac::BROADCAST,
            vlan_tci: None,
            version: AOE_VERSION,
            flags: 0,
            error: 0,
            major: self.config.major,
            minor: self.config.minor,
            command: Command::QueryConfig as u8,
            tag: 0,
        };
        let reply = request.reply(self.own_mac, self.config.major, self.config.minor);
        control::encode_config_reply(self, frame, reply, 0, &self.lock()).ok()
    }

    /// Writes `reply` with the E flag and `error` over the frame's header. The command
    /// header stays as the request had it (an error reply echoes it); data past it is not
    /// sent. `request_len` is the received length.
    fn aoe_error(
        &self,
        frame: &mut [u8],
        request_len: usize,
        reply: Header,
        error: AoeError,
    ) -> Action {
        let reply = reply.with_error(error);
        let Ok(body) = reply.encode(frame) else {
            return Action::Drop(DropReason::Malformed);
        };
        let command_header_len = match Command::from_code(reply.command) {
            Some(Command::Ata) => ata::HEADER_LEN,
            Some(Command::QueryConfig) => aoe_proto::config::HEADER_LEN,
            Some(Command::MacMaskList) => aoe_proto::mask::HEADER_LEN,
            Some(Command::ReserveRelease) => aoe_proto::reserve::HEADER_LEN,
            None => 0,
        };
        let len = (body + command_header_len).min(request_len.max(body));
        self.reply(frame, len, ReplyKind::AoeError(error), None)
    }

    /// Pads the `len`-byte reply in `frame` and returns the action that sends it.
    fn reply(
        &self,
        frame: &mut [u8],
        len: usize,
        kind: ReplyKind,
        change: Option<StateChange>,
    ) -> Action {
        match pad_reply(frame, len) {
            Some(len) => Action::Reply { len, kind, change },
            None => Action::Drop(DropReason::Malformed),
        }
    }

    fn ata(&self, frame: &mut [u8], rx: Received, hdr: &Header, reply: Header) -> Action {
        let len = rx.len;
        let body = hdr.body_offset();
        let Ok(req) = AtaHeader::parse(&frame[..len], body) else {
            return Action::Drop(DropReason::Malformed);
        };
        let command = req.cmd_status;
        let guarded = command != opcode::IDENTIFY_DEVICE;
        if guarded
            && self.shared.restricted.load(Ordering::Acquire)
            && !self.lock().reservation_allows(hdr.src)
        {
            return self.aoe_error(frame, len, reply, AoeError::TargetReserved);
        }
        let count = req.sector_count;
        let data_offset = ata::data_offset(body);
        let data_len = ata::data_len(count);
        let is_read = matches!(command, opcode::READ_SECTORS | opcode::READ_SECTORS_EXT);
        let is_write = matches!(command, opcode::WRITE_SECTORS | opcode::WRITE_SECTORS_EXT);
        if (is_read || is_write) && count > self.config.max_sectors_per_frame {
            return self.aoe_error(frame, len, reply, AoeError::BadArgument);
        }
        if is_write && rx.total_len < data_offset + data_len {
            return self.aoe_error(frame, len, reply, AoeError::BadArgument);
        }
        if is_read && data_offset + data_len > rx.reply_capacity {
            return self.aoe_error(frame, len, reply, AoeError::BadArgument);
        }
        if reply.encode(frame).is_err() {
            return Action::Drop(DropReason::Malformed);
        }
        let ok = |frame: &mut [u8], sectors_left: u8, reply_len: usize| {
            let _ = AtaHeader::encode_reply(frame, body, ata::status::OK, 0, sectors_left);
            self.reply(frame, reply_len, ReplyKind::Ata, None)
        };
        let ata_error = |frame: &mut [u8], error: u8| {
            let _ = AtaHeader::encode_reply(frame, body, ata::status::FAILED, error, count);
            self.reply(frame, data_offset, ReplyKind::AtaError, None)
        };
        match command {
            opcode::READ_SECTORS
            | opcode::READ_SECTORS_EXT
            | opcode::WRITE_SECTORS
            | opcode::WRITE_SECTORS_EXT => {
                if is_write && self.config.read_only {
                    return ata_error(frame, ata::error::ABRT);
                }
                let lba = req.lba();
                if lba.saturating_add(u64::from(count)) > self.config.size_sectors {
                    return ata_error(frame, ata::error::IDNF);
                }
                if count == 0 {
                    return ok(frame, 0, data_offset);
                }
                let kind = if is_write {
                    IoKind::Write
                } else {
                    IoKind::Read
                };
                let reply_len = if is_write {
                    data_offset
                } else {
                    data_offset + data_len
                };
                Action::Io(IoRequest {
                    kind,
                    offset_bytes: (self.config.offset_sectors + lba) * SECTOR_SIZE as u64,
                    len_bytes: data_len as u32,
                    data_offset: data_offset as u32,
                    body_offset: body as u32,
                    reply_len: reply_len as u32,
                })
            }
            opcode::IDENTIFY_DEVICE => {
                if count != 1 {
                    return self.aoe_error(frame, len, reply, AoeError::BadArgument);
                }
                let Some(dst) = frame.get_mut(data_offset..data_offset + SECTOR_SIZE) else {
                    return self.aoe_error(frame, len, reply, AoeError::BadArgument);
                };
                dst.copy_from_slice(&self.identify[..]);
                ok(frame, 0, data_offset + SECTOR_SIZE)
            }
            opcode::FLUSH_CACHE | opcode::FLUSH_CACHE_EXT => Action::Io(IoRequest {
                kind: IoKind::Flush,
                offset_bytes: 0,
                len_bytes: 0,
                data_offset: data_offset as u32,
                body_offset: body as u32,
                reply_len: data_offset as u32,
            }),
            opcode::CHECK_POWER_MODE => ok(frame, ata::POWER_MODE_ACTIVE, data_offset),
            _ => ata_error(frame, ata::error::ABRT),
        }
    }
}
