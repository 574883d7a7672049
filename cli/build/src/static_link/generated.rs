//! The Rust module `--static-linking` generates in the host crate: `static_plugins()`.

use super::markers::GENERATED_MARK;
use super::plugin::LinkedPlugin;
use std::fmt::Write as _;
use std::path::Path;

/// The generated module; `live_prefix` is the prefix the live functions were found by.
pub(crate) fn module(plugins: &[LinkedPlugin], live_prefix: &str) -> String {
    let mut out = format!(
        "{GENERATED_MARK}\n\
         //\n\
         // The plugins `hotswap build --static-linking <pluginDir> <hostDir>` linked into this\n\
         // crate (their dependencies are in the marked block of Cargo.toml). Run it again to\n\
         // link another plugin or to refresh this list; do not edit by hand.\n\
         \n\
         /// Every plugin linked into this binary, for\n\
         /// `hotswap_host::PluginManager::builder(dir).static_plugins(static_plugins())`.\n\
         pub fn static_plugins() -> Vec<hotswap_host::StaticPlugin> {{\n    vec![\n"
    );
    for p in plugins {
        let _ = writeln!(out, "        // {} {}, {}", p.package, p.version, p.path);
        let _ = write!(
            out,
            "        hotswap_host::StaticPlugin::new(&::{}::HOTSWAP_PLUGIN_HEADER)",
            p.lib
        );
        if !p.live_functions.is_empty() {
            let names: Vec<String> = p.live_functions.iter().map(|n| format!("{n:?}")).collect();
            let _ = write!(
                out,
                "\n            .live_functions({live_prefix:?}, &[{}])",
                names.join(", ")
            );
        }
        out.push_str(",\n");
    }
    out.push_str("    ]\n}\n");
    out
}

/// Whether `src/main.rs` or `src/lib.rs` of the host declares the generated module.
pub(crate) fn declares_module(host_dir: &Path) -> bool {
    ["src/main.rs", "src/lib.rs"].iter().any(|f| {
        std::fs::read_to_string(host_dir.join(f)).is_ok_and(|t| t.contains("mod hotswap_static"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(package: &str, path: &str, live: &[&str]) -> LinkedPlugin {
        LinkedPlugin {
            package: package.into(),
            version: "0.1.0".into(),
            lib: package.replace('-', "_"),
            path: path.into(),
            live_functions: live.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn generated_module_lists_every_plugin() {
        let rs = module(
            &[
                plugin("world", "../world", &[]),
                plugin("my-jobs", "../jobs", &["live_send", "live_sweep"]),
            ],
            "live_",
        );
        assert!(rs.starts_with(GENERATED_MARK));
        assert!(rs.contains("hotswap_host::StaticPlugin::new(&::world::HOTSWAP_PLUGIN_HEADER),\n"));
        assert!(rs.contains(
            "hotswap_host::StaticPlugin::new(&::my_jobs::HOTSWAP_PLUGIN_HEADER)\n            \
             .live_functions(\"live_\", &[\"live_send\", \"live_sweep\"]),\n"
        ));
    }
}
