//! What the man pages say beyond the options, which clap cannot know: exit statuses, signals,
//! environment variables, files, and related pages. A subcommand's page (`xbladectl-status`)
//! shares its command's notes. Paths come from the daemon's own constants where it has them.

use xblade::config::file::{DEFAULT_CONTROL, DEFAULT_STATE_DIR};
use xblade::control::SOCKET_ENV;

/// The extra sections of one command's pages: `(term, meaning)` entries, and references to
/// other commands' pages as `name(section)`.
#[derive(Debug)]
pub struct Notes {
    pub exit_status: &'static [(&'static str, &'static str)],
    pub signals: &'static [(&'static str, &'static str)],
    pub environment: &'static [(&'static str, &'static str)],
    pub files: &'static [(&'static str, &'static str)],
    pub see_also: &'static [&'static str],
}

/// Where the package installs the example configuration, which the unit serves.
pub const CONFIG_FILE: &str = "/etc/xblade/xblade.toml";

/// `xblade`, the daemon.
pub static XBLADE: Notes = Notes {
    exit_status: &[
        (
            "0",
            "Stopped by SIGINT or SIGTERM after answering every request in flight; also after \
             --help and --version.",
        ),
        (
            "1",
            "Could not start or had to stop: an invalid configuration, a backing file that does \
             not open, a missing interface, an XDP program the kernel refused, missing \
             privileges. The message on standard error says which, and what to do.",
        ),
        (
            "2",
            "A usage error: an unknown option or a missing argument.",
        ),
    ],
    signals: &[
        (
            "SIGINT, SIGTERM",
            "Stop: in-flight I/O finishes and is answered, the XDP program is detached, and a \
             summary of the run is printed.",
        ),
        (
            "SIGHUP",
            "With --config: re-read the file and apply the difference, like xbladectl reload. \
             An invalid file changes nothing and is logged.",
        ),
    ],
    environment: &[],
    files: &[
        (
            CONFIG_FILE,
            "The configuration the packaged systemd unit serves (--config). The package installs \
             a commented example that serves nothing until an export is added.",
        ),
        (
            DEFAULT_CONTROL,
            "The control socket xbladectl talks to, unless the configuration's control key or \
             --control name another.",
        ),
        (
            DEFAULT_STATE_DIR,
            "With --config, each export keeps the state initiators set (config string, mask \
             list, reservation) in eSHELF.SLOT.state here, unless state_dir names another \
             directory. Owned by the xblade system user the package creates.",
        ),
        (
            "FILE.xblade-state",
            "In vblade's form, an image file's state is kept next to it (see --state-file and \
             --no-state).",
        ),
    ],
    see_also: &[
        "xbladectl(8)",
        "systemctl(1)",
        "vblade(8)",
        "aoeping(8)",
        "aoe-stat(8)",
    ],
};

/// `xbladectl`, and each of its subcommands' pages.
pub static XBLADECTL: Notes = Notes {
    exit_status: &[
        (
            "0",
            "xblade did what was asked; the reply is on standard output.",
        ),
        (
            "1",
            "xblade refused the request (for example, a reload of an invalid configuration: \
             nothing changed), or could not be reached or did not reply in time.",
        ),
        ("2", "A usage error: an unknown command or option."),
    ],
    signals: &[],
    environment: &[(
        SOCKET_ENV,
        "The control socket to use when --socket is not given.",
    )],
    files: &[
        (
            DEFAULT_CONTROL,
            "The control socket used when neither --socket nor XBLADE_CONTROL names one. Mode \
             0600: run xbladectl as the user xblade runs as.",
        ),
        (
            CONFIG_FILE,
            "The configuration the packaged unit serves, which reload re-reads.",
        ),
    ],
    see_also: &["xblade(8)", "systemctl(1)"],
};
