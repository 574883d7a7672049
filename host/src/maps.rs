//! Is a file still mapped into this process? Read from `/proc/self/maps` (Linux), so
//! that unloading is verified rather than assumed (DESIGN invariant 5).

use std::path::Path;

/// Whether any mapping of this process comes from `path`. `None` where the platform
/// has no `/proc/self/maps`.
pub fn is_mapped(path: &Path) -> Option<bool> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let needle = path.to_string_lossy();
    Some(
        maps.lines()
            .any(|line| mapping_path(line) == Some(needle.as_ref())),
    )
}

/// Distinct mapped files whose path starts with `dir`.
pub fn mapped_under(dir: &Path) -> Vec<String> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let prefix = dir.to_string_lossy();
    let mut out: Vec<String> = maps
        .lines()
        .filter_map(mapping_path)
        .filter(|p| p.starts_with(prefix.as_ref()))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
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
    fn sees_our_own_executable() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(is_mapped(&exe), Some(true));
        assert_eq!(is_mapped(Path::new("/nonexistent/x.so")), Some(false));
    }
}
