//! `xblade-assets --date YYYY-MM-DD OUTDIR`: writes xblade's man pages to OUTDIR/man and its
//! shell completions to OUTDIR/completions/{bash,zsh,fish}, replacing what an earlier run
//! left there. `scripts/package.sh` runs it before `cargo deb`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use xblade_assets::{assets, PageDate};

/// Generate xblade's man pages and shell completions from its clap definitions.
#[derive(Parser, Debug)]
#[command(name = "xblade-assets", version = xblade::build::VERSION)]
struct Args {
    /// Directory to write man/ and completions/ into (created if missing).
    out_dir: PathBuf,

    /// The pages' date (YYYY-MM-DD); package.sh passes the commit's, so that the same commit
    /// gives the same pages.
    #[arg(long, value_parser = parse_date)]
    date: PageDate,
}

fn parse_date(date: &str) -> Result<PageDate, String> {
    PageDate::parse(date).ok_or_else(|| format!("'{date}' is not a date like 2026-12-03"))
}

/// The subdirectories of OUTDIR this tool owns: emptied before writing, so that a page of a
/// subcommand that no longer exists does not linger.
const OWNED: [&str; 2] = ["man", "completions"];

fn write_all(out_dir: &Path, date: &PageDate) -> Result<usize, String> {
    for owned in OWNED {
        let dir = out_dir.join(owned);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot empty {}: {e}", dir.display())),
        }
    }
    let assets = assets(date);
    for asset in &assets {
        let path = out_dir.join(&asset.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        fs::write(&path, &asset.contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(assets.len())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match write_all(&args.out_dir, &args.date) {
        Ok(count) => {
            eprintln!(
                "xblade-assets: wrote {count} files under {}",
                args.out_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xblade-assets: {e}");
            ExitCode::FAILURE
        }
    }
}
