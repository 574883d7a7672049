//! `cargo metadata` of the host and plugin crates, failing as a [`StaticLinkError`].

use super::error::StaticLinkError;
use crate::metadata::MetadataError;
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;

/// `cargo metadata --no-deps` of the package at `cargo_toml`, as JSON.
pub(crate) fn metadata(cargo_toml: &Path) -> Result<Value, StaticLinkError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    Ok(crate::metadata::run(&cargo, cargo_toml, |_| ())?.1)
}

/// The package whose manifest is `cargo_toml` in `cargo metadata` output.
pub(crate) fn package_of<'a>(
    json: &'a Value,
    cargo_toml: &Path,
) -> Result<&'a Value, StaticLinkError> {
    crate::metadata::package_of(json, cargo_toml).ok_or_else(|| {
        MetadataError::format(
            cargo_toml,
            "it lists no package with this manifest (a virtual workspace manifest? \
             point at the crate's own directory)",
        )
        .into()
    })
}
