//! The control protocol spoken between `xbladectl` (or any client) and the daemon.
//!
//! # Transport
//!
//! A Unix stream socket (default [`DEFAULT_SOCKET`](super::DEFAULT_SOCKET), mode 0600, so
//! only root may use it). Each way the stream is a sequence of lines, each line one JSON
//! object terminated by `\n` (a `\r` before the `\n` is tolerated). A client sends a request
//! line and reads exactly one reply line; a connection may carry any number of requests in
//! sequence, and replies come back in request order. Request lines are limited to 64 KiB.
//!
//! # Requests
//!
//! An object with a `"cmd"` member naming the command; other members are the command's
//! arguments (unknown members are ignored):
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"reload"}
//! {"cmd":"stats"}
//! {"cmd":"stats","exports":["e1.0","e1.1"]}
//! {"cmd":"acl","exports":["e1.0"]}
//! {"cmd":"mask","export":"e1.0","op":"add","macs":["02:00:00:00:00:01"]}
//! {"cmd":"reserve","export":"e1.0","op":"clear"}
//! ```
//!
//! `stats` answers every export, or only those named in `"exports"` (in that order; an
//! unknown name is an `ok:false` reply naming it).
//!
//! The access-control commands (`acl`, `mask`, `reserve`, `config_string`) and their
//! replies are described in [`super::acl`].
//!
//! # Replies
//!
//! Every reply has a boolean `"ok"`. A success also names the command it answers in
//! `"cmd"` and carries that command's payload as further members of the same object:
//!
//! ```text
//! {"ok":true,"cmd":"status","version":"0.1.0","pid":4242,"uptime_s":3600,
//!  "config":"/etc/xblade.toml","metrics_listen":"127.0.0.1:9650","exports":[{"name":"e1.0","shelf":1,"slot":0,
//!  "file":"/srv/vol0.img","size_sectors":2097152,"interfaces":["eth1"],
//!  "read_only":false,"state":"serving"}],"interfaces":[{"name":"eth1","state":"up",
//!  "mac":"02:00:00:00:00:01","mtu":9000,"sectors_per_frame":17,"queues":4,
//!  "xdp_mode":"native","exports":1,"napi_busy_poll_us":null,"napi_busy_poll_budget":null,
//!  "napi_busy_poll_queues_with_napi":null}]}
//! {"ok":true,"cmd":"reload","added":["e1.2"],"removed":[],"changed":["e1.0"],
//!  "unchanged":3,"interfaces_attached":[],"interfaces_detached":[]}
//! {"ok":true,"cmd":"stats","version":"0.1.0","pid":4242,"uptime_ns":3600000000000,
//!  "exports":[{"name":"e1.0","shelf":1,"slot":0,"generation":3,"reads":1200,
//!  "writes":800,"other":12,"read_bytes":1228800,"written_bytes":819200,"ata_errors":0,
//!  "aoe_errors":1,"disk_errors":0,"refused_masked":0,"refused_reserved":0,"in_flight":2,
//!  "latency":{"count":2012,"sum_ns":60360000,"p50_ns":24575,"p99_ns":57343,
//!  "p999_ns":90111,"max_ns":88012,"buckets":[[20479,700],[24575,500],...]},
//!  "disk_latency":{"count":2000,"p50_ns":20479,"p99_ns":49151,...},
//!  "xblade_latency":{"count":2000,"p50_ns":4095,"p99_ns":8191,...}}],
//!  "queues":[{"interface":"eth1","queue":0,"rx_frames":2013,"tx_frames":2012,
//!  "bounced":0,"merged":0,"dropped_malformed":1,...,"busy_ns":1200000,
//!  "idle_ns":3598800000000,"fill_depth_frames":512,"xsk":{"rx_dropped":0,...}}],
//!  "interfaces":[{"name":"eth1","xdp_redirect":2013,"xdp_pass_not_aoe":40,...}]}
//! ```
//!
//! (shown wrapped; on the wire each is one line). A failure is
//!
//! ```text
//! {"ok":false,"error":"a sentence that says what went wrong and what to do"}
//! ```
//!
//! A malformed line, an unknown command (`unknown command 'x' (known: status, reload)`) and
//! a failed command all get an `ok:false` reply and leave the connection open.
//!
//! # Compatibility
//!
//! New commands (stats, metrics) add a [`Request`] variant, a [`Reply`] variant and an entry
//! in [`COMMANDS`]. Payload members may be added: readers ignore members they do not know
//! and take a default for members that are missing, so old clients keep working.

