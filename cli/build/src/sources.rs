//! The plugin's sources: which files count toward the source hash, the hash itself, and
//! the scan for live functions.

use crate::error::BuildError;
use regex::Regex;
use sha2::Digest;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// Files (paths relative to the plugin directory) that always count toward the source hash.
pub const DEFAULT_SOURCE_PATTERN: &str = r"\.rs$|(^|/)Cargo\.(toml|lock)$";

static DEFAULT_SOURCE_REGEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DEFAULT_SOURCE_PATTERN).expect("DEFAULT_SOURCE_PATTERN is a valid regex")
});

/// Whether the file at relative path `rel` counts toward the source hash: Rust sources and
/// cargo manifests, plus `include`, minus `exclude`.
fn counts_toward_source_hash(rel: &str, include: Option<&Regex>, exclude: Option<&Regex>) -> bool {
    let wanted = DEFAULT_SOURCE_REGEX.is_match(rel) || include.is_some_and(|r| r.is_match(rel));
    wanted && !exclude.is_some_and(|r| r.is_match(rel))
}

/// Hash of the plugin's sources: sha256 over, for each counted file in order of its
/// relative path, the path, a NUL byte, the content length (u64, little-endian) and the
/// content. `target/` directories and directories starting with `.` are skipped. Returns
/// the hex hash and the relative paths hashed (`hotswap watch` compares it with the
/// last build's to tell a real edit from a rewrite that changed nothing).
///
/// Fails when the directory or a counted file cannot be read.
pub fn source_hash(
    dir: &Path,
    include: Option<&Regex>,
    exclude: Option<&Regex>,
) -> Result<(String, Vec<String>), BuildError> {
    let digests = source_digests(dir, include, exclude)?;
    Ok((digests.hash, digests.files.into_keys().collect()))
}

/// The [`source_hash`] of a plugin's sources, with each counted file's own sha256: what
/// `hotswap watch` compares with the last build's to name the files an edit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigests {
    /// The source hash, as [`source_hash`] gives it.
    pub hash: String,
    /// Each counted file (relative path) and the hex sha256 of its content.
    pub files: std::collections::BTreeMap<String, String>,
}

impl SourceDigests {
    /// The files added, removed or changed in `self` against `before`, in path order.
    pub fn changed_since(&self, before: &SourceDigests) -> Vec<String> {
        let mut changed: Vec<String> = self
            .files
            .iter()
            .filter(|(rel, sha)| before.files.get(*rel) != Some(*sha))
            .map(|(rel, _)| rel.clone())
            .chain(
                before
                    .files
                    .keys()
                    .filter(|rel| !self.files.contains_key(*rel))
                    .cloned(),
            )
            .collect();
        changed.sort();
        changed
    }
}

/// [`SourceDigests`] of the plugin in `dir`. Fails as [`source_hash`].
pub fn source_digests(
    dir: &Path,
    include: Option<&Regex>,
    exclude: Option<&Regex>,
) -> Result<SourceDigests, BuildError> {
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)?;
    files.retain(|(rel, _)| counts_toward_source_hash(rel, include, exclude));
    files.sort();
    let hex = |digest: &[u8]| {
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let mut hasher = sha2::Sha256::new();
    let mut each = std::collections::BTreeMap::new();
    for (rel, path) in files {
        let contents = std::fs::read(&path).map_err(|source| BuildError::SourceHash {
            path: path.clone(),
            source,
        })?;
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
        each.insert(rel, hex(&sha2::Sha256::digest(&contents)));
    }
    Ok(SourceDigests {
        hash: hex(&hasher.finalize()),
        files: each,
    })
}

