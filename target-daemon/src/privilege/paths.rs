//! The files the daemon writes after the drop: each export's state file, replaced
//! atomically (a temporary file renamed over it), so the user needs to create and rename
//! files in its directory.
//!
//! The policy: the configured state directory (`state_dir`, `/var/lib/xblade` by
//! default, what systemd's `StateDirectory=xblade` creates owned by root) is xblade's own:
//! while still root, it is created if missing and handed to the user with the state files
//! in it. A state file anywhere else (`--state-file`, or vblade's `IMAGE.xblade-state`
//! beside an image) is not xblade's to chown: its directory must already be writable by
//! the user, or start-up is refused with what to do.

use std::fs;
use std::io;
use std::os::unix::fs::{chown, DirBuilderExt};
use std::path::{Path, PathBuf};

use super::{Account, PrivilegeError};

/// Creates `dir` if missing (mode 0750) and gives it and every `*.state` file in it to
/// `account`.
pub fn hand_over_state_dir(dir: &Path, account: &Account) -> Result<(), PrivilegeError> {
    let fail = |what: &'static str| {
        move |source: io::Error| PrivilegeError::Path {
            path: dir.to_owned(),
            what,
            source,
        }
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(fail("create"))?;
    }
    chown(dir, Some(account.uid), Some(account.gid)).map_err(fail("chown"))?;
    for entry in fs::read_dir(dir).map_err(fail("list"))? {
        let path = entry.map_err(fail("list"))?.path();
        if path.extension().is_some_and(|e| e == "state") && path.is_file() {
            chown(&path, Some(account.uid), Some(account.gid)).map_err(|source| {
                PrivilegeError::Path {
                    path: path.clone(),
                    what: "chown",
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// The directory a state file at `state_file` lives in.
pub fn state_file_dir(state_file: &Path) -> PathBuf {
    match state_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that the calling process, already running as `account`, may create and rename
/// files in `dir` (access(2) with the real uid: mode bits, groups and ACLs alike), with a
/// message naming the fix.
pub fn check_writable(dir: &Path, account: &Account) -> Result<(), PrivilegeError> {
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        PrivilegeError::NotWritable {
            dir: dir.to_owned(),
            user: account.name.clone(),
        }
    })?;
    // SAFETY: `c_dir` is NUL-terminated and lives through the call.
    let rc = unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::NotWritable {
            dir: dir.to_owned(),
            user: account.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_directories() {
        assert_eq!(
            state_file_dir(Path::new("/var/lib/xblade/e1.0.state")),
            Path::new("/var/lib/xblade")
        );
        assert_eq!(state_file_dir(Path::new("e1.0.state")), Path::new("."));
    }
}