use serde::{Deserialize, Serialize};

pub use super::acl::{AclChangeReply, AclReply, ConfigStringOp, ExportAcl, MaskOp, ReserveOp};

/// Every command the daemon knows, as spelled in `"cmd"`.
pub const COMMANDS: &[&str] = &[
    "status",
    "reload",
    "stats",
    "acl",
    "mask",
    "reserve",
    "config_string",
];

/// One request, as sent by a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// What is served, where, and in what state.
    Status,
    /// Re-read the config file and apply the difference.
    Reload,
    /// Every counter now: of the exports named in `exports` (`e1.0`), or of all when it
    /// is empty.
    Stats {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exports: Vec<String>,
    },
    /// The mask list, reservation, config string and lock of these exports (`e1.0`; none:
    /// every export).
    Acl {
        #[serde(default)]
        exports: Vec<String>,
    },
    /// Change an export's MAC mask list (`macs` unused by `clear`).
    Mask {
        export: String,
        op: MaskOp,
        #[serde(default)]
        macs: Vec<String>,
    },
    /// Set (to `macs`) or clear an export's reservation.
    Reserve {
        export: String,
        op: ReserveOp,
        #[serde(default)]
        macs: Vec<String>,
    },
    /// Set (to `value`) or clear an export's AoE config string.
    ConfigString {
        export: String,
        op: ConfigStringOp,
        #[serde(default)]
        value: String,
    },
}

impl Request {
    /// The command's name as spelled in `"cmd"`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Reload => "reload",
            Request::Stats { .. } => "stats",
            Request::Acl { .. } => "acl",
            Request::Mask { .. } => "mask",
            Request::Reserve { .. } => "reserve",
            Request::ConfigString { .. } => "config_string",
        }
    }
}

/// The payload of a successful `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReply {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The config file's path; `None` when started with a vblade-style command line.
    pub config: Option<String>,
    /// Where the Prometheus endpoint listens (`ADDR:PORT`, the port the kernel chose when
    /// the configuration said 0); `None` when it is off.
    pub metrics_listen: Option<String>,
    pub exports: Vec<ExportStatus>,
    pub interfaces: Vec<InterfaceStatus>,
}

/// One export in a [`StatusReply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportStatus {
    /// The AoE name, `e<shelf>.<slot>`, e.g. `e1.0`.
    pub name: String,
    pub shelf: u16,
    pub slot: u8,
    /// The backing file, block device or `null:SIZE`.
    pub file: String,
    /// The exported size in 512-byte sectors.
    pub size_sectors: u64,
    /// The interfaces it is served on.
    pub interfaces: Vec<String>,
    pub read_only: bool,
    /// `serving`, `retiring`, `waiting for interface`, ...
    pub state: String,
}

/// One interface in a [`StatusReply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceStatus {
    pub name: String,
    /// `up`, `down`, `absent`, ...
    pub state: String,
    /// `aa:bb:cc:dd:ee:ff`, when known.
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// Sectors per AoE frame at this MTU.
    pub sectors_per_frame: Option<u8>,
    /// RX queues served (one worker each).
    pub queues: u32,
    /// `native` or `generic` once attached.
    pub xdp_mode: Option<String>,
    /// AF_XDP preferred busy polling: `SO_BUSY_POLL` in µs as read back from the kernel;
    /// absent when off.
    pub napi_busy_poll_us: Option<u32>,
    /// `SO_BUSY_POLL_BUDGET` as set; absent when off.
    pub napi_busy_poll_budget: Option<u16>,
    /// With busy polling on: how many of the queues' sockets have a NAPI context to poll
    /// (`SO_INCOMING_NAPI_ID` non-zero; 0 in copy mode since Linux 6.13).
    pub napi_busy_poll_queues_with_napi: Option<u32>,
    /// How many exports are served on it.
    pub exports: u32,
}

