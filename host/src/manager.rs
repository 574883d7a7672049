//! [`PluginManager`]: loads the plugins of a directory, serves calls on the current
//! generation, and swaps in new generations.

use crate::async_func::AsyncFunc;
use crate::batch::PinnedCalls;
use crate::call_stats::CallMetrics;
use crate::error::{CallError, Error, LoadErrorKind, Step};
use crate::func::{Func, HostCalls};
use crate::generation::{Generation, Symbol};
use crate::hooks::HookThread;
use crate::layouts::CheckedLayouts;
use crate::loader::{self, LoadEnv};
use crate::names::NameKey;
use crate::reaper;
use crate::reloading::ReloadingHere;
use crate::report::{Outcome, PluginReport, ReloadReport};
use crate::shared::{ExtensionNewer, ReloadCallback, Shared};
use crate::static_plugin::StaticPlugin;
use crate::status::{
    Footprint, RecordState, Records, Status, VersionState, VersionStatus, PINNED_REASON,
};
use crate::trust::{Trust, TrustMode};
use crate::vault::{ExtensionObj, Staging, Vault};
use crate::version::{owned, Version};
use crate::{empty_scan, scan};
use abi_stable::std_types::RSlice;
use abi_stable::StableAbi;
use hotswap_abi::vtable::{AsyncRet, ImportsFfi, VaultHandle};
use hotswap_manifest::signature::TrustedKey;
use hotswap_plugin_api::interface::{Binder, Interface};
use hotswap_plugin_api::typed::{Args, HostCopy, Ret};
use hotswap_plugin_api::{Lendable, Value};
use hotswap_reclaim::{Domain, Pinned, Section};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A one-off veto, as [`PluginManager::reload_with_callback`] takes it.
type Veto<'a> = &'a dyn Fn(&Generation, &Generation) -> Result<(), String>;

/// Options of a [`PluginManager`], in the spirit of Go hotswap's `With…` options.
pub struct Builder {
    extension_newer: Option<ExtensionNewer>,
    dir: PathBuf,
    free_delay: Duration,
    whitelist: Option<HashSet<String>>,
    reload_callback: Option<ReloadCallback>,
    logger: Option<tracing::Dispatch>,
    static_plugins: Option<Vec<StaticPlugin>>,
    hook_timeout: Duration,
    trust_mode: TrustMode,
    trusted_keys: Vec<TrustedKey>,
    require_plugins: bool,
    call_metrics: bool,
    call_sampling: u32,
    recheck_layouts: bool,
    max_unloading: usize,
}

/// One call in this many (per thread and version) is timed by default.
const DEFAULT_CALL_SAMPLING: u32 = 1024;

/// Old versions that may wait to unload when a reload starts, by default
/// ([`Builder::max_unloading`]): far more than a reaper keeping up ever leaves, and few
/// enough that their pthread keys (std makes one a version for `thread::current` and
/// thread-local destructors) stay well inside glibc's 1,024.
pub const DEFAULT_MAX_UNLOADING: usize = 128;

impl Builder {
    /// Whether calls are counted for [`PluginManager::call_metrics`] and `/metrics`
    /// (calls by kind, failures, panics, a sampled latency histogram, per plugin and
    /// crate version). Default: off, so the typed call stays within a fraction of a
    /// nanosecond of a raw one. On, a call writes only a cache line of the calling
    /// thread's own (no shared write), which still costs a tight loop of typed calls
    /// about a quarter of a typed call (one store-to-load forwarding a call;
    /// `typed/counted` against `typed/1-thread` in `cargo bench -p hotswap-host
    /// --bench calls`, README, Performance); a batch ([`PluginManager::pinned`]) counts
    /// once at its end. Off, `call_metrics` is empty.
    pub fn call_metrics(mut self, on: bool) -> Builder {
        self.call_metrics = on;
        self
    }

    /// Times one call in `n` (rounded up to a power of two; per thread and version, the
    /// first call included) for the call-latency histogram, when call metrics are on.
    /// Default: 1024: reading the clock costs about ten typed calls, so timing every
    /// call would cost a typed call several times its price. `1` times every call.
    pub fn call_latency_sampling(mut self, n: u32) -> Builder {
        self.call_sampling = n.max(1);
        self
    }

    /// Whether every load checks every layout in full (the plugin's vtable, and each
    /// typed handle's argument and result layouts when a generation resolves it)
    /// instead of remembering the checks that passed. Default: `false`: a check is a
    /// function of the two layouts, so a file already checked (two builds alternating,
    /// a rollback) is not walked again, which saves about a tenth of a reload. On, every
    /// reload walks abi_stable's layout checker as the first load did: for a soundness
    /// run under valgrind (`tests/unload.rs`), where each check must run again after the
    /// previous version was unloaded.
    pub fn recheck_layouts(mut self, on: bool) -> Builder {
        self.recheck_layouts = on;
        self
    }

    /// Whether a load or reload that finds no plugin to load in the directory (no
    /// manifest at all, only libraries without one, or none the whitelist keeps) fails
    /// with [`Error::NoPlugins`], changing nothing, instead of going on with no plugins
    /// and a warning. Default: `false` (warn). Either way, every library in the
    /// directory that has no manifest is named in a warning saying how to package it
    /// (`hotswap build`); beside plugins that do load it stays a warning, since a build
    /// writes its library just before its manifest. Ignored in static mode.
    pub fn require_plugins(mut self, require: bool) -> Builder {
        self.require_plugins = require;
        self
    }

    /// The deadline of each lifecycle hook (`new`, `reloadable`, `export`, `import`,
    /// `on_load`, `on_init`). A hook that overruns fails its reload with
    /// [`LoadErrorKind::HookTimeout`] (plugin, version, step, elapsed), the reload lock
    /// is released so the next reload works, and the stuck version is never published
    /// and never unloaded while its hook runs (`status()` shows it as `Stuck`, with the
    /// step and since when; `/metrics` counts it). `on_free` past this deadline shows
    /// as `Stuck` too. Default: 30 s. [`PluginManager::reload_with_timeout`] sets it
    /// for one reload.
    pub fn hook_timeout(mut self, timeout: Duration) -> Builder {
        self.hook_timeout = timeout;
        self
    }

    /// How long a retired version waits, once no call uses it, before `on_free` runs and
    /// its library is closed. Default: zero (as soon as drained). It never runs earlier
    /// than drained, whatever this says.
    pub fn free_delay(mut self, delay: Duration) -> Builder {
        self.free_delay = delay;
        self
    }

    /// How many old versions may wait to unload (retired, not yet freed) when a reload
    /// starts. Default: [`DEFAULT_MAX_UNLOADING`]. Each keeps its library mapped and
    /// any pthread keys its code made (glibc has 1,024 for the whole process), so a
    /// host reloading faster than old versions unload must not pile them up: at the
    /// limit, a reload first waits (up to its hook deadline,
    /// [`hook_timeout`](Self::hook_timeout)) for the reaper to unload some, then fails with
    /// [`Error::TooManyUnloading`] and changes nothing. Versions that stay, because a
    /// call, value, task or thread still holds them, show in
    /// [`PluginManager::status`]. At least 1.
    pub fn max_unloading(mut self, n: usize) -> Builder {
        self.max_unloading = n.max(1);
        self
    }

