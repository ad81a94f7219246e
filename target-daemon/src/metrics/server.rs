//! The metrics endpoint's socket: a non-blocking TCP listener and its connections, driven
//! by the daemon's control loop exactly as the control socket is (see
//! [`crate::control::socket`]).
//!
//! [`MetricsServer::fd`] is an epoll descriptor covering the listener and every connection;
//! the control loop polls it for `POLLIN` with its other descriptors and calls
//! [`MetricsServer::serve`] on every turn (at least once a second). `serve()` never blocks:
//! every socket is non-blocking, each connection reads at most [`http::MAX_HEAD`] bytes of
//! request and is closed at its deadline whatever it is doing, and at most
//! [`Limits::max_connections`] are open at once (the next one gets a 503). The metrics are
//! rendered at most once per `serve()`, however many scrapers asked, from a snapshot the
//! control thread takes: the workers never see a scrape.
//!
//! Why not a thread of its own: it would need the snapshot from the control thread anyway
//! (by message, or by sharing the daemon's state under a lock), and a thread blocked in
//! `accept` or `read` needs a way to be woken at shutdown; one more descriptor in the
//! control loop's `poll` needs neither.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::encode::CONTENT_TYPE;
use super::http::{self, Parsed, Route, Status};

/// The most bytes discarded from a client after its response (so that closing does not
/// reset a connection whose request was refused half-way, losing the response).
const DRAIN_BUDGET: usize = 4 << 20;

/// How much one connection may take from the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; the next one is answered 503 and closed.
    pub max_connections: usize,
    /// From accept to close: a client that has not sent its request and read the response
    /// by then is disconnected.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why the metrics listener could not be opened; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics_listen {addr}: the address is in use (another xblade or exporter listens there); stop it or choose another port")]
    InUse { addr: SocketAddr },
    #[error("metrics_listen {addr}: not an address of this host; use 127.0.0.1, [::1], 0.0.0.0 or an address of one of its interfaces")]
    NotLocal { addr: SocketAddr },
    #[error("metrics_listen {addr}: permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE); choose port 1024 or above")]
    Denied { addr: SocketAddr },
    #[error("metrics_listen {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("metrics_listen {addr}: cannot set up the listener: {what}: {source}")]
    Setup {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving the request head.
    Reading,
    /// Sending `output[sent..]`.
    Writing,
    /// Response sent and our side shut down: discarding what the client still sends until
    /// it closes.
    Draining,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    drained: usize,
    deadline: Instant,
    /// The epoll events registered for it.
    events: u32,
}

impl Conn {
    fn wanted_events(&self) -> u32 {
        match self.phase {
            Phase::Reading | Phase::Draining => libc::EPOLLIN as u32,
            Phase::Writing => libc::EPOLLOUT as u32,
        }
    }

    /// Reads, answers and writes what it can without blocking. `false`: close it.
    fn service(&mut self, now: Instant, body: &mut dyn FnMut() -> Result<String, String>) -> bool {
        if now >= self.deadline {
            debug!("metrics client too slow; disconnecting it");
            return false;
        }
        if self.phase == Phase::Reading && !self.read_request(body) {
            return false;
        }
        if self.phase == Phase::Writing && !self.write_response() {
            return false;
        }
        if self.phase == Phase::Draining {
            return self.drain();
        }
        true
    }

