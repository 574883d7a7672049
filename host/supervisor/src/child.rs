//! Starting a child: the command, with the listening sockets on descriptors 3, 4, … and
//! the environment systemd would give it (`LISTEN_FDS`, `LISTEN_PID` = its own pid,
//! `LISTEN_FDNAMES`, `NOTIFY_SOCKET`), plus `EINHORN_FDS`; optionally as another user.
//! Also: the resident-memory reading of `--max-rss`.
//!
//! Every child leads a process group of its own (`setpgid(0, 0)` before `execve`), so
//! the supervisor signals the group and reaches whatever the command runs: a wrapper
//! script without `exec`, `npm start`, a server's own workers.
//!
//! `LISTEN_PID` must hold the child's own pid, known only after `fork`. The child's
//! environment is therefore built in the supervisor with a fixed-size slot for it, and
//! the forked child writes its pid there and calls `execve` itself, using only
//! async-signal-safe calls and no allocation.

use crate::sockets::BoundSocket;
use crate::user::Creds;
use hotswap_listen::protocol::{
    EINHORN_FDS, LISTEN_FDNAMES, LISTEN_FDS, LISTEN_FDS_START, LISTEN_PID, MESSAGE_FILE,
    NOTIFY_SOCKET,
};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Variables the supervisor sets for its children; inherited values are dropped.
const OWN_VARS: [&str; 6] = [
    LISTEN_FDS,
    LISTEN_PID,
    LISTEN_FDNAMES,
    EINHORN_FDS,
    NOTIFY_SOCKET,
    MESSAGE_FILE,
];

/// Room for `LISTEN_PID=`, any pid and the terminating NUL.
const LISTEN_PID_LEN: usize = 32;

/// Everything needed to start a child, prepared once.
#[derive(Debug)]
pub(crate) struct Launcher {
    command: Vec<OsString>,
    /// `KEY=VALUE` entries inherited by every child.
    base_env: Vec<CString>,
    fds: Vec<c_int>,
    creds: Option<Creds>,
}

impl Launcher {
    /// Prepares to run `command` with `sockets`, as `creds` if given, telling each
    /// child where `--message` texts arrive (`message_file`). Fails when the command is
    /// empty or holds a NUL byte.
    pub(crate) fn new(
        command: &[OsString],
        sockets: &[BoundSocket],
        creds: Option<Creds>,
        message_file: &Path,
    ) -> io::Result<Launcher> {
        if command.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        }
        for arg in command {
            CString::new(arg.as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("argument {arg:?} holds a NUL byte"),
                )
            })?;
        }
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !OWN_VARS.iter().any(|own| k == own))
            .filter(|(k, _)| k != crate::protocol::HANDOFF)
            .collect();
        if let Some(c) = &creds {
            for (k, v) in [
                ("USER", OsString::from(&c.name)),
                ("LOGNAME", OsString::from(&c.name)),
                ("HOME", c.home.clone()),
                ("SHELL", c.shell.clone()),
            ] {
                env.retain(|(key, _)| key != k);
                env.push((k.into(), v));
            }
        }
        env.push((MESSAGE_FILE.into(), message_file.into()));
        let n = sockets.len();
        if n > 0 {
            let names: Vec<&str> = sockets.iter().map(|s| s.name.as_str()).collect();
            let einhorn: Vec<String> = (0..n)
                .map(|i| (LISTEN_FDS_START as usize + i).to_string())
                .collect();
            env.push((LISTEN_FDS.into(), n.to_string().into()));
            env.push((LISTEN_FDNAMES.into(), names.join(":").into()));
            env.push((EINHORN_FDS.into(), einhorn.join(" ").into()));
        }
        let base_env = env
            .into_iter()
            .filter_map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        Ok(Launcher {
            command: command.to_vec(),
            base_env,
            fds: sockets.iter().map(|s| s.fd.as_raw_fd()).collect(),
            creds,
        })
    }

    /// The command line, for log lines.
    pub(crate) fn describe(&self) -> String {
        self.command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts one child that reports readiness to `notify`. The program is looked up in
    /// `PATH` at every start, so an upgrade runs whatever the path names now.
    pub(crate) fn spawn(&self, notify: &Path) -> io::Result<Child> {
        let program = resolve(&self.command[0])?;
        let mut plan = ExecPlan::new(self, &program, notify)?;
        let mut cmd = Command::new(&program);
        // `spawn` returns once the child has exec-ed, so the group exists before the
        // supervisor can signal it.
        cmd.stdin(Stdio::null()).process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls on memory prepared by the parent; it does not
        // allocate, lock, or touch anything another thread of the parent could hold.
        unsafe {
            cmd.pre_exec(move || Err(plan.exec()));
        }
        cmd.spawn()
    }
}

/// Finds `program` like `execvp`: as given if it holds a `/`, else in `PATH`.
fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok()
            && candidate.is_file()
        {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found in PATH", program.to_string_lossy()),
    ))
}

