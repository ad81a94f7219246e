//! The command line: vblade's positional form and options, plus xblade's own long options.

use std::path::PathBuf;

use aoe_proto::Mac;
use clap::Parser;

use crate::xdp::XdpAttachMode;

/// AoE r11 target: exports FILE as AoE shelf SHELF, slot SLOT on network interface IFACE.
///
/// AoE frames are taken off the NIC by an XDP program into AF_XDP sockets (one per RX
/// queue, one worker thread each) and served with io_uring O_DIRECT disk I/O straight
/// into and out of the frames. The command line is vblade's; the long options are xblade's.
///
/// Stops cleanly on SIGINT/SIGTERM: in-flight I/O finishes and is answered, the XDP
/// program is detached, and a summary (requests, bytes, errors, latency percentiles) is
/// printed. Needs root (or CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK).
#[derive(Clone, Debug, Parser)]
#[command(name = "xblade", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Shelf (AoE major address), 0-65534.
    #[arg(value_parser = clap::value_parser!(u16).range(0..0xFFFF))]
    pub shelf: u16,

    /// Slot (AoE minor address), 0-254.
    #[arg(value_parser = clap::value_parser!(u8).range(0..0xFF))]
    pub slot: u8,

    /// Network interface to serve on (e.g. ens1f0).
    pub iface: String,

    /// Backing store: a regular file or a block device; or `null:SIZE` (e.g. null:64G), a
    /// device that reads zeros and discards writes, to measure the network path alone.
    pub file: PathBuf,

    /// Buffer count advertised to initiators: requests each may have outstanding. The Linux
    /// initiator uses at most 128.
    #[arg(short = 'b', long = "buffers", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
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
    /// pins 16 MiB per queue for the NIC and the disk.
    #[arg(long, default_value_t = 4096, value_parser = parse_frames)]
    pub frames: u32,

    /// Most RX descriptors one worker takes per loop iteration.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,

    /// How disk I/O is issued: io_uring; sync (preadv/pwritev on the worker thread); or
    /// auto: sync for memory-backed files (tmpfs, whose I/O io_uring would hand to a
    /// helper thread, a context switch per request), io_uring for everything else.
    #[arg(long, default_value = "auto", value_parser = ["auto", "uring", "sync"])]
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
    #[arg(long, default_value_t = 50, value_name = "MICROSECONDS")]
    pub spin_us: u32,

    /// Serve only the first N RX queues (default: all). Frames steered to other queues are
    /// lost, so use this only with a NIC configured accordingly.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub queues: Option<u32>,

    /// Do not pin worker threads to CPUs (by default worker N runs on CPU N mod CPUs).
    #[arg(long)]
    pub no_pin: bool,

    /// Print a line of rates every SECONDS (0: never).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub stats_interval: u64,

    /// Where to keep the state initiators set (config string, mask list, reservation)
    /// across restarts. Default: FILE.xblade-state next to an image file, or
    /// /var/lib/xblade/NAME.state for a block device.
    #[arg(long, value_name = "PATH", conflicts_with = "no_state")]
    pub state_file: Option<PathBuf>,

    /// Keep no state across restarts.
    #[arg(long)]
    pub no_state: bool,

    /// Serial number reported by IDENTIFY DEVICE (default: derived from shelf and slot).
    #[arg(long)]
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

    /// Log level filter (error, warn, info, debug, trace), or RUST_LOG syntax.
    #[arg(long, default_value = "info")]
    pub log: String,
}

const EXAMPLES: &str = "Examples:
  xblade 1 0 ens1f0 /srv/disk.img            export disk.img as e1.0
  xblade -r -m 52:54:00:12:34:56 2 1 eth1 /dev/sdb   read-only, one initiator
  xblade -o 2048 -l 1048576 1 1 eth1 disk.img        a 512 MiB window at 1 MiB";

fn parse_xdp_mode(s: &str) -> Result<XdpAttachMode, String> {
    s.parse::<XdpAttachMode>().map_err(|e| e.to_string())
}

fn parse_frames(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(64..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} frames: need a power of two from 64 to 32768"));
    }
    Ok(n)
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
        assert_eq!((cli.shelf, cli.slot, cli.iface.as_str()), (3, 4, "eth0"));
        assert_eq!(cli.file, PathBuf::from("/tmp/x"));
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
}
