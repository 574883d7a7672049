//! A plugin crate to link: what its `cargo metadata` and sources say, and the paths the
//! host's `Cargo.toml` names it by.

use super::error::StaticLinkError;
use super::markers::PLUGIN_API;
use super::package::{metadata, package_of};
use crate::metadata::{self, MetadataError};
use crate::sources::{collect_files, live_functions};
use std::path::{Component, Path, PathBuf};

/// One plugin of the host's list, as found in its crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedPlugin {
    /// Package name (the dependency's key in the host's `Cargo.toml`).
    pub package: String,
    /// Crate version.
    pub version: String,
    /// Library crate name: the Rust path of its header is `::<lib>::HOTSWAP_PLUGIN_HEADER`.
    pub lib: String,
    /// The path written in the host's `Cargo.toml` (relative to the host crate when the
    /// two share more than the root directory).
    pub path: String,
    /// Live functions found in its sources (checked at load time, as for a built file).
    pub live_functions: Vec<String>,
}

/// The `hotswap-plugin-api` dependency a host needs to link a plugin: the one the plugin
/// builds against, always with the `static` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiDependency {
    /// A path dependency: the path as written in the host's `Cargo.toml`.
    Path(String),
    /// A registry dependency: the plugin's version requirement.
    Version(String),
}

/// Inspects the plugin crate at `dir` (canonical): its package, library, live functions,
/// and the `hotswap-plugin-api` dependency the host needs (path relative to `host_dir`, or
/// the plugin's version requirement).
pub(crate) fn inspect(
    dir: &Path,
    host_dir: &Path,
    live_prefix: &str,
    log: &dyn Fn(std::fmt::Arguments<'_>),
) -> Result<(LinkedPlugin, ApiDependency), StaticLinkError> {
    let cargo_toml = dir.join("Cargo.toml");
    log(format_args!(
        "reading package metadata of {}",
        cargo_toml.display()
    ));
    let json = metadata(&cargo_toml)?;
    let package = package_of(&json, &cargo_toml)?;
    let format = |detail: &str| StaticLinkError::from(MetadataError::format(&cargo_toml, detail));
    let field = |name: &str| {
        package[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format(&format!("missing package {name}")))
    };
    let name = field("name")?;
    let strings = metadata::strings;
    const LIB_KINDS: [&str; 5] = ["lib", "rlib", "dylib", "cdylib", "staticlib"];
    let targets = package["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let lib =
        metadata::lib_target(targets, &LIB_KINDS).ok_or_else(|| StaticLinkError::NoLibTarget {
            package: name.clone(),
            manifest: cargo_toml.clone(),
        })?;
    let crate_types = strings(&lib["crate_types"]);
    if !crate_types.iter().any(|k| k == "rlib" || k == "lib") {
        return Err(StaticLinkError::NotRlib {
            package: name,
            crate_types,
            manifest: cargo_toml.clone(),
        });
    }
    let lib_name = lib["name"]
        .as_str()
        .ok_or_else(|| format("missing library target name"))?
        .replace('-', "_");
    let api = package["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"].as_str() == Some(PLUGIN_API) && d["kind"].is_null())
        .ok_or_else(|| StaticLinkError::NotAPlugin {
            package: name.clone(),
            manifest: cargo_toml.clone(),
        })?;
    let api_dep = match api["path"].as_str() {
        Some(path) => ApiDependency::Path(relative_to(
            host_dir,
            &std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path)),
        )?),
        None => ApiDependency::Version(api["req"].as_str().unwrap_or("*").to_owned()),
    };
    let mut files = Vec::new();
    collect_files(dir, "", &mut files).map_err(|source| StaticLinkError::Sources {
        dir: dir.to_owned(),
        source,
    })?;
    let sources: Vec<String> = files
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.ends_with(".rs"))
        .collect();
    let live = live_functions(dir, &sources, live_prefix);
    log(format_args!(
        "{name}: library `{lib_name}` ({}), live functions {live:?}",
        crate_types.join(", ")
    ));
    Ok((
        LinkedPlugin {
            version: field("version")?,
            package: name,
            lib: lib_name,
            path: relative_to(host_dir, dir)?,
            live_functions: live,
        },
        api_dep,
    ))
}

/// `target` as written in the host's `Cargo.toml`: relative to `host_dir` when the two
/// share more than the root (so the pair can move together), absolute otherwise.
pub(crate) fn relative_to(host_dir: &Path, target: &Path) -> Result<String, StaticLinkError> {
    let from: Vec<Component<'_>> = host_dir.components().collect();
    let to: Vec<Component<'_>> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let shares_more_than_root = from
        .iter()
        .take(common)
        .any(|c| matches!(c, Component::Normal(_)));
    let path = if shares_more_than_root {
        let mut rel = PathBuf::new();
        for _ in common..from.len() {
            rel.push("..");
        }
        rel.extend(&to[common..]);
        rel
    } else {
        target.to_owned()
    };
    path.to_str()
        .map(|s| s.replace('\\', "/"))
        .ok_or(StaticLinkError::NonUtf8Path { path })
}

/// `path` from the host's `Cargo.toml`, made absolute.
pub(crate) fn absolute_from(host_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_owned()
    } else {
        host_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| relative_to(Path::new(a), Path::new(b)).unwrap();
        assert_eq!(
            rel("/r/demo/slink/host", "/r/demo/hello/world"),
            "../../hello/world"
        );
        assert_eq!(rel("/r/host", "/r/host/plugins/a"), "plugins/a");
        assert_eq!(rel("/tmp/x/host", "/work/main/plugin"), "/work/main/plugin");
    }
}
