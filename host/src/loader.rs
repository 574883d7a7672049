//! Loading one plugin file: copy it to a private path, check it, dlopen it, check its
//! header and layout, create its instance, ask its `reloadable` and `import` hooks.
//! A plugin linked into the host binary ([`StaticPlugin`]) skips the file steps and goes
//! through the same header checks, instance and hooks (`load_static`).
//!
//! Each version is opened from its own private copy with its own library handle
//! (never abi_stable's `RootModule` singleton, which keeps one version per type and
//! leaks it), so it can be closed again, and `/proc/self/maps` can tell whether it
//! really was.

use crate::ctx::VersionCtx;
use crate::error::{LoadError, LoadErrorKind, Step};
use crate::generation::check_layout;
use crate::hooks::{HookFailure, HookThread};
use crate::layouts::{Check, CheckedLayouts};
use crate::library::{ExportObj, Jobs, Lib, VtPtr};
use crate::scan::Candidate;
use crate::spare::{KeepAs, Source, Spares};
use crate::static_plugin::StaticPlugin;
use crate::status::{HeapSource, RecordState, Records, VersionRecord};
use crate::threads::Holds;
use crate::trust::Trust;
use crate::vault::Staging;
use crate::verified::Verified;
use crate::version::{owned, Dependency, Instantiated, OwnedFailure, Version};
use abi_stable::library::AbiHeader;
use abi_stable::StableAbi;
use hotswap_abi::header::{self, PluginHeader};
use hotswap_abi::vtable::PluginVTable;
use hotswap_manifest::sha256_hex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

static NEXT_VERSION_ID: AtomicU64 = AtomicU64::new(1);

/// Where loaded versions go.
pub(crate) struct LoadEnv<'a> {
    pub private_dir: &'a Path,
    pub jobs: &'a Jobs,
    /// Plugin files already checked, whose checks a load of the same file skips.
    pub verified: &'a Verified,
    /// Private copies of unloaded versions, reused for a file already checked.
    pub spares: &'a Arc<Spares>,
    /// Layout checks already passed, not run again.
    pub layouts: &'a CheckedLayouts,
    /// The owner and mode checks every plugin file passes before it is read.
    pub trust: &'a Trust,
    pub records: &'a Records,
    pub manager: std::sync::Weak<dyn crate::ctx::Services>,
    /// The DataBag writes of the reload loading these versions.
    pub staging: Option<Arc<Staging>>,
}

