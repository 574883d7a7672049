//! `hotswap-http-demo`: a tokio + axum (hyper) service whose route handlers await async
//! functions of a plugin (`demo/http/handlers`, types in `demo/http/api`), made to run
//! under `hotswap serve`.
//!
//! - Takes its listening sockets from the supervisor (`hotswap_listen`), or binds
//!   `--listen ADDR` (default 127.0.0.1:8080) when started on its own.
//! - Loads the plugins in `--plugins DIR`, makes its handles, and reports `READY=1`
//!   once it can serve.
//! - Routes (`routes.rs`): `GET /`, `GET /version`, `POST|PUT /echo`, `GET
//!   /sleep/<ms>` (the plugin awaits the host's timer), everything else the plugin's
//!   404. Every answer carries `X-Pid`; plugin answers `X-Generation`.
//! - SIGHUP: reloads the plugins in-process (`PluginManager::reload`, on a thread of
//!   its own at a lower CPU priority); no request fails, requests in flight finish on
//!   the version they started on.
//! - SIGTERM, SIGINT, SIGQUIT: drains. Stops accepting at once (the supervisor's new
//!   process accepts from the same socket), answers with `Connection: close` from then
//!   on, gives idle keep-alive connections [`DRAIN_IDLE_GRACE`] to send one more
//!   request, then shuts every connection down gracefully (requests in flight finish),
//!   and exits 0 once the last one closed.
//!
//! ```sh
//! hotswap build demo/http/handlers /tmp/http-plugins
//! hotswap serve --listen tcp://127.0.0.1:8080 -- hotswap-http-demo --plugins /tmp/http-plugins
//! ```

mod routes;

use hotswap_host::{PluginManager, ReloadReport, Value};
use hotswap_listen::{self as listen, Listener};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use routes::{App, Handlers};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch, Semaphore};

/// A keep-alive connection that sends no request head for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// While draining, an idle keep-alive connection gets this long to send one more
/// request (answered with `Connection: close`) before it is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);
/// The largest request head; a longer one gets 431.
const MAX_HEAD: usize = 16 * 1024;
/// Connections served at once; more wait in the socket's queue.
const MAX_CONNECTIONS: usize = 512;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("hotswap-http-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
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

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut listeners: Vec<Listener> = listen::take()
        .map_err(|e| format!("taking the inherited sockets: {e}"))?
        .into_iter()
        .map(|i| i.listener)
        .collect();
    if listeners.is_empty() {
        let l = std::net::TcpListener::bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        listeners.push(Listener::Tcp(l));
    }
    let (manager, reloader) = start_reloader(args.plugins.clone()).await?;
    let handlers = Handlers::new(&manager).map_err(|e| format!("the handlers plugin: {e}"))?;
    let pid = std::process::id();
    let app = Arc::new(App {
        manager,
        handlers,
        draining: AtomicBool::new(false),
        served: AtomicU64::new(0),
        pid: pid.into(),
    });
    let router = routes::router(app.clone());
    // `true` once the stop signal came.
    let (drain_tx, drain) = watch::channel(false);
    start_signals(&app, reloader, drain_tx)?;
    // Every connection holds a receiver: `closed()` of the sender says all are gone.
    let (open_tx, open) = watch::channel(());
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut acceptors = Vec::new();
    for listener in listeners {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        tracing::info!(pid, "serving http on {}", listener.describe());
        let conn = Conn {
            router: router.clone(),
            drain: drain.clone(),
            open: open.clone(),
        };
        let accept = match listener {
            Listener::Tcp(l) => {
                let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
                tokio::spawn(accept_tcp(l, conn, limit.clone()))
            }
            Listener::Unix(l) => {
                let l = tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string())?;
                tokio::spawn(accept_unix(l, conn, limit.clone()))
            }
        };
        acceptors.push(accept);
    }
    drop(open);
    match listen::notify_ready() {
        Ok(true) => tracing::info!("reported READY=1 to the supervisor"),
        Ok(false) => {}
        Err(e) => tracing::warn!("{e}"),
    }
    for a in acceptors {
        let _ = a.await;
    }
    // Accepting has stopped (drain): wait for the connections in flight.
    let started = Instant::now();
    open_tx.closed().await;
    tracing::info!(
        served = app.served.load(Ordering::Relaxed),
        "drained in {} ms; exiting",
        started.elapsed().as_millis()
    );
    Ok(())
}

/// The nice value of the reload thread (and of the hook threads a reload starts, which
/// inherit it): 19, the lowest, about a seventieth of a serving thread's CPU share when
/// both want a core (the scheduler's weights 15 and 1024). At 10 (a tenth), the p99
/// latency of requests served during reloads was 2.3 to 2.4 times the steady one on
/// two busy cores (`hotswap-demo http-load`); at 19, 1.1 to 1.5 times.
const RELOAD_NICE: i32 = 19;

/// What the reload thread answers a reload request with.
type Reloaded = Result<ReloadReport, hotswap_host::Error>;

/// A request to the reload thread, answered on its channel.
type ReloadRequest = oneshot::Sender<Reloaded>;

