//! Loading one plugin file: copy it to a private path, check it, dlopen it, check its
//! header and layout, create its instance, ask its `reloadable` and `import` hooks.
//!
//! Each version is opened from its own private copy with its own library handle
//! (never abi_stable's `RootModule` singleton, which keeps one version per type and
//! leaks it), so it can be closed again, and `/proc/self/maps` can tell whether it
//! really was.

use crate::error::{LoadError, LoadErrorKind, Step};
use crate::generation::check_layout;
use crate::manifest::sha256_hex;
use crate::reaper::ReaperHandle;
use crate::scan::Candidate;
use crate::status::{RecordState, Records, VersionRecord};
use crate::version::{Dependency, ExportObj, Version, VersionCtx};
use abi_stable::library::AbiHeader;
use abi_stable::std_types::RResult;
use abi_stable::StableAbi;
use hotswap_plugin_api::header::{self, PluginHeader};
use hotswap_plugin_api::vtable::{FailKind, PluginVTable};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

static NEXT_VERSION_ID: AtomicU64 = AtomicU64::new(1);

/// Where loaded versions go.
pub(crate) struct LoadEnv<'a> {
    pub private_dir: &'a Path,
    pub reaper: &'a ReaperHandle,
    pub records: &'a Records,
    pub manager: std::sync::Weak<crate::manager::Shared>,
}

/// Loads `candidate`. On failure nothing stays loaded or on disk.
pub(crate) fn load(
    candidate: &Candidate,
    env: &LoadEnv<'_>,
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
    // the old handle, and the build directory may be rewritten while we run.
    let private_path = env.private_dir.join(format!("{id}-{}", m.file));
    let bytes = std::fs::read(&source).map_err(|e| fail(Step::Copy, e.into()))?;
    let actual = sha256_hex(&bytes);
    if actual != m.sha256 {
        return Err(fail(
            Step::Copy,
            LoadErrorKind::Checksum {
                expected: m.sha256.clone(),
                actual,
            },
        ));
    }
    crate::elf::validate(&bytes).map_err(|e| fail(Step::Validate, e.into()))?;
    // Map exactly the bytes we checked.
    std::fs::write(&private_path, &bytes).map_err(|e| fail(Step::Copy, e.into()))?;
    let remove_copy = RemoveOnDrop(&private_path);

    #[cfg(unix)]
    let library: libloading::Library = {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading runs the file's initializers. The file is a complete shared
        // object for this machine (checked above) built by `hotswap build`; plugins are
        // trusted code, and Rust cdylibs run no initializers of their own.
        unsafe { Library::open(Some(&private_path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| fail(Step::Open, LoadErrorKind::Open(e.to_string())))?
            .into()
    };
    #[cfg(not(unix))]
    // SAFETY: as above.
    let library = unsafe { libloading::Library::new(&private_path) }
        .map_err(|e| fail(Step::Open, LoadErrorKind::Open(e.to_string())))?;

    let vtable = check_header(&library).map_err(|(step, kind)| fail(step, kind))?;
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

    if let Some(missing) = m
        .live_functions
        .iter()
        .find(|name| !vt.live.iter().any(|f| f.name.as_str() == name.as_str()))
    {
        return Err(fail(
            Step::AbiCheck,
            LoadErrorKind::LiveNotRegistered {
                function: missing.clone(),
                prefix: m.live_prefix.clone(),
            },
        ));
    }
    let record = Arc::new(VersionRecord {
        id,
        name: m.name.clone(),
        version: m.version.clone(),
        build_id: m.build_id.clone(),
        file: source.clone(),
        private_path: private_path.clone(),
        sha256: m.sha256.clone(),
        loaded_at: SystemTime::now(),
        state: parking_lot::Mutex::new(RecordState::Loaded),
    });
    let ctx = VersionCtx::new(
        format!("{}#{id}", m.name),
        format!("{} {}", m.name, m.version),
        env.manager.clone(),
    );
    let instance = match (vt.new)(ctx.handle()) {
        RResult::ROk(i) => i,
        RResult::RErr(f) => {
            return Err(fail(Step::New, failure_kind(f)));
        }
    };
    // Go hotswap's order: Reloadable, Export, Import.
    // SAFETY: live instance, not shared yet; these hooks take shared access.
    let (reloadable, export, imports) = unsafe {
        (
            (vt.reloadable)(instance),
            (vt.export)(instance),
            (vt.import)(instance),
        )
    };
    let reloadable = reloadable
        .into_result()
        .map_err(|f| fail(Step::Reloadable, failure_kind(f)));
    let export = export
        .into_result()
        .map_err(|f| fail(Step::Export, failure_kind(f)));
    let imports = imports
        .into_result()
        .map_err(|f| fail(Step::Import, failure_kind(f)));
    let deps = match &imports {
        Ok(list) => list
            .iter()
            .map(|i| Dependency {
                plugin: i.plugin.as_str().to_owned(),
                version_req: i.version_req.as_str().to_owned(),
                layout: i.layout,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // From here the Version owns the library and the private copy: its drop (through
    // the reaper) runs on_free, closes the library and deletes the copy, also when a
    // hook below failed.
    std::mem::forget(remove_copy);
    env.records.add(record.clone());
    // SAFETY: `vtable` points into `library` and `instance` came from its `new`.
    let version = unsafe {
        Version::new(
            record,
            library,
            vtable,
            instance,
            ctx,
            env.reaper.clone(),
            *reloadable.as_ref().unwrap_or(&true),
            deps,
            match &export {
                Ok(e) => ExportObj {
                    ptr: e.ptr,
                    layout: e.layout,
                    drop: e.drop,
                },
                Err(_) => ExportObj {
                    ptr: std::ptr::null_mut(),
                    layout: None,
                    drop: None,
                },
            },
        )
    };
    reloadable?;
    export?;
    imports?;
    tracing::debug!(plugin = %m.name, version = %m.version, id, "loaded");
    Ok(version)
}

/// Copies a plugin-made failure into a host-owned error kind.
fn failure_kind(f: hotswap_plugin_api::vtable::Failure) -> LoadErrorKind {
    let msg = f.message.as_str().to_owned();
    match f.kind {
        FailKind::Panic => LoadErrorKind::Panic(msg),
        FailKind::Error => LoadErrorKind::Hook(msg),
    }
}

/// Checks the plugin header and returns its vtable.
fn check_header(
    library: &libloading::Library,
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
    // SAFETY: the symbol's address points to at least the frozen prefix of a
    // PluginHeader (magic, abi_major, abi_minor); the ELF check already ensured the
    // file is complete, so reading these plain bytes is sound.
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
    check_layout(<PluginVTable as StableAbi>::LAYOUT, header.layout)
        .map_err(|e| (Step::LayoutCheck, LoadErrorKind::Layout(e)))?;
    Ok(header.vtable as *const PluginVTable)
}

/// Deletes the private copy if loading stops half-way.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
