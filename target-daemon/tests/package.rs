//! What the Debian package ships, checked on the package itself: `--version` names the
//! checkout's git revision; the example configuration parses (as shipped, and with every
//! setting uncommented); the .deb has every file where it belongs with the right owner and
//! mode, the conffile, the unit, man pages that render without a warning, completions that
//! complete, binaries whose libraries it depends on; and it installs, serves, and purges for
//! real in a throwaway root (an overlay of `/` in a private mount namespace: this machine's
//! own root is never touched).
//!
//! The package: `XBLADE_DEB` when set (scripts/test.sh builds it with scripts/package.sh),
//! else one built here by scripts/package.sh. Without cargo-deb the .deb tests skip, with a
//! message, unless `CI` is set: there they fail.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{xblade_bin, xbladectl_bin, TempDir};
use xblade::config::file;

/// The workspace root: this crate's parent.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `PROGRAM ARGS…`'s output; panics (naming the command) if it cannot run.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(program).display()))
}

/// `PROGRAM ARGS…`'s standard output; panics with its standard error unless it succeeds.
fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref().to_owned();
    let out = run(&program, args);
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        Path::new(&program).display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

// ---------------------------------------------------------------------------------------
// --version

/// The revision the build script names for this checkout: `git rev-parse --short HEAD`, with
/// `-dirty` when a tracked file differs. `None` outside a git checkout of this repository.
fn checkout_revision() -> Option<String> {
    let root = repo().canonicalize().ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let toplevel = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if toplevel.canonicalize().ok()? != root {
        return None;
    }
    let short = git(&["rev-parse", "--short", "HEAD"])?;
    let status = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])?;
    Some(if status.is_empty() {
        short
    } else {
        format!("{short}-dirty")
    })
}

