//! Facts about the compiler cargo builds with, from `rustc -vV`.

use crate::error::BuildError;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// The compiler cargo will use, as `rustc -vV` reports it.
pub(crate) struct Toolchain {
    /// First line, the same as `rustc --version`.
    pub(crate) version: String,
    /// The `host:` triple.
    pub(crate) host: String,
}

pub(crate) fn rustc_info(plugin_dir: &Path) -> Result<Toolchain, BuildError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let program = rustc.to_string_lossy().into_owned();
    // Run in the plugin directory so a rust-toolchain file there picks the same compiler
    // cargo used.
    let output = Command::new(&rustc)
        .arg("-vV")
        .current_dir(plugin_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BuildError::Spawn {
            program: program.clone(),
            step: "the compiler version",
            source,
        })?;
    if !output.status.success() {
        return Err(BuildError::Rustc {
            program,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    parse_rustc_vv(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| BuildError::Rustc {
        program,
        detail: "no version or host line in its output".into(),
    })
}

fn parse_rustc_vv(text: &str) -> Option<Toolchain> {
    let version = text.lines().next()?.trim();
    let host = text.lines().find_map(|l| l.strip_prefix("host:"))?.trim();
    (!version.is_empty() && !host.is_empty()).then(|| Toolchain {
        version: version.to_owned(),
        host: host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustc_output() {
        let text = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        let t = parse_rustc_vv(text).expect("parsed");
        assert_eq!(t.version, "rustc 1.95.0 (59807616e 2026-04-14)");
        assert_eq!(t.host, "x86_64-unknown-linux-gnu");
        assert!(parse_rustc_vv("").is_none());
    }
}
