//! Private directories left by managers of processes that are gone.
//!
//! Each manager keeps the private copies of the libraries it loads in a directory of its
//! own, `<temp>/hotswap-<pid>-<random>`, removed when the manager is dropped. A process
//! that is killed, aborts or crashes never drops it, and its copies (one per version it
//! had loaded) stay on disk; a host that `hotswap serve` restarts after every crash would
//! fill the disk with them. So a new manager removes the directories of this pattern
//! whose process no longer exists, before it makes its own.

use std::path::Path;

/// How many stale directories [`sweep`] removed, and how many it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub removed: usize,
    pub failed: usize,
}

/// The pid in a private directory's name, `hotswap-<pid>-<random>`.
fn pid_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("hotswap-")?;
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether process `pid` exists (a zombie counts; so does one of another user).
fn alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Removes, in `temp`, every private directory of a manager whose process is gone: a
/// real directory (not a link) named `hotswap-<pid>-<random>`, owned by this process's
/// user, whose `pid` is not this process and names no live process. Anything else is
/// left alone, whatever it holds; errors are counted, never fatal.
pub(crate) fn sweep(temp: &Path) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(temp) else {
        return swept;
    };
    let me = std::process::id() as i32;
    let uid = rustix::process::geteuid();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(pid_of) else {
            continue;
        };
        if pid == me || alive(pid) {
            continue;
        }
        let path = entry.path();
        // Not followed: a link or anything but a directory of ours is not ours to remove.
        let Ok(stat) = rustix::fs::lstat(&path) else {
            continue;
        };
        let is_dir =
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
        if !is_dir || stat.st_uid != uid.as_raw() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => swept.removed += 1,
            Err(_) => swept.failed += 1,
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_private_directories_are_parsed_strictly() {
        assert_eq!(pid_of("hotswap-123-AbC"), Some(123));
        for name in [
            "hotswap-123-",
            "hotswap--abc",
            "hotswap-0-abc",
            "hotswap-12a-abc",
            "hotswap-test-abc",
            "other-123-abc",
        ] {
            assert_eq!(pid_of(name), None, "{name}");
        }
    }

    #[test]
    fn only_directories_of_dead_processes_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        // A pid above the kernel's largest names no process. (Not a child that exited:
        // spawning one here would hold other tests' descriptors for a moment.)
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let dead = pid_max + 1;
        let me = std::process::id();
        let stale = temp.path().join(format!("hotswap-{dead}-x1"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("probe.so"), b"copy").unwrap();
        let mine = temp.path().join(format!("hotswap-{me}-x2"));
        std::fs::create_dir(&mine).unwrap();
        // pid 1 always exists.
        let live = temp.path().join("hotswap-1-x3");
        std::fs::create_dir(&live).unwrap();
        // Not a directory, and a link to a directory: left alone.
        let file = temp.path().join(format!("hotswap-{dead}-x4"));
        std::fs::write(&file, b"not a directory").unwrap();
        let target = temp.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let link = temp.path().join(format!("hotswap-{dead}-x5"));
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let swept = sweep(temp.path());
        assert_eq!(
            swept,
            Swept {
                removed: 1,
                failed: 0
            }
        );
        assert!(!stale.exists());
        for kept in [&mine, &live, &file, &link, &target] {
            assert!(kept.symlink_metadata().is_ok(), "{} kept", kept.display());
        }
    }
}
