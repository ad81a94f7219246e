//! One export as the control plane holds it: its configuration, its opened backing store,
//! the shared target state initiators change, and where that state is persisted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aoe_proto::Mac;
use tracing::{info, warn};
use xblade_target::{ExportKey, Target, TargetConfig};

use crate::backend::{Backend, BackendOptions, IoMode};
use crate::config::{ExportConfig, IoEngine, StateLocation};
use crate::control::ExportAcl;
use crate::persist::StateFile;
use crate::stats::ExportCounters;
use crate::worker::ServedExport;
use crate::xdp::XdpExport;

use super::DaemonError;
use crate::worker::FRAME_SIZE;

pub(super) struct RunningExport {
    pub config: ExportConfig,
    pub backend: Arc<Backend>,
    /// The export before it is put on a link (no MAC, no sector count): every link's view
    /// shares its state.
    pub target: Target,
    pub state_file: Option<StateFile>,
    /// Disk I/O on the worker thread (memory-backed files) rather than through io_uring:
    /// memcpy through the backend's mapping when it has one, else preadv/pwritev (also
    /// the mapping's fallback).
    pub sync_io: bool,
    /// Tells this version of the export from the ones before it (each opened version has a
    /// new one): its counters restart at zero.
    pub generation: u64,
}

/// The generation of the next opened export version.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl RunningExport {
    /// Opens the backing store of `config` and restores (or, for a new version of a running
    /// export, `previous`'s) state.
    pub fn open(
        config: &ExportConfig,
        previous: Option<&RunningExport>,
    ) -> Result<RunningExport, DaemonError> {
        let key = config.key;
        let mut backend = open_backend(config)?;
        let target_config = TargetConfig {
            major: key.major(),
            minor: key.minor(),
            size_sectors: backend.size_sectors,
            offset_sectors: backend.offset_sectors,
            read_only: config.read_only,
            max_sectors_per_frame: 0,
            buffer_count: config.buffers,
            firmware_version: firmware_version(),
            serial: config.serial_number(),
            model: "xblade AoE target".to_owned(),
        };
        let state_file = state_file(config, &backend);
        let target = match previous {
            // The mask seed is applied when the reload commits (see `reseed_from`).
            Some(previous) => previous.target.reconfigured(target_config),
            None => {
                let persisted = match &state_file {
                    Some(file) => file.load()?,
                    None => None,
                };
                if let (Some(file), Some(_)) = (&state_file, &persisted) {
                    info!(export = %key, path = %file.path().display(), "restored config string, mask list and reservation");
                }
                let target = Target::new(target_config, Mac::ZERO, persisted.unwrap_or_default());
                target.set_locked(config.locked);
                reseed(&target, key, &[], &config.mask);
                target
            }
        };
        let sync_io = choose_engine(config, &mut backend)?;
        Ok(RunningExport {
            config: config.clone(),
            backend: Arc::new(backend),
            target,
            state_file,
            sync_io,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A reload committed this export's configuration, whose mask entries were `old`: the
    /// configured entries and the lock take effect.
    pub fn reseed_from(&self, old: &[Mac]) {
        self.target.set_locked(self.config.locked);
        reseed(&self.target, self.key(), old, &self.config.mask);
    }

    pub fn key(&self) -> ExportKey {
        self.config.key
    }

    /// This export on a link with MAC `mac` whose frames carry `max_sectors` sectors, for
    /// a worker that counts its requests in `stats`.
    pub fn on_link(&self, mac: Mac, max_sectors: u8, stats: Arc<ExportCounters>) -> ServedExport {
        ServedExport {
            target: self.target.on_link(mac, max_sectors),
            backend: Arc::clone(&self.backend),
            sync_io: self.sync_io,
            stats,
        }
    }

    /// What the XDP program needs: the address and the mask list (its ACL).
    pub fn xdp_export(&self) -> XdpExport {
        let key = self.key();
        XdpExport {
            major: key.major(),
            minor: key.minor(),
            mask: self.mask(),
        }
    }

    pub fn mask(&self) -> Vec<[u8; 6]> {
        self.target
            .state()
            .mask
            .as_slice()
            .iter()
            .map(|m| m.0)
            .collect()
    }

    /// The export's access control as the control protocol reports it.
    pub fn acl(&self) -> ExportAcl {
        let key = self.key();
        let state = self.target.state();
        let macs = |macs: &[Mac]| macs.iter().map(Mac::to_string).collect();
        ExportAcl {
            name: key.to_string(),
            shelf: key.major(),
            slot: key.minor(),
            locked: self.target.is_locked(),
            mask: macs(state.mask.as_slice()),
            mask_configured: macs(&self.config.mask),
            mask_capacity: state.mask.capacity() as u32,
            reservation: macs(state.reservation.as_slice()),
            reserved_by_operator: state.operator_reserved,
            config_string: state.config_string().escape_ascii().to_string(),
        }
    }

    /// Persists the state initiators set, if this export keeps it.
    pub fn save_state(&self) {
        if let Some(file) = &self.state_file {
            if let Err(e) = file.save(&self.target.state()) {
                warn!(export = %self.key(), "{e}; the change holds until xblade stops");
            }
        }
    }

    /// A one-line description of the I/O path, for the log.
    pub fn io_description(&self) -> String {
        let engine = match (self.sync_io, self.backend.mapping().is_some()) {
            (true, true) => "mmap",
            (true, false) => "sync",
            (false, _) => "io_uring",
        };
        match (self.backend.io_mode, &self.backend.buffered_reason) {
            (IoMode::Direct { mem_align }, _) => format!(
                "O_DIRECT{} (mem_align {mem_align}), {engine}",
                if self.config.sync { " | O_DSYNC" } else { "" }
            ),
            (IoMode::Buffered, Some(reason)) => format!("buffered ({reason}), {engine}"),
            (IoMode::Buffered, None) => format!("buffered, {engine}"),
            (IoMode::Null, _) => "null backend: reads return zeros, writes are discarded".into(),
        }
    }
}

/// Decides how the worker reaches `backend` (mapping it for the mapped engine). Returns
/// whether its I/O is synchronous (mapped or preadv/pwritev) rather than io_uring.
fn choose_engine(config: &ExportConfig, backend: &mut Backend) -> Result<bool, DaemonError> {
    let has_store = backend.io_mode != IoMode::Null;
    match config.io_engine {
        IoEngine::Sync => Ok(has_store),
        IoEngine::Uring => Ok(false),
        IoEngine::Mmap => {
            backend.map_window(!config.read_only)?;
            Ok(true)
        }
        IoEngine::Auto if has_store && backend.memory_backed => {
            // A sparse file stays with preadv/pwritev: mapped, a read of a hole would
            // allocate it, and a write into one on a full file system raises SIGBUS. So
            // does an export with O_DSYNC writes (`sync`), which a memcpy would not honour.
            if backend.fully_allocated && !config.sync {
                if let Err(e) = backend.map_window(!config.read_only) {
                    warn!(export = %config.key, "{e}; using preadv/pwritev instead");
                }
            }
            Ok(true)
        }
        IoEngine::Auto => Ok(false),
    }
}

/// Opens the backing store and checks that the worker's frames can carry its direct I/O.
fn open_backend(config: &ExportConfig) -> Result<Backend, DaemonError> {
    let backend = Backend::open(&BackendOptions {
        path: config.file.clone(),
        read_only: config.read_only,
        sync_writes: config.sync,
        offset_sectors: config.offset_sectors,
        length_sectors: config.length_sectors,
    })?;
    if let IoMode::Direct { mem_align } = backend.io_mode {
        if mem_align > FRAME_SIZE {
            return Err(DaemonError::AlignmentUnsupported {
                path: backend.path.display().to_string(),
                mem_align,
            });
        }
    }
    if backend.io_mode == IoMode::Buffered {
        warn!(
            export = %config.key,
            "buffered I/O: {}",
            backend.buffered_reason.as_deref().unwrap_or("direct I/O unavailable")
        );
    }
    Ok(backend)
}

/// Where the state initiators set is kept, if anywhere.
fn state_file(config: &ExportConfig, backend: &Backend) -> Option<StateFile> {
    match &config.state {
        StateLocation::None => None,
        StateLocation::File(path) => Some(StateFile::new(path.clone())),
        StateLocation::BesideImage if backend.io_mode == IoMode::Null => None,
        StateLocation::BesideImage => Some(StateFile::default_for(
            &backend.path,
            backend.is_block_device,
        )),
    }
}

/// Applies a configuration's mask entries (`old` leave, `new` join) to the running list.
fn reseed(target: &Target, key: ExportKey, old: &[Mac], new: &[Mac]) {
    if let Err(left_out) = target.reseed_mask(old, new) {
        warn!(export = %key, left_out, "mask list full; the last configured MACs are not on it");
    }
}

/// The firmware version advertised in Query Config: major and minor of the crate version.
fn firmware_version() -> u16 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u16>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major << 8) | (minor & 0xff)
}
