//! hotswap-manifest: what `hotswap build` and a hotswap host agree on about a plugin
//! file, with no dependency on either.
//!
//! - the manifest written beside every built plugin ([`Manifest`], read and written as
//!   JSON; [`MANIFEST_FORMAT`], [`MANIFEST_SUFFIX`], [`sha256_hex`]);
//! - [`elf`]: pre-flight checks on a plugin file's bytes (complete, a shared library for
//!   this machine, its plugin ABI, whether it was built with `panic = "abort"`), done by
//!   the builder before packaging and by the host before `dlopen`;
//! - [`safe_fs`]: reading files of a plugin directory without blocking on a FIFO or
//!   following a link, which [`Manifest::read`] relies on, and the owner and mode checks
//!   of a strict host ([`safe_fs::Access`]);
//! - [`signature`]: signed manifests in minisign's format (`hotswap build --sign`,
//!   `hotswap keygen`, a host's trusted keys).
//!
//! The manifest is layered over [`safe_fs`] and [`signature`]; [`elf`] and
//! [`signature`] stand alone.
#![warn(missing_docs)]

pub mod elf;
mod manifest;
pub mod safe_fs;
pub mod signature;

pub use manifest::{
    sha256_hex, write_atomic, Manifest, ManifestError, PanicStrategy, MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
};
