//! `hotswap-http-demo`: a small HTTP/1.1 service whose request handlers live in a plugin
//! (`demo/http/handlers`), made to run under `hotswap serve`.
//!
//! - Takes its listening sockets from the supervisor (`hotswap_listen`), or binds
//!   `--listen ADDR` (default 127.0.0.1:8080) when started on its own.
//! - Loads the plugins in `--plugins DIR` and reports `READY=1` once it can serve.
//! - Routes every request to `handlers.handle(method, target, body)`; each response
//!   carries `X-Pid` (this process) and `X-Generation` (the plugin generation).
//! - SIGHUP: reloads the plugins in-process (`PluginManager::reload`); no request fails.
//! - SIGTERM, SIGINT, SIGQUIT: drains. Stops accepting (the supervisor's new process
//!   accepts from the same socket), finishes requests in flight, answers the next
//!   request of each keep-alive connection with `Connection: close`, closes connections
//!   that stay idle, then exits 0.
//!
//! ```sh
//! hotswap build demo/http/handlers /tmp/http-plugins
//! hotswap serve --listen tcp://127.0.0.1:8080 -- hotswap-http-demo --plugins /tmp/http-plugins
//! ```

mod parse;

use hotswap_host::{PluginManager, Value};
use hotswap_listen::{self as listen, Listener};
use parse::{Refusal, Request, Response};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Reads and polls wake this often to look at the drain flag.
const SLICE: Duration = Duration::from_millis(100);
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// While draining, an idle keep-alive connection gets this long to send one more
/// request (answered with `Connection: close`) before it is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);
/// A request whose head or body takes longer than this gets 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the socket's queue.
const MAX_CONNECTIONS: usize = 512;

/// State shared by every thread.
struct Shared {
    manager: PluginManager,
    draining: AtomicBool,
    /// When the drain began.
    drain_started: OnceLock<Instant>,
    connections: Mutex<usize>,
    all_closed: Condvar,
    served: AtomicU64,
    pid: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("hotswap-http-demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    plugins: PathBuf,
    listen: String,
}

fn parse_args() -> Result<Args, String> {
    let mut plugins = std::env::var_os("HOTSWAP_HTTP_PLUGINS").map(PathBuf::from);
    let mut listen = "127.0.0.1:8080".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plugins" => plugins = args.next().map(PathBuf::from),
            "--listen" => listen = args.next().ok_or("--listen needs HOST:PORT")?,
            "-h" | "--help" => {
                println!(
                    "usage: hotswap-http-demo --plugins DIR [--listen HOST:PORT]\n\
                     (the listener comes from LISTEN_FDS under hotswap serve)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        plugins: plugins.ok_or("--plugins DIR (or HOTSWAP_HTTP_PLUGINS) is required")?,
        listen,
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut listeners: Vec<Listener> = listen::take()
        .map_err(|e| format!("taking the inherited sockets: {e}"))?
        .into_iter()
        .map(|i| i.listener)
        .collect();
    if listeners.is_empty() {
        let l = TcpListener::bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        listeners.push(Listener::Tcp(l));
    }
    let manager = PluginManager::new(&args.plugins).map_err(|e| e.to_string())?;
    let report = manager
        .load_plugins(&Value::Null)
        .map_err(|e| format!("loading plugins from {}: {e}", args.plugins.display()))?;
    tracing::info!("plugins loaded:\n{report}");
    let shared = Arc::new(Shared {
        manager,
        draining: AtomicBool::new(false),
        drain_started: OnceLock::new(),
        connections: Mutex::new(0),
        all_closed: Condvar::new(),
        served: AtomicU64::new(0),
        pid: std::process::id().to_string(),
    });
    start_signal_thread(&shared)?;
    let mut acceptors = Vec::new();
    for listener in listeners {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        tracing::info!(pid = %shared.pid, "serving http on {}", listener.describe());
        let shared = shared.clone();
        acceptors.push(
            std::thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(&listener, &shared))
                .map_err(|e| format!("cannot start the accept thread: {e}"))?,
        );
    }
    match listen::notify_ready() {
        Ok(true) => tracing::info!("reported READY=1 to the supervisor"),
        Ok(false) => {}
        Err(e) => tracing::warn!("{e}"),
    }
    for a in acceptors {
        let _ = a.join();
    }
    // Accepting has stopped: wait for the connections in flight.
    let started = shared
        .drain_started
        .get()
        .copied()
        .unwrap_or_else(Instant::now);
    let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
    while *open > 0 {
        open = shared
            .all_closed
            .wait(open)
            .unwrap_or_else(|e| e.into_inner());
    }
    tracing::info!(
        served = shared.served.load(Ordering::Relaxed),
        "drained in {} ms; exiting",
        started.elapsed().as_millis()
    );
    Ok(())
}

fn start_signal_thread(shared: &Arc<Shared>) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT, SIGQUIT])
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    match shared.manager.reload(&Value::Null) {
                        Ok(report) => tracing::info!("SIGHUP: plugins reloaded:\n{report}"),
                        Err(e) => tracing::error!("SIGHUP: reload failed, still serving: {e}"),
                    }
                } else if !shared.draining.load(Ordering::SeqCst) {
                    let _ = shared.drain_started.set(Instant::now());
                    shared.draining.store(true, Ordering::SeqCst);
                    tracing::info!(pid = %shared.pid, "signal {sig}: draining (no new connections)");
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Accepts until draining. The listener is non-blocking and polled, so the loop sees the
/// drain flag within [`SLICE`] and never takes a connection it will not serve.
fn accept_loop(listener: &Listener, shared: &Arc<Shared>) {
    let slice = Timespec {
        tv_sec: 0,
        tv_nsec: SLICE.as_nanos() as _,
    };
    while !shared.draining.load(Ordering::SeqCst) {
        if *shared.connections.lock().unwrap_or_else(|e| e.into_inner()) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        match poll(&mut fds, Some(&slice)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!("poll on the listener failed: {e}");
                return;
            }
        }
        if shared.draining.load(Ordering::SeqCst) {
            return;
        }
        let accepted = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
        };
        match accepted {
            Ok(conn) => {
                *shared.connections.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let shared2 = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || {
                        serve_connection(conn, &shared2);
                        connection_closed(&shared2);
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a connection thread: {e}");
                    connection_closed(shared);
                }
            }
            // Another process (the old or new child) took it first.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn connection_closed(shared: &Shared) {
    let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
    *open -= 1;
    if *open == 0 {
        shared.all_closed.notify_all();
    }
}

/// An accepted connection.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What waiting for bytes gave.
enum Wait {
    /// More bytes are in the buffer.
    Data,
    /// The peer closed, or the connection should be closed quietly.
    Close,
    /// The peer is too slow: answer 408.
    TimedOut,
}

/// Reads more bytes into `buf`. `idle` says no request has started (keep-alive wait).
fn fill(conn: &mut Conn, buf: &mut Vec<u8>, idle: bool, shared: &Shared) -> Wait {
    let started = Instant::now();
    let mut chunk = [0u8; 8192];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return Wait::Close,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Wait::Data;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let waited = started.elapsed();
                if idle {
                    // While draining, the grace counts from the later of the drain and
                    // the start of this wait, so every idle connection gets all of it.
                    let closing = match shared.drain_started.get() {
                        Some(&drain) if shared.draining.load(Ordering::SeqCst) => {
                            started.max(drain).elapsed() >= DRAIN_IDLE_GRACE
                        }
                        _ => waited >= IDLE_TIMEOUT,
                    };
                    if closing {
                        return Wait::Close;
                    }
                } else if waited >= REQUEST_TIMEOUT {
                    return Wait::TimedOut;
                }
            }
            Err(_) => return Wait::Close,
        }
    }
}