    /// Load only these plugins; other builds in the directory are ignored.
    pub fn whitelist<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Builder {
        self.whitelist = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Called before every publish with the new and the current generation; `Err` vetoes.
    pub fn reload_callback(
        mut self,
        f: impl Fn(&Generation, &Generation) -> Result<(), String> + Send + Sync + 'static,
    ) -> Builder {
        self.reload_callback = Some(Arc::new(f));
        self
    }

    /// Makes the host's Extension: `f` runs once per generation (including the first),
    /// and every plugin of that generation, new or carried over, sees that object
    /// through `Vault::with_extension` (checked there by abi_stable's layout checker).
    /// Host code reads it with [`Generation::extension`].
    ///
    /// `T` is [`Lendable`]: every plugin of the generation reaches the object by shared
    /// reference, and the object outlives plugin versions, so no plugin may be able to
    /// store a value of its own in it (the host would later drop or read it with code of
    /// an unloaded library). A `#[sabi_trait]` object is `Lendable` when its interface
    /// crate says so (see [`Lendable`]'s contract); a lock of owned values is refused:
    ///
    /// ```compile_fail,E0277
    /// use abi_stable::external_types::RMutex;
    /// use abi_stable::std_types::{RString, RVec};
    /// // A plugin could push an RString of its own, dropped with the generation.
    /// let _ = hotswap_host::PluginManager::builder("plugins")
    ///     .extension_newer(|| RMutex::new(RVec::<RString>::new())); // error: not `Lendable`
    /// ```
    ///
    /// ```no_run
    /// use std::sync::atomic::AtomicU64;
    /// let _ = hotswap_host::PluginManager::builder("plugins")
    ///     .extension_newer(|| AtomicU64::new(0)); // plain data: lent
    /// ```
    pub fn extension_newer<T: StableAbi + Lendable + Send + Sync + 'static>(
        mut self,
        f: impl Fn() -> T + Send + Sync + 'static,
    ) -> Builder {
        self.extension_newer = Some(Arc::new(move || ExtensionObj::new(f())));
        self
    }

    /// Static mode (Go hotswap's `WithStaticPlugins`): `load_plugins` loads these plugins,
    /// linked into the host binary, instead of scanning the plugin directory, through the
    /// same checks, lifecycle, dependencies, vault, live functions and typed handles.
    /// `reload`, `reload_from` and `reload_with_callback` then fail with
    /// [`Error::Unsupported`]: linked code cannot be swapped. The whitelist still applies.
    /// `hotswap build --static-linking` generates the list (`static_plugins()`).
    pub fn static_plugins(mut self, plugins: impl IntoIterator<Item = StaticPlugin>) -> Builder {
        self.static_plugins = Some(plugins.into_iter().collect());
        self
    }

    /// How strictly the plugin directory is checked before anything in it is loaded.
    /// [`TrustMode::Strict`] (the default) refuses, with [`LoadErrorKind::Insecure`] at
    /// [`Step::Trust`] (the old generation serving), a plugin directory, manifest or
    /// library that its group or other users can write, or that is owned by a user
    /// other than the host's effective user or root. Symbolic links are refused in
    /// every mode. `status()` and `/metrics` say which mode is in force.
    pub fn trust_mode(mut self, mode: TrustMode) -> Builder {
        self.trust_mode = mode;
        self
    }

    /// [`TrustMode::Permissive`], for development: no owner or mode checks (links,
    /// FIFOs and devices are still refused, and trusted keys still required).
    pub fn permissive_plugin_dir(self) -> Builder {
        self.trust_mode(TrustMode::Permissive)
    }

    /// Loads only plugins whose manifest is signed (`hotswap build --sign`) by one of
    /// these keys, checked when the directory is scanned, before any file is opened;
    /// the library's sha256 in the signed manifest is checked before `dlopen`. Several
    /// keys at once allow a rotation: trust the new key, sign with it, then drop the
    /// old one. An unsigned manifest fails the reload with [`LoadErrorKind::Unsigned`],
    /// a signature by another key or over other bytes with
    /// [`LoadErrorKind::Signature`], a library changed after signing with
    /// [`LoadErrorKind::Checksum`]; the old generation keeps serving. Calling it again
    /// adds keys. Statically linked plugins are not checked (they are the binary).
    pub fn trusted_keys(mut self, keys: impl IntoIterator<Item = TrustedKey>) -> Builder {
        self.trusted_keys.extend(keys);
        self
    }

    /// Where the manager's own events go (default: the global `tracing` subscriber).
    pub fn logger(mut self, dispatch: tracing::Dispatch) -> Builder {
        self.logger = Some(dispatch);
        self
    }

    /// Makes the manager. Nothing is loaded until [`PluginManager::load_plugins`].
    /// First it removes, in the temporary directory, the private directories (the
    /// copies of loaded libraries) that managers of processes now gone left behind:
    /// those named `hotswap-<pid>-…`, owned by this user, whose process no longer exists.
    ///
    /// Fails when the private directory for loaded copies cannot be created.
    pub fn build(self) -> Result<PluginManager, Error> {
        // Copies left by managers of processes that died (killed, crashed) before they
        // could remove theirs.
        let swept = crate::stale::sweep(&std::env::temp_dir());
        if swept.removed + swept.failed > 0 {
            tracing::info!(
                removed = swept.removed,
                failed = swept.failed,
                "removed the private directories of hotswap processes that are gone"
            );
        }
        // Its real path: `/proc/self/maps` names a mapped file by it, and the unload
        // check (`maps::how_mapped`) compares the copies' paths with those names (a
        // `TMPDIR` behind a symbolic link would make every copy look unmapped).
        let temp = std::env::temp_dir();
        let temp = std::fs::canonicalize(&temp).unwrap_or(temp);
        let private_dir = tempfile::Builder::new()
            .prefix(&format!("hotswap-{}-", std::process::id()))
            .tempdir_in(&temp)
            .map_err(|source| Error::Dir { dir: temp, source })?;
        let records = Arc::new(Records::new(
            self.call_metrics.then_some(self.call_sampling),
        ));
        let reaper = reaper::start(records.clone(), self.free_delay, self.logger.clone());
        // A thread asked for attention at its next pin destroys the per-thread values of
        // drained versions there (see `threads`).
        hotswap_reclaim::on_attention(crate::threads::run_drained);
        Ok(PluginManager {
            shared: Arc::new(Shared {
                dir: Mutex::new(self.dir),
                extension_newer: self.extension_newer,
                vault: Vault::default(),
                whitelist: self.whitelist,
                reload_callback: self.reload_callback,
                logger: self.logger,
                static_plugins: self.static_plugins,
                static_claim: Mutex::new(None),
                domain: Domain::new(Arc::new(Generation::empty())),
                reload_lock: Mutex::new(()),
                jobs: reaper.jobs(),
                reaper,
                records,
                verified: Default::default(),
                spares: Default::default(),
                layouts: CheckedLayouts::new(!self.recheck_layouts),
                next_hooks: Default::default(),
                trust: Trust::new(self.trust_mode, self.trusted_keys),
                symbols: Mutex::new(Vec::new()),
                private_dir,
                reloads: AtomicU64::new(0),
                hook_timeout: self.hook_timeout,
                hook_timeouts: AtomicU64::new(0),
                pins: Default::default(),
                require_plugins: self.require_plugins,
                max_unloading: self.max_unloading,
            }),
        })
    }
}

