//! Accept loops and connection threads.
//!
//! One thread per listener accepts connections and reads every request itself, without
//! blocking, from all its pending connections at once (`poll`): a connection costs a
//! table entry, not a thread, while its request comes in. Only a whole, authorized
//! request gets a thread of its own (up to [`Limits::max_connections`]; beyond, 503).
//! This is what keeps the endpoint from being starved by clients that connect and send
//! nothing or dribble a request line:
//!
//! - the token is checked as soon as the headers are in (a request without it is
//!   answered 401 from the loop and never reaches a thread or has its body read);
//! - the request head must arrive within [`Limits::head_timeout`], the whole request
//!   within [`Limits::read_timeout`] (408);
//! - at most [`Limits::max_pending`] connections wait for their request; one more evicts
//!   the oldest (answered first, then still in its head), so a crowd of idle
//!   connections cannot lock out a client that sends its request at once;
//! - `GET /healthz` is answered from the loop, so it needs no thread slot at all.

use super::http::{self, Request, RequestError, Response, TimedRead};
use super::{routes, Limits};
use crate::trigger::Trigger;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// How long a refused request's connection is drained before closing.
const LINGER: Duration = Duration::from_millis(500);

/// Most bytes drained from a refused request before closing.
const LINGER_BYTES: usize = 1024 * 1024;

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
    type Conn: TimedRead + Write + AsFd + Send + 'static;
    /// Accepts one connection (the listener is non-blocking).
    fn accept_conn(&self) -> std::io::Result<Self::Conn>;
    /// Makes a connection non-blocking (while the loop reads it) or blocking with a
    /// write timeout (on its own thread).
    fn set_blocking(conn: &Self::Conn, write_timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Listener for std::os::unix::net::UnixListener {
    type Conn = std::os::unix::net::UnixStream;
    fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().map(|(c, _)| c)
    }
    fn set_blocking(conn: &Self::Conn, write_timeout: Option<Duration>) -> std::io::Result<()> {
        conn.set_nonblocking(write_timeout.is_none())?;
        conn.set_write_timeout(write_timeout)
    }
}

impl Listener for std::net::TcpListener {
    type Conn = std::net::TcpStream;
    fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().map(|(c, _)| c)
    }
    fn set_blocking(conn: &Self::Conn, write_timeout: Option<Duration>) -> std::io::Result<()> {
        conn.set_nodelay(true)?;
        conn.set_nonblocking(write_timeout.is_none())?;
        conn.set_write_timeout(write_timeout)
    }
}

/// Where a pending connection is.
enum Phase {
    /// Reading the request line and headers, until `head_deadline`.
    Head,
    /// The head is in and authorized; reading `length` bytes of body.
    Body { request: Request, length: usize },
    /// Answered without reading everything: draining what the client still sends, so
    /// that closing does not reset the connection over unread data (the client could
    /// lose the answer), until `until` or [`LINGER_BYTES`].
    Drain { until: Instant, drained: usize },
}

/// A connection the loop is reading.
struct Pending<C> {
    conn: C,
    buf: Vec<u8>,
    head_deadline: Instant,
    deadline: Instant,
    phase: Phase,
}

impl<C> Pending<C> {
    /// When the loop must look at this connection even if it sends nothing.
    fn wake_at(&self) -> Instant {
        match self.phase {
            Phase::Head => self.head_deadline.min(self.deadline),
            Phase::Body { .. } => self.deadline,
            Phase::Drain { until, .. } => until,
        }
    }

    /// Eviction order when the table is full: answered ones first, then those still in
    /// their head; an authorized request sending its body goes last.
    fn eviction_rank(&self) -> u8 {
        match self.phase {
            Phase::Drain { .. } => 0,
            Phase::Head => 1,
            Phase::Body { .. } => 2,
        }
    }
}

/// What one step of reading a connection decided.
enum Step {
    /// Keep it in the table.
    Keep,
    /// Close it.
    Close,
    /// Answer from the loop, then drain and close.
    Answer(Response),
    /// A whole request: answer it (a thread for anything but `/healthz`).
    Complete(Request),
}

/// Runs until `shared.stop` is set: accepts connections, reads their requests, and
/// answers each whole one (see the module docs).
pub(crate) fn accept_loop<L: Listener>(listener: L, shared: Arc<Shared>) {
    // A panic of host code in the loop (the subscriber, given one of its events) closes
    // the connections it held and starts the loop again: the endpoint stays up.
    while !shared.stop.load(Ordering::Acquire) {
        let served = crate::contain::contain("the admin endpoint's loop", || {
            serve_connections(&listener, &shared)
        });
        if served.is_some() {
            return;
        }
    }
}

