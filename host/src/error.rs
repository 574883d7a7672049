//! Typed errors. Every load or reload failure names the plugin, the version, the file,
//! the lifecycle step and the cause; calls name the plugin and function.

use hotswap_manifest::ManifestError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The step of a load or reload where something failed, in lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Step {
    /// Listing the plugin directory and reading manifests.
    Scan,
    /// Who may have written what is loaded: the owner and mode checks of a strict
    /// plugin directory, and the signature a host with trusted keys requires.
    Trust,
    /// Copying the file to the host's private directory and checking its sha256.
    Copy,
    /// Checking the file is a complete shared object for this machine.
    Validate,
    /// `dlopen`.
    Open,
    /// Checking the plugin header: magic, plugin-api ABI version, abi_stable version.
    AbiCheck,
    /// abi_stable's layout check of the plugin's entry points.
    LayoutCheck,
    /// Creating the plugin instance.
    New,
    /// The `reloadable` hook.
    Reloadable,
    /// The `export` hook.
    Export,
    /// The `import` hook and dependency resolution.
    Import,
    /// The `on_load` hook.
    OnLoad,
    /// The `on_init` hook.
    OnInit,
    /// The host's reload callback.
    Callback,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Scan => "scan",
            Step::Trust => "trust",
            Step::Copy => "copy",
            Step::Validate => "validate",
            Step::Open => "open",
            Step::AbiCheck => "abi-check",
            Step::LayoutCheck => "layout-check",
            Step::New => "new",
            Step::Reloadable => "reloadable",
            Step::Export => "export",
            Step::Import => "import",
            Step::OnLoad => "on_load",
            Step::OnInit => "on_init",
            Step::Callback => "reload-callback",
        })
    }
}

