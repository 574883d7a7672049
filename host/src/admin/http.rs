//! The little HTTP/1.1 the admin endpoint speaks: one request per connection, read under
//! a deadline and size limits, every malformed input turned into a 4xx answer.

use std::io::{self, Read, Write};
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

/// A parsed request: method, path (query string dropped), headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (case-insensitive), the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response about to be written.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Send the headers only (an answer to `HEAD`).
    pub head_only: bool,
}

pub(crate) const JSON: &str = "application/json";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
        match serde_json::to_vec_pretty(body) {
            Ok(mut body) => {
                body.push(b'\n');
                Response::bytes(status, JSON, body)
            }
            Err(e) => Response::error(500, &format!("cannot serialize the response: {e}")),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Response {
        let mut body = serde_json::json!({ "error": message })
            .to_string()
            .into_bytes();
        body.push(b'\n');
        Response::bytes(status, JSON, body)
    }

    /// Any body.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            extra_headers: Vec::new(),
            body,
            head_only: false,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// Writes the response and `Connection: close`.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra_headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if !self.head_only {
            out.write_all(&self.body)?;
        }
        out.flush()
    }
}

/// The reason phrase of an HTTP status code (`404` → `"Not Found"`), for a status line.
///
/// Knows the codes the admin endpoint (and the HTTP demo) sends; any other code gets
/// `"Unknown"` (clients go by the number, not the phrase).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// How big and how slow a request may be (the tests' blocking reader).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    pub max_head: usize,
    pub max_body: usize,
    pub timeout: Duration,
}

/// Why a request could not be read; each maps to the status code the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    /// Syntax error in the request line or a header.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request line and headers exceed the limit.
    #[error("request headers larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The body exceeds the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A body without `Content-Length` (chunked encoding is not supported).
    #[error("a request body needs Content-Length (chunked encoding is not supported)")]
    LengthRequired,
    /// A well-formed version other than HTTP/1.x.
    #[error("only HTTP/1.x is supported")]
    Version,
    /// The client was too slow.
    #[error("request not received within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection before sending a whole request; nobody to answer.
    #[error("connection closed before a complete request")]
    #[cfg(test)]
    Closed,
    /// Reading the socket failed.
    #[error("reading the request failed: {0}")]
    #[cfg(test)]
    Io(String),
}

impl RequestError {
    /// The status code to answer with; `None` when there is nobody left to answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Malformed(_) => Some(400),
            RequestError::HeadTooLarge(_) => Some(431),
            RequestError::BodyTooLarge(_) => Some(413),
            RequestError::LengthRequired => Some(411),
            RequestError::Version => Some(505),
            RequestError::Timeout(_) => Some(408),
            #[cfg(test)]
            RequestError::Closed | RequestError::Io(_) => None,
        }
    }
}

/// A connection the admin endpoint reads (a socket).
pub(crate) trait TimedRead: Read {
    /// Closes the sending half (the client sees the end of the answer).
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

impl TimedRead for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl TimedRead for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// Reads one request from `conn` (blocking; the server reads without blocking, see
/// `server.rs`, with the same `parse_head` and `body_length`).
#[cfg(test)]
pub(crate) fn read_request(
    conn: &mut impl TimedRead,
    limits: ReadLimits,
) -> Result<Request, RequestError> {
    let deadline = crate::deadline::after(limits.timeout);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > limits.max_head {
            return Err(RequestError::HeadTooLarge(limits.max_head));
        }
        let n = timed_read(conn, &mut chunk, deadline, limits.timeout)?;
        if n == 0 {
            return Err(if buf.iter().all(u8::is_ascii_whitespace) {
                RequestError::Closed
            } else {
                RequestError::Malformed("connection closed in the middle of the headers")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > limits.max_head {
        return Err(RequestError::HeadTooLarge(limits.max_head));
    }
    let mut request = parse_head(&buf[..head_end])?;
    let length = body_length(&request, limits.max_body)?;
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        let n = timed_read(conn, &mut chunk, deadline, limits.timeout)?;
        if n == 0 {
            return Err(RequestError::Malformed(
                "connection closed before the whole body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

#[cfg(test)]
fn timed_read(
    conn: &mut impl TimedRead,
    chunk: &mut [u8],
    deadline: Instant,
    total: Duration,
) -> Result<usize, RequestError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RequestError::Timeout(total));
        }
        match conn.read(chunk) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(RequestError::Timeout(total))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(RequestError::Closed)
            }
            Err(e) => return Err(RequestError::Io(e.to_string())),
        }
    }
}

#[cfg(test)]
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses the request line and headers (without the final empty line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let head = std::str::from_utf8(head).map_err(|_| RequestError::Malformed("not UTF-8"))?;
    // Tolerate leading empty lines, as RFC 9112 section 2.2 allows.
    let head = head.trim_start_matches("\r\n");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "request line is not `METHOD TARGET HTTP/1.1`",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestError::Malformed("invalid method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RequestError::Malformed(
            "request target must be an absolute path",
        ));
    }
    // `HTTP/<digit>.<digit>`; any 1.x is served as 1.1 (RFC 9110 section 2.5), another
    // major version gets 505.
    match version.as_bytes() {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(RequestError::Version);
            }
        }
        _ => return Err(RequestError::Malformed("invalid HTTP version")),
    }
    let path = target.split(['?', '#']).next().unwrap_or(target).to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(RequestError::Malformed("header line without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(RequestError::Malformed("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(RequestError::Malformed(
                "control character in a header value",
            ));
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path,
        headers,
        body: Vec::new(),
    })
}

