//! The command line: vblade's positional form and options, plus xblade's own long options,
//! or `--config FILE` for a whole box. Either becomes a [`ServeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aoe_proto::Mac;
use clap::{ArgGroup, Parser};
use xblade_target::ExportKey;

use super::file::{self, ConfigError};
use super::model::{
    ConfigSource, ExportConfig, InterfaceConfig, IoEngine, ServeConfig, StateLocation, TuningFlags,
};
use crate::xdp::XdpAttachMode;
use crate::xsk::NapiBusyPoll;

/// AoE r11 target: exports FILE as AoE shelf SHELF, slot SLOT on network interface IFACE, or
/// serves everything a configuration file describes.
///
/// Two forms. vblade's: `xblade [OPTIONS] SHELF SLOT IFACE FILE` exports one FILE on one
/// interface, tuned by the options below. A whole box: `xblade --config FILE` serves every
/// export of a TOML file (any number of exports, each on one or more interfaces; an
/// example is below), which the control socket's reload re-reads; there only --control, --log,
/// --stats-interval, --metrics-listen and --user apply, everything else comes from the file. Exactly one of the two
/// must be given.
///
/// AoE frames are taken off the NIC by an XDP program into AF_XDP sockets (one per RX
/// queue, one worker thread each) and served with io_uring O_DIRECT disk I/O straight
/// into and out of the frames. The command line is vblade's; the long options are xblade's.
///
/// Stops cleanly on SIGINT/SIGTERM: in-flight I/O finishes and is answered, the XDP
/// program is detached, and a summary (requests, bytes, errors, latency percentiles) is
/// printed. Needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK) to start;
/// with --user it then runs as that user with no capability (docs/PRIVILEGES.md).
#[derive(Clone, Debug, Parser)]
#[command(name = "xblade", version = crate::build::VERSION, about, long_about, after_help = EXAMPLES, override_usage = USAGE)]
#[command(group(ArgGroup::new("what").required(true).args(["shelf", "config"])))]
pub struct Cli {
    /// Shelf (AoE major address), 0-65534.
    #[arg(value_parser = clap::value_parser!(u16).range(0..0xFFFF), requires_all = ["slot", "iface", "file"])]
    pub shelf: Option<u16>,

    /// Slot (AoE minor address), 0-254.
    #[arg(value_parser = clap::value_parser!(u8).range(0..0xFF))]
    pub slot: Option<u8>,

    /// Network interface to serve on (e.g. ens1f0).
    #[arg(value_parser = parse_interface)]
    pub iface: Option<String>,

    /// Backing store: a regular file or a block device; or `null:SIZE` (e.g. null:64G), a
    /// device that reads zeros and discards writes, to measure the network path alone.
    pub file: Option<PathBuf>,

    /// Serve every export of this TOML configuration file instead of one from the command
    /// line (no SHELF SLOT IFACE FILE, and none of the export or interface options: the
    /// file's [defaults], [interfaces.NAME] and [[export]] tables carry them).
    #[arg(long, value_name = "FILE", conflicts_with_all = CONFIG_CONFLICTS)]
    pub config: Option<PathBuf>,

    /// Control socket (xbladectl: status, reload, stats). With --config: overrides the file's
    /// `control` (default /run/xblade/control.sock). With SHELF SLOT IFACE FILE: none unless
    /// given.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9650; port 0:
    /// any free port, logged and shown by `xbladectl status`). Off unless given here or as
    /// `metrics_listen` in the --config file's [defaults] (this wins). Bound at start-up;
    /// a reload cannot move it (restart xblade to change it). The endpoint has no
    /// authentication: bind it to loopback or a management network.
    #[arg(long, value_name = "ADDR:PORT", value_parser = file::parse_listen_addr)]
    pub metrics_listen: Option<SocketAddr>,

