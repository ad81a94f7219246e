//! The validated configuration: every export and every interface, with every default
//! applied. Built from a file or a command line; compared between reloads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use aoe_proto::Mac;
use xblade_target::ExportKey;

use crate::xdp::XdpAttachMode;
use crate::xsk::NapiBusyPoll;

/// Everything one xblade process serves.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub source: ConfigSource,
    /// The control socket's path; `None`: no control socket.
    pub control: Option<PathBuf>,
    /// Print a line of rates every this many seconds (0: never).
    pub stats_interval_s: u64,
    /// Serve Prometheus metrics over HTTP here (port 0: any free port); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Run as this user once set up (`user` in `[defaults]`, `--user`); `None`: as started.
    pub user: Option<String>,
    /// xblade's own state directory, given to `user` at the drop point when an export
    /// keeps its state in it (`state_dir`; `/var/lib/xblade` for a command line).
    pub state_dir: Option<PathBuf>,
    /// Every interface an export is served on, by name.
    pub interfaces: BTreeMap<String, InterfaceConfig>,
    /// Every export, by shelf.slot.
    pub exports: BTreeMap<ExportKey, ExportConfig>,
}

/// Where a configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// vblade's command line: one export, nothing to reload.
    CommandLine,
    /// `--config FILE`: reloaded from the same path.
    File(PathBuf),
}

/// How one interface is served: the tuning of its workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub xdp_mode: XdpAttachMode,
    /// Serve only the first N RX queues (`None`: all).
    pub queues: Option<u32>,
    /// UMEM frames per RX queue (a power of two, 64-32768).
    pub frames: u32,
    /// Most RX descriptors per loop iteration (1-1024).
    pub batch: u32,
    pub spin_us: u32,
    pub busy_poll: bool,
    /// Pin worker N to CPU N mod CPUs.
    pub pin: bool,
    /// AF_XDP preferred busy polling of the interface's NAPI contexts by the workers
    /// (`napi_busy_poll_us`, `napi_busy_poll_budget`); `None`: off (the default).
    pub napi_busy_poll: Option<NapiBusyPoll>,
    pub tuning: TuningFlags,
}

/// The fast-path mechanisms (all on by default; the hidden `--tune-no-*` flags turn them off
/// to measure what each buys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuningFlags {
    pub need_wakeup: bool,
    pub defer_taskrun: bool,
    pub fixed: bool,
    pub merge: bool,
    /// Keep only part of the RX frames on the fill ring, the most recently used first (see
    /// `FramePool::fill`); off: every free RX frame goes on the fill ring.
    pub fill_cap: bool,
    /// The null backend writes only the zeros a read's frame does not hold already
    /// (`worker::known_zero`); off: it zero-fills the whole data area.
    pub zero_skip: bool,
}

impl Default for TuningFlags {
    fn default() -> Self {
        TuningFlags {
            need_wakeup: true,
            defer_taskrun: true,
            fixed: true,
            merge: true,
            fill_cap: true,
            zero_skip: true,
        }
    }
}

/// One exported volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    pub key: ExportKey,
    /// A regular file, a block device, or `null:SIZE`.
    pub file: PathBuf,
    /// Interface names, sorted, without duplicates; at least one.
    pub interfaces: Vec<String>,
    pub read_only: bool,
    /// O_DSYNC: every write durable before its reply.
    pub sync: bool,
    pub offset_sectors: u64,
    /// `None`: to the end of the file.
    pub length_sectors: Option<u64>,
    /// The mask list entries this configuration manages (initiators may add more).
    pub mask: Vec<Mac>,
    /// The mask list and config string are the operator's alone: changes from the wire are
    /// refused (see `xblade_target`'s `operator` module for what this means exactly).
    pub locked: bool,
    /// Buffer count advertised in Query Config (1-65535).
    pub buffers: u16,
    /// IDENTIFY serial number; `None`: derived from shelf and slot.
    pub serial: Option<String>,
    pub io_engine: IoEngine,
    pub state: StateLocation,
}

impl ExportConfig {
    /// The serial number IDENTIFY reports.
    pub fn serial_number(&self) -> String {
        self.serial
            .clone()
            .unwrap_or_else(|| format!("XB{}.{}", self.key.major(), self.key.minor()))
    }

    /// True when the two differ only in the interfaces they are served on (and the mask
    /// seed and the lock, which a reload applies to the running export without reopening
    /// anything).
    pub fn same_backing(&self, other: &ExportConfig) -> bool {
        ExportConfig {
            interfaces: Vec::new(),
            mask: Vec::new(),
            locked: false,
            ..self.clone()
        } == ExportConfig {
            interfaces: Vec::new(),
            mask: Vec::new(),
            locked: false,
            ..other.clone()
        }
    }
}

/// How disk I/O is issued for an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEngine {
    /// Memory-backed files (tmpfs): mapped when fully allocated, else synchronous;
    /// io_uring otherwise.
    Auto,
    Uring,
    Sync,
    /// The export window mapped into the process: a read or write is a memcpy
    /// (memory-backed files only).
    Mmap,
}

/// Where an export keeps the state initiators set (config string, mask list, reservation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    /// Not kept across restarts.
    None,
    /// This file.
    File(PathBuf),
    /// vblade command-line default: `FILE.xblade-state` beside an image, or
    /// `/var/lib/xblade/NAME.state` for a block device; none for `null:`.
    BesideImage,
}
