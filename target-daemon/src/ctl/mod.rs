//! `xbladectl`: asks a running xblade what it serves, or makes it reload its config file,
//! over its control socket. The command line ([`Args`]) lives here, in the library, so that
//! man pages and shell completions can be generated from it; [`format`] renders replies for
//! a human.

pub mod format;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{decode_reply, Client, Reply, Request, DEFAULT_SOCKET, SOCKET_ENV};
use clap::{Parser, Subcommand};
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

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum Command {
    /// Show every export (name, file, size, interfaces, rw/ro, state) and every interface
    /// (state, MAC, MTU, sectors per frame, queues, XDP mode, exports)
    Status,
    /// Make xblade re-read its config file and apply the difference; print what changed.
    /// Exports the reload does not touch keep serving without a pause. If the new config is
    /// invalid, nothing changes and the error is printed (exit status 1).
    Reload,
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
    let request = match args.command {
        Command::Status => Request::Status,
        Command::Reload => Request::Reload,
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
    match (request, reply) {
        (_, Reply::Error(error)) => {
            eprintln!("xbladectl: {} failed: {error}", request.name());
            ExitCode::FAILURE
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
    }
}