/// Loads `candidate`. On failure nothing stays loaded or on disk.
pub(crate) fn load(
    candidate: &Candidate,
    env: &LoadEnv<'_>,
    hooks: &mut HookThread,
) -> Result<Arc<Version>, Box<LoadError>> {
    let m = &candidate.manifest;
    let source = candidate.library_path();
    let fail = |step: Step, kind: LoadErrorKind| {
        Box::new(LoadError {
            plugin: Some(m.name.clone()),
            version: Some(m.version.clone()),
            file: Some(source.clone()),
            step,
            kind,
        })
    };
    let id = NEXT_VERSION_ID.fetch_add(1, Ordering::Relaxed);
    // A unique private path per version: dlopen of a path it already has open returns
    // the old handle, and the build directory may be rewritten while we run. (A spare
    // copy, below, is opened where it is: its name is unique too.)
    let mut private_path = env.private_dir.join(format!("{id}-{}", m.file));
    // Never block on, or follow a link from, the plugin directory; only what the trust
    // checks accept.
    let file = open_trusted(&source, env.trust).map_err(|(step, kind)| fail(step, kind))?;
    // The same file, unchanged, with the same manifest checksum, passed the checks
    // before (see `verified`): they are functions of its bytes alone, so it is not
    // checked again; the private copy of an unloaded version of it is opened again (see
    // `spare`), or else it is copied (inside the kernel, never read into this process),
    // provided it stays unchanged during the copy. Otherwise it is read, checked and
    // written.
    let known = Source {
        identity: file.identity(),
        sha256: m.sha256.clone(),
    };
    // The file the private copy holds the bytes of, once they are known to be its.
    let mut copy_of: Option<Source> = None;
    let to_check = if env.verified.contains(&known.identity, &known.sha256) {
        if let Some(spare) = env.spares.take(&known) {
            private_path = spare;
            copy_of = Some(known);
            None
        } else {
            match file.copy_to(&private_path) {
                Ok(Some(_)) => {
                    copy_of = Some(known);
                    None
                }
                // Changed while it was copied: read again from the start, and checked.
                Ok(None) => {
                    let _ = std::fs::remove_file(&private_path);
                    Some(
                        open_trusted(&source, env.trust)
                            .map_err(|(step, kind)| fail(step, kind))?,
                    )
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&private_path);
                    return Err(fail(Step::Copy, e.into()));
                }
            }
        }
    } else {
        Some(file)
    };
    if let Some(file) = to_check {
        let (bytes, identity) = file
            .read_all(None)
            .map_err(|e| fail(Step::Copy, e.into()))?;
        // Shared with the writer without a copy.
        let bytes = Arc::new(bytes);
        // Map exactly the bytes we check. Writing them is a third of loading a new file
        // and hashing them half: the hook thread writes them meanwhile (it has nothing
        // else to do before this version's hooks), and they are deleted again below if
        // they fail a check.
        let writing = {
            let (to, bytes) = (private_path.clone(), bytes.clone());
            hooks.lend(move || std::fs::write(to, bytes.as_slice()))
        };
        let unchecked = RemoveOnDrop(&private_path);
        let known = identity.is_some_and(|i| env.verified.contains(&i, &m.sha256));
        let actual = (!known).then(|| sha256_hex(&bytes));
        let written = match writing.map(|w| w.recv()) {
            Some(Ok(written)) => written,
            // Not taken, or the thread ended before it answered: written here.
            _ => std::fs::write(&private_path, bytes.as_slice()),
        };
        written.map_err(|e| fail(Step::Copy, e.into()))?;
        if let Some(actual) = actual {
            if actual != m.sha256 {
                return Err(fail(
                    Step::Copy,
                    LoadErrorKind::Checksum {
                        expected: m.sha256.clone(),
                        actual,
                    },
                ));
            }
            hotswap_manifest::elf::validate(&bytes).map_err(|e| fail(Step::Validate, e.into()))?;
            // A panic = "abort" build would abort the host at its first panic: never
            // opened.
            crate::panic_abort::check(&bytes, m).map_err(|kind| fail(Step::Validate, kind))?;
            if let Some(i) = identity {
                env.verified.insert(i, &m.sha256);
            }
        }
        // Checked: from here `remove_copy` below owns the copy.
        std::mem::forget(unchecked);
        copy_of = identity.map(|identity| Source {
            identity,
            sha256: m.sha256.clone(),
        });
    }
    let remove_copy = RemoveOnDrop(&private_path);

    #[cfg(unix)]
    let library: libloading::Library = {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // RTLD_DEEPBIND: the plugin's own references bind to its own definitions first,
        // so its `__cxa_thread_atexit_impl`, `pthread_key_create`, … (defined by
        // `export_plugin!`, see `hotswap_plugin_api::interpose`) reach the host's
        // per-version bookkeeping, while the rest of the process keeps glibc's.
        // SAFETY: loading runs the file's initializers. The file is a complete shared
        // object for this machine (checked above) built by `hotswap build`; plugins are
        // trusted code, and Rust cdylibs run no initializers of their own.
        unsafe {
            Library::open(
                Some(&private_path),
                RTLD_NOW | RTLD_LOCAL | libc::RTLD_DEEPBIND,
            )
        }
        .map_err(|e| fail(Step::Open, LoadErrorKind::Open(e.to_string())))?
        .into()
    };
    #[cfg(not(unix))]
    // SAFETY: as above.
    let library = unsafe { libloading::Library::new(&private_path) }
        .map_err(|e| fail(Step::Open, LoadErrorKind::Open(e.to_string())))?;

    let vtable =
        check_header(&library, env.layouts, &m.sha256).map_err(|(step, kind)| fail(step, kind))?;
    // SAFETY: check_header verified the layout of the table `vtable` points to; it lives
    // in `library`, which the Version keeps open.
    let vt: &PluginVTable = unsafe { &*vtable };
    if vt.name.as_str() != m.name {
        return Err(fail(
            Step::AbiCheck,
            LoadErrorKind::NameMismatch {
                manifest: m.name.clone(),
                library: vt.name.as_str().to_owned(),
            },
        ));
    }
    check_live(
        vt,
        m.live_functions.iter().map(String::as_str),
        &m.live_prefix,
    )
    .map_err(|kind| fail(Step::AbiCheck, kind))?;
    let origin = Origin {
        id,
        name: m.name.clone(),
        version: m.version.clone(),
        build_id: m.build_id.clone(),
        file: source.clone(),
        private_path: Some(private_path.clone()),
        sha256: m.sha256.clone(),
        copy_of,
    };
    // SAFETY: `vtable` passed check_header and points into `library`, handed over too.
    unsafe {
        instantiate(
            origin,
            Some(library),
            vtable,
            Some(remove_copy),
            env,
            hooks,
            &fail,
        )
    }
}

