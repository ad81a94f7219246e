//! Names the git revision the binaries are built from: sets `XBLADE_GIT_REV` for rustc, which
//! `src/build.rs` turns into `xblade::build::GIT_REVISION` and the `--version` strings.
//!
//! In order:
//! 1. the checkout this crate sits in: `git rev-parse --short HEAD`, with `-dirty` appended
//!    when a tracked file differs from HEAD (`git status --untracked-files=no`, run with
//!    `--no-optional-locks` so that the build never writes the index);
//! 2. else (a tarball, no `git`) the `XBLADE_GIT_REV` environment variable, for a builder
//!    that knows the revision; it must look like a revision (letters, digits, `.+-_`, at most
//!    64 characters), or the build fails;
//! 3. else `unknown`.
//!
//! A checkout only counts when its top level is this workspace's root: a tarball unpacked
//! inside some other repository must not borrow that repository's revision.
//!
//! Cargo reruns the build script when the revision can have changed: `HEAD` and the index of
//! the git directory (a worktree has its own, found with `--absolute-git-dir`), the branch's
//! ref and `packed-refs` in the common directory (`--git-common-dir`, shared by worktrees),
//! and the sources that go into the binaries (an edit makes the tree dirty). An edit outside
//! those (the README, say) marks the build dirty only once the build script next runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable this sets for rustc, and the one a builder without git may set.
pub const ENV: &str = "XBLADE_GIT_REV";
/// The revision of a build from neither a checkout nor a builder that named one.
const UNKNOWN: &str = "unknown";
/// The longest revision a builder may name.
const ENV_MAX: usize = 64;

/// Workspace paths (from the workspace root) whose contents end up in the binaries: an edit
/// to one of them can make the tree dirty.
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "target-daemon/Cargo.toml",
    "target-daemon/build.rs",
    "target-daemon/build",
    "target-daemon/src",
    "target-logic/Cargo.toml",
    "target-logic/src",
    "proto/Cargo.toml",
    "proto/src",
    "xdp-prog",
];

/// Prints the `cargo:` lines that set `XBLADE_GIT_REV` and make cargo rerun the build script
/// when it may have changed. `Err` names what is wrong with a builder's `XBLADE_GIT_REV`.
pub fn emit(manifest_dir: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={ENV}");
    let revision = match Checkout::find(manifest_dir) {
        Some(checkout) => {
            for path in checkout.watched() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            checkout.revision
        }
        None => match std::env::var(ENV) {
            Ok(value) if !value.is_empty() => {
                check_builder_revision(&value)?;
                value
            }
            _ => UNKNOWN.to_owned(),
        },
    };
    println!("cargo:rustc-env={ENV}={revision}");
    Ok(())
}

/// A revision given by a builder: 1-64 ASCII letters, digits, `.`, `+`, `-` or `_`.
fn check_builder_revision(value: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b".+-_".contains(&b);
    if value.len() > ENV_MAX || !value.bytes().all(allowed) {
        return Err(format!(
            "{ENV}={value:?} does not look like a git revision (1-{ENV_MAX} letters, digits, \
             '.', '+', '-' or '_'): set it to e.g. the output of `git rev-parse --short HEAD`, \
             or unset it"
        ));
    }
    Ok(())
}

/// The git checkout whose top level is the workspace root.
struct Checkout {
    root: PathBuf,
    revision: String,
    git_dir: PathBuf,
    common_dir: PathBuf,
    /// `refs/heads/BRANCH`; `None` with a detached HEAD.
    head_ref: Option<String>,
}

impl Checkout {
    /// The checkout around `manifest_dir`, if git is installed and the workspace root is the
    /// top level of a checkout with at least one commit.
    fn find(manifest_dir: &Path) -> Option<Checkout> {
        let root = manifest_dir.parent()?.canonicalize().ok()?;
        let toplevel = PathBuf::from(git(&root, &["rev-parse", "--show-toplevel"])?);
        if toplevel.canonicalize().ok()? != root {
            return None;
        }
        let short = git(&root, &["rev-parse", "--short", "HEAD"])?;
        let status = git(
            &root,
            &[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        )?;
        let revision = if status.is_empty() {
            short
        } else {
            format!("{short}-dirty")
        };
        let git_dir = PathBuf::from(git(&root, &["rev-parse", "--absolute-git-dir"])?);
        let common_dir = PathBuf::from(git(
            &root,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )?);
        let head_ref = git(&root, &["symbolic-ref", "-q", "HEAD"]);
        Some(Checkout {
            root,
            revision,
            git_dir,
            common_dir,
            head_ref,
        })
    }

    /// Every existing path whose change can change the revision. Cargo reruns a build script
    /// on every build while one of its watched paths is missing, so only existing ones.
    fn watched(&self) -> Vec<PathBuf> {
        let mut paths = vec![
            self.git_dir.join("HEAD"),
            self.git_dir.join("index"),
            self.common_dir.join("packed-refs"),
        ];
        if let Some(head_ref) = &self.head_ref {
            let loose = self.common_dir.join(head_ref);
            // A branch whose ref is only packed gets a loose file at its next commit: watch
            // the directory that file will appear in.
            if loose.exists() {
                paths.push(loose);
            } else {
                paths.extend(loose.parent().map(Path::to_path_buf));
            }
        }
        paths.extend(SOURCES.iter().map(|source| self.root.join(source)));
        paths.retain(|path| path.exists());
        paths
    }
}

/// `git -C DIR ARGS…`'s trimmed standard output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