    /// Buffer count advertised to initiators: requests each may have outstanding. The Linux
    /// initiator uses at most 128.
    #[arg(short = 'b', long = "buffers", default_value_t = file::DEFAULT_BUFFERS, value_parser = clap::value_parser!(u16).range(1..))]
    pub buffer_count: u16,

    /// O_DIRECT (vblade compatibility; xblade always uses direct I/O when the file allows).
    #[arg(short = 'd')]
    pub direct: bool,

    /// Synchronous writes: every write is durable (O_DSYNC) before it is acknowledged.
    #[arg(short = 's', long = "sync")]
    pub sync_writes: bool,

    /// Export read-only: writes are refused (ATA ABRT).
    #[arg(short = 'r', long = "read-only")]
    pub read_only: bool,

    /// Only these initiator MACs may use the target (comma separated; seeds the AoE MAC
    /// mask list, enforced in the XDP program).
    #[arg(short = 'm', long = "mask", value_delimiter = ',')]
    pub mask: Vec<Mac>,

    /// Lock the mask list and config string: hosts on the segment may read them, but their
    /// edits (AoE Mac Mask List edits, Query Config sets) are refused; only the operator
    /// changes them (-m, `xbladectl mask`, `xbladectl config-string`). A reservation the operator sets with `xbladectl
    /// reserve` cannot be changed from the wire either; initiators' own reservations work
    /// as usual.
    #[arg(long)]
    pub locked: bool,

