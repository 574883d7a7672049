//! The supervisor upgrades itself (`hotswap serve --upgrade-self`, the admin socket's
//! `upgrade-self`), as nginx's binary upgrade and tableflip do, but in place: it
//! re-executes its own program (the path it was started from, so a new `hotswap`
//! installed there by rename is what runs) with the same arguments. `execve` keeps the
//! pid (systemd's `MAINPID` stays right), the children (still its children: they are
//! adopted, not restarted) and every descriptor without close-on-exec: the listening
//! sockets are made inheritable just before. What the new image must know (the
//! sockets' descriptors and names, the children and their slots, the counters, the
//! private directory) travels in the environment variable [`HANDOFF`] as JSON.
//!
//! Only when nothing is in motion (no upgrade, no child starting, draining or on
//! probation, no leftovers of a process group, no planned respawn, no shutdown): what a
//! running step would need (deadlines, readiness watches) is not handed over. Until
//! the new image has installed its handlers (a few milliseconds), a signal acts as on
//! any fresh process.

use crate::error::ServeError;
use crate::protocol::HANDOFF;
use crate::state::{Proc, Role, Supervisor};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the replaced image handed over.
pub(crate) struct Handoff {
    pub rundir: PathBuf,
    pub sockets: Vec<serde_json::Value>,
    pub children: Vec<(u64, u32, usize)>,
    pub counters: serde_json::Value,
}

fn bad(why: String) -> ServeError {
    ServeError::Config(format!(
        "the state handed over by a self-upgrade ({HANDOFF}): {why}"
    ))
}

/// The state from the environment, if this image was started by a self-upgrade.
pub(crate) fn from_env() -> Result<Option<Handoff>, ServeError> {
    let Some(text) = std::env::var_os(HANDOFF) else {
        return Ok(None);
    };
    let v: serde_json::Value = text
        .to_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| bad("not JSON".into()))?;
    let rundir = v["rundir"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| bad("no rundir".into()))?;
    let sockets = v["sockets"].as_array().cloned().unwrap_or_default();
    let mut children = Vec::new();
    for c in v["children"].as_array().into_iter().flatten() {
        let (Some(serial), Some(pid), Some(slot)) =
            (c["serial"].as_u64(), c["pid"].as_u64(), c["slot"].as_u64())
        else {
            return Err(bad(format!("bad child {c}")));
        };
        children.push((serial, pid as u32, slot as usize));
    }
    Ok(Some(Handoff {
        rundir,
        sockets,
        children,
        counters: v["counters"].clone(),
    }))
}

/// The supervisor's private directory (notify sockets, the message file): created, or
/// taken over from the replaced image; removed at exit (not at a self-upgrade: `execve`
/// runs no destructor).
pub(crate) enum RunDir {
    Created(tempfile::TempDir),
    Adopted(PathBuf),
}

impl RunDir {
    pub(crate) fn path(&self) -> &Path {
        match self {
            RunDir::Created(t) => t.path(),
            RunDir::Adopted(p) => p,
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let RunDir::Adopted(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Supervisor<'_> {
    /// Why a self-upgrade cannot happen now, if it cannot.
    pub(crate) fn self_upgrade_blocker(&self) -> Option<String> {
        if let Some(up) = &self.upgrade {
            return Some(format!("upgrade #{} is in progress", up.id));
        }
        if self.pre_upgrade.is_some() {
            return Some("a pre-upgrade command is running".into());
        }
        if let Some(p) = self
            .procs
            .iter()
            .find(|p| !matches!(p.role, Role::Serving { .. }))
        {
            return Some(format!("child {} is not simply serving", p.pid));
        }
        if !self.remnants.is_empty() || self.slots.iter().any(|s| s.respawn_at.is_some()) {
            return Some("a worker is being replaced".into());
        }
        if self.slots.iter().any(|s| s.serving.is_none()) {
            return Some("a worker has no child".into());
        }
        None
    }

    /// Re-executes the supervisor's program with the state handed over. Returns only
    /// if `execve` failed (the sockets are close-on-exec again; nothing changed).
    pub(crate) fn upgrade_self(&mut self) -> io::Error {
        let sockets: Vec<serde_json::Value> = self.sockets.iter().map(|s| s.handoff()).collect();
        let children: Vec<serde_json::Value> = self
            .procs
            .iter()
            .map(|p| serde_json::json!({"serial": p.serial, "pid": p.pid, "slot": p.slot}))
            .collect();
        let state = serde_json::json!({
            "rundir": self.rundir,
            "sockets": sockets,
            "children": children,
            "counters": {
                "next_serial": self.next_serial,
                "next_upgrade": self.next_upgrade,
                "upgrades_ok": self.upgrades_ok,
                "upgrades_failed": self.upgrades_failed,
                "respawns": self.respawns,
                "messages": self.messages,
                "self_upgrades": self.self_upgrades + 1,
            },
        });
        for s in self.sockets.iter() {
            if let Err(e) = s.set_inherited(true) {
                return e;
            }
        }
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| self.exe.clone().into());
        tracing::info!(
            exe = %self.exe.display(),
            children = self.procs.len(),
            "upgrading the supervisor itself: re-executing (same pid, sockets and children kept)"
        );
        let err = std::process::Command::new(&self.exe)
            .arg0(arg0)
            .args(args)
            .env(HANDOFF, state.to_string())
            .exec();
        for s in self.sockets.iter() {
            let _ = s.set_inherited(false);
        }
        err
    }

    /// Takes over the children and counters of the replaced image.
    pub(crate) fn adopt(&mut self, handoff: &Handoff) {
        let now = Instant::now();
        for &(serial, pid, slot) in &handoff.children {
            if slot >= self.slots.len() {
                tracing::warn!(
                    pid,
                    slot,
                    "adopted child has no slot here (fewer --workers?); stopping it"
                );
                crate::signal::signal_group(pid, libc::SIGTERM);
            }
            self.procs.push(Proc {
                serial,
                pid,
                child: crate::reap::Reapable::Adopted(pid),
                slot: slot.min(self.slots.len() - 1),
                role: if slot < self.slots.len() {
                    Role::Serving { since: now }
                } else {
                    Role::Draining {
                        since: now,
                        kill_at: now + self.cfg.drain_timeout,
                        killed: false,
                    }
                },
                spawned: now,
                notify: None,
                cpu: Default::default(),
            });
            if slot < self.slots.len() {
                self.slots[slot].serving = Some(serial);
            }
        }
        let c = &handoff.counters;
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        self.next_serial = n("next_serial").max(1);
        self.next_upgrade = n("next_upgrade").max(1);
        self.upgrades_ok = n("upgrades_ok");
        self.upgrades_failed = n("upgrades_failed");
        self.respawns = n("respawns");
        self.messages = n("messages");
        self.self_upgrades = n("self_upgrades");
        self.announced_ready = true;
        tracing::info!(
            children = handoff.children.len(),
            self_upgrades = self.self_upgrades,
            "supervisor re-executed: adopted its sockets and children"
        );
    }
}