/// Opens the plugin file `source` without blocking on it or following a link
/// (`safe_fs`), and refuses it at [`Step::Trust`] if `trust` does (owner and mode, as
/// `fstat` of the very descriptor opened says). These checks run on every load: the
/// `verified` cache only skips checks of the bytes.
fn open_trusted(
    source: &Path,
    trust: &Trust,
) -> Result<hotswap_manifest::safe_fs::OpenRegular, (Step, LoadErrorKind)> {
    let file =
        hotswap_manifest::safe_fs::open_regular(source).map_err(|e| (Step::Copy, e.into()))?;
    trust
        .check_file(source, &file.access())
        .map_err(|kind| (Step::Trust, kind))?;
    Ok(file)
}

/// Loads a plugin linked into the host binary: the same header checks, instance and
/// hooks as [`load`], without a file, a copy or a library handle. Fails (nothing stays
/// loaded) at the step that failed, like `load`.
pub(crate) fn load_static(
    plugin: &StaticPlugin,
    env: &LoadEnv<'_>,
    hooks: &mut HookThread,
) -> Result<Arc<Version>, Box<LoadError>> {
    let (name, version) = (plugin.name(), plugin.version());
    // The "file" a static plugin comes from is the host binary itself.
    let file = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(STATIC_FILE));
    let fail = |step: Step, kind: LoadErrorKind| {
        Box::new(LoadError {
            plugin: Some(name.to_owned()),
            version: Some(version.to_owned()),
            file: Some(file.clone()),
            step,
            kind,
        })
    };
    let id = NEXT_VERSION_ID.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the pointer comes from a `&'static PluginHeader`: a complete, live header.
    let vtable =
        unsafe { check_header_at(plugin.header, None) }.map_err(|(step, kind)| fail(step, kind))?;
    // SAFETY: check_header_at verified its layout; it is static data of this binary.
    let vt: &PluginVTable = unsafe { &*vtable };
    check_live(
        vt,
        plugin.live_functions.iter().copied(),
        plugin.live_prefix,
    )
    .map_err(|kind| fail(Step::AbiCheck, kind))?;
    let origin = Origin {
        id,
        name: name.to_owned(),
        version: version.to_owned(),
        build_id: STATIC_BUILD_ID.to_owned(),
        file: file.clone(),
        private_path: None,
        sha256: String::new(),
        copy_of: None,
    };
    // SAFETY: `vtable` passed the header checks and is `'static` (linked in).
    unsafe { instantiate(origin, None, vtable, None, env, hooks, &fail) }
}

/// `build_id` of a statically linked version, in `status()` and reports.
pub(crate) const STATIC_BUILD_ID: &str = "static";

/// `file` of a statically linked version when the host binary's path is unknown.
const STATIC_FILE: &str = "<linked into the host binary>";

/// Where a version comes from, for its record.
struct Origin {
    id: u64,
    name: String,
    version: String,
    build_id: String,
    file: PathBuf,
    /// The private copy that was dlopened; `None` for a statically linked plugin.
    private_path: Option<PathBuf>,
    sha256: String,
    /// The file the private copy holds the bytes of, when they are known to be the
    /// bytes of that file as it is now (the copy can then be reused: `spare`).
    copy_of: Option<Source>,
}

/// Every live function found in the sources (`names`) must be registered by the plugin.
fn check_live<'a>(
    vt: &PluginVTable,
    mut names: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> Result<(), LoadErrorKind> {
    match names.find(|name| !vt.live.iter().any(|f| f.name.as_str() == *name)) {
        Some(missing) => Err(LoadErrorKind::LiveNotRegistered {
            function: missing.to_owned(),
            prefix: prefix.to_owned(),
        }),
        None => Ok(()),
    }
}

