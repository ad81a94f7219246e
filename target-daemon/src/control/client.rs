//! The client side of the control protocol: connect, send a request, read its reply. Used by
//! `xbladectl` and by tests.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::protocol::{decode_reply, encode_request, Reply, Request};

/// The largest reply line a client accepts.
const MAX_REPLY: usize = 64 << 20;

/// What can go wrong talking to the daemon; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {} ({})", path.display(), os_message(source), connect_hint(source))]
    Connect { path: PathBuf, source: io::Error },
    #[error("cannot send the request to {}: {} (has xblade stopped? see its log)", path.display(), os_message(source))]
    Send { path: PathBuf, source: io::Error },
    #[error("cannot read the reply from {}: {} (has xblade stopped? see its log)", path.display(), os_message(source))]
    Receive { path: PathBuf, source: io::Error },
    #[error("no reply from {} within {} s (xblade may be busy or stuck; see its log, or retry with a longer --timeout)", path.display(), timeout.as_secs_f64())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("{} closed the connection without replying (see xblade's log)", path.display())]
    Closed { path: PathBuf },
    #[error("the reply from {} is longer than {MAX_REPLY} bytes", path.display())]
    TooLong { path: PathBuf },
    #[error("malformed reply from {}: {detail}", path.display())]
    BadReply { path: PathBuf, detail: String },
}

/// An OS error's description without std's " (os error N)" suffix.
pub(crate) fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match (error.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_owned(),
        _ => text,
    }
}

fn connect_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "the control socket is mode 0600: run xbladectl as the user xblade runs as, usually root"
        }
        _ => "is xblade running with a config file, or started with --control?",
    }
}

/// One connection to the daemon, for any number of requests in sequence.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    timeout: Duration,
    /// Bytes received after the last reply line (none in practice).
    pending: Vec<u8>,
}

impl Client {
    /// Connects to the control socket at `path`. Each later request must be answered within
    /// `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        Ok(Client {
            stream,
            path: path.to_owned(),
            timeout: timeout.max(Duration::from_millis(1)),
            pending: Vec::new(),
        })
    }

    /// Sends `request` and returns the reply line as received, without its `\n`.
    pub fn request_line(&mut self, request: &Request) -> Result<String, ClientError> {
        let deadline = Instant::now() + self.timeout;
        self.send(encode_request(request).as_bytes(), deadline)?;
        self.receive_line(deadline)
    }

    /// Sends `request` and returns the decoded reply.
    pub fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let line = self.request_line(request)?;
        decode_reply(&line).map_err(|detail| ClientError::BadReply {
            path: self.path.clone(),
            detail,
        })
    }

    fn remaining(&self, deadline: Instant) -> Result<Duration, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            });
        }
        Ok(left)
    }

    fn is_timeout(error: &io::Error) -> bool {
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    fn send(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<(), ClientError> {
        while !bytes.is_empty() {
            let left = self.remaining(deadline)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|source| self.send_error(source))?;
            match self.stream.write(bytes) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        path: self.path.clone(),
                    })
                }
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if Self::is_timeout(&e) => {}
                Err(source) => return Err(self.send_error(source)),
            }
        }
        Ok(())
    }

    fn send_error(&self, source: io::Error) -> ClientError {
        ClientError::Send {
            path: self.path.clone(),
            source,
        }
    }

    fn receive_line(&mut self, deadline: Instant) -> Result<String, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return String::from_utf8(line[..end].to_vec()).map_err(|_| {
                    ClientError::BadReply {
                        path: self.path.clone(),
                        detail: "not UTF-8".to_owned(),
                    }
                });
            }
            if self.pending.len() > MAX_REPLY {
                return Err(ClientError::TooLong {
                    path: self.path.clone(),
                });
            }
            let left = self.remaining(deadline)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| ClientError::Receive {
                    path: self.path.clone(),
                    source,
                })?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        path: self.path.clone(),
                    })
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if Self::is_timeout(&e) => {}
                Err(source) => {
                    return Err(ClientError::Receive {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// Connects to `path`, sends `request`, and returns its reply; the whole exchange must end
/// within `timeout`.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    Client::connect(path, timeout)?.request(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_names_the_fix() {
        let path = Path::new("/nonexistent-xblade-dir/control.sock");
        let error = request(path, &Request::Status, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot connect to /nonexistent-xblade-dir/control.sock: No such file or directory \
             (is xblade running with a config file, or started with --control?)"
        );
    }

    #[test]
    fn os_message_strips_the_code() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_message(&e), "Connection refused");
        let e = io::Error::other("plain");
        assert_eq!(os_message(&e), "plain");
    }

    #[test]
    fn silent_server_times_out() {
        let dir = super::super::socket::tests::TempDir::new("client-timeout");
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let started = Instant::now();
        let error = request(&path, &Request::Status, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.to_string().contains("no reply from"), "{error}");
    }

    #[test]
    fn server_closing_without_reply() {
        let dir = super::super::socket::tests::TempDir::new("client-closed");
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        });
        let error = request(&path, &Request::Status, Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(
                error,
                ClientError::Closed { .. } | ClientError::Receive { .. }
            ),
            "{error}"
        );
    }
}
