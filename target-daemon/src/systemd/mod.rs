//! What xblade says to systemd, without libsystemd: readiness and status over the notify
//! socket ([`notify`], sd_notify(3)'s protocol), and log lines the journal reads with
//! their priority ([`journal`]). Both do nothing outside systemd.

pub mod journal;
pub mod notify;

pub use notify::{Notification, Notifier};
