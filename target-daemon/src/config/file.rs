//! The configuration file (`--config FILE`): TOML, every key checked, every error naming
//! the file, the line and the key.
//!
//! ```toml
//! [defaults]                  # all optional
//! control = "/run/xblade/control.sock"
//! state_dir = "/var/lib/xblade"   # each export's state in STATE_DIR/eSHELF.SLOT.state
//! stats_interval = 0
//! metrics_listen = "127.0.0.1:9650"  # Prometheus /metrics over HTTP (default: off)
//! user = "xblade"             # run as this user once set up (default: stay root)
//! buffers = 128               # export defaults: buffers, read_only, sync, io_engine, locked
//! read_only = false
//! sync = false
//! locked = false              # true: mask list and config string are the operator's alone
//! io_engine = "auto"          # auto | uring | sync | mmap
//! xdp_mode = "auto"           # interface defaults: xdp_mode, queues, frames, batch,
//! frames = 4096               #   spin_us, busy_poll, pin
//! batch = 64
//! spin_us = 50
//! busy_poll = false
//! pin = true
//! queues = 2                  # default: all
//! napi_busy_poll_us = 0       # AF_XDP preferred busy polling (default 0: off; e.g. 20)
//! napi_busy_poll_budget = 64  #   packets per busy-poll pass (with napi_busy_poll_us)
//!
//! [interfaces.eth1]           # per-interface overrides of the interface defaults
//! xdp_mode = "native"
//! frames = 8192
//!
//! [[export]]
//! shelf = 1
//! slot = 0
//! file = "/srv/vol0.img"      # or a block device, or "null:64G"
//! interfaces = ["eth1", "eth2"]   # several: AoE multipath
//! read_only = false           # this and the rest: optional
//! sync = false
//! offset_sectors = 0
//! length_sectors = 2048       # default: to the end of the file
//! mask = ["52:54:00:12:34:56"]
//! locked = false              # hosts may not edit the mask list or config string
//! buffers = 128
//! serial = "VOL0"
//! io_engine = "auto"
//! state = true                # false: keep no state for this export
//! ```
//!
//! [`parse`] is pure: syntax, types, ranges and consistency. [`load`] reads the file, parses
//! it, and then checks the environment: every export's file can be opened as it will be, and
//! every interface exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use aoe_proto::Mac;
use serde::Deserialize;
use toml::Spanned;
use xblade_target::ExportKey;

use super::model::{
    ConfigSource, ExportConfig, InterfaceConfig, IoEngine, ServeConfig, StateLocation, TuningFlags,
};
use crate::backend::NULL_PREFIX;
use crate::netdev::Netdev;
use crate::xdp::XdpAttachMode;
use crate::xsk::NapiBusyPoll;

/// The control socket of a configuration file that names none.
pub const DEFAULT_CONTROL: &str = "/run/xblade/control.sock";
/// Where exports keep their state unless `[defaults] state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xblade";
/// Buffer count advertised to initiators (the Linux initiator uses at most 128).
pub const DEFAULT_BUFFERS: u16 = 128;
/// UMEM frames per RX queue.
pub const DEFAULT_FRAMES: u32 = 4096;
/// RX descriptors per loop iteration.
pub const DEFAULT_BATCH: u32 = 64;
/// Microseconds of polling after the last work.
pub const DEFAULT_SPIN_US: u32 = 50;

/// Packets per preferred busy-poll pass (`SO_BUSY_POLL_BUDGET`) unless configured.
pub const DEFAULT_NAPI_BUSY_POLL_BUDGET: u16 = 64;

/// Allowed `SO_BUSY_POLL` values in µs (0: off). AF_XDP never blocks, so any non-zero value
/// only turns busy polling on; the bound keeps typos out.
pub const NAPI_BUSY_POLL_US_RANGE: RangeInclusive<u32> = 0..=1_000_000;
/// Allowed `SO_BUSY_POLL_BUDGET` values (the kernel takes up to U16_MAX).
pub const NAPI_BUSY_POLL_BUDGET_RANGE: RangeInclusive<u16> = 1..=u16::MAX;

/// Allowed UMEM frame counts per RX queue (and a power of two).
pub const FRAMES_RANGE: RangeInclusive<u32> = 64..=32768;
/// Allowed RX batch sizes.
pub const BATCH_RANGE: RangeInclusive<u32> = 1..=1024;
/// Allowed RX queue counts.
pub const QUEUES_RANGE: RangeInclusive<u32> = 1..=64;
/// Longest IDENTIFY serial number (the ATA field is 20 bytes).
pub const SERIAL_MAX: usize = 20;

/// A configuration that cannot be served. One line, naming the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `PATH: cannot read: ERROR`
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not TOML: `PATH:LINE: MESSAGE`
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key with a wrong, missing or inconsistent value, or a key that does not exist:
    /// `PATH:LINE: SECTION: key 'KEY': MESSAGE` (no `SECTION: ` for top-level keys).
    #[error("{path}:{line}: {}key '{key}': {message}", section_prefix(.section))]
    Invalid {
        path: PathBuf,
        line: usize,
        /// `defaults`, `interface NAME`, `export eS.L` (`export` before its address is
        /// known); `None` at the top level.
        section: Option<String>,
        key: String,
        message: String,
    },
    /// A command line that names nothing to serve (clap rules this out).
    #[error("{0}")]
    Usage(String),
}

fn section_prefix(section: &Option<String>) -> String {
    section
        .as_ref()
        .map(|s| format!("{s}: "))
        .unwrap_or_default()
}

/// Reads, parses and validates the file at `path`, then checks the environment (every file
/// opens as its export will open it, every interface exists).
pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
    load_reusing(path, &[])
}

/// As [`load`], but a file in `open` (path and read-only flag, as an export already
/// serves it) is not opened again: a reload after the privilege drop keeps serving files
/// only root could open.
pub fn load_reusing(path: &Path, open: &[(PathBuf, bool)]) -> Result<ServeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (config, origins) = parse_located(path, &text)?;
    check_environment(&config, &Located::new(path, &text), &origins, open)?;
    Ok(config)
}

/// Parses and validates `text` (the contents of `path`, which only names it in messages and
/// in [`ConfigSource::File`]). Pure: touches no file and no interface.
pub fn parse(path: &Path, text: &str) -> Result<ServeConfig, ConfigError> {
    parse_located(path, text).map(|(config, _)| config)
}

/// Checks a serial number: 1-20 printable ASCII characters.
pub fn check_serial(serial: &str) -> Result<(), String> {
    if serial.is_empty() || serial.len() > SERIAL_MAX {
        return Err(format!("'{serial}' is not 1-{SERIAL_MAX} characters long"));
    }
    if !serial.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("'{serial}' is not printable ASCII"));
    }
    Ok(())
}

