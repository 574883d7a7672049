//! hotswap-host: the library a host program embeds to load `cdylib` plugins through a
//! stable ABI and swap them for new versions while it keeps serving.
//!
//! ```no_run
//! use hotswap_host::{PluginManager, Value};
//!
//! let manager = PluginManager::new("plugins")?;
//! manager.load_plugins(&Value::Null)?;
//! let answer = manager.invoke_func("world", "greet", &[])?;
//! println!("{answer}");
//! // ... `hotswap build` a new version into plugins/, then:
//! let report = manager.reload(&Value::Null)?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See ARCHITECTURE.md for the map of modules and where each invariant is enforced.

#[cfg(feature = "admin")]
pub mod admin;
mod deps;
pub mod elf;
mod error;
mod func;
mod generation;
pub mod listen;
mod loader;
mod manager;
pub mod manifest;
pub mod maps;
pub mod metrics;
mod reaper;
pub(crate) mod reclaim;
mod report;
mod scan;
pub mod signals;
mod static_plugin;
mod status;
pub mod supervisor;
mod trigger;
mod vault;
mod version;
#[cfg(feature = "watch")]
pub mod watch;

pub use error::{CallError, Error, LoadError, LoadErrorKind, Step};
pub use func::Func;
pub use generation::Generation;
pub use hotswap_plugin_api::LiveData;
pub use hotswap_plugin_api::{Pod, Value};
pub use manager::{Builder, PluginInfo, PluginManager, ReloadCallback};
pub use report::{Outcome, PluginReport, ReloadReport};
pub use static_plugin::StaticPlugin;
pub use status::{Status, VersionState, VersionStatus};
pub use trigger::{LastReload, ReloadOutcome, ReloadStats, Source, Trigger};
pub use vault::Vault;
pub use version::Version;
