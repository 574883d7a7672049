//! A client of the admin endpoint, as `hotswap reload` / `status` / `watch` use it:
//! one request per connection, over a unix socket or loopback TCP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Largest response the client accepts.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where a host's admin endpoint is: a unix socket path or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// A unix socket path (`unix:` prefix optional).
    Unix(PathBuf),
    /// `host:port` of a loopback TCP endpoint (from `http://host:port[/]`).
    Tcp(String),
}

impl FromStr for AdminTarget {
    type Err = ClientError;

    /// `http://127.0.0.1:7070` (a trailing `/` allowed, no other path), `unix:/path`, or
    /// any other string as a socket path. `https://` is refused: the endpoint speaks
    /// plain HTTP on loopback only.
    fn from_str(s: &str) -> Result<AdminTarget, ClientError> {
        if let Some(rest) = s.strip_prefix("http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
                return Err(ClientError::BadTarget(format!(
                    "{s:?}: expected http://host:port with no path"
                )));
            }
            if !authority.contains(':') {
                return Err(ClientError::BadTarget(format!(
                    "{s:?}: the port is required (http://127.0.0.1:PORT)"
                )));
            }
            return Ok(AdminTarget::Tcp(authority.to_owned()));
        }
        if s.contains("://") {
            return Err(ClientError::BadTarget(format!(
                "{s:?}: only http:// (loopback) and unix socket paths are supported"
            )));
        }
        let path = s.strip_prefix("unix:").unwrap_or(s);
        if path.is_empty() {
            return Err(ClientError::BadTarget("empty socket path".into()));
        }
        Ok(AdminTarget::Unix(PathBuf::from(path)))
    }
}

impl std::fmt::Display for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminTarget::Unix(p) => write!(f, "{}", p.display()),
            AdminTarget::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// Why a request to the admin endpoint failed (an HTTP error status is not a failure
/// here: it comes back as a [`Response`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The `--admin` value cannot be understood.
    #[error("bad admin address {0}")]
    BadTarget(String),
    /// Connecting failed.
    #[error("cannot connect to the admin endpoint at {target}")]
    Connect {
        /// Where.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Sending the request or reading the answer failed.
    #[error("admin request {method} {path} to {target} failed")]
    Io {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// Where.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The TCP target resolves to an address that is not loopback: the request (and
    /// its bearer token) would cross the network in clear text. Allowed only by
    /// [`Client::allow_remote`].
    #[error("refusing to send an admin request to {addr} ({target}): not a loopback address, and the endpoint speaks plain HTTP, so the bearer token would cross the network in clear text (use an SSH tunnel, or allow it explicitly)")]
    NotLoopback {
        /// Where, as given.
        target: String,
        /// The non-loopback address it resolved to.
        addr: SocketAddr,
    },
    /// The answer is not HTTP.
    #[error("the admin endpoint at {target} sent a malformed response: {why}")]
    BadResponse {
        /// Where.
        target: String,
        /// What is wrong.
        why: String,
    },
}

/// An answer of the admin endpoint.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A client of one admin endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    target: AdminTarget,
    token: Option<String>,
    timeout: Duration,
    allow_remote: bool,
}

impl Client {
    /// A client of `target`; requests time out after 60 s by default.
    pub fn new(target: AdminTarget) -> Client {
        Client {
            target,
            token: None,
            timeout: Duration::from_secs(60),
            allow_remote: false,
        }
    }

    /// Also talk to a TCP target that is not a loopback address. Off by default: the
    /// endpoint speaks plain HTTP, so the request and its bearer token would cross the
    /// network in clear text ([`ClientError::NotLoopback`]).
    pub fn allow_remote(mut self, allow: bool) -> Client {
        self.allow_remote = allow;
        self
    }

