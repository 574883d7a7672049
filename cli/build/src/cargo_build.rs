//! Running `cargo build` on the plugin: the profile and target, where cargo puts the
//! cdylib, and reading its name from cargo's JSON messages.

use crate::command::describe_command;
use crate::error::BuildError;
use crate::log::{Log, Temps};
use crate::metadata;
use crate::plugin_crate::PackageInfo;
use serde_json::Value;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::ffi::OsString;
use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cargo profile to build with: its name (for the manifest), the directory cargo puts
/// its output in, and the flag to pass (none when the user's cargo arguments choose it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) name: String,
    pub(crate) dir: String,
    pub(crate) flag: Option<&'static str>,
}

impl Profile {
    /// Release unless `debug`; a `--profile <name>` or `--release` among the cargo
    /// arguments wins over the default (and conflicts with `--debug`).
    pub(crate) fn choose(debug: bool, cargo_args: &[String]) -> Result<Profile, BuildError> {
        let explicit = cargo_arg_value(cargo_args, "--profile");
        let release_flag = cargo_args.iter().any(|a| a == "--release" || a == "-r");
        if debug && (explicit.is_some() || release_flag) {
            return Err(BuildError::ProfileConflict(
                "--debug asks for the dev profile, but the cargo arguments choose another".into(),
            ));
        }
        let (name, flag) = match explicit {
            Some(name) => (name, None),
            None if release_flag => ("release".to_owned(), None),
            None if debug => ("dev".to_owned(), None),
            None => ("release".to_owned(), Some("--release")),
        };
        let dir = match name.as_str() {
            "dev" | "test" => "debug".to_owned(),
            "release" | "bench" => "release".to_owned(),
            other => other.to_owned(),
        };
        Ok(Profile { name, dir, flag })
    }
}

/// Value of `flag` in cargo arguments (`--flag value` or `--flag=value`), the last one wins.
pub(crate) fn cargo_arg_value(args: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            found = iter.next().cloned();
        } else if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            found = Some(value.to_owned());
        }
    }
    found
}

