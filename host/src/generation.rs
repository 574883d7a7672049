//! [`Generation`]: an immutable, consistent set of versions (one per plugin), in
//! dependency order, with the typed functions resolved for every registered handle.
//! The host serves exactly one; a reload builds the next beside it and publishes it
//! with one pointer swap (see `hotswap_reclaim::Domain`).

use crate::call_stats::CallCounters;
use crate::error::{CallError, SignatureMismatch, SignaturePart};
use crate::layouts::{Check, CheckedLayouts};
use crate::names::{BuildNameHasher, NameKey};
use crate::vault::ExtensionObj;
use crate::version::{ByName, Version};
use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility_with_globals, CheckingGlobals,
};
use abi_stable::type_layout::TypeLayout;
use hotswap_abi::vtable::{packed_arity, InstancePtr};
use hotswap_plugin_api::Value;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

/// A typed function a handle asked for: resolved again in every generation.
#[derive(Clone)]
pub(crate) struct Symbol {
    pub plugin: String,
    pub function: String,
    /// Layout of the argument list's wire form.
    pub arg: &'static TypeLayout,
    /// Layout of the result's wire form.
    pub ret: &'static TypeLayout,
    /// Wire layout of each argument, to say which one differs.
    pub arg_layouts: Vec<&'static TypeLayout>,
    /// For a `Result<T, E>`: the wire layouts of `T` and `E`, to say which differs.
    pub result_layouts: Option<(&'static TypeLayout, &'static TypeLayout)>,
    /// `TypeId`s of the argument and result: a handle's identity (two `LAYOUT` consts
    /// of one type need not share an address).
    pub types: (std::any::TypeId, std::any::TypeId),
    /// Address of the stub in the handle's calling convention (`Args::stub::<R>()` of a
    /// typed handle, `func::unresolved::<A, R>` of an async one): what an unresolved
    /// slot calls, so the hot path needs no null check (the failure is then read from
    /// `typed_errors`).
    pub stub: usize,
}

/// A resolved typed function: what the hot path needs, and nothing else.
#[derive(Clone, Copy)]
pub(crate) struct TypedSlot {
    /// The erased entry point (`Args::invoke` calls it); the symbol's stub when
    /// unresolved (the error is then in `typed_errors`).
    pub call: *const c_void,
    pub instance: InstancePtr,
    /// Index of the version in `plugins`.
    pub plugin: usize,
    /// The version's call counters (in its record, which the version holds); null when
    /// call metrics are off or the slot is unresolved.
    stats: *const CallCounters,
}

impl TypedSlot {
    /// The call counters of the slot's version, if it counts calls.
    #[inline(always)]
    pub fn stats(&self) -> Option<&CallCounters> {
        // SAFETY: non-null, `stats` points into the record of a version the generation
        // holding this slot owns (`plugins`), and the slot is borrowed from that
        // generation, so the record outlives the borrow.
        unsafe { self.stats.as_ref() }
    }
}

/// Up to this many plugins, a lookup by name compares names instead of hashing.
const SCAN_UP_TO: usize = 8;

/// One version as a call by name sees it: the key of its name (compared without
/// `memcmp` or a pointer chase) beside its entry point, instance and counters, so that
/// finding the plugin and calling it read one flat table; and the version they were
/// taken from, which keeps them valid.
struct Named {
    key: NameKey,
    call: ByName,
    version: Arc<Version>,
}

impl Named {
    fn of(version: &Arc<Version>) -> Named {
        Named {
            key: NameKey::of(version.name()),
            call: version.by_name(),
            version: version.clone(),
        }
    }

    /// Whether this is plugin `name`, whose key is `key`.
    #[inline(always)]
    fn is(&self, key: &NameKey, name: &str) -> bool {
        self.key.names(key, name, || self.version.name())
    }
}

/// One generation.
pub struct Generation {
    pub(crate) id: u64,
    pub(crate) plugins: Vec<Arc<Version>>,
    index: HashMap<String, usize, BuildNameHasher>,
    /// What a call by name needs of each version, in `plugins` order: what a lookup by
    /// name scans (see [`Named`]).
    named: Vec<Named>,
    pub(crate) typed: Vec<TypedSlot>,
    typed_errors: HashMap<usize, CallError>,
    pub(crate) extension: Option<Arc<ExtensionObj>>,
    /// Live function name -> index of the version that registers it.
    live: HashMap<String, usize, BuildNameHasher>,
}

// SAFETY: TypedSlot's pointers point into versions this generation owns (through
// `plugins`), and each Named's into the version it holds; versions are Send + Sync, and
// the generation is immutable once built.
unsafe impl Send for Generation {}
// SAFETY: as above.
unsafe impl Sync for Generation {}