/// Parses a listening address: an IPv4 or bracketed IPv6 address and a port
/// (`127.0.0.1:9650`, `[::1]:9650`, `0.0.0.0:0`). A host name is not taken: what it
/// resolves to could change under the daemon.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "'{text}' is not ADDR:PORT with an IP address (e.g. 127.0.0.1:9650, [::1]:9650, \
             0.0.0.0:9650 for every interface)"
        )
    })
}

/// Checks that `name` can be a Linux interface name (1-15 bytes; no '/', ':' or
/// whitespace; not `.` or `..`).
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(format!(
            "'{name}' cannot be an interface name (1-15 bytes, no '/', ':' or whitespace)"
        ));
    }
    Ok(())
}

/// Checks a UMEM frame count: a power of two in [`FRAMES_RANGE`].
pub fn check_frames(frames: u32) -> Result<(), String> {
    if !FRAMES_RANGE.contains(&frames) || !frames.is_power_of_two() {
        return Err(format!(
            "{frames} frames: need a power of two from {} to {}",
            FRAMES_RANGE.start(),
            FRAMES_RANGE.end()
        ));
    }
    Ok(())
}

/// The size of a `null:SIZE` backing store in bytes (`SIZE` takes K, M, G and T suffixes),
/// at least one sector. `None` when it is not one.
pub fn null_size(file: &str) -> Option<u64> {
    let bytes = crate::backend::parse_size(file.strip_prefix(NULL_PREFIX)?)?;
    (bytes >= 512).then_some(bytes)
}

// ---------------------------------------------------------------------------------------
// The file as written. Integers the file may get out of range are read as i64 so that the
// range check, not serde, words the error.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    interfaces: BTreeMap<Spanned<String>, RawInterface>,
    #[serde(default)]
    export: Vec<Spanned<RawExport>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    control: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    stats_interval: Option<u64>,
    metrics_listen: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    buffers: Option<Spanned<i64>>,
    read_only: Option<bool>,
    sync: Option<bool>,
    locked: Option<bool>,
    io_engine: Option<RawIoEngine>,
    xdp_mode: Option<RawXdpMode>,
    queues: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    batch: Option<Spanned<i64>>,
    spin_us: Option<u32>,
    busy_poll: Option<bool>,
    pin: Option<bool>,
    napi_busy_poll_us: Option<Spanned<i64>>,
    napi_busy_poll_budget: Option<Spanned<i64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    xdp_mode: Option<RawXdpMode>,
    queues: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    batch: Option<Spanned<i64>>,
    spin_us: Option<u32>,
    busy_poll: Option<bool>,
    pin: Option<bool>,
    napi_busy_poll_us: Option<Spanned<i64>>,
    napi_busy_poll_budget: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    shelf: Spanned<i64>,
    slot: Spanned<i64>,
    file: Spanned<String>,
    interfaces: Spanned<Vec<Spanned<String>>>,
    read_only: Option<bool>,
    sync: Option<bool>,
    offset_sectors: Option<u64>,
    length_sectors: Option<Spanned<u64>>,
    mask: Option<Vec<Spanned<String>>>,
    locked: Option<bool>,
    buffers: Option<Spanned<i64>>,
    serial: Option<Spanned<String>>,
    io_engine: Option<RawIoEngine>,
    state: Option<bool>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawIoEngine {
    Auto,
    Uring,
    Sync,
    Mmap,
}

impl From<RawIoEngine> for IoEngine {
    fn from(raw: RawIoEngine) -> IoEngine {
        match raw {
            RawIoEngine::Auto => IoEngine::Auto,
            RawIoEngine::Uring => IoEngine::Uring,
            RawIoEngine::Sync => IoEngine::Sync,
            RawIoEngine::Mmap => IoEngine::Mmap,
        }
    }
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawXdpMode {
    Auto,
    Native,
    Generic,
}

impl From<RawXdpMode> for XdpAttachMode {
    fn from(raw: RawXdpMode) -> XdpAttachMode {
        match raw {
            RawXdpMode::Auto => XdpAttachMode::Auto,
            RawXdpMode::Native => XdpAttachMode::Native,
            RawXdpMode::Generic => XdpAttachMode::Generic,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation.

/// The text being parsed, to turn byte offsets into line numbers for messages.
struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Located<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Located { path, text }
    }

    /// 1-based line of byte offset `at`.
    fn line(&self, at: usize) -> usize {
        let at = at.min(self.text.len());
        self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn invalid(
        &self,
        span: Range<usize>,
        section: Option<&str>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(span.start),
            section: section.map(str::to_owned),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// An integer in `range` (and a power of two if `power_of_two`).
    fn int<T: TryFrom<i64> + Into<i64> + Copy + std::fmt::Display>(
        &self,
        value: &Spanned<i64>,
        section: Option<&str>,
        key: &str,
        range: RangeInclusive<T>,
        power_of_two: bool,
    ) -> Result<T, ConfigError> {
        let v = *value.get_ref();
        let (lo, hi) = ((*range.start()).into(), (*range.end()).into());
        let in_range = (lo..=hi).contains(&v);
        if !in_range || (power_of_two && (v as u64).count_ones() != 1) {
            let (lo, hi) = (range.start(), range.end());
            let message = if power_of_two {
                format!("{v} is not a power of two from {lo} to {hi}")
            } else {
                format!("{v} is out of range ({lo}-{hi})")
            };
            return Err(self.invalid(value.span(), section, key, message));
        }
        T::try_from(v).map_err(|_| self.invalid(value.span(), section, key, "out of range"))
    }

    /// Turns toml's error (syntax, unknown key, wrong type, missing key) into ours, with the
    /// key and section found from the text around the error where the text shows them.
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let message = tidy_serde_message(error.message());
        let Some(span) = error.span() else {
            return ConfigError::Syntax {
                path: self.path.to_owned(),
                line: 1,
                message,
            };
        };
        let line = self.line(span.start);
        let raw = error.message();
        let on_key = |key: String, message: String| ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            section: self.section_at(span.clone()),
            key,
            message,
        };
        if let Some(rest) = raw.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once('`') {
                let expected = expected.trim_start_matches(',').trim();
                return on_key(
                    key.to_owned(),
                    format!("unknown key ({})", expected.replace('`', "'")),
                );
            }
        }
        if let Some(rest) = raw.strip_prefix("missing field `") {
            if let Some((key, _)) = rest.split_once('`') {
                return on_key(key.to_owned(), "missing (it is required)".to_owned());
            }
        }
        if raw == "duplicate key" {
            if let Some(key) = self.text.get(span.clone()) {
                return on_key(key.trim_matches('"').to_owned(), "given twice".to_owned());
            }
        }
        let data_error = [
            "invalid type:",
            "invalid value:",
            "invalid length",
            "unknown variant",
        ];
        if data_error.iter().any(|p| raw.starts_with(p)) {
            if let Some(key) = self.key_before(span.start) {
                return on_key(key, message);
            }
        }
        ConfigError::Syntax {
            path: self.path.to_owned(),
            line,
            message,
        }
    }

