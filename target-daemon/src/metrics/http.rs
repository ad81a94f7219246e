//! The little HTTP/1.1 the metrics endpoint speaks: parsing a request head and writing a
//! response. Pure: bytes in, bytes out; [`super::server`] moves them.
//!
//! Only what a scraper sends is understood: a request line and header lines up to the
//! blank line. A body is never read (GET and HEAD have none), and every response closes
//! the connection (`Connection: close`), so there is no keep-alive, pipelining or chunking
//! to get wrong.

/// The longest request head (request line and headers) accepted, in bytes. Prometheus
/// sends about 300.
pub const MAX_HEAD: usize = 8 * 1024;

/// What a scraper asked for, once its request head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (a query string is ignored); `head_only` for `HEAD`.
    Metrics { head_only: bool },
    /// Another path: 404.
    NotFound { head_only: bool },
}

/// An answer without a body of metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    ServiceUnavailable,
    HttpVersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::ServiceUnavailable => 503,
            Status::HttpVersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The state of a request head after the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not complete yet, and nothing wrong so far: read more.
    Incomplete,
    /// Complete and understood.
    Request(Route),
    /// Answer with this status and close.
    Reject(Status),
}

/// Parses the request head at the start of `input` (everything received on the
/// connection). Decides as early as it can: a malformed request line is rejected as soon
/// as its line ends, a head longer than [`MAX_HEAD`] as soon as that many bytes arrived.
pub fn parse(input: &[u8]) -> Parsed {
    let head_end = find(input, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(input, b"\n\n").map(|i| i + 2));
    let head = match head_end {
        Some(end) if end <= MAX_HEAD => &input[..end],
        Some(_) => return Parsed::Reject(Status::RequestHeaderFieldsTooLarge),
        None if input.len() > MAX_HEAD => {
            return Parsed::Reject(Status::RequestHeaderFieldsTooLarge)
        }
        None => input,
    };
    // Only complete lines are judged; a line still arriving may yet become valid.
    let Some(last_newline) = head.iter().rposition(|&b| b == b'\n') else {
        return match head.iter().all(|&b| is_request_line_byte(b)) {
            true => Parsed::Incomplete,
            false => Parsed::Reject(Status::BadRequest),
        };
    };
    let mut lines = head[..last_newline].split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    // A well-formed request for a method not served is answered once its head is in, so
    // that the client is not reset while still sending it.
    let route = parse_request_line(trim_cr(request_line));
    if let Err(status) = route {
        if status != Status::MethodNotAllowed {
            return Parsed::Reject(status);
        }
    }
    for line in lines.map(trim_cr).filter(|l| !l.is_empty()) {
        if !is_header_line(line) {
            return Parsed::Reject(Status::BadRequest);
        }
    }
    match (head_end, route) {
        (None, _) => Parsed::Incomplete,
        (Some(_), Ok(route)) => Parsed::Request(route),
        (Some(_), Err(status)) => Parsed::Reject(status),
    }
}

/// `METHOD SP TARGET SP HTTP/1.x`.
fn parse_request_line(line: &[u8]) -> Result<Route, Status> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(Status::BadRequest);
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(Status::BadRequest);
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.starts_with(b"HTTP/") => return Err(Status::HttpVersionNotSupported),
        _ => return Err(Status::BadRequest),
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Ok(match path {
        b"/metrics" => Route::Metrics { head_only },
        _ => Route::NotFound { head_only },
    })
}

