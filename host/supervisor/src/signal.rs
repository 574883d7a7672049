//! Signals as the event loop uses them: their names in log lines, sending one to a
//! child, and how a child ended.

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

/// Sends `sig` to the child `pid`. The loop reaps its children itself, so `pid` is
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

/// How a child ended, for log lines: `exit status 1`, `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", signame(sig)),
        _ => status.to_string(),
    }
}
