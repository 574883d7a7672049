//! The plugin crate as `cargo metadata` describes it: its name, version, library and
//! target directory, and the check that it builds a cdylib.

use crate::command::describe_command;
use crate::error::BuildError;
use crate::log::{Log, Temps};
use crate::metadata::{self, MetadataError};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The facts about the plugin package `cargo metadata` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Cargo's package id, to recognise the package's artifact among cargo's messages.
    pub(crate) id: String,
    /// Library target name, `-` replaced by `_` as in the file cargo writes.
    pub(crate) lib_name: String,
    pub(crate) manifest_path: PathBuf,
    pub(crate) target_directory: PathBuf,
}

pub(crate) fn cargo_metadata(
    cargo: &OsString,
    cargo_toml: &Path,
    log: &Log,
    temps: &Temps,
) -> Result<PackageInfo, BuildError> {
    let (printed, json) = metadata::run(cargo, cargo_toml, |cmd| {
        log.step(format_args!("running {}", describe_command(cmd)))
    })?;
    temps.save("cargo-metadata.json", &printed);
    parse_metadata(&json, cargo_toml)
}

/// Picks the package whose manifest is `cargo_toml` out of `cargo metadata` output and
/// checks it builds a cdylib.
fn parse_metadata(json: &Value, cargo_toml: &Path) -> Result<PackageInfo, BuildError> {
    let shape = |what: &str| MetadataError::format(cargo_toml, format!("missing {what}"));
    let target_directory = json["target_directory"]
        .as_str()
        .ok_or_else(|| shape("target_directory"))?;
    if json["packages"].as_array().is_none() {
        return Err(shape("packages").into());
    }
    let package =
        metadata::package_of(json, cargo_toml).ok_or_else(|| BuildError::PackageNotFound {
            manifest: cargo_toml.to_owned(),
        })?;
    let field = |name: &str| {
        package[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| shape(&format!("package {name}")))
    };
    let name = field("name")?;
    let strings = metadata::strings;
    const LIB_KINDS: [&str; 6] = ["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"];
    let targets = package["targets"]
        .as_array()
        .ok_or_else(|| shape("package targets"))?;
    let lib = metadata::lib_target(targets, &LIB_KINDS).ok_or_else(|| BuildError::NoLibTarget {
        package: name.clone(),
        manifest: cargo_toml.to_owned(),
    })?;
    let crate_types = strings(&lib["crate_types"]);
    if !crate_types.iter().any(|k| k == "cdylib")
        && !strings(&lib["kind"]).contains(&"cdylib".into())
    {
        return Err(BuildError::NotCdylib {
            package: name,
            manifest: cargo_toml.to_owned(),
        });
    }
    let lib_name = lib["name"]
        .as_str()
        .ok_or_else(|| shape("library target name"))?
        .replace('-', "_");
    Ok(PackageInfo {
        version: field("version")?,
        id: field("id")?,
        manifest_path: cargo_toml.to_owned(),
        target_directory: PathBuf::from(target_directory),
        lib_name,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_picks_the_plugin_package() {
        let json: Value = serde_json::from_str(
            r#"{
              "target_directory": "/ws/target",
              "packages": [
                {"name": "other", "version": "1.0.0", "id": "other-id",
                 "manifest_path": "/ws/other/Cargo.toml",
                 "targets": [{"name": "other", "kind": ["lib"], "crate_types": ["lib"]}]},
                {"name": "my-plugin", "version": "0.2.0", "id": "plugin-id",
                 "manifest_path": "/ws/plug/Cargo.toml",
                 "targets": [
                   {"name": "build-script-build", "kind": ["custom-build"], "crate_types": ["bin"]},
                   {"name": "my-plugin", "kind": ["cdylib"], "crate_types": ["cdylib"]}
                 ]}
              ]
            }"#,
        )
        .expect("json");
        let info = parse_metadata(&json, Path::new("/ws/plug/Cargo.toml")).expect("plugin");
        assert_eq!(info.name, "my-plugin");
        assert_eq!(info.version, "0.2.0");
        assert_eq!(info.lib_name, "my_plugin");
        assert_eq!(info.id, "plugin-id");
        assert_eq!(info.target_directory, PathBuf::from("/ws/target"));

        let err = parse_metadata(&json, Path::new("/ws/other/Cargo.toml")).expect_err("rlib");
        assert!(matches!(err, BuildError::NotCdylib { .. }));
        assert!(err
            .to_string()
            .contains(r#"is not a cdylib: add `crate-type = ["cdylib"]` under [lib]"#));
        let err = parse_metadata(&json, Path::new("/ws/none/Cargo.toml")).expect_err("none");
        assert!(matches!(err, BuildError::PackageNotFound { .. }));
    }
}
