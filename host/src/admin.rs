//! The admin endpoint (cargo feature `admin`, on by default): HTTP/1.1 over a unix
//! socket (mode 0600) and, optionally, over loopback TCP with a bearer token.
//!
//! | route | answer |
//! |---|---|
//! | `POST /reload` | the [`ReloadReport`](crate::ReloadReport) as JSON; on failure a non-2xx with `{"error", "kind", "step", "plugin", "version", "file"}` (409 while another reload runs) |
//! | `POST /rollback` | body `{"plugin": <name>, "build_id": <optional>}`: reloads with the plugin at that build, or the one before the running one ([`PluginManager::rollback`](crate::PluginManager::rollback)); answers as `/reload`, 404 `no_such_build` when there is none |
//! | `GET /status` | generation, plugins, every version in memory (current, draining, pinned), reclamation mode, last reload, every build kept in the directory (`builds`) |
//! | `GET /metrics` | Prometheus text (see [`crate::metrics`]) |
//! | `GET /healthz` | `ok` |
//!
//! `POST /reload` may carry `{"data": <json>}`: reload data passed to `on_load` instead
//! of the host's own. Every reload goes through the host's [`Trigger`], the same path as
//! SIGHUP and the file watcher. The endpoint runs on its own threads and only calls the
//! public manager API: it never touches the call path.
//!
//! A small std implementation rather than an HTTP crate: the crates that serve HTTP over
//! a unix socket either need an async runtime (hyper) or give no per-request deadline
//! (tiny_http), and the subset needed here (one request per connection, no chunking) is
//! short enough to check by reading. Limits: request head 8 KiB (431 beyond), body
//! 64 KiB (413), request head within 3 s and the whole request within 10 s (408), 16
//! requests answered at once (503 beyond), 256 connections still sending their request
//! (one more closes the oldest). Malformed requests get 400/405/411/505; TCP requests
//! without the token get 401 as soon as their headers are in.
//!
//! Clients that connect and send nothing, or only part of a request, cannot starve the
//! endpoint: one thread per listener reads every pending request without blocking, and
//! only a whole, authorized request gets a thread; `GET /healthz` is answered at once
//! without one (see `server.rs`).
//!
//! ```no_run
//! use hotswap_host::admin::{Admin, AdminConfig};
//! use hotswap_host::{PluginManager, Trigger, Value};
//! use std::sync::Arc;
//!
//! let manager = Arc::new(PluginManager::new("plugins")?);
//! manager.load_plugins(&Value::Null)?;
//! let admin = Admin::start(
//!     Trigger::new(manager),
//!     AdminConfig::unix("/run/myhost/admin.sock"),
//! )?;
//! println!("admin endpoint on {}", admin.unix_path().unwrap().display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
mod http;
mod routes;
mod server;
mod unix;

pub use http::reason_phrase;

use crate::trigger::Trigger;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Size, time and concurrency limits of the admin endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most whole, authorized requests answered at once (per endpoint), each on a
    /// thread of its own; others get 503. `GET /healthz` does not count.
    pub max_connections: usize,
    /// Most connections still sending their request (per endpoint); they cost no
    /// thread. One more closes the oldest (with 503 if it is still in its head).
    pub max_pending: usize,
    /// Largest request line plus headers, in bytes; larger gets 431.
    pub max_head_bytes: usize,
    /// Largest request body, in bytes; larger gets 413.
    pub max_body_bytes: usize,
    /// Time a client has to send its request line and headers; slower gets 408.
    pub head_timeout: Duration,
    /// Time a client has to send its whole request; slower gets 408.
    pub read_timeout: Duration,
    /// Time a response write may block on a client that does not read.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 16,
            max_pending: 256,
            max_head_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The shortest bearer token [`Admin::start`] accepts, in bytes.
///
/// 16 random hex digits carry 64 bits: against an endpoint that must answer every guess
/// with a whole HTTP exchange, that is out of reach of online guessing, while anything
/// shorter is most likely a word a person chose. Generate a longer one
/// ([`GENERATE_TOKEN`]).
pub const MIN_TOKEN_LEN: usize = 16;

/// How to make a good token, as error messages say it.
pub const GENERATE_TOKEN: &str =
    "generate one with `openssl rand -hex 32` or `head -c32 /dev/urandom | xxd -p -c64`";

/// Where the admin endpoint listens. At least one of `unix` and `tcp`.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Unix socket path (created with mode 0600; a stale socket file is replaced).
    pub unix: Option<PathBuf>,
    /// Loopback TCP address and the bearer token every request must carry.
    pub tcp: Option<(SocketAddr, String)>,
    /// Limits on what clients may send.
    pub limits: Limits,
}

impl AdminConfig {
    /// Listen on the unix socket `path`.
    pub fn unix(path: impl Into<PathBuf>) -> AdminConfig {
        AdminConfig {
            unix: Some(path.into()),
            ..AdminConfig::default()
        }
    }