/// What `load` and `load_static` share once the plugin's code is in memory and its
/// header checked: the record, the instance, the `new`/`reloadable`/`export`/`import`
/// hooks (on the reload's hook thread, under its deadline), and the [`Version`] that
/// owns it all (and the library and the private copy, if any).
///
/// Every plugin-made value these hooks return (the import list, failure messages) is
/// turned into host-owned data inside the hook job, which holds the library open
/// (`Arc<Lib>`): nothing plugin-made outlives the job, whatever fails.
///
/// # Safety
/// `vtable` must have passed `check_header`/`check_header_at` and point into `library`
/// (or, with `library` `None`, be static data of the host binary).
unsafe fn instantiate(
    origin: Origin,
    library: Option<libloading::Library>,
    vtable: *const PluginVTable,
    remove_copy: Option<RemoveOnDrop<'_>>,
    env: &LoadEnv<'_>,
    hooks: &mut HookThread,
    fail: &dyn Fn(Step, LoadErrorKind) -> Box<LoadError>,
) -> Result<Arc<Version>, Box<LoadError>> {
    // SAFETY: upheld by the caller; `lib` keeps the library open as long as `vt` is used.
    let vt: &PluginVTable = unsafe { &*vtable };
    if !vt.panic_unwind {
        return Err(fail(
            Step::AbiCheck,
            LoadErrorKind::PanicAbort {
                plugin: vt.name.as_str().to_owned(),
            },
        ));
    }
    let Origin {
        id,
        name,
        version,
        build_id,
        file,
        private_path,
        sha256,
        copy_of,
    } = origin;
    let holds = Arc::new(Holds::default());
    holds.on_change(env.jobs.poker());
    let record = Arc::new(VersionRecord {
        id,
        name: name.clone(),
        version: version.clone(),
        build_id,
        file,
        private_path,
        sha256,
        loaded_at: SystemTime::now(),
        state: parking_lot::Mutex::new(RecordState::Loaded),
        holds: holds.clone(),
        keep_alive: parking_lot::Mutex::new(None),
        heap: parking_lot::Mutex::new(HeapSource::new(vt.heap)),
        calls: env.records.counters(),
    });
    let ctx = VersionCtx::new(
        format!("{name}#{id}"),
        name.clone(),
        version.clone(),
        env.manager.clone(),
        holds,
        env.staging.clone(),
    );
    // A version that fails from here on is never published: its code (a thread its
    // `new` started, polling `retired()` as the README says) must learn it, or that
    // thread, and the library it keeps mapped, would never end. Disarmed once loaded.
    let mut retire = RetireUnlessLoaded(ctx.clone(), false);
    // From here the Lib owns the library and the private copy: when its last holder
    // goes, the reaper closes it and deletes the copy, also when a hook below fails.
    std::mem::forget(remove_copy);
    env.records.add(record.clone());
    let keep_as = copy_of.map(|source| KeepAs {
        spares: env.spares.clone(),
        source,
        name: record
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    });
    let lib = Lib::new(
        library,
        record.clone(),
        ctx.clone(),
        env.jobs.clone(),
        keep_as,
    );
    let job_lib = lib.clone();
    let late_lib = lib.clone();
    let handle = crate::callbacks::handle(&ctx);
    let vt_ptr = VtPtr(vtable);
    let late_record = record.clone();
    let ran = hooks.run(
        Step::New,
        move |progress| {
            let (_lib, vt_ptr) = (job_lib, vt_ptr);
            // SAFETY: `_lib` keeps the library (and the vtable in it) open for this job.
            let vt = unsafe { &*vt_ptr.0 };
            // SAFETY: the handle's context lives as long as the library is mapped (the
            // reaper keeps it), as `new` requires.
            let instance = owned(unsafe { (vt.new)(handle) }).map_err(|f| (Step::New, f))?;
            // Go hotswap's order: Reloadable, Export, Import. The instance is not shared
            // yet; these hooks take shared access. Each result is converted here.
            progress.step(Step::Reloadable);
            // SAFETY: live instance, shared access.
            let reloadable = owned(unsafe { (vt.reloadable)(instance) });
            progress.step(Step::Export);
            // SAFETY: as above.
            let export = owned(unsafe { (vt.export)(instance) }).map(|e| ExportObj {
                ptr: e.ptr,
                layout: e.layout,
                drop: e.drop,
            });
            progress.step(Step::Import);
            // SAFETY: as above. The plugin-made list is dropped at the end of this
            // statement, inside the job, while `_lib` holds the library open.
            let imports = owned(unsafe { (vt.import)(instance) }).map(|list| {
                list.iter()
                    .map(|i| Dependency {
                        plugin: i.plugin.as_str().to_owned(),
                        version_req: i.version_req.as_str().to_owned(),
                        layout: i.layout,
                    })
                    .collect::<Vec<_>>()
            });
            Ok(Hooked {
                instance: SendInstance(instance),
                reloadable,
                export,
                imports,
            })
        },
        move |late: Result<Hooked, (Step, OwnedFailure)>| {
            // The reload gave up on this version; its hooks returned after all: free
            // what they made, here, while `late_lib` still holds the library.
            let vt_ptr = vt_ptr;
            if let Ok(h) = late {
                // SAFETY: the vtable of the library `late_lib` holds; the instance and
                // export are this job's, never published, used by nobody else.
                unsafe { abandon(vt_ptr, h) };
            }
            *late_record.state.lock() = RecordState::Closing;
            drop(late_lib);
        },
    );
    let hooked = match ran {
        Ok(Ok(h)) => h,
        Ok(Err((step, f))) => return Err(fail(step, f.into_kind())),
        Err(e) => return Err(hook_failure(fail, e, &record)),
    };
    let first_error = match (&hooked.reloadable, &hooked.export, &hooked.imports) {
        (Err(f), _, _) => Some((Step::Reloadable, f.clone())),
        (_, Err(f), _) => Some((Step::Export, f.clone())),
        (_, _, Err(f)) => Some((Step::Import, f.clone())),
        _ => None,
    };
    let parts = Instantiated {
        instance: hooked.instance.0,
        reloadable: hooked.reloadable.unwrap_or(true),
        imports: hooked.imports.unwrap_or_default(),
        export: hooked.export.unwrap_or_else(|_| ExportObj::none()),
    };
    // SAFETY: `vtable` points into `lib` (or is static), the instance came from its
    // `new` and the export from its `export`.
    let loaded = unsafe { Version::new(record, lib, vtable, parts, ctx, env.jobs.clone()) };
    if let Some((step, f)) = first_error {
        // Dropping `loaded` frees the instance on the reaper, like any version.
        return Err(fail(step, f.into_kind()));
    }
    tracing::debug!(plugin = %name, version = %version, id, "loaded");
    retire.1 = true;
    Ok(loaded)
}

