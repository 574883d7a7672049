//! The operator's verbs besides upgrade: `restart` (replace every worker now),
//! `message` (text to every worker: a file plus SIGUSR1), and what a stop does first:
//! stop accepting on the listening sockets. (`stop` itself is the SIGTERM shutdown.)

use crate::protocol::answer;
use crate::signal::signal_group;
use crate::state::{Purpose, Role, Supervisor};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

impl Supervisor<'_> {
    /// Replaces every worker now: each serving child drains (SIGTERM, SIGKILL after the
    /// drain timeout) and a new one starts for its slot at once. Refused during an
    /// upgrade. Returns the answer line.
    pub(crate) fn restart_all(&mut self) -> String {
        if let Some(up) = &self.upgrade {
            return answer(Err(&format!(
                "upgrade #{} is in progress; restart refused",
                up.id
            )));
        }
        tracing::info!(
            workers = self.slots.len(),
            "restart requested: replacing every worker now"
        );
        let mut lines = Vec::new();
        for slot in 0..self.slots.len() {
            let old = self.slots[slot].serving.take();
            let old_pid = old.and_then(|serial| self.drain(serial));
            self.slots[slot].respawn_at = None;
            self.slots[slot].crashes = 0;
            // A child already starting for the slot (a respawn) takes the place.
            if self
                .procs
                .iter()
                .any(|p| p.slot == slot && matches!(p.role, Role::Starting { .. }))
            {
                continue;
            }
            match self.start_child(slot, Purpose::Respawn) {
                Ok(serial) => {
                    let pid = self.find(serial).map_or(0, |i| self.procs[i].pid);
                    let old = old_pid.map_or_else(|| "(none)".into(), |p| p.to_string());
                    lines.push(format!("worker {slot}: {old} -> {pid}"));
                }
                Err(e) => {
                    lines.push(format!("worker {slot}: cannot start a child: {e}"));
                    self.schedule_respawn(slot, std::time::Duration::ZERO, "restart");
                }
            }
        }
        answer(Ok(&format!("restarting: {}", lines.join(", "))))
    }

    /// Writes `text` to the message file (whole, by rename) and sends SIGUSR1 to every
    /// ready child's process group (a starting child may not handle SIGUSR1 yet, and
    /// its default action ends the process). Returns the answer line.
    pub(crate) fn deliver_message(&mut self, text: &str) -> String {
        let path = self.rundir.join("message");
        let tmp = self.rundir.join("message.tmp");
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(f, "{text}")?;
            f.sync_all()?;
            if let Some((uid, gid)) = self.owner {
                rustix::fs::chown(
                    &tmp,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )?;
            }
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the message file {}", path.display());
            return answer(Err(&format!(
                "cannot write the message file {}: {e}",
                path.display()
            )));
        }
        let mut pids = Vec::new();
        for p in &self.procs {
            if matches!(p.role, Role::Serving { .. } | Role::Probation { .. }) {
                signal_group(p.pid, libc::SIGUSR1);
                pids.push(p.pid.to_string());
            }
        }
        self.messages += 1;
        tracing::info!(
            children = pids.len(),
            "message delivered ({} bytes in {}; SIGUSR1 to {})",
            text.len(),
            path.display(),
            pids.join(", ")
        );
        answer(Ok(&format!(
            "message delivered to {} children ({})",
            pids.len(),
            pids.join(", ")
        )))
    }

    /// New connections are refused from now on (the shutdown began); those accepted
    /// finish as the children drain.
    pub(crate) fn stop_accepting(&mut self) {
        for socket in self.sockets.iter_mut() {
            socket.stop_accepting();
        }
        if !self.sockets.is_empty() {
            tracing::info!(
                sockets = self.sockets.len(),
                "stopped accepting: new connections are refused"
            );
        }
    }
}
