//! `--probation`: an upgrade's new children serve beside the old ones until every new
//! child is ready and the last one has stayed up for the probation period; only then do
//! the old ones drain, all at once. A new child that exits during probation fails the
//! upgrade (`finish_upgrade` stops the other new children) and the old children, which
//! never left their places, keep serving: nothing has to be restored, and the bad
//! release is not respawned in their place.
//!
//! This is why the old children are kept rather than restarted: the supervisor runs the
//! command by path, and after a deploy that path names the new release; the old binary
//! exists only as the running old processes.

use crate::state::{Role, Step, Supervisor};
use std::time::{Duration, Instant};

impl Supervisor<'_> {
    /// The upgrade's new child for `slot` is ready: on probation beside the old worker;
    /// the upgrade moves on to the next worker.
    pub(crate) fn upgrade_child_on_probation(
        &mut self,
        serial: u64,
        slot: usize,
        pid: u32,
        took: Duration,
    ) {
        let Some(up) = &mut self.upgrade else { return };
        if !matches!(up.step, Step::Starting { serial: s, .. } if s == serial) {
            return;
        }
        let old = self.slots[slot]
            .serving
            .and_then(|s| self.procs.iter().find(|p| p.serial == s))
            .map_or_else(|| "(none)".to_string(), |p| p.pid.to_string());
        up.done.push(format!(
            "worker {slot}: {old} -> {pid} (ready in {} ms)",
            took.as_millis()
        ));
        up.trial.push(serial);
        up.step = Step::Next;
        self.advance_upgrade();
    }

    /// Every new child is ready: the probation period starts.
    pub(crate) fn begin_probation(&mut self) {
        let probation = self.cfg.probation;
        let Some(up) = &mut self.upgrade else { return };
        up.step = Step::Probation {
            until: Instant::now() + probation,
        };
        tracing::info!(
            "upgrade #{}: {} new children ready; on probation for {} ms (the old ones keep serving)",
            up.id,
            up.trial.len(),
            probation.as_millis()
        );
    }

    /// Ends the probation when it is over: the new children take their slots and the
    /// old ones drain.
    pub(crate) fn probation_timer(&mut self, now: Instant) {
        let Some(up) = &mut self.upgrade else { return };
        let Step::Probation { until } = up.step else {
            return;
        };
        if until > now {
            return;
        }
        let trial = std::mem::take(&mut up.trial);
        let id = up.id;
        tracing::info!("upgrade #{id}: probation passed; the old children drain now");
        for serial in trial {
            let Some(i) = self.find(serial) else { continue };
            let p = &mut self.procs[i];
            let Role::Probation { ready_at } = p.role else {
                continue;
            };
            p.role = Role::Serving { since: ready_at };
            let slot = p.slot;
            self.slots[slot].crashes = 0;
            // A respawn planned for the slot (its old worker crashed meanwhile) is moot.
            self.slots[slot].respawn_at = None;
            if let Some(old) = self.slots[slot].serving.replace(serial) {
                self.drain(old);
            }
        }
        self.finish_upgrade(Ok(()));
    }

    /// New child `serial` exited during probation: the upgrade fails; every old child
    /// keeps its place.
    pub(crate) fn probation_failed(
        &mut self,
        serial: u64,
        slot: usize,
        pid: u32,
        how: &str,
        after: Duration,
    ) {
        let Some(up) = &mut self.upgrade else { return };
        let Some(at) = up.trial.iter().position(|s| *s == serial) else {
            return;
        };
        up.trial.remove(at);
        let keeps = match self.slots[slot].serving.and_then(|s| self.find(s)) {
            Some(i) => format!("old child {} keeps serving", self.procs[i].pid),
            None => "the worker has no child; respawning".into(),
        };
        let why = format!(
            "new child {pid} for worker {slot} exited ({how}) {} ms after it was ready, within the {} ms probation; {keeps}",
            after.as_millis(),
            self.cfg.probation.as_millis()
        );
        let orphan = self.slots[slot].serving.is_none() && self.slots[slot].respawn_at.is_none();
        self.finish_upgrade(Err(why));
        if orphan {
            self.schedule_respawn(slot, Duration::ZERO, &format!("worker {slot} has no child"));
        }
    }
}
