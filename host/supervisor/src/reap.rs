//! A child the event loop reaps: one it spawned (std's `Child`), or one it adopted
//! from the image it replaced in a self-upgrade (`handoff.rs`): only a pid then, still
//! this process's child, since `execve` keeps the pid and its children.

use rustix::process::{Pid, WaitOptions};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};

/// A child process to reap.
pub(crate) enum Reapable {
    /// Started by this image.
    Spawned(Child),
    /// Started by the image this one replaced.
    Adopted(u32),
}

impl Reapable {
    /// The exit status if the child has exited (and is now reaped), without waiting.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Reapable::Spawned(c) => c.try_wait(),
            Reapable::Adopted(pid) => {
                let pid = pid_of(*pid)?;
                Ok(rustix::process::waitpid(Some(pid), WaitOptions::NOHANG)?
                    .map(|(_, status)| ExitStatus::from_raw(status.as_raw())))
            }
        }
    }

    /// Waits until the child has exited (after SIGKILL).
    pub(crate) fn wait(&mut self) {
        match self {
            Reapable::Spawned(c) => {
                let _ = c.wait();
            }
            Reapable::Adopted(pid) => {
                if let Ok(pid) = pid_of(*pid) {
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                }
            }
        }
    }
}

fn pid_of(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))
}
