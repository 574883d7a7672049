//! The `#[repr(C)]` tables that cross the boundary: the plugin's entry points
//! ([`PluginVTable`]) and the host's services a plugin may call ([`HostVTable`]).
//!
//! Everything here derives `StableAbi`: the host checks the plugin's idea of
//! [`PluginVTable`]'s layout (and, through it, every type reachable from it) against its
//! own before calling anything. None of these types is a prefix type, a `#[sabi_trait]`
//! or a `NonExhaustive` enum, and the host checks with a throwaway `CheckingGlobals`,
//! so nothing from an unloadable library is kept in abi_stable's process-wide maps.

use crate::value::Value;
use abi_stable::{
    std_types::{RResult, RSlice, RStr, RString, RVec},
    type_layout::TypeLayout,
    StableAbi,
};
use async_ffi::FfiFuture;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// The proof that whoever built a boundary table ([`PluginVTable`], [`TypedFn`],
/// [`LiveFn`], [`PluginHeader`](crate::header::PluginHeader)) paired every function
/// pointer in it with the layouts and instance type it was made for. Every such table
/// has a field of this type, so safe code cannot build one: only [`Sealed::new`] makes
/// it, and that is `unsafe`. `export_plugin!` and `#[live_functions]` are the only
/// callers meant to exist. Neither `Copy` nor `Clone`, and tables live in statics, so a
/// token cannot be taken from one table into another.
///
/// Safe code cannot make one, so it cannot pair a function with another's layout:
///
/// ```compile_fail
/// use hotswap_abi::vtable::{Sealed, TypedFn};
/// use hotswap_abi::abi_stable::{std_types::RStr, StableAbi};
/// extern "C" fn other() {}
/// static FORGED: TypedFn = TypedFn {
///     name: RStr::from_str("add"),
///     call: other as *const std::ffi::c_void,
///     arg: <u64 as StableAbi>::LAYOUT,
///     ret: <u64 as StableAbi>::LAYOUT,
///     sealed: Sealed(()), // error: the field is private
/// };
/// ```
///
/// Nor take the token of a table that exists:
///
/// ```compile_fail
/// use hotswap_abi::vtable::{LiveFn, Sealed};
/// fn steal(f: &'static LiveFn) -> Sealed {
///     f.sealed // error: cannot move out of a shared reference
/// }
/// ```
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct Sealed(());

impl Sealed {
    /// The token.
    ///
    /// # Safety
    /// The table this token goes into must be internally consistent: each function
    /// pointer is the glue `export_plugin!` generates for the layouts and plugin type
    /// the table announces next to it (a `TypedFn`'s `call` is `typed_call::<M>` for the
    /// `M` whose argument list's and result's wire layouts are `arg` and `ret`, or
    /// `async_call::<M>` for the async `M` whose argument's layout is `arg` and whose
    /// future's (`AsyncRet` of the result's wire form) is `ret`; every vtable function
    /// is the glue of one plugin type `T`; a header's `layout` is `PluginVTable`'s and
    /// its `vtable` such a table). The host trusts a table that passed its layout check
    /// to be so; a mismatched one is undefined behaviour at the first call.
    #[doc(hidden)]
    pub const unsafe fn new() -> Sealed {
        Sealed(())
    }
}

/// Whether a failed hook returned an error or panicked.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The hook returned `Err`.
    Error = 0,
    /// The hook panicked; the panic was caught at the boundary.
    Panic = 1,
}

/// A failure reported across the boundary. `message` was allocated by the plugin: the
/// host copies it out before the call that produced it returns.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct Failure {
    /// Error or panic.
    pub kind: FailKind,
    /// The error's `Display`, or the panic message.
    pub message: RString,
}

/// Opaque pointer to a plugin instance (a `Box<T>` made by the plugin's `new`).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct InstancePtr(pub *mut c_void);

/// A dependency a plugin declares in `import()`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ImportSpec {
    /// Name of the plugin depended on.
    pub plugin: RString,
    /// A semver requirement on its crate version (`""` means any).
    pub version_req: RString,
    /// The type the export must have, if the dependent uses it.
    pub layout: Option<&'static TypeLayout>,
}