/// The payload of a successful `reload`: what changed, by export name (`e1.0`) and by
/// interface name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadReply {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// How many exports the reload left alone.
    pub unchanged: u32,
    pub interfaces_attached: Vec<String>,
    pub interfaces_detached: Vec<String>,
}

/// The payload of a successful `stats`: every counter since the daemon started, read
/// without stopping or locking any worker. Counters only grow (a reload that replaces an
/// export starts its counters again at zero; its `generation` changes). Rates and interval
/// percentiles are differences of two replies (`xbladectl monitor` does that).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsReply {
    pub version: String,
    pub pid: u32,
    /// When the counters were read, in ns since the daemon started (`CLOCK_MONOTONIC`), to
    /// divide differences by.
    pub uptime_ns: u64,
    pub exports: Vec<ExportStats>,
    pub queues: Vec<QueueStats>,
    pub interfaces: Vec<InterfaceStats>,
}

/// One export's requests, summed over every interface and queue that serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportStats {
    /// `e<shelf>.<slot>`.
    pub name: String,
    pub shelf: u16,
    pub slot: u8,
    /// Changes each time a reload replaces the export (its counters restart at zero).
    pub generation: u64,
    /// ATA reads and writes served (each one request, whatever its sector count).
    pub reads: u64,
    pub writes: u64,
    /// Every other request answered: flush, identify, Query Config, Mac Mask List,
    /// Reserve/Release, check power mode.
    pub other: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    /// Requests answered with an ATA error (status ERR), disk errors included.
    pub ata_errors: u64,
    /// Requests answered with an AoE error (bad command, bad argument, reserved, ...).
    pub aoe_errors: u64,
    /// Disk I/O that failed (each also counted in `ata_errors`).
    pub disk_errors: u64,
    /// Requests dropped because the sender is not on the mask list, as the workers see
    /// them: wildcard requests (a broadcast Query Config). The XDP program drops the
    /// requests addressed to this export itself before any worker sees them; those are in
    /// the interface's `xdp_drop_acl`.
    pub refused_masked: u64,
    /// Requests refused because another host holds the reservation.
    pub refused_reserved: u64,
    /// Changes from the wire refused because the export is locked: Mac Mask List edits,
    /// Query Config sets, changes of an operator's reservation (answered with the protocol's
    /// error; counted here alone, not in `aoe_errors`).
    pub refused_locked: u64,
    /// Requests in flight (received, not yet answered) at the moment of reading.
    pub in_flight: u64,
    /// Service latency, receive to reply, of every answered request (replies to a
    /// wildcard Query Config excepted: they wait for spare frames).
    pub latency: LatencyStats,
    /// Of the requests that went to the disk (reads, writes and flushes of a file or
    /// device; not the null backend): the disk's own part, submission to completion as the
    /// worker sees them (the `io_uring_enter` that submits the operation to the CQE reaped,
    /// or the synchronous call's start to its return).
    pub disk_latency: LatencyStats,
    /// Of the same requests: xblade's part, receipt to submission plus completion to reply.
    /// Per request, `latency = disk_latency + xblade_latency` exactly; the three
    /// histograms are recorded together, so the two parts' counts are equal.
    pub xblade_latency: LatencyStats,
}