/// Marks a version retired when its load fails (see `instantiate`), unless `.1` says it
/// was loaded (the reload then marks it when it leaves the current generation).
struct RetireUnlessLoaded(Arc<VersionCtx>, bool);

impl Drop for RetireUnlessLoaded {
    fn drop(&mut self) {
        if !self.1 {
            self.0.set_retired();
        }
    }
}

/// The instance pointer, sent back from the hook thread.
struct SendInstance(hotswap_abi::vtable::InstancePtr);
// SAFETY: the instance is `Send + Sync` (the `Plugin` trait requires it).
unsafe impl Send for SendInstance {}

/// What the instantiation hooks answered, host-owned.
struct Hooked {
    instance: SendInstance,
    reloadable: Result<bool, OwnedFailure>,
    export: Result<ExportObj, OwnedFailure>,
    imports: Result<Vec<Dependency>, OwnedFailure>,
}

/// Frees what instantiation hooks made for a version the reload abandoned.
///
/// # Safety
/// `vt` must point into a library the caller holds open; `h` must come from its hooks
/// and be used by nobody else.
unsafe fn abandon(vt: VtPtr, h: Hooked) {
    // SAFETY: upheld by the caller.
    let vt = unsafe { &*vt.0 };
    let instance = h.instance.0;
    // SAFETY: exclusive access to an instance nobody else has.
    let _ = unsafe { (vt.on_free)(instance) };
    if let Ok(e) = h.export {
        if let (false, Some(free)) = (e.ptr.is_null(), e.drop) {
            // SAFETY: made by this library's `export`, freed once.
            unsafe { free(e.ptr) };
        }
    }
    // SAFETY: as above; not used again.
    let _ = unsafe { (vt.drop)(instance) };
}

/// The error of a hook that overran (the record then says so) or of the hook thread.
pub(crate) fn hook_failure(
    fail: &dyn Fn(Step, LoadErrorKind) -> Box<LoadError>,
    e: HookFailure,
    record: &VersionRecord,
) -> Box<LoadError> {
    match e {
        HookFailure::Overran {
            step,
            elapsed,
            limit,
        } => {
            let since = SystemTime::now() - elapsed;
            *record.state.lock() = RecordState::Stuck {
                step: step.to_string(),
                since,
            };
            tracing::error!(plugin = %record.name, version = %record.version, step = %step, elapsed_ms = elapsed.as_millis() as u64, "a hook overran its deadline; the reload is abandoned");
            fail(step, LoadErrorKind::HookTimeout { elapsed, limit })
        }
        HookFailure::Thread { step, why } => fail(step, LoadErrorKind::HookThread(why)),
    }
}

