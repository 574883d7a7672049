//! Accept loops and connection threads: one thread per listener waits for connections,
//! each accepted connection gets its own short-lived thread (up to a limit; beyond it the
//! client gets 503 at once), and every request is read under a deadline.

use super::http::{self, ReadLimits, Request, Response, TimedRead};
use super::{routes, Limits};
use crate::trigger::Trigger;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often an idle accept loop looks at the stop flag.
const STOP_POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 200_000_000,
};

/// What every connection of one listener shares.
pub(crate) struct Shared {
    pub trigger: Trigger,
    pub limits: Limits,
    /// Required bearer token (TCP); `None` for the unix socket, guarded by its mode.
    pub token: Option<String>,
    pub active: Arc<AtomicUsize>,
    pub stop: Arc<AtomicBool>,
}

/// A listener the accept loop can poll and accept on.
pub(crate) trait Listener: AsFd + Send + 'static {
    /// The connection type.
    type Conn: TimedRead + Write + Send + 'static;
    /// Accepts one connection (the listener is non-blocking).
    fn accept_conn(&self) -> std::io::Result<Self::Conn>;
    /// Sets a write timeout on a connection.
    fn prepare(conn: &Self::Conn, write_timeout: Duration) -> std::io::Result<()>;
}

impl Listener for std::os::unix::net::UnixListener {
    type Conn = std::os::unix::net::UnixStream;
    fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().map(|(c, _)| c)
    }
    fn prepare(conn: &Self::Conn, write_timeout: Duration) -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_write_timeout(Some(write_timeout))
    }
}

impl Listener for std::net::TcpListener {
    type Conn = std::net::TcpStream;
    fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().map(|(c, _)| c)
    }
    fn prepare(conn: &Self::Conn, write_timeout: Duration) -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_nodelay(true)?;
        conn.set_write_timeout(Some(write_timeout))
    }
}

/// Runs until `shared.stop` is set: accepts connections and hands each to a thread.
pub(crate) fn accept_loop<L: Listener>(listener: L, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        match poll(&mut fds, Some(&STOP_POLL)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "admin endpoint: poll failed; retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        // Drain everything queued; WouldBlock ends the round.
        loop {
            let conn = match listener.accept_conn() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin endpoint: accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            };
            dispatch::<L>(conn, &shared);
        }
    }
}

/// Hands `conn` to a new thread, or answers 503 when too many are running.
fn dispatch<L: Listener>(mut conn: L::Conn, shared: &Arc<Shared>) {
    if L::prepare(&conn, shared.limits.write_timeout).is_err() {
        return;
    }
    let active = shared.active.fetch_add(1, Ordering::AcqRel);
    let guard = ActiveGuard(shared.active.clone());
    if active >= shared.limits.max_connections {
        drop(guard);
        // A fresh socket's send buffer is empty: this small write does not block.
        let _ = Response::error(503, "too many admin connections; retry shortly")
            .with_header("Retry-After", "1")
            .write_to(&mut conn);
        return;
    }
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("hotswap-admin-conn".into())
        .spawn(move || {
            let _guard = guard;
            serve_one(&mut conn, &shared);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "admin endpoint: cannot start a connection thread");
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one request, answers it, closes.
fn serve_one<C: TimedRead + Write>(conn: &mut C, shared: &Shared) {
    let limits = ReadLimits {
        max_head: shared.limits.max_head_bytes,
        max_body: shared.limits.max_body_bytes,
        timeout: shared.limits.read_timeout,
    };
    let (response, read_whole) = match http::read_request(conn, limits) {
        Ok(request) => (answer(&request, shared), true),
        Err(e) => match e.status() {
            Some(status) => {
                tracing::debug!(error = %e, "admin endpoint: bad request");
                (Response::error(status, &e.to_string()), false)
            }
            None => return,
        },
    };
    if let Err(e) = response.write_to(conn) {
        tracing::debug!(error = %e, "admin endpoint: cannot write the response");
        return;
    }
    if !read_whole {
        http::linger_close(conn, LINGER, 1024 * 1024);
    }
}

/// How long a refused request's connection is drained before closing.
const LINGER: Duration = Duration::from_millis(500);

fn answer(request: &Request, shared: &Shared) -> Response {
    if let Some(token) = &shared.token {
        if !authorized(request, token) {
            return Response::error(401, "missing or wrong bearer token")
                .with_header("WWW-Authenticate", "Bearer realm=\"hotswap\"");
        }
    }
    // A bug in a route must not take the connection thread's caller down; answer 500.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        routes::handle(&shared.trigger, request)
    })) {
        Ok(r) => r,
        Err(_) => Response::error(500, "internal error while answering the request"),
    }
}

/// Whether `Authorization: Bearer <token>` matches, compared in constant time.
fn authorized(request: &Request, token: &str) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        let req = |v: &str| Request {
            method: "GET".into(),
            path: "/status".into(),
            headers: vec![("Authorization".into(), v.into())],
            body: Vec::new(),
        };
        assert!(authorized(&req("Bearer secret"), "secret"));
        assert!(authorized(&req("bearer secret"), "secret"));
        assert!(!authorized(&req("Basic secret"), "secret"));
        assert!(!authorized(&req("Bearer"), "secret"));
        assert!(!authorized(&req("Bearer wrong"), "secret"));
    }
}
