//! Everything a hotswap plugin author touches.
//!
//! A plugin is an ordinary crate with `crate-type = ["cdylib"]` (`["cdylib", "rlib"]` if
//! a host may also link it statically, `hotswap build --static-linking`): implement
//! [`Plugin`] (every hook has a default) and call [`export_plugin!`] once. No
//! `extern "C"`, no `#[no_mangle]`, no `unsafe`.
//!
//! ```no_run
//! // The README's plugin example, compiled by `cargo test --doc`.
//! use hotswap_plugin_api::{export_plugin, Error, Imports, Plugin, Result, Value};
//!
//! #[derive(Default)]
//! struct World { greeting: String }
//!
//! impl Plugin for World {
//!     fn on_load(&mut self, data: &Value, _imports: &Imports) -> Result<()> {
//!         let word = data.get("greeting").and_then(Value::as_str).unwrap_or("hello");
//!         self.greeting = format!("{word} from v1");
//!         Ok(())
//!     }
//!     fn invoke_func(&self, name: &str, _args: &[Value]) -> Result<Value> {
//!         match name {
//!             "greet" => Ok(Value::from(self.greeting.as_str())),
//!             _ => Err(Error::unknown_function(name)),
//!         }
//!     }
//! }
//!
//! impl World {
//!     fn version_number(&self, _: ()) -> u32 { 1 }
//! }
//!
//! // Typed functions, with ordinary Rust signatures, are the host's fast path.
//! export_plugin!(World, typed { version_number: fn(()) -> u32 });
//! # fn main() {}
//! ```
//!
//! Dependencies between plugins: see the [`deps`] module. Background work: [`spawn`],
//! which ends once [`retired`] turns true.
//! The host's DataBag: [`vault`]. Logs: plain `tracing` events, which reach the host's
//! subscriber with this plugin's name and version.
//!
//! `export_plugin!` also defines, inside the plugin's library, its own versions of the
//! C functions through which code registers per-thread state (`__cxa_thread_atexit_impl`,
//! the pthread key functions, `pthread_create`), allocates (`malloc`, `free` and
//! the rest) and reads and writes the environment (`setenv`, `unsetenv`, `putenv`,
//! `clearenv`, `getenv`, made by the host's `std::env` under its lock), so the host can
//! unload the plugin safely with thread-locals and threads in use, can say how much heap
//! each version holds and leaked, and a plugin's `std::env::set_var` cannot crash host
//! threads reading the environment. Cargo features:
//! `no-heap-stats` leaves the allocation counting out (a few nanoseconds per
//! allocation); `static` is set by a host that links plugins into its binary, never by
//! a plugin.
#![warn(missing_docs)]

pub mod asyncfn;
pub mod deps;
mod forever;
#[doc(hidden)]
pub mod glue;
#[doc(hidden)]
pub use hotswap_abi::header;
#[doc(hidden)]
pub mod heap;
mod host;
#[doc(hidden)]
pub mod host_heap;
pub mod interface;
#[doc(hidden)]
pub mod interpose;
pub mod lend;
pub mod live;
mod log;
mod panic;
pub mod typed;
pub use hotswap_abi::value;
#[doc(hidden)]
pub use hotswap_abi::vtable;

pub use abi_stable;
pub use asyncfn::{sleep, spawn_async};
pub use deps::{Export, Import, Imported, Imports};
pub use host::{retired, spawn, vault, SpawnError, Vault};
pub use hotswap_plugin_macros::{interface, live_functions};
pub use lend::Lendable;
#[doc(hidden)]
pub use libc as __libc;
pub use live::LiveData;
/// For the host (`hotswap-host`'s `contain`): a caught panic's message, its payload
/// dropped without unwinding; a line on stderr that cannot panic.
#[doc(hidden)]
pub use panic::{panic_text as __panic_text, warn_stderr as __warn_stderr};
pub use value::{Value, ValueTypeError};

use std::fmt;

/// The error a hook or `invoke_func` returns; the host receives its `Display` text.
///
/// Any `std::error::Error` converts into it with `?`; [`Error::msg`] makes one from text.
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }

    /// The conventional error for a name `invoke_func` does not know.
    pub fn unknown_function(name: &str) -> Error {
        Error(format!("unknown function {name:?}"))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Error(text)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.0)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The lifecycle of a plugin, in the order the host runs it on a load or reload:
/// `reloadable`, `export`, `import`, `on_load`, `on_init` (providers before their
/// dependents); then calls; then `on_free` (dependents first) once the version is
/// retired and no call is running on it.
///
/// One instance (`Default::default()`) is made per loaded version. `on_load`, `on_init`
/// and `on_free` run with no call in flight, so they get `&mut self`; `invoke_func` and
/// typed functions run on many threads at once and get `&self`.
///
/// Panics in any hook are caught at the boundary and reported to the host as errors.
pub trait Plugin: Send + Sync + 'static {
    /// Whether the host may replace this version on a reload. A plugin that answers
    /// `false` stays loaded until the process restarts (see `hotswap serve`).
    fn reloadable(&self) -> bool {
        true
    }

    /// What this plugin offers its dependents (see [`deps`]). Called once per instance.
    fn export(&self) -> Option<Export> {
        None
    }

    /// The plugins this one needs: their hooks run first, and their exports reach
    /// `on_load` through [`Imports`].
    fn import(&self) -> Vec<Import> {
        Vec::new()
    }

    /// Called once after the version is loaded, with the data the host passed to
    /// `load_plugins`/`reload` and the resolved imports. An error aborts the whole load
    /// or reload.
    fn on_load(&mut self, data: &Value, imports: &Imports<'_>) -> Result<()> {
        let _ = (data, imports);
        Ok(())
    }

    /// Called after every `on_load` of the reload succeeded. An error aborts the reload.
    fn on_init(&mut self, vault: &Vault) -> Result<()> {
        let _ = vault;
        Ok(())
    }

    /// Called once the version is retired and no call runs on it any more, just before
    /// its library is closed.
    fn on_free(&mut self) {}

    /// Invokes a function by name: the compatible, dynamic path. Arguments are borrowed;
    /// the returned value is copied into the host before the call returns.
    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        let _ = args;
        Err(Error::unknown_function(name))
    }
}

/// Plain data that may cross the typed fast path by value: no pointers, nothing to drop.
///
/// # Safety
/// Implement only for `#[repr(C)]` `StableAbi` types made solely of `Pod` fields: the
/// host copies such values out of a plugin and keeps them after the plugin's library is
/// unloaded, so they must not point into it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Pod` (plain data)",
    note = "a typed function takes plain data by value, and `&str`, `&[T]`, `&T` by \
            reference; several arguments are written `fn(&str, u32)` in `export_plugin!` \
            and `func::<(&str, u32), R>` on the host; results may also be `String`, `Vec`, \
            `Option`, `Result`"
)]
pub unsafe trait Pod: abi_stable::StableAbi + Copy + Send + Sync + 'static {}

/// Calls `$m!` with the built-in plain-data types: the one list both `Pod` and the
/// typed-function `Arg` are implemented from.
macro_rules! with_builtin_pods {
    ($m:ident) => {
        $m!(
            u8,
            u16,
            u32,
            u64,
            usize,
            i8,
            i16,
            i32,
            i64,
            isize,
            f32,
            f64,
            bool,
            ()
        );
    };
}
pub(crate) use with_builtin_pods;

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive holds no pointer.
        unsafe impl Pod for $t {}
    )*};
}
with_builtin_pods!(pod);
// SAFETY: a pair of pointer-free values holds no pointer.
unsafe impl<A: Pod, B: Pod> Pod for abi_stable::std_types::Tuple2<A, B> {}
// SAFETY: likewise for three.
unsafe impl<A: Pod, B: Pod, C: Pod> Pod for abi_stable::std_types::Tuple3<A, B, C> {}
// SAFETY: an array of pointer-free values holds no pointer.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] where [T; N]: abi_stable::StableAbi {}