/// What went wrong, without the where (see [`LoadError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// Reading, copying or writing a file of the load failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A manifest could not be read or parsed, or says something impossible.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A manifest or the library it names is not a regular file of the plugin
    /// directory (a FIFO, a device, a socket, a directory, a symbolic link), or is too
    /// large; refused without blocking on it.
    #[error(transparent)]
    File(#[from] hotswap_manifest::safe_fs::FileError),
    /// The manifest's `file` is not a plain file name in its directory (`../x.so`,
    /// `sub/x.so`, `/dev/zero`, …); refused before anything is read.
    #[error("manifest {} names file {file:?}, which is not a plain file name in its directory: {reason}", manifest.display())]
    FileName {
        /// The manifest that names it.
        manifest: PathBuf,
        /// Its `file` field, as written.
        file: String,
        /// Why that is not a plain file name.
        reason: hotswap_manifest::safe_fs::BadFileName,
    },
    /// A strict host (the default) refuses code from a plugin directory, manifest or
    /// library that anyone but its owner can write, or whose owner is neither the
    /// host's user nor root (`Builder::permissive_plugin_dir` relaxes this).
    #[error("{} is {why} (mode {mode:04o}): a strict host loads only what no one but the host's user or root can have written; `chmod go-w` and `chown` it, or use Builder::permissive_plugin_dir() for development", path.display())]
    Insecure {
        /// The directory, manifest or library refused.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What is wrong with it.
        why: hotswap_manifest::safe_fs::Loose,
    },
    /// The host trusts signing keys and this manifest has no signature beside it.
    #[error("manifest {} is not signed (no {}), and this host loads only plugins signed by a trusted key: build it with `hotswap build --sign <key>`", manifest.display(), signature.display())]
    Unsigned {
        /// The manifest.
        manifest: PathBuf,
        /// Where its signature would be.
        signature: PathBuf,
    },
    /// The manifest's signature is not valid, or is by a key the host does not trust.
    #[error("manifest {}: {error}", manifest.display())]
    Signature {
        /// The manifest.
        manifest: PathBuf,
        /// Why the signature is refused.
        #[source]
        error: hotswap_manifest::signature::SignatureError,
    },
    /// The library's sha256 is not the one its manifest records (changed or truncated
    /// after packaging).
    #[error("sha256 mismatch: manifest says {expected}, file has {actual}")]
    Checksum {
        /// The manifest's sha256, lower-case hex.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// The file is not a complete shared object for this machine (checked before
    /// `dlopen`, which would otherwise crash on a truncated file).
    #[error("not a loadable shared object: {0}")]
    InvalidFile(#[from] hotswap_manifest::elf::ElfError),
    /// `dlopen` refused the library (the dynamic loader's message).
    #[error("dlopen failed: {0}")]
    Open(String),
    /// The library exports no `HOTSWAP_PLUGIN_HEADER`: it was not made with
    /// `export_plugin!`.
    #[error("not a hotswap plugin: it does not export HOTSWAP_PLUGIN_HEADER")]
    NotAPlugin,
    /// The header does not start with hotswap's magic number.
    #[error("not a hotswap plugin: bad magic in its header")]
    BadMagic,
    /// The plugin speaks another plugin ABI than the host.
    #[error("built against plugin-api {api_version} (ABI {found_major}.{found_minor}), this host speaks ABI {host_major}.{host_minor}: rebuild the plugin against a matching hotswap-plugin-api")]
    AbiVersion {
        /// The plugin's `hotswap-plugin-api` version.
        api_version: String,
        /// The plugin's ABI major number.
        found_major: u32,
        /// The plugin's ABI minor number.
        found_minor: u32,
        /// The host's ABI major number.
        host_major: u32,
        /// The host's ABI minor number.
        host_minor: u32,
    },
    /// The plugin was built with an abi_stable whose ABI differs from the host's.
    #[error("built with an incompatible abi_stable ({found}), host has {expected}")]
    AbiStableVersion {
        /// The plugin's abi_stable ABI.
        found: String,
        /// The host's.
        expected: String,
    },
    /// The plugin's entry points have another layout than the host's. One line names
    /// the two plugin-api versions; `{:#}` adds abi_stable's full report.
    #[error(transparent)]
    Layout(LayoutMismatch),
    /// The manifest and the library disagree on the plugin's name.
    #[error("the manifest says plugin {manifest:?} but the library calls itself {library:?}")]
    NameMismatch {
        /// The name in the manifest.
        manifest: String,
        /// The name the library's header gives.
        library: String,
    },
    /// Two different builds of one plugin claim the same build time: which is newest
    /// cannot be told.
    #[error("two builds claim plugin {name:?} with the same build time: {first} and {second}")]
    Duplicate {
        /// The plugin.
        name: String,
        /// One build's library.
        first: PathBuf,
        /// The other's.
        second: PathBuf,
    },
    /// `hotswap build --live-prefix` found a live function in the sources that the
    /// plugin does not register.
    #[error("live function {function} is in the sources (hotswap build --live-prefix {prefix}) but not registered: list it in export_plugin!(…, live {{ {function} }})")]
    LiveNotRegistered {
        /// The function's name.
        function: String,
        /// The prefix the build looked for.
        prefix: String,
    },
    /// A lifecycle hook returned an error (its message).
    #[error("hook returned an error: {0}")]
    Hook(String),
    /// A lifecycle hook panicked (the panic's message); caught at the boundary.
    #[error("hook panicked: {0}")]
    Panic(String),
    /// A plugin imports one that is not loaded.
    #[error("plugin {plugin:?} imports {missing:?}, which is not loaded")]
    UnknownDependency {
        /// The importing plugin.
        plugin: String,
        /// The plugin it imports.
        missing: String,
    },
    /// The plugins' imports form a cycle (`a -> b -> c -> a`).
    #[error("cyclic dependency: {0}")]
    Cycle(String),
    /// A provider's version is outside the importer's requirement.
    #[error("plugin {plugin:?} requires {provider:?} {required}, but {provider:?} is {found}")]
    DependencyVersion {
        /// The importing plugin.
        plugin: String,
        /// The plugin it imports.
        provider: String,
        /// The semver requirement.
        required: String,
        /// The provider's version.
        found: String,
    },
    /// An import's version requirement is not valid semver.
    #[error("plugin {plugin:?} has an invalid version requirement {required:?} on {provider:?}: {cause}")]
    BadVersionRequirement {
        /// The importing plugin.
        plugin: String,
        /// The plugin it imports.
        provider: String,
        /// The requirement, as written.
        required: String,
        /// Why it does not parse.
        cause: String,
    },
    /// The import's declared type is not the provider's export type. One line; a
    /// multi-line layout report only in `{:#}`.
    #[error(fmt = fmt_export_type)]
    ExportType {
        /// The importing plugin.
        plugin: String,
        /// The plugin it imports.
        provider: String,
        /// abi_stable's layout report.
        detail: String,
    },
    /// A plugin that says it is not reloadable imports one that is: a reload would
    /// leave it calling replaced code.
    #[error("non-reloadable plugin {plugin:?} imports reloadable plugin {provider:?}: a reload would leave it calling replaced code")]
    NotReloadableImport {
        /// The non-reloadable importer.
        plugin: String,
        /// The reloadable plugin it imports.
        provider: String,
    },
    /// The plugin was compiled with `panic = "abort"`: a panic in it would abort the
    /// host. Refused at load whatever its manifest says (`hotswap build
    /// --allow-panic-abort` only lets it be packaged, e.g. for a host that links it).
    #[error("{plugin} is built with panic = \"abort\": a panic in it would abort the host; rebuild it with panic = \"unwind\" (the default)")]
    PanicAbort {
        /// The plugin.
        plugin: String,
    },
    /// A reload callback refused the new generation (its reason).
    #[error("vetoed by the reload callback: {0}")]
    Vetoed(String),
    /// Code the host's user gave the manager panicked during the reload (the reload
    /// callback, or the `extension_newer` factory); the old generation keeps serving.
    #[error("{what} panicked: {message}")]
    CallbackPanic {
        /// Which: `the reload callback`, `the extension factory`.
        what: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A lifecycle hook overran its deadline ([`Builder::hook_timeout`](crate::Builder::hook_timeout)).
    #[error("hook did not return within {limit:?} (ran {elapsed:?}); the reload was abandoned and the version is kept, never published, until the hook returns (Builder::hook_timeout)")]
    HookTimeout {
        /// How long it had run when the reload gave up.
        elapsed: Duration,
        /// The deadline.
        limit: Duration,
    },
    /// The reload's hook thread could not be started or was lost.
    #[error("{0}")]
    HookThread(String),
}

/// The plugin's `PluginVTable` layout differs from the host's: printed in one line that
/// names both `hotswap-plugin-api` versions, with abi_stable's full report (thousands
/// of lines) only in the alternate form `{:#}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutMismatch {
    /// The `hotswap-plugin-api` version in the plugin's header.
    pub plugin_api: String,
    /// The host's `hotswap-plugin-api` version.
    pub host_api: String,
    /// abi_stable's report of every difference.
    pub detail: String,
}

impl LayoutMismatch {
    /// A mismatch found in a plugin whose header says `plugin_api`, against this host.
    pub fn new(plugin_api: &str, detail: String) -> LayoutMismatch {
        LayoutMismatch {
            plugin_api: plugin_api.to_owned(),
            host_api: hotswap_abi::header::API_VERSION.to_owned(),
            detail,
        }
    }
}

impl std::error::Error for LayoutMismatch {}

/// The layout-check failure of a plugin whose `header` has another `PluginVTable` layout
/// (abi_stable's report in `detail`).
pub(crate) fn layout_mismatch(
    header: &hotswap_abi::header::PluginHeader,
    detail: String,
) -> (Step, LoadErrorKind) {
    (
        Step::LayoutCheck,
        LoadErrorKind::Layout(LayoutMismatch::new(header.api_version.as_str(), detail)),
    )
}

/// Which part of a typed function's signature differs (see [`CallError::Signature`]).
/// The arguments are checked first, then the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignaturePart {
    /// The argument type (of a function of one argument, or the whole list).
    Argument,
    /// The number of arguments (the types are then `"3 arguments"` and the like).
    ArgumentCount,
    /// The argument at this position (1-based) of a list of two or more.
    NthArgument(usize),
    /// The result type.
    Result,
    /// The error type of a `Result<T, E>` whose `T` matches.
    Error,
}

fn fmt_export_type(
    plugin: &str,
    provider: &str,
    detail: &str,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    write!(
        f,
        "plugin {plugin:?} imports {provider:?} as a type its export does not have"
    )?;
    if f.alternate() {
        write!(f, ":\n{detail}")
    } else if !detail.contains('\n') {
        write!(f, ": {detail}")
    } else {
        Ok(())
    }
}

/// What differs in a typed function's signature (see [`CallError::Signature`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureMismatch {
    /// Which part differs (the arguments are checked first).
    pub part: SignaturePart,
    /// The type the plugin's function has there (its wire form: `RStr<'_>` for
    /// `&str`, `HostString` for `String`, ...), or its argument count.
    pub plugin_type: String,
    /// The type the host's handle asked for, likewise.
    pub host_type: String,
    /// abi_stable's report of the difference.
    pub detail: String,
}