/// Checks that the plugin's layout `found` matches the host's `expected`, with a
/// throwaway `CheckingGlobals` so nothing from the plugin stays in abi_stable's
/// process-wide maps after its library is closed (DESIGN, the known hazard).
pub(crate) fn check_layout(
    expected: &'static TypeLayout,
    found: &'static TypeLayout,
) -> Result<(), String> {
    let globals = CheckingGlobals::new();
    let r = check_layout_compatibility_with_globals(expected, found, &globals)
        .map_err(|e| e.to_string());
    drop(globals);
    r
}

fn mismatch(
    part: SignaturePart,
    host: &TypeLayout,
    plugin: &TypeLayout,
    detail: String,
) -> SignatureMismatch {
    SignatureMismatch {
        part,
        plugin_type: plugin.full_type().to_string(),
        host_type: host.full_type().to_string(),
        detail,
    }
}

/// The wire layouts of the fields of a layout (the arguments of a pack, the `Ok` and
/// `Err` values of an `RResult`).
fn field_layouts(l: &TypeLayout) -> Vec<&'static TypeLayout> {
    l.get_fields()
        .map(|fields| fields.iter().map(|f| f.layout()).collect())
        .unwrap_or_default()
}

/// Which part of the argument list differs: the count, one argument, or (for one
/// argument each) the argument.
fn arg_mismatch(s: &Symbol, found: &'static TypeLayout, detail: String) -> SignatureMismatch {
    let (host_n, plugin_n) = (s.arg_layouts.len(), packed_arity(found));
    if host_n != plugin_n {
        let count = |n: usize| format!("{n} argument{}", if n == 1 { "" } else { "s" });
        return SignatureMismatch {
            part: SignaturePart::ArgumentCount,
            plugin_type: count(plugin_n),
            host_type: count(host_n),
            detail,
        };
    }
    if host_n == 1 {
        return mismatch(SignaturePart::Argument, s.arg, found, detail);
    }
    let plugin_args = field_layouts(found);
    for (i, (host, plugin)) in s.arg_layouts.iter().zip(&plugin_args).enumerate() {
        if let Err(detail) = check_layout(host, plugin) {
            return mismatch(SignaturePart::NthArgument(i + 1), host, plugin, detail);
        }
    }
    mismatch(SignaturePart::Argument, s.arg, found, detail)
}

/// Whether the result or, of two `Result`s with the same `Ok` type, the error differs.
fn ret_mismatch(s: &Symbol, found: &'static TypeLayout, detail: String) -> SignatureMismatch {
    if let Some((host_ok, host_err)) = s.result_layouts {
        let plugin_parts = field_layouts(found);
        let same_kind = found.name() == "RResult" && plugin_parts.len() == 2;
        if same_kind && check_layout(host_ok, plugin_parts[0]).is_ok() {
            return mismatch(SignaturePart::Error, host_err, plugin_parts[1], detail);
        }
    }
    mismatch(SignaturePart::Result, s.ret, found, detail)
}

/// `CallError::UnknownPlugin`, off the inlined path of a call by name.
#[cold]
#[inline(never)]
fn unknown_plugin(plugin: &str) -> CallError {
    CallError::UnknownPlugin(plugin.to_owned())
}

impl Generation {
    /// The empty generation served before the first load.
    pub(crate) fn empty() -> Generation {
        Generation {
            id: 0,
            plugins: Vec::new(),
            index: HashMap::default(),
            named: Vec::new(),
            typed: Vec::new(),
            typed_errors: HashMap::new(),
            extension: None,
            live: HashMap::default(),
        }
    }