/// A loaded plugin, as host code sees it (host-owned data, safe to keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// Build id from the manifest.
    pub build_id: String,
    /// File it was loaded from.
    pub file: PathBuf,
    /// sha256 of that file.
    pub sha256: String,
    /// Process-unique id of the loaded version.
    pub id: u64,
    /// What its `reloadable` hook answered.
    pub reloadable: bool,
}

impl PluginInfo {
    fn of(v: &Version) -> PluginInfo {
        PluginInfo {
            name: v.name().to_owned(),
            version: v.version().to_owned(),
            build_id: v.record.build_id.clone(),
            file: v.record.file.clone(),
            sha256: v.record.sha256.clone(),
            id: v.id(),
            reloadable: v.reloadable,
        }
    }
}

/// The plugin host: owns the current generation, the reaper, and the reload lock.
///
/// Calls (`invoke_func`, typed [`Func`] handles) run on the generation current when they
/// start and keep it until they return; they never wait for a reload, and a reload never
/// waits for them. One reload runs at a time: a concurrent `reload` is refused with
/// [`Error::ReloadInProgress`] and changes nothing.
///
/// ```
/// use hotswap_host::{PluginManager, Value};
///
/// let dir = tempfile::tempdir()?; // the plugin directory, empty for now
/// let manager = PluginManager::new(dir.path())?;
/// manager.load_plugins(&Value::Null)?;
/// assert!(manager.status().versions.is_empty());
/// // `hotswap build my-plugin <dir>` puts a plugin and its manifest there; then:
/// let report = manager.reload(&Value::Null)?;
/// println!("{report}");
/// // Calls by name fail with a clear error while no plugin serves them.
/// let err = manager.invoke_func("my-plugin", "greet", &[]).unwrap_err();
/// assert!(err.to_string().contains("my-plugin"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PluginManager {
    shared: Arc<Shared>,
}

impl PluginManager {
    /// Options for a manager over the plugin directory `dir`. A relative `dir` is taken
    /// against the working directory now, once: plugin code that changes the process's
    /// working directory (`std::env::set_current_dir`) does not move it.
    pub fn builder(dir: impl Into<PathBuf>) -> Builder {
        Builder {
            extension_newer: None,
            dir: absolute_dir(dir.into()),
            free_delay: Duration::ZERO,
            whitelist: None,
            reload_callback: None,
            logger: None,
            static_plugins: None,
            hook_timeout: crate::hooks::DEFAULT_TIMEOUT,
            trust_mode: TrustMode::Strict,
            trusted_keys: Vec::new(),
            require_plugins: false,
            call_metrics: false,
            call_sampling: DEFAULT_CALL_SAMPLING,
            recheck_layouts: false,
            max_unloading: DEFAULT_MAX_UNLOADING,
        }
    }

    /// A manager over `dir` with default options.
    pub fn new(dir: impl Into<PathBuf>) -> Result<PluginManager, Error> {
        Self::builder(dir).build()
    }