/// Checks the plugin header and returns its vtable; the vtable's layout check is
/// skipped if `layouts` saw it pass for a file of checksum `sha256` (see `layouts`).
fn check_header(
    library: &libloading::Library,
    layouts: &CheckedLayouts,
    sha256: &str,
) -> Result<*const PluginVTable, (Step, LoadErrorKind)> {
    let symbol = format!("{}\0", header::HEADER_SYMBOL);
    // SAFETY: the symbol is a static `PluginHeader` in hotswap plugins; we only take its
    // address here and read the frozen leading fields before trusting anything else.
    let ptr: *const PluginHeader = unsafe {
        match library.get::<*const PluginHeader>(symbol.as_bytes()) {
            Ok(sym) => *sym,
            Err(_) => return Err((Step::AbiCheck, LoadErrorKind::NotAPlugin)),
        }
    };
    // SAFETY: the address of the exported header symbol of a complete shared object.
    unsafe { check_header_at(ptr, Some((layouts, sha256))) }
}

/// Checks the header at `ptr` (magic, ABI version, abi_stable version, vtable layout)
/// and returns its vtable. With `remembered`, the vtable's layout check is skipped if
/// it passed before for a file of that checksum, and remembered if it passes.
///
/// # Safety
/// `ptr` must point to at least the frozen prefix of a `PluginHeader` (magic,
/// `abi_major`, `abi_minor`), readable for as long as this runs: the rest is read only
/// once the prefix says it has our layout.
unsafe fn check_header_at(
    ptr: *const PluginHeader,
    remembered: Option<(&CheckedLayouts, &str)>,
) -> Result<*const PluginVTable, (Step, LoadErrorKind)> {
    // SAFETY: `ptr` points to at least the frozen prefix of a PluginHeader (magic,
    // abi_major, abi_minor), upheld by the caller (for a file, the ELF check already
    // ensured it is complete), so reading these plain bytes is sound.
    let (magic, major, minor) = unsafe {
        (
            std::ptr::addr_of!((*ptr).magic).read_unaligned(),
            std::ptr::addr_of!((*ptr).abi_major).read_unaligned(),
            std::ptr::addr_of!((*ptr).abi_minor).read_unaligned(),
        )
    };
    if magic != header::MAGIC {
        return Err((Step::AbiCheck, LoadErrorKind::BadMagic));
    }
    if major != header::ABI_MAJOR || minor > header::ABI_MINOR {
        // SAFETY: same major would mean same header layout; a different one may not
        // have `api_version` where we expect it, so only read it for the message when
        // the major matches.
        let api_version = if major == header::ABI_MAJOR {
            unsafe { (*ptr).api_version.as_str().to_owned() }
        } else {
            "unknown".to_owned()
        };
        return Err((
            Step::AbiCheck,
            LoadErrorKind::AbiVersion {
                api_version,
                found_major: major,
                found_minor: minor,
                host_major: header::ABI_MAJOR,
                host_minor: header::ABI_MINOR,
            },
        ));
    }
    // SAFETY: same ABI major: the header has the layout of our PluginHeader.
    let header: &PluginHeader = unsafe { &*ptr };
    if !header.abi_stable.is_valid() || !AbiHeader::VALUE.is_compatible(&header.abi_stable) {
        return Err((
            Step::AbiCheck,
            LoadErrorKind::AbiStableVersion {
                found: format!(
                    "{}.{}",
                    header.abi_stable.abi_major, header.abi_stable.abi_minor
                ),
                expected: format!(
                    "{}.{}",
                    AbiHeader::VALUE.abi_major,
                    AbiHeader::VALUE.abi_minor
                ),
            },
        ));
    }
    let expected = <PluginVTable as StableAbi>::LAYOUT;
    let check = || {
        check_layout(expected, header.layout).map_err(|e| crate::error::layout_mismatch(header, e))
    };
    match remembered {
        Some((layouts, sha256)) => layouts.check(
            &Check {
                sha256,
                function: "",
                host: [expected, expected],
            },
            check,
        )?,
        None => check()?,
    }
    Ok(header.vtable as *const PluginVTable)
}

/// Deletes the private copy if loading stops half-way.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