/// `NAME 0.1.0 (git REVISION)`, what `NAME --version` must print in this checkout.
fn expected_version(name: &str) -> Option<String> {
    let revision = checkout_revision()?;
    Some(format!(
        "{name} {} (git {revision})",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Checks that `printed` (a `--version` line) names this checkout's commit. In a clean
/// checkout (CI's fresh clone) it must be exact. In one with local edits the binary may
/// predate them (the build script reruns only when the sources it watches change), so it
/// may or may not say `-dirty`, but the commit must be the checkout's.
fn assert_names_checkout(printed: &str, name: &str, what: &str) {
    let Some(expected) = expected_version(name) else {
        return;
    };
    match expected.strip_suffix("-dirty)") {
        None => assert_eq!(printed.trim_end(), expected, "{what}"),
        Some(stem) => {
            let clean = format!("{stem})");
            assert!(
                printed.trim_end() == expected || printed.trim_end() == clean,
                "{what}: {printed:?} is neither {expected:?} nor {clean:?}"
            );
        }
    }
}

#[test]
fn version_names_the_checkouts_git_revision() {
    let Some(_) = checkout_revision() else {
        eprintln!("skipped: not a git checkout of xblade (built from a tarball?)");
        return;
    };
    for (name, bin) in [("xblade", xblade_bin()), ("xbladectl", xbladectl_bin())] {
        let printed = run_ok(&bin, &["--version"]);
        let what = format!(
            "{} --version: rebuild it if the checkout changed since",
            bin.display()
        );
        assert_names_checkout(&printed, name, &what);
    }
}

// ---------------------------------------------------------------------------------------
// The example configuration

/// Keys the example shows commented out that this branch's parser does not know yet; they
/// stay commented when the test uncomments the rest. Empty this once they exist.
const PENDING_KEYS: &[&str] = &[];

/// The example with every setting uncommented: lines `#KEY…` or `#[…` (a `#` then no space)
/// lose their `#`, except [`PENDING_KEYS`]. Returns the text and how many lines it changed.
fn uncommented(text: &str) -> (String, usize) {
    let mut changed = 0;
    let mut out = String::new();
    for line in text.lines() {
        let setting = line
            .strip_prefix('#')
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '['));
        let key = setting.and_then(|s| s.split('=').next()).map(str::trim);
        match setting {
            Some(rest) if !key.is_some_and(|k| PENDING_KEYS.contains(&k)) => {
                out.push_str(rest);
                changed += 1;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    (out, changed)
}

#[test]
fn example_config_parses_as_shipped_and_uncommented() {
    let path = repo().join("packaging/xblade.toml");
    let text = std::fs::read_to_string(&path).expect("packaging/xblade.toml");

    // As shipped: serves nothing, with every default.
    let config = file::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.exports.is_empty() && config.interfaces.is_empty());
    assert_eq!(
        config.control.as_deref(),
        Some(Path::new(file::DEFAULT_CONTROL))
    );
    for key in PENDING_KEYS {
        assert!(text.contains(&format!("\n#{key} = ")), "#{key} missing");
    }

    // Every setting it shows is one the parser takes, with the value it claims.
    let (all, changed) = uncommented(&text);
    assert!(changed >= 25, "only {changed} settings uncommented:\n{all}");
    let config = file::parse(&path, &all).unwrap_or_else(|e| panic!("{e}\n{all}"));
    let key = xblade::target::ExportKey::new(1, 0);
    let export = &config.exports[&key];
    assert_eq!(export.interfaces, ["eth1"]);
    assert_eq!(export.file, Path::new("/srv/xblade/vol0.img"));
    assert_eq!(export.length_sectors, Some(2048));
    assert_eq!(export.serial.as_deref(), Some("VOL0"));
    assert_eq!(export.buffers, file::DEFAULT_BUFFERS);
    let eth1 = &config.interfaces["eth1"];
    assert_eq!(
        (eth1.frames, eth1.batch, eth1.spin_us),
        (8192, file::DEFAULT_BATCH, file::DEFAULT_SPIN_US)
    );
}

// ---------------------------------------------------------------------------------------
// The package

/// The .deb under test, built once for all the tests of this file; `None` to skip.
fn deb() -> Option<&'static Path> {
    static DEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    DEB.get_or_init(find_or_build_deb).as_deref()
}

fn find_or_build_deb() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("XBLADE_DEB").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "XBLADE_DEB={}: no such file",
            path.display()
        );
        return Some(path);
    }
    let have_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_cargo_deb {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "cargo-deb is not installed: scripts/test.sh installs it (ensure_cargo_deb in \
             scripts/lib.sh), or set XBLADE_DEB to a package built by scripts/package.sh"
        );
        eprintln!(
            "skipped: cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 \
             --locked, or run scripts/test.sh, which installs it)"
        );
        return None;
    }
    let out = run(repo().join("scripts/package.sh"), &[]);
    assert!(
        out.status.success(),
        "scripts/package.sh: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let path = PathBuf::from(stdout.lines().last().expect("package.sh printed the path"));
    assert!(path.is_file(), "package.sh printed {}", path.display());
    Some(path)
}

/// Skips the calling test (returns from it) when there is no package to test.
macro_rules! require_deb {
    () => {
        match deb() {
            Some(deb) => deb,
            None => return,
        }
    };
}

/// The package's files, extracted into a temporary directory.
struct Extracted {
    dir: TempDir,
}

impl Extracted {
    fn new(deb: &Path, tag: &str) -> Extracted {
        let dir = TempDir::new(tag);
        run_ok(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), dir.0.to_str().unwrap()],
        );
        Extracted { dir }
    }

    fn path(&self, installed: &str) -> PathBuf {
        self.dir.0.join(installed.trim_start_matches('/'))
    }
}