    fn logged<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::contain::with_logger(self.shared.logger.as_ref(), f)
    }

    /// Loads the newest build of every plugin in the directory and runs their lifecycle
    /// (`reloadable`, `import`, `on_load(data)`, `on_init`, dependencies first).
    ///
    /// Fails, loading nothing, if any plugin fails at any step; the error names the
    /// plugin, version, file and step. Fails with [`Error::AlreadyLoaded`] the second time.
    pub fn load_plugins(&self, data: &Value) -> Result<ReloadReport, Error> {
        self.exclusive(|| {
            // The published generation, not this thread's view: inside `pinned` that
            // is the generation pinned then, which may be the empty one.
            if self.shared.domain.load_arc().id() != 0 {
                return Err(Error::AlreadyLoaded);
            }
            let claim = match &self.shared.static_plugins {
                Some(_) => Some(crate::static_plugin::StaticClaim::take().ok_or_else(|| {
                    Error::Unsupported(
                        "another manager has static plugins loaded in this process: plugins \
                         linked into the host share one handle to it (what vault(), spawn \
                         and retired() reach), so one such manager at a time can host them"
                            .to_owned(),
                    )
                })?),
                None => None,
            };
            let report = self.swap(&self.dir(), data, None, self.shared.hook_timeout)?;
            // Kept as long as the manager (and its handles) live; a failed load lets go.
            *self.shared.static_claim.lock() = claim;
            Ok(report)
        })
    }

    /// Loads what changed in the directory and publishes a new generation.
    ///
    /// Plugins whose newest build has the same sha256 as the current version are kept as
    /// they are; plugins whose current version is not reloadable are kept; the others are
    /// loaded and run through their lifecycle. A reload is a transaction: on any failure
    /// the current generation keeps serving untouched, the versions loaded for the
    /// attempt are freed (their `on_free` runs), and the error says which plugin,
    /// version, file and step failed. [`Error::ReloadInProgress`] if another reload runs.
    ///
    /// In static mode ([`Builder::static_plugins`]) it fails with [`Error::Unsupported`],
    /// as do `reload_from` and `reload_with_callback`.
    pub fn reload(&self, data: &Value) -> Result<ReloadReport, Error> {
        self.refuse_static()?;
        self.exclusive(|| self.swap(&self.dir(), data, None, self.shared.hook_timeout))
    }

    /// Like [`reload`](Self::reload), reading builds from `dir`, which becomes the
    /// directory of later reloads if this one succeeds (for deploys into a new folder).
    pub fn reload_from(&self, dir: impl AsRef<Path>, data: &Value) -> Result<ReloadReport, Error> {
        self.refuse_static()?;
        // Relative to the working directory now (see `builder`).
        let dir = absolute_dir(dir.as_ref().to_owned());
        self.exclusive(|| {
            let report = self.swap(&dir, data, None, self.shared.hook_timeout)?;
            *self.shared.dir.lock() = dir.clone();
            Ok(report)
        })
    }

    /// Like [`reload`](Self::reload), with a one-off callback that sees the new and the
    /// current generation and may veto the swap (after the builder's callback, if any).
    pub fn reload_with_callback(
        &self,
        data: &Value,
        callback: impl Fn(&Generation, &Generation) -> Result<(), String>,
    ) -> Result<ReloadReport, Error> {
        self.refuse_static()?;
        self.exclusive(|| self.swap(&self.dir(), data, Some(&callback), self.shared.hook_timeout))
    }

    /// Like [`reload`](Self::reload), with `timeout` as the deadline of each hook of
    /// this reload instead of [`Builder::hook_timeout`].
    pub fn reload_with_timeout(
        &self,
        data: &Value,
        timeout: Duration,
    ) -> Result<ReloadReport, Error> {
        self.refuse_static()?;
        self.exclusive(|| self.swap(&self.dir(), data, None, timeout))
    }

    /// Reloads with `plugin` at an older build kept in the directory: build `to`, or
    /// else the newest build older than the one running. A normal transactional reload
    /// otherwise (other plugins get their newest build, as on [`reload`](Self::reload)).
    /// Later reloads keep the plugin at that build until a build newer than every build
    /// there now appears (so a rollback is not undone by the next reload, and a fix built
    /// afterwards is picked up as usual).
    ///
    /// Fails with [`Error::Rollback`] when there is no such build or none older, and as
    /// [`reload`](Self::reload) does; on failure nothing changes, the hold included.
    pub fn rollback(
        &self,
        plugin: &str,
        to: Option<&str>,
        data: &Value,
    ) -> Result<ReloadReport, Error> {
        self.refuse_static()?;
        self.exclusive(|| {
            let dir = self.dir();
            let all = scan::all_builds(&dir, self.shared.whitelist.as_ref())?;
            let running = self.find_plugin(plugin).map(|p| p.build_id);
            let pin = scan::rollback_pin(&all, plugin, running.as_deref(), to)?;
            let before = self.shared.pins.lock().insert(plugin.to_owned(), pin);
            let result = self.swap(&dir, data, None, self.shared.hook_timeout);
            if result.is_err() {
                let mut pins = self.shared.pins.lock();
                match before {
                    Some(p) => pins.insert(plugin.to_owned(), p),
                    None => pins.remove(plugin),
                };
            }
            result
        })
    }

    /// Every build kept in the plugin directory, oldest first per plugin, with the one
    /// running and the one a [`rollback`](Self::rollback) holds marked.
    ///
    /// Fails when the directory or a manifest cannot be read (as a reload would).
    pub fn builds(&self) -> Result<Vec<crate::BuildInfo>, Error> {
        let all = scan::all_builds(&self.dir(), self.shared.whitelist.as_ref())?;
        let running = self
            .plugins()
            .into_iter()
            .map(|p| (p.name, p.build_id))
            .collect();
        Ok(scan::build_list(&all, &running, &self.shared.pins.lock()))
    }

    /// Runs `f` holding the reload lock, under the manager's logger. One reload at a
    /// time: a second one is refused with [`Error::ReloadInProgress`], not queued.
    fn exclusive(
        &self,
        f: impl FnOnce() -> Result<ReloadReport, Error>,
    ) -> Result<ReloadReport, Error> {
        // The lock first: a reload asked for from inside this one (a subscriber given
        // one of its events) is refused before it touches the subscriber.
        let _lock = self
            .shared
            .reload_lock
            .try_lock()
            .ok_or(Error::ReloadInProgress)?;
        let _mark = ReloadingHere::mark(crate::reloading::owner(&self.shared));
        self.logged(f)
    }

    /// Whether this manager links its plugins statically ([`Builder::static_plugins`]).
    pub fn is_static(&self) -> bool {
        self.shared.static_plugins.is_some()
    }

    /// [`Error::Unsupported`] in static mode: there is no other code to swap in.
    fn refuse_static(&self) -> Result<(), Error> {
        if self.is_static() {
            return Err(Error::Unsupported(STATIC_RELOAD.to_owned()));
        }
        Ok(())
    }

    /// Builds and publishes the next generation. Caller holds the reload lock.
    fn swap(
        &self,
        dir: &Path,
        data: &Value,
        callback: Option<Veto<'_>>,
        timeout: Duration,
    ) -> Result<ReloadReport, Error> {
        let sh = &*self.shared;
        // Reloads faster than old versions unload would pile them up (and run the process
        // out of pthread keys): wait for the reaper at the limit, then refuse.
        // Loaded once for the reload: under the reload lock nothing else publishes.
        let old = sh.domain.load_arc();
        let waiting =
            sh.records
                .waiting_to_unload_below(sh.max_unloading, old.versions().len(), timeout);
        if waiting >= sh.max_unloading {
            return Err(Error::TooManyUnloading {
                waiting,
                limit: sh.max_unloading,
                waited: timeout,
            });
        }
        // The reload's hooks run on a thread of its own, under the deadline; it ends
        // with the reload (or, stuck in a hook, when that hook returns), once it started
        // the next reload's (see `hooks`).
        let mut hooks = HookThread::take_or_start(&sh.next_hooks, HOOK_THREAD, timeout);
        hooks.serve(crate::reloading::owner(&self.shared), sh.logger.clone());
        let result = self.swap_inner(dir, data, callback, old, &mut hooks);
        hooks.hand_on(&sh.next_hooks, HOOK_THREAD);
        if let Err(Error::Load(e)) = &result {
            if matches!(e.kind, LoadErrorKind::HookTimeout { .. }) {
                self.shared.hook_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn swap_inner(
        &self,
        dir: &Path,
        data: &Value,
        callback: Option<Veto<'_>>,
        old: Arc<Generation>,
        hooks: &mut HookThread,
    ) -> Result<ReloadReport, Error> {
        let started = Instant::now();
        let sh = &*self.shared;
        // DataBag writes of this reload's versions: committed with the swap, or
        // discarded with the reload (on every early return below).
        let staging = Arc::new(Staging::new());
        struct Discard(Arc<Staging>);
        impl Drop for Discard {
            fn drop(&mut self) {
                self.0.discard();
            }
        }
        let _discard = Discard(staging.clone());
        // Static mode has nothing to scan: its plugins are loaded below, once.
        let candidates = match &sh.static_plugins {
            Some(_) => Default::default(),
            None => {
                // Listed once: the scan and the check of what it left both use it.
                let listing = scan::list(dir)?;
                let found = scan::chosen_builds(
                    dir,
                    &listing,
                    sh.whitelist.as_ref(),
                    &sh.pins.lock().clone(),
                    &sh.trust,
                )?;
                empty_scan::check(
                    dir,
                    &listing,
                    &found,
                    sh.whitelist.as_ref(),
                    sh.require_plugins,
                )?;
                found
            }
        };
        let env = LoadEnv {
            private_dir: sh.private_dir.path(),
            jobs: &sh.jobs,
            verified: &sh.verified,
            spares: &sh.spares,
            layouts: &sh.layouts,
            trust: &sh.trust,
            records: &sh.records,
            manager: Arc::downgrade(&(self.shared.clone() as Arc<dyn crate::ctx::Services>)),
            staging: Some(staging.clone()),
        };
        let mut next: Vec<Arc<Version>> = Vec::new();
        let mut fresh: HashSet<u64> = HashSet::new();
        // This reload's fresh versions, marked retired if it returns before publishing
        // them: a background task one started in a hook would otherwise hold it forever.
        // (Version id and context: at the publish, those the generation holds are kept
        // out of it.)
        struct RetireUnpublished(Vec<(u64, Arc<crate::ctx::VersionCtx>)>);
        impl Drop for RetireUnpublished {
            fn drop(&mut self) {
                for (_, ctx) in &self.0 {
                    ctx.set_retired();
                }
            }
        }
        let mut unpublished = RetireUnpublished(Vec::new());
        let mut lines: Vec<PluginReport> = Vec::new();
        let line =
            |v: &Version, outcome, previous: Option<&Arc<Version>>, load_time| PluginReport {
                plugin: v.name().to_owned(),
                outcome,
                version: v.version().to_owned(),
                build_id: v.record.build_id.clone(),
                previous_build_id: previous.map(|p| p.record.build_id.clone()),
                load_time,
            };
        for candidate in candidates.values() {
            let current = old.find(&candidate.manifest.name);
            match current {
                Some(cur) if !cur.reloadable => {
                    lines.push(line(cur, Outcome::NotReloadable, Some(cur), Duration::ZERO));
                    next.push(cur.clone());
                }
                Some(cur) if cur.record.sha256 == candidate.manifest.sha256 => {
                    lines.push(line(cur, Outcome::Unchanged, Some(cur), Duration::ZERO));
                    next.push(cur.clone());
                }
                _ => {
                    let t = Instant::now();
                    let v = loader::load(candidate, &env, hooks)?;
                    lines.push(line(&v, Outcome::Loaded, current, t.elapsed()));
                    fresh.insert(v.id());
                    unpublished.0.push((v.id(), v.ctx.clone()));
                    next.push(v);
                }
            }
        }
        let wanted = |p: &&StaticPlugin| sh.whitelist.as_ref().is_none_or(|w| w.contains(p.name()));
        for plugin in sh.static_plugins.iter().flatten().filter(wanted) {
            let t = Instant::now();
            let v = loader::load_static(plugin, &env, hooks)?;
            lines.push(line(&v, Outcome::Loaded, None, t.elapsed()));
            fresh.insert(v.id());
            unpublished.0.push((v.id(), v.ctx.clone()));
            next.push(v);
        }
        for cur in old.versions() {
            if candidates.contains_key(cur.name()) {
                continue;
            }
            if cur.reloadable {
                lines.push(line(cur, Outcome::Removed, Some(cur), Duration::ZERO));
            } else {
                lines.push(line(cur, Outcome::NotReloadable, Some(cur), Duration::ZERO));
                next.push(cur.clone());
            }
        }
        // Rebinding: a kept plugin that imports a changed one gets a fresh instance from
        // a fresh copy of its file, bound to the new provider; the old pair keeps serving
        // the old generation until drained. Repeated until no kept plugin imports a fresh
        // one (chains rebind transitively).
        loop {
            let stale: Vec<usize> = next
                .iter()
                .enumerate()
                .filter(|(_, v)| !fresh.contains(&v.id()) && v.reloadable)
                .filter(|(_, v)| {
                    v.imports.iter().any(|d| {
                        next.iter()
                            .any(|p| p.name() == d.plugin && fresh.contains(&p.id()))
                    })
                })
                .map(|(i, _)| i)
                .collect();
            if stale.is_empty() {
                break;
            }
            for i in stale {
                let name = next[i].name().to_owned();
                let candidate = &candidates[&name];
                let t = Instant::now();
                let v = loader::load(candidate, &env, hooks)?;
                if let Some(l) = lines.iter_mut().find(|l| l.plugin == name) {
                    l.outcome = Outcome::Rebound;
                    l.build_id = v.record.build_id.clone();
                    l.load_time = t.elapsed();
                }
                fresh.insert(v.id());
                unpublished.0.push((v.id(), v.ctx.clone()));
                next[i] = v;
            }
        }
        let ordered = crate::deps::order(next)?;
        let id = old.id() + 1;
        let callback_panic =
            |what: &'static str, message: String| -> Box<crate::error::LoadError> {
                Box::new(crate::error::LoadError {
                    plugin: None,
                    version: None,
                    file: None,
                    step: Step::Callback,
                    kind: LoadErrorKind::CallbackPanic { what, message },
                })
            };
        let extension = match &sh.extension_newer {
            Some(f) => Some(Arc::new(
                crate::contain::contain_or_why("the extension factory", || f())
                    .map_err(|m| callback_panic("the extension factory", m))?,
            )),
            None => None,
        };
        run_hooks(hooks, &ordered, &fresh, data, id, extension.as_ref())?;
        // The last hooks of this reload ran: the hook thread need not linger.
        hooks.rest();
        let symbols = sh.symbols.lock().clone();
        let generation = Generation::new(id, ordered, &symbols, extension, &sh.layouts);
        let configured: Option<Veto<'_>> = sh.reload_callback.as_deref().map(|f| f as Veto<'_>);
        for cb in configured.into_iter().chain(callback) {
            let verdict =
                crate::contain::contain_or_why("the reload callback", || cb(&generation, &old))
                    .map_err(|m| callback_panic("the reload callback", m))?;
            if let Err(why) = verdict {
                return Err(crate::error::LoadError {
                    plugin: None,
                    version: None,
                    file: None,
                    step: Step::Callback,
                    kind: LoadErrorKind::Vetoed(why),
                }
                .into());
            }
        }
        let order: Vec<String> = generation
            .versions()
            .iter()
            .map(|v| v.name().to_owned())
            .collect();
        lines.sort_by_key(|l| {
            order
                .iter()
                .position(|n| *n == l.plugin)
                .unwrap_or(usize::MAX)
        });
        // The reload's DataBag writes land with the swap, all at once.
        staging.commit(&sh.vault);
        let kept: HashSet<u64> = generation.versions().iter().map(|v| v.id()).collect();
        let retired = sh.domain.publish(Arc::new(generation));
        // Published: the fresh versions are current, and the old ones this generation
        // no longer holds are retired (`hotswap_plugin_api::retired` answers true from
        // now on, so their background tasks end and let them unload).
        unpublished.0.retain(|(id, _)| !kept.contains(id));
        drop(unpublished);
        for v in old.versions().iter().filter(|v| !kept.contains(&v.id())) {
            v.ctx.set_retired();
        }
        // The reaper's reference is then the last one (unless a call still runs on it),
        // so the old generation is dropped there, not on the reload's path.
        let previous = old.id();
        drop(old);
        sh.reaper.retire(retired);
        // A reload replaces a generation; the first load (from the empty generation 0)
        // is not one, so `status().reloads` reads 1 after one reload.
        if previous != 0 {
            sh.reloads.fetch_add(1, Ordering::Relaxed);
        }
        let report = ReloadReport {
            generation: id,
            previous_generation: previous,
            plugins: lines,
            duration: started.elapsed(),
        };
        tracing::info!(
            generation = id,
            took_ms = report.duration.as_secs_f64() * 1000.0,
            "published generation"
        );
        Ok(report)
    }

    /// Runs `f` with the current generation pinned: every typed call made through the
    /// [`PinnedCalls`] it receives runs on that generation, paying for the pin once for
    /// the whole batch (`p.call(&func, x)` in a loop costs about what a raw `extern "C"`
    /// call does; README, Performance). Nested inside a pin of this manager on this
    /// thread (a call, another `pinned`), it reuses that pin's generation.
    ///
    /// Keep `f` short: the pinned generation, and every version it holds, stays in
    /// memory until `f` returns, however many reloads publish meanwhile.
    #[inline(always)]
    pub fn pinned<T>(&self, f: impl FnOnce(&PinnedCalls<'_>) -> T) -> T {
        let sh = &*self.shared;
        sh.domain.with(|g| f(&PinnedCalls::new(sh, g)))
    }

    /// Calls `function` of `plugin` by name with stable values; the result is host-owned.
    ///
    /// Fails with [`CallError::UnknownPlugin`] for a plugin the current generation does
    /// not have, and with the plugin's own answer ([`CallError::Failed`], which for a
    /// name it does not know is its `Error::unknown_function`) or panic
    /// ([`CallError::Panicked`]).
    // Inlined: the pin and the key of a plugin name given as a literal then fold into
    // the caller (README, Performance: the by-name path).
    #[inline]
    pub fn invoke_func(
        &self,
        plugin: &str,
        function: &str,
        args: &[Value],
    ) -> Result<Value, CallError> {
        // A section: it inlines into both of the pin's paths (and so into the caller),
        // where the key of a literal name folds to constants, and its names and
        // arguments stay in registers (`Domain::with_section`).
        self.shared.domain.with_section(NamedCall {
            plugin,
            function,
            args,
        })
    }

    /// Calls `function` on every plugin, dependencies first, all on one generation.
    pub fn invoke_each(
        &self,
        function: &str,
        args: &[Value],
    ) -> Vec<(String, Result<Value, CallError>)> {
        self.each(function, args, false)
    }

    /// Like [`invoke_each`](Self::invoke_each), dependents first.
    pub fn invoke_each_backward(
        &self,
        function: &str,
        args: &[Value],
    ) -> Vec<(String, Result<Value, CallError>)> {
        self.each(function, args, true)
    }

    fn each(
        &self,
        function: &str,
        args: &[Value],
        backward: bool,
    ) -> Vec<(String, Result<Value, CallError>)> {
        self.shared.domain.with(|g| {
            let call = |v: &Arc<Version>| (v.name().to_owned(), v.invoke(function, args));
            if backward {
                g.versions().iter().rev().map(call).collect()
            } else {
                g.versions().iter().map(call).collect()
            }
        })
    }

    /// Runs `f` on the current generation, which stays current for `f` even if a reload
    /// publishes another meanwhile; calls made through it all reach the same versions.
    pub fn with_generation<R>(&self, f: impl FnOnce(&Generation) -> R) -> R {
        self.shared.domain.with(f)
    }

    /// The plugin called `name` in the current generation.
    pub fn find_plugin(&self, name: &str) -> Option<PluginInfo> {
        self.shared
            .domain
            .with(|g| g.find(name).map(|v| PluginInfo::of(v)))
    }

    /// The plugins of the current generation, dependencies first.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.shared
            .domain
            .with(|g| g.versions().iter().map(|v| PluginInfo::of(v)).collect())
    }

    /// Id of the current generation: 0 before the first load, one more per reload.
    pub fn generation_id(&self) -> u64 {
        self.shared.domain.with(|g| g.id())
    }

    /// The directory the next reload reads.
    pub fn dir(&self) -> PathBuf {
        self.shared.dir.lock().clone()
    }

    /// A typed handle on `function` of `plugin`, the fast path: resolved once per
    /// generation, then every call is a slot read and an indirect call with no lock,
    /// no string lookup and no shared write. The handle stays valid across reloads.
    ///
    /// `A` is the argument list: a lone `Pod` (`func::<u64, u64>`) or a tuple of up to
    /// four arguments (`func::<(&str, u32, &QuoteOpts), Result<Quote, PricingError>>`);
    /// `R` the result (see [`Func`] and `hotswap_plugin_api::typed`).
    ///
    /// Fails when plugins are loaded and the current generation has no such plugin or
    /// function, or its signature is not `fn(A) -> R` (checked by abi_stable's layout
    /// checker, never by trusting a name): [`CallError::Signature`] then says in one line
    /// what differs (the argument count, which argument, the result, or the error type). Making a handle waits for a running reload
    /// to finish; from inside a reload of this manager (a reload callback,
    /// `extension_newer`) it fails with [`CallError::InReload`] instead of waiting forever.
    pub fn func<A: Args, R: Ret>(
        &self,
        plugin: &str,
        function: &str,
    ) -> Result<Func<A, R>, CallError> {
        let index = self.register(Symbol {
            plugin: plugin.to_owned(),
            function: function.to_owned(),
            arg: <A::Wire<'static> as StableAbi>::LAYOUT,
            ret: <R::Wire as StableAbi>::LAYOUT,
            arg_layouts: A::arg_layouts(),
            result_layouts: R::result_layouts(),
            types: (
                std::any::TypeId::of::<A::Key>(),
                std::any::TypeId::of::<R>(),
            ),
            stub: A::stub::<R::Wire>() as usize,
        })?;
        Ok(Func::new(self.shared.clone(), index, plugin, function))
    }

    /// A handle on the async function `function` of `plugin`
    /// (`export_plugin!(.., async { function: fn(A) -> R })`), resolved like
    /// [`func`](Self::func) and valid across reloads; see [`AsyncFunc`]. Its
    /// [`call`](AsyncFunc::call) returns a future to await:
    /// `manager.async_func::<Request, Response>("handlers", "handle")?.call(req).await`.
    ///
    /// Fails as [`func`](Self::func) does; a plugin function that is not async (or an
    /// async one asked for with `func`) is a [`CallError::Signature`] on the result.
    pub fn async_func<A, R>(
        &self,
        plugin: &str,
        function: &str,
    ) -> Result<AsyncFunc<A, R>, CallError>
    where
        A: HostCopy + StableAbi + Send + 'static,
        R: Ret,
        R::Wire: Send,
    {
        /// Tells an async handle's symbol from a typed one's of the same types.
        struct Async<A>(A);
        let index = self.register(Symbol {
            plugin: plugin.to_owned(),
            function: function.to_owned(),
            arg: <A as StableAbi>::LAYOUT,
            ret: <AsyncRet<R::Wire> as StableAbi>::LAYOUT,
            arg_layouts: vec![<A as StableAbi>::LAYOUT],
            result_layouts: None,
            types: (
                std::any::TypeId::of::<Async<A>>(),
                std::any::TypeId::of::<R>(),
            ),
            stub: crate::func::unresolved::<A, AsyncRet<R::Wire>> as *const () as usize,
        })?;
        Ok(AsyncFunc::new(self.shared.clone(), index, plugin, function))
    }

    /// Registers a handle's symbol (or finds it registered), republishes the current
    /// generation with it resolved if it is new, and returns its index; fails when
    /// plugins are loaded and the current generation cannot resolve it.
    fn register(&self, symbol: Symbol) -> Result<usize, CallError> {
        let sh = &*self.shared;
        // The reload lock is held by this very thread (a callback of the reload asks):
        // waiting for it would never end.
        if ReloadingHere::is(crate::reloading::owner(&self.shared)) {
            return Err(CallError::InReload {
                plugin: symbol.plugin,
                function: symbol.function,
            });
        }
        // Holding the reload lock makes the republish below one of the serialized swaps.
        let _lock = sh.reload_lock.lock();
        let mut symbols = sh.symbols.lock();
        let current = sh.domain.load_arc();
        let index = match symbols.iter().position(|s| {
            s.plugin == symbol.plugin && s.function == symbol.function && s.types == symbol.types
        }) {
            Some(i) => i,
            None => {
                // A symbol the loaded plugins cannot resolve is not kept: a host that
                // asks for names it was given (a request's) would otherwise grow the
                // list, and every later generation's resolving of it, without bound.
                if current.id() > 0 {
                    current.resolve(&symbol, &sh.layouts)?;
                }
                symbols.push(symbol);
                symbols.len() - 1
            }
        };
        let current = if current.typed.len() <= index {
            let g = Arc::new(current.with_symbols(&symbols, &sh.layouts));
            sh.reaper.retire(sh.domain.publish(g.clone()));
            g
        } else {
            current
        };
        if current.id() > 0 {
            if let Some(e) = current.typed_error(index) {
                return Err(e.clone());
            }
        }
        Ok(index)
    }

    /// A handle on `plugin`'s implementation of the interface trait `I`
    /// (`manager.interface::<dyn Pricing>("shop")`; see `hotswap_plugin_api::interface`):
    /// one typed handle per method, made as [`func`](Self::func) makes them, so each
    /// method call pins the current generation and the handle stays valid across reloads.
    ///
    /// Fails as `func` does for the first method that is missing or has another signature
    /// ([`CallError::Signature`] names the method, `shop::Pricing.quote`, and what differs),
    /// and with [`CallError::NotImplemented`] when the plugin exports none of them.
    pub fn interface<I: Interface + ?Sized>(
        &self,
        plugin: &str,
    ) -> Result<crate::func::Interface<I>, CallError> {
        struct Bind<'a> {
            manager: &'a PluginManager,
            plugin: &'a str,
        }
        impl Binder for Bind<'_> {
            type Calls = HostCalls;
            fn bind<A: Args, R: Ret>(
                &self,
                function: &'static str,
            ) -> Result<Func<A, R>, CallError> {
                self.manager.func(self.plugin, function)
            }
        }
        I::bind(&Bind {
            manager: self,
            plugin,
        })
        .map_err(|e| match e {
            CallError::UnknownFunction { plugin, function }
                if self.implements_none(&plugin, I::METHODS) =>
            {
                CallError::NotImplemented {
                    plugin,
                    interface: I::NAME.to_owned(),
                    function,
                }
            }
            e => e,
        })
    }

    fn implements_none(&self, plugin: &str, methods: &[&str]) -> bool {
        self.shared.domain.with(|g| {
            g.find(plugin)
                .is_some_and(|v| methods.iter().all(|m| v.typed(m).is_none()))
        })
    }

    /// How many of each per-version and per-reload structure this manager holds now
    /// (see [`Footprint`]); none grows with the number of reloads. Takes a few short
    /// locks and reads the private directory: not for a hot path.
    pub fn footprint(&self) -> Footprint {
        let sh = &*self.shared;
        Footprint {
            records: sh.records.list.lock().len(),
            verified_files: sh.verified.len(),
            typed_symbols: sh.symbols.lock().len(),
            // The spares are files of the same directory.
            private_copies: std::fs::read_dir(sh.private_dir.path())
                .map_or(0, |entries| entries.count())
                .saturating_sub(sh.spares.len()),
            spare_copies: sh.spares.len(),
            checked_layouts: sh.layouts.len(),
            call_metric_labels: sh.records.retired_labels(),
        }
    }

    /// The call figures of every plugin version since start, one entry per (plugin,
    /// crate version): the loads of that version in memory and the unloaded ones summed
    /// (the unloaded ones of the 256 most recent label sets). Empty unless
    /// [`Builder::call_metrics`] is on. A scrape sums each thread's counters: it never
    /// blocks a call. `/metrics` serves them as `hotswap_calls_total` and friends.
    pub fn call_metrics(&self) -> Vec<CallMetrics> {
        self.shared.records.call_metrics()
    }

    /// Every version still in memory (current, draining, pinned) and the reclamation mode.
    pub fn status(&self) -> Status {
        let sh = &*self.shared;
        let current = sh.domain.load_arc();
        let mut versions = Vec::new();
        let records: Vec<_> = sh.records.list.lock().clone();
        for r in records {
            let state = r.state.lock().clone();
            let ms = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            };
            let closing = || VersionState::Closing {
                thread_locals: r.holds.items(),
                threads: r.holds.threads(),
            };
            let state = match state {
                RecordState::Loaded => match current.find(&r.name) {
                    Some(v) if v.id() == r.id => VersionState::Current,
                    _ => VersionState::Draining {
                        tasks: r.holds.tasks(),
                    },
                },
                RecordState::Stuck { step, since } => VersionState::Stuck {
                    step,
                    since_ms: ms(since),
                },
                RecordState::Freeing { since } => {
                    if since.elapsed().unwrap_or_default() > sh.hook_timeout {
                        VersionState::Stuck {
                            step: "on_free".to_owned(),
                            since_ms: ms(since),
                        }
                    } else {
                        closing()
                    }
                }
                RecordState::Closing => closing(),
                RecordState::Freed { .. } => {
                    // Re-check: the reason may be gone by now. A statically linked
                    // version has no file and is never pinned.
                    let unmapped = match &r.private_path {
                        Some(path) => crate::maps::is_mapped(path) == Some(false),
                        None => true,
                    };
                    if unmapped {
                        sh.records.freed(&r, false);
                        continue;
                    }
                    VersionState::Pinned {
                        reason: PINNED_REASON.to_owned(),
                    }
                }
            };
            versions.push(VersionStatus {
                id: r.id,
                plugin: r.name.clone(),
                version: r.version.clone(),
                build_id: r.build_id.clone(),
                file: r.file.clone(),
                sha256: r.sha256.clone(),
                threads: r.holds.threads(),
                heap: r.heap(),
                state,
            });
        }
        Status {
            generation: current.id(),
            versions,
            reclamation: hotswap_reclaim::mode().to_owned(),
            reloads: sh.reloads.load(Ordering::Relaxed),
            hook_timeouts: sh.hook_timeouts.load(Ordering::Relaxed),
            unloaded: *sh.records.unloaded.lock(),
            unloaded_heap: *sh.records.unloaded_heap.lock(),
            trust: sh.trust.status(),
        }
    }

    /// Waits until every retired generation and version that nothing uses any more has
    /// been freed, or `timeout`. Returns whether it got there. For tests and shutdown.
    ///
    /// Inside [`pinned`](Self::pinned) on a generation that a reload has replaced
    /// since, it returns `false` at once: this very thread holds that generation, so
    /// waiting could only end at the timeout (or never, with `Duration::MAX`).
    pub fn collect(&self, timeout: Duration) -> bool {
        let holds_an_old_one = || {
            let current = self.shared.domain.load_arc().id();
            self.shared
                .domain
                .with_pinned(|g, pinned| matches!(pinned, Pinned::Outer) && g.id() != current)
        };
        // In slices, looking again between them: another thread may reload meanwhile.
        let deadline = crate::deadline::after(timeout);
        loop {
            if holds_an_old_one() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self
                .shared
                .reaper
                .wait_idle(left.min(Duration::from_millis(100)))
            {
                return true;
            }
            if left <= Duration::from_millis(100) {
                return false;
            }
        }
    }

    /// The vault's DataBag, shared with every plugin (host-owned values).
    pub fn vault(&self) -> &Vault {
        &self.shared.vault
    }

    /// Calls the live function `name` on the current generation (whichever plugin
    /// registers it now); the result is host-owned.
    pub fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, CallError> {
        self.shared.domain.with(|g| g.call_live(name, args))
    }

    /// Directory holding the private copies of loaded files.
    pub fn private_dir(&self) -> &Path {
        self.shared.private_dir.path()
    }
}

