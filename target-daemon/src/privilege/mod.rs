//! Least privilege: xblade starts as root, sets up everything that needs privilege, and
//! then runs as an unprivileged user with no capabilities under a seccomp allowlist.
//!
//! Two calls, in this order:
//! 1. [`before_threads`], first thing at start-up when a user is configured: clears the
//!    per-thread sets every later thread inherits (bounding, inheritable, ambient).
//! 2. [`drop_to`], the drop point, once the XDP programs are attached and every socket,
//!    UMEM, ring, io_uring instance, backing file, listener and the notify socket is open:
//!    hands the state directory over, switches user and groups in every thread (which
//!    empties the permitted and effective sets), sets no_new_privs, installs the seccomp
//!    filter in every thread, and reads `/proc/self/task/*/status` back to prove it.
//!
//! docs/PRIVILEGES.md has the model: what runs as root, what a reload can do afterwards.

mod caps;
mod paths;
mod seccomp;
mod user;

use std::io;
use std::path::{Path, PathBuf};

pub use caps::ThreadPrivileges;
pub use paths::state_file_dir;
pub use user::{Account, UserError};

/// Why the privileges could not be dropped. Start-up stops: a daemon that was asked to
/// run unprivileged never serves as root.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("dropping privileges: {call}: {source}")]
    Syscall {
        call: &'static str,
        source: io::Error,
    },
    #[error("dropping privileges: {}: {what}: {source}", .path.display())]
    Path {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("user {user} cannot create files in {dir}, where an export keeps its state: give the directory to {user} (chown {user} {dir}), keep the state elsewhere (--state-file, or state_dir in the config file), or keep none (--no-state, or state = false)", dir = .dir.display())]
    NotWritable { dir: PathBuf, user: String },
    #[error("dropping privileges: the seccomp filter: {0}")]
    Seccomp(String),
    #[error("dropping privileges did not take: {0}")]
    Verify(String),
}

/// Clears the bounding, inheritable and ambient capability sets of the calling thread,
/// which every thread created afterwards inherits. Call it before the first thread.
pub fn before_threads() -> Result<(), PrivilegeError> {
    caps::clear_inherited_sets()
}

/// What to hand over and check at the drop point.
#[derive(Clone, Debug)]
pub struct DropPlan<'a> {
    pub account: &'a Account,
    /// xblade's own state directory: created if missing and given to the user.
    pub state_dir: Option<&'a Path>,
    /// Every directory an export keeps a state file in: must be writable afterwards.
    pub state_file_dirs: Vec<PathBuf>,
}

/// What the drop did.
#[derive(Clone, Copy, Debug)]
pub struct Dropped {
    /// Threads checked in `/proc/self/task`.
    pub threads: usize,
}

/// The drop point: from here on the process is `plan.account`, with no capability, no way
/// to gain one, and only the system calls of the allowlist, in every thread.
pub fn drop_to(plan: &DropPlan) -> Result<Dropped, PrivilegeError> {
    let account = plan.account;
    if let Some(dir) = plan.state_dir {
        paths::hand_over_state_dir(dir, account)?;
    }
    account.enter()?;
    caps::clear_all()?;
    for dir in &plan.state_file_dirs {
        paths::check_writable(dir, account)?;
    }
    caps::set_no_new_privs()?;
    seccomp::install()?;
    let threads = caps::verify_every_thread(account.uid, account.gid)?;
    Ok(Dropped { threads })
}
