//! What a running supervisor knows: its children and their roles, the `--workers`
//! slots, the upgrade in progress, the shutdown. The event loop (`event_loop.rs`) and
//! the upgrade steps (`upgrade.rs`) act on it; one thread owns it.

use crate::child::Launcher;
use crate::config::Config;
use crate::event::Event;
use crate::notify::NotifyWaiter;
use crate::reap::Reapable;
use crate::sockets::BoundSocket;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How often `--max-rss` and `--max-cpu` are checked.
pub(crate) const RSS_INTERVAL: Duration = Duration::from_secs(1);

/// Why a child was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// At supervisor start.
    Initial,
    /// To replace a worker that crashed.
    Respawn,
    /// By an upgrade, to replace a serving worker.
    Upgrade,
}

/// Where a child is in its life.
pub(crate) enum Role {
    /// Started, not ready yet.
    Starting {
        purpose: Purpose,
        ready_by: Instant,
        delay_until: Option<Instant>,
    },
    /// Ready: the worker of its slot.
    Serving { since: Instant },
    /// An upgrade's new child, ready, on `--probation`: it serves beside the old
    /// worker of its slot, which keeps its place until the whole upgrade passed.
    Probation { ready_at: Instant },
    /// Replaced: told to drain (SIGTERM), killed at `kill_at` if still there.
    Draining {
        since: Instant,
        kill_at: Instant,
        killed: bool,
    },
    /// Failed to start (missed `--ready-timeout`, or its upgrade failed) and was told
    /// to stop (SIGTERM: it may already serve); killed at `kill_at` if still there.
    Stopping { kill_at: Instant, killed: bool },
    /// Failed to start and was killed; waiting to be reaped.
    Failed,
}

impl Role {
    /// When a child told to drain or stop, and not killed yet, is to get SIGKILL.
    pub fn kill_due(&self) -> Option<Instant> {
        match *self {
            Role::Draining {
                kill_at,
                killed: false,
                ..
            }
            | Role::Stopping {
                kill_at,
                killed: false,
            } => Some(kill_at),
            _ => None,
        }
    }
}

/// One child process.
pub(crate) struct Proc {
    pub serial: u64,
    pub pid: u32,
    pub child: Reapable,
    pub slot: usize,
    pub role: Role,
    pub spawned: Instant,
    pub notify: Option<NotifyWaiter>,
    /// CPU time samples for `--max-cpu` (`cpu.rs`).
    pub cpu: CpuSamples,
}

/// The last CPU time readings of a child: (when, clock ticks used so far), oldest
/// first, covering at most the `--max-cpu-window`.
pub(crate) type CpuSamples = VecDeque<(Instant, u64)>;

/// What is left of a child after it exited: other processes of its process group (a
/// wrapper's server), watched until the group is empty, killed at `kill_at`.
pub(crate) struct Remnant {
    pub pgid: u32,
    pub slot: usize,
    pub kill_at: Instant,
    /// SIGKILL sent; given up at `kill_at` + [`REMNANT_GIVE_UP`] if still there.
    pub killed: bool,
}

/// How long a killed remnant is watched before the supervisor stops waiting for it (a
/// process in uninterruptible sleep dies only when its I/O returns).
pub(crate) const REMNANT_GIVE_UP: Duration = Duration::from_secs(5);

/// How often remnants are looked at: they are not the supervisor's children, so no
/// SIGCHLD says when they are gone.
pub(crate) const REMNANT_POLL: Duration = Duration::from_millis(50);

/// One of the `--workers` positions.
#[derive(Default)]
pub(crate) struct Slot {
    /// The serial of the child serving this slot.
    pub serving: Option<u64>,
    /// Crashes in a row (for the backoff).
    pub crashes: u32,
    /// When to start a replacement for a crashed worker.
    pub respawn_at: Option<Instant>,
}

/// The supervisor was asked to exit.
pub(crate) struct Shutdown {
    pub kill_at: Instant,
    pub killed: bool,
}
/// What asked for the upgrade.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// SIGHUP.
    Signal,
    /// The admin endpoint (`hotswap serve --upgrade`).
    Admin,
    /// A worker over `--max-rss`.
    MaxRss { slot: usize, pid: u32, rss_kib: u64 },
    /// A worker over `--max-cpu` (percent of one CPU over the window).
    MaxCpu { slot: usize, pid: u32, percent: u64 },
}