/// Exports a [`Plugin`] type (which must also be `Default`) as this crate's plugin.
///
/// Every part is optional, in this order (compiled, so it cannot rot):
///
/// ```no_run
/// use hotswap_plugin_api::{export_plugin, Plugin, Result, Value};
///
/// mod pricing_api {
///     // Usually an interface crate of its own, which the host depends on too.
///     #[hotswap_plugin_api::interface]
///     pub trait Pricing {
///         fn quote(&self, sku: &str, qty: u32) -> Option<u64>;
///     }
/// }
///
/// #[derive(Default)]
/// struct MyPlugin;
/// impl Plugin for MyPlugin {}
///
/// impl MyPlugin {
///     fn add(&self, x: u64) -> u64 { x + 1 }
///     fn greet(&self, name: &str, times: u32) -> String { format!("hello {name} x{times}") }
///     fn live_send_mail(&self, _args: &[Value]) -> Result<Value> { Ok(Value::Null) }
/// }
///
/// impl pricing_api::Pricing for MyPlugin {
///     fn quote(&self, sku: &str, qty: u32) -> Option<u64> {
///         (sku == "apple").then_some(50 * u64::from(qty))
///     }
/// }
///
/// /// A live type: its data outlives the version that wrote it.
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[allow(non_camel_case_types)]
/// struct Live_Mail { to: String }
///
/// // The least: `export_plugin!(MyPlugin);`. Everything:
/// export_plugin!(MyPlugin,
///     // Typed functions for the host's fast path: `fn name(&self, a: A, ..) -> R`,
///     // up to four arguments (see below).
///     typed { add: fn(u64) -> u64, greet: fn(&str, u32) -> String },
///     // Traits declared with `#[interface]` that `MyPlugin` implements (see the
///     // `interface` module); their methods join the typed functions as `Trait.method`.
///     interfaces { pricing_api::Pricing },
///     // Live functions: `fn name(&self, args: &[Value]) -> Result<Value>`, called by
///     // name on whichever version is current (`hotswap build` checks that every
///     // `fn live_…` in the sources is registered). Either list them here, or put
///     // `#[live_functions]` on their `impl` block (it registers `#[live]` methods and
///     // `live_…` names) and write `live impl`.
///     live { live_send_mail },
///     // Names of live types this version restores (see `live::LiveData`).
///     live_types { Live_Mail },
/// );
/// # fn main() {}
/// ```
///
/// Typed functions may have up to four arguments: `&str`, `&[T]` and `&T`
/// (`T: StableAbi +` [`Lendable`], a struct of yours by [`lendable!`]) are lent without
/// copying, for the call only (the method's signature gets the call's lifetime, so it
/// cannot keep them, and it cannot store anything of its own in them); built-in `Pod`s
/// go by value (a `Pod` type of yours as the only argument, or by `&T`). Results: any
/// `Pod`, `String`, `Vec<T>`, `Option<T>`, `Result<T, E>`, structs with owned fields
/// made results by [`typed_result!`] (see the [`typed`] module); the host gets a copy of
/// its own, and the plugin's `Err(E)` as a typed `E`:
///
/// ```no_run
/// use hotswap_plugin_api::abi_stable::{self, std_types::RString, StableAbi};
/// use hotswap_plugin_api::{export_plugin, Plugin, Pod};
///
/// // Usually in an interface crate the host depends on too.
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct QuoteOpts { pub discount_pct: u32, pub currency: RString }
/// // Lent by `&QuoteOpts`: checks the plugin cannot store anything of its own in it.
/// hotswap_plugin_api::lendable!(QuoteOpts { discount_pct, currency });
///
/// #[repr(C)]
/// #[derive(StableAbi, Clone, Copy)]
/// pub struct Quote { pub cents: u64 }
/// // SAFETY: `#[repr(C)]`, only `Pod` fields.
/// unsafe impl Pod for Quote {}
///
/// #[repr(u8)]
/// #[derive(StableAbi, Clone, Copy)]
/// pub enum PricingError { UnknownSku }
/// // SAFETY: a fieldless `#[repr(u8)]` enum.
/// unsafe impl Pod for PricingError {}
///
/// #[derive(Default)]
/// struct Pricing;
/// impl Plugin for Pricing {}
///
/// impl Pricing {
///     fn quote(&self, sku: &str, qty: u32, opts: &QuoteOpts) -> Result<Quote, PricingError> {
///         let unit = match sku { "apple" => 50, _ => return Err(PricingError::UnknownSku) };
///         let gross = unit * u64::from(qty);
///         Ok(Quote { cents: gross - gross * u64::from(opts.discount_pct) / 100 })
///     }
///     fn describe(&self, sku: &str) -> String {
///         format!("{sku}: fresh")
///     }
/// }
///
/// export_plugin!(Pricing, typed {
///     quote: fn(&str, u32, &QuoteOpts) -> Result<Quote, PricingError>,
///     describe: fn(&str) -> String,
/// });
/// # fn main() {}
/// ```
///
/// The host calls it with
/// `manager.func::<(&str, u32, &QuoteOpts), Result<Quote, PricingError>>("pricing", "quote")?
/// .call(("apple", 3, &opts))`, which returns `Ok(Ok(quote))`, `Ok(Err(PricingError))`, or
/// `Err(CallError)` when the call itself failed (a panic, the plugin gone).
///
/// Async functions go in an `async { .. }` clause after `typed`: `name: fn(Arg) -> R`
/// for a method `async fn name(&self, arg: Arg) -> R` (or one returning
/// `impl Future<Output = R> + Send + '_`). One argument, moved into the plugin: a
/// `Pod`, `()`, or a struct of owned fields declared with [`typed_result!`]; the
/// result as for typed functions. The future may borrow `&self` and await the host's
/// [`sleep`] and [`spawn_async`] (not the plugin's own tokio: see the [`asyncfn`]
/// module). The host awaits it with
/// `manager.async_func::<Request, Response>("handlers", "handle")?.call(req).await`:
///
/// ```no_run
/// use hotswap_plugin_api::abi_stable::{self, std_types::RString, StableAbi};
/// use hotswap_plugin_api::{export_plugin, sleep, typed_result, Plugin};
/// use std::time::Duration;
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct Request { pub path: RString, pub delay_ms: u64 }
/// typed_result!(Request { path, delay_ms });
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct Response { pub status: u16, pub body: RString }
/// typed_result!(Response { status, body });
///
/// #[derive(Default)]
/// struct Handlers { greeting: String }
/// impl Plugin for Handlers {}
///
/// impl Handlers {
///     async fn handle(&self, req: Request) -> Response {
///         sleep(Duration::from_millis(req.delay_ms)).await;
///         let body = format!("{} {}", self.greeting, req.path.as_str());
///         Response { status: 200, body: body.into() }
///     }
/// }
///
/// export_plugin!(Handlers, async { handle: fn(Request) -> Response });
/// # fn main() {}
/// ```
///
/// Call it once, at the crate root. The plugin's name and version are the crate's. It
/// defines `pub static HOTSWAP_PLUGIN_HEADER` there: exported unmangled for a cdylib, and
/// named by the glue `hotswap build --static-linking` generates into a host that links
/// the crate statically (see the `static` feature).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty
        $(, typed { $($fname:ident : fn($($arg:tt)*) -> $ret:ty),* $(,)? })?
        $(, interfaces { $($iface:path),* $(,)? })?
        $(, async { $($aname:ident : fn($aarg:ty) -> $aret:ty),* $(,)? })?
        $(, live $live:tt)?
        $(, live_types { $($tname:ident),* $(,)? })?
        $(,)?) => {
        /// Present only in a plugin built with `panic = "abort"`: `hotswap build` looks
        /// for this symbol in the file and refuses the build (a panic there would abort
        /// the host instead of reaching it as an error).
        #[cfg(panic = "abort")]
        #[no_mangle]
        #[doc(hidden)]
        pub static HOTSWAP_PANIC_ABORT: u8 = 1;

        $crate::__hotswap_plugin_header! {
        /// This crate's hotswap plugin header, written by `export_plugin!`: the one
        /// symbol a host looks up in the cdylib, and the Rust path a host that links the
        /// crate statically names (`hotswap build --static-linking`).
        #[doc(hidden)]
        pub static HOTSWAP_PLUGIN_HEADER: $crate::header::PluginHeader = {
            $($(
                $crate::__hotswap_typed_marker!(@args $plugin, $fname, $ret, [] [a0 a1 a2 a3] $($arg)*);
            )*)?

            $($(
                $crate::__hotswap_async_marker!($plugin, $aname, $aarg, $aret);
            )*)?

            $( $crate::__hotswap_live_markers!($plugin, $live); )?

            static LIVE: &[$crate::vtable::LiveFn] = $crate::__hotswap_live_table!($plugin $(, $live)?);

            static LIVE_TYPES: &[$crate::abi_stable::std_types::RStr<'static>] = &[
                $($( $crate::abi_stable::std_types::RStr::from_str(stringify!($tname)), )*)?
            ];

            // The plugin's own typed functions; the interfaces' follow them in `TYPED`.
            const OWN_TYPED: &[$crate::vtable::TypedFn] = &[
                $($(
                    $crate::vtable::TypedFn {
                        name: $crate::abi_stable::std_types::RStr::from_str(stringify!($fname)),
                        call: <<$fname as $crate::glue::TypedMethod>::Args
                            as $crate::glue::TypedEntry<$fname>>::CALL,
                        arg: <<<$fname as $crate::glue::TypedMethod>::Args
                            as $crate::typed::Args>::Wire<'static>
                            as $crate::abi_stable::StableAbi>::LAYOUT,
                        ret: <<<$fname as $crate::glue::TypedMethod>::Ret
                            as $crate::typed::Ret>::Wire
                            as $crate::abi_stable::StableAbi>::LAYOUT,
                        // SAFETY: `call` is the `TypedEntry` of the marker whose `Args` and
                        // `Ret` have the wire forms whose layouts are `arg` and `ret`.
                        sealed: unsafe { $crate::vtable::Sealed::new() },
                    },
                )*)?
                $($(
                    $crate::vtable::TypedFn {
                        name: $crate::abi_stable::std_types::RStr::from_str(stringify!($aname)),
                        call: $crate::glue::async_call::<$aname> as *const ::std::ffi::c_void,
                        arg: <<$aname as $crate::asyncfn::AsyncMethod>::Arg
                            as $crate::abi_stable::StableAbi>::LAYOUT,
                        ret: <$crate::vtable::AsyncRet<<<$aname as $crate::asyncfn::AsyncMethod>::Ret
                            as $crate::typed::Ret>::Wire>
                            as $crate::abi_stable::StableAbi>::LAYOUT,
                        // SAFETY: `call` is `async_call` of the marker whose `Arg` and the
                        // future of whose `Ret`'s wire form have the layouts `arg` and `ret`.
                        sealed: unsafe { $crate::vtable::Sealed::new() },
                    },
                )*)?
            ];
            const TYPED_LEN: usize = OWN_TYPED.len() $($(
                + <dyn $iface as $crate::interface::Implemented<$plugin>>::TYPED.len()
            )*)?;
            static TYPED: $crate::interface::TypedTable<TYPED_LEN> =
                $crate::interface::TypedTable::concat(&[OWN_TYPED, $($(
                    <dyn $iface as $crate::interface::Implemented<$plugin>>::TYPED,
                )*)?]);

            static VTABLE: $crate::vtable::PluginVTable = $crate::vtable::PluginVTable {
                name: $crate::abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_NAME")),
                version: $crate::abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_VERSION")),
                panic_unwind: cfg!(panic = "unwind"),
                new: $crate::glue::new::<$plugin>,
                drop: $crate::glue::drop::<$plugin>,
                reloadable: $crate::glue::reloadable::<$plugin>,
                export: $crate::glue::export::<$plugin>,
                import: $crate::glue::import::<$plugin>,
                on_load: $crate::glue::on_load::<$plugin>,
                on_init: $crate::glue::on_init::<$plugin>,
                on_free: $crate::glue::on_free::<$plugin>,
                invoke_func: $crate::glue::invoke_func::<$plugin>,
                heap: $crate::heap::usage,
                typed: $crate::abi_stable::std_types::RSlice::from_slice(TYPED.as_slice()),
                live: $crate::abi_stable::std_types::RSlice::from_slice(LIVE),
                live_types: $crate::abi_stable::std_types::RSlice::from_slice(LIVE_TYPES),
                // SAFETY: every function above is the glue of `$plugin`, and `typed` and
                // `live` hold only entries this macro made for it.
                sealed: unsafe { $crate::vtable::Sealed::new() },
            };

            $crate::header::PluginHeader {
                magic: $crate::header::MAGIC,
                abi_major: $crate::header::ABI_MAJOR,
                abi_minor: $crate::header::ABI_MINOR,
                abi_stable: $crate::abi_stable::library::AbiHeader::VALUE,
                api_version: $crate::abi_stable::std_types::RStr::from_str(
                    $crate::header::API_VERSION,
                ),
                layout: <$crate::vtable::PluginVTable as $crate::abi_stable::StableAbi>::LAYOUT,
                vtable: &VTABLE,
                // SAFETY: `layout` is `PluginVTable`'s and `vtable` the table above.
                sealed: unsafe { $crate::vtable::Sealed::new() },
            }
        };
        }
        $crate::__hotswap_interpose!();
        $crate::__hotswap_heap!();
        $crate::__hotswap_global_allocator!();
    };
}