/// The `execve` arguments, built in the parent, used by the forked child.
struct ExecPlan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const c_char>,
    /// Index of the `LISTEN_PID` entry in `env_ptrs`, if sockets are passed.
    pid_slot: Option<usize>,
    /// `LISTEN_PID=` followed by the pid, once the forked child wrote it.
    listen_pid: Box<[u8; LISTEN_PID_LEN]>,
    /// Where the pid goes in `listen_pid` (after `LISTEN_PID=`).
    pid_at: usize,
    fds: Vec<c_int>,
    creds: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    parent: libc::pid_t,
}

// SAFETY: the raw pointers point into the CStrings owned by the same plan (heap memory
// that does not move with it); the plan is used by one thread of the forked child only.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; it is never shared while used.
unsafe impl Sync for ExecPlan {}

impl ExecPlan {
    fn new(launcher: &Launcher, program: &Path, notify: &Path) -> io::Result<ExecPlan> {
        let nul = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} holds a NUL byte"),
            )
        };
        let program_c =
            CString::new(program.as_os_str().as_bytes()).map_err(|_| nul("the program path"))?;
        let argv: Vec<CString> = launcher
            .command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("an argument")))
            .collect::<io::Result<_>>()?;
        let mut env = launcher.base_env.clone();
        let mut notify_kv = format!("{NOTIFY_SOCKET}=").into_bytes();
        notify_kv.extend_from_slice(notify.as_os_str().as_bytes());
        env.push(CString::new(notify_kv).map_err(|_| nul("the notify socket path"))?);
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const c_char> = env.iter().map(|a| a.as_ptr()).collect();
        let mut listen_pid = Box::new([0u8; LISTEN_PID_LEN]);
        let prefix = format!("{LISTEN_PID}=");
        listen_pid[..prefix.len()].copy_from_slice(prefix.as_bytes());
        let pid_slot = if launcher.fds.is_empty() {
            None
        } else {
            env_ptrs.push(listen_pid.as_ptr().cast());
            Some(env_ptrs.len() - 1)
        };
        env_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            program: program_c,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            pid_slot,
            listen_pid,
            pid_at: prefix.len(),
            fds: launcher.fds.clone(),
            // Only root switches; a supervisor already running as the user (allowed by
            // `check_can_switch`) has nothing to change and no right to setgroups.
            creds: launcher
                .creds
                .as_ref()
                .filter(|_| rustix::process::geteuid().is_root())
                .map(|c| (c.uid, c.gid, c.groups.clone())),
            parent: rustix::process::getpid().as_raw_nonzero().get(),
        })
    }

    /// Runs in the forked child: sockets onto 3, 4, …, drop privileges, ask for SIGTERM
    /// if the supervisor dies, fill in `LISTEN_PID`, exec. Returns only on failure.
    fn exec(&mut self) -> io::Error {
        for (i, &fd) in self.fds.iter().enumerate() {
            let target = LISTEN_FDS_START + i as c_int;
            // SAFETY: plain syscall on descriptors; every source is above the target
            // range (reserved by `reserve_low_fds`), so none is overwritten before use.
            // dup2 clears close-on-exec on the target.
            if unsafe { libc::dup2(fd, target) } < 0 {
                return io::Error::last_os_error();
            }
        }
        if let Some((uid, gid, groups)) = &self.creds {
            // SAFETY: plain syscalls; `groups` is a live buffer of the stated length.
            unsafe {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return io::Error::last_os_error();
                }
            }
        }
        // After the uid change, which would clear it. A supervisor killed outright then
        // still takes its children down instead of leaving them holding the sockets.
        // SAFETY: plain syscalls.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return io::Error::last_os_error();
            }
            if libc::getppid() != self.parent {
                return io::Error::from_raw_os_error(libc::ESRCH);
            }
        }
        if let Some(slot) = self.pid_slot {
            // SAFETY: plain syscall.
            let pid = unsafe { libc::getpid() };
            write_decimal(&mut self.listen_pid[self.pid_at..], pid as u32);
            self.env_ptrs[slot] = self.listen_pid.as_ptr().cast();
        }
        // SAFETY: program, argv and envp are NUL-terminated strings and NULL-terminated
        // pointer arrays owned by `self`, alive until exec replaces the process.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
}

/// Writes `n` in decimal followed by NUL into `out` (which has room for 11 bytes)
/// without allocating.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len] = 0;
}

/// The resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`); `None` if
/// the process is gone or the line is missing.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_without_allocation() {
        let mut buf = [0xffu8; 11];
        write_decimal(&mut buf, 4_294_967_295);
        assert_eq!(&buf[..], b"4294967295\0");
        write_decimal(&mut buf, 7);
        assert_eq!(&buf[..2], b"7\0");
    }

    #[test]
    fn own_rss_is_read() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn programs_are_found_in_path() {
        assert!(resolve(OsStr::new("sh")).is_ok());
        assert!(resolve(OsStr::new("no-such-program-hotswap")).is_err());
    }
}