/// A visible subcommand's name, for each man page and completion that must be there.
fn ctl_subcommands() -> Vec<String> {
    use clap::CommandFactory;
    xblade::ctl::Args::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// Every file the package must hold, with its mode (all owned by root:root).
fn expected_files() -> BTreeMap<String, u32> {
    let mut files: BTreeMap<String, u32> = [
        ("/usr/sbin/xblade", 0o755),
        ("/usr/sbin/xbladectl", 0o755),
        ("/etc/xblade/xblade.toml", 0o644),
        ("/usr/lib/systemd/system/xblade.service", 0o644),
        ("/usr/share/man/man8/xblade.8.gz", 0o644),
        ("/usr/share/man/man8/xbladectl.8.gz", 0o644),
        ("/usr/share/bash-completion/completions/xblade", 0o644),
        ("/usr/share/bash-completion/completions/xbladectl", 0o644),
        ("/usr/share/zsh/vendor-completions/_xblade", 0o644),
        ("/usr/share/zsh/vendor-completions/_xbladectl", 0o644),
        ("/usr/share/fish/vendor_completions.d/xblade.fish", 0o644),
        ("/usr/share/fish/vendor_completions.d/xbladectl.fish", 0o644),
        ("/usr/share/doc/xblade/README.md", 0o644),
        ("/usr/share/doc/xblade/copyright", 0o644),
    ]
    .into_iter()
    .map(|(path, mode)| (path.to_owned(), mode))
    .collect();
    for sub in ctl_subcommands() {
        files.insert(format!("/usr/share/man/man8/xbladectl-{sub}.8.gz"), 0o644);
    }
    files
}

/// One line of `dpkg-deb --contents`: `-rwxr-xr-x 0/0 25643072 2026-12-03 00:00 ./usr/sbin/xblade`.
#[derive(Debug)]
struct Entry {
    kind: char,
    mode: u32,
    owner: String,
    path: String,
}

fn parse_contents(listing: &str) -> Vec<Entry> {
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected listing line: {line}");
            let perms = fields[0].as_bytes();
            let mode = perms[1..10]
                .iter()
                .fold(0, |mode, &b| (mode << 1) | u32::from(b != b'-'));
            Entry {
                kind: perms[0] as char,
                mode,
                owner: fields[1].to_owned(),
                path: fields[5].trim_start_matches('.').to_owned(),
            }
        })
        .collect()
}

