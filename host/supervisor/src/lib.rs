//! hotswap-supervisor: the process supervisor behind `hotswap serve`. Zero-downtime
//! hand-off between whole processes, for what cannot be swapped in-process (the host
//! binary itself, a plugin that is not reloadable).
//!
//! It binds the listening sockets once and runs `workers` copies of a command that
//! inherit them (systemd's `LISTEN_FDS` protocol; the child side is `hotswap-listen`,
//! whose [`protocol`](hotswap_listen::protocol) names this crate sets). An upgrade
//! (SIGHUP, [`request`] with [`AdminCommand::Upgrade`] on the admin socket, or
//! `hotswap serve --upgrade`) starts a new child per worker, waits for its `READY=1` (or `start_delay`), and only
//! then sends the old one SIGTERM to drain; a new child that fails is killed and the old
//! one keeps serving. The old and new children accept from the same socket, so no
//! connection is refused or reset during the hand-off.
//!
//! ```no_run
//! use hotswap_supervisor::{serve, Config};
//!
//! let mut config = Config::new(vec!["./my-host".into()]);
//! config.listen.push("tcp://127.0.0.1:8080".parse()?);
//! config.admin = Some("/run/my-host.admin".into());
//! serve(&config)?; // returns after SIGTERM/SIGINT/SIGQUIT, once the children are gone
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With [`Config::probation`], new children serve beside the old ones until they all
//! stayed up that long; a new child that dies meanwhile fails the upgrade and every old
//! child keeps its place.
//!
//! Signals: SIGHUP upgrades; SIGINT, SIGTERM and SIGQUIT stop accepting on the listening
//! sockets at once, are forwarded to every child, and the supervisor exits once they are
//! gone (SIGKILL after `drain_timeout`); SIGUSR2 is passed through. A worker that
//! crashes is respawned after an exponential backoff, with a log line each time.
//! Children get SIGTERM if the supervisor itself dies. The admin socket also takes
//! `restart`, `stop`, `message <text>` and `upgrade-self` (the supervisor re-executes
//! its own program, keeping its pid, sockets and children).
//!
//! The admin socket's line protocol is in [`protocol`]; [`request`] and
//! [`signal_upgrade`] are its client side (`hotswap serve --upgrade`, `--status`).
#![warn(missing_docs)]

mod admin;
mod backoff;
mod child;
mod client;
mod config;
mod cpu;
mod error;
mod event;
mod event_loop;
mod handoff;
mod notify;
mod probation;
pub mod protocol;
mod reap;
mod serve;
mod signal;
mod sockets;
mod state;
pub mod trust;
mod upgrade;
mod user;
mod verbs;

pub use backoff::Backoff;
pub use client::{request, signal_upgrade, AdminError};
pub use config::Config;
pub use error::ServeError;
pub use protocol::AdminCommand;
pub use serve::serve;
pub use sockets::{Family, ListenAddr, ListenSpec, SocketError, BACKLOG};
pub use user::UserError;