/// Where cargo puts the cdylib of `lib_name`: `<target_dir>/[<triple>/]<profile>/<file>`.
pub(crate) fn expected_artifact(
    target_dir: &Path,
    triple: Option<&str>,
    profile_dir: &str,
    lib_name: &str,
) -> PathBuf {
    let mut path = target_dir.to_owned();
    if let Some(triple) = triple {
        // A custom target given as a path to a JSON spec builds into a directory named
        // after the file.
        let dir = triple
            .strip_suffix(".json")
            .map(|p| Path::new(p).file_name().unwrap_or_default().to_owned())
            .unwrap_or_else(|| triple.into());
        path.push(dir);
    }
    path.push(profile_dir);
    path.push(format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}"));
    path
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn cargo_build(
    cargo: &OsString,
    plugin_dir: &Path,
    package: &PackageInfo,
    target_dir: &Path,
    profile: &Profile,
    cargo_args: &[String],
    log: &Log,
    temps: &Temps,
) -> Result<PathBuf, BuildError> {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--lib", "--manifest-path"])
        .arg(&package.manifest_path)
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(flag) = profile.flag {
        cmd.arg(flag);
    }
    cmd.arg("--message-format=json-render-diagnostics")
        .args(cargo_args)
        .current_dir(plugin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let described = describe_command(&cmd);
    log.step(format_args!("running {described}"));
    temps.save("cargo-build-command.txt", described.as_bytes());
    let mut child = cmd.spawn().map_err(|source| BuildError::Spawn {
        program: cargo.to_string_lossy().into_owned(),
        step: "cargo build",
        source,
    })?;
    let mut messages = temps
        .path("cargo-build-messages.jsonl")
        .and_then(|p| std::fs::File::create(p).ok());
    let mut artifact = None;
    let mut read_error = None;
    if let Some(stdout) = child.stdout.take() {
        for line in io::BufReader::new(stdout).lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            if let Some(file) = messages.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(msg) => {
                    if let Some(path) = artifact_in_message(&msg, package) {
                        artifact = Some(path);
                    }
                }
                // Not one of cargo's messages: pass it on rather than swallow it.
                Err(_) => eprintln!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(BuildError::CargoOutput)?;
    if !status.success() {
        return Err(BuildError::Cargo {
            manifest: package.manifest_path.clone(),
            status,
        });
    }
    if let Some(e) = read_error {
        return Err(BuildError::CargoOutput(e));
    }
    artifact.ok_or_else(|| BuildError::NoArtifact {
        package: package.name.clone(),
    })
}

/// The cdylib file named by a `compiler-artifact` message of `package`, if `msg` is one.
fn artifact_in_message(msg: &Value, package: &PackageInfo) -> Option<PathBuf> {
    if msg["reason"].as_str() != Some("compiler-artifact") {
        return None;
    }
    let ours = msg["package_id"].as_str() == Some(package.id.as_str())
        || msg["manifest_path"]
            .as_str()
            .is_some_and(|m| metadata::same_path(Path::new(m), &package.manifest_path));
    if !ours {
        return None;
    }
    msg["filenames"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.ends_with(DLL_SUFFIX))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_argument_values() {
        let args: Vec<String> = ["--features", "v2", "--target=aarch64-unknown-linux-gnu"]
            .map(String::from)
            .into();
        assert_eq!(
            cargo_arg_value(&args, "--target").as_deref(),
            Some("aarch64-unknown-linux-gnu")
        );
        assert_eq!(cargo_arg_value(&args, "--features").as_deref(), Some("v2"));
        assert_eq!(cargo_arg_value(&args, "--profile"), None);
        // `--target-dir` is not `--target`.
        let args: Vec<String> = ["--target-dir=x"].map(String::from).into();
        assert_eq!(cargo_arg_value(&args, "--target"), None);
    }

    #[test]
    fn profiles_and_artifact_paths() {
        let none: [String; 0] = [];
        let release = Profile::choose(false, &none).expect("release");
        assert_eq!(
            (release.name.as_str(), release.dir.as_str(), release.flag),
            ("release", "release", Some("--release"))
        );
        let dev = Profile::choose(true, &none).expect("dev");
        assert_eq!(
            (dev.name.as_str(), dev.dir.as_str(), dev.flag),
            ("dev", "debug", None)
        );
        let custom = Profile::choose(false, &["--profile".into(), "fast".into()]).expect("custom");
        assert_eq!(
            (custom.name.as_str(), custom.dir.as_str(), custom.flag),
            ("fast", "fast", None)
        );
        assert!(Profile::choose(true, &["--release".into()]).is_err());

        let t = Path::new("/t");
        assert_eq!(
            expected_artifact(t, None, "release", "my_plugin"),
            PathBuf::from(format!("/t/release/{DLL_PREFIX}my_plugin{DLL_SUFFIX}"))
        );
        assert_eq!(
            expected_artifact(t, Some("x86_64-unknown-linux-gnu"), "debug", "w"),
            PathBuf::from(format!(
                "/t/x86_64-unknown-linux-gnu/debug/{DLL_PREFIX}w{DLL_SUFFIX}"
            ))
        );
        assert_eq!(
            expected_artifact(t, Some("specs/my-target.json"), "debug", "w"),
            PathBuf::from(format!("/t/my-target/debug/{DLL_PREFIX}w{DLL_SUFFIX}"))
        );
    }

    #[test]
    fn artifact_messages() {
        let package = PackageInfo {
            name: "world".into(),
            version: "0.1.0".into(),
            id: "path+file:///ws/world#0.1.0".into(),
            lib_name: "world".into(),
            manifest_path: "/ws/world/Cargo.toml".into(),
            target_directory: "/ws/target".into(),
        };
        let msg: Value = serde_json::json!({
            "reason": "compiler-artifact",
            "package_id": "path+file:///ws/world#0.1.0",
            "manifest_path": "/ws/world/Cargo.toml",
            "filenames": ["/t/release/libworld.rlib", format!("/t/release/libworld{DLL_SUFFIX}")],
            "fresh": true
        });
        assert_eq!(
            artifact_in_message(&msg, &package),
            Some(PathBuf::from(format!("/t/release/libworld{DLL_SUFFIX}")))
        );
        let mut other = msg.clone();
        other["package_id"] = "registry+https://x#dep@1.0.0".into();
        other["manifest_path"] = "/registry/dep/Cargo.toml".into();
        assert_eq!(artifact_in_message(&other, &package), None);
        let finished = serde_json::json!({"reason": "build-finished", "success": true});
        assert_eq!(artifact_in_message(&finished, &package), None);
    }
}
