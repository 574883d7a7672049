//! The git state of a plugin's sources, recorded in its manifest.

use crate::error::BuildError;
use std::path::Path;

/// The git state recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitState {
    /// Full hex id of HEAD's commit; `None` outside git or before the first commit.
    pub(crate) commit: Option<String>,
    /// Whether anything under the plugin directory differs from HEAD (untracked files
    /// count, ignored ones do not); `None` outside git.
    pub(crate) dirty: Option<bool>,
}

/// The git state of the sources in `plugin_dir` (canonical); nothing known (not an error)
/// outside git or in a bare repository. Fails with [`BuildError::Git`] when libgit2 fails.
pub(crate) fn git_state(plugin_dir: &Path) -> Result<GitState, BuildError> {
    let git_err = |source| BuildError::Git {
        path: plugin_dir.to_owned(),
        source,
    };
    let repo = match git2::Repository::discover(plugin_dir) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Ok(GitState {
                commit: None,
                dirty: None,
            })
        }
        Err(e) => return Err(git_err(e)),
    };
    let Some(workdir) = repo.workdir() else {
        // A bare repository has no work tree the sources could be in.
        return Ok(GitState {
            commit: None,
            dirty: None,
        });
    };
    let commit = match repo.head() {
        Ok(head) => Some(head.peel_to_commit().map_err(git_err)?.id().to_string()),
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
            ) =>
        {
            None
        }
        Err(e) => return Err(git_err(e)),
    };
    let workdir = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_owned());
    // Forward slashes, as git reports paths; empty when the plugin is the whole repository.
    let prefix = plugin_dir
        .strip_prefix(&workdir)
        .map(|rel| {
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .include_unmodified(false);
    if !prefix.is_empty() {
        options.pathspec(&prefix);
    }
    let statuses = repo.statuses(Some(&mut options)).map_err(git_err)?;
    let dirty = statuses.iter().any(|entry| {
        let status = entry.status();
        status != git2::Status::CURRENT
            && !status.contains(git2::Status::IGNORED)
            && path_is_under(entry.path_bytes(), prefix.as_bytes())
    });
    Ok(GitState {
        commit,
        dirty: Some(dirty),
    })
}

/// `path` is `dir` or inside it (both `/`-separated, relative); everything is under "".
fn path_is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// `abcdef12`, `abcdef12+dirty`, `nogit` or `nogit+dirty`, for people.
pub(crate) fn describe_git(commit: Option<&str>, dirty: Option<bool>) -> String {
    let mut out = short_commit(commit).to_owned();
    if dirty == Some(true) {
        out.push_str("+dirty");
    }
    out
}

/// First 8 hex digits of `commit`, or `nogit`.
pub(crate) fn short_commit(commit: Option<&str>) -> &str {
    match commit {
        Some(c) => c.get(..8).unwrap_or(c),
        None => "nogit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_state_of_a_subdirectory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let plugin = root.join("plugins/p");
        std::fs::create_dir_all(&plugin).expect("mkdir");
        std::fs::create_dir_all(root.join("elsewhere")).expect("mkdir");

        // Outside git: nothing known, not an error.
        assert_eq!(
            git_state(&plugin).expect("no repo"),
            GitState {
                commit: None,
                dirty: None
            }
        );

        let repo = git2::Repository::init(&root).expect("init");
        std::fs::write(plugin.join("lib.rs"), "v1").expect("write");
        // Unborn HEAD: no commit, but the new file makes it dirty.
        let state = git_state(&plugin).expect("unborn");
        assert_eq!(state.commit, None);
        assert_eq!(state.dirty, Some(true));

        std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .expect("commit");

        let clean = git_state(&plugin).expect("clean");
        assert_eq!(clean.commit, Some(commit.to_string()));
        assert_eq!(clean.dirty, Some(false));

        // Changes elsewhere in the repository and ignored files do not count.
        std::fs::write(root.join("elsewhere/x.rs"), "x").expect("write");
        std::fs::write(plugin.join("build.log"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("still clean").dirty, Some(false));
        // A sibling directory sharing the prefix does not count either.
        std::fs::create_dir_all(root.join("plugins/p2")).expect("mkdir");
        std::fs::write(root.join("plugins/p2/lib.rs"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("still clean").dirty, Some(false));

        // Untracked, modified and deleted files under the plugin do.
        std::fs::write(plugin.join("new.rs"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("untracked").dirty, Some(true));
        std::fs::remove_file(plugin.join("new.rs")).expect("rm");
        std::fs::write(plugin.join("lib.rs"), "v2").expect("write");
        assert_eq!(git_state(&plugin).expect("modified").dirty, Some(true));
        std::fs::remove_file(plugin.join("lib.rs")).expect("rm");
        assert_eq!(git_state(&plugin).expect("deleted").dirty, Some(true));
    }

    #[test]
    fn descriptions() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(describe_git(Some(commit), Some(true)), "01234567+dirty");
        assert_eq!(describe_git(None, None), "nogit");
    }

    #[test]
    fn path_prefixes() {
        assert!(path_is_under(b"a/b/c.rs", b"a/b"));
        assert!(path_is_under(b"a/b", b"a/b"));
        assert!(!path_is_under(b"a/bc/d.rs", b"a/b"));
        assert!(path_is_under(b"anything", b""));
    }
}