/// A provider's export as it crosses the boundary (`ptr` null: nothing exported).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct ExportFfi {
    /// The exported value, owned by the provider until `drop` is called.
    pub ptr: *mut c_void,
    /// Its layout.
    pub layout: Option<&'static TypeLayout>,
    /// Frees it; called once by the host when the provider is freed.
    pub drop: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// One resolved import, given to the dependent's `on_load`.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct ImportEntry {
    /// The provider's name (in the provider's library, which outlives the dependent).
    pub plugin: RStr<'static>,
    /// The provider's crate version (likewise).
    pub version: RStr<'static>,
    /// The provider's export (null if it exports nothing).
    pub export: *const c_void,
    /// The layout the dependent declared (checked equal to the export's by the host).
    pub declared: Option<&'static TypeLayout>,
}

/// The imports given to `on_load`, valid during the call.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct ImportsFfi<'a> {
    /// One entry per import, in declaration order.
    pub entries: RSlice<'a, ImportEntry>,
}

/// One typed function exported by `export_plugin!(.., typed { .. })`. Built only by the
/// macro (it holds a [`Sealed`]); the host reads it.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct TypedFn {
    /// The method name.
    pub name: RStr<'static>,
    /// The entry point with its type erased: a [`TypedCall<A, R>`] for one argument (`A`
    /// its wire form), or for two to four `extern "C" fn(InstancePtr, A0, .., *mut
    /// Failure) -> TypedRet<R>`, one parameter per field of the [`Args2`]…[`Args4`] that
    /// `arg` describes; `R` the wire form of the result (`HostString` for `String`,
    /// `RResult` for `Result`, ...).
    pub call: *const c_void,
    /// Layout of `A`, checked by the host against the type it asks for.
    pub arg: &'static TypeLayout,
    /// Layout of `R`, likewise.
    pub ret: &'static TypeLayout,
    /// Proof of consistency: `call` takes an `A` and returns an `R` of these layouts.
    pub sealed: Sealed,
}

// SAFETY: a TypedFn is immutable static data; `call` is a function pointer, which is
// safe to share between threads.
unsafe impl Sync for TypedFn {}
// SAFETY: as above.
unsafe impl Send for TypedFn {}

/// What a typed function returns: `ok` and the value, or `!ok` (it panicked; the
/// failure was written to the `err` pointer). `#[repr(C)]` and small for small `R`, so
/// on x86-64 it comes back in two registers and the fast path touches no memory for it.
#[repr(C)]
pub struct TypedRet<R> {
    /// Whether `value` holds the result.
    pub ok: bool,
    /// The result when `ok`.
    pub value: std::mem::MaybeUninit<R>,
}

/// The erased signature of a typed function: returns the result in a [`TypedRet`]; on a
/// panic writes the failure to `err` and returns `ok: false`.
///
/// # Safety
/// `instance` must be a live instance of the plugin that exported the function, `err`
/// must be valid for writes, and `A`/`R` must be the types whose layouts the
/// [`TypedFn`] announced.
pub type TypedCall<A, R> = unsafe extern "C" fn(InstancePtr, A, *mut Failure) -> TypedRet<R>;

/// What an async function's [`TypedCall`] returns inside its [`TypedRet`]: an
/// async-ffi future made by the plugin, whose output is the result's wire form `T`, or
/// the failure of a poll that panicked (caught in the plugin, with its message). The
/// host keeps the plugin's version (its instance and library) alive until it has
/// dropped this future.
pub type AsyncRet<T> = FfiFuture<RResult<T, Failure>>;

/// The arguments of a typed function of two arguments: what the layout check compares
/// (each field is the argument's wire form: `RStr` for `&str`, `RSlice` for `&[T]`,
/// `&T`, or a `Pod` by value). They do not cross as this one value: the entry point
/// takes each field as a parameter of its own, `extern "C" fn(InstancePtr, A, B, *mut
/// Failure)`, so they travel in registers where the C calling convention has room
/// instead of being copied through the stack on every call (one argument crosses as
/// itself, [`TypedCall`], so a `fn(u64) -> u64` keeps the calling convention it always
/// had).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Args2<A, B> {
    /// The first argument.
    pub a0: A,
    /// The second argument.
    pub a1: B,
}