fn refuse(conn: &mut Conn, shared: &Shared, r: Refusal) {
    let body = format!("{}\n", r.why);
    let _ = parse::write_response(
        conn,
        &Response {
            status: r.status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes(),
            headers: &[("X-Pid", shared.pid.clone())],
            keep_alive: false,
            head_only: false,
        },
    );
    conn.shutdown_write();
}

/// Serves requests on one connection until it closes, fails, or the drain ends it.
fn serve_connection(mut conn: Conn, shared: &Shared) {
    if conn.set_read_timeout(SLICE).is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // The head.
        let head_len = loop {
            if let Some(end) = parse::head_end(&buf) {
                break end;
            }
            if buf.len() > parse::MAX_HEAD {
                return refuse(
                    &mut conn,
                    shared,
                    parse::Refusal {
                        status: 431,
                        why: "request header fields too large",
                    },
                );
            }
            let idle = buf.is_empty();
            match fill(&mut conn, &mut buf, idle, shared) {
                Wait::Data => {}
                Wait::Close => return,
                Wait::TimedOut => {
                    return refuse(
                        &mut conn,
                        shared,
                        Refusal {
                            status: 408,
                            why: "request head not received in time",
                        },
                    )
                }
            }
        };
        let request = match parse::parse_head(&buf[..head_len]) {
            Ok(r) => r,
            Err(r) => return refuse(&mut conn, shared, r),
        };
        // The body.
        while buf.len() < head_len + request.content_length {
            match fill(&mut conn, &mut buf, false, shared) {
                Wait::Data => {}
                Wait::Close => return,
                Wait::TimedOut => {
                    return refuse(
                        &mut conn,
                        shared,
                        Refusal {
                            status: 408,
                            why: "request body not received in time",
                        },
                    )
                }
            }
        }
        let body: Vec<u8> = buf[head_len..head_len + request.content_length].to_vec();
        buf.drain(..head_len + request.content_length);
        let keep_alive = request.keep_alive && !shared.draining.load(Ordering::SeqCst);
        if respond(&mut conn, shared, &request, &body, keep_alive).is_err() || !keep_alive {
            conn.shutdown_write();
            return;
        }
    }
}

/// Calls the plugin and writes its answer.
fn respond(
    conn: &mut Conn,
    shared: &Shared,
    request: &Request,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let args = [
        Value::from(request.method.as_str()),
        Value::from(request.target.as_str()),
        Value::from(body),
    ];
    let generation = shared.manager.generation_id();
    let (status, content_type, text) = match shared.manager.invoke_func("handlers", "handle", &args)
    {
        Ok(answer) => {
            let status = answer
                .get("status")
                .and_then(Value::as_int)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..600).contains(s))
                .unwrap_or(500);
            let content_type = answer
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("text/plain; charset=utf-8")
                .to_owned();
            let text = answer
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (status, content_type, text)
        }
        Err(e) => (
            500,
            "text/plain; charset=utf-8".to_owned(),
            format!("plugin call failed: {e}\n"),
        ),
    };
    shared.served.fetch_add(1, Ordering::Relaxed);
    parse::write_response(
        conn,
        &Response {
            status,
            content_type: &content_type,
            body: text.as_bytes(),
            headers: &[
                ("X-Pid", shared.pid.clone()),
                ("X-Generation", generation.to_string()),
            ],
            keep_alive,
            head_only: request.method == "HEAD",
        },
    )
}
