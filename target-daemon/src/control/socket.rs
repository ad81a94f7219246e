//! The daemon's end of the control socket: a non-blocking server that the control loop drives
//! between its other duties.
//!
//! [`ControlServer::fd`] is an epoll descriptor that covers the listening socket and every
//! client connection; it is readable whenever [`ControlServer::serve`] has something to do
//! (a connection to accept, request bytes to read, a reply that can now be written, a client
//! that hung up). The control loop polls it for `POLLIN` alongside its other descriptors and
//! calls `serve()` when it is readable (calling it more often is harmless):
//!
//! ```ignore
//! let mut fds = [pollfd(control.fd(), POLLIN), pollfd(links.fd(), POLLIN)];
//! poll(&mut fds, 100 /* ms */);
//! control.serve(&mut |request| handle(request));
//! ```
//!
//! `serve()` never blocks and never panics on anything a client does. Limits: at most
//! [`MAX_CONNECTIONS`] clients at once (the next one gets an `ok:false` line and is closed), a
//! request line of at most [`MAX_LINE`] bytes (a longer one gets an `ok:false` line and the
//! connection is closed), and at most [`MAX_OUTPUT`] bytes of replies a client has not read
//! yet besides the latest one (beyond that it is dropped: a client that does not read never
//! stalls the daemon; one large reply, such as `stats` of thousands of exports, is always
//! delivered whole to a client that reads it).

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::client::os_message;
use super::protocol::{decode_request, encode_line, Reply, Request};
use crate::epoll::Epoll;

/// The most clients connected at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest request line, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// The most reply bytes a client may leave unread, besides its latest reply, before it is
/// dropped.
pub const MAX_OUTPUT: usize = 4 << 20;
/// The most bytes read from one connection per `serve()`, so that one busy client cannot
/// starve the others (the rest is read on the next call; the fd stays readable).
const READ_BUDGET: usize = 256 * 1024;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_PATH: usize = 107;

/// Why the control socket could not be set up; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket path {} is longer than {MAX_PATH} bytes; use --control with a shorter path", path.display())]
    PathTooLong { path: PathBuf },
    #[error("cannot create directory {} for the control socket: {} (create it, or use --control with another path)", dir.display(), os_message(source))]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("another xblade is listening on {}; stop it or use --control", path.display())]
    InUse { path: PathBuf },
    #[error("{} exists and is not a socket; remove it or use --control with another path", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot check the existing control socket {}: {} (remove it, or use --control with another path)", path.display(), os_message(source))]
    Inspect { path: PathBuf, source: io::Error },
    #[error("cannot remove the stale control socket {}: {} (remove it by hand, or use --control with another path)", path.display(), os_message(source))]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot bind the control socket {}: {} (check that its directory is writable, or use --control with another path)", path.display(), os_message(source))]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set up the control socket {}: {what}: {}", path.display(), os_message(source))]
    Setup {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    /// Received bytes not yet forming a complete line.
    input: Vec<u8>,
    /// Encoded replies; `output[sent..]` is still to be written.
    output: Vec<u8>,
    sent: usize,
    /// Where the latest reply starts in `output`.
    latest_at: usize,
    /// The client hung up its sending side, or broke a limit: answer what is queued, then
    /// close.
    read_closed: bool,
    /// The epoll events registered for it.
    events: u32,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.output.len() - self.sent
    }

    /// Reply bytes not yet written, before the latest reply: what the client has left
    /// unread while asking for more.
    fn unread_before_latest(&self) -> usize {
        self.latest_at.saturating_sub(self.sent)
    }

    fn wanted_events(&self) -> u32 {
        let mut events = 0;
        if !self.read_closed {
            events |= libc::EPOLLIN as u32;
        }
        if self.unsent() > 0 {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }

    /// Reads, answers and writes what it can without blocking. `false`: close it.
    fn service(&mut self, handler: &mut dyn FnMut(Request) -> Reply) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        while !self.read_closed && budget > 0 {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => {
                    // Hung up; a partial last line is dropped unanswered.
                    self.read_closed = true;
                    self.input.clear();
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.input.extend_from_slice(&chunk[..n]);
                    self.answer_lines(handler);
                    if self.unread_before_latest() > MAX_OUTPUT {
                        debug!("control client does not read its replies; dropping it");
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !self.flush() {
            return false;
        }
        !(self.read_closed && self.unsent() == 0)
    }

    /// Answers every complete line in `input`.
    fn answer_lines(&mut self, handler: &mut dyn FnMut(Request) -> Reply) {
        let mut start = 0;
        while let Some(len) = self.input[start..].iter().position(|&b| b == b'\n') {
            let reply = match std::str::from_utf8(&self.input[start..start + len]) {
                Ok(line) => match decode_request(line) {
                    Ok(request) => handler(request),
                    Err(error) => Reply::Error(error),
                },
                Err(_) => Reply::error(
                    "malformed request (not UTF-8): send one JSON object per line, e.g. {\"cmd\":\"status\"}",
                ),
            };
            start += len + 1;
            self.latest_at = self.output.len();
            self.output
                .extend_from_slice(encode_line(&reply).as_bytes());
            if self.unread_before_latest() > MAX_OUTPUT {
                break;
            }
        }
        self.input.drain(..start);
        if self.input.len() > MAX_LINE {
            let reply = Reply::error(format!(
                "request line longer than {MAX_LINE} bytes; closing the connection"
            ));
            self.output
                .extend_from_slice(encode_line(&reply).as_bytes());
            self.input = Vec::new();
            self.read_closed = true;
        }
    }

    /// Writes what the socket takes. `false`: the client is gone.
    fn flush(&mut self) -> bool {
        while self.sent < self.output.len() {
            let rest = &self.output[self.sent..];
            // SAFETY: `rest` is a live, initialized byte slice for the duration of the call,
            // and the descriptor is owned by `self.stream`. MSG_NOSIGNAL: a hung-up client
            // gives EPIPE rather than SIGPIPE; MSG_DONTWAIT: never block.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return false,
                }
            }
            // `n` is non-negative and at most `rest.len()`.
            self.sent += n as usize;
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.latest_at = 0;
            self.sent = 0;
        } else if self.sent >= 64 * 1024 {
            self.output.drain(..self.sent);
            self.latest_at = self.latest_at.saturating_sub(self.sent);
            self.sent = 0;
        }
        true
    }
}

