//! A small, strict HTTP/1.1 request-head parser and response writer (std only). Enough
//! for the demo: request line, headers, `Content-Length` bodies, keep-alive. Anything
//! else gets a precise 4xx/5xx status instead of a guess.

use hotswap_host::admin::reason_phrase;
use std::io::{self, Write};

/// The most bytes of request line plus headers accepted (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header lines accepted (431 beyond).
pub const MAX_HEADERS: usize = 100;
/// The largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 1024 * 1024;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent (`/path?query`).
    pub target: String,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// The body length announced by `Content-Length` (0 without one).
    pub content_length: usize,
}

/// Why a request head was refused: the status to answer with and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code.
    pub status: u16,
    /// A one-line explanation for the response body.
    pub why: &'static str,
}

const fn refuse(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

/// RFC 9110 `tchar`: what a method or header name may contain.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The position just past the blank line ending the head in `buf`, if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a request head (everything up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    if head.len() > MAX_HEAD {
        return Err(refuse(431, "request header fields too large"));
    }
    let text = std::str::from_utf8(head).map_err(|_| refuse(400, "request head is not UTF-8"))?;
    // A server should ignore empty lines before the request line (RFC 9112 2.2).
    let text = text.trim_start_matches("\r\n");
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(refuse(400, "malformed method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(400, "malformed request target"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(refuse(505, "only HTTP/1.0 and 1.1")),
        _ => return Err(refuse(400, "malformed HTTP version")),
    };
    let mut keep_alive = http11;
    let mut content_length: Option<usize> = None;
    let mut host = false;
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            continue; // the final blank line(s)
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(refuse(431, "too many header fields"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(refuse(400, "obsolete header line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| refuse(400, "header line without ':'"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(refuse(400, "malformed header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(refuse(400, "control character in a header value"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "malformed Content-Length"));
            }
            let n: usize = value
                .parse()
                .map_err(|_| refuse(413, "request body too large"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(refuse(400, "conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(refuse(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    if http11 && !host {
        return Err(refuse(400, "HTTP/1.1 request without Host"));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(refuse(413, "request body too large"));
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        keep_alive,
        content_length,
    })
}

/// One response to write.
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'a str,
    /// The body (not sent for HEAD, but counted in `Content-Length`).
    pub body: &'a [u8],
    /// Extra headers, each `Name: value`.
    pub headers: &'a [(&'a str, String)],
    /// Keep the connection open afterwards.
    pub keep_alive: bool,
    /// The request was HEAD.
    pub head_only: bool,
}

/// Writes `r` in one buffer (one write for small responses).
pub fn write_response(out: &mut impl Write, r: &Response<'_>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(256 + r.body.len());
    write!(
        buf,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        r.status,
        reason_phrase(r.status),
        r.content_type,
        r.body.len(),
        if r.keep_alive { "keep-alive" } else { "close" }
    )?;
    for (name, value) in r.headers {
        write!(buf, "{name}: {value}\r\n")?;
    }
    buf.extend_from_slice(b"\r\n");
    if !r.head_only {
        buf.extend_from_slice(r.body);
    }
    out.write_all(&buf)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_requests() {
        let r = parse_head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a?b=1"));
        assert!(r.keep_alive);
        let r = parse_head(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.content_length, 5);
        assert!(!r.keep_alive);
        let r = parse_head(b"\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.keep_alive);
        assert!(!parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
    }

    #[test]
    fn garbage_is_refused_with_the_right_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"\x16\x03\x01\x02\x00\x01\r\n\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
                413,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
        ];
        for (head, status) in cases {
            let got = parse_head(head).unwrap_err().status;
            assert_eq!(got, *status, "{:?}", String::from_utf8_lossy(head));
        }
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            big.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&big).unwrap_err().status, 431);
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            &Response {
                status: 200,
                content_type: "text/plain",
                body: b"hi",
                headers: &[("X-Pid", "7".into())],
                keep_alive: true,
                head_only: false,
            },
        )
        .unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-Pid: 7\r\n\r\nhi"
        );
    }
}