#[test]
fn package_holds_every_file_with_its_owner_and_mode() {
    let deb = require_deb!();
    let deb_arg = deb.to_str().unwrap();
    let entries = parse_contents(&run_ok("dpkg-deb", &["--contents", deb_arg]));
    let mut expected = expected_files();
    for entry in &entries {
        assert_eq!(entry.owner, "0/0", "{entry:?} is not owned by root:root");
        match entry.kind {
            'd' => assert_eq!(entry.mode, 0o755, "{entry:?}"),
            '-' => {
                let mode = expected
                    .remove(&entry.path)
                    .unwrap_or_else(|| panic!("unexpected file in the package: {entry:?}"));
                assert!(
                    entry.mode == mode,
                    "{}: mode {:o}, want {mode:o}",
                    entry.path,
                    entry.mode
                );
            }
            _ => panic!("unexpected entry in the package: {entry:?}"),
        }
    }
    assert!(
        expected.is_empty(),
        "missing from the package: {expected:?}"
    );

    // The control fields, and the one conffile.
    let field = |name: &str| run_ok("dpkg-deb", &["--field", deb_arg, name]);
    assert_eq!(field("Package").trim(), "xblade");
    assert_eq!(field("Section").trim(), "admin");
    let depends = field("Depends");
    for package in ["libc6", "libgcc-s1", "adduser"] {
        assert!(depends.contains(package), "Depends: {depends}");
    }
    let control = TempDir::new("pkg-control");
    run_ok("dpkg-deb", &["-e", deb_arg, control.0.to_str().unwrap()]);
    let conffiles = std::fs::read_to_string(control.0.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/xblade/xblade.toml");
    // The postinst creates the system user; nothing enables or starts the service.
    let postinst = std::fs::read_to_string(control.0.join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser --system --group --no-create-home --home /var/lib/xblade"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.0.join(script);
        let text = std::fs::read_to_string(&path).expect(script);
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for forbidden in [
            "deb-systemd-invoke start",
            "systemctl enable",
            "systemctl start",
        ] {
            assert!(
                !code.iter().any(|l| l.contains(forbidden)),
                "{script} runs {forbidden}: {text}"
            );
        }
        let syntax = run("sh", &["-n", path.to_str().unwrap()]);
        assert!(syntax.status.success(), "{script}: not valid sh");
    }
}

#[test]
fn packaged_files_work() {
    let deb = require_deb!();
    let files = Extracted::new(deb, "pkg-files");

    // The example configuration is the one in the repository.
    assert_eq!(
        std::fs::read(files.path("/etc/xblade/xblade.toml")).unwrap(),
        std::fs::read(repo().join("packaging/xblade.toml")).unwrap()
    );

    // The unit starts binaries the package installs.
    let unit = std::fs::read_to_string(files.path("/usr/lib/systemd/system/xblade.service"))
        .expect("unit");
    for line in unit.lines() {
        let Some(command) = line
            .strip_prefix("ExecStart=")
            .or_else(|| line.strip_prefix("ExecReload="))
        else {
            continue;
        };
        let program = command.trim_start_matches(['-', '+', '!', '@', ':']);
        let program = program.split_whitespace().next().unwrap_or_default();
        assert!(
            files.path(program).is_file(),
            "the unit runs {program}, which the package does not install"
        );
    }

    // The binaries name this checkout's revision, and every library they load belongs to a
    // package the .deb depends on.
    let depends = run_ok("dpkg-deb", &["--field", deb.to_str().unwrap(), "Depends"]);
    for name in ["xblade", "xbladectl"] {
        let bin = files.path(&format!("/usr/sbin/{name}"));
        assert_names_checkout(&run_ok(&bin, &["--version"]), name, "packaged binary");
        let ldd = run_ok("ldd", &[bin.to_str().unwrap()]);
        for library in ldd.lines().filter_map(|l| l.split("=>").nth(1)) {
            let Some(path) = library.split_whitespace().next() else {
                continue;
            };
            let owner = run_ok("dpkg", &["-S", path]);
            let package = owner.split(':').next().unwrap_or_default().trim();
            assert!(
                depends.contains(package),
                "{name} loads {path} from {package}, which Depends ({}) lacks",
                depends.trim()
            );
        }
    }

    // Man pages: groff renders each without a warning, lexgrog finds its NAME line, and the
    // sections beyond the options are there.
    let man8 = files.path("/usr/share/man/man8");
    let mut pages: Vec<String> = vec!["xblade".into(), "xbladectl".into()];
    pages.extend(ctl_subcommands().iter().map(|s| format!("xbladectl-{s}")));
    for page in &pages {
        let gz = man8.join(format!("{page}.8.gz"));
        let source = run_ok("gzip", &["-dc", gz.to_str().unwrap()]);
        let plain = files.dir.0.join(format!("{page}.8"));
        std::fs::write(&plain, &source).unwrap();
        let groff = run(
            "groff",
            &["-man", "-Tutf8", "-ww", "-P-cbou", plain.to_str().unwrap()],
        );
        let warnings = String::from_utf8_lossy(&groff.stderr);
        assert!(
            groff.status.success() && warnings.is_empty(),
            "{page}.8: {warnings}"
        );
        let rendered = String::from_utf8_lossy(&groff.stdout);
        for section in ["SYNOPSIS", "EXIT STATUS", "FILES", "SEE ALSO"] {
            assert!(
                rendered.lines().any(|l| l == section),
                "{page}: no {section}:\n{rendered}"
            );
        }
        let name = run_ok("lexgrog", &[gz.to_str().unwrap()]);
        assert!(
            name.contains(&format!("\"{page} - ")),
            "lexgrog {page}: {name}"
        );
    }

    // Completions: the bash one loads and completes `xbladectl st<TAB>`; zsh and fish parse
    // where those shells are installed.
    let bash = files.path("/usr/share/bash-completion/completions/xbladectl");
    // Other subcommands may share a prefix (stats, status): expect exactly clap's.
    let starting = |prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = ctl_subcommands()
            .into_iter()
            .filter(|s| s.starts_with(prefix))
            .collect();
        names.sort();
        names
    };
    let sorted = |mut words: Vec<String>| {
        words.sort();
        words
    };
    let st = sorted(bash_complete(&bash, &["xbladectl", "st"]));
    assert!(st.contains(&"status".to_owned()), "{st:?}");
    assert_eq!(st, starting("st"));
    let re = sorted(bash_complete(&bash, &["xbladectl", "--json", "re"]));
    assert!(re.contains(&"reload".to_owned()), "{re:?}");
    assert_eq!(re, starting("re"));
    let bash_xblade = files.path("/usr/share/bash-completion/completions/xblade");
    assert!(bash_complete(&bash_xblade, &["xblade", "--conf"]).contains(&"--config".to_owned()));
    for (shell, file) in [
        ("zsh", "/usr/share/zsh/vendor-completions/_xbladectl"),
        (
            "fish",
            "/usr/share/fish/vendor_completions.d/xbladectl.fish",
        ),
    ] {
        if !common::have_program(shell) {
            eprintln!("{shell} is not installed: {file} not parsed");
            continue;
        }
        let out = run(shell, &["-n", files.path(file).to_str().unwrap()]);
        assert!(out.status.success(), "{shell} -n {file}: {out:?}");
    }
}