    /// Sends `Authorization: Bearer <token>` (required over TCP).
    pub fn token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// How long a whole request may take (connect, send, answer).
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The endpoint this client talks to.
    pub fn target(&self) -> &AdminTarget {
        &self.target
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, None)
    }

    /// `POST path` with an optional JSON body.
    pub fn post(&self, path: &str, json_body: Option<&[u8]>) -> Result<Response, ClientError> {
        self.request("POST", path, json_body)
    }

    /// Sends one request and reads the whole answer.
    ///
    /// Fails when the endpoint cannot be reached, a TCP target is not loopback (unless
    /// [`allow_remote`](Self::allow_remote)), the exchange times out or breaks, or the
    /// answer is not HTTP; an HTTP error status is returned as a [`Response`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: ");
        req.push_str(match &self.target {
            AdminTarget::Unix(_) => "localhost",
            AdminTarget::Tcp(a) => a,
        });
        req.push_str("\r\nUser-Agent: hotswap-cli\r\nConnection: close\r\nAccept: */*\r\n");
        if let Some(token) = &self.token {
            req.push_str("Authorization: Bearer ");
            req.push_str(token);
            req.push_str("\r\n");
        }
        let body = json_body.unwrap_or_default();
        if json_body.is_some() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);

        let deadline = crate::deadline::after(self.timeout);
        let io_err = |source| ClientError::Io {
            method: method.to_owned(),
            path: path.to_owned(),
            target: self.target.to_string(),
            source,
        };
        let raw = match &self.target {
            AdminTarget::Unix(p) => {
                let mut s = UnixStream::connect(p).map_err(|source| ClientError::Connect {
                    target: self.target.to_string(),
                    source,
                })?;
                exchange(&mut s, &bytes, deadline, |s, t| {
                    s.set_read_timeout(Some(t))?;
                    s.set_write_timeout(Some(t))
                })
                .map_err(io_err)?
            }
            AdminTarget::Tcp(a) => {
                let mut s = self.connect_tcp(a)?;
                exchange(&mut s, &bytes, deadline, |s, t| {
                    s.set_read_timeout(Some(t))?;
                    s.set_write_timeout(Some(t))
                })
                .map_err(io_err)?
            }
        };
        parse_response(&raw).map_err(|why| ClientError::BadResponse {
            target: self.target.to_string(),
            why,
        })
    }

    fn connect_tcp(&self, authority: &str) -> Result<TcpStream, ClientError> {
        let connect_err = |source| ClientError::Connect {
            target: self.target.to_string(),
            source,
        };
        let addrs: Vec<SocketAddr> = authority.to_socket_addrs().map_err(connect_err)?.collect();
        // Checked on the resolved addresses, the ones actually connected to: a name
        // cannot pass the check and then lead elsewhere.
        if !self.allow_remote {
            if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ClientError::NotLoopback {
                    target: self.target.to_string(),
                    addr: *addr,
                });
            }
        }
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }
}

/// Writes `request`, then reads until the server closes, all before `deadline`.
fn exchange<S: Read + Write>(
    s: &mut S,
    request: &[u8],
    deadline: Instant,
    set_timeouts: impl Fn(&S, Duration) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        } else {
            Ok(d)
        }
    };
    set_timeouts(s, left()?)?;
    s.write_all(request)?;
    s.flush()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        set_timeouts(s, left()?)?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() > MAX_RESPONSE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response larger than 16 MiB",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The server may reset after answering (it closes without reading our
            // whole request when it refuses early); keep what arrived.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => {
                return Ok(out)
            }
            Err(e) => return Err(e),
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(if raw.is_empty() {
            "the connection closed without an answer".into()
        } else {
            "no end of headers".into()
        });
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x answer: {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = length {
        if body.len() < n {
            return Err(format!(
                "body cut short: {} of {n} bytes arrived",
                body.len()
            ));
        }
        body.truncate(n);
    }
    Ok(Response {
        status,
        content_type,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "http://127.0.0.1:7070/".parse::<AdminTarget>().ok(),
            Some(AdminTarget::Tcp("127.0.0.1:7070".into()))
        );
        assert_eq!(
            "/run/h.sock".parse::<AdminTarget>().ok(),
            Some(AdminTarget::Unix("/run/h.sock".into()))
        );
        assert_eq!(
            "unix:rel.sock".parse::<AdminTarget>().ok(),
            Some(AdminTarget::Unix("rel.sock".into()))
        );
        for bad in ["https://x:1", "http://x", "http://x:1/status", "", "unix:"] {
            assert!(bad.parse::<AdminTarget>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn non_loopback_targets_are_refused_unless_allowed() {
        // Nothing listens on the discard port of a TEST-NET-1 address (RFC 5737); the
        // refusal comes before any connection attempt.
        let remote = Client::new("http://192.0.2.1:9".parse().expect("target"))
            .token(Some("0123456789abcdef".into()));
        match remote.get("/status") {
            Err(ClientError::NotLoopback { addr, .. }) => {
                assert_eq!(addr, "192.0.2.1:9".parse::<SocketAddr>().expect("addr"))
            }
            other => panic!("a remote target was not refused: {other:?}"),
        }
        let allowed = remote.allow_remote(true).timeout(Duration::from_millis(1));
        assert!(matches!(
            allowed.get("/status"),
            Err(ClientError::Connect { .. })
        ));
        // Loopback, by number or by name, is fine (nothing listens: a connect error).
        for local in ["http://127.0.0.1:9", "http://[::1]:9", "http://localhost:9"] {
            let r = Client::new(local.parse().expect("target")).get("/status");
            assert!(
                !matches!(r, Err(ClientError::NotLoopback { .. })),
                "{local}: {r:?}"
            );
        }
    }

    #[test]
    fn responses_parse() {
        let r = parse_response(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}xx")
            .expect("valid");
        assert_eq!(r.status, 409);
        assert_eq!(r.body, b"{}");
        assert!(!r.is_success());
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
    }
}
