//! hotswap-build: the build system behind `hotswap build`, as a library.
//!
//! [`build()`] builds a plugin crate with cargo and packages the library, under a unique
//! file name, with its manifest ([`hotswap_manifest::Manifest`]) into a directory a host
//! loads from; [`static_link::link`] links a plugin into a host crate instead
//! (`hotswap build --static-linking`). The `hotswap` command (`hotswap-cli`) only parses
//! arguments into [`BuildOptions`] / [`static_link::StaticLinkOptions`] and calls these.
//!
//! The modules, each using only those listed before it:
//!
//! - [`time`]: UTC timestamps for manifests and build ids;
//! - `command`: commands as shell-quoted lines, for logs;
//! - [`metadata`]: running `cargo metadata` and reading its JSON;
//! - `error`: [`BuildError`];
//! - `log`: progress on stderr, the `--leave-temps` directory;
//! - [`signing`]: `hotswap keygen`, and reading the `--sign` key;
//! - `git`: the git state of the sources;
//! - [`sources`]: the files counted in the source hash, the hash, live functions;
//! - `toolchain`: `rustc -vV`;
//! - `plugin_crate`: the plugin package as `cargo metadata` describes it;
//! - `cargo_build`: the profile, `cargo build`, and the cdylib it reports;
//! - [`packaging`]: file names, build ids, writing the library and its manifest;
//! - [`prune`]: deleting old builds (`--keep`);
//! - `build`: [`build()`] itself, the steps in order;
//! - [`static_link`]: `--static-linking` (uses `metadata`, `error` and `sources` only).
#![warn(missing_docs)]

mod build;
mod cargo_build;
mod command;
mod error;
mod git;
mod log;
pub mod metadata;
pub mod packaging;
mod plugin_crate;
pub mod prune;
pub mod signing;
pub mod sources;
pub mod static_link;
pub mod time;
mod toolchain;

pub use build::{
    build, default_target_dir, running_in_build_script, BuildOptions, BuildOutput,
    DEFAULT_LIVE_PREFIX, DEFAULT_TARGET_SUBDIR,
};
pub use error::BuildError;
pub use metadata::MetadataError;
pub use sources::DEFAULT_SOURCE_PATTERN;