/// A latency distribution: a few quantiles for people, and the buckets themselves so that a
/// client can subtract two readings and get the distribution over the interval between them.
///
/// Buckets are log-linear (see `xblade::stats::histogram`): one below 1024 ns, eight per
/// power of two up to 2^36 ns (about 69 s), one above (bound `u64::MAX`). Quantiles are the
/// upper bound of the bucket holding that rank (capped at `max_ns`): never below the exact
/// value and at most 12.5 % above it. `count`, `sum_ns` and `max_ns` are exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyStats {
    pub count: u64,
    pub sum_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// `[upper_bound_ns, count]` for each non-empty bucket, in increasing bound order: a
    /// sample `v` is in the first bucket whose bound is `>= v`.
    pub buckets: Vec<[u64; 2]>,
}

/// One RX queue's worker (one AF_XDP socket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueStats {
    pub interface: String,
    pub queue: u32,
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Requests whose sector data went through a bounce buffer (alignment).
    pub bounced: u64,
    /// Requests merged into a neighbour's disk operation.
    pub merged: u64,
    /// Frames dropped by the worker, by reason.
    pub dropped_malformed: u64,
    pub dropped_not_for_us: u64,
    pub dropped_response: u64,
    pub dropped_config_mismatch: u64,
    pub dropped_no_buffer: u64,
    /// Requests from a sender the export's mask list does not list, dropped by the worker
    /// (wildcard requests; the XDP program drops the others, see `xdp_drop_acl`).
    pub dropped_masked: u64,
    /// Time the worker spent working and waiting for events, in ns.
    pub busy_ns: u64,
    pub idle_ns: u64,
    /// The most RX frames the kernel may hold for reception now (the fill depth: 512 at
    /// start, doubled by each RX backlog of three quarters of it, up to every RX frame).
    pub fill_depth_frames: u64,
    /// The socket's `XDP_STATISTICS` (`struct xdp_statistics`, `getsockopt(SOL_XDP)`).
    pub xsk: XskStats,
}

/// `struct xdp_statistics` of one AF_XDP socket, named as in `<linux/if_xdp.h>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// One interface's XDP program verdicts (summed over CPUs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceStats {
    pub name: String,
    /// Frames the program redirected to an AF_XDP socket.
    pub xdp_redirect: u64,
    /// Frames it passed to the kernel: not AoE, AoE responses, shelf.slot not served here,
    /// no socket on the receiving queue.
    pub xdp_pass_not_aoe: u64,
    pub xdp_pass_response: u64,
    pub xdp_pass_other_target: u64,
    pub xdp_pass_no_socket: u64,
    /// Frames it dropped: sender not on the mask list, too short for an AoE header.
    pub xdp_drop_acl: u64,
    pub xdp_drop_malformed: u64,
}

/// One reply, as sent by the daemon. On the wire: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(StatusReply),
    Reload(ReloadReply),
    Stats(StatsReply),
    Acl(AclReply),
    Mask(AclChangeReply),
    Reserve(AclChangeReply),
    ConfigString(AclChangeReply),
    /// `{"ok":false,"error":...}`: the request failed, with a sentence for a human.
    Error(String),
}

impl Reply {
    /// A failure reply.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }

    /// Whether this is a success (`"ok":true`).
    pub fn is_ok(&self) -> bool {
        !matches!(self, Reply::Error(_))
    }
}

/// A success on the wire: `ok`, `cmd`, then the payload's members.
#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    ok: bool,
    cmd: &'static str,
    #[serde(flatten)]
    payload: &'a T,
}

/// A failure on the wire.
#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: &'a str,
}

fn success<T: Serialize>(cmd: &'static str, payload: &T) -> serde_json::Result<String> {
    serde_json::to_string(&Success {
        ok: true,
        cmd,
        payload,
    })
}

