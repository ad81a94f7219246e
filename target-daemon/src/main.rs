use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use xblade::systemd::journal;

fn main() -> ExitCode {
    let cli = xblade::config::Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if journal::stderr_is_journal() {
        // The journal stamps each line and reads its priority from the `<N>` prefix.
        log.event_format(journal::JournalFormat::default()).init();
    } else {
        log.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let journal = journal::stderr_is_journal();
    match xblade::daemon::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let priority = if journal { "<3>" } else { "" };
            eprintln!("{priority}xblade: error: {e}");
            ExitCode::FAILURE
        }
    }
}
