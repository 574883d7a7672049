//! Dependencies between plugins: what a provider exports, what a dependent imports.
//!
//! A provider's [`Plugin::export`](crate::Plugin::export) returns an [`Export`]: any
//! `StableAbi` [`Lendable`] value, typically a `#[sabi_trait]` trait object or a
//! `#[repr(C)]` table declared in a small interface crate both sides depend on. A dependent names it in
//! [`Plugin::import`](crate::Plugin::import) with the type it expects
//! ([`Import::of_type`]); the host checks the two types with abi_stable's layout
//! checker (never by trusting a name) and the provider's crate version against an
//! optional semver requirement, then hands the dependent an [`Imports`] in `on_load`.
//!
//! The host keeps a provider loaded for as long as any instance that imported it, so an
//! [`Imported<T>`] may be kept in the dependent's instance. When a provider is reloaded
//! and its dependent is not, the host gives the dependent a fresh instance (from a fresh
//! copy of its file) bound to the new provider: a dependent never sees two providers.

use crate::vtable::{ImportEntry, ImportsFfi};
use crate::{Error, Lendable};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use std::ffi::c_void;
use std::marker::PhantomData;

/// An object a plugin offers to its dependents, owned by the plugin's instance.
pub struct Export {
    pub(crate) ptr: *mut c_void,
    pub(crate) layout: &'static TypeLayout,
    pub(crate) drop: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: `Export::new` only accepts `Send + Sync` values.
unsafe impl Send for Export {}

impl Export {
    /// Exports `value`. Its layout is what dependents' imports are checked against.
    ///
    /// `T` is [`Lendable`]: dependents reach the export by shared reference, and one
    /// unloaded before the provider must not have left a value of its own in it (whose
    /// drop or read would run code of the unloaded library). A `#[sabi_trait]` object is
    /// `Lendable` when its interface crate says so (see [`Lendable`]'s contract):
    ///
    /// ```compile_fail,E0277
    /// use hotswap_plugin_api::abi_stable::external_types::RMutex;
    /// use hotswap_plugin_api::abi_stable::std_types::{RString, RVec};
    /// use hotswap_plugin_api::Export;
    /// // A dependent could push an RString of its own into the provider's export.
    /// let _ = Export::new(RMutex::new(RVec::<RString>::new())); // error: not `Lendable`
    /// ```
    pub fn new<T: StableAbi + Lendable + Send + Sync + 'static>(value: T) -> Export {
        /// # Safety
        /// `p` must be the pointer `new` made from a `Box<T>`, not yet dropped.
        unsafe extern "C" fn drop_box<T>(p: *mut c_void) {
            // SAFETY: `p` is the `Box<T>` leaked in `new`, dropped once by the host.
            let export = unsafe { Box::from_raw(p.cast::<T>()) };
            // The export's `Drop` may panic: not out of this `extern "C"` function.
            crate::panic::drop_guarded(export, "a plugin's export");
        }
        Export {
            ptr: Box::into_raw(Box::new(value)).cast(),
            layout: T::LAYOUT,
            drop: drop_box::<T>,
        }
    }
}

/// A dependency, as returned by [`Plugin::import`](crate::Plugin::import).
#[derive(Debug, Clone)]
pub struct Import {
    /// The plugin depended on.
    pub plugin: String,
    /// A semver requirement on its crate version (`"^1.2"`); empty means any.
    pub version_req: String,
    /// The type its export must have; `None` when only the order matters.
    pub(crate) layout: Option<&'static TypeLayout>,
}

impl PartialEq for Import {
    fn eq(&self, other: &Import) -> bool {
        self.plugin == other.plugin
            && self.version_req == other.version_req
            && self.layout.map(|l| l as *const _) == other.layout.map(|l| l as *const _)
    }
}

impl Import {
    /// A dependency on any version of `plugin`, used only for ordering (its hooks run
    /// first) unless [`of_type`](Import::of_type) names the export's type.
    pub fn plugin(plugin: impl Into<String>) -> Import {
        Import {
            plugin: plugin.into(),
            version_req: String::new(),
            layout: None,
        }
    }

    /// Requires the provider's crate version to match `req` (semver, as in Cargo.toml).
    pub fn version(mut self, req: impl Into<String>) -> Import {
        self.version_req = req.into();
        self
    }

    /// Requires the provider to export a `T` (checked by abi_stable's layout checker).
    pub fn of_type<T: StableAbi>(mut self) -> Import {
        self.layout = Some(T::LAYOUT);
        self
    }
}

/// The resolved imports, given to `on_load`.
pub struct Imports<'a> {
    entries: &'a [ImportEntry],
}

impl<'a> Imports<'a> {
    pub(crate) fn from_ffi(ffi: &'a ImportsFfi<'a>) -> Imports<'a> {
        Imports {
            entries: ffi.entries.as_slice(),
        }
    }

    /// No imports (for tests of a plugin outside a host).
    pub fn none() -> Imports<'static> {
        Imports { entries: &[] }
    }

    /// The export of `plugin`, as the `T` declared with [`Import::of_type`].
    ///
    /// Fails when `plugin` was not imported, was imported without a type, or with
    /// another type than `T`. `T` is [`Lendable`], as the provider's
    /// [`Export::new`] requires.
    pub fn get<T: StableAbi + Lendable + Sync + 'static>(
        &self,
        plugin: &str,
    ) -> Result<Imported<T>, Error> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.plugin.as_str() == plugin)
            .ok_or_else(|| Error::msg(format!("{plugin:?} is not among this plugin's imports")))?;
        match entry.declared {
            // The host checked the provider's export against `declared`, which this
            // plugin produced from a `T::LAYOUT` of its own: comparing the type ids of
            // two layouts from this binary tells whether they describe the same type.
            // (Not the addresses: a const's address differs between codegen units.)
            Some(l) if l.get_utypeid() == T::LAYOUT.get_utypeid() => Ok(Imported {
                ptr: entry.export.cast(),
                _t: PhantomData,
            }),
            Some(_) => Err(Error::msg(format!(
                "the import of {plugin:?} was declared with another type than the one asked for"
            ))),
            None => Err(Error::msg(format!(
                "the import of {plugin:?} has no type: declare it with Import::of_type"
            ))),
        }
    }

    /// The crate version of the provider bound to `plugin`.
    pub fn version_of(&self, plugin: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.plugin.as_str() == plugin)
            .map(|e| e.version.as_str())
    }
}

/// A provider's export, held by a dependent. Valid for as long as the dependent's
/// instance: the host keeps the provider loaded until then.
pub struct Imported<T> {
    ptr: *const T,
    _t: PhantomData<T>,
}

// SAFETY: the export is `Send + Sync` (Export::new requires it).
unsafe impl<T: Sync> Send for Imported<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Imported<T> {}

impl<T> std::ops::Deref for Imported<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the host keeps the providing version (and so its export) alive for as
        // long as the instance that received this import, and the layout was checked.
        unsafe { &*self.ptr }
    }
}
