//! `xbladectl`: asks a running xblade what it serves and what it counted, makes it reload
//! its config file, and shows or sets exports' access control, over its control socket. The
//! command line ([`Args`]) lives here, in the library, so that man pages and shell
//! completions can be generated from it; [`format`], [`stats`], [`monitor`] and [`acl`]
//! render replies for a human.

pub mod acl;
pub mod format;
pub mod monitor;
pub mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{
    decode_reply, Client, ConfigStringOp, MaskOp, Reply, Request, ReserveOp, DEFAULT_SOCKET,
    SOCKET_ENV,
};
use acl::{
    acl_request, config_string_request, format_acl, format_acl_change, mask_request,
    reserve_request,
};
use clap::{Parser, Subcommand, ValueEnum};
use format::{format_reload, format_status};

#[derive(Parser, Debug)]
#[command(
    name = "xbladectl",
    version = crate::build::VERSION,
    about = "Talk to a running xblade over its control socket",
    long_about = "Talk to a running xblade over its control socket.\n\n\
        xblade listens on a control socket when it runs with a config file (--config), or when \
        it was started with --control PATH. The socket is mode 0600: run xbladectl as the user \
        xblade runs as, usually root.\n\n\
        The socket is found at --socket PATH, else at $XBLADE_CONTROL, else at \
        /run/xblade/control.sock.\n\n\
        Exit status: 0 on success, 1 when xblade refuses the request (e.g. a reload of an \
        invalid config) or cannot be reached, 2 on a usage error.",
    after_help = "Examples:\n  \
        xbladectl status                 exports and interfaces, as tables\n  \
        xbladectl --json status          the same as one line of JSON\n  \
        xbladectl reload                 re-read the config file and apply the difference\n  \
        xbladectl stats                  every counter: per export, queue and interface\n  \
        xbladectl stats e1.0 --json      one export's counters as JSON\n  \
        xbladectl monitor 2              rates every 2 s, like iostat -x (Ctrl-C stops)\n  \
        xbladectl monitor 1 --count 10   ten refreshes, then exit (for scripts)\n  \
        xbladectl acl e1.0               mask list, reservation, config string, lock\n  \
        xbladectl mask e1.0 set 02:00:00:00:00:01 02:00:00:00:00:02\n  \
        xbladectl reserve e1.0 clear\n  \
        xbladectl config-string e1.0 set cluster-a\n  \
        xbladectl --socket /tmp/x.sock status"
)]
pub struct Args {
    /// The control socket [default: $XBLADE_CONTROL, else /run/xblade/control.sock]
    #[arg(long, short = 's', value_name = "PATH", global = true)]
    socket: Option<PathBuf>,

    /// Print xblade's reply as it came: one line of JSON (see `xblade::control::protocol`)
    #[arg(long, global = true)]
    json: bool,