    /// Builds a generation from versions already in dependency order; the layouts of
    /// `symbols` are checked against each plugin's unless `checked` saw them pass.
    pub(crate) fn new(
        id: u64,
        plugins: Vec<Arc<Version>>,
        symbols: &[Symbol],
        extension: Option<Arc<ExtensionObj>>,
        checked: &CheckedLayouts,
    ) -> Generation {
        let index = plugins
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name().to_owned(), i))
            .collect();
        let named = plugins.iter().map(Named::of).collect();
        // A later plugin (in dependency order) wins a live name registered twice.
        let live = plugins
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                v.vtable()
                    .live
                    .iter()
                    .map(move |f| (f.name.as_str().to_owned(), i))
            })
            .collect();
        let mut g = Generation {
            id,
            plugins,
            index,
            named,
            typed: Vec::with_capacity(symbols.len()),
            typed_errors: HashMap::new(),
            extension,
            live,
        };
        for (i, s) in symbols.iter().enumerate() {
            match g.resolve(s, checked) {
                Ok(slot) => g.typed.push(slot),
                Err(e) => {
                    g.typed.push(TypedSlot {
                        call: s.stub as *const c_void,
                        instance: InstancePtr(std::ptr::null_mut()),
                        plugin: usize::MAX,
                        stats: std::ptr::null(),
                    });
                    g.typed_errors.insert(i, e);
                }
            }
        }
        g
    }

    /// The same versions with a longer symbol table (a handle was added).
    pub(crate) fn with_symbols(&self, symbols: &[Symbol], checked: &CheckedLayouts) -> Generation {
        Generation::new(
            self.id,
            self.plugins.clone(),
            symbols,
            self.extension.clone(),
            checked,
        )
    }

    /// The slot of `s` in this generation, or why it has none.
    pub(crate) fn resolve(
        &self,
        s: &Symbol,
        checked: &CheckedLayouts,
    ) -> Result<TypedSlot, CallError> {
        let (i, v) = self
            .find_indexed(&s.plugin)
            .ok_or_else(|| CallError::UnknownPlugin(s.plugin.clone()))?;
        let f = v
            .typed(&s.function)
            .ok_or_else(|| CallError::UnknownFunction {
                plugin: s.plugin.clone(),
                function: s.function.clone(),
            })?;
        let signature = |mismatch: SignatureMismatch| CallError::Signature {
            plugin: s.plugin.clone(),
            function: s.function.clone(),
            mismatch: Box::new(mismatch),
        };
        let check = Check {
            sha256: &v.record.sha256,
            function: &s.function,
            host: [s.arg, s.ret],
        };
        checked.check(&check, || {
            if let Err(detail) = check_layout(s.arg, f.arg) {
                return Err(signature(arg_mismatch(s, f.arg, detail)));
            }
            if let Err(detail) = check_layout(s.ret, f.ret) {
                return Err(signature(ret_mismatch(s, f.ret, detail)));
            }
            Ok(())
        })?;
        Ok(TypedSlot {
            call: f.call,
            instance: v.instance(),
            plugin: i,
            stats: v
                .record
                .calls
                .as_ref()
                .map_or(std::ptr::null(), |c| c as *const CallCounters),
        })
    }

    /// Id of this generation: 0 before the first load, then one more per reload.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The versions, dependencies first.
    pub fn versions(&self) -> &[Arc<Version>] {
        &self.plugins
    }

    /// The version of plugin `name`.
    #[inline(always)]
    pub fn find(&self, name: &str) -> Option<&Arc<Version>> {
        self.find_indexed(name).map(|(_, v)| v)
    }

    #[inline(always)]
    fn find_indexed(&self, name: &str) -> Option<(usize, &Arc<Version>)> {
        if self.named.len() <= SCAN_UP_TO {
            let key = NameKey::of(name);
            let i = self.named.iter().position(|n| n.is(&key, name))?;
            return Some((i, &self.plugins[i]));
        }
        self.find_hashed(name)
    }

    /// Calls `function` of plugin `plugin`, whose name's key is `key`, on this
    /// generation with stable values; the result is host-owned
    /// (`PluginManager::invoke_func`, which makes the key where a literal name folds
    /// it). Fails with [`CallError::UnknownPlugin`], or the plugin's own failure or
    /// panic.
    #[inline(always)]
    pub(crate) fn invoke(
        &self,
        key: &NameKey,
        plugin: &str,
        function: &str,
        args: &[Value],
    ) -> Result<Value, CallError> {
        // A host has a handful of plugins: comparing keys (length and two words, no
        // `memcmp`, no pointer chase to the version's record) beats hashing the name,
        // which alone took about a third of a call by name. Many plugins: the index.
        let named = if self.named.len() <= SCAN_UP_TO {
            self.named.iter().find(|n| n.is(key, plugin))
        } else {
            self.find_hashed(plugin).map(|(i, _)| &self.named[i])
        };
        match named {
            // SAFETY: `n.call` was taken from `n.version`, which `n` holds.
            Some(n) => unsafe { n.call.invoke(&n.version, function, args) },
            None => Err(unknown_plugin(plugin)),
        }
    }

    /// The lookup of a generation of many plugins, out of line so the scan of a few
    /// inlines into a call by name without the hashing's registers and stack.
    #[inline(never)]
    fn find_hashed(&self, name: &str) -> Option<(usize, &Arc<Version>)> {
        self.index.get(name).map(|&i| (i, &self.plugins[i]))
    }

    /// The host's extension of this generation, if it is a `T`.
    pub fn extension<T: 'static>(&self) -> Option<&T> {
        self.extension
            .as_ref()
            .and_then(|e| e.owner.downcast_ref::<T>())
    }

    /// Calls the live function `name` of whichever version in this generation
    /// registers it; the result is host-owned.
    pub fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, CallError> {
        let &i = self
            .live
            .get(name)
            .ok_or_else(|| CallError::UnknownLive(name.to_owned()))?;
        self.plugins[i].call_live(name, args)
    }

    /// Names of the live functions of this generation, sorted.
    pub fn live_functions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.live.keys().cloned().collect();
        names.sort();
        names
    }

    /// Live type names, with the plugin that registers each, sorted.
    pub fn live_types(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .plugins
            .iter()
            .flat_map(|v| {
                v.vtable()
                    .live_types
                    .iter()
                    .map(move |t| (t.as_str().to_owned(), v.name().to_owned()))
            })
            .collect();
        out.sort();
        out
    }

    pub(crate) fn typed_error(&self, symbol: usize) -> Option<&CallError> {
        self.typed_errors.get(&symbol)
    }
}