    /// `false`: the client hung up or failed before its request was complete.
    fn read_request(&mut self, body: &mut dyn FnMut() -> Result<String, String>) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    match http::parse(&self.input) {
                        Parsed::Incomplete => {}
                        Parsed::Request(route) => {
                            self.respond(answer(route, body));
                            return true;
                        }
                        Parsed::Reject(status) => {
                            self.respond(http::error_response(status, false));
                            return true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn respond(&mut self, response: Vec<u8>) {
        self.input = Vec::new();
        self.output = response;
        self.phase = Phase::Writing;
    }

    /// `false`: the client is gone.
    fn write_response(&mut self) -> bool {
        while self.sent < self.output.len() {
            // std's TcpStream::write sends with MSG_NOSIGNAL: a gone client is EPIPE, not
            // SIGPIPE. The socket is non-blocking.
            match (&self.stream).write(&self.output[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.output = Vec::new();
        self.phase = Phase::Draining;
        self.stream.shutdown(Shutdown::Write).is_ok()
    }

    /// `false`: done (the client closed, failed, or sent too much).
    fn drain(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.drained += n;
                    if self.drained > DRAIN_BUDGET {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// The answer to a complete request.
fn answer(route: Route, body: &mut dyn FnMut() -> Result<String, String>) -> Vec<u8> {
    match route {
        Route::NotFound { head_only } => http::error_response(Status::NotFound, head_only),
        Route::Metrics { head_only } => match body() {
            Ok(text) => http::response(200, "OK", CONTENT_TYPE, "", text.as_bytes(), head_only),
            Err(message) => http::response(
                500,
                Status::InternalServerError.reason(),
                "text/plain; charset=utf-8",
                "",
                format!("500 Internal Server Error: {message}\n").as_bytes(),
                head_only,
            ),
        },
    }
}

/// The listening metrics socket and its clients.
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    epoll: OwnedFd,
    conns: Vec<Conn>,
    limits: Limits,
    /// Whether the last accept failed (to log a persistent failure once).
    accept_failing: bool,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .finish()
    }
}

fn epoll_ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: `event` is a valid epoll_event for the duration of the call; both descriptors
    // are owned by the caller and open.
    let rc = unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl MetricsServer {
    /// Listens on `addr` (port 0: the kernel picks one; [`local_addr`](Self::local_addr)
    /// says which) with the default [`Limits`].
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        MetricsServer::bind_with(addr, Limits::default())
    }

    pub fn bind_with(addr: SocketAddr, limits: Limits) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(addr).map_err(|source| match source.raw_os_error() {
            Some(libc::EADDRINUSE) => MetricsError::InUse { addr },
            Some(libc::EADDRNOTAVAIL) => MetricsError::NotLocal { addr },
            Some(libc::EACCES) | Some(libc::EPERM) => MetricsError::Denied { addr },
            _ => MetricsError::Bind { addr, source },
        })?;
        let setup = |what: &'static str| move |source| MetricsError::Setup { addr, what, source };
        listener
            .set_nonblocking(true)
            .map_err(setup("set non-blocking"))?;
        let local_addr = listener.local_addr().map_err(setup("getsockname"))?;
        // SAFETY: plain syscall; the result is checked and owned at once.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(setup("epoll_create1")(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            libc::EPOLLIN as u32,
        )
        .map_err(setup("epoll_ctl"))?;
        Ok(MetricsServer {
            listener,
            local_addr,
            epoll,
            conns: Vec::new(),
            limits,
            accept_failing: false,
        })
    }

    /// The address it listens on, with the port the kernel chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The descriptor to poll for `POLLIN`: an epoll instance covering the listener and
    /// every connection.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// How many clients are connected.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepts pending connections, answers every complete request, writes what the
    /// sockets take and closes connections past their deadline, all without blocking.
    /// `render` gives the exposition text (or why there is none: a 500); it is called at
    /// most once per `serve()`, and only when a scraper asked for `/metrics`.
    pub fn serve(&mut self, render: &mut dyn FnMut() -> Result<String, String>) {
        let now = Instant::now();
        self.accept_all(now);
        let mut rendered: Option<Result<String, String>> = None;
        let mut body = || rendered.get_or_insert_with(&mut *render).clone();
        let mut i = 0;
        while i < self.conns.len() {
            let conn = &mut self.conns[i];
            let keep = conn.service(now, &mut body) && {
                let wanted = conn.wanted_events();
                wanted == conn.events
                    || epoll_ctl(
                        self.epoll.as_raw_fd(),
                        libc::EPOLL_CTL_MOD,
                        conn.stream.as_raw_fd(),
                        wanted,
                    )
                    .map(|()| conn.events = wanted)
                    .is_ok()
            };
            if keep {
                i += 1;
            } else {
                let conn = self.conns.swap_remove(i);
                // Closing the descriptor removes it from the set too; this keeps the set
                // exact even if the descriptor were ever duplicated.
                let _ = epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    conn.stream.as_raw_fd(),
                    0,
                );
            }
        }
    }

    fn accept_all(&mut self, now: Instant) {
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
                        warn!(addr = %self.local_addr, "metrics: cannot accept a connection: {e}");
                        self.accept_failing = true;
                    }
                    break;
                }
            };
            self.accept_failing = false;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= self.limits.max_connections {
                // Best effort, never blocking: the socket buffer takes this much.
                let _ = (&stream).write(&http::error_response(Status::ServiceUnavailable, false));
                continue;
            }
            let conn = Conn {
                stream,
                phase: Phase::Reading,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                drained: 0,
                deadline: now + self.limits.timeout,
                events: libc::EPOLLIN as u32,
            };
            if epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                conn.stream.as_raw_fd(),
                conn.events,
            )
            .is_ok()
            {
                self.conns.push(conn);
            }
        }
    }
}

impl AsRawFd for MetricsServer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}