/// Names of the functions in the plugin's Rust sources whose name starts with `prefix`
/// (case-insensitive), as Go hotswap collects live functions. The host checks each is
/// registered in `export_plugin!(…, live { … })`. Unreadable files are skipped: the
/// source hash above already read them.
pub(crate) fn live_functions(dir: &Path, files: &[String], prefix: &str) -> Vec<String> {
    let Ok(pattern) = Regex::new(&format!(r"(?i)\bfn\s+({}\w*)", regex::escape(prefix))) else {
        return Vec::new();
    };
    let mut names: Vec<String> = files
        .iter()
        .filter(|rel| rel.ends_with(".rs"))
        .filter_map(|rel| std::fs::read_to_string(dir.join(rel)).ok())
        .flat_map(|text| {
            pattern
                .captures_iter(&text)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every file under `dir` as (`/`-separated path relative to the root, full path), except
/// in `target` and dot-directories. Symbolic links to directories are not followed.
pub(crate) fn collect_files(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), BuildError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::SourceHash { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = entry.file_type().map_err(read_err(&path))?;
        if file_type.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            collect_files(&path, &child_rel, out)?;
        } else if file_type.is_file() || (file_type.is_symlink() && path.is_file()) {
            out.push((child_rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_the_files_changed_added_and_removed_and_agree_with_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[package]").unwrap();
        std::fs::write(root.join("Cargo.lock"), "v1").unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn a() {}").unwrap();
        let before = source_digests(root, None, None).unwrap();
        assert_eq!(before.hash, source_hash(root, None, None).unwrap().0);
        // Rewritten with the same bytes: nothing changed.
        std::fs::write(root.join("Cargo.lock"), "v1").unwrap();
        let same = source_digests(root, None, None).unwrap();
        assert_eq!(same, before);
        assert!(same.changed_since(&before).is_empty());
        std::fs::write(root.join("src/lib.rs"), "fn b() {}").unwrap();
        std::fs::write(root.join("src/new.rs"), "").unwrap();
        std::fs::remove_file(root.join("Cargo.toml")).unwrap();
        let after = source_digests(root, None, None).unwrap();
        assert_ne!(after.hash, before.hash);
        assert_eq!(
            after.changed_since(&before),
            ["Cargo.toml", "src/lib.rs", "src/new.rs"]
        );
    }

    #[test]
    fn source_file_selection() {
        let inc = Regex::new(r"\.sql$").expect("regex");
        let exc = Regex::new(r"^src/generated/").expect("regex");
        for (path, include, exclude, expected) in [
            ("src/lib.rs", None, None, true),
            ("Cargo.toml", None, None, true),
            ("Cargo.lock", None, None, true),
            ("sub/Cargo.toml", None, None, true),
            ("MyCargo.toml", None, None, false),
            ("README.md", None, None, false),
            ("db/q.sql", None, None, false),
            ("db/q.sql", Some(&inc), None, true),
            ("src/generated/x.rs", None, Some(&exc), false),
            ("src/generated/x.rs", Some(&inc), Some(&exc), false),
            ("src/main.rs", None, Some(&exc), true),
        ] {
            assert_eq!(
                counts_toward_source_hash(path, include, exclude),
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn source_hash_follows_sources_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("Cargo.toml", "[package]\nname = \"p\"\n");
        write("src/lib.rs", "pub fn f() {}\n");
        write("README.md", "hello\n");
        write("target/debug/junk.rs", "ignored\n");
        write(".git/hooks/x.rs", "ignored\n");
        write("assets/q.sql", "select 1;\n");

        let (base, files) = source_hash(root, None, None).expect("hash");
        assert_eq!(files, ["Cargo.toml", "src/lib.rs"]);
        assert_eq!(base.len(), 64);
        // Not counted: changing it does not change the hash.
        write("README.md", "changed\n");
        write("target/debug/junk.rs", "changed\n");
        assert_eq!(source_hash(root, None, None).expect("hash").0, base);
        // Counted.
        write("src/lib.rs", "pub fn f() { }\n");
        let changed = source_hash(root, None, None).expect("hash").0;
        assert_ne!(changed, base);
        // --include adds, --exclude removes.
        let inc = Regex::new(r"\.sql$").expect("regex");
        let (with_sql, files) = source_hash(root, Some(&inc), None).expect("hash");
        assert_eq!(files, ["Cargo.toml", "assets/q.sql", "src/lib.rs"]);
        assert_ne!(with_sql, changed);
        let exc = Regex::new(r"^src/").expect("regex");
        let (_, files) = source_hash(root, Some(&inc), Some(&exc)).expect("hash");
        assert_eq!(files, ["Cargo.toml", "assets/q.sql"]);
    }
}