    /// Also (or only) listen on the loopback address `addr` (port 0: any free port, see
    /// [`Admin::tcp_addr`]); every request must carry `Authorization: Bearer <token>`.
    /// The token must be at least [`MIN_TOKEN_LEN`] bytes of printable ASCII (checked
    /// by [`Admin::start`]).
    pub fn with_tcp(mut self, addr: SocketAddr, token: impl Into<String>) -> AdminConfig {
        self.tcp = Some((addr, token.into()));
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> AdminConfig {
        self.limits = limits;
        self
    }
}

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Neither a unix socket nor a TCP address was configured.
    #[error("the admin endpoint needs a unix socket path or a TCP address")]
    NothingToListenOn,
    /// A unix socket operation failed.
    #[error("admin socket {}: cannot {what}", path.display())]
    Unix {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A live process answers on the socket path.
    #[error("admin socket {}: another process is listening on it (is another host running?)", .0.display())]
    InUse(PathBuf),
    /// Something other than a socket is at the path; it is left alone.
    #[error("admin socket {}: the path exists and is not a socket; not replacing it", .0.display())]
    NotASocket(PathBuf),
    /// The TCP address is not a loopback address.
    #[error("admin TCP address {0} is not loopback: the endpoint speaks plain HTTP, so it only listens on 127.0.0.1 or ::1")]
    NotLoopback(SocketAddr),
    /// The TCP token contains characters a header cannot carry.
    #[error("admin TCP token must be printable ASCII without spaces; {GENERATE_TOKEN}")]
    BadToken,
    /// The TCP token is shorter than [`MIN_TOKEN_LEN`].
    #[error("admin TCP token is {len} bytes long, at least {MIN_TOKEN_LEN} are required; {GENERATE_TOKEN}")]
    TokenTooShort {
        /// The length of the given token, in bytes.
        len: usize,
    },
    /// Binding the TCP address failed.
    #[error("admin TCP address {addr}: cannot {what}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The accept thread could not be started.
    #[error("cannot start the admin endpoint's thread")]
    Thread(#[source] std::io::Error),
}

/// A running admin endpoint. Dropping it (or [`shutdown`](Self::shutdown)) stops
/// accepting, waits for the accept threads (at most a fraction of a second) and removes
/// the socket file if it is still the one it created; requests being answered finish on
/// their own threads.
pub struct Admin {
    unix: Option<unix::BoundSocket>,
    unix_path: Option<PathBuf>,
    tcp_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("unix", &self.unix_path)
            .field("tcp", &self.tcp_addr)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Starts listening as `config` says, answering with `trigger`'s manager.
    ///
    /// Fails if nothing is configured, the socket path is held by a live process or is
    /// not a socket, the TCP address is not loopback or cannot be bound, the token is
    /// unusable, or a thread cannot be started. On failure nothing is left listening.
    pub fn start(trigger: Trigger, config: AdminConfig) -> Result<Admin, AdminError> {
        if config.unix.is_none() && config.tcp.is_none() {
            return Err(AdminError::NothingToListenOn);
        }
        let tcp = match &config.tcp {
            Some((addr, token)) => {
                if !addr.ip().is_loopback() {
                    return Err(AdminError::NotLoopback(*addr));
                }
                if !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(AdminError::BadToken);
                }
                if token.len() < MIN_TOKEN_LEN {
                    return Err(AdminError::TokenTooShort { len: token.len() });
                }
                let listener = TcpListener::bind(addr).map_err(|source| AdminError::Tcp {
                    addr: *addr,
                    what: "bind",
                    source,
                })?;
                let tcp_err = |what| {
                    move |source| AdminError::Tcp {
                        addr: *addr,
                        what,
                        source,
                    }
                };
                listener
                    .set_nonblocking(true)
                    .map_err(tcp_err("make non-blocking"))?;
                let local = listener
                    .local_addr()
                    .map_err(tcp_err("read the bound port"))?;
                Some((listener, local, token.clone()))
            }
            None => None,
        };
        let bound = match &config.unix {
            Some(path) => Some(unix::bind(path)?),
            None => None,
        };
        let mut admin = Admin {
            unix_path: bound.as_ref().map(|b| b.path.clone()),
            tcp_addr: tcp.as_ref().map(|(_, a, _)| *a),
            unix: None,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let stop = admin.stop.clone();
        let shared = |token| {
            Arc::new(server::Shared {
                trigger: trigger.clone(),
                limits: config.limits,
                token,
                active: Arc::new(AtomicUsize::new(0)),
                stop: stop.clone(),
            })
        };
        if let Some(bound) = bound {
            let listener = bound
                .listener
                .try_clone()
                .map_err(|source| AdminError::Unix {
                    path: bound.path.clone(),
                    what: "duplicate the listener",
                    source,
                })?;
            let nonblocking = listener.set_nonblocking(true);
            let s = shared(None);
            // Kept in `admin` before anything else can fail, so Drop removes the file.
            admin.unix = Some(bound);
            nonblocking.map_err(|source| AdminError::Unix {
                path: admin.unix_path.clone().unwrap_or_default(),
                what: "make the listener non-blocking",
                source,
            })?;
            admin.spawn("hotswap-admin-unix", move || {
                server::accept_loop(listener, s)
            })?;
        }
        if let Some((listener, local, token)) = tcp {
            let s = shared(Some(token));
            admin.spawn("hotswap-admin-tcp", move || {
                server::accept_loop(listener, s)
            })?;
            tracing::info!(addr = %local, "admin endpoint listening on TCP");
        }
        if let Some(path) = &admin.unix_path {
            tracing::info!(path = %path.display(), "admin endpoint listening on a unix socket");
        }
        Ok(admin)
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), AdminError> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(AdminError::Thread)?;
        self.threads.push(handle);
        Ok(())
    }

    /// The unix socket path, if listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// The TCP address actually bound (the real port when 0 was asked), if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Stops the endpoint (same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(bound) = &self.unix {
            bound.remove_file();
        }
    }
}