/// The listening control socket and its clients. Dropping it closes every connection and
/// removes the socket file (if it is still the one this server created).
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: Vec<Conn>,
    /// (st_dev, st_ino) of the socket file we created.
    identity: (u64, u64),
    /// Whether the last accept failed (to log a persistent failure once).
    accept_failing: bool,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .finish()
    }
}

/// Whether something accepts connections on the socket at `path`: `Ok(true)` yes,
/// `Ok(false)` no (a stale file). Never blocks.
fn is_live(path: &Path) -> io::Result<bool> {
    // SAFETY: plain syscall; the result is checked and owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `addr` is a properly initialized sockaddr_un whose size is passed; `fd` is valid.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // A full backlog: someone listens but is not accepting right now.
        Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => Ok(true),
        Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => Ok(false),
        _ => Err(e),
    }
}

impl ControlServer {
    /// Creates the socket at `path` (mode 0600) and listens on it.
    ///
    /// Creates a missing parent directory (mode 0755). An existing socket file is replaced
    /// if nothing listens on it, and an error if something does. Sets the process umask to
    /// 0177 for the instant of `bind(2)` so that the socket is never accessible to others;
    /// call it before other threads create files.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        let path = path.to_owned();
        if path.as_os_str().len() > MAX_PATH {
            return Err(ControlError::PathTooLong { path });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                let create = fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)));
                if let Err(source) = create {
                    return Err(ControlError::CreateDir {
                        dir: dir.to_owned(),
                        source,
                    });
                }
            }
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => match is_live(&path) {
                Ok(true) => return Err(ControlError::InUse { path }),
                Ok(false) => match fs::remove_file(&path) {
                    Ok(()) => debug!(path = %path.display(), "removed a stale control socket"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ControlError::RemoveStale { path, source }),
                },
                Err(source) => return Err(ControlError::Inspect { path, source }),
            },
            Ok(_) => return Err(ControlError::NotASocket { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ControlError::Inspect { path, source }),
        }

        // SAFETY: umask(2) cannot fail and touches no memory.
        let old_umask = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&path);
        // SAFETY: as above; restores the caller's umask.
        unsafe { libc::umask(old_umask) };
        let listener = bound.map_err(|source| ControlError::Bind {
            path: path.clone(),
            source,
        })?;

        ControlServer::finish(path.clone(), listener).inspect_err(|_| {
            let _ = fs::remove_file(&path);
        })
    }

    /// The rest of `bind` once the socket file exists (the caller removes it on error).
    fn finish(path: PathBuf, listener: UnixListener) -> Result<ControlServer, ControlError> {
        let setup = |what: &'static str| {
            let path = path.clone();
            move |source| ControlError::Setup { path, what, source }
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(setup("chmod 0600"))?;
        let meta = fs::symlink_metadata(&path).map_err(setup("stat"))?;
        listener
            .set_nonblocking(true)
            .map_err(setup("set non-blocking"))?;
        let epoll = Epoll::new().map_err(setup("epoll_create1"))?;
        epoll
            .add(listener.as_raw_fd(), libc::EPOLLIN as u32)
            .map_err(setup("epoll_ctl"))?;
        Ok(ControlServer {
            path,
            listener,
            epoll,
            conns: Vec::new(),
            identity: (meta.dev(), meta.ino()),
            accept_failing: false,
        })
    }

    /// The descriptor to poll for `POLLIN`: an epoll instance covering the listener and every
    /// client. Readable whenever [`serve`](Self::serve) has work.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many clients are connected.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepts pending connections, answers every complete request line with `handler`, and
    /// writes the replies, all without blocking.
    pub fn serve(&mut self, handler: &mut dyn FnMut(Request) -> Reply) {
        self.accept_all();
        let mut i = 0;
        while i < self.conns.len() {
            let conn = &mut self.conns[i];
            let keep = conn.service(handler) && {
                let wanted = conn.wanted_events();
                wanted == conn.events
                    || self
                        .epoll
                        .modify(conn.stream.as_raw_fd(), wanted)
                        .map(|()| conn.events = wanted)
                        .is_ok()
            };
            if keep {
                i += 1;
            } else {
                let conn = self.conns.swap_remove(i);
                self.forget(&conn);
            }
        }
    }

    fn forget(&self, conn: &Conn) {
        // Closing the descriptor would remove it too; this keeps the set exact even if the
        // descriptor were ever duplicated.
        let _ = self.epoll.delete(conn.stream.as_raw_fd());
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    if !self.accept_failing {
                        warn!(
                            "control socket {}: cannot accept a connection: {}",
                            self.path.display(),
                            os_message(&e)
                        );
                        self.accept_failing = true;
                    }
                    break;
                }
            };
            self.accept_failing = false;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut conn = Conn {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                latest_at: 0,
                read_closed: false,
                events: libc::EPOLLIN as u32,
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                let reply = Reply::error(format!(
                    "too many control connections (at most {MAX_CONNECTIONS}); close some and retry"
                ));
                conn.output = encode_line(&reply).into_bytes();
                conn.flush();
                continue;
            }
            if self.epoll.add(conn.stream.as_raw_fd(), conn.events).is_ok() {
                self.conns.push(conn);
            }
        }
    }
}

