//! The supervisor's event loop. One thread owns every child and is the only one that
//! reaps them (so a pid it signals is never one the kernel handed to another process);
//! helper threads (signals, notify sockets, admin connections) only send it [`Event`]s.
//! Timers (readiness deadlines, drain deadlines, respawn backoff, the memory check) are
//! checked on every wake-up; the loop sleeps until the nearest one, a second at most.

use crate::child::rss_kib;
use crate::event::Event;
use crate::notify::NotifySocket;
use crate::protocol::{answer, AdminCommand};
use crate::reap::Reapable;
use crate::signal::{describe, group_alive, send_signal, signal_group, signame};
use crate::state::{
    CpuSamples, Proc, Purpose, Remnant, Role, Shutdown, Step, Supervisor, Trigger, Upgrade,
    REMNANT_GIVE_UP, REMNANT_POLL, RSS_INTERVAL,
};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use std::io;
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The longest the loop sleeps: a safety net for a lost wake-up.
const TICK: Duration = Duration::from_secs(1);

/// Sends `state` to the supervisor's own `NOTIFY_SOCKET` (systemd), if it has one.
fn tell_service_manager(state: &str) {
    match hotswap_listen::notify(state) {
        Ok(true) => tracing::debug!(state, "told the service manager"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot notify the service manager"),
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl Supervisor<'_> {
    /// Starts the workers, then runs until asked to exit and every child is gone. Fails
    /// only if the first workers cannot be started at all (after killing those that were).
    pub(crate) fn run(&mut self, events: Receiver<Event>) -> io::Result<()> {
        tracing::info!(
            command = %self.launcher.describe(),
            workers = self.cfg.workers,
            "starting"
        );
        for slot in 0..self.cfg.workers {
            if self.slots[slot].serving.is_some() {
                continue; // adopted across a self-upgrade
            }
            if let Err(e) = self.start_child(slot, Purpose::Initial) {
                for p in &mut self.procs {
                    signal_group(p.pid, libc::SIGKILL);
                    p.child.wait();
                }
                return Err(e);
            }
        }
        loop {
            let now = Instant::now();
            let wait = self
                .next_wakeup(now)
                .saturating_duration_since(now)
                .min(TICK);
            match events.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                // Unreachable while `self.events` is alive; nothing more can arrive.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(event) = events.try_recv() {
                self.handle(event);
            }
            self.reap();
            self.timers(Instant::now());
            self.tell_service_manager_ready();
            if self.shutdown.is_some()
                && self.procs.is_empty()
                && self.remnants.is_empty()
                && self.pre_upgrade.is_none()
            {
                break;
            }
        }
        tracing::info!("all children are gone; supervisor exiting");
        Ok(())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(SIGCHLD) => {} // reaped right after every event
            Event::Signal(SIGHUP) => {
                if self.shutdown.is_none() {
                    self.request_upgrade(Trigger::Signal, None);
                }
            }
            Event::Signal(sig @ (SIGINT | SIGTERM | SIGQUIT)) => self.begin_shutdown(sig),
            Event::Signal(SIGUSR2) => {
                tracing::info!(
                    children = self.live_children(),
                    "received SIGUSR2: passing it to the children"
                );
                self.forward(SIGUSR2);
            }
            Event::Signal(_) => {}
            Event::Ready { serial } => {
                if self.shutdown.is_none() {
                    self.mark_ready(serial, "READY=1");
                }
            }
            Event::Admin {
                command: AdminCommand::Status,
                reply,
                ..
            } => {
                let _ = reply.send(answer(Ok(&self.status_json())));
            }
            Event::Admin { command, reply, .. } if self.shutdown.is_some() => {
                let _ = reply.send(answer(Err(&format!(
                    "the supervisor is shutting down; {command} refused"
                ))));
            }
            Event::Admin {
                command: AdminCommand::Upgrade,
                reply,
                ..
            } => self.request_upgrade(Trigger::Admin, Some(reply)),
            Event::Admin {
                command: AdminCommand::Restart,
                reply,
                ..
            } => {
                let _ = reply.send(self.restart_all());
            }
            Event::Admin {
                command: AdminCommand::Stop,
                reply,
                written,
            } => {
                let children = self.live_children();
                self.begin_shutdown(SIGTERM);
                let _ = reply.send(answer(Ok(&format!(
                    "stopping {children} children and the supervisor"
                ))));
                // The answer must be out before the supervisor exits, which it may do as
                // soon as the children are gone (the client then read nothing).
                let _ = written.recv_timeout(Duration::from_secs(2));
            }
            Event::Admin {
                command: AdminCommand::Message(text),
                reply,
                ..
            } => {
                let _ = reply.send(self.deliver_message(&text));
            }
            Event::Admin {
                command: AdminCommand::UpgradeSelf,
                reply,
                written,
            } => {
                if let Some(why) = self.self_upgrade_blocker() {
                    let _ = reply.send(answer(Err(&format!(
                        "cannot upgrade the supervisor now: {why}; try again when it is over"
                    ))));
                    return;
                }
                let _ = reply.send(answer(Ok(&format!(
                    "re-executing {} (pid {} stays)",
                    self.exe.display(),
                    std::process::id()
                ))));
                // The answer must be out before this image (and the thread writing it) goes.
                let _ = written.recv_timeout(Duration::from_secs(2));
                let e = self.upgrade_self();
                tracing::error!(error = %e, exe = %self.exe.display(), "the supervisor could not re-execute itself; it keeps running as it was");
            }
        }
    }

    /// Once every worker serves for the first time: `READY=1` to the service manager
    /// that started the supervisor (systemd's `Type=notify`), if any.
    fn tell_service_manager_ready(&mut self) {
        if self.announced_ready || self.slots.iter().any(|s| s.serving.is_none()) {
            return;
        }
        self.announced_ready = true;
        tell_service_manager(&format!(
            "READY=1\nSTATUS=serving with {} workers",
            self.slots.len()
        ));
    }

    fn live_children(&self) -> usize {
        self.procs
            .iter()
            .filter(|p| !matches!(p.role, Role::Failed))
            .count()
    }

    /// Starts a child for `slot` and its readiness watch; returns its serial.
    pub(crate) fn start_child(&mut self, slot: usize, purpose: Purpose) -> io::Result<u64> {
        let serial = self.next_serial;
        self.next_serial += 1;
        let path = self.rundir.join(format!("notify-{serial}.sock"));
        let socket = NotifySocket::bind(&path, self.owner)?;
        let child = match self.launcher.spawn(socket.path()) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let pid = child.id();
        let now = Instant::now();
        let ready_by = now + self.cfg.ready_timeout;
        let notify = match socket.wait(serial, pid, ready_by, self.events.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot watch the notify socket; relying on --start-delay or the deadline");
                None
            }
        };
        tracing::info!(
            worker = slot,
            reason = ?purpose,
            "starting new child pid {pid}"
        );
        self.procs.push(Proc {
            serial,
            pid,
            slot,
            role: Role::Starting {
                purpose,
                ready_by,
                delay_until: self.cfg.start_delay.map(|d| now + d),
            },
            spawned: now,
            notify,
            cpu: CpuSamples::new(),
            child: Reapable::Spawned(child),
        });
        Ok(serial)
    }

    pub(crate) fn find(&self, serial: u64) -> Option<usize> {
        self.procs.iter().position(|p| p.serial == serial)
    }

    /// Child `serial` is ready: it becomes its slot's worker and the previous one drains.
    fn mark_ready(&mut self, serial: u64, how: &str) {
        let Some(i) = self.find(serial) else { return };
        let p = &mut self.procs[i];
        let Role::Starting { purpose, .. } = p.role else {
            return;
        };
        let now = Instant::now();
        p.notify = None;
        let (pid, slot, took) = (p.pid, p.slot, now - p.spawned);
        tracing::info!(
            worker = slot,
            "child {pid} ready in {} ms ({how})",
            ms(took)
        );
        if purpose == Purpose::Upgrade && !self.cfg.probation.is_zero() {
            // The old worker keeps its place until the whole upgrade passed probation.
            p.role = Role::Probation { ready_at: now };
            self.upgrade_child_on_probation(serial, slot, pid, took);
            return;
        }
        p.role = Role::Serving { since: now };
        let old = self.slots[slot].serving.replace(serial);
        if purpose == Purpose::Upgrade {
            self.slots[slot].crashes = 0;
        }
        let old_pid = old.and_then(|o| self.drain(o));
        if purpose == Purpose::Upgrade {
            self.upgrade_child_ready(serial, slot, pid, old_pid, took);
        }
    }

    /// Tells serving child `serial` to drain (SIGTERM), with the kill deadline.
    pub(crate) fn drain(&mut self, serial: u64) -> Option<u32> {
        let i = self.find(serial)?;
        let p = &mut self.procs[i];
        if !matches!(p.role, Role::Serving { .. }) {
            return None;
        }
        let now = Instant::now();
        tracing::info!(
            worker = p.slot,
            "draining old child {} (SIGTERM; SIGKILL in {} ms)",
            p.pid,
            ms(self.cfg.drain_timeout)
        );
        signal_group(p.pid, SIGTERM);
        p.role = Role::Draining {
            since: now,
            kill_at: now + self.cfg.drain_timeout,
            killed: false,
        };
        Some(p.pid)
    }

    /// A starting child failed (exited or missed its deadline).
    fn start_failed(&mut self, slot: usize, purpose: Purpose, serial: u64, pid: u32, reason: &str) {
        if self.shutdown.is_some() {
            return;
        }
        match purpose {
            Purpose::Upgrade => self.upgrade_child_failed(serial, slot, pid, reason),
            Purpose::Initial | Purpose::Respawn => {
                self.schedule_respawn(slot, Duration::ZERO, &format!("child {pid} {reason}"))
            }
        }
    }

    /// Plans a new child for `slot` after the backoff delay, and says so.
    pub(crate) fn schedule_respawn(&mut self, slot: usize, served: Duration, what: &str) {
        if self.shutdown.is_some() {
            return;
        }
        if let Some(Upgrade {
            step: Step::Starting { slot: s, .. },
            ..
        }) = &self.upgrade
        {
            if *s == slot {
                tracing::warn!(
                    worker = slot,
                    "{what}; the upgrade's new child takes its place"
                );
                return;
            }
        }
        let backoff = self.cfg.backoff;
        let s = &mut self.slots[slot];
        if served >= backoff.reset_after {
            s.crashes = 0;
        }
        s.crashes += 1;
        let delay = backoff.delay(s.crashes);
        s.respawn_at = Some(Instant::now() + delay);
        tracing::warn!(
            worker = slot,
            "{what}; respawning in {} ms (crash {} in a row)",
            ms(delay),
            s.crashes
        );
    }

    fn respawn(&mut self, slot: usize) {
        self.respawns += 1;
        if let Err(e) = self.start_child(slot, Purpose::Respawn) {
            self.schedule_respawn(
                slot,
                Duration::ZERO,
                &format!("the command could not be started ({e})"),
            );
        }
    }

    /// Cancels a planned respawn of `slot` and kills the children starting for it: the
    /// upgrade's new child takes the slot over.
    pub(crate) fn cancel_starting(&mut self, slot: usize) {
        self.slots[slot].respawn_at = None;
        for p in &mut self.procs {
            if p.slot == slot && matches!(p.role, Role::Starting { .. }) {
                tracing::info!(
                    worker = slot,
                    "killing child {} (superseded by the upgrade)",
                    p.pid
                );
                signal_group(p.pid, libc::SIGKILL);
                p.role = Role::Failed;
                p.notify = None;
            }
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.procs.len() {
            match self.procs[i].child.try_wait() {
                Ok(Some(status)) => {
                    let p = self.procs.remove(i);
                    let (pgid, slot) = (p.pid, p.slot);
                    let drain_until = p.role.kill_due();
                    self.on_exit(p, status);
                    self.leftovers(pgid, slot, drain_until);
                }
                Ok(None) => i += 1,
                Err(e) => {
                    tracing::warn!(pid = self.procs[i].pid, error = %e, "waitpid failed");
                    i += 1;
                }
            }
        }
        self.reap_pre_upgrade();
    }

    /// After child `pgid` exited: what is left of its process group drains until the
    /// deadline it had (an old child told to drain, or any child while the supervisor
    /// shuts down) or is killed now (a child that crashed or failed to start: nothing of
    /// it may go on serving beside its replacement).
    fn leftovers(&mut self, pgid: u32, slot: usize, drain_until: Option<Instant>) {
        if !group_alive(pgid) {
            return;
        }
        let until = match (&self.shutdown, drain_until) {
            (Some(sd), d) if !sd.killed => Some(d.map_or(sd.kill_at, |d| d.min(sd.kill_at))),
            (Some(_), _) => None,
            (None, d) => d,
        };
        match until {
            Some(kill_at) => tracing::info!(
                worker = slot,
                "child {pgid} exited but its process group still runs; waiting for it (SIGKILL in {} ms)",
                ms(kill_at.saturating_duration_since(Instant::now()))
            ),
            None => {
                tracing::warn!(
                    worker = slot,
                    "child {pgid} exited but its process group still runs; sent it SIGKILL"
                );
                signal_group(pgid, libc::SIGKILL);
            }
        }
        let now = Instant::now();
        self.remnants.push(Remnant {
            pgid,
            slot,
            kill_at: until.unwrap_or(now),
            killed: until.is_none(),
        });
    }

    /// Forgets remnants whose group is empty; kills those past their deadline.
    fn remnant_timers(&mut self, now: Instant) {
        self.remnants.retain_mut(|r| {
            if !group_alive(r.pgid) {
                tracing::debug!(worker = r.slot, "process group {} is gone", r.pgid);
                return false;
            }
            if !r.killed && r.kill_at <= now {
                tracing::warn!(
                    worker = r.slot,
                    "process group {} still running at its deadline; sent SIGKILL",
                    r.pgid
                );
                signal_group(r.pgid, libc::SIGKILL);
                r.killed = true;
                r.kill_at = now;
            }
            if r.killed && r.kill_at + REMNANT_GIVE_UP <= now {
                tracing::error!(
                    worker = r.slot,
                    "process group {} survives SIGKILL; no longer waiting for it",
                    r.pgid
                );
                return false;
            }
            true
        });
    }

    fn on_exit(&mut self, p: Proc, status: ExitStatus) {
        let (pid, slot, how) = (p.pid, p.slot, describe(status));
        match p.role {
            Role::Starting { purpose, .. } => {
                if self.shutdown.is_some() {
                    tracing::info!(worker = slot, "child {pid} exited ({how})");
                } else {
                    tracing::warn!(
                        worker = slot,
                        "child {pid} exited ({how}) before it was ready"
                    );
                    self.start_failed(
                        slot,
                        purpose,
                        p.serial,
                        pid,
                        &format!("exited ({how}) before it was ready"),
                    );
                }
            }
            Role::Serving { since } => {
                if self.slots[slot].serving == Some(p.serial) {
                    self.slots[slot].serving = None;
                }
                if self.shutdown.is_some() {
                    tracing::info!(worker = slot, "child {pid} exited ({how})");
                } else {
                    let served = since.elapsed();
                    self.schedule_respawn(
                        slot,
                        served,
                        &format!(
                            "child {pid} exited unexpectedly ({how}) after serving for {} ms",
                            ms(served)
                        ),
                    );
                }
            }
            Role::Probation { ready_at } => {
                if self.shutdown.is_some() {
                    tracing::info!(worker = slot, "child {pid} exited ({how})");
                } else {
                    let after = ready_at.elapsed();
                    tracing::warn!(
                        worker = slot,
                        "new child {pid} exited ({how}) {} ms after it was ready, on probation",
                        ms(after)
                    );
                    self.probation_failed(p.serial, slot, pid, &how, after);
                }
            }
            Role::Draining { since, .. } => tracing::info!(
                worker = slot,
                "old child {pid} exited ({how}) {} ms after it was told to drain",
                ms(since.elapsed())
            ),
            Role::Stopping { .. } => {
                tracing::info!(worker = slot, "failed child {pid} exited ({how})")
            }
            Role::Failed => tracing::debug!(worker = slot, "child {pid} reaped ({how})"),
        }
    }

    fn timers(&mut self, now: Instant) {
        if self.shutdown.is_none() {
            let mut ready = Vec::new();
            let mut late = Vec::new();
            for p in &self.procs {
                if let Role::Starting {
                    ready_by,
                    delay_until,
                    ..
                } = p.role
                {
                    if delay_until.is_some_and(|t| t <= now) {
                        ready.push(p.serial);
                    } else if ready_by <= now {
                        late.push(p.serial);
                    }
                }
            }
            for serial in ready {
                self.mark_ready(serial, "--start-delay elapsed");
            }
            for serial in late {
                self.missed_deadline(serial);
            }
            for slot in 0..self.slots.len() {
                if self.slots[slot].respawn_at.is_some_and(|t| t <= now) {
                    self.slots[slot].respawn_at = None;
                    self.respawn(slot);
                }
            }
            self.check_rss(now);
            self.check_cpu(now);
            self.probation_timer(now);
        }
        for p in &mut self.procs {
            let (kill_at, killed, what) = match &mut p.role {
                Role::Draining {
                    kill_at, killed, ..
                } => (*kill_at, killed, "old child"),
                Role::Stopping { kill_at, killed } => (*kill_at, killed, "failed child"),
                _ => continue,
            };
            if !*killed && kill_at <= now {
                tracing::warn!(
                    worker = p.slot,
                    "{what} {} still running {} ms after SIGTERM; sent SIGKILL",
                    p.pid,
                    ms(self.cfg.drain_timeout)
                );
                signal_group(p.pid, libc::SIGKILL);
                *killed = true;
            }
        }
        self.pre_upgrade_timers(now);
        self.remnant_timers(now);
        if let Some(sd) = &mut self.shutdown {
            if !sd.killed && sd.kill_at <= now {
                sd.killed = true;
                let pids: Vec<u32> = self.procs.iter().map(|p| p.pid).collect();
                tracing::warn!(
                    ?pids,
                    "children still running {} ms after the stop signal; sent SIGKILL",
                    ms(self.cfg.drain_timeout)
                );
                for pid in pids {
                    signal_group(pid, libc::SIGKILL);
                }
                for r in &mut self.remnants {
                    if !r.killed {
                        signal_group(r.pgid, libc::SIGKILL);
                        r.killed = true;
                        r.kill_at = now;
                    }
                }
                if let Some(pre) = &mut self.pre_upgrade {
                    let _ = pre.child.kill();
                }
            }
        }
    }

    fn missed_deadline(&mut self, serial: u64) {
        let Some(i) = self.find(serial) else { return };
        let p = &mut self.procs[i];
        let Role::Starting { purpose, .. } = p.role else {
            return;
        };
        let (pid, slot) = (p.pid, p.slot);
        self.stop_child(serial);
        let reason = format!(
            "was not ready within {} ms (--ready-timeout); sent SIGTERM (SIGKILL in {} ms)",
            ms(self.cfg.ready_timeout),
            ms(self.cfg.drain_timeout)
        );
        tracing::warn!(worker = slot, "child {pid} {reason}");
        self.start_failed(slot, purpose, serial, pid, &reason);
    }

    fn check_rss(&mut self, now: Instant) {
        let Some(max_mib) = self.cfg.max_rss_mib else {
            return;
        };
        if now < self.next_rss_check {
            return;
        }
        self.next_rss_check = now + RSS_INTERVAL;
        if self.upgrade.is_some() {
            return;
        }
        let over = self.procs.iter().find_map(|p| match p.role {
            Role::Serving { .. } => rss_kib(p.pid)
                .filter(|kib| *kib > max_mib.saturating_mul(1024))
                .map(|kib| (p.slot, p.pid, kib)),
            _ => None,
        });
        if let Some((slot, pid, rss_kib)) = over {
            self.request_upgrade(Trigger::MaxRss { slot, pid, rss_kib }, None);
        }
    }

    /// Tells child `serial` (starting, or on probation) to stop: SIGTERM to its group,
    /// SIGKILL after the drain timeout. It may already serve (a program that reports
    /// late, or not at all), so it gets the chance to finish what it accepted.
    pub(crate) fn stop_child(&mut self, serial: u64) {
        let Some(i) = self.find(serial) else { return };
        let p = &mut self.procs[i];
        if !matches!(p.role, Role::Starting { .. } | Role::Probation { .. }) {
            return;
        }
        p.notify = None;
        // During a shutdown every child had the stop signal already.
        if self.shutdown.is_none() {
            signal_group(p.pid, SIGTERM);
        }
        p.role = Role::Stopping {
            kill_at: Instant::now() + self.cfg.drain_timeout,
            killed: false,
        };
    }

    /// When the loop must wake up next.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut next = now + TICK;
        let mut consider = |t: Instant| next = next.min(t);
        for p in &self.procs {
            match p.role {
                Role::Starting {
                    ready_by,
                    delay_until,
                    ..
                } => {
                    consider(ready_by);
                    if let Some(t) = delay_until {
                        consider(t);
                    }
                }
                ref role => {
                    if let Some(t) = role.kill_due() {
                        consider(t);
                    }
                }
            }
        }
        if let Some(Upgrade {
            step: Step::Probation { until },
            ..
        }) = &self.upgrade
        {
            consider(*until);
        }
        for s in &self.slots {
            if let Some(t) = s.respawn_at {
                consider(t);
            }
        }
        if let Some(pre) = &self.pre_upgrade {
            consider(pre.deadline);
        }
        if !self.remnants.is_empty() {
            consider(now + REMNANT_POLL);
        }
        if let Some(sd) = &self.shutdown {
            if !sd.killed {
                consider(sd.kill_at);
            }
        }
        next
    }

    fn forward(&mut self, sig: i32) {
        for p in &self.procs {
            if !matches!(p.role, Role::Failed) {
                signal_group(p.pid, sig);
            }
        }
        for r in &self.remnants {
            signal_group(r.pgid, sig);
        }
        if let Some(pre) = &self.pre_upgrade {
            send_signal(pre.child.id(), sig);
        }
    }

    fn begin_shutdown(&mut self, sig: i32) {
        let name = signame(sig);
        if self.shutdown.is_some() {
            tracing::info!("received {name} again; forwarding it to the children");
            self.forward(sig);
            return;
        }
        tracing::info!(
            children = self.live_children(),
            "received {name}: forwarding it to the children; exiting once they are gone (SIGKILL after {} ms)",
            ms(self.cfg.drain_timeout)
        );
        self.stop_accepting();
        tell_service_manager("STOPPING=1");
        self.forward(sig);
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        let kill_at = Instant::now() + self.cfg.drain_timeout;
        for r in &mut self.remnants {
            r.kill_at = r.kill_at.min(kill_at);
        }
        self.shutdown = Some(Shutdown {
            kill_at,
            killed: false,
        });
        self.pending_upgrade = false;
        if self.upgrade.is_some() {
            self.finish_upgrade(Err(format!("the supervisor is shutting down ({name})")));
        }
    }

    fn status_json(&self) -> String {
        let children: Vec<serde_json::Value> = self
            .procs
            .iter()
            .map(|p| {
                let state = match p.role {
                    Role::Starting { .. } => "starting",
                    Role::Serving { .. } => "serving",
                    Role::Probation { .. } => "probation",
                    Role::Draining { .. } => "draining",
                    Role::Stopping { .. } => "stopping",
                    Role::Failed => "killed",
                };
                serde_json::json!({
                    "pid": p.pid,
                    "worker": p.slot,
                    "state": state,
                    "uptime_ms": ms(p.spawned.elapsed()) as u64,
                    "rss_kib": rss_kib(p.pid),
                })
            })
            .collect();
        let listeners: Vec<serde_json::Value> = self
            .listeners
            .iter()
            .map(|(name, address)| serde_json::json!({"name": name, "address": address}))
            .collect();
        serde_json::json!({
            "supervisor_pid": std::process::id(),
            "command": self.launcher.describe(),
            "listeners": listeners,
            "workers": self.cfg.workers,
            "children": children,
            "upgrading": self.upgrade.is_some(),
            "upgrades_ok": self.upgrades_ok,
            "upgrades_failed": self.upgrades_failed,
            "respawns": self.respawns,
            "probation_ms": ms(self.cfg.probation) as u64,
            "last_upgrade": self.last_upgrade,
            "messages": self.messages,
            "self_upgrades": self.self_upgrades,
            "shutting_down": self.shutdown.is_some(),
        })
        .to_string()
    }
}