/// Starts the thread that runs every reload: one thread of its own, at a lower CPU
/// priority ([`RELOAD_NICE`]), so on a busy machine the requests served while a reload
/// builds the next generation get the cores first (a reload is background work: no
/// call waits for it). The manager is made, and the first load run, on that thread
/// too, so the manager's reaper thread (which frees and closes replaced versions)
/// inherits the lower priority; the timer plugin code sleeps on is started by the first
/// sleep, on a serving thread, and keeps the normal one.
async fn start_reloader(
    plugins: PathBuf,
) -> Result<(Arc<PluginManager>, std::sync::mpsc::Sender<ReloadRequest>), String> {
    let (tx, rx) = std::sync::mpsc::channel::<ReloadRequest>();
    let (made_tx, made) = oneshot::channel();
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            // On Linux the nice value is per thread: this one (and what it starts) only.
            let me = rustix::thread::gettid();
            if let Err(e) = rustix::process::setpriority_process(Some(me), RELOAD_NICE) {
                tracing::warn!("reload thread keeps the default priority: {e}");
            }
            let manager = match PluginManager::builder(&plugins).call_metrics(true).build() {
                Ok(m) => Arc::new(m),
                Err(e) => return drop(made_tx.send(Err(e.to_string()))),
            };
            match manager.load_plugins(&Value::Null) {
                Ok(report) => tracing::info!("plugins loaded:\n{report}"),
                Err(e) => {
                    let why = format!("loading plugins from {}: {e}", plugins.display());
                    return drop(made_tx.send(Err(why)));
                }
            }
            let _ = made_tx.send(Ok(manager.clone()));
            for done in rx {
                let _ = done.send(manager.reload(&Value::Null));
            }
        })
        .map_err(|e| format!("reload thread: {e}"))?;
    let manager = made
        .await
        .map_err(|_| "the reload thread died while loading".to_owned())??;
    Ok((manager, tx))
}

/// SIGHUP reloads (on the reload thread: a reload runs plugin hooks); SIGTERM,
/// SIGINT, SIGQUIT start the drain.
fn start_signals(
    app: &Arc<App>,
    reloader: std::sync::mpsc::Sender<ReloadRequest>,
    drain: watch::Sender<bool>,
) -> Result<(), String> {
    let install = |kind: SignalKind| signal(kind).map_err(|e| format!("signal handler: {e}"));
    let mut hup = install(SignalKind::hangup())?;
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    let mut quit = install(SignalKind::quit())?;
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = hup.recv() => {
                    let (done, reloaded) = oneshot::channel();
                    let outcome = match reloader.send(done) {
                        Ok(()) => reloaded.await.ok(),
                        Err(_) => None,
                    };
                    match outcome {
                        Some(Ok(report)) => tracing::info!("SIGHUP: plugins reloaded:\n{report}"),
                        Some(Err(e)) => tracing::error!("SIGHUP: reload failed, still serving: {e}"),
                        None => tracing::error!("SIGHUP: the reload thread is gone"),
                    }
                    continue;
                }
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            if !app.draining.swap(true, Ordering::SeqCst) {
                tracing::info!(
                    pid = std::process::id(),
                    "{name}: draining (no new connections)"
                );
                let _ = drain.send(true);
            }
        }
    });
    Ok(())
}

/// What each connection gets.
#[derive(Clone)]
struct Conn {
    router: axum::Router,
    drain: watch::Receiver<bool>,
    open: watch::Receiver<()>,
}

macro_rules! accept_loop {
    ($name:ident, $listener:ty, $nodelay:expr) => {
        /// Accepts until the drain starts; never takes a connection it will not serve
        /// (an accept that loses the race to the drain takes nothing).
        async fn $name(listener: $listener, conn: Conn, limit: Arc<Semaphore>) {
            let mut drain = conn.drain.clone();
            loop {
                let permit = tokio::select! {
                    p = limit.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = drain.wait_for(|d| *d) => return,
                };
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = drain.wait_for(|d| *d) => return,
                };
                match accepted {
                    Ok((stream, _)) => {
                        $nodelay(&stream);
                        let conn = conn.clone();
                        tokio::spawn(async move {
                            serve(stream, conn).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    };
}

accept_loop!(
    accept_tcp,
    tokio::net::TcpListener,
    |s: &tokio::net::TcpStream| {
        let _ = s.set_nodelay(true);
    }
);
accept_loop!(
    accept_unix,
    tokio::net::UnixListener,
    |_: &tokio::net::UnixStream| {}
);

/// Serves one connection with hyper until it closes; once the drain started and its
/// grace passed, shuts it down gracefully (a request in flight finishes, an idle
/// connection closes).
async fn serve<S>(stream: S, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        router,
        mut drain,
        open,
    } = conn;
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut http = std::pin::pin!(http);
    let grace_over = async {
        let _ = drain.wait_for(|d| *d).await;
        tokio::time::sleep(DRAIN_IDLE_GRACE).await;
    };
    tokio::select! {
        done = http.as_mut() => {
            if let Err(e) = done {
                tracing::debug!("connection: {e}");
            }
            drop(open);
            return;
        }
        _ = grace_over => {}
    }
    http.as_mut().graceful_shutdown();
    if let Err(e) = http.await {
        tracing::debug!("connection: {e}");
    }
    drop(open);
}
