//! sd_notify(3) without libsystemd: one datagram per message to the `AF_UNIX` socket named
//! by `$NOTIFY_SOCKET` (a path, or `@NAME` for an abstract name), each a newline-separated
//! list of `KEY=VALUE` assignments (`READY=1`, `STATUS=...`, `RELOADING=1`,
//! `MONOTONIC_USEC=...`, `STOPPING=1`). Without `$NOTIFY_SOCKET` every call does nothing.
//!
//! The socket is created when the daemon starts, before the privilege drop: afterwards
//! sending needs only sendto(2), which the seccomp allowlist keeps.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::warn;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// One assignment of the notify protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification<'a> {
    /// `READY=1`: start-up (or a reload) is complete.
    Ready,
    /// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC when the reload began), which
    /// `Type=notify-reload` requires and `Type=notify` accepts.
    Reloading { monotonic_usec: u64 },
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `STATUS=...`: one line for `systemctl status` (newlines become spaces).
    Status(&'a str),
}

impl Notification<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Notification::Ready => out.push_str("READY=1"),
            Notification::Reloading { monotonic_usec } => {
                out.push_str(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}"));
            }
            Notification::Stopping => out.push_str("STOPPING=1"),
            Notification::Status(text) => {
                out.push_str("STATUS=");
                out.push_str(&text.replace('\n', " "));
            }
        }
    }
}

/// The datagram for `notifications`, one assignment per line.
pub fn message(notifications: &[Notification]) -> String {
    let mut out = String::new();
    for (i, n) in notifications.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        n.render(&mut out);
    }
    out
}

/// Where `$NOTIFY_SOCKET` points, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(String),
    /// `@NAME`: the abstract socket NAME.
    Abstract(Vec<u8>),
}

/// Parses a `$NOTIFY_SOCKET` value; `None` for one that is neither an absolute path nor
/// `@NAME` (sd_notify(3) ignores those too).
pub fn parse_target(value: &str) -> Option<NotifyTarget> {
    if let Some(name) = value.strip_prefix('@') {
        (!name.is_empty()).then(|| NotifyTarget::Abstract(name.as_bytes().to_vec()))
    } else if value.starts_with('/') {
        Some(NotifyTarget::Path(value.to_owned()))
    } else {
        None
    }
}

/// The notify socket, or nothing outside systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier that never sends.
    pub fn none() -> Notifier {
        Notifier { socket: None }
    }

    /// Opens the socket `$NOTIFY_SOCKET` names; nothing when it is unset. A value it
    /// cannot use is logged and ignored (the service then times out in systemd, which
    /// says why).
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
            return Notifier::none();
        };
        let value = value.to_string_lossy();
        match Notifier::open(&value) {
            Ok(notifier) => notifier,
            Err(e) => {
                warn!("{NOTIFY_SOCKET}={value}: cannot notify systemd: {e}");
                Notifier::none()
            }
        }
    }

    fn open(value: &str) -> io::Result<Notifier> {
        let target = parse_target(value).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @NAME",
            )
        })?;
        let address = match target {
            NotifyTarget::Path(path) => SocketAddr::from_pathname(path)?,
            NotifyTarget::Abstract(name) => SocketAddr::from_abstract_name(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            socket: Some((socket, address)),
        })
    }

    /// True when there is a socket to notify.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `notifications` in one datagram. A failure is logged, never fatal: serving
    /// matters more than telling systemd.
    pub fn notify(&self, notifications: &[Notification]) {
        let Some((socket, address)) = &self.socket else {
            return;
        };
        let text = message(notifications);
        if let Err(e) = socket.send_to_addr(text.as_bytes(), address) {
            warn!("cannot notify systemd ({}): {e}", text.replace('\n', " "));
        }
    }
}

/// CLOCK_MONOTONIC now, in microseconds (what `MONOTONIC_USEC=` carries).
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel (vDSO) to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_newline_separated_assignments() {
        assert_eq!(
            message(&[
                Notification::Ready,
                Notification::Status("serving 3 exports\non 2")
            ]),
            "READY=1\nSTATUS=serving 3 exports on 2"
        );
        assert_eq!(
            message(&[Notification::Reloading { monotonic_usec: 42 }]),
            "RELOADING=1\nMONOTONIC_USEC=42"
        );
        assert_eq!(message(&[Notification::Stopping]), "STOPPING=1");
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/run/systemd/notify"),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target("@sd-notify/1"),
            Some(NotifyTarget::Abstract(b"sd-notify/1".to_vec()))
        );
        assert_eq!(parse_target("relative"), None);
        assert_eq!(parse_target("@"), None);
    }

    #[test]
    fn a_datagram_arrives_on_an_abstract_socket() {
        let name = format!("xblade-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::open(&format!("@{name}")).unwrap();
        notifier.notify(&[Notification::Ready]);
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(monotonic_usec() > 0);
    }
}