fn fmt_signature(
    plugin: &str,
    function: &str,
    m: &SignatureMismatch,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let (p, h) = (&m.plugin_type, &m.host_type);
    match m.part {
        SignaturePart::NthArgument(i) => write!(
            f,
            "{plugin}::{function}: the plugin takes {p} as argument {i}, the host asked for {h}"
        )?,
        SignaturePart::Error => write!(
            f,
            "{plugin}::{function}: the plugin's error type is {p}, the host asked for {h}"
        )?,
        SignaturePart::Result => write!(
            f,
            "{plugin}::{function}: the plugin returns {p}, the host asked for {h}"
        )?,
        SignaturePart::Argument | SignaturePart::ArgumentCount => write!(
            f,
            "{plugin}::{function}: the plugin takes {p}, the host asked for {h}"
        )?,
    }
    if m.plugin_type == m.host_type {
        f.write_str(" of another layout")?;
    }
    if f.alternate() {
        write!(f, "\n{}", m.detail)?;
    }
    Ok(())
}

impl fmt::Display for LayoutMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plugin_api != self.host_api {
            write!(
                f,
                "built against hotswap-plugin-api {}, this host has {}, and their entry \
                 points differ: rebuild the plugin against hotswap-plugin-api {}",
                self.plugin_api, self.host_api, self.host_api
            )?;
        } else {
            write!(
                f,
                "the plugin's entry points have another layout than this host's, though both \
                 say hotswap-plugin-api {}: rebuild the plugin and the host from the same sources",
                self.host_api
            )?;
        }
        if f.alternate() {
            write!(f, "\n{}", self.detail)?;
        }
        Ok(())
    }
}

