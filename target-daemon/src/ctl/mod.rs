//! `xbladectl`: asks a running xblade what it serves and what it counted, or makes it
//! reload its config file, over its control socket. The command line ([`Args`]) lives here,
//! in the library, so that man pages and shell completions can be generated from it;
//! [`format`], [`stats`] and [`monitor`] render replies for a human.

pub mod format;
pub mod monitor;
pub mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{decode_reply, Client, Reply, Request, DEFAULT_SOCKET, SOCKET_ENV};
use clap::{Parser, Subcommand};
use format::{format_reload, format_status};

#[derive(Parser, Debug)]
#[command(
    name = "xbladectl",
    version,
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
    let request = match &args.command {
        Command::Status => Request::Status,
        Command::Reload => Request::Reload,
        Command::Stats { exports } => Request::Stats {
            exports: exports.clone(),
        },
        Command::Monitor { interval, count } => {
            return run_monitor(&path, &args, *interval, *count);
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
}
