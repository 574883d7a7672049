//! Is a file still mapped into this process? Read from `/proc/self/maps` (Linux), so
//! that unloading is verified rather than assumed (DESIGN invariant 5).

use std::path::Path;

/// Whether any mapping of this process comes from `path`. `None` where the platform
/// has no `/proc/self/maps`.
pub fn is_mapped(path: &Path) -> Option<bool> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let needle = path.to_string_lossy();
    // Only lines holding the path can map it: one search of the text first (this runs
    // after every unload, a thousand times under valgrind in the tests).
    let found = lines_with(&maps, &needle).any(|line| mapping_path(line) == Some(&needle));
    Some(found)
}

/// How a file is mapped in this process (see [`how_mapped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Not at all.
    No,
    /// Only without execute permission: no code of it can run. What a library's own
    /// code mapped of its file and kept (std's backtrace symbolizer maps the object
    /// files it reads and caches them in a static) stays after `dlclose` unmapped the
    /// library.
    DataOnly,
    /// With execute permission: the loader still holds it as a library.
    Code,
}

/// How `path` is mapped. `None` where the platform has no `/proc/self/maps`.
pub fn how_mapped(path: &Path) -> Option<Mapped> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let needle = path.to_string_lossy();
    let mut how = Mapped::No;
    for line in lines_with(&maps, &needle).filter(|l| mapping_path(l) == Some(&needle)) {
        // `addr perms ...`: the permissions are the second column (`r-xp`).
        let executable = line
            .split_whitespace()
            .nth(1)
            .is_some_and(|perms| perms.contains('x'));
        if executable {
            return Some(Mapped::Code);
        }
        how = Mapped::DataOnly;
    }
    Some(how)
}

/// Distinct mapped files whose path starts with `dir`.
pub fn mapped_under(dir: &Path) -> Vec<String> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let prefix = dir.to_string_lossy();
    let mut out: Vec<String> = lines_with(&maps, &prefix)
        .filter_map(mapping_path)
        .filter(|p| p.starts_with(prefix.as_ref()))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The lines of `text` that contain `needle`, found by searching the whole text rather
/// than each line.
fn lines_with<'t>(text: &'t str, needle: &'t str) -> impl Iterator<Item = &'t str> + 't {
    text.match_indices(needle).filter_map(move |(at, _)| {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        // A line holding the needle twice is found twice: report it at its first.
        (text[start..at].find(needle).is_none()).then(|| &text[start..end])
    })
}

/// The path column of a maps line (`addr perms offset dev inode path`), without a
/// trailing ` (deleted)`.
fn mapping_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(' ')?;
        rest = &rest[end..];
    }
    let path = rest.trim();
    if path.is_empty() {
        return None;
    }
    Some(path.strip_suffix(" (deleted)").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_column() {
        let line = "7f00-7f10 r-xp 00000000 fd:01 1234     /tmp/a b/lib.so (deleted)";
        assert_eq!(mapping_path(line), Some("/tmp/a b/lib.so"));
        assert_eq!(mapping_path("7f00-7f10 rw-p 00000000 00:00 0 "), None);
    }

    #[test]
    fn finds_each_line_holding_the_needle_once() {
        let text = "a /x/y\nb /z\nc /x/y /x/y\n/x/y";
        let found: Vec<_> = lines_with(text, "/x/y").collect();
        assert_eq!(found, ["a /x/y", "c /x/y /x/y", "/x/y"]);
        assert_eq!(lines_with(text, "/q").count(), 0);
    }

    #[test]
    fn sees_our_own_executable() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(is_mapped(&exe), Some(true));
        assert_eq!(how_mapped(&exe), Some(Mapped::Code));
        assert_eq!(is_mapped(Path::new("/nonexistent/x.so")), Some(false));
        assert_eq!(how_mapped(Path::new("/nonexistent/x.so")), Some(Mapped::No));
    }

    #[test]
    fn a_file_mapped_for_reading_only_is_data() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        std::fs::write(&path, [7u8; 4096]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a fresh private read-only mapping of a file this test owns, unmapped
        // below and never used otherwise.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(how_mapped(&path), Some(Mapped::DataOnly));
        // SAFETY: the mapping made above, of 4096 bytes.
        assert_eq!(unsafe { libc::munmap(p, 4096) }, 0);
        assert_eq!(how_mapped(&path), Some(Mapped::No));
    }
}
