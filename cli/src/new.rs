//! `hotswap new <dir>`: scaffolds a workspace with a host and a plugin that builds and
//! reloads the first time.
//!
//! The files are templates in `cli/templates/`, compiled into the binary. The host's
//! `main.rs` and the plugin's `lib.rs` are copied as they are (the host's is also an
//! example target of this crate, so it is compiled with it and cannot rot); only the
//! `Cargo.toml`s and the README get the project name and the hotswap dependencies.

use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `hotswap new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create (it must not exist, or be empty); its last component names
    /// the host package
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Depend on the hotswap crates of this checkout by path [default: the checkout this
    /// `hotswap` was built from, if it still exists; else crates.io]
    #[arg(long, value_name = "REPO", conflicts_with = "git")]
    pub hotswap_path: Option<PathBuf>,

    /// Depend on the hotswap crates of this git repository instead
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
}

/// Where the generated workspace gets the hotswap crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A checkout of the hotswap repository (path dependencies).
    Path(PathBuf),
    /// A git repository (git dependencies).
    Git(String),
    /// crates.io, at this crate's version.
    Registry,
}

/// Why `hotswap new` failed. Nothing is written when the directory, its name or the
/// checkout is refused; a write that fails leaves the files written before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    /// The target directory exists and is not empty.
    #[error("{} already exists and is not empty: choose a new directory", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// The directory's last component is not a usable package name.
    #[error("cannot name a package {name:?} (from {}): {why}", dir.display())]
    BadName {
        /// The directory given.
        dir: PathBuf,
        /// Its last component.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `--hotswap-path` is not a checkout of the hotswap repository.
    #[error("{} is not a checkout of hotswap (no plugin-api/Cargo.toml and host/Cargo.toml in it)", path.display())]
    NotACheckout {
        /// The path given.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The templates, as (path in the new workspace, text, whether it has placeholders).
const FILES: &[(&str, &str, bool)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/Cargo.toml.in"),
        true,
    ),
    ("README.md", include_str!("../templates/README.md.in"), true),
    (".gitignore", include_str!("../templates/gitignore"), false),
    (
        "host/Cargo.toml",
        include_str!("../templates/host/Cargo.toml.in"),
        true,
    ),
    (
        "host/src/main.rs",
        include_str!("../templates/host/src/main.rs"),
        false,
    ),
    (
        "plugin/Cargo.toml",
        include_str!("../templates/plugin/Cargo.toml.in"),
        true,
    ),
    (
        "plugin/src/lib.rs",
        include_str!("../templates/plugin/src/lib.rs"),
        false,
    ),
];

/// The hotswap crates the generated workspace depends on, by their folder in the
/// repository.
const CRATES: &[(&str, &str)] = &[
    ("hotswap-host", "host"),
    ("hotswap-plugin-api", "plugin-api"),
];

/// The checkout this binary was built from, if it still exists and is not a copy in
/// cargo's own caches (`cargo install --git` builds from one, which cargo may delete).
pub fn own_checkout() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_owned();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if cargo_home.is_some_and(|home| repo.starts_with(home)) {
        return None;
    }
    is_checkout(&repo).then_some(repo)
}

fn is_checkout(repo: &Path) -> bool {
    CRATES
        .iter()
        .all(|(_, dir)| repo.join(dir).join("Cargo.toml").is_file())
}

/// The `[workspace.dependencies]` lines for the hotswap crates.
fn dependency_lines(source: &Source) -> String {
    let version = env!("CARGO_PKG_VERSION");
    CRATES
        .iter()
        .map(|(name, dir)| match source {
            Source::Path(repo) => {
                format!("{name} = {{ path = {} }}", toml_path(&repo.join(dir)))
            }
            Source::Git(url) => format!("{name} = {{ git = {url:?} }}"),
            Source::Registry => format!("{name} = \"{version}\""),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `path` as a TOML string: a literal one (no escapes: a `\` stays itself) unless it
/// holds a `'`, then a basic one with `\` and `"` escaped.
fn toml_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains('\'') {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("'{text}'")
    }
}