/// A failed load or reload step. Printed, it reads like
/// `plugin world 0.1.0 (world-0.1.0-….so) failed at on_load: hook panicked: boom`.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// The plugin's name, when known at that step.
    pub plugin: Option<String>,
    /// The plugin's crate version, when known.
    pub version: Option<String>,
    /// The file involved, when there is one.
    pub file: Option<PathBuf>,
    /// The step that failed.
    pub step: Step,
    /// The cause.
    #[source]
    pub kind: LoadErrorKind,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.plugin, &self.version) {
            (Some(p), Some(v)) => write!(f, "plugin {p} {v}")?,
            (Some(p), None) => write!(f, "plugin {p}")?,
            _ => f.write_str("plugin")?,
        }
        if let Some(file) = &self.file {
            write!(f, " ({})", file.display())?;
        }
        write!(f, " failed at {}: ", self.step)?;
        // `{:#}` reaches the cause: its details (a layout report) print only then.
        if f.alternate() {
            write!(f, "{:#}", self.kind)
        } else {
            write!(f, "{}", self.kind)
        }
    }
}

/// Errors of [`PluginManager`](crate::PluginManager) operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plugin failed to load; nothing changed.
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
    /// Another reload is running; this one was refused and changed nothing.
    #[error("a reload is already in progress; try again when it finishes")]
    ReloadInProgress,
    /// A reload started by a [`Trigger`](crate::Trigger) (SIGHUP, a file watch, the
    /// admin endpoint) panicked in host code (the host's subscriber, given one of its
    /// events); the panic was caught on the trigger's thread, which goes on.
    #[error("the reload panicked: {0}")]
    Panicked(String),
    /// `load_plugins` was called twice.
    #[error("plugins are already loaded; call reload")]
    AlreadyLoaded,
    /// `reload` before `load_plugins`.
    #[error("no plugins loaded yet; call load_plugins first")]
    NotLoaded,
    /// The plugin directory cannot be read.
    #[error("cannot read plugin directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The manager was built in static mode and cannot swap code.
    #[error("{0}")]
    Unsupported(String),
    /// A rollback has nothing to go back to: the plugin has no such build in the
    /// directory, or none older than the running one. Nothing changed.
    #[error("cannot roll back {plugin}: {reason}")]
    Rollback {
        /// The plugin asked for.
        plugin: String,
        /// What is missing, with the builds there are.
        reason: String,
    },
    /// Too many old versions were still waiting to unload when the reload started
    /// ([`Builder::max_unloading`](crate::Builder::max_unloading)), and did not drop
    /// below the limit within the reload's hook deadline. The reload was refused and
    /// changed nothing; [`PluginManager::status`](crate::PluginManager::status) shows the
    /// versions and what holds them.
    #[error(
        "cannot reload: {waiting} old versions are still waiting to unload (the limit is \
         {limit}; waited {waited:?}): something still holds them (a call, value, task or \
         thread); see status"
    )]
    TooManyUnloading {
        /// Old versions waiting to unload.
        waiting: usize,
        /// The limit.
        limit: usize,
        /// How long the reload waited for them.
        waited: Duration,
    },
    /// The directory holds no plugin to load (no manifest, or none the whitelist keeps)
    /// and the manager requires one ([`Builder::require_plugins`](crate::Builder::require_plugins)).
    /// Nothing changed.
    #[error(fmt = fmt_no_plugins)]
    NoPlugins {
        /// The plugin directory scanned.
        dir: PathBuf,
        /// Libraries in it without a manifest (built by `cargo build`, not packaged).
        bare: Vec<PathBuf>,
        /// Whether a whitelist was in force (it may have left out what is there).
        whitelisted: bool,
    },
}