/// Why a manager with static plugins refuses to reload.
const STATIC_RELOAD: &str = "static plugins are linked into the host binary and cannot be \
     swapped; rebuild and restart the host (Go hotswap answers the same)";

/// Runs `on_load` (with the resolved imports) then `on_init` on the fresh versions,
/// providers first, on the reload's hook thread, each under the deadline. Nothing is
/// published yet, so they have exclusive access.
/// The name of a reload's hook thread.
const HOOK_THREAD: &str = "hotswap-hooks";

fn run_hooks(
    hooks: &mut HookThread,
    ordered: &[Arc<Version>],
    fresh: &HashSet<u64>,
    data: &Value,
    id: u64,
    extension: Option<&Arc<ExtensionObj>>,
) -> Result<(), Box<crate::error::LoadError>> {
    // One fresh version (the usual reload): its `on_load` and `on_init` follow each
    // other with nothing between, so they run as one job, one round trip to the hook
    // thread instead of two, each hook under its own deadline.
    if let [v] = ordered
        .iter()
        .filter(|v| fresh.contains(&v.id()))
        .collect::<Vec<_>>()[..]
    {
        return load_and_init(hooks, v, ordered, data, id, extension);
    }
    for v in ordered.iter().filter(|v| fresh.contains(&v.id())) {
        let (providers, entries) = crate::deps::resolve(v, ordered)?;
        let _ = v.providers.set(providers.clone());
        let entries = SendEntries(entries);
        let (job_v, data, ext) = (v.clone(), data.clone(), extension.cloned());
        let r = hooks.run(
            Step::OnLoad,
            move |_| {
                // The providers the entries point into stay loaded: `job_v` holds them.
                let entries = entries;
                on_load(&job_v, &data, &entries, ext.as_ref())
            },
            drop,
        );
        finish(v, Step::OnLoad, r)?;
        drop(providers);
    }
    for v in ordered.iter().filter(|v| fresh.contains(&v.id())) {
        let vault = VaultHandle {
            generation: id,
            host: crate::callbacks::handle(&v.ctx),
        };
        let (job_v, ext) = (v.clone(), extension.cloned());
        let r = hooks.run(
            Step::OnInit,
            move |_| on_init(&job_v, &vault, ext.as_ref()),
            drop,
        );
        finish(v, Step::OnInit, r)?;
    }
    Ok(())
}