/// The marker type and `TypedMethod` impl of one typed function of `export_plugin!`:
/// sorts the arguments into borrowed (`&T`, lent as `&'static T` in the list's type and
/// given to the method with the call's lifetime) and by value, and names them.
#[doc(hidden)]
#[macro_export]
macro_rules! __hotswap_typed_marker {
    (@args $plugin:ty, $fname:ident, $ret:ty, [$($done:tt)*] [$n:ident $($names:ident)*]
        & mut $($rest:tt)*) => {
        ::std::compile_error!(::std::concat!(
            "typed function `", ::std::stringify!($fname),
            "`: `&mut` arguments are not supported (calls run on many threads at once)"
        ));
    };
    (@args $plugin:ty, $fname:ident, $ret:ty, [$($done:tt)*] [$n:ident $($names:ident)*]
        & $t:ty $(, $($rest:tt)*)?) => {
        $crate::__hotswap_typed_marker!(@args $plugin, $fname, $ret,
            [$($done)* (ref $n &'static $t)] [$($names)*] $($($rest)*)?);
    };
    (@args $plugin:ty, $fname:ident, $ret:ty, [$($done:tt)*] [$n:ident $($names:ident)*]
        $t:ty $(, $($rest:tt)*)?) => {
        $crate::__hotswap_typed_marker!(@args $plugin, $fname, $ret,
            [$($done)* (val $n $t)] [$($names)*] $($($rest)*)?);
    };
    (@args $plugin:ty, $fname:ident, $ret:ty, [$($done:tt)*] [] $($rest:tt)+) => {
        ::std::compile_error!(::std::concat!(
            "typed function `", ::std::stringify!($fname), "`: at most four arguments"
        ));
    };
    (@args $plugin:ty, $fname:ident, $ret:ty, [$($done:tt)*] [$($names:ident)*]) => {
        $crate::__hotswap_typed_marker!(@emit $plugin, $fname, $ret, $($done)*);
    };
    (@emit $plugin:ty, $fname:ident, $ret:ty,) => {
        $crate::__hotswap_typed_marker!(@impl $plugin, $fname, $ret, plugin, (), args,
            { let () = args; <$plugin>::$fname(plugin) });
    };
    (@emit $plugin:ty, $fname:ident, $ret:ty, (val $n:ident $t:ty)) => {
        $crate::__hotswap_typed_marker!(@impl $plugin, $fname, $ret, plugin, $t, $n,
            { <$plugin>::$fname(plugin, $n) });
    };
    (@emit $plugin:ty, $fname:ident, $ret:ty, ($k:ident $n:ident $t:ty)) => {
        $crate::__hotswap_typed_marker!(@impl $plugin, $fname, $ret, plugin, ($t,), args,
            { let ($n,) = args; <$plugin>::$fname(plugin, $n) });
    };
    (@emit $plugin:ty, $fname:ident, $ret:ty, $(($k:ident $n:ident $t:ty))+) => {
        $crate::__hotswap_typed_marker!(@impl $plugin, $fname, $ret, plugin, ($($t,)+), args,
            { let ($($n,)+) = args; <$plugin>::$fname(plugin, $($n),+) });
    };
    (@impl $plugin:ty, $fname:ident, $ret:ty, $p:ident, $args_ty:ty, $args:ident, $body:block) => {
        #[allow(non_camel_case_types)]
        struct $fname;
        impl $crate::glue::TypedMethod for $fname {
            type Plugin = $plugin;
            type Args = $args_ty;
            type Ret = $ret;
            #[inline]
            fn call<'w>(
                $p: &$plugin,
                $args: <$args_ty as $crate::typed::Args>::Lent<'w>,
            ) -> $ret $body
        }
    };
}

/// Makes the host's allocator this plugin's Rust heap (see the `host_heap` module):
/// nothing when linked into the host binary (`static`), whose allocator it already is,
/// or with `own-allocator`, for a plugin that sets a `#[global_allocator]` of its own.
#[doc(hidden)]
#[cfg(not(any(feature = "static", feature = "own-allocator")))]
#[macro_export]
macro_rules! __hotswap_global_allocator {
    () => {
        #[global_allocator]
        static HOTSWAP_HOST_HEAP: $crate::host_heap::HostHeap = $crate::host_heap::HostHeap;
    };
}

/// See the other definition: nothing, linked statically or with `own-allocator`.
#[doc(hidden)]
#[cfg(any(feature = "static", feature = "own-allocator"))]
#[macro_export]
macro_rules! __hotswap_global_allocator {
    () => {};
}

/// The marker type and `AsyncMethod` impl of one async function of `export_plugin!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __hotswap_async_marker {
    ($plugin:ty, $aname:ident, $aarg:ty, $aret:ty) => {
        #[allow(non_camel_case_types)]
        struct $aname;
        impl $crate::asyncfn::AsyncMethod for $aname {
            type Plugin = $plugin;
            type Arg = $aarg;
            type Ret = $aret;
            #[inline]
            fn call(
                plugin: &$plugin,
                arg: $aarg,
            ) -> impl ::std::future::Future<Output = $aret> + ::std::marker::Send + '_ {
                <$plugin>::$aname(plugin, arg)
            }
        }
    };
}