    /// The key whose value starts at `at`: the last `KEY =` before it on its line, or on
    /// an earlier line of a value that spans lines (an array).
    fn key_before(&self, at: usize) -> Option<String> {
        let before = &self.text[..at.min(self.text.len())];
        let mut lines = before.rsplit('\n');
        // The line of the value, up to it: `key = ` or `{a = 1, key = `.
        if let Some(key) = last_assigned_key(lines.next()?) {
            return Some(key);
        }
        for line in lines {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') && !line.contains('=') {
                return None;
            }
            if let Some(key) = last_assigned_key(line) {
                return Some(key);
            }
        }
        None
    }

    /// The section an error at `span` is in, from the table header around it:
    /// `defaults`, `interface NAME`, `export`; `None` at the top level.
    fn section_at(&self, span: Range<usize>) -> Option<String> {
        let line_start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line = &self.text[line_start..line_end];
        let header = |l: &str| -> Option<String> {
            let l = l.trim();
            let inner = l.strip_prefix("[[").or_else(|| l.strip_prefix('['))?;
            let end = inner.find(']')?;
            Some(inner[..end].trim().to_owned())
        };
        let path = match header(line) {
            // An error in a header line: a missing key (the whole header is the span) is in
            // that table; an unknown table name is in the table before its last segment.
            Some(full) if span.start > line_start + line.len() - line.trim_start().len() => {
                let upto = &self.text[line_start..span.start];
                let upto = upto.trim_start().trim_start_matches('[');
                let parent = upto.trim().trim_end_matches('.').trim();
                if full.starts_with(parent) {
                    parent.to_owned()
                } else {
                    full
                }
            }
            Some(full) => full,
            None => self.text[..line_start]
                .lines()
                .rev()
                .find_map(header)
                .unwrap_or_default(),
        };
        let path = path.replace('"', "");
        match path.as_str() {
            "" => None,
            p => Some(match p.strip_prefix("interfaces.") {
                Some(name) => format!("interface {name}"),
                None => p.to_owned(),
            }),
        }
    }
}

/// The last `KEY =` (bare or quoted key) in `line`, if any.
fn last_assigned_key(line: &str) -> Option<String> {
    let eq = line.rfind('=')?;
    let key = line[..eq].trim_end();
    let start = key
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"'))
        .map_or(0, |i| i + 1);
    let key = key[start..].trim_matches('"');
    (!key.is_empty()).then(|| key.to_owned())
}

/// serde's wording in TOML's terms: "expected i64" is "expected an integer", a sequence an
/// array, a struct or map a table.
fn tidy_serde_message(message: &str) -> String {
    let mut message = message
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer below 2^32")
        .replace("a sequence", "an array")
        .replace("a map", "a table")
        .replace('`', "'");
    if let Some(at) = message.find("expected struct ") {
        message.truncate(at);
        message.push_str("expected a table");
    }
    message
}

/// Where things were written, for the environment checks' messages.
#[derive(Default)]
struct Origins {
    /// Each export's `file` value.
    files: BTreeMap<ExportKey, Range<usize>>,
    /// Each interface's first mention in an export's `interfaces`.
    interfaces: BTreeMap<String, (ExportKey, Range<usize>)>,
    /// `[defaults] user`.
    user: Option<Range<usize>>,
}

/// The interface settings, defaults overlaid with an `[interfaces.NAME]` table.
#[derive(Clone)]
struct Tuning {
    xdp_mode: XdpAttachMode,
    queues: Option<u32>,
    frames: u32,
    batch: u32,
    spin_us: u32,
    busy_poll: bool,
    pin: bool,
    /// `SO_BUSY_POLL` in µs; 0: preferred busy polling off.
    napi_busy_poll_us: u32,
    napi_busy_poll_budget: u16,
}

impl Tuning {
    fn overlay(
        &self,
        at: &Located,
        section: &str,
        raw: &RawInterface,
    ) -> Result<Tuning, ConfigError> {
        let s = Some(section);
        let mut t = self.clone();
        if let Some(mode) = raw.xdp_mode {
            t.xdp_mode = mode.into();
        }
        if let Some(q) = &raw.queues {
            t.queues = Some(at.int(q, s, "queues", QUEUES_RANGE, false)?);
        }
        if let Some(f) = &raw.frames {
            t.frames = at.int(f, s, "frames", FRAMES_RANGE, true)?;
        }
        if let Some(b) = &raw.batch {
            t.batch = at.int(b, s, "batch", BATCH_RANGE, false)?;
        }
        t.spin_us = raw.spin_us.unwrap_or(t.spin_us);
        t.busy_poll = raw.busy_poll.unwrap_or(t.busy_poll);
        t.pin = raw.pin.unwrap_or(t.pin);
        if let Some(us) = &raw.napi_busy_poll_us {
            t.napi_busy_poll_us =
                at.int(us, s, "napi_busy_poll_us", NAPI_BUSY_POLL_US_RANGE, false)?;
        }
        if let Some(budget) = &raw.napi_busy_poll_budget {
            t.napi_busy_poll_budget = at.int(
                budget,
                s,
                "napi_busy_poll_budget",
                NAPI_BUSY_POLL_BUDGET_RANGE,
                false,
            )?;
            if t.napi_busy_poll_us == 0 {
                return Err(at.invalid(
                    budget.span(),
                    s,
                    "napi_busy_poll_budget",
                    "has no effect while napi_busy_poll_us is 0 (off): set napi_busy_poll_us \
                     too (e.g. 20), or leave the budget out",
                ));
            }
        }
        Ok(t)
    }

    fn config(&self, name: &str) -> InterfaceConfig {
        InterfaceConfig {
            name: name.to_owned(),
            xdp_mode: self.xdp_mode,
            queues: self.queues,
            frames: self.frames,
            batch: self.batch,
            spin_us: self.spin_us,
            busy_poll: self.busy_poll,
            pin: self.pin,
            napi_busy_poll: (self.napi_busy_poll_us > 0).then_some(NapiBusyPoll {
                busy_poll_us: self.napi_busy_poll_us,
                budget: self.napi_busy_poll_budget,
            }),
            tuning: TuningFlags::default(),
        }
    }
}

const BUILTIN_TUNING: Tuning = Tuning {
    xdp_mode: XdpAttachMode::Auto,
    queues: None,
    frames: DEFAULT_FRAMES,
    batch: DEFAULT_BATCH,
    spin_us: DEFAULT_SPIN_US,
    busy_poll: false,
    pin: true,
    napi_busy_poll_us: 0,
    napi_busy_poll_budget: DEFAULT_NAPI_BUSY_POLL_BUDGET,
};