/// `on_load` then `on_init` of `v`, the one fresh version of the reload, in one job
/// (as [`run_hooks`] runs them for many, in two).
fn load_and_init(
    hooks: &mut HookThread,
    v: &Arc<Version>,
    ordered: &[Arc<Version>],
    data: &Value,
    id: u64,
    extension: Option<&Arc<ExtensionObj>>,
) -> Result<(), Box<crate::error::LoadError>> {
    let (providers, entries) = crate::deps::resolve(v, ordered)?;
    let _ = v.providers.set(providers.clone());
    let entries = SendEntries(entries);
    let vault = VaultHandle {
        generation: id,
        host: crate::callbacks::handle(&v.ctx),
    };
    let (job_v, data, ext) = (v.clone(), data.clone(), extension.cloned());
    let r = hooks.run(
        Step::OnLoad,
        move |progress| {
            // The providers the entries point into stay loaded: `job_v` holds them.
            let entries = entries;
            on_load(&job_v, &data, &entries, ext.as_ref()).map_err(|f| (Step::OnLoad, f))?;
            progress.step(Step::OnInit);
            on_init(&job_v, &vault, ext.as_ref()).map_err(|f| (Step::OnInit, f))
        },
        drop,
    );
    drop(providers);
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err((step, f))) => finish(v, step, Ok(Err(f))),
        // The overrun's step is the one the job was in.
        Err(e) => finish(v, Step::OnLoad, Err(e)),
    }
}