/// Where the running upgrade is.
pub(crate) enum Step {
    /// The pre-upgrade command runs.
    PreUpgrade,
    /// The new child for `slot` is starting.
    Starting { serial: u64, slot: usize },
    /// Between workers.
    Next,
    /// Every new child is ready; they serve beside the old ones until `until`
    /// (`--probation`), then the old ones drain.
    Probation { until: Instant },
}

/// The upgrade in progress.
pub(crate) struct Upgrade {
    pub id: u64,
    pub started: Instant,
    pub remaining: VecDeque<usize>,
    pub step: Step,
    pub reply: Option<Sender<String>>,
    /// One line per replaced worker.
    pub done: Vec<String>,
    /// With `--probation`: the new children that are ready and on probation (serials),
    /// in slot order; they replace the old workers together once it passed.
    pub trial: Vec<u64>,
}

/// The running `--pre-upgrade` command.
pub(crate) struct PreUpgrade {
    pub child: Child,
    pub deadline: Instant,
    pub killed: bool,
    /// The upgrade it belongs to; gone if that upgrade was cancelled meanwhile.
    pub upgrade: u64,
}

/// All state of a running supervisor.
pub(crate) struct Supervisor<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) launcher: Launcher,
    pub(crate) rundir: PathBuf,
    pub(crate) owner: Option<(u32, u32)>,
    pub(crate) listeners: Vec<(String, String)>,
    /// The listening sockets, to stop accepting on them at shutdown.
    pub(crate) sockets: &'a mut [BoundSocket],
    pub(crate) events: Sender<Event>,
    pub(crate) procs: Vec<Proc>,
    pub(crate) remnants: Vec<Remnant>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) upgrade: Option<Upgrade>,
    pub(crate) pre_upgrade: Option<PreUpgrade>,
    pub(crate) pending_upgrade: bool,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) next_serial: u64,
    pub(crate) next_upgrade: u64,
    pub(crate) upgrades_ok: u64,
    pub(crate) upgrades_failed: u64,
    pub(crate) respawns: u64,
    pub(crate) next_rss_check: Instant,
    pub(crate) next_cpu_check: Instant,
    /// The outcome line of the last finished upgrade, for the status.
    pub(crate) last_upgrade: Option<String>,
    /// Messages delivered with `--message`.
    pub(crate) messages: u64,
    /// `READY=1` was sent to the service manager.
    pub(crate) announced_ready: bool,
    /// The supervisor's own program, re-executed by a self-upgrade (resolved at start,
    /// so a new binary installed at that path by rename is the one run).
    pub(crate) exe: PathBuf,
    /// Self-upgrades this process went through (handed over across them).
    pub(crate) self_upgrades: u64,
}

impl<'a> Supervisor<'a> {
    pub(crate) fn new(
        cfg: &'a Config,
        launcher: Launcher,
        rundir: PathBuf,
        owner: Option<(u32, u32)>,
        listeners: Vec<(String, String)>,
        sockets: &'a mut [BoundSocket],
        events: Sender<Event>,
    ) -> Supervisor<'a> {
        Supervisor {
            cfg,
            launcher,
            rundir,
            owner,
            listeners,
            sockets,
            events,
            procs: Vec::new(),
            remnants: Vec::new(),
            slots: (0..cfg.workers).map(|_| Slot::default()).collect(),
            upgrade: None,
            pre_upgrade: None,
            pending_upgrade: false,
            shutdown: None,
            next_serial: 1,
            next_upgrade: 1,
            upgrades_ok: 0,
            upgrades_failed: 0,
            respawns: 0,
            next_rss_check: Instant::now() + RSS_INTERVAL,
            next_cpu_check: Instant::now() + RSS_INTERVAL,
            last_upgrade: None,
            messages: 0,
            announced_ready: false,
            exe: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            self_upgrades: 0,
        }
    }
}