/// The body length the headers announce, checked against `max`.
pub(crate) fn body_length(request: &Request, max: usize) -> Result<usize, RequestError> {
    if request.header("transfer-encoding").is_some() {
        return Err(RequestError::LengthRequired);
    }
    let mut lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v);
    let Some(first) = lengths.next() else {
        return Ok(0);
    };
    if lengths.any(|v| v != first) {
        return Err(RequestError::Malformed(
            "conflicting Content-Length headers",
        ));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::Malformed("Content-Length is not a number"));
    }
    match first.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(RequestError::BodyTooLarge(max)),
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes fed to the reader in pieces, then EOF or a timeout.
    struct Script {
        pieces: Vec<Vec<u8>>,
        then_timeout: bool,
    }

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pieces.is_empty() {
                return if self.then_timeout {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(0)
                };
            }
            let piece = &mut self.pieces[0];
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.pieces.remove(0);
            }
            Ok(n)
        }
    }

    impl TimedRead for Script {}

    const LIMITS: ReadLimits = ReadLimits {
        max_head: 1024,
        max_body: 64,
        timeout: Duration::from_secs(5),
    };

    fn read(pieces: &[&[u8]], then_timeout: bool) -> Result<Request, RequestError> {
        let mut s = Script {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            then_timeout,
        };
        read_request(&mut s, LIMITS)
    }

    #[test]
    fn a_request_in_pieces_is_assembled() {
        let r = read(
            &[
                b"POST /reload?x=1 HTTP/1.1\r\nHost: a\r\nContent-Le",
                b"ngth: 5\r\n\r\nhe",
                b"llo and more",
            ],
            false,
        )
        .expect("valid request");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/reload");
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn garbage_maps_to_4xx() {
        let cases: &[(&[u8], u16)] = &[
            (b"\x00\x01\x02\xff\r\n\r\n", 400),
            (b"GET\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
            (b"GET relative HTTP/1.1\r\n\r\n", 400),
            (b"G(T / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/1\r\n\r\n", 400),
            (b"GET / HTTP/1.1x\r\n\r\n", 400),
            (b"GET / FTP/1.0\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                413,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"GET / HTTP/1.1\r\nHost: a", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 400),
        ];
        for (input, status) in cases {
            let err = read(&[input], false).expect_err("garbage accepted");
            assert_eq!(
                err.status(),
                Some(*status),
                "{:?} -> {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized_slow_and_vanished_clients() {
        let big = vec![b'a'; 5000];
        let err = read(&[b"GET / HTTP/1.1\r\nX: ", &big], false).expect_err("too big");
        assert_eq!(err.status(), Some(431));
        let err = read(&[b"GET / HTTP/1.1\r\n"], true).expect_err("slow");
        assert_eq!(err.status(), Some(408));
        let err = read(&[], false).expect_err("empty");
        assert_eq!(err.status(), None);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let mut out = Vec::new();
        Response::error(404, "no such route")
            .with_header("Allow", "GET")
            .write_to(&mut out)
            .expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.ends_with("{\"error\":\"no such route\"}\n"));
    }
}
