//! The man pages and shell completions of `xblade` and `xbladectl`, generated from their clap
//! definitions (`xblade::config::Cli`, `xblade::ctl::Args`), so that every option and
//! subcommand added there appears in both without anyone editing a page. A packaging tool:
//! `scripts/package.sh` runs the `xblade-assets` binary and `cargo deb` ships its output;
//! nothing here is installed.
//!
//! [`man`] renders one page per command and per subcommand (`xbladectl-status.8`, …) with the
//! sections clap knows (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, COMMANDS, EXAMPLES from the
//! `after_help` text, VERSION) and those it does not, written in [`notes`] (EXIT STATUS,
//! SIGNALS, ENVIRONMENT, FILES, SEE ALSO). [`completions`] renders bash, zsh and fish
//! completions. [`assets`] is pure: it returns every file's relative path and contents, and
//! the binary writes them.

pub mod completions;
pub mod man;
pub mod notes;

use std::path::PathBuf;

use clap::CommandFactory;

/// One generated file: where it goes under the output directory, and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Relative to the output directory: `man/xblade.8`, `completions/bash/xbladectl`, …
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// A man page's date: `YYYY-MM-DD` (package.sh passes the commit's, for a reproducible
/// page). Never empty: an empty `.TH` field would shift the footer's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDate(String);

impl PageDate {
    /// `YYYY-MM-DD`, or `None` if `date` is not one.
    pub fn parse(date: &str) -> Option<PageDate> {
        let bytes = date.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return None;
        }
        let month: u32 = date[5..7].parse().ok()?;
        let day: u32 = date[8..10].parse().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then(|| PageDate(date.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The commands the package installs, with what their man pages say beyond the options.
pub fn commands() -> [(clap::Command, &'static notes::Notes); 2] {
    [
        (xblade::config::Cli::command(), &notes::XBLADE),
        (xblade::ctl::Args::command(), &notes::XBLADECTL),
    ]
}

/// Every man page and completion file of every command in [`commands`].
pub fn assets(date: &PageDate) -> Vec<Asset> {
    let mut assets = Vec::new();
    for (command, notes) in commands() {
        assets.extend(man::pages(command.clone(), notes, date));
        assets.extend(completions::scripts(command));
    }
    assets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            PageDate::parse("2026-12-03").unwrap().as_str(),
            "2026-12-03"
        );
        for bad in [
            "",
            "2026-1-03",
            "2026-13-03",
            "2026-12-32",
            "2026/12/03",
            "２０26-12-03",
        ] {
            assert!(PageDate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn every_command_and_subcommand_gets_a_page_and_completions() {
        let assets = assets(&PageDate::parse("2026-12-03").unwrap());
        let paths: Vec<String> = assets
            .iter()
            .map(|a| a.path.display().to_string())
            .collect();
        let mut expected = vec!["man/xblade.8".to_owned(), "man/xbladectl.8".to_owned()];
        let ctl = xblade::ctl::Args::command();
        let subcommands: Vec<&str> = ctl
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        assert!(subcommands.contains(&"status"), "{subcommands:?}");
        expected.extend(subcommands.iter().map(|s| format!("man/xbladectl-{s}.8")));
        for name in ["xblade", "xbladectl"] {
            expected.push(format!("completions/bash/{name}"));
            expected.push(format!("completions/zsh/_{name}"));
            expected.push(format!("completions/fish/{name}.fish"));
        }
        for path in &expected {
            assert!(paths.contains(path), "{path} missing from {paths:?}");
        }
        assert_eq!(paths.len(), expected.len(), "{paths:?}");
        assert!(assets.iter().all(|a| !a.contents.is_empty()));
    }
}