/// What bash completes for the command line `words` (the cursor at the end of the last
/// word), with the completion script `script` loaded the way bash-completion loads it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = r#"
        set -e
        source "$1"; shift
        spec=$(complete -p "$1")               # complete -F FUNCTION ... COMMAND
        function=$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
        COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        "$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let mut args = vec!["--norc", "--noprofile", "-c", program, "bash"];
    let script = script.to_str().unwrap();
    args.push(script);
    args.extend_from_slice(words);
    let out = run("bash", &args);
    assert!(
        out.status.success(),
        "completing {line:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Installed for real, in a throwaway root

/// Installs the package into an overlay of `/` (upper layer on a tmpfs, in the private mount
/// namespace `unshare --mount` gives this script: nothing reaches the real root), starts the
/// installed xblade as the unit would (`--config /etc/xblade/xblade.toml`, one export added)
/// in the lab's target namespace, and once `xbladectl status` answers prints `ready` and
/// waits for a line (or EOF) on standard input; then stops it, purges the package, and
/// reports. Reports are `key=value` lines (`key` in `a-z_`); `log|` and `status|` lines carry
/// the daemon's output and xbladectl's; dpkg's output is in between (standard error goes to
/// standard output, shown only when the test fails). Arguments: DEB WORKDIR NETNS IFACE
/// SHELF SLOT.
const INSTALL_SCRIPT: &str = r#"
set -eu
exec 2>&1
deb=$1 work=$2 ns=$3 ifname=$4 shelf=$5 slot=$6
mount -t tmpfs xblade-pkg-test "$work"
mkdir "$work/upper" "$work/work" "$work/root" "$work/log"
root=$work/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
in_root() { chroot "$root" "$@"; }

cp "$deb" "$root/tmp/xblade.deb"
in_root dpkg -i /tmp/xblade.deb >&2
echo "installed=$(in_root dpkg-query -W -f '${Status}' xblade)"
echo "passwd=$(in_root getent passwd xblade)"
echo "group=$(in_root getent group xblade)"
# Enabled = a link to the unit in some .wants directory (-L: it points into the root).
if [ -n "$(find "$root/etc/systemd/system" -name xblade.service 2>/dev/null)" ]; then
    echo "enabled=yes"
else
    echo "enabled=no"
fi
echo "version=$(in_root /usr/sbin/xblade --version)"

cat >>"$root/etc/xblade/xblade.toml" <<TOML
[[export]]
shelf = $shelf
slot = $slot
file = "null:64M"
interfaces = ["$ifname"]
TOML
# In the target namespace, with that namespace's sysfs in the root.
ip netns exec "$ns" sh -c \
    'mount -t sysfs sysfs "$1/sys" && exec chroot "$1" /usr/sbin/xblade --config /etc/xblade/xblade.toml' \
    sh "$root" >"$work/log/xblade" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
deadline=$(( $(date +%s) + 60 ))
until in_root /usr/sbin/xbladectl status >"$work/log/status" 2>&1; do
    if ! kill -0 $pid 2>/dev/null || [ "$(date +%s)" -ge $deadline ]; then
        sed 's/^/log|/' "$work/log/xblade"
        sed 's/^/status|/' "$work/log/status"
        echo "failed=the installed xblade did not answer xbladectl status within 60 s"
        exit 1
    fi
    sleep 0.1
done
sed 's/^/status|/' "$work/log/status"
echo "ready"
read -r _ || true

kill -TERM $pid
if wait $pid; then echo "exit=0"; else echo "exit=$?"; fi
sed 's/^/log|/' "$work/log/xblade"
in_root dpkg --purge xblade >&2
echo "after_purge=$(in_root dpkg-query -W -f '${Status}' xblade 2>/dev/null || echo gone)"
echo "passwd_after_purge=$(in_root getent passwd xblade || true)"
for path in /usr/sbin/xblade /usr/sbin/xbladectl /etc/xblade /var/lib/xblade \
    /usr/lib/systemd/system/xblade.service /usr/share/man/man8/xblade.8.gz; do
    if [ -e "$root$path" ]; then echo "left=$path"; fi
done
echo "done"
"#;

/// The running install script; dropping it closes its standard input (the script then stops
/// the daemon and purges) and waits for it, killing it after a minute.
struct InstallRun {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line so far, for failure messages.
    seen: Vec<String>,
}

impl InstallRun {
    fn start(deb: &Path, work: &Path, lab: &xblade_lab::Lab) -> InstallRun {
        let (shelf, slot) = (common::SHELF.to_string(), common::SLOT.to_string());
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(INSTALL_SCRIPT)
            .arg("install-test")
            .args([deb, work])
            .args([lab.target_ns(), lab.target_if(), &shelf, &slot])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()) // unshare's own errors; the script's go to stdout
            .spawn()
            .expect("run unshare");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        InstallRun {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The `key=value` reports up to the line `until`, as a map; every line is kept in `seen`.
    fn reports_until(&mut self, until: &str) -> BTreeMap<String, String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut reports = BTreeMap::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "install script: no '{until}' ({e:?}); it printed:\n{}",
                    self.seen.join("\n")
                ),
            };
            self.seen.push(line.clone());
            if line == until {
                return reports;
            }
            if let Some(failure) = line.strip_prefix("failed=") {
                panic!("{failure}:\n{}", self.seen.join("\n"));
            }
            if let Some((key, value)) = line.split_once('=') {
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    reports.insert(key.to_owned(), value.to_owned());
                }
            }
        }
    }

    /// Tells the script to stop the daemon and purge.
    fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
    }

    fn lines_with(&self, prefix: &str) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    }
}

