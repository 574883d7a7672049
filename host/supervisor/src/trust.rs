//! Whether the programs `hotswap serve` runs could have been written by someone else.
//!
//! The served command and the `--pre-upgrade` command run with the supervisor's (or
//! `--user`'s) privileges, and the command is looked up again at every start: whoever
//! can replace the file, or write the directory it is in, chooses what runs at the next
//! upgrade. As a strict plugin host does for its plugin directory, the supervisor checks
//! both (the file, after links, and the directories holding the name and the file) and
//! warns, with a log line per problem, when anyone but the owner can write one, or the
//! owner is neither root nor the supervisor's user (nor `--user`). It only warns:
//! refusing would stop a running service at an upgrade for a permission bit.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The file `program` names: as given if it contains a `/`, else the first executable
/// of that name in `PATH` (as `execvp` finds it). `None` if there is none.
pub fn resolve(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why `program` (resolved as [`resolve`] does) is unsafe to run, one sentence per
/// problem: the file or a directory holding it (the one it is named in, and the one it
/// really is in, after links) is writable by its group or other users, or is owned by
/// a user outside `owners` and root. A directory with the sticky bit (`/tmp`) counts as
/// safe for the files in it that others cannot delete. Empty when nothing is wrong or
/// the program cannot be found (starting it reports that).
pub fn warnings(program: &OsStr, owners: &[u32]) -> Vec<String> {
    let Some(path) = resolve(program) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut check = |what: &str, p: &Path, is_dir: bool| {
        let Ok(stat) = rustix::fs::stat(p) else {
            return;
        };
        #[allow(clippy::unnecessary_cast)]
        let (mode, uid) = ((stat.st_mode as u32) & 0o7777, stat.st_uid as u32);
        let sticky = is_dir && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            out.push(format!(
                "{what} {} is writable by {} (mode {mode:04o}): whoever can write it chooses what runs",
                p.display(),
                if mode & 0o002 != 0 { "every user" } else { "its group" }
            ));
        }
        if uid != 0 && !owners.contains(&uid) {
            out.push(format!(
                "{what} {} is owned by uid {uid}, neither root nor the user the supervisor runs as",
                p.display()
            ));
        }
    };
    check("program", &path, false);
    let named_in = path
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .map(Path::to_owned);
    if let Some(dir) = &named_in {
        check("the directory of", dir, true);
    }
    if let Some(real_dir) = std::fs::canonicalize(&path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    {
        let same = named_in
            .as_ref()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .is_some_and(|d| d == real_dir);
        if !same {
            check("the directory of", &real_dir, true);
        }
    }
    out
}

/// The program a `--pre-upgrade` shell command starts: its first word.
pub fn shell_program(command: &str) -> Option<&OsStr> {
    command.split_whitespace().next().map(OsStr::new)
}

/// Logs a warning for each problem [`warnings`] finds with the served command and the
/// pre-upgrade command of `cfg`; `child_uid` is `--user`'s uid, if any.
pub(crate) fn warn_about(cfg: &crate::Config, child_uid: Option<u32>) {
    let mut owners = vec![rustix::process::geteuid().as_raw()];
    owners.extend(child_uid);
    if let Some(program) = cfg.command.first() {
        for w in warnings(program, &owners) {
            tracing::warn!("served command: {w}");
        }
    }
    if let Some(program) = cfg.pre_upgrade.as_deref().and_then(shell_program) {
        for w in warnings(program, &owners) {
            tracing::warn!("--pre-upgrade command: {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writable_programs_and_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let prog = dir.path().join("server");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = [rustix::process::geteuid().as_raw()];
        assert!(warnings(prog.as_os_str(), &me).is_empty());

        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o757)).unwrap();
        let w = warnings(prog.as_os_str(), &me);
        assert!(
            w.len() == 1 && w[0].contains("writable by every user"),
            "{w:?}"
        );
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let w = warnings(prog.as_os_str(), &me);
        assert!(
            w.len() == 1 && w[0].contains("the directory of") && w[0].contains("its group"),
            "{w:?}"
        );
        // A sticky world-writable directory (like /tmp) is fine for a file we own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(warnings(prog.as_os_str(), &me).is_empty());
        // Found in PATH like execvp does; a missing program has nothing to say.
        assert!(resolve(OsStr::new("sh")).is_some());
        assert!(warnings(OsStr::new("no-such-program-hotswap"), &me).is_empty());
        assert_eq!(
            shell_program("  ./migrate --now"),
            Some(OsStr::new("./migrate"))
        );
    }
}