    /// Export window: first sector of FILE to export.
    #[arg(
        short = 'o',
        long = "offset",
        default_value_t = 0,
        value_name = "SECTORS"
    )]
    pub offset_sectors: u64,

    /// Export window: number of sectors to export (default: to the end of FILE).
    #[arg(short = 'l', long = "length", value_name = "SECTORS")]
    pub length_sectors: Option<u64>,

    /// How to attach the XDP program: native (driver), generic (skb), or auto (native, else
    /// generic).
    #[arg(long, default_value = "auto", value_parser = parse_xdp_mode)]
    pub xdp_mode: XdpAttachMode,

    /// UMEM frames per RX queue (a power of two, 64-32768). Each is 4 KiB: the default
    /// pins 16 MiB per queue for the NIC and the disk. The kernel gets 512 of them for
    /// reception at first (the most recently used: they stay in the CPU's caches), twice as
    /// many each time a burst fills three quarters of that, up to all of them.
    #[arg(long, default_value_t = file::DEFAULT_FRAMES, value_parser = parse_frames)]
    pub frames: u32,

    /// Most RX descriptors one worker takes per loop iteration.
    #[arg(long, default_value_t = file::DEFAULT_BATCH, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,

    /// How disk I/O is issued: io_uring; sync (preadv/pwritev on the worker thread); mmap
    /// (tmpfs and ramfs only: the export window mapped into xblade, a read or write is a
    /// memcpy, no system call); or auto: for memory-backed files mmap when the file has no
    /// holes and -s is not given, else sync (io_uring would hand their I/O to a helper
    /// thread, a context switch per request), io_uring for everything else.
    #[arg(long, default_value = "auto", value_parser = ["auto", "uring", "sync", "mmap"])]
    pub io_engine: String,

    /// Busy-poll: workers spin on their rings instead of sleeping when idle (lowest latency;
    /// each worker keeps a core busy).
    #[arg(long)]
    pub busy_poll: bool,

    /// After the last work, keep polling this many microseconds before sleeping: a
    /// closed-loop initiator's next request then finds the worker awake (lower latency at
    /// low queue depth) while an idle target still sleeps. While disk I/O is in flight the
    /// worker polls 20 times as long (1 ms at the default), since a completion is due: a
    /// wake-up per completion costs tens of µs. 0 sleeps at once (pure event mode).
    #[arg(long, default_value_t = file::DEFAULT_SPIN_US, value_name = "MICROSECONDS")]
    pub spin_us: u32,

    /// AF_XDP preferred busy polling: set SO_PREFER_BUSY_POLL, SO_BUSY_POLL = MICROSECONDS
    /// and SO_BUSY_POLL_BUDGET on every socket, and have the workers drive the NIC's NAPI
    /// processing from their own loop (a recvfrom or sendto on the socket every iteration)
    /// instead of leaving it to interrupts and softirqs. xblade never blocks on the socket,
    /// so any non-zero value turns it on; 0 (the default) leaves it off. It polls something
    /// only on a zero-copy socket (a NIC whose driver has AF_XDP zero-copy; never veth or
    /// generic XDP): xblade logs napi_id=0 and warns otherwise. Needs CAP_NET_ADMIN
    /// at start-up. On a real NIC also set /sys/class/net/IFACE/napi_defer_hard_irqs (e.g. 2)
    /// and gro_flush_timeout (e.g. 200000 ns), or interrupts keep firing: see
    /// docs/PERFORMANCE.md, "Preferred busy polling". Pairs with --busy-poll or --spin-us.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(i64::from(*file::NAPI_BUSY_POLL_US_RANGE.start())..=i64::from(*file::NAPI_BUSY_POLL_US_RANGE.end())))]
    pub napi_busy_poll_us: u32,

    /// Packets one busy-poll pass may process (SO_BUSY_POLL_BUDGET); only with
    /// --napi-busy-poll-us.
    #[arg(long, value_name = "PACKETS", requires = "napi_busy_poll_us",
          default_value_t = file::DEFAULT_NAPI_BUSY_POLL_BUDGET,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub napi_busy_poll_budget: u16,

    /// Serve only the first N RX queues (default: all). Frames steered to other queues are
    /// lost, so use this only with a NIC configured accordingly.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub queues: Option<u32>,

    /// Do not pin worker threads to CPUs (by default worker N runs on CPU N mod CPUs).
    #[arg(long)]
    pub no_pin: bool,

    /// Print a line of rates every SECONDS (0: never; the default, or with --config the
    /// file's `stats_interval`).
    #[arg(long, value_name = "SECONDS")]
    pub stats_interval: Option<u64>,

    /// Where to keep the state initiators set (config string, mask list, reservation)
    /// across restarts. Default: FILE.xblade-state next to an image file, or
    /// /var/lib/xblade/NAME.state for a block device.
    #[arg(long, value_name = "PATH", conflicts_with = "no_state")]
    pub state_file: Option<PathBuf>,

    /// Keep no state across restarts.
    #[arg(long)]
    pub no_state: bool,

    /// Serial number reported by IDENTIFY DEVICE (default: derived from shelf and slot).
    #[arg(long, value_parser = parse_serial)]
    pub serial: Option<String>,

    /// Tuning experiments (hidden): bind AF_XDP without XDP_USE_NEED_WAKEUP.
    #[arg(long, hide = true)]
    pub tune_no_need_wakeup: bool,

    /// Tuning experiments (hidden): plain READ/WRITE instead of registered file and buffers.
    #[arg(long, hide = true)]
    pub tune_no_fixed: bool,

    /// Tuning experiments (hidden): no merging of adjacent requests.
    #[arg(long, hide = true)]
    pub tune_no_merge: bool,

    /// Tuning experiments (hidden): io_uring without SINGLE_ISSUER | DEFER_TASKRUN.
    #[arg(long, hide = true)]
    pub tune_no_defer_taskrun: bool,

    /// Tuning experiments (hidden): every free RX frame on the fill ring (no depth cap).
    #[arg(long, hide = true)]
    pub tune_no_fill_cap: bool,

    /// Tuning experiments (hidden): the null backend zero-fills a read's whole data area,
    /// even the bytes known to be zero already.
    #[arg(long, hide = true)]
    pub tune_no_zero_skip: bool,

    /// Run as this user (and its groups) once set up: after the XDP programs are attached
    /// and every socket, ring and file is open, xblade drops every capability and allows
    /// itself only the system calls it still needs (docs/PRIVILEGES.md). A reload can then
    /// add exports on interfaces already served, but not attach a new interface. With
    /// --config: overrides the file's `user`. Default: stay root.
    #[arg(long, value_name = "NAME", value_parser = parse_user)]
    pub user: Option<String>,

    /// Log level filter (error, warn, info, debug, trace), or RUST_LOG syntax.
    #[arg(long, default_value = "info")]
    pub log: String,
}