impl Drop for InstallRun {
    fn drop(&mut self) {
        self.stdin.take();
        let exited = common::wait_for(Duration::from_secs(60), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn installs_serves_and_purges_in_a_throwaway_root() {
    require_root!();
    let deb = require_deb!();
    let lab = xblade_lab::Lab::new("pkg", xblade_lab::LabOptions::default()).expect("lab");
    let work = TempDir::new("pkg-root");
    let mut run = InstallRun::start(deb, &work.0, &lab);

    let installed = run.reports_until("ready");
    assert_eq!(
        installed["installed"], "install ok installed",
        "{installed:?}"
    );
    // The system user: a system uid, its own group, no login, home the state directory.
    let passwd: Vec<&str> = installed["passwd"].split(':').collect();
    assert_eq!(passwd.len(), 7, "{installed:?}");
    let uid: u32 = passwd[2].parse().expect("uid");
    assert!(
        uid > 0 && uid < 1000,
        "xblade has uid {uid}: not a system user"
    );
    assert_eq!(
        (passwd[5], passwd[6]),
        ("/var/lib/xblade", "/usr/sbin/nologin")
    );
    let group: Vec<&str> = installed["group"].split(':').collect();
    assert_eq!((group[0], group[2]), ("xblade", passwd[3]), "{installed:?}");
    assert_eq!(
        installed["enabled"], "no",
        "the package must not enable the service"
    );
    assert_names_checkout(&installed["version"], "xblade", "installed xblade");
    let status = run.lines_with("status|").join("\n");
    let export = format!("e{}.{}", common::SHELF, common::SLOT);
    assert!(status.contains(&export), "xbladectl status:\n{status}");

    // The installed daemon serves the export the installed config gained.
    let mut client = common::initiator(&lab, 500, 20);
    assert_eq!(
        client.capacity_sectors().expect("capacity"),
        (64 << 20) / 512
    );
    let mut sector = [0xAAu8; 512];
    client.read(0, &mut sector).expect("read sector 0");
    assert_eq!(sector, [0u8; 512], "null: reads zeros");
    drop(client);

    run.stop();
    let purged = run.reports_until("done");
    let log = run.lines_with("log|").join("\n");
    assert_eq!(purged["exit"], "0", "xblade's exit after SIGTERM:\n{log}");
    assert!(log.contains("xblade summary"), "no summary:\n{log}");
    // The shipped config runs it as the package's system user, without privileges.
    assert!(
        log.contains("privileges dropped") && log.contains("user=xblade"),
        "the installed xblade did not drop to user xblade:\n{log}"
    );
    assert_eq!(purged["after_purge"], "gone", "{purged:?}");
    assert_eq!(
        purged["passwd_after_purge"], installed["passwd"],
        "the system user stays after purge"
    );
    let left = run.lines_with("left=");
    assert!(left.is_empty(), "purge left {left:?}");
}
