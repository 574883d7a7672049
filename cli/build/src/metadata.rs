//! Running `cargo metadata` and reading its output, for `hotswap build` and
//! `--static-linking`.

use serde_json::Value;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Why `cargo metadata` told nothing usable about a package.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// cargo could not be started.
    #[error("cannot run `{program}` for cargo metadata")]
    Spawn {
        /// The program that was run.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `cargo metadata` exited with an error.
    #[error("`cargo metadata` failed for {} ({status}): {stderr}", manifest.display())]
    Failed {
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
        /// The exit status.
        status: ExitStatus,
        /// What cargo printed on stderr.
        stderr: String,
    },
    /// `cargo metadata` printed something this command does not understand.
    #[error("cannot understand the output of `cargo metadata` for {}: {detail}", manifest.display())]
    Format {
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl MetadataError {
    /// A [`MetadataError::Format`] about the package at `manifest`.
    pub(crate) fn format(manifest: &Path, detail: impl Into<String>) -> MetadataError {
        MetadataError::Format {
            manifest: manifest.to_owned(),
            detail: detail.into(),
        }
    }
}

/// `cargo metadata --format-version 1 --no-deps` of the package at `cargo_toml`, run
/// with `cargo` from the package's directory; `announce` sees the command first (to log
/// it). Returns the output as printed and as JSON.
pub(crate) fn run(
    cargo: &OsStr,
    cargo_toml: &Path,
    announce: impl FnOnce(&Command),
) -> Result<(Vec<u8>, Value), MetadataError> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--manifest-path",
    ])
    .arg(cargo_toml)
    .current_dir(cargo_toml.parent().unwrap_or(Path::new(".")))
    .stdin(Stdio::null());
    announce(&cmd);
    let output = cmd.output().map_err(|source| MetadataError::Spawn {
        program: cargo.to_string_lossy().into_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(MetadataError::Failed {
            manifest: cargo_toml.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let json = serde_json::from_slice(&output.stdout)
        .map_err(|e| MetadataError::format(cargo_toml, e.to_string()))?;
    Ok((output.stdout, json))
}

/// The strings of a JSON array (none when it is not an array).
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// `a` and `b` name the same file: equal, or equal once canonicalized.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The package of `cargo metadata` output whose manifest is `cargo_toml`.
pub(crate) fn package_of<'a>(json: &'a Value, cargo_toml: &Path) -> Option<&'a Value> {
    json["packages"].as_array().into_iter().flatten().find(|p| {
        p["manifest_path"]
            .as_str()
            .is_some_and(|m| same_path(Path::new(m), cargo_toml))
    })
}

/// The first of a package's `targets` whose kind is one of `kinds`: its library.
pub(crate) fn lib_target<'a>(targets: &'a [Value], kinds: &[&str]) -> Option<&'a Value> {
    targets.iter().find(|t| {
        strings(&t["kind"])
            .iter()
            .any(|k| kinds.contains(&k.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_manifest_is_a_failure_naming_it_and_cargos_words() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[package\nname = ").unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let err = run(&cargo, &manifest, |_| ()).unwrap_err();
        assert!(matches!(err, MetadataError::Failed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("`cargo metadata` failed for"), "{text}");
        assert!(text.contains("Cargo.toml"), "{text}");
    }

    #[test]
    fn a_missing_cargo_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        let err = run(OsStr::new("/nonexistent/cargo"), &manifest, |_| ()).unwrap_err();
        assert!(matches!(err, MetadataError::Spawn { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot run `/nonexistent/cargo` for cargo metadata"
        );
    }
}