/// [`accept_loop`]'s body, until `shared.stop` is set.
fn serve_connections<L: Listener>(listener: &L, shared: &Arc<Shared>) {
    let mut pending: Vec<Pending<L::Conn>> = Vec::new();
    let mut ready: Vec<bool> = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let wake = pending
            .iter()
            .map(Pending::wake_at)
            .min()
            .map_or(STOP_POLL, |at| {
                at.saturating_duration_since(now).min(STOP_POLL)
            });
        let timeout = Timespec {
            tv_sec: wake.as_secs() as _,
            tv_nsec: wake.subsec_nanos() as _,
        };
        let listener_ready = {
            let mut fds = Vec::with_capacity(pending.len() + 1);
            fds.push(PollFd::new(listener, PollFlags::IN));
            fds.extend(pending.iter().map(|p| PollFd::new(&p.conn, PollFlags::IN)));
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "admin endpoint: poll failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            ready.clear();
            ready.extend(fds[1..].iter().map(|f| !f.revents().is_empty()));
            !fds[0].revents().is_empty()
        };
        // Connections first, newest last: `ready` indexes the table as it was polled.
        let now = Instant::now();
        let mut i = 0;
        let mut j = 0;
        while i < pending.len() {
            let step = if ready[j] {
                read_some(&mut pending[i], shared)
            } else {
                Step::Keep
            };
            j += 1;
            let step = match step {
                Step::Keep => overdue(&pending[i], &shared.limits, now),
                other => other,
            };
            match step {
                Step::Keep => i += 1,
                Step::Close => drop(pending.remove(i)),
                Step::Answer(response) => {
                    if start_drain(&mut pending[i], &response, now) {
                        i += 1;
                    } else {
                        drop(pending.remove(i));
                    }
                }
                Step::Complete(request) => {
                    let p = pending.remove(i);
                    complete::<L>(p.conn, request, shared);
                }
            }
        }
        if listener_ready {
            accept_all(listener, &mut pending, shared);
        }
    }
}

/// Accepts everything queued on the listener; WouldBlock ends the round.
fn accept_all<L: Listener>(listener: &L, pending: &mut Vec<Pending<L::Conn>>, shared: &Shared) {
    loop {
        let conn = match listener.accept_conn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin endpoint: accept failed");
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
        };
        if L::set_blocking(&conn, None).is_err() {
            continue;
        }
        if pending.len() >= shared.limits.max_pending.max(1) {
            evict(pending);
        }
        let now = Instant::now();
        pending.push(Pending {
            conn,
            buf: Vec::new(),
            head_deadline: crate::deadline::from(now, shared.limits.head_timeout),
            deadline: crate::deadline::from(now, shared.limits.read_timeout),
            phase: Phase::Head,
        });
    }
}

/// Closes the connection that matters least (lowest rank, then oldest).
fn evict<C: Write>(pending: &mut Vec<Pending<C>>) {
    let Some(victim) = (0..pending.len()).min_by_key(|&i| pending[i].eviction_rank()) else {
        return;
    };
    let mut p = pending.remove(victim);
    if matches!(p.phase, Phase::Head) {
        tracing::debug!("admin endpoint: too many pending connections; closing the oldest");
        let _ = Response::error(503, "too many pending admin connections; retry shortly")
            .with_header("Retry-After", "1")
            .write_to(&mut p.conn);
    }
}

/// Reads what the connection has and decides what to do with it.
fn read_some<C: TimedRead + Write>(p: &mut Pending<C>, shared: &Shared) -> Step {
    let mut chunk = [0u8; 4096];
    loop {
        let n = match p.conn.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Step::Keep,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close,
        };
        if let Phase::Drain { drained, .. } = &mut p.phase {
            *drained += n;
            if n == 0 || *drained >= LINGER_BYTES {
                return Step::Close;
            }
            continue;
        }
        if n == 0 {
            return closed_early(p);
        }
        p.buf.extend_from_slice(&chunk[..n]);
        let step = advance(p, shared);
        if !matches!(step, Step::Keep) {
            return step;
        }
    }
}

/// The client closed its half before a whole request.
fn closed_early<C>(p: &Pending<C>) -> Step {
    let why = match p.phase {
        Phase::Head if p.buf.iter().all(u8::is_ascii_whitespace) => return Step::Close,
        Phase::Head => RequestError::Malformed("connection closed in the middle of the headers"),
        _ => RequestError::Malformed("connection closed before the whole body"),
    };
    refuse(&why)
}

