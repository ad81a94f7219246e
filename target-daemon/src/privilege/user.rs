//! The account xblade switches to: looked up in the user database (getpwnam_r(3)) and
//! entered with initgroups(3), setresgid(2) and setresuid(2).
//!
//! glibc applies setgroups(2), setresgid(2) and setresuid(2) to every thread of the process
//! (the "setxid" broadcast), so the workers already running change identity with the
//! control thread. Leaving uid 0 for good (real, effective and saved uid all non-zero)
//! with `PR_SET_KEEPCAPS` off makes the kernel clear each thread's permitted, effective
//! and ambient capability sets (capabilities(7), "Effect of user ID changes on
//! capabilities").

use std::ffi::{CStr, CString};
use std::io;

use super::PrivilegeError;

/// A user to run as: the name, its uid, and its primary group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Why a user name cannot be run as. The message names the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user '{0}' in the user database (create it, e.g. `useradd --system --no-create-home --shell /usr/sbin/nologin {0}`, or name another)")]
    Unknown(String),
    #[error("user '{0}' is uid 0: that is root, nothing would be dropped (leave `user` out to run as root)")]
    Root(String),
    #[error("'{0}' cannot be a user name")]
    Invalid(String),
    #[error("cannot look up user '{name}': {detail}")]
    Lookup { name: String, detail: String },
}

impl Account {
    /// Looks `name` up in the user database. Refuses uid 0.
    pub fn lookup(name: &str) -> Result<Account, UserError> {
        let c_name = CString::new(name).map_err(|_| UserError::Invalid(name.to_owned()))?;
        if name.is_empty() {
            return Err(UserError::Invalid(name.to_owned()));
        }
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        loop {
            // SAFETY: all-zero bytes are a valid `passwd` (null pointers, zero ids); it is
            // only read after getpwnam_r fills it.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: `c_name` is NUL-terminated; `entry`, `buf` (with its true length) and
            // `found` are valid for writes for the whole call; the strings getpwnam_r
            // stores in `entry` point into `buf`, which outlives their use below.
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1024 * 1024 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 {
                return Err(UserError::Lookup {
                    name: name.to_owned(),
                    detail: io::Error::from_raw_os_error(rc).to_string(),
                });
            }
            if found.is_null() {
                return Err(UserError::Unknown(name.to_owned()));
            }
            // SAFETY: getpwnam_r succeeded and `found` points at `entry`, whose `pw_name`
            // is a NUL-terminated string inside `buf`.
            let stored = unsafe { CStr::from_ptr(entry.pw_name) };
            let account = Account {
                name: stored.to_string_lossy().into_owned(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
            };
            if account.uid == 0 {
                return Err(UserError::Root(name.to_owned()));
            }
            return Ok(account);
        }
    }

    /// Becomes this user in every thread: supplementary groups from the group database,
    /// then the group, then the user (real, effective and saved ids). Checked afterwards
    /// with getresuid(2)/getresgid(2).
    pub(super) fn enter(&self) -> Result<(), PrivilegeError> {
        let c_name = CString::new(self.name.as_str())
            .map_err(|_| PrivilegeError::from(UserError::Invalid(self.name.clone())))?;
        // SAFETY: `c_name` is NUL-terminated and lives through the call.
        let rc = unsafe { libc::initgroups(c_name.as_ptr(), self.gid) };
        check(rc, "initgroups")?;
        // SAFETY: plain system call on integers.
        let rc = unsafe { libc::setresgid(self.gid, self.gid, self.gid) };
        check(rc, "setresgid")?;
        // SAFETY: plain system call on integers.
        let rc = unsafe { libc::setresuid(self.uid, self.uid, self.uid) };
        check(rc, "setresuid")?;

        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: the three pointers are valid for writes of a uid_t each.
        check(
            unsafe { libc::getresuid(&mut r, &mut e, &mut s) },
            "getresuid",
        )?;
        let (mut gr, mut ge, mut gs) = (0, 0, 0);
        // SAFETY: the three pointers are valid for writes of a gid_t each.
        check(
            unsafe { libc::getresgid(&mut gr, &mut ge, &mut gs) },
            "getresgid",
        )?;
        if [r, e, s] != [self.uid; 3] || [gr, ge, gs] != [self.gid; 3] {
            return Err(PrivilegeError::Verify(format!(
                "after the switch to {}: uids {r}/{e}/{s}, gids {gr}/{ge}/{gs}",
                self.name
            )));
        }
        Ok(())
    }
}

fn check(rc: libc::c_int, call: &'static str) -> Result<(), PrivilegeError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Syscall {
            call,
            source: io::Error::last_os_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_found_and_root_is_refused() {
        let nobody = Account::lookup("nobody").expect("nobody exists on Debian");
        assert_eq!(nobody.name, "nobody");
        assert_ne!(nobody.uid, 0);
        assert_eq!(
            Account::lookup("root"),
            Err(UserError::Root("root".to_owned()))
        );
    }

    #[test]
    fn unknown_and_invalid_names_are_clear_errors() {
        let unknown = Account::lookup("xblade-no-such-user").unwrap_err();
        assert_eq!(
            unknown,
            UserError::Unknown("xblade-no-such-user".to_owned())
        );
        assert!(unknown.to_string().contains("useradd --system"));
        assert_eq!(
            Account::lookup("a\0b"),
            Err(UserError::Invalid("a\0b".to_owned()))
        );
        assert_eq!(Account::lookup(""), Err(UserError::Invalid(String::new())));
    }
}
