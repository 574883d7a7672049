//! hotswap-host: the library a host program embeds to load `cdylib` plugins through a
//! stable ABI and swap them for new versions while it keeps serving.
//!
//! Start with [`PluginManager`]: it loads the plugins of a directory, serves calls on
//! the current generation ([`PluginManager::invoke_func`] by name, [`Func`] typed), and
//! swaps in a new generation on [`PluginManager::reload`]; [`PluginManager::status`]
//! says what is in memory and why. [`Trigger`] reloads it from SIGHUP ([`signals`]),
//! a file watcher ([`watch`]) or an HTTP endpoint ([`admin`], with [`metrics`]).
//!
//! ```no_run
//! use hotswap_host::{PluginManager, Value};
//! use std::time::Duration;
//!
//! // The README's "Hosting plugins" example, compiled by `cargo test --doc`.
//! let manager = PluginManager::builder("plugins")
//!     .free_delay(Duration::ZERO)          // on_free as soon as drained (the default)
//!     .whitelist(["world"])                // load only these
//!     .reload_callback(|new, old| Ok(()))  // inspect both generations; Err vetoes the swap
//!     .build()?;
//! manager.load_plugins(&Value::Null)?;
//! let hello = manager.invoke_func("world", "greet", &[])?;        // by name, stable values
//! let version = manager.func::<(), u32>("world", "version_number")?; // typed fast path
//! assert_eq!(version.call(())?, 1);
//! // Many calls on one pinned generation, the pin paid once (the batch API).
//! let total = manager.pinned(|p| (0..1000).map(|_| p.call(&version, ()).unwrap_or(0)).sum::<u32>());
//! // ... `hotswap build` a new version into plugins/, then:
//! let report = manager.reload(&Value::Null)?; // loads what changed, swaps atomically
//! println!("{report}\n{:#?}", manager.status());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See ARCHITECTURE.md for the map of modules and where each invariant is enforced.
#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
mod async_func;
mod atfork;
mod batch;
mod block_on;
mod call_stats;
mod callbacks;
mod contain;
mod ctx;
mod deadline;
mod deps;
mod empty_scan;
mod error;
mod func;
mod generation;
mod hooks;
mod layouts;
mod library;
mod loader;
mod manager;
pub mod maps;
pub mod metrics;
mod names;
mod panic_abort;
mod plugin_log;
mod reaper;
mod reloading;
mod report;
mod scan;
mod shared;
pub mod signals;
mod spare;
mod stale;
mod static_plugin;
mod status;
mod threads;
mod timer;
mod trigger;
mod trust;
mod value_depth;
mod vault;
mod verified;
mod version;
#[cfg(feature = "watch")]
pub mod watch;

pub use async_func::{AsyncCall, AsyncFunc};
pub use batch::PinnedCalls;
pub use call_stats::{CallMetrics, Latency, LATENCY_BUCKETS};
pub use error::{
    CallError, Error, LayoutMismatch, LoadError, LoadErrorKind, SignatureMismatch, SignaturePart,
    Step,
};
pub use func::{Func, HostCalls, Interface};
pub use generation::Generation;
// The manifest and plugin-file types that appear in `LoadErrorKind`; everything else of
// the manifest format and the ELF checks is in the `hotswap-manifest` crate.
pub use hotswap_manifest::elf::ElfError;
pub use hotswap_manifest::safe_fs::Loose;
pub use hotswap_manifest::safe_fs::{BadFileName, FileError};
pub use hotswap_manifest::signature::{KeyId, SignatureError, TrustedKey};
pub use hotswap_manifest::ManifestError;
pub use hotswap_plugin_api::typed::{Arg, Args, HostCopy, Ret};
pub use hotswap_plugin_api::LiveData;
pub use hotswap_plugin_api::{Lendable, Pod, Value};
pub use manager::{Builder, PluginInfo, PluginManager, DEFAULT_MAX_UNLOADING};
pub use report::{Outcome, PluginReport, ReloadReport};
pub use scan::BuildInfo;
pub use shared::ReloadCallback;
pub use static_plugin::StaticPlugin;
pub use status::{Footprint, HeapStatus, Status, VersionState, VersionStatus};
pub use trigger::{LastReload, ReloadOutcome, ReloadStats, Source, Trigger};
pub use trust::{TrustMode, TrustStatus};
pub use vault::Vault;
pub use version::Version;

/// The README's Rust examples are the ones `cargo test --doc` compiles: the plugin one in
/// plugin-api's crate docs, the hosting one in this crate's. These tests keep each pair
/// the same, so the README cannot drift from code that compiles.
#[cfg(test)]
mod readme {
    use std::path::Path;

    /// The lines of the README's Rust code block that starts with `first_line`.
    fn readme_block(first_line: &str) -> Vec<String> {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let text = std::fs::read_to_string(readme).unwrap();
        let start = text
            .find(&format!("```rust\n{first_line}\n"))
            .unwrap_or_else(|| panic!("README has a rust block starting {first_line:?}"));
        let block = &text[start + "```rust\n".len()..];
        let end = block.find("\n```").unwrap();
        block[..end].lines().map(str::to_owned).collect()
    }

    /// The lines of the first doc-test block of a crate's `lib.rs` docs (`//! `).
    fn doc_block(lib_rs: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(lib_rs);
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l).to_owned())
            .skip_while(|l| !l.starts_with("```no_run"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            // Lines the docs add: hidden ones and comments saying where the code is from.
            .filter(|l| *l != "#" && !l.starts_with("# ") && !l.starts_with("// The README's"))
            .collect()
    }

    fn assert_same(readme: Vec<String>, doc: Vec<String>, doc_file: &str) {
        let missing: Vec<_> = readme.iter().filter(|l| !doc.contains(l)).collect();
        assert!(
            missing.is_empty(),
            "README lines missing from the compiled example in {doc_file}: {missing:#?}"
        );
    }

    #[test]
    fn the_trust_example_is_the_compiled_one() {
        let readme = readme_block("use hotswap_host::{PluginManager, TrustedKey, Value};");
        assert!(readme.len() > 8);
        assert_same(readme, doc_block("src/trust.rs"), "host/src/trust.rs");
    }

    #[test]
    fn the_plugin_example_is_the_compiled_one() {
        let readme = readme_block(
            "use hotswap_plugin_api::{export_plugin, Error, Imports, Plugin, Result, Value};",
        );
        assert!(readme.len() > 20);
        assert_same(
            readme,
            doc_block("../plugin-api/src/lib.rs"),
            "plugin-api/src/lib.rs",
        );
    }

    #[test]
    fn the_hosting_example_is_the_compiled_one() {
        let readme = readme_block("use hotswap_host::{PluginManager, Value};");
        assert!(readme.len() > 10);
        assert_same(readme, doc_block("src/lib.rs"), "host/src/lib.rs");
    }
}