    /// Give up when xblade has not replied within this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, global = true)]
    timeout: f64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Show every export (name, file, size, interfaces, rw/ro, state) and every interface
    /// (state, MAC, MTU, sectors per frame, queues, XDP mode, exports)
    Status,
    /// Make xblade re-read its config file and apply the difference; print what changed.
    /// Exports the reload does not touch keep serving without a pause. If the new config is
    /// invalid, nothing changes and the error is printed (exit status 1).
    Reload,
    /// Show every counter since xblade started. Per export: reads, writes, other commands,
    /// bytes, ATA/AoE/disk errors, requests refused by the mask list or a reservation,
    /// requests in flight, and latency (receive to reply) p50/p99/p99.9/max. Per queue:
    /// frames in and out, frames dropped by reason, the socket's XDP_STATISTICS, bounced and
    /// merged requests, busy time. Per interface: the XDP program's verdicts; requests it
    /// drops (a sender not on an export's mask list, frames too short for AoE) never reach a
    /// worker and are counted there, not per export. An export a reload replaced counts from
    /// the reload on. Quantiles are bucket upper bounds: at most 12.5% above the exact
    /// value.
    Stats {
        /// Only these exports (e<shelf>.<slot>, e.g. e1.0), in this order [default: all]
        #[arg(value_name = "EXPORT")]
        exports: Vec<String>,
    },
    /// Print rates every INTERVAL seconds until interrupted, like `iostat -x`: per export
    /// reads and writes per second, MB/s each way, requests in flight, p50 and p99 latency of
    /// the requests answered in that interval, and errors in it; per queue frames per second,
    /// frames dropped per second by the worker and by the kernel (XDP_STATISTICS), and the
    /// worker's busy share. Fits 80 columns.
    Monitor {
        /// Seconds between refreshes
        #[arg(value_name = "INTERVAL", default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes [default: never]
        #[arg(long, short = 'c', value_name = "N")]
        count: Option<u64>,
    },
    /// Show exports' access control: the MAC mask list (entries from the config file marked
    /// `configured`), the reservation (and whether the operator set it), the AoE config
    /// string, and whether the export is locked
    #[command(
        long_about = "Show exports' access control: the MAC mask list (entries from the \
            config file marked `configured`), the reservation (and whether the operator set \
            it), the AoE config string, and whether the export is locked.\n\n\
            On a locked export (`locked = true` in the config file, or `--locked`) hosts on \
            the segment may read the mask list and config string but not change them (the \
            operator does, with `xbladectl mask` and `xbladectl config-string`); \
            initiators' reservations work as usual, but one the operator set with `xbladectl \
            reserve` can only be changed by the operator."
    )]
    Acl {
        /// Exports to show, as e<shelf>.<slot> (e.g. e1.0) [default: every export]
        #[arg(value_name = "EXPORT")]
        exports: Vec<String>,
    },
    /// Set, add to, remove from or clear an export's MAC mask list (its ACL: only listed
    /// hosts may use the export; enforced in the XDP program)
    #[command(
        long_about = "Set, add to, remove from or clear an export's MAC mask list.\n\n\
            A non-empty mask list is an ACL: only listed hosts may use the export, and the XDP \
            program drops everything else. The change takes effect at once on every interface \
            and is saved in the export's state file, so it survives a restart. The list holds \
            at most 64 MACs; an edit that would overflow it changes nothing.\n\n\
            Entries of the config file's `mask` key (or `-m`) are put back at start-up and \
            when a reload changes that key: to remove one of those for good, remove it from \
            the file. Entries added here stay across reloads and restarts.",
        after_help = "Examples:\n  \
            xbladectl mask e1.0 set 02:00:00:00:00:01 02:00:00:00:00:02\n  \
            xbladectl mask e1.0 add 52:54:00:12:34:56\n  \
            xbladectl mask e1.0 remove 02:00:00:00:00:02\n  \
            xbladectl mask e1.0 clear      every host may use e1.0 again"
    )]
    Mask {
        /// The export, as e<shelf>.<slot> (e.g. e1.0)
        export: String,
        /// set: the list becomes exactly MAC…; add, remove: MAC… join or leave it; clear:
        /// empty it
        #[arg(value_enum)]
        op: MaskOpArg,
        /// MAC addresses, e.g. 02:00:00:00:00:01 (also 02-00-… or 020000000001)
        #[arg(value_name = "MAC")]
        macs: Vec<String>,
    },
    /// Reserve an export for some hosts, or release it (AoE Reserve/Release, as the operator)
    #[command(
        long_about = "Reserve an export for some hosts, or release it.\n\n\
            While an export is reserved, only the holders may read and write it (others get \
            AoE error 6, \"target is reserved\"; IDENTIFY and Query Config stay answered). \
            The change takes effect at once and is saved in the export's state file. On a \
            locked export, hosts cannot change a reservation the operator set; on an \
            unlocked one a host's force set replaces it, as AoE allows.",
        after_help = "Examples:\n  \
            xbladectl reserve e1.0 set 02:00:00:00:00:01\n  \
            xbladectl reserve e1.0 clear"
    )]
    Reserve {
        /// The export, as e<shelf>.<slot> (e.g. e1.0)
        export: String,
        /// set: only MAC… may read and write; clear: release the export
        #[arg(value_enum)]
        op: SetOrClear,
        /// MAC addresses of the holders, e.g. 02:00:00:00:00:01
        #[arg(value_name = "MAC")]
        macs: Vec<String>,
    },
    /// Set or clear an export's AoE config string (what Query Config reports; on a locked
    /// export, only the operator changes it)
    #[command(
        long_about = "Set or clear an export's AoE config string.\n\n\
            Initiators read the config string with Query Config, and some use it to claim an \
            export (aoecfg, cluster managers). Hosts may set it over the wire unless the \
            export is locked; the operator can always set it here. The change takes effect at \
            once and is saved in the export's state file. At most 1024 bytes.",
        after_help = "Examples:\n  \
            xbladectl config-string e1.0 set cluster-a\n  \
            xbladectl config-string e1.0 clear"
    )]
    ConfigString {
        /// The export, as e<shelf>.<slot> (e.g. e1.0)
        export: String,
        /// set: the string becomes STRING; clear: empty it
        #[arg(value_enum)]
        op: SetOrClear,
        /// The new string (its UTF-8 bytes), for set
        #[arg(value_name = "STRING")]
        value: Option<String>,
    },
}