/// `NAME: value` with a token name.
fn is_header_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => {
            line[..colon].iter().all(|&b| is_token_byte(b))
                && line[colon + 1..]
                    .iter()
                    .all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f)
        }
        _ => false,
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What may appear in a request line (before its end is seen).
fn is_request_line_byte(b: u8) -> bool {
    b.is_ascii_graphic() || b == b' ' || b == b'\r'
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A complete response: status line, `Content-Type`, `Content-Length`, `Connection:
/// close`, and the body unless `head_only`.
pub fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + if head_only { 0 } else { body.len() });
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// An error response with a one-line plain-text body that says what to do.
pub fn error_response(status: Status, head_only: bool) -> Vec<u8> {
    let (allow, hint) = match status {
        Status::NotFound => ("", "not found: the metrics are at /metrics"),
        Status::MethodNotAllowed => ("Allow: GET, HEAD\r\n", "only GET and HEAD are served"),
        Status::BadRequest => ("", "malformed HTTP request"),
        Status::RequestHeaderFieldsTooLarge => ("", "request head too large (at most 8 KiB)"),
        Status::InternalServerError => ("", "the metrics could not be encoded; see xblade's log"),
        Status::ServiceUnavailable => ("", "too many connections; retry later"),
        Status::HttpVersionNotSupported => ("", "only HTTP/1.0 and HTTP/1.1 are served"),
    };
    response(
        status.code(),
        status.reason(),
        "text/plain; charset=utf-8",
        allow,
        format!("{} {}: {hint}\n", status.code(), status.reason()).as_bytes(),
        head_only,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9650\r\nUser-Agent: Prometheus/2.53.0\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";

    #[test]
    fn a_prometheus_scrape() {
        assert_eq!(
            parse(SCRAPE),
            Parsed::Request(Route::Metrics { head_only: false })
        );
        // Every proper prefix is incomplete, never an error.
        for end in 0..SCRAPE.len() {
            assert_eq!(parse(&SCRAPE[..end]), Parsed::Incomplete, "prefix {end}");
        }
    }

    #[test]
    fn routes_and_methods() {
        let cases: &[(&[u8], Parsed)] = &[
            (
                b"GET /metrics HTTP/1.0\r\n\r\n",
                Parsed::Request(Route::Metrics { head_only: false }),
            ),
            (
                b"GET /metrics?x=1 HTTP/1.1\n\n",
                Parsed::Request(Route::Metrics { head_only: false }),
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                Parsed::Request(Route::Metrics { head_only: true }),
            ),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                Parsed::Request(Route::NotFound { head_only: false }),
            ),
            (
                b"GET /metrics/ HTTP/1.1\r\n\r\n",
                Parsed::Request(Route::NotFound { head_only: false }),
            ),
            (
                b"HEAD /x HTTP/1.1\r\n\r\n",
                Parsed::Request(Route::NotFound { head_only: true }),
            ),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                Parsed::Reject(Status::MethodNotAllowed),
            ),
            (
                b"DELETE / HTTP/1.1\r\n\r\n",
                Parsed::Reject(Status::MethodNotAllowed),
            ),
            (
                b"GET /metrics HTTP/2.0\r\n\r\n",
                Parsed::Reject(Status::HttpVersionNotSupported),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse(input),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn malformed_requests() {
        for input in [
            &b"garbage\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET /met\x01rics HTTP/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics FTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                parse(input),
                Parsed::Reject(Status::BadRequest),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn garbage_is_rejected_before_the_head_ends() {
        // Binary junk, no line end yet: no need to wait for more.
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00"),
            Parsed::Reject(Status::BadRequest)
        );
        // A malformed request line is rejected at its end, headers or not.
        assert_eq!(parse(b"nonsense\r\n"), Parsed::Reject(Status::BadRequest));
        // A method not served waits for the end of the head.
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Incomplete
        );
        // A good request line with a bad header line is rejected at once too.
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nnope\r\n"),
            Parsed::Reject(Status::BadRequest)
        );
    }

    #[test]
    fn oversized_heads() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(
            parse(&long),
            Parsed::Reject(Status::RequestHeaderFieldsTooLarge)
        );
        let mut line = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        line.resize(MAX_HEAD, b'a');
        line.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse(&line),
            Parsed::Reject(Status::RequestHeaderFieldsTooLarge)
        );
        // Exactly MAX_HEAD bytes is fine.
        let mut fits = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        fits.resize(MAX_HEAD - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(fits.len(), MAX_HEAD);
        assert_eq!(
            parse(&fits),
            Parsed::Request(Route::Metrics { head_only: false })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(input in proptest::collection::vec(any::<u8>(), 0..2048))| {
            let _ = parse(&input);
        });
    }

    #[test]
    fn responses() {
        assert_eq!(
            response(200, "OK", "text/plain", "", b"abc", false),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        assert_eq!(
            response(200, "OK", "text/plain", "", b"abc", true),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        let text = String::from_utf8(error_response(Status::MethodNotAllowed, false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n405 Method Not Allowed: only GET and HEAD are served\n"));
    }
}