fn parse_located(path: &Path, text: &str) -> Result<(ServeConfig, Origins), ConfigError> {
    let at = Located::new(path, text);
    let raw: RawFile = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
    let d = raw.defaults;
    let defaults = Some("defaults");

    let nonempty = |value: &Option<Spanned<String>>, key: &str, default: &str| match value {
        Some(v) if v.get_ref().is_empty() => Err(at.invalid(v.span(), defaults, key, "empty path")),
        Some(v) => Ok(PathBuf::from(v.get_ref())),
        None => Ok(PathBuf::from(default)),
    };
    let control = nonempty(&d.control, "control", DEFAULT_CONTROL)?;
    let state_dir = nonempty(&d.state_dir, "state_dir", DEFAULT_STATE_DIR)?;
    let metrics_listen = match &d.metrics_listen {
        Some(addr) => Some(
            parse_listen_addr(addr.get_ref())
                .map_err(|m| at.invalid(addr.span(), defaults, "metrics_listen", m))?,
        ),
        None => None,
    };
    if let Some(user) = &d.user {
        if user.get_ref().is_empty() {
            return Err(at.invalid(user.span(), defaults, "user", "empty user name"));
        }
    }
    let default_buffers = match &d.buffers {
        Some(b) => at.int(b, defaults, "buffers", 1..=u16::MAX, false)?,
        None => DEFAULT_BUFFERS,
    };
    let base = BUILTIN_TUNING.overlay(
        &at,
        "defaults",
        &RawInterface {
            xdp_mode: d.xdp_mode,
            queues: d.queues.clone(),
            frames: d.frames.clone(),
            batch: d.batch.clone(),
            spin_us: d.spin_us,
            busy_poll: d.busy_poll,
            pin: d.pin,
            napi_busy_poll_us: d.napi_busy_poll_us.clone(),
            napi_busy_poll_budget: d.napi_busy_poll_budget.clone(),
        },
    )?;
    let mut tunings = BTreeMap::new();
    for (name, table) in &raw.interfaces {
        let section = format!("interface {}", name.get_ref());
        tunings.insert(name.get_ref().clone(), base.overlay(&at, &section, table)?);
    }

    let mut exports = BTreeMap::new();
    let mut origins = Origins {
        user: d.user.as_ref().map(Spanned::span),
        ..Origins::default()
    };
    let mut shelf_spans: BTreeMap<ExportKey, Range<usize>> = BTreeMap::new();
    for table in &raw.export {
        let e = table.get_ref();
        let anon = Some("export");
        let shelf: u16 = at.int(&e.shelf, anon, "shelf", 0..=0xFFFE, false)?;
        let slot: u8 = at.int(&e.slot, anon, "slot", 0..=0xFE, false)?;
        let key = ExportKey::new(shelf, slot);
        let section = format!("export {key}");
        let s = Some(section.as_str());
        if let Some(first) = shelf_spans.get(&key) {
            return Err(at.invalid(
                e.shelf.span(),
                s,
                "shelf",
                format!(
                    "{key} is already exported at line {} (one [[export]] per shelf.slot; \
                     list several interfaces in it for multipath)",
                    at.line(first.start)
                ),
            ));
        }
        shelf_spans.insert(key, e.shelf.span());

        let file = e.file.get_ref();
        if file.is_empty() {
            return Err(at.invalid(e.file.span(), s, "file", "empty path"));
        }
        if file.starts_with(NULL_PREFIX) && null_size(file).is_none() {
            return Err(at.invalid(
                e.file.span(),
                s,
                "file",
                format!("'{file}': not a size of at least 512 bytes (e.g. null:64G)"),
            ));
        }

        if e.interfaces.get_ref().is_empty() {
            return Err(at.invalid(
                e.interfaces.span(),
                s,
                "interfaces",
                "no interface listed (need at least one)",
            ));
        }
        let mut interfaces = BTreeSet::new();
        for name in e.interfaces.get_ref() {
            check_interface_name(name.get_ref())
                .map_err(|m| at.invalid(name.span(), s, "interfaces", m))?;
            if !interfaces.insert(name.get_ref().clone()) {
                return Err(at.invalid(
                    name.span(),
                    s,
                    "interfaces",
                    format!("'{}' is listed twice", name.get_ref()),
                ));
            }
            origins
                .interfaces
                .entry(name.get_ref().clone())
                .or_insert((key, name.span()));
        }

        if let Some(length) = &e.length_sectors {
            if *length.get_ref() == 0 {
                return Err(at.invalid(
                    length.span(),
                    s,
                    "length_sectors",
                    "0 sectors: leave it out to export to the end of the file",
                ));
            }
        }
        let mut mask = Vec::new();
        for mac in e.mask.iter().flatten() {
            let parsed = mac.get_ref().parse::<Mac>().map_err(|_| {
                at.invalid(
                    mac.span(),
                    s,
                    "mask",
                    format!("'{}' is not a MAC address", mac.get_ref()),
                )
            })?;
            mask.push(parsed);
        }
        let buffers = match &e.buffers {
            Some(b) => at.int(b, s, "buffers", 1..=u16::MAX, false)?,
            None => default_buffers,
        };
        if let Some(serial) = &e.serial {
            check_serial(serial.get_ref())
                .map_err(|m| at.invalid(serial.span(), s, "serial", m))?;
        }
        let state = if e.state.unwrap_or(true) {
            StateLocation::File(state_dir.join(format!("{key}.state")))
        } else {
            StateLocation::None
        };
        origins.files.insert(key, e.file.span());
        exports.insert(
            key,
            ExportConfig {
                key,
                file: PathBuf::from(file),
                interfaces: interfaces.into_iter().collect(),
                read_only: e.read_only.or(d.read_only).unwrap_or(false),
                sync: e.sync.or(d.sync).unwrap_or(false),
                offset_sectors: e.offset_sectors.unwrap_or(0),
                length_sectors: e.length_sectors.as_ref().map(|l| *l.get_ref()),
                mask,
                locked: e.locked.or(d.locked).unwrap_or(false),
                buffers,
                serial: e.serial.as_ref().map(|s| s.get_ref().clone()),
                io_engine: e
                    .io_engine
                    .or(d.io_engine)
                    .map_or(IoEngine::Auto, Into::into),
                state,
            },
        );
    }

    for name in raw.interfaces.keys() {
        if !origins.interfaces.contains_key(name.get_ref()) {
            return Err(at.invalid(
                name.span(),
                None,
                &format!("interfaces.{}", name.get_ref()),
                format!("interface {} is not used by any export", name.get_ref()),
            ));
        }
    }
    let interfaces = origins
        .interfaces
        .keys()
        .map(|name| {
            let tuning = tunings.get(name).unwrap_or(&base);
            (name.clone(), tuning.config(name))
        })
        .collect();

    let config = ServeConfig {
        source: ConfigSource::File(path.to_owned()),
        control: Some(control),
        stats_interval_s: d.stats_interval.unwrap_or(0),
        metrics_listen,
        user: d.user.map(Spanned::into_inner),
        state_dir: Some(state_dir),
        interfaces,
        exports,
    };
    Ok((config, origins))
}

// ---------------------------------------------------------------------------------------
// The environment.

