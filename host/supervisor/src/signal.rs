//! Signals as the event loop uses them: their names in log lines, sending one to a
//! child's whole process group (or to one process), and how a child ended.

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use std::process::ExitStatus;

/// A signal's name, for log lines.
pub(crate) fn signame(sig: i32) -> &'static str {
    match sig {
        SIGHUP => "SIGHUP",
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGQUIT => "SIGQUIT",
        SIGUSR2 => "SIGUSR2",
        SIGCHLD => "SIGCHLD",
        libc::SIGKILL => "SIGKILL",
        _ => "signal",
    }
}

/// Sends `sig` to the process `pid` only (the `--pre-upgrade` command). The loop reaps its children itself, so `pid` is
/// still this child (alive or a zombie), never a recycled pid.
pub(crate) fn send_signal(pid: u32, sig: i32) {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let signal = rustix::process::Signal::from_named_raw(sig);
    if let (Some(target), Some(signal)) = (target, signal) {
        if let Err(e) = rustix::process::kill_process(target, signal) {
            tracing::warn!(pid, signal = signame(sig), error = %e, "cannot signal child");
        }
    }
}

/// Sends `sig` to every process of child `pgid`'s process group: each child is started
/// as the leader of a group of its own (`child.rs`), so a wrapper (`sh start.sh`
/// without `exec`, `npm start`) and the server it runs both get it. While the leader is
/// not reaped (the loop reaps its children itself) the group id cannot name another
/// group; after that, see [`group_alive`].
pub(crate) fn signal_group(pgid: u32, sig: i32) {
    let target = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let signal = rustix::process::Signal::from_named_raw(sig);
    if let (Some(target), Some(signal)) = (target, signal) {
        match rustix::process::kill_process_group(target, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                tracing::warn!(pgid, signal = signame(sig), error = %e, "cannot signal child's process group")
            }
        }
    }
}

/// Whether any process is left in process group `pgid` (a leader that exited and was
/// reaped leaves its group to its other members; the id is not reused while any is
/// alive, and the loop stops watching a group once it is empty).
pub(crate) fn group_alive(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// How a child ended, for log lines: `exit status 1`, `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", signame(sig)),
        _ => status.to_string(),
    }
}