/// `on_load` of `v`, a fresh version of this reload, with its resolved imports: run on
/// the hook thread (by [`run_hooks`] and [`load_and_init`]).
fn on_load(
    v: &Version,
    data: &Value,
    entries: &SendEntries,
    extension: Option<&Arc<ExtensionObj>>,
) -> Result<(), crate::version::OwnedFailure> {
    let imports = ImportsFfi {
        entries: RSlice::from_slice(&entries.0),
    };
    crate::callbacks::initializing(extension, || {
        // SAFETY: the version is fresh and unpublished: no call runs on it, so the
        // exclusive access on_load needs holds. `imports` outlives the call; the caller's
        // `Arc<Version>` keeps the library open.
        owned(unsafe { (v.vtable().on_load)(v.instance(), data, &imports) })
    })
}

/// `on_init` of `v`, a fresh version of this reload, with its vault: run on the hook
/// thread after its `on_load`.
fn on_init(
    v: &Version,
    vault: &VaultHandle,
    extension: Option<&Arc<ExtensionObj>>,
) -> Result<(), crate::version::OwnedFailure> {
    crate::callbacks::initializing(extension, || {
        // SAFETY: as in `on_load`, for on_init.
        owned(unsafe { (v.vtable().on_init)(v.instance(), vault) })
    })
}