/// Defines, in a plugin's cdylib, the C allocation functions that count the version's
/// heap (see the `heap` module): nothing when linked into the host binary (`static`),
/// where they would count the whole process, or with the `no-heap-stats` feature.
#[doc(hidden)]
#[cfg(not(any(feature = "static", feature = "no-heap-stats")))]
#[macro_export]
macro_rules! __hotswap_heap {
    () => {
        const _: () = {
            use ::std::ffi::{c_int, c_void};
            /// # Safety
            /// glibc's contract for `malloc`.
            #[no_mangle]
            unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
                // SAFETY: glibc's contract, forwarded unchanged.
                unsafe { $crate::heap::malloc(size) }
            }
            /// # Safety
            /// glibc's contract for `calloc`.
            #[no_mangle]
            unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::calloc(n, size) }
            }
            /// # Safety
            /// glibc's contract for `realloc`.
            #[no_mangle]
            unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::realloc(p, size) }
            }
            /// # Safety
            /// glibc's contract for `reallocarray`.
            #[no_mangle]
            unsafe extern "C" fn reallocarray(
                p: *mut c_void,
                n: usize,
                size: usize,
            ) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::reallocarray(p, n, size) }
            }
            /// # Safety
            /// glibc's contract for `free`.
            #[no_mangle]
            unsafe extern "C" fn free(p: *mut c_void) {
                // SAFETY: as above.
                unsafe { $crate::heap::free(p) }
            }
            /// # Safety
            /// glibc's contract for `posix_memalign`.
            #[no_mangle]
            unsafe extern "C" fn posix_memalign(
                out: *mut *mut c_void,
                align: usize,
                size: usize,
            ) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::heap::posix_memalign(out, align, size) }
            }
            /// # Safety
            /// glibc's contract for `aligned_alloc`.
            #[no_mangle]
            unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::memalign(align, size) }
            }
            /// # Safety
            /// glibc's contract for `memalign`.
            #[no_mangle]
            unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::memalign(align, size) }
            }
            /// # Safety
            /// glibc's contract for `valloc`.
            #[no_mangle]
            unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::valloc(size) }
            }
            /// # Safety
            /// glibc's contract for `pvalloc`.
            #[no_mangle]
            unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
                // SAFETY: as above.
                unsafe { $crate::heap::pvalloc(size) }
            }
        };
    };
}