/// Checks `name` as a cargo package name (the host's).
fn check_name(dir: &Path) -> Result<String, NewError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |why| NewError::BadName {
        dir: dir.to_owned(),
        name: name.clone(),
        why,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("it must start with a letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad("only ASCII letters, digits, `-` and `_` are allowed"));
    }
    if name == "greeter" {
        return Err(bad("the plugin is called greeter"));
    }
    Ok(name)
}

/// Writes the workspace into `dir` and returns the files written, in order.
///
/// With [`Source::Path`], the checkout's `Cargo.lock` (if any) is copied too, so the new
/// workspace starts from the dependency versions the checkout was tested with (cargo
/// drops what it does not use).
pub fn scaffold(dir: &Path, source: &Source) -> Result<Vec<PathBuf>, NewError> {
    let name = check_name(dir)?;
    if let Source::Path(repo) = source {
        if !is_checkout(repo) {
            return Err(NewError::NotACheckout { path: repo.clone() });
        }
    }
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(NewError::Exists {
            path: dir.to_owned(),
        });
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| NewError::Write { path, source }
    };
    let deps = dependency_lines(source);
    let mut written = Vec::new();
    for (rel, text, templated) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err(parent))?;
        }
        let text = if *templated {
            text.replace("{{name}}", &name)
                .replace("{{hotswap_deps}}", &deps)
        } else {
            (*text).to_owned()
        };
        std::fs::write(&path, text).map_err(write_err(&path))?;
        written.push(path);
    }
    if let Source::Path(repo) = source {
        let lock = repo.join("Cargo.lock");
        if lock.is_file() {
            let path = dir.join("Cargo.lock");
            std::fs::copy(&lock, &path).map_err(write_err(&path))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// What to type next, for a workspace made in `dir`.
pub fn next_steps(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "next:\n  cd {}\n  hotswap build plugin plugins\n  cargo run -p {name} -- plugins admin.sock\n\
         then, in another terminal in the same directory:\n  \
         hotswap build plugin plugins -- --features v2\n  \
         hotswap reload --admin admin.sock     # or: kill -HUP <pid>",
        dir.display()
    )
}

/// Runs `hotswap new`; returns the exit status.
pub fn run(args: NewArgs) -> i32 {
    let source = match (args.hotswap_path, args.git) {
        (Some(path), _) => Source::Path(std::path::absolute(&path).unwrap_or(path)),
        (None, Some(url)) => Source::Git(url),
        (None, None) => own_checkout().map_or(Source::Registry, Source::Path),
    };
    match scaffold(&args.dir, &source) {
        Ok(files) => {
            let from = match &source {
                Source::Path(repo) => format!("the checkout {}", repo.display()),
                Source::Git(url) => url.clone(),
                Source::Registry => "crates.io".to_owned(),
            };
            println!(
                "created {} ({} files; hotswap crates from {from})",
                args.dir.display(),
                files.len()
            );
            println!("{}", next_steps(&args.dir));
            0
        }
        Err(err) => {
            eprintln!("error: {}", crate::error_chain(&err));
            crate::EXIT_FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name(Path::new("/tmp/my-service")).is_ok());
        for bad in ["/tmp/9lives", "/tmp/a b", "/tmp/greeter", "/"] {
            assert!(check_name(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn dependency_forms() {
        let path = dependency_lines(&Source::Path("/src/hotswap".into()));
        assert!(
            path.contains("hotswap-host = { path = '/src/hotswap/host' }"),
            "{path}"
        );
        assert!(path.contains("hotswap-plugin-api = { path = '/src/hotswap/plugin-api' }"));
        let git = dependency_lines(&Source::Git("https://example.org/hotswap".into()));
        assert!(git.contains(r#"hotswap-host = { git = "https://example.org/hotswap" }"#));
        assert_eq!(toml_path(Path::new(r"/a'b\c")), r#""/a'b\\c""#);
        let reg = dependency_lines(&Source::Registry);
        assert!(reg.contains(&format!("hotswap-host = \"{}\"", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("svc");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "").unwrap();
        let err = scaffold(&target, &Source::Registry).unwrap_err();
        assert!(matches!(err, NewError::Exists { .. }), "{err}");
    }
}