/// A hook job's answer as the reload's error, if it failed or overran.
fn finish(
    v: &Version,
    step: Step,
    r: Result<Result<(), crate::version::OwnedFailure>, crate::hooks::HookFailure>,
) -> Result<(), Box<crate::error::LoadError>> {
    let fail = |step, kind| Box::new(v.load_error(step, kind));
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err(fail(step, f.into_kind())),
        Err(e) => Err(loader::hook_failure(&fail, e, &v.record)),
    }
}

/// Import entries moved to the hook thread with the version that holds their providers.
struct SendEntries(Vec<hotswap_abi::vtable::ImportEntry>);
// SAFETY: the entries point into providers' libraries and exports, which are immutable
// or `Sync` (`Export::new` requires it) and kept alive by the dependent's version,
// which the job holds.
unsafe impl Send for SendEntries {}

/// A call by name as the pinned section of [`PluginManager::invoke_func`].
/// `dir` made absolute against the working directory of this moment (no file is
/// touched; `dir` as it is if the working directory cannot be read).
fn absolute_dir(dir: PathBuf) -> PathBuf {
    std::path::absolute(&dir).unwrap_or(dir)
}

struct NamedCall<'a> {
    plugin: &'a str,
    function: &'a str,
    args: &'a [Value],
}

impl Section<Generation> for NamedCall<'_> {
    type Output = Result<Value, CallError>;
    #[inline(always)]
    fn run(self, g: &Generation, _: Pinned) -> Self::Output {
        g.invoke(
            &NameKey::of(self.plugin),
            self.plugin,
            self.function,
            self.args,
        )
    }
}