/// The arguments of a typed function of three arguments (see [`Args2`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Args3<A, B, C> {
    /// The first argument.
    pub a0: A,
    /// The second argument.
    pub a1: B,
    /// The third argument.
    pub a2: C,
}

/// The arguments of a typed function of four arguments (see [`Args2`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Args4<A, B, C, D> {
    /// The first argument.
    pub a0: A,
    /// The second argument.
    pub a1: B,
    /// The third argument.
    pub a2: C,
    /// The fourth argument.
    pub a3: D,
}

/// How many arguments a typed function's argument layout (its [`TypedFn::arg`]) packs:
/// 2 to 4 for an [`Args2`]…[`Args4`] of this crate, 1 for anything else (a lone argument
/// crosses as itself; `()` stands for none).
pub fn packed_arity(layout: &TypeLayout) -> usize {
    let ours = layout.mod_path().to_string().starts_with("hotswap_abi");
    match layout.name() {
        "Args2" if ours => 2,
        "Args3" if ours => 3,
        "Args4" if ours => 4,
        _ => 1,
    }
}

/// A task handed to the host by `hotswap_plugin_api::spawn`: `run(data)` once on a host
/// thread, then `drop(data)`; or only `drop(data)` if the host refuses it.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiTask {
    /// The boxed closure.
    pub data: *mut c_void,
    /// Runs the closure (catches its panics).
    pub run: unsafe extern "C" fn(*mut c_void),
    /// Frees the closure.
    pub drop: unsafe extern "C" fn(*mut c_void),
}

/// The extension of a generation, lent to a plugin callback (see `HostVTable::extension`).
#[repr(C)]
#[derive(StableAbi)]
pub struct ExtensionFfi {
    /// The host's extension object; null when the host has none.
    pub ptr: *const c_void,
    /// Its layout; checked by the plugin against the type it asks for.
    pub layout: Option<&'static TypeLayout>,
}

/// The callback of `HostVTable::extension` (a wrapper: abi_stable cannot describe a
/// function pointer parameter of a function pointer directly).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct ExtensionCallback {
    /// Receives the caller's `data` and the lent extension.
    pub func: unsafe extern "C" fn(data: *mut c_void, ext: &ExtensionFfi),
}

/// A destructor as glibc's `__cxa_thread_atexit_impl` and `pthread_key_create` take it.
pub type Destructor = unsafe extern "C" fn(*mut c_void);

/// A thread's start routine, as `pthread_create` takes it.
pub type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;

/// A [`Destructor`] as [`HostVTable`] passes it (a wrapper: abi_stable cannot describe
/// a function pointer parameter of a function pointer directly).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct DtorFn {
    /// The destructor.
    pub func: unsafe extern "C" fn(*mut c_void),
}

/// A fork handler, as `pthread_atfork` takes it.
pub type ForkHandler = unsafe extern "C" fn();

/// The three handlers of one `pthread_atfork` registration (each may be absent), as
/// [`HostVTable::atfork`] passes them.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct AtforkFns {
    /// Run before a fork, in the parent (the last registered first).
    pub prepare: Option<ForkHandler>,
    /// Run after a fork, in the parent (in registration order).
    pub parent: Option<ForkHandler>,
    /// Run after a fork, in the child (in registration order).
    pub child: Option<ForkHandler>,
}

/// A [`StartRoutine`] as [`HostVTable`] passes it (a wrapper, as [`DtorFn`]).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct StartFn {
    /// The start routine.
    pub func: extern "C" fn(*mut c_void) -> *mut c_void,
}