/// Moves a connection on after new bytes: parses the head once it is in, checks the
/// token, and sees whether the body is complete.
fn advance<C>(p: &mut Pending<C>, shared: &Shared) -> Step {
    let limits = &shared.limits;
    if let Phase::Head = p.phase {
        let Some(head_end) = p.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if p.buf.len() > limits.max_head_bytes {
                return refuse(&RequestError::HeadTooLarge(limits.max_head_bytes));
            }
            return Step::Keep;
        };
        if head_end > limits.max_head_bytes {
            return refuse(&RequestError::HeadTooLarge(limits.max_head_bytes));
        }
        let request = match http::parse_head(&p.buf[..head_end]) {
            Ok(r) => r,
            Err(e) => return refuse(&e),
        };
        if let Some(token) = &shared.token {
            if !authorized(&request, token) {
                return Step::Answer(
                    Response::error(401, "missing or wrong bearer token")
                        .with_header("WWW-Authenticate", "Bearer realm=\"hotswap\""),
                );
            }
        }
        let length = match http::body_length(&request, limits.max_body_bytes) {
            Ok(n) => n,
            Err(e) => return refuse(&e),
        };
        p.buf.drain(..head_end + 4);
        p.phase = Phase::Body { request, length };
    }
    if let Phase::Body { length, .. } = p.phase {
        if p.buf.len() >= length {
            let Phase::Body {
                mut request,
                length,
            } = std::mem::replace(&mut p.phase, Phase::Head)
            else {
                unreachable!("matched just above");
            };
            p.buf.truncate(length);
            request.body = std::mem::take(&mut p.buf);
            return Step::Complete(request);
        }
    }
    Step::Keep
}

/// 408 for a connection past its deadline; the end of a drain.
fn overdue<C>(p: &Pending<C>, limits: &Limits, now: Instant) -> Step {
    match p.phase {
        Phase::Drain { until, .. } if now >= until => Step::Close,
        Phase::Head if now >= p.head_deadline.min(p.deadline) => {
            if p.buf.iter().all(u8::is_ascii_whitespace) {
                // Connected and never said anything: nobody is waiting for an answer.
                return Step::Close;
            }
            refuse(&RequestError::Timeout(
                limits.head_timeout.min(limits.read_timeout),
            ))
        }
        Phase::Body { .. } if now >= p.deadline => {
            refuse(&RequestError::Timeout(limits.read_timeout))
        }
        _ => Step::Keep,
    }
}

/// The 4xx answer to a request that cannot be read.
fn refuse(e: &RequestError) -> Step {
    tracing::debug!(error = %e, "admin endpoint: bad request");
    match e.status() {
        Some(status) => Step::Answer(Response::error(status, &e.to_string())),
        None => Step::Close,
    }
}

/// Writes `response` (small: a fresh socket's send buffer takes it whole) and starts
/// draining; false when the connection is already gone.
fn start_drain<C: TimedRead + Write>(
    p: &mut Pending<C>,
    response: &Response,
    now: Instant,
) -> bool {
    if response.write_to(&mut p.conn).is_err() || p.conn.shutdown_write().is_err() {
        return false;
    }
    p.buf = Vec::new();
    p.phase = Phase::Drain {
        until: now + LINGER,
        drained: 0,
    };
    true
}

/// Answers a whole request: `/healthz` at once, anything else on a thread of its own,
/// or 503 when [`Limits::max_connections`] are busy.
fn complete<L: Listener>(mut conn: L::Conn, request: Request, shared: &Arc<Shared>) {
    if request.path == "/healthz" {
        let _ = routes::handle(&shared.trigger, &request).write_to(&mut conn);
        return;
    }
    let active = shared.active.fetch_add(1, Ordering::AcqRel);
    let guard = ActiveGuard(shared.active.clone());
    if active >= shared.limits.max_connections {
        drop(guard);
        let _ = Response::error(503, "too many admin requests at once; retry shortly")
            .with_header("Retry-After", "1")
            .write_to(&mut conn);
        return;
    }
    if L::set_blocking(&conn, Some(shared.limits.write_timeout)).is_err() {
        return;
    }
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("hotswap-admin-conn".into())
        .spawn(move || {
            let _guard = guard;
            if let Err(e) = answer(&request, &shared).write_to(&mut conn) {
                tracing::debug!(error = %e, "admin endpoint: cannot write the response");
            }
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

/// Runs the route for an authorized request.
fn answer(request: &Request, shared: &Shared) -> Response {
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