/// Every export's file opens as the export will open it (read-only: for reading; else for
/// reading and writing; `null:` is not a file), every interface exists, and the user to run
/// as is in the user database.
fn check_environment(
    config: &ServeConfig,
    at: &Located,
    origins: &Origins,
    open: &[(PathBuf, bool)],
) -> Result<(), ConfigError> {
    if let (Some(user), Some(span)) = (&config.user, &origins.user) {
        crate::privilege::Account::lookup(user)
            .map_err(|e| at.invalid(span.clone(), Some("defaults"), "user", e.to_string()))?;
    }
    for (key, export) in &config.exports {
        let span = origins.files.get(key).cloned().unwrap_or(0..0);
        let section = format!("export {key}");
        if open.contains(&(export.file.clone(), export.read_only)) {
            continue;
        }
        check_file(&export.file, export.read_only)
            .map_err(|m| at.invalid(span, Some(&section), "file", m))?;
    }
    for name in config.interfaces.keys() {
        let Some((key, span)) = origins.interfaces.get(name) else {
            continue;
        };
        if let Err(e) = Netdev::lookup(name) {
            return Err(at.invalid(
                span.clone(),
                Some(&format!("export {key}")),
                "interfaces",
                e.to_string(),
            ));
        }
    }
    Ok(())
}