/// See the other definition: the heap is not counted.
#[doc(hidden)]
#[cfg(any(feature = "static", feature = "no-heap-stats"))]
#[macro_export]
macro_rules! __hotswap_heap {
    () => {};
}

/// Defines, in a plugin's cdylib, the libc functions the host takes over for the
/// plugin's code (see the `interpose` module): nothing when the plugin is linked into
/// the host binary (`static` feature), where they would replace glibc's for the whole
/// process.
#[doc(hidden)]
#[cfg(not(feature = "static"))]
#[macro_export]
macro_rules! __hotswap_interpose {
    () => {
        const _: () = {
            use ::std::ffi::{c_int, c_uint, c_ulong, c_void};
            /// # Safety
            /// glibc's contract for `__cxa_thread_atexit_impl`.
            #[no_mangle]
            unsafe extern "C" fn __cxa_thread_atexit_impl(
                dtor: $crate::vtable::Destructor,
                obj: *mut c_void,
                dso: *mut c_void,
            ) -> c_int {
                // SAFETY: glibc's contract, forwarded unchanged.
                unsafe { $crate::interpose::thread_atexit(dtor, obj, dso) }
            }
            /// # Safety
            /// glibc's contract for `pthread_key_create`.
            #[no_mangle]
            unsafe extern "C" fn pthread_key_create(
                key: *mut c_uint,
                dtor: Option<$crate::vtable::Destructor>,
            ) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::key_create(key, dtor) }
            }
            /// # Safety
            /// glibc's contract for `pthread_key_delete`.
            #[no_mangle]
            unsafe extern "C" fn pthread_key_delete(key: c_uint) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::key_delete(key) }
            }
            /// # Safety
            /// glibc's contract for `pthread_setspecific`.
            #[no_mangle]
            unsafe extern "C" fn pthread_setspecific(key: c_uint, value: *const c_void) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::key_set(key, value) }
            }
            /// # Safety
            /// glibc's contract for `pthread_create`.
            #[no_mangle]
            unsafe extern "C" fn pthread_create(
                thread: *mut c_ulong,
                attr: *const c_void,
                start: $crate::vtable::StartRoutine,
                arg: *mut c_void,
            ) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::thread_create(thread, attr, start, arg) }
            }
            /// # Safety
            /// glibc's contract for `__register_atfork` (what `pthread_atfork` calls).
            #[no_mangle]
            unsafe extern "C" fn __register_atfork(
                prepare: Option<$crate::vtable::ForkHandler>,
                parent: Option<$crate::vtable::ForkHandler>,
                child: Option<$crate::vtable::ForkHandler>,
                dso: *mut c_void,
            ) -> c_int {
                // SAFETY: glibc's contract, forwarded unchanged.
                unsafe { $crate::interpose::register_atfork(prepare, parent, child, dso) }
            }
            /// # Safety
            /// glibc's contract for `sigaction`.
            #[no_mangle]
            unsafe extern "C" fn sigaction(
                signal: c_int,
                act: *const $crate::__libc::sigaction,
                old: *mut $crate::__libc::sigaction,
            ) -> c_int {
                // SAFETY: glibc's contract, forwarded unchanged.
                unsafe { $crate::interpose::sigaction(signal, act, old) }
            }
            /// # Safety
            /// glibc's contract for `signal`.
            #[no_mangle]
            unsafe extern "C" fn signal(
                signal: c_int,
                handler: $crate::__libc::sighandler_t,
            ) -> $crate::__libc::sighandler_t {
                // SAFETY: as above.
                unsafe { $crate::interpose::signal(signal, handler) }
            }
            /// # Safety
            /// glibc's contract for `setenv`.
            #[no_mangle]
            unsafe extern "C" fn setenv(
                name: *const ::std::ffi::c_char,
                value: *const ::std::ffi::c_char,
                overwrite: c_int,
            ) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::setenv(name, value, overwrite) }
            }
            /// # Safety
            /// glibc's contract for `unsetenv`.
            #[no_mangle]
            unsafe extern "C" fn unsetenv(name: *const ::std::ffi::c_char) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::unsetenv(name) }
            }
            /// # Safety
            /// glibc's contract for `putenv`.
            #[no_mangle]
            unsafe extern "C" fn putenv(string: *mut ::std::ffi::c_char) -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::putenv(string) }
            }
            /// # Safety
            /// glibc's contract for `clearenv`.
            #[no_mangle]
            unsafe extern "C" fn clearenv() -> c_int {
                // SAFETY: as above.
                unsafe { $crate::interpose::clearenv() }
            }
            /// # Safety
            /// glibc's contract for `getenv`.
            #[no_mangle]
            unsafe extern "C" fn getenv(
                name: *const ::std::ffi::c_char,
            ) -> *mut ::std::ffi::c_char {
                // SAFETY: as above.
                unsafe { $crate::interpose::getenv(name) }
            }
        };
    };
}