/// `xbladectl mask EXPORT OP`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskOpArg {
    Set,
    Add,
    Remove,
    Clear,
}

/// `xbladectl reserve EXPORT OP` and `xbladectl config-string EXPORT OP`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOrClear {
    Set,
    Clear,
}

/// The request `command` makes, checked before it is sent. The error names the fix.
fn request_for(command: &Command) -> Result<Request, String> {
    match command {
        Command::Status => Ok(Request::Status),
        Command::Reload => Ok(Request::Reload),
        Command::Stats { exports } => Ok(Request::Stats {
            exports: exports.clone(),
        }),
        // What each refresh asks for.
        Command::Monitor { .. } => Ok(Request::Stats { exports: vec![] }),
        Command::Acl { exports } => acl_request(exports),
        Command::Mask { export, op, macs } => {
            let op = match op {
                MaskOpArg::Set => MaskOp::Set,
                MaskOpArg::Add => MaskOp::Add,
                MaskOpArg::Remove => MaskOp::Remove,
                MaskOpArg::Clear => MaskOp::Clear,
            };
            mask_request(export, op, macs)
        }
        Command::Reserve { export, op, macs } => {
            let op = match op {
                SetOrClear::Set => ReserveOp::Set,
                SetOrClear::Clear => ReserveOp::Clear,
            };
            reserve_request(export, op, macs)
        }
        Command::ConfigString { export, op, value } => {
            let op = match op {
                SetOrClear::Set => ConfigStringOp::Set,
                SetOrClear::Clear => ConfigStringOp::Clear,
            };
            config_string_request(export, op, value.as_deref())
        }
    }
}

