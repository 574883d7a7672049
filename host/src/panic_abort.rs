//! Refusing plugins compiled with `panic = "abort"` at load.
//!
//! In such a plugin a panic never unwinds to the boundary: it aborts the whole host.
//! `export_plugin!` then exports [`PANIC_ABORT_SYMBOL`]; `hotswap build` refuses to
//! package it unless given `--allow-panic-abort`, which records `"panic": "abort"` in the
//! manifest. The host checks the file's bytes too (a library copied by hand, a manifest
//! written by something else): a file exporting the symbol whose manifest does not say
//! `abort` is refused.

use crate::elf::{exports_symbol, PANIC_ABORT_SYMBOL};
use crate::error::LoadErrorKind;
use crate::manifest::{Manifest, PanicStrategy};

/// Refuses `bytes` (the library `manifest` describes, already validated) if it was built
/// with `panic = "abort"` and its manifest does not record that this was accepted.
pub(crate) fn check(bytes: &[u8], manifest: &Manifest) -> Result<(), LoadErrorKind> {
    if !exports_symbol(bytes, PANIC_ABORT_SYMBOL)? {
        return Ok(());
    }
    match manifest.panic {
        PanicStrategy::Abort => {
            tracing::warn!(
                plugin = %manifest.name,
                "plugin {} {} is built with panic = \"abort\" (accepted by hotswap build \
                 --allow-panic-abort): a panic in it aborts this process",
                manifest.name,
                manifest.version
            );
            Ok(())
        }
        PanicStrategy::Unwind => Err(LoadErrorKind::PanicAbort {
            plugin: manifest.name.clone(),
        }),
    }
}