/// `no plugin to load in plugins/ (a.so and b.so have no manifest): package plugins
/// with `hotswap build ..``, in one line.
fn fmt_no_plugins(
    dir: &Path,
    bare: &[PathBuf],
    whitelisted: &bool,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    write!(f, "no plugin to load in {}", dir.display())?;
    if *whitelisted {
        f.write_str(" (after the whitelist)")?;
    }
    if !bare.is_empty() {
        let names: Vec<String> = bare
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or(p.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let verb = if names.len() == 1 { "has" } else { "have" };
        write!(f, "; {} {verb} no manifest", names.join(", "))?;
    }
    f.write_str(
        ": package plugins with `hotswap build <plugin crate> <plugin dir>`, which writes \
         the library and its manifest",
    )
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Error {
        Error::Load(Box::new(e))
    }
}

impl Error {
    /// The load error inside, if this is one.
    pub fn as_load(&self) -> Option<&LoadError> {
        match self {
            Error::Load(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a call into a plugin failed. The host is unaffected: the next call may succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin of that name in the current generation.
    #[error("no plugin named {0:?} is loaded")]
    UnknownPlugin(String),
    /// The plugin has no typed function of that name.
    #[error("plugin {plugin:?} has no typed function {function:?}")]
    UnknownFunction {
        /// The plugin.
        plugin: String,
        /// The function asked for.
        function: String,
    },
    /// The typed function exists, but its argument or result type is not the one asked
    /// for. Printed in one line naming both types
    /// (`world::version_number: the plugin returns u32, the host asked for u64`);
    /// `{:#}` adds abi_stable's report.
    #[error(fmt = fmt_signature)]
    Signature {
        /// The plugin.
        plugin: String,
        /// The typed function.
        function: String,
        /// What differs (boxed: a `CallError` stays small).
        mismatch: Box<SignatureMismatch>,
    },
    /// [`PluginManager::func`](crate::PluginManager::func) was called from inside a
    /// reload of the same manager (a reload callback, `extension_newer`), which holds
    /// the lock a new handle needs.
    #[error(
        "cannot make a handle on {plugin}::{function} from inside a reload of the same \
         manager (a reload callback or extension_newer): make it before or after the reload"
    )]
    InReload {
        /// The plugin.
        plugin: String,
        /// The typed function.
        function: String,
    },
    /// The plugin exports none of an interface's methods: it does not list the trait in
    /// `export_plugin!(.., interfaces { .. })`, or was built against another version of
    /// the interface crate.
    #[error(
        "plugin {plugin:?} does not implement the interface {interface} (it exports no {function})"
    )]
    NotImplemented {
        /// The plugin.
        plugin: String,
        /// The interface (trait) name.
        interface: String,
        /// The interface's first method (`Pricing.quote`).
        function: String,
    },
    /// No version of the current generation registers this live function.
    #[error("no plugin registers the live function {0:?}")]
    UnknownLive(String),
    /// The function returned an error.
    #[error("{plugin} {version}: {function} failed: {message}")]
    Failed {
        /// The plugin.
        plugin: String,
        /// The version that ran the call.
        version: String,
        /// The function called.
        function: String,
        /// The plugin's error message.
        message: String,
    },
    /// The function panicked; the panic was caught at the boundary.
    #[error("{plugin} {version}: {function} panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The version that ran the call.
        version: String,
        /// The function called.
        function: String,
        /// The panic's message.
        message: String,
    },
}