/// Services the host offers every plugin.
///
/// Every function takes the `ctx` of the version calling it ([`HostHandle::ctx`]),
/// which the host keeps alive for as long as that version's file is mapped. Calls made
/// after the version was freed (from a thread-local destructor, a thread it started)
/// never touch freed state: they answer an error (`Failure` of kind `Error`), `Null`,
/// or a non-zero error code, as each function says.
///
/// # Safety
/// For every function: `ctx` must be the `ctx` of the `HostHandle` the host gave this
/// version, unchanged; `RStr`/`RSlice`/`&Value` arguments must be valid for the call.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostVTable {
    /// Runs `task` on a host-tracked thread; the plugin's version stays loaded until the
    /// task ends.
    pub spawn: unsafe extern "C" fn(
        ctx: *const c_void,
        name: RStr<'_>,
        task: FfiTask,
    ) -> RResult<(), Failure>,
    /// DataBag read: a host-made copy of the value, or `Null` when absent.
    pub bag_get: unsafe extern "C" fn(ctx: *const c_void, key: RStr<'_>) -> Value,
    /// DataBag write: the host stores its own copy. `Null` removes the key. Fails once
    /// the version is freed, or when the reload that loaded it failed.
    pub bag_set: unsafe extern "C" fn(
        ctx: *const c_void,
        key: RStr<'_>,
        value: &Value,
    ) -> RResult<(), Failure>,
    /// Calls `f(data, extension)` with the extension of the generation the calling
    /// thread's call runs on (or the current one outside a call), valid during `f`.
    pub extension:
        unsafe extern "C" fn(ctx: *const c_void, f: ExtensionCallback, data: *mut c_void),
    /// Emits a plugin's `tracing` event in the host (level 1 = error … 5 = trace), with
    /// the plugin's name and version attached.
    pub log: unsafe extern "C" fn(
        ctx: *const c_void,
        level: u8,
        target: RStr<'_>,
        message: RStr<'_>,
        fields: RStr<'_>,
    ),
    /// The most verbose level the host's subscriber wants (0 = off … 5 = trace).
    pub max_log_level: unsafe extern "C" fn(ctx: *const c_void) -> u8,
    /// Calls the live function `name` on the generation the caller runs on.
    pub call_live: unsafe extern "C" fn(
        ctx: *const c_void,
        name: RStr<'_>,
        args: RSlice<'_, Value>,
    ) -> RResult<Value, Failure>,
    /// The plugin's `__cxa_thread_atexit_impl`: the host keeps the registration (a
    /// thread-local's destructor) per version and runs it on its own thread, at that
    /// thread's next call into the host once the version is retired, or at its exit.
    /// `dso` is what glibc would get; used if the host must fall back to glibc. Returns
    /// 0, as glibc's does.
    pub thread_atexit: unsafe extern "C" fn(
        ctx: *const c_void,
        dtor: DtorFn,
        obj: *mut c_void,
        dso: *mut c_void,
    ) -> c_int,
    /// The plugin's `pthread_key_create`: the key is the version's, deleted before its
    /// library is closed. Returns what `pthread_key_create` returns.
    pub key_create:
        unsafe extern "C" fn(ctx: *const c_void, key: *mut c_uint, dtor: Option<DtorFn>) -> c_int,
    /// The plugin's `pthread_key_delete`.
    pub key_delete: unsafe extern "C" fn(ctx: *const c_void, key: c_uint) -> c_int,
    /// The plugin's `pthread_setspecific`: a non-null value of one of the version's
    /// keys is destroyed on its own thread, like a thread-local's.
    pub key_set:
        unsafe extern "C" fn(ctx: *const c_void, key: c_uint, value: *const c_void) -> c_int,
    /// The host's global allocator, which a plugin's Rust code allocates from (its
    /// `#[global_allocator]`, see `hotswap_plugin_api`'s `heap` module), so that an
    /// owned result (a `String`) becomes the host's without a copy. A block of `size`
    /// bytes aligned to `align`, or null when the pair is not a valid non-empty layout
    /// or the allocator fails. No `ctx`: it serves the plugin before and after the host
    /// knows the version.
    pub alloc: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// As `alloc`, zeroed.
    pub alloc_zeroed: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// Frees a block of `alloc`. `ptr`, `size` and `align` must be those of a live block
    /// `alloc`, `alloc_zeroed` or `realloc` returned.
    pub dealloc: unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize),
    /// Resizes a block of `alloc` (arguments as for `dealloc`) to `new_size` bytes:
    /// the new block, or null (the old one untouched) when it fails.
    pub realloc:
        unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8,
    /// A future of the host's that completes `nanos` nanoseconds from now, served by a
    /// timer thread of the host's (no async runtime needed). The waker a poll leaves
    /// with it is dropped, or woken, while this version is still loaded: the timer keeps
    /// the version alive until the future fires or is dropped. Once the version is
    /// freed, the future is ready at once.
    pub sleep: unsafe extern "C" fn(ctx: *const c_void, nanos: u64) -> FfiFuture<()>,
    /// Runs `task` to completion on a host-tracked thread, like [`spawn`](Self::spawn):
    /// the version stays loaded until the task is done and dropped (then status no
    /// longer counts it). Fails (dropping the task) once the version is being freed.
    pub spawn_future: unsafe extern "C" fn(
        ctx: *const c_void,
        name: RStr<'_>,
        task: FfiFuture<()>,
    ) -> RResult<(), Failure>,
    /// The plugin's `pthread_create`: the host counts the thread against the version,
    /// which is not closed while it runs. Returns what `pthread_create` returns.
    pub thread_create: unsafe extern "C" fn(
        ctx: *const c_void,
        thread: *mut c_ulong,
        attr: *const c_void,
        start: StartFn,
        arg: *mut c_void,
    ) -> c_int,
    /// Whether this version is retired: no longer in the manager's current generation
    /// (a reload replaced or removed it, the reload that loaded it failed, or the
    /// manager is gone), so it only drains. False while the version is current or
    /// still being loaded; true too once its load failed; once true, true for good (also
    /// once it is freed). Background tasks poll it and end, since `on_free` runs only
    /// after they did, and so do threads the plugin started (they keep its library
    /// mapped until they end).
    pub retired: unsafe extern "C" fn(ctx: *const c_void) -> bool,
    /// The plugin's `setenv` (what its std's `env::set_var` calls), `putenv` too: the
    /// host sets the variable with its own `std::env::set_var`, under the host std's
    /// environment lock, so a plugin's write never reallocates `environ` under a host
    /// reader. `name` is non-empty, without `=` or NUL, `value` without NUL (else
    /// `EINVAL`); with `overwrite` false an existing variable is kept. Returns 0 or an
    /// errno value. No `ctx`: nothing of the version is involved.
    pub env_set:
        unsafe extern "C" fn(name: RSlice<'_, u8>, value: RSlice<'_, u8>, overwrite: bool) -> c_int,
    /// The plugin's `unsetenv` (its std's `env::remove_var`), through the host's
    /// `std::env::remove_var`, as [`env_set`](Self::env_set). Returns 0 or an errno value.
    pub env_remove: unsafe extern "C" fn(name: RSlice<'_, u8>) -> c_int,
    /// The plugin's `clearenv`: removes every variable through the host's std. Returns 0.
    pub env_clear: unsafe extern "C" fn() -> c_int,
    /// The plugin's `getenv` (its std's `env::var_os`): the host's `std::env::var_os`,
    /// read under the host std's lock, answered as a NUL-terminated copy the host keeps
    /// for the life of the process (interned by value: C code may keep a `getenv`
    /// pointer for good, as glibc's stay valid); null when unset (or `name` is empty or
    /// holds `=` or NUL). Not async-signal-safe (it takes locks and may allocate).
    pub env_get: unsafe extern "C" fn(name: RSlice<'_, u8>) -> *const c_char,
    /// The plugin's `__register_atfork` (what its `pthread_atfork` calls: rand 0.8's
    /// `thread_rng`, jemalloc, OpenSSL): the host keeps the handlers for this version
    /// and runs them around every fork of the process, under a lock, until it forgets
    /// them just before it closes the version's library. Registered with glibc, they
    /// would race that close: glibc runs each handler with its own lock released, while
    /// `dlclose` unregisters and unmaps them (a crash in the next fork). Returns 0 or
    /// an errno value.
    pub atfork: unsafe extern "C" fn(ctx: *const c_void, handlers: AtforkFns) -> c_int,
}

/// A live function: found by name in whichever version is current when it is called.
/// Built only by `export_plugin!` and `#[live_functions]` (it holds a [`Sealed`]).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct LiveFn {
    /// Its name (the method name).
    pub name: RStr<'static>,
    /// Calls it.
    ///
    /// # Safety
    /// The instance must be a live instance of the plugin whose table holds this entry;
    /// shared access.
    pub call: unsafe extern "C" fn(InstancePtr, RSlice<'_, Value>) -> RResult<Value, Failure>,
    /// Proof of consistency: `call` is the glue of this plugin's type.
    pub sealed: Sealed,
}

/// The host as a plugin version sees it: `ctx` identifies the version to the host.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostHandle {
    /// Host-owned context of the version; valid while the version is loaded.
    pub ctx: *const c_void,
    /// The host's services.
    pub vtable: &'static HostVTable,
}