const USAGE: &str = "xblade [OPTIONS] <SHELF> <SLOT> <IFACE> <FILE>
       xblade --config <FILE> [--control <PATH>] [--stats-interval <SECONDS>]
              [--metrics-listen <ADDR:PORT>] [--user <NAME>] [--log <LOG>]";

const EXAMPLES: &str = "Examples:
  xblade 1 0 ens1f0 /srv/disk.img            export disk.img as e1.0
  xblade -r -m 52:54:00:12:34:56 2 1 eth1 /dev/sdb   read-only, one initiator
  xblade -o 2048 -l 1048576 1 1 eth1 disk.img        a 512 MiB window at 1 MiB
  xblade --config /etc/xblade/xblade.toml    every export the file lists
  xblade --config /etc/xblade/xblade.toml --control /tmp/x.sock --stats-interval 10
  xblade --metrics-listen 127.0.0.1:9650 1 0 eth1 disk.img   with Prometheus metrics

A minimal configuration file:
  [[export]]
  shelf = 1
  slot = 0
  file = \"/srv/vol0.img\"
  interfaces = [\"eth1\", \"eth2\"]";

/// The arguments `--config` excludes: the export and interface ones, which the file carries.
const CONFIG_CONFLICTS: [&str; 30] = [
    "shelf",
    "slot",
    "iface",
    "file",
    "buffer_count",
    "sync_writes",
    "read_only",
    "mask",
    "locked",
    "offset_sectors",
    "length_sectors",
    "serial",
    "state_file",
    "no_state",
    "io_engine",
    "xdp_mode",
    "frames",
    "batch",
    "queues",
    "no_pin",
    "spin_us",
    "busy_poll",
    "napi_busy_poll_us",
    "napi_busy_poll_budget",
    "tune_no_need_wakeup",
    "tune_no_fixed",
    "tune_no_merge",
    "tune_no_defer_taskrun",
    "tune_no_fill_cap",
    "tune_no_zero_skip",
];

impl Cli {
    /// What to serve: the `--config` file (loaded and checked, then `--control` and
    /// `--stats-interval` applied over it), or the one export of vblade's command line.
    pub fn serve_config(&self) -> Result<ServeConfig, ConfigError> {
        self.serve_config_reusing(&[])
    }

    /// As [`Cli::serve_config`], for a reload: files in `open` (path, read-only) are
    /// already open and are not opened again to check them ([`file::load_reusing`]).
    pub fn serve_config_reusing(
        &self,
        open: &[(PathBuf, bool)],
    ) -> Result<ServeConfig, ConfigError> {
        match &self.config {
            Some(path) => self.over_file(path, |p| file::load_reusing(p, open)),
            None => self.command_line_config(),
        }
    }

    /// `--config`: `load` the file, then apply the command line's overrides.
    fn over_file(
        &self,
        path: &Path,
        load: impl FnOnce(&Path) -> Result<ServeConfig, ConfigError>,
    ) -> Result<ServeConfig, ConfigError> {
        let mut config = load(path)?;
        if let Some(control) = &self.control {
            config.control = Some(control.clone());
        }
        if let Some(interval) = self.stats_interval {
            config.stats_interval_s = interval;
        }
        if let Some(addr) = self.metrics_listen {
            config.metrics_listen = Some(addr);
        }
        if let Some(user) = &self.user {
            config.user = Some(user.clone());
        }
        Ok(config)
    }

    /// vblade's form: one export on one interface.
    fn command_line_config(&self) -> Result<ServeConfig, ConfigError> {
        let (Some(shelf), Some(slot), Some(iface), Some(file)) =
            (self.shelf, self.slot, &self.iface, &self.file)
        else {
            return Err(ConfigError::Usage(
                "nothing to serve: give SHELF SLOT IFACE FILE, or --config FILE".to_owned(),
            ));
        };
        let key = ExportKey::new(shelf, slot);
        let state = match (&self.state_file, self.no_state) {
            (_, true) => StateLocation::None,
            (Some(path), false) => StateLocation::File(path.clone()),
            (None, false) => StateLocation::BesideImage,
        };
        let export = ExportConfig {
            key,
            file: file.clone(),
            interfaces: vec![iface.clone()],
            read_only: self.read_only,
            sync: self.sync_writes,
            offset_sectors: self.offset_sectors,
            length_sectors: self.length_sectors,
            mask: self.mask.clone(),
            locked: self.locked,
            buffers: self.buffer_count,
            serial: self.serial.clone(),
            io_engine: match self.io_engine.as_str() {
                "uring" => IoEngine::Uring,
                "sync" => IoEngine::Sync,
                "mmap" => IoEngine::Mmap,
                _ => IoEngine::Auto,
            },
            state,
        };
        let interface = InterfaceConfig {
            name: iface.clone(),
            xdp_mode: self.xdp_mode,
            queues: self.queues,
            frames: self.frames,
            batch: self.batch,
            spin_us: self.spin_us,
            busy_poll: self.busy_poll,
            pin: !self.no_pin,
            napi_busy_poll: (self.napi_busy_poll_us > 0).then_some(NapiBusyPoll {
                busy_poll_us: self.napi_busy_poll_us,
                budget: self.napi_busy_poll_budget,
            }),
            tuning: TuningFlags {
                need_wakeup: !self.tune_no_need_wakeup,
                defer_taskrun: !self.tune_no_defer_taskrun,
                fixed: !self.tune_no_fixed,
                merge: !self.tune_no_merge,
                fill_cap: !self.tune_no_fill_cap,
                zero_skip: !self.tune_no_zero_skip,
            },
        };
        Ok(ServeConfig {
            source: ConfigSource::CommandLine,
            control: self.control.clone(),
            stats_interval_s: self.stats_interval.unwrap_or(0),
            metrics_listen: self.metrics_listen,
            user: self.user.clone(),
            state_dir: Some(PathBuf::from(file::DEFAULT_STATE_DIR)),
            interfaces: [(iface.clone(), interface)].into_iter().collect(),
            exports: [(key, export)].into_iter().collect(),
        })
    }
}

fn parse_xdp_mode(s: &str) -> Result<XdpAttachMode, String> {
    s.parse::<XdpAttachMode>().map_err(|e| e.to_string())
}

fn parse_frames(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    file::check_frames(n)?;
    Ok(n)
}

fn parse_interface(s: &str) -> Result<String, String> {
    file::check_interface_name(s)?;
    Ok(s.to_owned())
}

fn parse_user(s: &str) -> Result<String, String> {
    crate::privilege::Account::lookup(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn parse_serial(s: &str) -> Result<String, String> {
    file::check_serial(s)?;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xblade").chain(args.iter().copied()))
    }

    #[test]
    fn vblade_command_line() {
        let cli = parse(&[
            "-b",
            "64",
            "-d",
            "-s",
            "-r",
            "-m",
            "02:00:00:00:00:01,020000000002",
            "-o",
            "8",
            "-l",
            "100",
            "3",
            "4",
            "eth0",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(
            (cli.shelf, cli.slot, cli.iface.as_deref()),
            (Some(3), Some(4), Some("eth0"))
        );
        assert_eq!(cli.file, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cli.buffer_count, 64);
        assert!(cli.direct && cli.sync_writes && cli.read_only);
        assert_eq!(
            cli.mask,
            vec![Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2])]
        );
        assert_eq!((cli.offset_sectors, cli.length_sectors), (8, Some(100)));
        assert_eq!(cli.xdp_mode, XdpAttachMode::Auto);
    }

    #[test]
    fn rejects_wildcard_addresses_and_bad_values() {
        assert!(parse(&["65535", "0", "eth0", "f"]).is_err());
        assert!(parse(&["1", "255", "eth0", "f"]).is_err());
        assert!(parse(&["1", "0", "eth0"]).is_err());
        assert!(parse(&["-m", "nonsense", "1", "0", "eth0", "f"]).is_err());
        assert!(parse(&["--frames", "1000", "1", "0", "eth0", "f"]).is_err());
        assert!(parse(&["--xdp-mode", "hw", "1", "0", "eth0", "f"]).is_err());
        assert!(parse(&["-b", "0", "1", "0", "eth0", "f"]).is_err());
        assert!(parse(&[
            "--xdp-mode",
            "generic",
            "--frames",
            "1024",
            "1",
            "0",
            "eth0",
            "f"
        ])
        .is_ok());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn exactly_one_of_positionals_and_config() {
        use clap::error::ErrorKind;
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--config"), "{e}");
        assert_eq!(
            parse(&["1", "0", "eth0"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--config", "x.toml", "1", "0", "eth0", "f"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["--config", "x.toml", "1"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        let cli = parse(&["--config", "x.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!((cli.shelf, cli.iface, cli.file), (None, None, None));
    }

    #[test]
    fn config_excludes_export_and_interface_options() {
        use clap::error::ErrorKind;
        let options: &[&[&str]] = &[
            &["-b", "8"],
            &["-s"],
            &["-r"],
            &["-m", "020000000001"],
            &["-o", "1"],
            &["-l", "1"],
            &["--serial", "X"],
            &["--state-file", "/tmp/s"],
            &["--no-state"],
            &["--io-engine", "sync"],
            &["--xdp-mode", "native"],
            &["--frames", "64"],
            &["--batch", "8"],
            &["--queues", "1"],
            &["--no-pin"],
            &["--spin-us", "0"],
            &["--busy-poll"],
            &["--tune-no-need-wakeup"],
            &["--tune-no-fixed"],
            &["--tune-no-merge"],
            &["--tune-no-defer-taskrun"],
            &["--tune-no-fill-cap"],
        ];
        for option in options {
            let mut args = vec!["--config", "x.toml"];
            args.extend_from_slice(option);
            let e = parse(&args).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{option:?}: {e}");
            // And each still works on the command-line form.
            let mut args = option.to_vec();
            args.extend_from_slice(&["1", "0", "eth0", "f"]);
            assert!(parse(&args).is_ok(), "{option:?}");
        }
        let cli = parse(&[
            "--config",
            "x.toml",
            "--control",
            "/tmp/c.sock",
            "--log",
            "debug",
            "--stats-interval",
            "3",
        ])
        .unwrap();
        assert_eq!(
            (cli.control, cli.log.as_str(), cli.stats_interval),
            (Some(PathBuf::from("/tmp/c.sock")), "debug", Some(3))
        );
    }

    #[test]
    fn command_line_is_a_one_export_config() {
        let cli = parse(&[
            "-b",
            "64",
            "-s",
            "-r",
            "-m",
            "02:00:00:00:00:01",
            "--locked",
            "-o",
            "8",
            "-l",
            "100",
            "--serial",
            "SER",
            "--io-engine",
            "uring",
            "--state-file",
            "/tmp/st",
            "--xdp-mode",
            "generic",
            "--queues",
            "2",
            "--frames",
            "1024",
            "--batch",
            "16",
            "--spin-us",
            "7",
            "--busy-poll",
            "--napi-busy-poll-us",
            "20",
            "--napi-busy-poll-budget",
            "32",
            "--no-pin",
            "--tune-no-fixed",
            "--tune-no-merge",
            "--control",
            "/tmp/c.sock",
            "--stats-interval",
            "9",
            "--metrics-listen",
            "[::1]:0",
            "3",
            "4",
            "eth0",
            "/tmp/x",
        ])
        .unwrap();
        let key = ExportKey::new(3, 4);
        let expected = ServeConfig {
            source: ConfigSource::CommandLine,
            control: Some(PathBuf::from("/tmp/c.sock")),
            stats_interval_s: 9,
            metrics_listen: Some("[::1]:0".parse().unwrap()),
            user: None,
            state_dir: Some(PathBuf::from(file::DEFAULT_STATE_DIR)),
            interfaces: [(
                "eth0".to_owned(),
                InterfaceConfig {
                    name: "eth0".into(),
                    xdp_mode: XdpAttachMode::Generic,
                    queues: Some(2),
                    frames: 1024,
                    batch: 16,
                    spin_us: 7,
                    busy_poll: true,
                    pin: false,
                    napi_busy_poll: Some(NapiBusyPoll {
                        busy_poll_us: 20,
                        budget: 32,
                    }),
                    tuning: TuningFlags {
                        need_wakeup: true,
                        defer_taskrun: true,
                        fixed: false,
                        merge: false,
                        fill_cap: true,
                        zero_skip: true,
                    },
                },
            )]
            .into_iter()
            .collect(),
            exports: [(
                key,
                ExportConfig {
                    key,
                    file: PathBuf::from("/tmp/x"),
                    interfaces: vec!["eth0".into()],
                    read_only: true,
                    sync: true,
                    offset_sectors: 8,
                    length_sectors: Some(100),
                    mask: vec![Mac([2, 0, 0, 0, 0, 1])],
                    locked: true,
                    buffers: 64,
                    serial: Some("SER".into()),
                    io_engine: IoEngine::Uring,
                    state: StateLocation::File(PathBuf::from("/tmp/st")),
                },
            )]
            .into_iter()
            .collect(),
        };
        assert_eq!(cli.serve_config().unwrap(), expected);
    }

    #[test]
    fn command_line_defaults() {
        let config = parse(&["1", "0", "eth0", "null:1G"])
            .unwrap()
            .serve_config()
            .unwrap();
        assert_eq!((config.control, config.stats_interval_s), (None, 0));
        let export = &config.exports[&ExportKey::new(1, 0)];
        assert_eq!(
            (
                export.state.clone(),
                export.io_engine,
                export.buffers,
                export.read_only,
                export.locked
            ),
            (
                StateLocation::BesideImage,
                IoEngine::Auto,
                128,
                false,
                false
            )
        );
        let iface = &config.interfaces["eth0"];
        assert_eq!(
            (
                iface.frames,
                iface.batch,
                iface.spin_us,
                iface.pin,
                iface.queues
            ),
            (4096, 64, 50, true, None)
        );
        assert_eq!(iface.tuning, TuningFlags::default());
        assert_eq!(iface.napi_busy_poll, None, "off unless asked");
        let budget_alone = parse(&["--napi-busy-poll-budget", "64", "1", "0", "eth0", "f"]);
        assert!(budget_alone.is_err(), "a budget needs --napi-busy-poll-us");
        let zero_budget = parse(&[
            "--napi-busy-poll-us",
            "20",
            "--napi-busy-poll-budget",
            "0",
            "1",
            "0",
            "eth0",
            "f",
        ]);
        assert!(zero_budget.is_err());
        let off = parse(&["--napi-busy-poll-us", "0", "1", "0", "eth0", "f"])
            .unwrap()
            .serve_config()
            .unwrap();
        assert_eq!(off.interfaces["eth0"].napi_busy_poll, None);
        let config = parse(&["--no-state", "1", "0", "eth0", "f"])
            .unwrap()
            .serve_config()
            .unwrap();
        assert_eq!(
            config.exports[&ExportKey::new(1, 0)].state,
            StateLocation::None
        );
        assert!(parse(&["--serial", "123456789012345678901", "1", "0", "eth0", "f"]).is_err());
        assert!(parse(&["1", "0", "a/b", "f"]).is_err());
        assert_eq!(config.metrics_listen, None, "off unless asked");
        let e = parse(&["--metrics-listen", "localhost:9650", "1", "0", "eth0", "f"]).unwrap_err();
        assert!(e.to_string().contains("is not ADDR:PORT"), "{e}");
    }

    #[test]
    fn config_file_overrides() {
        let file_config = || {
            Ok(ServeConfig {
                source: ConfigSource::File("x.toml".into()),
                control: Some(PathBuf::from(file::DEFAULT_CONTROL)),
                stats_interval_s: 5,
                metrics_listen: Some("127.0.0.1:9650".parse().unwrap()),
                user: None,
                state_dir: None,
                interfaces: Default::default(),
                exports: Default::default(),
            })
        };
        let cli = parse(&["--config", "x.toml"]).unwrap();
        let config = cli
            .over_file(Path::new("x.toml"), |_| file_config())
            .unwrap();
        assert_eq!(config, file_config().unwrap());
        let cli = parse(&[
            "--config",
            "x.toml",
            "--control",
            "/tmp/c",
            "--stats-interval",
            "0",
            "--metrics-listen",
            "0.0.0.0:9100",
            "--user",
            "nobody",
        ])
        .unwrap();
        let config = cli
            .over_file(Path::new("x.toml"), |_| file_config())
            .unwrap();
        assert_eq!(
            (
                config.control,
                config.stats_interval_s,
                config.metrics_listen,
                config.user
            ),
            (
                Some(PathBuf::from("/tmp/c")),
                0,
                Some("0.0.0.0:9100".parse().unwrap()),
                Some("nobody".to_owned())
            )
        );
    }

    #[test]
    fn user_option() {
        let config = parse(&["--user", "nobody", "1", "0", "lo", "null:1M"])
            .unwrap()
            .serve_config()
            .unwrap();
        assert_eq!(config.user.as_deref(), Some("nobody"));
        let e = parse(&["--user", "xblade-no-such-user", "1", "0", "lo", "f"]).unwrap_err();
        assert!(
            e.to_string().contains("no user 'xblade-no-such-user'"),
            "{e}"
        );
        let e = parse(&["--user", "root", "1", "0", "lo", "f"]).unwrap_err();
        assert!(e.to_string().contains("uid 0"), "{e}");
    }

    #[test]
    fn config_file_is_loaded() {
        let dir = std::env::temp_dir().join(format!("xblade-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("box.toml");
        std::fs::write(&path, "[defaults]\nstats_interval = 4\n").unwrap();
        let arg = path.to_str().unwrap();
        let config = parse(&["--config", arg]).unwrap().serve_config().unwrap();
        assert_eq!(config.source, ConfigSource::File(path.clone()));
        assert_eq!(config.stats_interval_s, 4);
        assert_eq!(config.control, Some(PathBuf::from(file::DEFAULT_CONTROL)));
        std::fs::write(&path, "[defaults]\nframes = 3\n").unwrap();
        let e = parse(&["--config", arg])
            .unwrap()
            .serve_config()
            .unwrap_err();
        assert!(e.to_string().starts_with(&format!("{arg}:2: ")), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_explains_both_forms() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("xblade [OPTIONS] <SHELF> <SLOT> <IFACE> <FILE>"),
            "{help}"
        );
        assert!(help.contains("xblade --config <FILE>"), "{help}");
        assert!(help.contains("--control <PATH>"), "{help}");
        assert!(help.contains("--metrics-listen <ADDR:PORT>"), "{help}");
    }
}