/// See the other definition: linked statically, the plugin's code is never unloaded
/// and uses glibc's functions directly.
#[doc(hidden)]
#[cfg(feature = "static")]
#[macro_export]
macro_rules! __hotswap_interpose {
    () => {};
}

/// Emits the header static `export_plugin!` builds. Defined twice so that the choice
/// follows *this* crate's `static` feature (a `cfg` written inside `export_plugin!` would
/// test the plugin crate's features instead): exported unmangled for a cdylib, a plain
/// Rust static when the host links plugins statically (cargo unifies the feature the
/// host enables), so two plugins in one binary do not collide on the symbol name.
#[doc(hidden)]
#[cfg(not(feature = "static"))]
#[macro_export]
macro_rules! __hotswap_plugin_header {
    ($($item:tt)*) => {
        #[no_mangle]
        $($item)*
    };
}

/// See the other definition: the `static` feature is on, so no `#[no_mangle]`.
#[doc(hidden)]
#[cfg(feature = "static")]
#[macro_export]
macro_rules! __hotswap_plugin_header {
    ($($item:tt)*) => {
        $($item)*
    };
}

/// The live-function markers of `export_plugin!(…, live { … })`; nothing for `live impl`.
#[doc(hidden)]
#[macro_export]
macro_rules! __hotswap_live_markers {
    ($plugin:ty, impl) => {};
    ($plugin:ty, { $($lname:ident),* $(,)? }) => {
        $(
            #[allow(non_camel_case_types)]
            struct $lname;
            impl $crate::glue::LiveMethod for $lname {
                type Plugin = $plugin;
                fn call(
                    plugin: &$plugin,
                    args: &[$crate::Value],
                ) -> ::std::result::Result<$crate::Value, $crate::Error> {
                    <$plugin>::$lname(plugin, args)
                }
            }
        )*
    };
}

/// The live-function table of `export_plugin!`: none, the listed ones, or the ones
/// `#[live_functions]` registered (`live impl`).
#[doc(hidden)]
#[macro_export]
macro_rules! __hotswap_live_table {
    ($plugin:ty) => {
        &[]
    };
    ($plugin:ty, impl) => {
        <$plugin as $crate::glue::HasLive>::LIVE
    };
    ($plugin:ty, { $($lname:ident),* $(,)? }) => {
        &[
            $(
                $crate::vtable::LiveFn {
                    name: $crate::abi_stable::std_types::RStr::from_str(stringify!($lname)),
                    call: $crate::glue::live_call::<$lname>,
                    // SAFETY: `call` is the glue of the marker for this plugin's method.
                    sealed: unsafe { $crate::vtable::Sealed::new() },
                },
            )*
        ]
    };
}
