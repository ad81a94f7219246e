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

use crate::epoll::Epoll;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
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
    #[error("metrics endpoint {addr} (metrics_listen, --metrics-listen): the address is in use (another xblade or exporter listens there); stop it or choose another port")]
    InUse { addr: SocketAddr },
    #[error("metrics endpoint {addr} (metrics_listen, --metrics-listen): not an address of this host; use 127.0.0.1, [::1], 0.0.0.0 or an address of one of its interfaces")]
    NotLocal { addr: SocketAddr },
    #[error("metrics endpoint {addr} (metrics_listen, --metrics-listen): permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE); choose port 1024 or above")]
    Denied { addr: SocketAddr },
    #[error("metrics endpoint {addr} (metrics_listen, --metrics-listen): cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("metrics endpoint {addr} (metrics_listen, --metrics-listen): cannot set up the listener: {what}: {source}")]
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
    epoll: Epoll,
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
        let epoll = Epoll::new().map_err(setup("epoll_create1"))?;
        epoll
            .add(listener.as_raw_fd(), libc::EPOLLIN as u32)
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
                // Closing the descriptor removes it from the set too; this keeps the set
                // exact even if the descriptor were ever duplicated.
                let _ = self.epoll.delete(conn.stream.as_raw_fd());
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
            if self.epoll.add(conn.stream.as_raw_fd(), conn.events).is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    const T: Duration = Duration::from_secs(10);
    const BODY: &str = "# TYPE x gauge\nx 1\n";

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn poll_in(fd: RawFd, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    /// The server driven on a thread the way the control loop drives it (poll, then
    /// serve), counting renders and timing every `serve()`.
    struct Running {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        renders: Arc<AtomicUsize>,
        thread: Option<JoinHandle<Duration>>,
    }

    impl Running {
        fn start(limits: Limits) -> Running {
            let mut server = MetricsServer::bind_with(loopback(), limits).unwrap();
            let addr = server.local_addr();
            assert_ne!(addr.port(), 0, "the kernel's port is reported");
            let stop = Arc::new(AtomicBool::new(false));
            let renders = Arc::new(AtomicUsize::new(0));
            let (flag, count) = (Arc::clone(&stop), Arc::clone(&renders));
            let thread = std::thread::spawn(move || {
                let mut longest = Duration::ZERO;
                while !flag.load(Ordering::Relaxed) {
                    // The control loop's poll: readable, or a tick.
                    poll_in(server.fd(), 50);
                    let started = Instant::now();
                    server.serve(&mut || {
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok(BODY.to_owned())
                    });
                    longest = longest.max(started.elapsed());
                }
                longest
            });
            Running {
                addr,
                stop,
                renders,
                thread: Some(thread),
            }
        }

        /// Stops the thread; the longest `serve()` it saw.
        fn stop(mut self) -> Duration {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }

        fn connect(&self) -> TcpStream {
            let stream = TcpStream::connect_timeout(&self.addr, T).unwrap();
            stream.set_read_timeout(Some(T)).unwrap();
            stream.set_write_timeout(Some(T)).unwrap();
            stream
        }

        /// Sends `request` whole and reads the response until the server closes.
        fn exchange(&self, request: &[u8]) -> String {
            let mut stream = self.connect();
            stream.write_all(request).unwrap();
            read_to_close(&mut stream)
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

    fn read_to_close(stream: &mut TcpStream) -> String {
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    }

    fn status_line(response: &str) -> &str {
        response.split("\r\n").next().unwrap_or_default()
    }

    #[test]
    fn scrape() {
        let running = Running::start(Limits::default());
        let response = running.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            response,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                BODY.len()
            )
        );
        let head = running.exchange(b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        assert_eq!(running.renders.load(Ordering::Relaxed), 2);
        // Only /metrics renders.
        let missing = running.exchange(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(status_line(&missing), "HTTP/1.1 404 Not Found");
        assert!(
            missing.ends_with("the metrics are at /metrics\n"),
            "{missing}"
        );
        let post = running.exchange(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status_line(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        assert_eq!(running.renders.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_request_in_pieces() {
        let running = Running::start(Limits::default());
        let mut stream = running.connect();
        for piece in [
            &b"GE"[..],
            b"T /met",
            b"rics HTTP/1.1\r",
            b"\nHost: x\r\n",
            b"\r\n",
        ] {
            stream.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(read_to_close(&mut stream).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn garbage_is_a_400() {
        let running = Running::start(Limits::default());
        for garbage in [
            &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..], // a TLS ClientHello
            b"hello\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno header\r\n\r\n",
        ] {
            let response = running.exchange(garbage);
            assert_eq!(
                status_line(&response),
                "HTTP/1.1 400 Bad Request",
                "{response}"
            );
        }
        assert_eq!(running.renders.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_megabyte_request_line_is_a_431() {
        let running = Running::start(Limits::default());
        let mut stream = running.connect();
        let mut request = b"GET /".to_vec();
        request.resize(1 << 20, b'a');
        request.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        // The server answers after 8 KiB and then discards the rest until we close.
        stream.write_all(&request).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let response = read_to_close(&mut stream);
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "{response}"
        );
        // And the server is still there.
        assert!(running
            .exchange(b"GET /metrics HTTP/1.1\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn a_stalled_client_is_dropped_and_blocks_nobody() {
        let timeout = Duration::from_millis(500);
        let running = Running::start(Limits {
            timeout,
            ..Limits::default()
        });
        let mut stalled = running.connect();
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x")
            .unwrap();
        let since = Instant::now();
        // Others are served meanwhile.
        for _ in 0..3 {
            assert!(running
                .exchange(b"GET /metrics HTTP/1.1\r\n\r\n")
                .starts_with("HTTP/1.1 200 OK"));
        }
        // The stalled one is closed, unanswered, once its deadline has passed (and within
        // one poll tick after it).
        let mut rest = Vec::new();
        let outcome = stalled.read_to_end(&mut rest);
        let waited = since.elapsed();
        assert!(outcome.is_ok() && rest.is_empty(), "{outcome:?} {rest:?}");
        assert!(waited >= timeout - Duration::from_millis(100), "{waited:?}");
        assert!(waited < T, "{waited:?}");
        let longest = running.stop();
        assert!(
            longest < Duration::from_millis(200),
            "serve() took {longest:?}"
        );
    }

    #[test]
    fn connection_limit() {
        let running = Running::start(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let first = running.connect();
        let second = running.connect();
        // Wait until both are accepted: a third gets 503 at once.
        let deadline = Instant::now() + T;
        loop {
            let mut third = running.connect();
            let response = read_to_close(&mut third);
            if status_line(&response) == "HTTP/1.1 503 Service Unavailable" {
                break;
            }
            assert!(Instant::now() < deadline, "no 503: {response}");
        }
        drop((first, second));
        // Until the server has seen them close, a request may still meet the 503 (or a
        // reset, when the server closes before reading it).
        let deadline = Instant::now() + T;
        loop {
            let mut stream = running.connect();
            let mut response = Vec::new();
            let outcome = stream
                .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
                .and_then(|()| stream.read_to_end(&mut response));
            let response = String::from_utf8_lossy(&response);
            if outcome.is_ok() && status_line(&response) == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "room never came back: {response}"
            );
        }
    }

    /// Drives `serve()` from this thread until `done`.
    fn pump(
        server: &mut MetricsServer,
        render: &mut dyn FnMut() -> Result<String, String>,
        mut done: impl FnMut(&MetricsServer) -> bool,
    ) {
        let deadline = Instant::now() + T;
        while !done(server) {
            assert!(Instant::now() < deadline, "timed out");
            poll_in(server.fd(), 10);
            server.serve(render);
        }
    }

    fn readable(stream: &TcpStream) -> bool {
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
    }

    #[test]
    fn many_scrapers_render_once_per_turn() {
        let mut server = MetricsServer::bind(loopback()).unwrap();
        let mut clients: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut stream = TcpStream::connect(server.local_addr()).unwrap();
                stream.set_read_timeout(Some(T)).unwrap();
                stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                stream
            })
            .collect();
        // On loopback the requests are queued by the time write() returns: one turn
        // accepts and answers all eight with one rendering.
        let mut renders = 0;
        server.serve(&mut || {
            renders += 1;
            Ok(BODY.to_owned())
        });
        assert_eq!(renders, 1);
        for client in &mut clients {
            assert!(read_to_close(client).starts_with("HTTP/1.1 200 OK"));
        }
    }

    #[test]
    fn a_render_failure_is_a_500() {
        let mut server = MetricsServer::bind(loopback()).unwrap();
        let mut client = TcpStream::connect(server.local_addr()).unwrap();
        client.set_read_timeout(Some(T)).unwrap();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut broken = || Err("it broke".to_owned());
        pump(&mut server, &mut broken, |_| readable(&client));
        pump(&mut server, &mut broken, |s| s.connections() == 0);
        let response = read_to_close(&mut client);
        assert_eq!(status_line(&response), "HTTP/1.1 500 Internal Server Error");
        assert!(response.ends_with("\r\n\r\n500 Internal Server Error: it broke\n"));
    }

    #[test]
    fn bind_errors_name_the_fix() {
        let taken = MetricsServer::bind(loopback()).unwrap();
        let e = MetricsServer::bind(taken.local_addr()).unwrap_err();
        assert!(matches!(e, MetricsError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("choose another port"), "{e}");
        // TEST-NET-1: never an address of this host.
        let e = MetricsServer::bind("192.0.2.1:9650".parse().unwrap()).unwrap_err();
        assert!(matches!(e, MetricsError::NotLocal { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "metrics endpoint 192.0.2.1:9650 (metrics_listen, --metrics-listen): not an address \
             of this host; use 127.0.0.1, [::1], 0.0.0.0 or an address of one of its interfaces"
        );
    }
}