impl AsRawFd for ControlServer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                match fs::remove_file(&self.path) {
                    Ok(()) => {}
                    // Run as a user without write access to the directory (--user): the
                    // next start replaces the stale socket (and systemd removes its
                    // RuntimeDirectory).
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => debug!(
                        "control socket {} left for the next start: {}",
                        self.path.display(),
                        os_message(&e)
                    ),
                    Err(e) => warn!(
                        "cannot remove the control socket {}: {}",
                        self.path.display(),
                        os_message(&e)
                    ),
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::client::{Client, ClientError};
    use crate::control::protocol::tests::sample_status;
    use crate::control::protocol::{decode_reply, ReloadReply};
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// A scratch directory, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(label: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("xblade-ctl-{}-{n}-{label}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn handler(request: Request) -> Reply {
        match request {
            Request::Status => Reply::Status(sample_status()),
            Request::Reload => Reply::Reload(ReloadReply {
                added: vec!["e1.1".into()],
                unchanged: 1,
                ..Default::default()
            }),
            // Larger than MAX_OUTPUT: one reply is delivered whole.
            Request::Stats { .. } => Reply::Stats(crate::control::StatsReply {
                version: "x".repeat(MAX_OUTPUT + (1 << 20)),
                ..Default::default()
            }),
            other => Reply::error(format!("{} is not served by this test", other.name())),
        }
    }

    fn poll_in(fd: RawFd, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
    }

    /// The server, driven on a thread the way the daemon drives it.
    struct Running {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<ControlServer>>,
    }

    impl Running {
        fn start(mut server: ControlServer) -> Running {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    poll_in(server.fd(), 10);
                    server.serve(&mut handler);
                }
                server
            });
            Running {
                stop,
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> ControlServer {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    const T: Duration = Duration::from_secs(10);

    fn raw_exchange(reader: &mut BufReader<UnixStream>, line: &[u8]) -> String {
        reader.get_mut().set_read_timeout(Some(T)).unwrap();
        reader.get_mut().write_all(line).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        reply
    }

    /// Drives `serve()` from this thread until `done` or a deadline.
    fn pump(server: &mut ControlServer, mut done: impl FnMut(&ControlServer) -> bool) {
        let deadline = Instant::now() + T;
        while !done(server) {
            assert!(Instant::now() < deadline, "timed out");
            poll_in(server.fd(), 10);
            server.serve(&mut handler);
        }
    }

    #[test]
    fn status_round_trip() {
        let dir = TempDir::new("status");
        let path = dir.path().join("control.sock");
        let running = Running::start(ControlServer::bind(&path).unwrap());
        let reply = crate::control::request(&path, &Request::Status, T).unwrap();
        assert_eq!(reply, Reply::Status(sample_status()));
        let server = running.stop();
        assert_eq!(server.path(), path);
        drop(server);
        assert!(!path.exists(), "drop removes the socket file");
    }

    #[test]
    fn two_requests_on_one_connection() {
        let dir = TempDir::new("two");
        let path = dir.path().join("control.sock");
        let _running = Running::start(ControlServer::bind(&path).unwrap());
        let mut client = Client::connect(&path, T).unwrap();
        assert!(matches!(
            client.request(&Request::Reload).unwrap(),
            Reply::Reload(r) if r.added == ["e1.1"]
        ));
        assert_eq!(
            client.request(&Request::Status).unwrap(),
            Reply::Status(sample_status())
        );
        // Pipelined: both requests in one write, replies in order.
        let mut reader = BufReader::new(UnixStream::connect(&path).unwrap());
        let first = raw_exchange(&mut reader, b"{\"cmd\":\"reload\"}\n{\"cmd\":\"status\"}\n");
        let mut second = String::new();
        reader.read_line(&mut second).unwrap();
        assert!(matches!(decode_reply(&first), Ok(Reply::Reload(_))));
        assert!(matches!(decode_reply(&second), Ok(Reply::Status(_))));
    }

    #[test]
    fn malformed_and_unknown_lines_keep_the_connection() {
        let dir = TempDir::new("malformed");
        let path = dir.path().join("control.sock");
        let _running = Running::start(ControlServer::bind(&path).unwrap());
        let mut reader = BufReader::new(UnixStream::connect(&path).unwrap());

        let reply = raw_exchange(&mut reader, b"this is not json\n");
        let value: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(value["ok"], false);
        assert!(value["error"].as_str().unwrap().contains("malformed"));

        let reply = raw_exchange(&mut reader, b"\xff\xfe\n");
        assert!(matches!(decode_reply(&reply), Ok(Reply::Error(_))));

        let reply = raw_exchange(&mut reader, b"{\"cmd\":\"x\"}\n");
        assert_eq!(
            reply,
            format!(
                "{{\"ok\":false,\"error\":\"unknown command 'x' (known: {})\"}}\n",
                crate::control::protocol::COMMANDS.join(", ")
            )
        );

        let reply = raw_exchange(&mut reader, b"{\"cmd\":\"status\"}\r\n");
        assert_eq!(decode_reply(&reply), Ok(Reply::Status(sample_status())));
    }

    #[test]
    fn stale_socket_file_is_replaced() {
        let dir = TempDir::new("stale");
        let path = dir.path().join("control.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
        assert!(path.exists());
        let _running = Running::start(ControlServer::bind(&path).unwrap());
        assert!(crate::control::request(&path, &Request::Status, T)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn second_bind_while_live_fails() {
        let dir = TempDir::new("second");
        let path = dir.path().join("control.sock");
        let first = ControlServer::bind(&path).unwrap();
        let error = ControlServer::bind(&path).unwrap_err();
        assert!(matches!(error, ControlError::InUse { .. }));
        assert_eq!(
            error.to_string(),
            format!(
                "another xblade is listening on {}; stop it or use --control",
                path.display()
            )
        );
        // The first one is untouched and still works.
        let _running = Running::start(first);
        assert!(crate::control::request(&path, &Request::Status, T)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn a_plain_file_is_not_replaced() {
        let dir = TempDir::new("plain");
        let path = dir.path().join("control.sock");
        fs::write(&path, b"precious").unwrap();
        let error = ControlServer::bind(&path).unwrap_err();
        assert!(matches!(error, ControlError::NotASocket { .. }), "{error}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn too_long_path() {
        let path = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::PathTooLong { .. })
        ));
    }

    #[test]
    fn modes_and_removal() {
        let dir = TempDir::new("mode");
        let path = dir.path().join("run/xblade/control.sock");
        let server = ControlServer::bind(&path).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let parent = fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o755);
        drop(server);
        assert!(!path.exists(), "drop removes the socket file");
    }

    #[test]
    fn drop_leaves_a_successors_socket_alone() {
        let dir = TempDir::new("successor");
        let path = dir.path().join("control.sock");
        let old = ControlServer::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let new = ControlServer::bind(&path).unwrap();
        drop(old);
        assert!(path.exists());
        let _running = Running::start(new);
        assert!(crate::control::request(&path, &Request::Status, T)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn client_disconnecting_mid_line() {
        let dir = TempDir::new("midline");
        let path = dir.path().join("control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"{\"cmd\":\"sta").unwrap();
        pump(&mut server, |s| s.connections() == 1);
        drop(client);
        pump(&mut server, |s| s.connections() == 0);
        // A client that sends a full line and hangs up at once still gets its reply.
        let mut client = UnixStream::connect(&path).unwrap();
        client.set_read_timeout(Some(T)).unwrap();
        client.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let fd = client.as_raw_fd();
        pump(&mut server, |_| poll_in(fd, 0));
        pump(&mut server, |s| s.connections() == 0);
        let mut reply = String::new();
        BufReader::new(client).read_line(&mut reply).unwrap();
        assert!(decode_reply(&reply).unwrap().is_ok());
        // Nothing left to do: the fd is quiet.
        assert!(!poll_in(server.fd(), 0));
    }

    #[test]
    fn a_reply_larger_than_the_output_limit_arrives_whole() {
        let dir = TempDir::new("bigreply");
        let path = dir.path().join("control.sock");
        let _running = Running::start(ControlServer::bind(&path).unwrap());
        let mut client = crate::control::Client::connect(&path, T).unwrap();
        for _ in 0..2 {
            match client.request(&Request::Stats { exports: vec![] }).unwrap() {
                Reply::Stats(stats) => assert_eq!(stats.version.len(), MAX_OUTPUT + (1 << 20)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            client.request(&Request::Status).unwrap(),
            Reply::Status(_)
        ));
    }

    #[test]
    fn client_that_never_reads_is_dropped() {
        let dir = TempDir::new("noread");
        let path = dir.path().join("control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        client.set_nonblocking(true).unwrap();
        let requests = b"{\"cmd\":\"status\"}\n".repeat(1000);
        let deadline = Instant::now() + T;
        let mut dropped = false;
        let mut ever_connected = false;
        while Instant::now() < deadline && !dropped {
            match (&client).write(&requests) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => dropped = true, // EPIPE/ECONNRESET: the server closed it
            }
            let started = Instant::now();
            server.serve(&mut handler);
            assert!(started.elapsed() < Duration::from_secs(2), "serve blocked");
            ever_connected |= server.connections() == 1;
            dropped |= ever_connected && server.connections() == 0;
        }
        assert!(dropped, "a client that never reads must be dropped");
    }

    #[test]
    fn overlong_line_closes_the_connection() {
        let dir = TempDir::new("long");
        let path = dir.path().join("control.sock");
        let _running = Running::start(ControlServer::bind(&path).unwrap());
        let mut client = UnixStream::connect(&path).unwrap();
        client.set_write_timeout(Some(T)).unwrap();
        // The server may close while we are still writing: ignore write errors.
        let _ = client.write_all(&vec![b'x'; MAX_LINE + 4096]);
        client.set_read_timeout(Some(T)).unwrap();
        let mut reader = BufReader::new(client);
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        assert!(
            matches!(decode_reply(&reply), Ok(Reply::Error(e)) if e.contains("longer than")),
            "{reply}"
        );
        let mut rest = String::new();
        assert_eq!(reader.read_line(&mut rest).unwrap(), 0, "then closed");
    }

    #[test]
    fn connection_limit() {
        let dir = TempDir::new("limit");
        let path = dir.path().join("control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let clients: Vec<UnixStream> = (0..MAX_CONNECTIONS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        pump(&mut server, |s| s.connections() == MAX_CONNECTIONS);
        let extra = UnixStream::connect(&path).unwrap();
        server.serve(&mut handler);
        extra.set_read_timeout(Some(T)).unwrap();
        let mut reply = String::new();
        BufReader::new(extra).read_line(&mut reply).unwrap();
        assert!(
            matches!(decode_reply(&reply), Ok(Reply::Error(e)) if e.contains("too many")),
            "{reply}"
        );
        assert_eq!(server.connections(), MAX_CONNECTIONS);
        drop(clients);
        pump(&mut server, |s| s.connections() == 0);
        // Room again.
        let _running = Running::start(server);
        assert!(crate::control::request(&path, &Request::Status, T)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn no_server_is_a_clear_client_error() {
        let dir = TempDir::new("noserver");
        let path = dir.path().join("control.sock");
        let error = crate::control::request(&path, &Request::Status, T).unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }));
        assert!(error.to_string().contains("is xblade running"), "{error}");
    }
}
