//! Reading `cargo metadata` output, for `hotswap build` and `--static-linking`: each
//! runs cargo and reports errors its own way; the JSON is read here.

use serde_json::Value;
use std::path::Path;

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