fn socket_path(args: &Args) -> PathBuf {
    if let Some(path) = &args.socket {
        return path.clone();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// Runs `xbladectl` with the process's command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 1e9) {
        eprintln!("xbladectl: --timeout must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let path = socket_path(&args);
    if let Command::Monitor { interval, count } = &args.command {
        return run_monitor(&path, &args, *interval, *count);
    }
    let request = match request_for(&args.command) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("xbladectl: {e}");
            return ExitCode::from(2);
        }
    };
    let line = match Client::connect(&path, Duration::from_secs_f64(args.timeout))
        .and_then(|mut client| client.request_line(&request))
    {
        Ok(line) => line,
        Err(e) => {
            eprintln!("xbladectl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reply = match decode_reply(&line) {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("xbladectl: malformed reply from {}: {e}", path.display());
            if args.json {
                println!("{line}");
            }
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{line}");
        return if reply.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match (&request, reply) {
        (_, Reply::Error(error)) => {
            eprintln!("xbladectl: {} failed: {error}", request.name());
            ExitCode::FAILURE
        }
        (Request::Stats { .. }, Reply::Stats(stats)) => {
            print!("{}", stats::format_stats(&stats));
            ExitCode::SUCCESS
        }
        (Request::Status, Reply::Status(status)) => {
            print!("{}", format_status(&status));
            ExitCode::SUCCESS
        }
        (Request::Reload, Reply::Reload(reload)) => {
            print!("{}", format_reload(&reload));
            ExitCode::SUCCESS
        }
        (Request::Acl { .. }, Reply::Acl(acl)) => {
            print!("{}", format_acl(&acl));
            ExitCode::SUCCESS
        }
        (Request::Mask { .. }, Reply::Mask(change)) => {
            print!("{}", format_acl_change("mask list", &change));
            ExitCode::SUCCESS
        }
        (Request::Reserve { .. }, Reply::Reserve(change)) => {
            print!("{}", format_acl_change("reservation", &change));
            ExitCode::SUCCESS
        }
        (Request::ConfigString { .. }, Reply::ConfigString(change)) => {
            print!("{}", format_acl_change("config string", &change));
            ExitCode::SUCCESS
        }
        (request, _) => {
            eprintln!(
                "xbladectl: xblade answered '{}' with a reply to another command",
                request.name()
            );
            ExitCode::FAILURE
        }
    }
}

/// `xbladectl monitor`: a reading, then one table per interval of the difference with the
/// reading before.
fn run_monitor(path: &std::path::Path, args: &Args, interval: f64, count: Option<u64>) -> ExitCode {
    if !(interval.is_finite() && (0.1..=86_400.0).contains(&interval)) {
        eprintln!("xbladectl: monitor INTERVAL must be between 0.1 and 86400 seconds");
        return ExitCode::from(2);
    }
    if args.json {
        eprintln!("xbladectl: monitor prints tables; for JSON, run `xbladectl --json stats` at your own interval");
        return ExitCode::from(2);
    }
    let request = Request::Stats { exports: vec![] };
    let mut read = match Client::connect(path, Duration::from_secs_f64(args.timeout)) {
        Ok(mut client) => move || match client.request(&request) {
            Ok(Reply::Stats(stats)) => Ok(stats),
            Ok(Reply::Error(error)) => Err(format!("stats failed: {error}")),
            Ok(_) => Err("xblade answered 'stats' with a reply to another command".to_owned()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => {
            eprintln!("xbladectl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut before = match read() {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("xbladectl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut printed = 0u64;
    while count.is_none_or(|n| printed < n) {
        std::thread::sleep(Duration::from_secs_f64(interval));
        let after = match read() {
            Ok(stats) => stats,
            Err(e) => {
                eprintln!("xbladectl: {e}");
                return ExitCode::FAILURE;
            }
        };
        if printed > 0 {
            println!();
        }
        print!("{}", monitor::format_interval(&before, &after));
        before = after;
        printed += 1;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
        let args = Args::parse_from(["xbladectl", "--socket", "/x.sock", "--json", "status"]);
        assert_eq!(
            args.socket.as_deref(),
            Some(std::path::Path::new("/x.sock"))
        );
        assert!(args.json);
        // Global options may also follow the command.
        let args = Args::parse_from(["xbladectl", "reload", "--socket", "/y.sock"]);
        assert!(matches!(args.command, Command::Reload));
        assert_eq!(socket_path(&args), PathBuf::from("/y.sock"));
        let args = Args::parse_from(["xbladectl", "stats", "e1.0", "e1.1", "--json"]);
        assert!(args.json);
        assert!(
            matches!(&args.command, Command::Stats { exports } if exports == &["e1.0", "e1.1"])
        );
        let args = Args::parse_from(["xbladectl", "monitor"]);
        assert!(matches!(
            args.command,
            Command::Monitor {
                interval: 1.0,
                count: None
            }
        ));
        let args = Args::parse_from(["xbladectl", "monitor", "0.5", "--count", "3"]);
        assert!(matches!(
            args.command,
            Command::Monitor {
                interval: 0.5,
                count: Some(3)
            }
        ));
    }

    #[test]
    fn acl_commands_parse_to_requests() {
        let request = |argv: &[&str]| {
            let args = Args::try_parse_from(argv).map_err(|e| e.kind())?;
            Ok::<_, clap::error::ErrorKind>(request_for(&args.command))
        };
        assert_eq!(
            request(&["xbladectl", "acl"]),
            Ok(Ok(Request::Acl { exports: vec![] }))
        );
        assert_eq!(
            request(&["xbladectl", "--json", "acl", "e1.0", "e1.1"]),
            Ok(Ok(Request::Acl {
                exports: vec!["e1.0".into(), "e1.1".into()]
            }))
        );
        assert_eq!(
            request(&["xbladectl", "mask", "e1.0", "remove", "02:00:00:00:00:01"]),
            Ok(Ok(Request::Mask {
                export: "e1.0".into(),
                op: MaskOp::Remove,
                macs: vec!["02:00:00:00:00:01".into()]
            }))
        );
        assert_eq!(
            request(&["xbladectl", "reserve", "e1.0", "clear"]),
            Ok(Ok(Request::Reserve {
                export: "e1.0".into(),
                op: ReserveOp::Clear,
                macs: vec![]
            }))
        );
        assert_eq!(
            request(&["xbladectl", "mask", "e1.0", "toggle"]),
            Err(clap::error::ErrorKind::InvalidValue)
        );
        assert!(matches!(
            request(&["xbladectl", "mask", "e1.0", "add"]),
            Ok(Err(_))
        ));
    }
}