/// Opens `file` as an export would (without O_DIRECT), to find a missing or forbidden file
/// before anything starts.
fn check_file(file: &Path, read_only: bool) -> Result<(), String> {
    if file.to_str().is_some_and(|f| f.starts_with(NULL_PREFIX)) {
        return Ok(());
    }
    let shown = file.display();
    let metadata = std::fs::metadata(file).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{shown} does not exist"),
        _ => format!("cannot stat {shown}: {e}"),
    })?;
    if metadata.is_dir() {
        return Err(format!("{shown} is a directory"));
    }
    let how = if read_only {
        "reading"
    } else {
        "reading and writing"
    };
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file)
        .map(drop)
        .map_err(|e| format!("cannot open {shown} for {how}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/xblade.toml";

    fn parse_ok(text: &str) -> ServeConfig {
        parse(Path::new(PATH), text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (line, section, key, message) of an Invalid error; panics on anything else.
    fn invalid(text: &str) -> (usize, Option<String>, String, String) {
        match parse(Path::new(PATH), text) {
            Err(ConfigError::Invalid {
                line,
                section,
                key,
                message,
                ..
            }) => (line, section, key, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Asserts an Invalid error at `line` for `key`, whose message contains `needle`.
    #[track_caller]
    fn assert_invalid(text: &str, line: usize, section: Option<&str>, key: &str, needle: &str) {
        let (l, s, k, m) = invalid(text);
        assert_eq!(
            (l, s.as_deref(), k.as_str()),
            (line, section, key),
            "message: {m}"
        );
        assert!(m.contains(needle), "{m:?} lacks {needle:?}");
    }

    const FULL: &str = r#"# a whole box
[defaults]
control = "/run/x/ctl.sock"
state_dir = "/var/lib/x"
stats_interval = 5
metrics_listen = "127.0.0.1:9650"
buffers = 64
read_only = true
sync = true
locked = true
io_engine = "uring"
xdp_mode = "generic"
frames = 2048
batch = 32
spin_us = 10
busy_poll = true
pin = false
queues = 2
napi_busy_poll_us = 20

[interfaces.eth1]
xdp_mode = "native"
frames = 8192
napi_busy_poll_budget = 128

[interfaces.eth2]
queues = 4
batch = 128
spin_us = 0
busy_poll = false
pin = true
napi_busy_poll_us = 0

[[export]]
shelf = 1
slot = 0
file = "/srv/vol0.img"
interfaces = ["eth2", "eth1"]
read_only = false
sync = false
offset_sectors = 8
length_sectors = 2048
mask = ["52:54:00:12:34:56", "020000000001"]
locked = false
buffers = 128
serial = "VOL0"
io_engine = "sync"
state = true

[[export]]
shelf = 65534
slot = 254
file = "null:64G"
interfaces = ["eth3"]
state = false
"#;

    #[test]
    fn full_example_parses_to_the_exact_model() {
        let config = parse_ok(FULL);
        let e10 = ExportKey::new(1, 0);
        let elast = ExportKey::new(65534, 254);
        let napi = |busy_poll_us, budget| {
            Some(NapiBusyPoll {
                busy_poll_us,
                budget,
            })
        };
        let iface = |name: &str,
                     xdp_mode,
                     queues,
                     frames,
                     batch,
                     spin_us,
                     busy_poll,
                     pin,
                     napi_busy_poll| {
            InterfaceConfig {
                name: name.to_owned(),
                xdp_mode,
                queues,
                frames,
                batch,
                spin_us,
                busy_poll,
                pin,
                napi_busy_poll,
                tuning: TuningFlags::default(),
            }
        };
        let expected = ServeConfig {
            source: ConfigSource::File(PathBuf::from(PATH)),
            control: Some(PathBuf::from("/run/x/ctl.sock")),
            stats_interval_s: 5,
            metrics_listen: Some("127.0.0.1:9650".parse().unwrap()),
            user: None,
            state_dir: Some(PathBuf::from("/var/lib/x")),
            interfaces: [
                iface(
                    "eth1",
                    XdpAttachMode::Native,
                    Some(2),
                    8192,
                    32,
                    10,
                    true,
                    false,
                    napi(20, 128),
                ),
                iface(
                    "eth2",
                    XdpAttachMode::Generic,
                    Some(4),
                    2048,
                    128,
                    0,
                    false,
                    true,
                    None,
                ),
                iface(
                    "eth3",
                    XdpAttachMode::Generic,
                    Some(2),
                    2048,
                    32,
                    10,
                    true,
                    false,
                    napi(20, DEFAULT_NAPI_BUSY_POLL_BUDGET),
                ),
            ]
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect(),
            exports: [
                ExportConfig {
                    key: e10,
                    file: PathBuf::from("/srv/vol0.img"),
                    interfaces: vec!["eth1".into(), "eth2".into()],
                    read_only: false,
                    sync: false,
                    offset_sectors: 8,
                    length_sectors: Some(2048),
                    mask: vec![
                        Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                        Mac([2, 0, 0, 0, 0, 1]),
                    ],
                    locked: false,
                    buffers: 128,
                    serial: Some("VOL0".into()),
                    io_engine: IoEngine::Sync,
                    state: StateLocation::File(PathBuf::from("/var/lib/x/e1.0.state")),
                },
                ExportConfig {
                    key: elast,
                    file: PathBuf::from("null:64G"),
                    interfaces: vec!["eth3".into()],
                    read_only: true,
                    sync: true,
                    offset_sectors: 0,
                    length_sectors: None,
                    mask: vec![],
                    locked: true,
                    buffers: 64,
                    serial: None,
                    io_engine: IoEngine::Uring,
                    state: StateLocation::None,
                },
            ]
            .into_iter()
            .map(|e| (e.key, e))
            .collect(),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn builtin_defaults_fill_a_minimal_export() {
        let config = parse_ok(
            "[[export]]\nshelf = 3\nslot = 7\nfile = \"/srv/a\"\ninterfaces = [\"eth0\"]\n",
        );
        assert_eq!(config.control, Some(PathBuf::from(DEFAULT_CONTROL)));
        assert_eq!(config.stats_interval_s, 0);
        assert_eq!(config.metrics_listen, None);
        let e = &config.exports[&ExportKey::new(3, 7)];
        assert_eq!(
            e,
            &ExportConfig {
                key: ExportKey::new(3, 7),
                file: PathBuf::from("/srv/a"),
                interfaces: vec!["eth0".into()],
                read_only: false,
                sync: false,
                offset_sectors: 0,
                length_sectors: None,
                mask: vec![],
                locked: false,
                buffers: DEFAULT_BUFFERS,
                serial: None,
                io_engine: IoEngine::Auto,
                state: StateLocation::File(PathBuf::from("/var/lib/xblade/e3.7.state")),
            }
        );
        assert_eq!(
            config.interfaces["eth0"],
            InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: XdpAttachMode::Auto,
                queues: None,
                frames: DEFAULT_FRAMES,
                batch: DEFAULT_BATCH,
                spin_us: DEFAULT_SPIN_US,
                busy_poll: false,
                pin: true,
                napi_busy_poll: None,
                tuning: TuningFlags::default(),
            }
        );
    }

    #[test]
    fn empty_file_is_an_empty_box() {
        for text in ["", "# nothing\n", "[defaults]\n"] {
            let config = parse_ok(text);
            assert!(config.exports.is_empty() && config.interfaces.is_empty());
            assert_eq!(config.source, ConfigSource::File(PathBuf::from(PATH)));
            assert_eq!(config.control, Some(PathBuf::from(DEFAULT_CONTROL)));
        }
    }

    #[test]
    fn interface_overrides_merge_over_defaults_field_by_field() {
        let config = parse_ok(
            "[defaults]\nframes = 1024\nbatch = 16\n\n[interfaces.a]\nbatch = 8\n\n\
             [[export]]\nshelf = 1\nslot = 1\nfile = \"f\"\ninterfaces = [\"a\", \"b\"]\n",
        );
        assert_eq!(
            (config.interfaces["a"].frames, config.interfaces["a"].batch),
            (1024, 8)
        );
        assert_eq!(
            (config.interfaces["b"].frames, config.interfaces["b"].batch),
            (1024, 16)
        );
    }

    #[test]
    fn multipath_is_one_export_on_several_interfaces() {
        let config = parse_ok(
            "[[export]]\nshelf = 1\nslot = 1\nfile = \"f\"\ninterfaces = [\"b\", \"a\"]\n\
             [[export]]\nshelf = 1\nslot = 2\nfile = \"g\"\ninterfaces = [\"a\"]\n",
        );
        assert_eq!(config.exports.len(), 2);
        assert_eq!(
            config.exports[&ExportKey::new(1, 1)].interfaces,
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(config.interfaces.len(), 2);
    }

    const EXPORT: &str = "[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = [\"eth0\"]\n";

    #[test]
    fn syntax_errors_name_the_line() {
        let text = "[defaults]\nframes = 64\n\n[[export]\n";
        match parse(Path::new(PATH), text) {
            Err(e @ ConfigError::Syntax { line: 4, .. }) => {
                assert!(e.to_string().starts_with("/etc/xblade.toml:4: "), "{e}")
            }
            other => panic!("{other:?}"),
        }
        match parse(Path::new(PATH), "a = \"unterminated\n") {
            Err(ConfigError::Syntax { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_anywhere() {
        assert_invalid("bogus = 1\n", 1, None, "bogus", "unknown key");
        assert_invalid("[bogus]\n", 1, None, "bogus", "unknown key");
        assert_invalid(
            "[defaults]\nframes = 64\ncontrl = \"x\"\n",
            3,
            Some("defaults"),
            "contrl",
            "unknown key",
        );
        assert_invalid(
            "[interfaces.eth0]\n\nqueue = 1\n",
            3,
            Some("interface eth0"),
            "queue",
            "unknown key",
        );
        assert_invalid(
            &format!("{EXPORT}readonly = true\n"),
            6,
            Some("export"),
            "readonly",
            "'read_only'",
        );
        assert_invalid(
            "export = [{shelf = 1, slot = 0, file = \"f\", interfaces = [\"a\"], x = 1}]\n",
            1,
            None,
            "x",
            "unknown key",
        );
    }

    #[test]
    fn napi_busy_poll_keys_are_checked_where_written() {
        const EXPORT: &str =
            "[[export]]\nshelf = 1\nslot = 1\nfile = \"f\"\ninterfaces = [\"a\"]\n";
        let on = parse_ok(&format!(
            "[interfaces.a]\nnapi_busy_poll_us = 50\nnapi_busy_poll_budget = 16\n{EXPORT}"
        ));
        assert_eq!(
            on.interfaces["a"].napi_busy_poll,
            Some(NapiBusyPoll {
                busy_poll_us: 50,
                budget: 16
            })
        );
        let off = parse_ok(&format!("[defaults]\nnapi_busy_poll_us = 0\n{EXPORT}"));
        assert_eq!(off.interfaces["a"].napi_busy_poll, None);
        assert_invalid(
            &format!("[defaults]\nnapi_busy_poll_us = -1\n{EXPORT}"),
            2,
            Some("defaults"),
            "napi_busy_poll_us",
            "out of range (0-1000000)",
        );
        assert_invalid(
            &format!("[interfaces.a]\nnapi_busy_poll_us = 5\nnapi_busy_poll_budget = 0\n{EXPORT}"),
            3,
            Some("interface a"),
            "napi_busy_poll_budget",
            "out of range (1-65535)",
        );
        assert_invalid(
            &format!("[defaults]\nnapi_busy_poll_us = 5\nnapi_busy_poll_budget = 65536\n{EXPORT}"),
            3,
            Some("defaults"),
            "napi_busy_poll_budget",
            "out of range (1-65535)",
        );
        assert_invalid(
            &format!("[interfaces.a]\nnapi_busy_poll_budget = 64\n{EXPORT}"),
            2,
            Some("interface a"),
            "napi_busy_poll_budget",
            "set napi_busy_poll_us too",
        );
        assert_invalid(
            &format!("[defaults]\nnapi_busy_poll_us = true\n{EXPORT}"),
            2,
            Some("defaults"),
            "napi_busy_poll_us",
            "expected an integer",
        );
    }

    #[test]
    fn wrong_types_and_missing_and_duplicate_keys() {
        assert_invalid(
            "\n[defaults]\nframes = \"many\"\n",
            3,
            Some("defaults"),
            "frames",
            "expected an integer",
        );
        assert_invalid(
            "[defaults]\nio_engine = \"fast\"\n",
            2,
            Some("defaults"),
            "io_engine",
            "unknown variant 'fast'",
        );
        assert_invalid(
            "[defaults]\nxdp_mode = \"hw\"\n",
            2,
            Some("defaults"),
            "xdp_mode",
            "'native'",
        );
        assert_invalid(
            "[defaults]\nread_only = 1\n",
            2,
            Some("defaults"),
            "read_only",
            "expected a boolean",
        );
        assert_invalid(
            &format!("{EXPORT}offset_sectors = -1\n"),
            6,
            Some("export"),
            "offset_sectors",
            "non-negative",
        );
        assert_invalid(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = [\n  \"eth0\",\n  7,\n]\n",
            7,
            Some("export"),
            "interfaces",
            "expected a string",
        );
        assert_invalid(
            "[[export]]\nshelf = 1\nfile = \"f\"\ninterfaces = [\"a\"]\n",
            1,
            Some("export"),
            "slot",
            "missing",
        );
        assert_invalid(
            "[defaults]\nbatch = 1\nbatch = 2\n",
            3,
            Some("defaults"),
            "batch",
            "twice",
        );
    }

    #[test]
    fn locked_in_defaults_and_per_export() {
        let two = "[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = [\"eth0\"]\n\n\
                   [[export]]\nshelf = 1\nslot = 1\nfile = \"g\"\ninterfaces = [\"eth0\"]\n";
        let locked = |config: &ServeConfig| -> Vec<bool> {
            config.exports.values().map(|e| e.locked).collect()
        };
        assert_eq!(locked(&parse_ok(two)), [false, false], "off by default");
        assert_eq!(
            locked(&parse_ok(&format!("[defaults]\nlocked = true\n\n{two}"))),
            [true, true],
            "[defaults] applies to every export"
        );
        let own = two.replace("slot = 1\n", "slot = 1\nlocked = false\n");
        assert_eq!(
            locked(&parse_ok(&format!("[defaults]\nlocked = true\n\n{own}"))),
            [true, false],
            "an export's own setting wins"
        );
        let own = two.replace("slot = 0\n", "slot = 0\nlocked = true\n");
        assert_eq!(locked(&parse_ok(&own)), [true, false]);
        assert_invalid(
            "[defaults]\nlocked = \"yes\"\n",
            2,
            Some("defaults"),
            "locked",
            "expected a boolean",
        );
        assert_invalid(
            &format!("{EXPORT}locked = 1\n"),
            6,
            Some("export"),
            "locked",
            "expected a boolean",
        );
        assert_invalid(
            "[interfaces.eth0]\nlocked = true\n",
            2,
            Some("interface eth0"),
            "locked",
            "unknown key",
        );
    }

    #[test]
    fn addresses_out_of_range_and_duplicates() {
        assert_invalid(
            "[[export]]\nshelf = 65535\nslot = 0\nfile = \"f\"\ninterfaces = [\"a\"]\n",
            2,
            Some("export"),
            "shelf",
            "65535 is out of range (0-65534)",
        );
        assert_invalid(
            "[[export]]\nshelf = -1\nslot = 0\nfile = \"f\"\ninterfaces = [\"a\"]\n",
            2,
            Some("export"),
            "shelf",
            "out of range",
        );
        assert_invalid(
            "[[export]]\nshelf = 1\nslot = 255\nfile = \"f\"\ninterfaces = [\"a\"]\n",
            3,
            Some("export"),
            "slot",
            "255 is out of range (0-254)",
        );
        let text = format!(
            "{EXPORT}\n[[export]]\nslot = 0\nshelf = 1\nfile = \"g\"\ninterfaces = [\"eth1\"]\n"
        );
        assert_invalid(
            &text,
            9,
            Some("export e1.0"),
            "shelf",
            "e1.0 is already exported at line 2",
        );
    }

    #[test]
    fn interface_lists() {
        assert_invalid(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = []\n",
            5,
            Some("export e1.0"),
            "interfaces",
            "no interface",
        );
        assert_invalid(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = [\n \"a\",\n \"b\",\n \"a\"]\n",
            8,
            Some("export e1.0"),
            "interfaces",
            "'a' is listed twice",
        );
        for bad in ["", "a/b", "a b", "a:1", "sixteen-bytes-xx", ".."] {
            assert_invalid(
                &format!("[[export]]\nshelf = 1\nslot = 0\nfile = \"f\"\ninterfaces = [\"ok\", \"{bad}\"]\n"),
                5,
                Some("export e1.0"),
                "interfaces",
                "cannot be an interface name",
            );
        }
        assert!(check_interface_name("fifteen-bytes-x").is_ok());
        assert_invalid(
            &format!(
                "{EXPORT}\n[interfaces.eth0]\nframes = 64\n\n[interfaces.eth9]\nframes = 64\n"
            ),
            10,
            None,
            "interfaces.eth9",
            "interface eth9 is not used by any export",
        );
    }

    #[test]
    fn metrics_listen_addresses() {
        for (text, addr) in [
            ("127.0.0.1:9650", "127.0.0.1:9650"),
            ("0.0.0.0:0", "0.0.0.0:0"),
            ("[::1]:9650", "[::1]:9650"),
        ] {
            let config = parse_ok(&format!("[defaults]\nmetrics_listen = \"{text}\"\n"));
            assert_eq!(config.metrics_listen, Some(addr.parse().unwrap()));
        }
        for bad in [
            "localhost:9650",
            "127.0.0.1",
            "9650",
            "::1:9650",
            "127.0.0.1:65536",
            "",
        ] {
            assert_invalid(
                &format!("[defaults]\nstats_interval = 1\nmetrics_listen = \"{bad}\"\n"),
                3,
                Some("defaults"),
                "metrics_listen",
                "is not ADDR:PORT with an IP address (e.g. 127.0.0.1:9650",
            );
        }
        assert_invalid(
            "[defaults]\nmetrics_listen = 9650\n",
            2,
            Some("defaults"),
            "metrics_listen",
            "expected a string",
        );
        // Only in [defaults].
        assert_invalid(
            &format!("{EXPORT}metrics_listen = \"127.0.0.1:9650\"\n"),
            6,
            Some("export"),
            "metrics_listen",
            "unknown key",
        );
    }

    #[test]
    fn values_out_of_range() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "frames = 1000",
                "frames",
                "not a power of two from 64 to 32768",
            ),
            ("frames = 32", "frames", "not a power of two"),
            ("frames = 65536", "frames", "not a power of two"),
            ("batch = 0", "batch", "0 is out of range (1-1024)"),
            ("batch = 1025", "batch", "out of range"),
            ("queues = 0", "queues", "out of range (1-64)"),
            ("queues = 65", "queues", "out of range"),
            ("buffers = 0", "buffers", "0 is out of range (1-65535)"),
            ("buffers = 65536", "buffers", "out of range"),
        ];
        for (line, key, needle) in cases {
            assert_invalid(
                &format!("[defaults]\n\n{line}\n"),
                3,
                Some("defaults"),
                key,
                needle,
            );
        }
        for (line, key, needle) in &cases[..7] {
            assert_invalid(
                &format!("{EXPORT}[interfaces.eth0]\n{line}\n"),
                7,
                Some("interface eth0"),
                key,
                needle,
            );
        }
        assert_invalid(
            &format!("{EXPORT}buffers = 0\n"),
            6,
            Some("export e1.0"),
            "buffers",
            "out of range",
        );
        assert_invalid(
            &format!("{EXPORT}length_sectors = 0\n"),
            6,
            Some("export e1.0"),
            "length_sectors",
            "0 sectors",
        );
    }

    #[test]
    fn masks_serials_files_and_paths() {
        let (line, section, key, message) = invalid(&format!(
            "{EXPORT}mask = [\"52:54:00:12:34:56\",\n  \"52:54:zz\"]\n"
        ));
        assert_eq!(
            ConfigError::Invalid {
                path: PATH.into(),
                line,
                section,
                key,
                message
            }
            .to_string(),
            "/etc/xblade.toml:7: export e1.0: key 'mask': '52:54:zz' is not a MAC address"
        );
        assert_invalid(
            &format!("{EXPORT}serial = \"123456789012345678901\"\n"),
            6,
            Some("export e1.0"),
            "serial",
            "1-20 characters",
        );
        assert_invalid(
            &format!("{EXPORT}serial = \"tab\\there\"\n"),
            6,
            Some("export e1.0"),
            "serial",
            "printable ASCII",
        );
        assert_invalid(
            &format!("{EXPORT}serial = \"é\"\n"),
            6,
            Some("export e1.0"),
            "serial",
            "printable ASCII",
        );
        assert!(parse(
            Path::new(PATH),
            &format!("{EXPORT}serial = \"12345678901234567890\"\n")
        )
        .is_ok());
        for bad in [
            "null:",
            "null:x",
            "null:1Q",
            "null:100",
            "null:99999999999T",
        ] {
            assert_invalid(
                &format!(
                    "[[export]]\nshelf = 1\nslot = 0\n\nfile = \"{bad}\"\ninterfaces = [\"a\"]\n"
                ),
                5,
                Some("export e1.0"),
                "file",
                "not a size",
            );
        }
        assert_eq!(null_size("null:4096"), Some(4096));
        assert_eq!(null_size("null:64G"), Some(64 << 30));
        assert_eq!(null_size("null:2k"), Some(2048));
        assert_invalid(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"\"\ninterfaces = [\"a\"]\n",
            4,
            Some("export e1.0"),
            "file",
            "empty",
        );
        assert_invalid(
            "[defaults]\nstate_dir = \"\"\n",
            2,
            Some("defaults"),
            "state_dir",
            "empty",
        );
    }

    #[test]
    fn error_formats() {
        let e = parse(Path::new(PATH), "[defaults]\nframes = 100\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/xblade.toml:2: defaults: key 'frames': 100 is not a power of two from 64 to 32768"
        );
        let e = parse(Path::new(PATH), "nope = 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/xblade.toml:1: key 'nope': unknown key (expected one of 'defaults', 'interfaces', 'export')"
        );
        let e = load(Path::new("/nonexistent/xblade.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/xblade.toml: cannot read: "),
            "{e}"
        );
    }

    /// A file under the test's own temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xblade-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn environment_files() {
        let dir = temp_dir("files");
        let image = dir.join("vol.img");
        std::fs::write(&image, vec![0u8; 4096]).unwrap();
        let missing = dir.join("missing.img");
        let text = format!(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"{}\"\ninterfaces = [\"lo\"]\n\n\
             [[export]]\nshelf = 1\nslot = 1\nfile = \"null:1G\"\ninterfaces = [\"lo\"]\n",
            image.display()
        );
        let config_path = dir.join("ok.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.exports.len(), 2);

        let text = format!(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"{}\"\ninterfaces = [\"lo\"]\n\n\
             [[export]]\nshelf = 1\nslot = 1\n\nfile = \"{}\"\ninterfaces = [\"lo\"]\n",
            image.display(),
            missing.display()
        );
        let config_path = dir.join("missing.toml");
        std::fs::write(&config_path, &text).unwrap();
        let e = load(&config_path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:11: export e1.1: key 'file': {} does not exist",
                config_path.display(),
                missing.display()
            )
        );

        let text = format!(
            "[[export]]\nshelf = 1\nslot = 0\nfile = \"{}\"\ninterfaces = [\"lo\"]\n",
            dir.display()
        );
        let at = Located::new(Path::new(PATH), &text);
        let (config, origins) = parse_located(Path::new(PATH), &text).unwrap();
        let e = check_environment(&config, &at, &origins, &[]).unwrap_err();
        assert!(e.to_string().ends_with("is a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_user() {
        let text = "[defaults]\nstate_dir = \"/x\"\nuser = \"xblade-no-such-user\"\n";
        let (config, origins) = parse_located(Path::new(PATH), text).unwrap();
        assert_eq!(config.user.as_deref(), Some("xblade-no-such-user"));
        assert_eq!(config.state_dir, Some(PathBuf::from("/x")));
        let e = check_environment(&config, &Located::new(Path::new(PATH), text), &origins, &[])
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/etc/xblade.toml:3: defaults: key 'user': no user 'xblade-no-such-user' in the \
                 user database (create it, e.g. `useradd --system"
            ),
            "{e}"
        );
        let text = "[defaults]\nuser = \"root\"\n";
        let (config, origins) = parse_located(Path::new(PATH), text).unwrap();
        let e = check_environment(&config, &Located::new(Path::new(PATH), text), &origins, &[])
            .unwrap_err();
        assert!(
            e.to_string().contains("key 'user': user 'root' is uid 0"),
            "{e}"
        );
        assert_invalid(
            "[defaults]\nuser = \"\"\n",
            2,
            Some("defaults"),
            "user",
            "empty user name",
        );
    }

    #[test]
    fn environment_files_already_open_are_not_reopened() {
        let text = "[[export]]\nshelf = 1\nslot = 0\nfile = \"/nonexistent/vol.img\"\n\
                    interfaces = [\"lo\"]\n";
        let (config, origins) = parse_located(Path::new(PATH), text).unwrap();
        let at = Located::new(Path::new(PATH), text);
        assert!(check_environment(&config, &at, &origins, &[]).is_err());
        let open = [(PathBuf::from("/nonexistent/vol.img"), false)];
        assert!(check_environment(&config, &at, &origins, &open).is_ok());
        let open_read_only = [(PathBuf::from("/nonexistent/vol.img"), true)];
        assert!(check_environment(&config, &at, &origins, &open_read_only).is_err());
    }

    #[test]
    fn environment_interfaces() {
        let text = "[[export]]\nshelf = 1\nslot = 0\nfile = \"null:1M\"\n\
                    interfaces = [\"lo\",\n  \"xbnoexist0\"]\n";
        let (config, origins) = parse_located(Path::new(PATH), text).unwrap();
        let e = check_environment(&config, &Located::new(Path::new(PATH), text), &origins, &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/xblade.toml:6: export e1.0: key 'interfaces': \
             no such network interface 'xbnoexist0' (see `ip link`)"
        );
    }
}
