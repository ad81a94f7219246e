//! Logging under systemd. When stderr is the journal (`$JOURNAL_STREAM` names stderr's
//! device and inode, systemd.exec(5)), each line starts with its syslog priority (`<3>`
//! error, `<4>` warning, `<6>` info, `<7>` debug; sd-daemon(3)) and carries no timestamp:
//! the journal stamps every entry itself.

use std::fmt;
use std::os::fd::AsRawFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable systemd sets to `DEVICE:INODE` of the stream it connected.
pub const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Parses `$JOURNAL_STREAM` (`DEVICE:INODE`, decimal).
pub fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// True when stderr is the stream `$JOURNAL_STREAM` names (a stderr redirected elsewhere
/// by the service keeps ordinary lines).
pub fn stderr_is_journal() -> bool {
    let Some((device, inode)) = std::env::var(JOURNAL_STREAM)
        .ok()
        .and_then(|v| parse_stream(&v))
    else {
        return false;
    };
    // SAFETY: all-zero bytes are a valid `stat`, which fstat(2) then fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: stderr's descriptor and a valid `stat` to write.
    let rc = unsafe { libc::fstat(std::io::stderr().as_raw_fd(), &mut st) };
    rc == 0 && st.st_dev == device && st.st_ino == inode
}

/// The syslog priority of a tracing level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<N>` and then tracing's usual line without its timestamp and level (the priority is
/// the level).
pub struct JournalFormat {
    inner: Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        JournalFormat {
            inner: Format::default()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_values() {
        assert_eq!(parse_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::TRACE), 7);
    }
}