fn failure(error: &str) -> String {
    serde_json::to_string(&Failure { ok: false, error })
        // Serializing a string cannot fail; this keeps the function total anyway.
        .unwrap_or_else(|_| r#"{"ok":false,"error":"internal error"}"#.to_owned())
}

/// The reply as one line of JSON, with its terminating `\n`.
pub fn encode_line(reply: &Reply) -> String {
    let encoded = match reply {
        Reply::Status(status) => success("status", status),
        Reply::Reload(reload) => success("reload", reload),
        Reply::Stats(stats) => success("stats", stats),
        Reply::Acl(acl) => success("acl", acl),
        Reply::Mask(change) => success("mask", change),
        Reply::Reserve(change) => success("reserve", change),
        Reply::ConfigString(change) => success("config_string", change),
        Reply::Error(error) => Ok(failure(error)),
    };
    let mut line = encoded
        .unwrap_or_else(|e| failure(&format!("internal error: cannot encode the reply: {e}")));
    line.push('\n');
    line
}

/// The request as one line of JSON, with its terminating `\n`.
pub fn encode_request(request: &Request) -> String {
    let mut line = serde_json::to_string(request)
        // Strings, lists of strings and unit enums with a tag cannot fail to serialize.
        .unwrap_or_else(|_| format!(r#"{{"cmd":"{}"}}"#, request.name()));
    line.push('\n');
    line
}

fn known() -> String {
    COMMANDS.join(", ")
}

/// Parses one request line (with or without its `\n`). The error is the sentence to send
/// back in an `ok:false` reply.
pub fn decode_request(line: &str) -> Result<Request, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err(format!(
            "empty request: send one JSON object per line, e.g. {{\"cmd\":\"status\"}} (known: {})",
            known()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "malformed request ({e}): send one JSON object per line, e.g. {{\"cmd\":\"status\"}}"
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            "a request must be a JSON object such as {{\"cmd\":\"status\"}} (known: {})",
            known()
        ));
    };
    let cmd = match object.get("cmd") {
        Some(serde_json::Value::String(cmd)) => cmd.clone(),
        Some(_) => return Err(format!("\"cmd\" must be a string (known: {})", known())),
        None => {
            return Err(format!(
                "the request has no \"cmd\" member (known: {})",
                known()
            ))
        }
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(format!("unknown command '{cmd}' (known: {})", known()));
    }
    serde_json::from_value(value).map_err(|e| format!("bad '{cmd}' request: {e}"))
}

/// Parses one reply line (with or without its `\n`). The error says what is wrong with it.
pub fn decode_reply(line: &str) -> Result<Reply, String> {
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON object".to_owned());
    };
    match object.get("ok") {
        Some(serde_json::Value::Bool(true)) => {}
        Some(serde_json::Value::Bool(false)) => {
            return Ok(Reply::Error(match object.get("error") {
                Some(serde_json::Value::String(error)) => error.clone(),
                Some(other) => other.to_string(),
                None => "the daemon gave no reason".to_owned(),
            }))
        }
        _ => return Err("no boolean \"ok\" member".to_owned()),
    }
    let cmd = match object.get("cmd") {
        Some(serde_json::Value::String(cmd)) => cmd.clone(),
        _ => return Err("a success without a \"cmd\" member".to_owned()),
    };
    match cmd.as_str() {
        "status" => serde_json::from_value(value)
            .map(Reply::Status)
            .map_err(|e| format!("bad status payload: {e}")),
        "reload" => serde_json::from_value(value)
            .map(Reply::Reload)
            .map_err(|e| format!("bad reload payload: {e}")),
        "stats" => serde_json::from_value(value)
            .map(Reply::Stats)
            .map_err(|e| format!("bad stats payload: {e}")),
        "acl" => serde_json::from_value(value)
            .map(Reply::Acl)
            .map_err(|e| format!("bad acl payload: {e}")),
        "mask" => serde_json::from_value(value)
            .map(Reply::Mask)
            .map_err(|e| format!("bad mask payload: {e}")),
        "reserve" => serde_json::from_value(value)
            .map(Reply::Reserve)
            .map_err(|e| format!("bad reserve payload: {e}")),
        "config_string" => serde_json::from_value(value)
            .map(Reply::ConfigString)
            .map_err(|e| format!("bad config_string payload: {e}")),
        other => Err(format!(
            "a reply to an unknown command '{other}' (this xbladectl knows: {}; is it older than the daemon?)",
            known()
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_status() -> StatusReply {
        StatusReply {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_s: 3600,
            config: Some("/etc/xblade.toml".into()),
            metrics_listen: Some("127.0.0.1:9650".into()),
            exports: vec![ExportStatus {
                name: "e1.0".into(),
                shelf: 1,
                slot: 0,
                file: "/srv/vol0.img".into(),
                size_sectors: 2 * 1024 * 1024,
                interfaces: vec!["eth1".into(), "eth2".into()],
                read_only: false,
                state: "serving".into(),
            }],
            interfaces: vec![
                InterfaceStatus {
                    name: "eth1".into(),
                    state: "up".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    mtu: Some(9000),
                    sectors_per_frame: Some(17),
                    queues: 4,
                    xdp_mode: Some("native".into()),
                    exports: 1,
                    napi_busy_poll_us: Some(20),
                    napi_busy_poll_budget: Some(64),
                    napi_busy_poll_queues_with_napi: Some(0),
                },
                InterfaceStatus {
                    name: "eth2".into(),
                    state: "absent".into(),
                    ..Default::default()
                },
            ],
        }
    }

    fn sample_reload() -> ReloadReply {
        ReloadReply {
            added: vec!["e1.2".into()],
            removed: vec!["e1.3".into()],
            changed: vec!["e1.0".into()],
            unchanged: 3,
            interfaces_attached: vec!["eth3".into()],
            interfaces_detached: vec![],
        }
    }

    pub(crate) fn sample_stats() -> StatsReply {
        StatsReply {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_ns: 3_600_000_000_000,
            exports: vec![ExportStats {
                name: "e1.0".into(),
                shelf: 1,
                slot: 0,
                generation: 3,
                reads: 1200,
                writes: 800,
                other: 12,
                read_bytes: 1_228_800,
                written_bytes: 819_200,
                aoe_errors: 1,
                in_flight: 2,
                latency: LatencyStats {
                    count: 2012,
                    sum_ns: 60_360_000,
                    p50_ns: 24_575,
                    p99_ns: 57_343,
                    p999_ns: 90_111,
                    max_ns: 88_012,
                    buckets: vec![[20_479, 700], [24_575, 1300], [90_111, 12]],
                },
                disk_latency: LatencyStats {
                    count: 2000,
                    p50_ns: 20_479,
                    p99_ns: 49_151,
                    ..LatencyStats::default()
                },
                xblade_latency: LatencyStats {
                    count: 2000,
                    p50_ns: 4_095,
                    p99_ns: 8_191,
                    ..LatencyStats::default()
                },
                ..ExportStats::default()
            }],
            queues: vec![QueueStats {
                interface: "eth1".into(),
                queue: 0,
                rx_frames: 2013,
                tx_frames: 2012,
                dropped_malformed: 1,
                busy_ns: 1_200_000,
                idle_ns: 3_598_800_000_000,
                fill_depth_frames: 512,
                xsk: XskStats {
                    rx_ring_full: 5,
                    ..XskStats::default()
                },
                ..QueueStats::default()
            }],
            interfaces: vec![InterfaceStats {
                name: "eth1".into(),
                xdp_redirect: 2013,
                xdp_pass_not_aoe: 40,
                ..InterfaceStats::default()
            }],
        }
    }

    #[test]
    fn stats_requests_carry_their_export_names() {
        let all = Request::Stats { exports: vec![] };
        assert_eq!(encode_request(&all), "{\"cmd\":\"stats\"}\n");
        assert_eq!(decode_request(r#"{"cmd":"stats"}"#), Ok(all));
        let some = Request::Stats {
            exports: vec!["e1.0".into(), "e2.3".into()],
        };
        let line = encode_request(&some);
        assert_eq!(
            line,
            "{\"cmd\":\"stats\",\"exports\":[\"e1.0\",\"e2.3\"]}\n"
        );
        assert_eq!(decode_request(&line), Ok(some));
        for bad in [
            r#"{"cmd":"stats","exports":"e1.0"}"#,
            r#"{"cmd":"stats","exports":[1]}"#,
        ] {
            let error = decode_request(bad).expect_err(bad);
            assert!(error.starts_with("bad 'stats' request"), "{error}");
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Reload,
            Request::Stats { exports: vec![] },
        ] {
            let line = encode_request(&request);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(line, format!("{{\"cmd\":\"{}\"}}\n", request.name()));
            assert_eq!(decode_request(&line), Ok(request.clone()));
            assert!(COMMANDS.contains(&request.name()));
            assert_eq!(decode_request(&line), Ok(request));
        }
        assert_eq!(decode_request(r#" {"cmd":"status"} "#), Ok(Request::Status));
        assert_eq!(
            decode_request("{\"cmd\":\"reload\"}\r\n"),
            Ok(Request::Reload)
        );
        // Unknown members are ignored, so that arguments can be added later.
        assert_eq!(
            decode_request(r#"{"cmd":"status","verbose":true}"#),
            Ok(Request::Status)
        );
    }

    #[test]
    fn every_known_command_parses() {
        for cmd in COMMANDS {
            match decode_request(&format!("{{\"cmd\":\"{cmd}\"}}")) {
                Ok(request) => assert_eq!(request.name(), *cmd),
                // Commands with required arguments say which is missing.
                Err(e) => assert!(
                    e.starts_with(&format!("bad '{cmd}' request: missing field `export`")),
                    "{e}"
                ),
            }
        }
    }

    pub(crate) fn sample_acl() -> ExportAcl {
        ExportAcl {
            name: "e1.0".into(),
            shelf: 1,
            slot: 0,
            locked: true,
            mask: vec!["02:00:00:00:00:01".into(), "02:00:00:00:00:02".into()],
            mask_configured: vec!["02:00:00:00:00:01".into()],
            mask_capacity: 64,
            reservation: vec!["02:00:00:00:00:02".into()],
            reserved_by_operator: true,
            config_string: "host-a\\x00".into(),
        }
    }

    #[test]
    fn acl_requests_round_trip() {
        for (request, line) in [
            (
                Request::Acl { exports: vec![] },
                r#"{"cmd":"acl","exports":[]}"#,
            ),
            (
                Request::Acl {
                    exports: vec!["e1.0".into(), "e2.3".into()],
                },
                r#"{"cmd":"acl","exports":["e1.0","e2.3"]}"#,
            ),
            (
                Request::Mask {
                    export: "e1.0".into(),
                    op: MaskOp::Add,
                    macs: vec!["02:00:00:00:00:01".into()],
                },
                r#"{"cmd":"mask","export":"e1.0","op":"add","macs":["02:00:00:00:00:01"]}"#,
            ),
            (
                Request::Reserve {
                    export: "e1.0".into(),
                    op: ReserveOp::Clear,
                    macs: vec![],
                },
                r#"{"cmd":"reserve","export":"e1.0","op":"clear","macs":[]}"#,
            ),
            (
                Request::ConfigString {
                    export: "e1.0".into(),
                    op: ConfigStringOp::Set,
                    value: "cluster \"a\"".into(),
                },
                r#"{"cmd":"config_string","export":"e1.0","op":"set","value":"cluster \"a\""}"#,
            ),
        ] {
            assert_eq!(encode_request(&request), format!("{line}\n"));
            assert_eq!(decode_request(line), Ok(request.clone()));
            assert!(COMMANDS.contains(&request.name()));
        }
        // Optional members may be left out.
        assert_eq!(
            decode_request(r#"{"cmd":"acl"}"#),
            Ok(Request::Acl { exports: vec![] })
        );
        assert_eq!(
            decode_request(r#"{"cmd":"mask","export":"e1.0","op":"clear"}"#),
            Ok(Request::Mask {
                export: "e1.0".into(),
                op: MaskOp::Clear,
                macs: vec![]
            })
        );
        for bad in [
            r#"{"cmd":"mask","export":"e1.0","op":"toggle"}"#,
            r#"{"cmd":"mask","op":"clear"}"#,
            r#"{"cmd":"reserve","export":"e1.0","op":"add","macs":[]}"#,
            r#"{"cmd":"reserve","export":"e1.0","op":"set","macs":"02:00:00:00:00:01"}"#,
        ] {
            let error = decode_request(bad).unwrap_err();
            assert!(error.starts_with("bad '"), "{bad}: {error}");
        }
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Status(sample_status()),
            Reply::Status(StatusReply::default()),
            Reply::Reload(sample_reload()),
            Reply::Reload(ReloadReply::default()),
            Reply::Stats(sample_stats()),
            Reply::Stats(StatsReply::default()),
            Reply::Acl(AclReply {
                exports: vec![sample_acl(), ExportAcl::default()],
            }),
            Reply::Mask(AclChangeReply {
                changed: true,
                export: sample_acl(),
            }),
            Reply::Reserve(AclChangeReply::default()),
            Reply::ConfigString(AclChangeReply {
                changed: false,
                export: sample_acl(),
            }),
            Reply::error("no such file: /etc/xblade.toml"),
            Reply::error("quotes \" and newlines \n and tabs \t"),
        ] {
            let line = encode_line(&reply);
            assert!(line.ends_with('\n'));
            assert!(!line[..line.len() - 1].contains('\n'), "{line}");
            assert_eq!(decode_reply(&line), Ok(reply));
        }
    }

    #[test]
    fn wire_format_has_ok_and_flat_payload() {
        let status: serde_json::Value =
            serde_json::from_str(&encode_line(&Reply::Status(sample_status()))).unwrap();
        assert_eq!(status["ok"], true);
        assert_eq!(status["cmd"], "status");
        assert_eq!(status["pid"], 4242);
        assert_eq!(status["exports"][0]["name"], "e1.0");
        assert_eq!(status["interfaces"][1]["mac"], serde_json::Value::Null);

        let reload: serde_json::Value =
            serde_json::from_str(&encode_line(&Reply::Reload(sample_reload()))).unwrap();
        assert_eq!(reload["ok"], true);
        assert_eq!(reload["cmd"], "reload");
        assert_eq!(reload["unchanged"], 3);

        assert_eq!(
            encode_line(&Reply::error("nope")),
            "{\"ok\":false,\"error\":\"nope\"}\n"
        );
    }

    #[test]
    fn unknown_command_names_the_known_ones() {
        assert_eq!(
            decode_request(r#"{"cmd":"x"}"#),
            Err(
                "unknown command 'x' (known: status, reload, stats, acl, mask, reserve, config_string)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        for line in [
            "",
            "   ",
            "not json",
            "{\"cmd\":",
            "[\"status\"]",
            "\"status\"",
            "42",
            "null",
            "{}",
            "{\"cmd\":42}",
            "{\"cmd\":null}",
            "{\"command\":\"status\"}",
            "{\"cmd\":\"Status\"}",
            "{\"cmd\":\"status\"} trailing",
        ] {
            let error = decode_request(line).expect_err(line);
            assert!(!error.is_empty());
        }
    }

    #[test]
    fn lenient_reply_decoding() {
        // Missing members take defaults; unknown ones are ignored.
        assert_eq!(
            decode_reply(r#"{"ok":true,"cmd":"reload","future":1}"#),
            Ok(Reply::Reload(ReloadReply::default()))
        );
        assert_eq!(
            decode_reply(r#"{"ok":false}"#),
            Ok(Reply::Error("the daemon gave no reason".into()))
        );
        for bad in [
            "",
            "nope",
            "[]",
            "{}",
            r#"{"ok":"yes"}"#,
            r#"{"ok":true}"#,
            r#"{"ok":true,"cmd":"nope"}"#,
            r#"{"ok":true,"cmd":"stats","exports":{}}"#,
            r#"{"ok":true,"cmd":"status","pid":"x"}"#,
        ] {
            assert!(decode_reply(bad).is_err(), "{bad}");
        }
    }
}
