//! Refusing plugins compiled with `panic = "abort"` at load.
//!
//! In such a plugin a panic never unwinds to the boundary: it aborts the whole host.
//! `export_plugin!` then exports [`PANIC_ABORT_SYMBOL`]; `hotswap build` refuses to
//! package it unless given `--allow-panic-abort` (which records `"panic": "abort"` in
//! the manifest, and warns). The host refuses such a file before `dlopen`, whatever its
//! manifest says, and once opened checks the vtable's `panic_unwind` too (which also
//! covers plugins linked into the host binary).

use crate::error::LoadErrorKind;
use hotswap_manifest::elf::{exports_symbol, PANIC_ABORT_SYMBOL};
use hotswap_manifest::Manifest;

/// Refuses `bytes` (the library `manifest` describes, already validated) if it was built
/// with `panic = "abort"`.
pub(crate) fn check(bytes: &[u8], manifest: &Manifest) -> Result<(), LoadErrorKind> {
    if exports_symbol(bytes, PANIC_ABORT_SYMBOL)? {
        return Err(LoadErrorKind::PanicAbort {
            plugin: manifest.name.clone(),
        });
    }
    Ok(())
}