// SAFETY: the host promises that `ctx` may be used from any thread (it is an
// `Arc`-owned, internally synchronised record) for as long as the version is loaded.
unsafe impl Send for HostHandle {}
// SAFETY: as above.
unsafe impl Sync for HostHandle {}

/// What `on_init` receives: the generation being initialised and the host.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct VaultHandle {
    /// Id of the generation this `on_init` belongs to.
    pub generation: u64,
    /// The host.
    pub host: HostHandle,
}

/// A plugin's entry points. Every function catches panics and reports them as
/// [`Failure`]s; none unwinds into the host. Built only by `export_plugin!` (it holds a
/// [`Sealed`]).
///
/// # Safety
/// The functions taking an [`InstancePtr`] need one that came from this table's `new`
/// and was not yet passed to `drop`. `reloadable`, `export`, `import`, `invoke_func`
/// and typed and live calls take shared access (any number at once, on any threads);
/// `on_load`, `on_init`, `on_free` and `drop` need exclusive access (no other call
/// running on the instance). `new` needs a `HostHandle` whose `ctx` the host keeps
/// valid for as long as this library is mapped.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginVTable {
    /// Package name of the plugin crate.
    pub name: RStr<'static>,
    /// Crate version of the plugin.
    pub version: RStr<'static>,
    /// Whether the plugin was compiled with `panic = "unwind"`: only then can its
    /// panics be caught at the boundary. The host refuses a plugin that says `false`.
    pub panic_unwind: bool,
    /// Creates the instance (`T::default()`) and records the host handle.
    pub new: unsafe extern "C" fn(host: HostHandle) -> RResult<InstancePtr, Failure>,
    /// Destroys the instance.
    pub drop: unsafe extern "C" fn(InstancePtr) -> RResult<(), Failure>,
    /// `Plugin::reloadable`.
    pub reloadable: unsafe extern "C" fn(InstancePtr) -> RResult<bool, Failure>,
    /// `Plugin::export`.
    pub export: unsafe extern "C" fn(InstancePtr) -> RResult<ExportFfi, Failure>,
    /// `Plugin::import`.
    pub import: unsafe extern "C" fn(InstancePtr) -> RResult<RVec<ImportSpec>, Failure>,
    /// `Plugin::on_load`.
    pub on_load: unsafe extern "C" fn(InstancePtr, &Value, &ImportsFfi<'_>) -> RResult<(), Failure>,
    /// `Plugin::on_init`.
    pub on_init: unsafe extern "C" fn(InstancePtr, &VaultHandle) -> RResult<(), Failure>,
    /// `Plugin::on_free`.
    pub on_free: unsafe extern "C" fn(InstancePtr) -> RResult<(), Failure>,
    /// `Plugin::invoke_func`.
    pub invoke_func:
        unsafe extern "C" fn(InstancePtr, RStr<'_>, RSlice<'_, Value>) -> RResult<Value, Failure>,
    /// What this library's code holds on the heap now (see [`HeapUsage`]).
    pub heap: extern "C" fn() -> HeapUsage,
    /// Typed functions, for the host's fast path.
    pub typed: RSlice<'static, TypedFn>,
    /// Live functions, called by name on the current generation.
    pub live: RSlice<'static, LiveFn>,
    /// Names of the live types this plugin restores (see `hotswap_plugin_api::live`).
    pub live_types: RSlice<'static, RStr<'static>>,
    /// Proof of consistency: every function is the glue of one plugin type.
    pub sealed: Sealed,
}

/// What a version's code holds on the heap, as [`PluginVTable::heap`] reports it.
/// It is counted inside the plugin by the allocation functions `export_plugin!`
/// defines (`hotswap_plugin_api::heap`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapUsage {
    /// Whether this plugin counts at all (`false` when linked into the host binary or
    /// built with the `no-heap-stats` feature); the counts are 0 then.
    pub measured: bool,
    /// Usable bytes of the blocks allocated and not yet freed by this version's code.
    pub bytes: i64,
    /// How many blocks.
    pub blocks: i64,
}
