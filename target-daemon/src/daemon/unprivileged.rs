//! The daemon's side of least privilege and of systemd's notify protocol: the drop point,
//! what is refused afterwards, and the `READY=`/`STATUS=`/`RELOADING=` messages.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tracing::info;

use crate::config::ConfigSource;
use crate::control::ReloadReply;
use crate::privilege::{self, Account, DropPlan};
use crate::systemd::notify::monotonic_usec;
use crate::systemd::Notification;

use super::{Daemon, DaemonError};

impl Daemon {
    /// The drop point: switches to `account` for good (docs/PRIVILEGES.md).
    pub(super) fn drop_privileges(&mut self, account: Account) -> Result<(), DaemonError> {
        let state_file_dirs: BTreeSet<PathBuf> = self
            .exports
            .values()
            .filter_map(|e| e.state_file.as_ref())
            .map(|f| privilege::state_file_dir(f.path()))
            .collect();
        // xblade's own state directory is handed over when an export keeps its state
        // there, and always with a config file: exports a reload adds keep theirs there.
        let from_file = matches!(self.config.source, ConfigSource::File(_));
        let state_dir = self
            .config
            .state_dir
            .as_deref()
            .filter(|dir| from_file || state_file_dirs.contains(*dir));
        let dropped = privilege::drop_to(&DropPlan {
            account: &account,
            state_dir,
            state_file_dirs: state_file_dirs.into_iter().collect(),
        })?;
        info!(
            user = %account.name,
            uid = account.uid,
            gid = account.gid,
            threads = dropped.threads,
            "privileges dropped: no capabilities, seccomp allowlist in every thread"
        );
        self.unprivileged = Some(account);
        Ok(())
    }

    /// Refuses what needs the privileges the daemon dropped: attaching `ifaces`.
    pub(super) fn require_privilege(&self, ifaces: &[&str]) -> Result<(), DaemonError> {
        match &self.unprivileged {
            Some(account) if !ifaces.is_empty() => Err(DaemonError::NeedsPrivilege {
                ifaces: ifaces.join(", "),
                user: account.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// `READY=1` with the status line.
    pub(super) fn notify_ready(&mut self) {
        self.status_sent = self.status_line();
        self.notifier
            .notify(&[Notification::Ready, Notification::Status(&self.status_sent)]);
    }

    /// `STATUS=` again when the line changed (an interface came or went).
    pub(super) fn notify_status(&mut self) {
        if !self.notifier.is_active() {
            return;
        }
        let line = self.status_line();
        if line != self.status_sent {
            self.notifier.notify(&[Notification::Status(&line)]);
            self.status_sent = line;
        }
    }

    /// A reload between `RELOADING=1` and `READY=1` (sent whether or not it succeeded:
    /// the daemon serves either way).
    pub(super) fn reload_notified(&mut self) -> Result<ReloadReply, DaemonError> {
        self.notifier.notify(&[Notification::Reloading {
            monotonic_usec: monotonic_usec(),
        }]);
        let outcome = self.reload();
        self.notify_ready();
        outcome
    }

    /// One line for `systemctl status`: `serving 3 exports on 2 interfaces`, and what is
    /// not served.
    pub(super) fn status_line(&self) -> String {
        let total = self.interfaces.len();
        let down: Vec<&str> = self
            .interfaces
            .iter()
            .filter(|(_, s)| s.running.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        status_line(self.exports.len(), total, &down, self.unprivileged.as_ref())
    }
}

/// The status line from its parts (pure, for the tests).
fn status_line(exports: usize, interfaces: usize, down: &[&str], user: Option<&Account>) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut line = if down.is_empty() {
        format!(
            "serving {} on {}",
            plural(exports, "export"),
            plural(interfaces, "interface")
        )
    } else {
        format!(
            "serving {} on {} of {} (not served: {})",
            plural(exports, "export"),
            interfaces - down.len(),
            plural(interfaces, "interface"),
            down.join(", ")
        )
    };
    if let Some(account) = user {
        line.push_str(&format!("; as user {}", account.name));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(3, 2, &[], None),
            "serving 3 exports on 2 interfaces"
        );
        assert_eq!(
            status_line(1, 1, &[], None),
            "serving 1 export on 1 interface"
        );
        let user = Account {
            name: "xblade".into(),
            uid: 998,
            gid: 998,
        };
        assert_eq!(
            status_line(3, 2, &["eth2"], Some(&user)),
            "serving 3 exports on 1 of 2 interfaces (not served: eth2); as user xblade"
        );
    }
}
