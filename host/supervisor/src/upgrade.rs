//! Process upgrades: one at a time, worker by worker. For each worker: start a new
//! child, wait until it is ready, only then tell the old one to drain. A new child that
//! exits or misses its deadline is killed, the old one keeps serving, and the upgrade
//! stops and reports the failure (workers already replaced stay replaced). An optional
//! `--pre-upgrade` shell command runs first and must succeed. A worker over `--max-rss`
//! is recycled through the same path (without the pre-upgrade command: nothing changed),
//! as is one over `--max-cpu`.
//!
//! With `--probation`, the new children do not replace the old ones as they get ready:
//! they serve beside them, and only once every new child is ready and has stayed up for
//! the probation period do the old ones drain, all together (`probation.rs`). A new
//! child that fails before (or exits during probation) fails the upgrade, the upgrade's
//! other new children are stopped, and every old child keeps its place.
//!
//! A SIGHUP that arrives during an upgrade is queued (at most one), since a signal has
//! no one to answer; an admin request is refused with a clear message instead.

use crate::protocol::answer;
use crate::signal::send_signal;
use crate::state::{PreUpgrade, Purpose, Step, Supervisor, Trigger, Upgrade};
use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

impl Supervisor<'_> {
    /// Starts an upgrade, or queues / refuses it if one runs.
    pub(crate) fn request_upgrade(&mut self, trigger: Trigger, reply: Option<Sender<String>>) {
        if let Some(up) = &self.upgrade {
            let busy = format!(
                "upgrade #{} is in progress (started {} ms ago); try again when it is over",
                up.id,
                up.started.elapsed().as_millis()
            );
            match (trigger, reply) {
                (_, Some(reply)) => {
                    tracing::info!("admin upgrade request refused: {busy}");
                    let _ = reply.send(answer(Err(&busy)));
                }
                (Trigger::Signal, None) => {
                    self.pending_upgrade = true;
                    tracing::info!("received SIGHUP during upgrade #{}: queued", up.id);
                }
                (_, None) => {}
            }
            return;
        }
        let id = self.next_upgrade;
        self.next_upgrade += 1;
        let (remaining, run_pre) = match trigger {
            Trigger::MaxRss { slot, pid, rss_kib } => {
                tracing::warn!(
                    worker = slot,
                    "child {pid} uses {} MiB, over --max-rss {} MiB: recycling it (upgrade #{id})",
                    rss_kib / 1024,
                    self.cfg.max_rss_mib.unwrap_or(0)
                );
                (VecDeque::from([slot]), false)
            }
            Trigger::MaxCpu { slot, pid, percent } => {
                tracing::warn!(
                    worker = slot,
                    "child {pid} used {percent}% CPU over the last {} ms, over --max-cpu {}%: recycling it (upgrade #{id})",
                    self.cfg.cpu_window.as_millis(),
                    self.cfg.max_cpu_percent.unwrap_or(0)
                );
                (VecDeque::from([slot]), false)
            }
            Trigger::Signal | Trigger::Admin => {
                let by = if matches!(trigger, Trigger::Signal) {
                    "SIGHUP"
                } else {
                    "the admin endpoint"
                };
                tracing::info!(
                    workers = self.slots.len(),
                    "upgrade #{id} requested by {by}"
                );
                ((0..self.slots.len()).collect(), true)
            }
        };
        self.upgrade = Some(Upgrade {
            id,
            started: Instant::now(),
            remaining,
            step: Step::Next,
            reply,
            done: Vec::new(),
            trial: Vec::new(),
        });
        // The files may have changed since the last start: check them again.
        crate::trust::warn_about(self.cfg, self.owner.map(|(uid, _)| uid));
        match (&self.cfg.pre_upgrade, run_pre) {
            (Some(cmd), true) => self.start_pre_upgrade(id, cmd.clone()),
            _ => self.advance_upgrade(),
        }
    }

    fn start_pre_upgrade(&mut self, id: u64, cmd: String) {
        if self.pre_upgrade.is_some() {
            // The command of a cancelled upgrade is still running.
            self.finish_upgrade(Err(
                "the previous pre-upgrade command is still running".into()
            ));
            return;
        }
        tracing::info!(command = %cmd, "upgrade #{id}: running the pre-upgrade command");
        match Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .env_remove(crate::protocol::HANDOFF)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                self.pre_upgrade = Some(PreUpgrade {
                    child,
                    deadline: Instant::now() + self.cfg.pre_upgrade_timeout,
                    killed: false,
                    upgrade: id,
                });
                if let Some(up) = &mut self.upgrade {
                    up.step = Step::PreUpgrade;
                }
            }
            Err(e) => self.finish_upgrade(Err(format!(
                "cannot run the pre-upgrade command {cmd:?}: {e}"
            ))),
        }
    }

    /// Reaps the pre-upgrade command if it exited, and moves its upgrade on.
    pub(crate) fn reap_pre_upgrade(&mut self) {
        let Some(pre) = &mut self.pre_upgrade else {
            return;
        };
        let status = match pre.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "waitpid on the pre-upgrade command failed");
                return;
            }
        };
        let (id, killed) = (pre.upgrade, pre.killed);
        self.pre_upgrade = None;
        let ours =
            matches!(&self.upgrade, Some(up) if up.id == id && matches!(up.step, Step::PreUpgrade));
        if !ours {
            return;
        }
        if status.success() {
            tracing::info!("upgrade #{id}: the pre-upgrade command succeeded");
            if let Some(up) = &mut self.upgrade {
                up.step = Step::Next;
            }
            self.advance_upgrade();
        } else if killed {
            self.finish_upgrade(Err(format!(
                "the pre-upgrade command did not finish within {} ms (--pre-upgrade-timeout) and was killed",
                self.cfg.pre_upgrade_timeout.as_millis()
            )));
        } else {
            self.finish_upgrade(Err(format!("the pre-upgrade command failed ({status})")));
        }
    }

    pub(crate) fn pre_upgrade_timers(&mut self, now: Instant) {
        if let Some(pre) = &mut self.pre_upgrade {
            if !pre.killed && pre.deadline <= now {
                tracing::warn!("the pre-upgrade command timed out; killing it");
                let _ = pre.child.kill();
                pre.killed = true;
            }
        }
    }

    /// Starts the next worker's new child, or finishes when none is left.
    pub(crate) fn advance_upgrade(&mut self) {
        let Some(up) = &mut self.upgrade else { return };
        if !matches!(up.step, Step::Next) {
            return;
        }
        let Some(slot) = up.remaining.pop_front() else {
            if up.trial.is_empty() {
                self.finish_upgrade(Ok(()));
            } else {
                self.begin_probation();
            }
            return;
        };
        let id = up.id;
        self.cancel_starting(slot);
        match self.start_child(slot, Purpose::Upgrade) {
            Ok(serial) => {
                if let Some(up) = &mut self.upgrade {
                    up.step = Step::Starting { serial, slot };
                }
            }
            Err(e) => {
                tracing::warn!(
                    worker = slot,
                    "upgrade #{id}: cannot start the new child: {e}"
                );
                self.finish_upgrade(Err(format!(
                    "starting the new child for worker {slot} failed: {e}"
                )));
                if self.slots[slot].serving.is_none() {
                    self.schedule_respawn(slot, Duration::ZERO, "the worker has no child");
                }
            }
        }
    }

    /// The upgrade's new child for `slot` is ready (the old one, if any, drains now).
    pub(crate) fn upgrade_child_ready(
        &mut self,
        serial: u64,
        slot: usize,
        pid: u32,
        old: Option<u32>,
        took: Duration,
    ) {
        let Some(up) = &mut self.upgrade else { return };
        if !matches!(up.step, Step::Starting { serial: s, .. } if s == serial) {
            return;
        }
        let old = old.map_or_else(|| "(none)".to_string(), |p| p.to_string());
        up.done.push(format!(
            "worker {slot}: {old} -> {pid} (ready in {} ms)",
            took.as_millis()
        ));
        up.step = Step::Next;
        self.advance_upgrade();
    }

    /// The upgrade's new child failed: the upgrade fails, the old child keeps serving.
    pub(crate) fn upgrade_child_failed(
        &mut self,
        serial: u64,
        slot: usize,
        pid: u32,
        reason: &str,
    ) {
        let ours = matches!(&self.upgrade, Some(up) if matches!(up.step, Step::Starting { serial: s, .. } if s == serial));
        if !ours {
            return;
        }
        let old = self.slots[slot]
            .serving
            .and_then(|s| self.find(s))
            .map(|i| self.procs[i].pid);
        let keeps = match old {
            Some(old) => format!("old child {old} keeps serving"),
            None => "worker has no child; respawning".into(),
        };
        self.finish_upgrade(Err(format!(
            "new child {pid} for worker {slot} {reason}; {keeps}"
        )));
        if old.is_none() {
            self.schedule_respawn(slot, Duration::ZERO, &format!("worker {slot} has no child"));
        }
    }

    /// Ends the upgrade, answers whoever asked, and starts a queued one.
    pub(crate) fn finish_upgrade(&mut self, result: Result<(), String>) {
        let Some(up) = self.upgrade.take() else {
            return;
        };
        let mut result = result;
        if let (Err(_), Step::Starting { serial, .. }) = (&result, &up.step) {
            // Still starting when the upgrade failed another way (a new child on
            // probation exited, the supervisor shuts down): it goes too.
            self.stop_child(*serial);
        }
        if let Err(why) = &mut result {
            // New children that are ready but not in their slots yet: the old ones keep
            // their places, these go.
            let mut stopped = Vec::new();
            for serial in &up.trial {
                if let Some(i) = self.find(*serial) {
                    stopped.push(self.procs[i].pid.to_string());
                }
                self.stop_child(*serial);
            }
            if !stopped.is_empty() {
                why.push_str(&format!(
                    "; stopped the new children on probation ({}), the old ones keep serving",
                    stopped.join(", ")
                ));
            }
        }
        let took = up.started.elapsed().as_millis();
        let done = if up.done.is_empty() {
            String::new()
        } else {
            format!(": {}", up.done.join(", "))
        };
        let answer = match result {
            Ok(()) => {
                self.upgrades_ok += 1;
                tracing::info!("upgrade #{} done in {took} ms{done}", up.id);
                answer(Ok(&format!("upgrade #{} done in {took} ms{done}", up.id)))
            }
            Err(why) => {
                self.upgrades_failed += 1;
                tracing::error!("upgrade #{} failed after {took} ms: {why}", up.id);
                let partial = if up.done.is_empty() {
                    String::new()
                } else {
                    format!(" (already replaced{done})")
                };
                answer(Err(&format!("upgrade #{} failed: {why}{partial}", up.id)))
            }
        };
        self.last_upgrade = Some(answer.clone());
        if let Some(reply) = up.reply {
            let _ = reply.send(answer);
        }
        if let Some(pre) = &self.pre_upgrade {
            if pre.upgrade == up.id && !pre.killed {
                send_signal(pre.child.id(), libc::SIGTERM);
            }
        }
        if self.pending_upgrade {
            self.pending_upgrade = false;
            self.request_upgrade(Trigger::Signal, None);
        }
    }
}
