//! `hotswap build`: build a plugin crate with cargo and package the library, under a
//! unique file name, with its manifest into an output directory a host loads from.
//!
//! The steps, in order: ask `cargo metadata` about the crate, `cargo build` it (unless
//! `--no-build`), read its git state, check the library really is a hotswap plugin (and
//! read its ABI version), copy it into the output directory under a fresh name, write the
//! manifest beside it (only once the library is complete), and prune old builds
//! (`--keep`). A host never sees a manifest whose library is incomplete.

use crate::metadata::{self, MetadataError};
use crate::time::{now_unix_ms, UtcTime};
use hotswap_host::elf::{self, ElfError};
use hotswap_host::manifest::{
    sha256_hex, Manifest, PanicStrategy, MANIFEST_FORMAT, MANIFEST_SUFFIX,
};
use regex::Regex;
use serde_json::Value;
use sha2::Digest;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::LazyLock;

/// Default of `--live-prefix`.
pub const DEFAULT_LIVE_PREFIX: &str = "live_";

/// Files (paths relative to the plugin directory) that always count toward the source hash.
pub const DEFAULT_SOURCE_PATTERN: &str = r"\.rs$|(^|/)Cargo\.(toml|lock)$";

/// Subdirectory of the plugin's cargo target directory used when `--target-dir` is not
/// given: a separate build lock, so `hotswap build` run from inside another cargo command
/// (a test, `cargo run`) never waits on the lock of the cargo that launched it.
pub const DEFAULT_TARGET_SUBDIR: &str = "hotswap-build";

static DEFAULT_SOURCE_REGEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DEFAULT_SOURCE_PATTERN).expect("DEFAULT_SOURCE_PATTERN is a valid regex")
});

/// What to build and how; the fields mirror the flags of `hotswap build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Directory of the plugin crate (holding its `Cargo.toml`).
    pub plugin_dir: PathBuf,
    /// Directory the library and its manifest are written to; created if missing.
    pub output_dir: PathBuf,
    /// Print each step and the exact cargo command on stderr.
    pub verbose: bool,
    /// Use the dev profile instead of release.
    pub debug: bool,
    /// Keep temporary files (cargo's output, the list of hashed files) and say where.
    pub leave_temps: bool,
    /// Do not run cargo; package the library an earlier build left in the target directory.
    pub no_build: bool,
    /// Stored in the manifest as `live_prefix`.
    pub live_prefix: String,
    /// Extra files (relative paths) counted in the source hash.
    pub include: Option<Regex>,
    /// Files (relative paths) left out of the source hash.
    pub exclude: Option<Regex>,
    /// Cargo target directory; default `<plugin's target directory>/hotswap-build`.
    pub target_dir: Option<PathBuf>,
    /// After a successful build, delete all but this many newest builds of the plugin.
    pub keep: Option<usize>,
    /// Extra arguments for `cargo build`.
    pub cargo_args: Vec<String>,
    /// Package a library built with `panic = "abort"` (with a warning, and
    /// `"panic": "abort"` in its manifest) instead of refusing it.
    pub allow_panic_abort: bool,
}

impl BuildOptions {
    /// Options with every flag at its default: a release build of `plugin_dir` into
    /// `output_dir`.
    pub fn new(plugin_dir: impl Into<PathBuf>, output_dir: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            plugin_dir: plugin_dir.into(),
            output_dir: output_dir.into(),
            verbose: false,
            debug: false,
            leave_temps: false,
            no_build: false,
            live_prefix: DEFAULT_LIVE_PREFIX.to_owned(),
            include: None,
            exclude: None,
            target_dir: None,
            keep: None,
            cargo_args: Vec::new(),
            allow_panic_abort: false,
        }
    }
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The library written into the output directory.
    pub library: PathBuf,
    /// Its manifest.
    pub manifest_path: PathBuf,
    /// The manifest's contents.
    pub manifest: Manifest,
    /// Libraries of older builds deleted by `--keep`.
    pub pruned: Vec<PathBuf>,
    /// Where temporary files were kept (`--leave-temps`).
    pub temp_dir: Option<PathBuf>,
}

impl BuildOutput {
    /// The line `hotswap build` prints: `built <name> <version> (<commit>) -> <path>`,
    /// plus the sha256 and the manifest path when `verbose`.
    pub fn summary(&self, verbose: bool) -> String {
        let m = &self.manifest;
        let mut out = format!(
            "built {} {} ({}) -> {}",
            m.name,
            m.version,
            describe_git(m.git_commit.as_deref(), m.git_dirty),
            self.library.display()
        );
        if verbose {
            let _ = write!(
                out,
                "\n  sha256   {}\n  manifest {}",
                m.sha256,
                self.manifest_path.display()
            );
            for pruned in &self.pruned {
                let _ = write!(out, "\n  pruned   {}", pruned.display());
            }
        }
        out
    }
}

/// Why `hotswap build` failed. Each message names the step and the file; the underlying
/// cause (if any) is the error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The plugin directory does not exist or cannot be read.
    #[error("cannot open plugin directory {}", path.display())]
    PluginDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A relative path could not be made absolute (the current directory is unreadable).
    #[error("cannot resolve {} against the current directory", path.display())]
    Resolve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The plugin directory has no `Cargo.toml`.
    #[error("{} has no Cargo.toml: the plugin directory must be a cargo package", path.display())]
    NoCargoToml { path: PathBuf },
    /// A program (cargo, rustc) could not be started.
    #[error("cannot run `{program}` for {step}")]
    Spawn {
        program: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// `cargo metadata` could not run, failed, or printed something unexpected.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The manifest is not one of the packages `cargo metadata` lists.
    #[error(
        "`cargo metadata` lists no package with manifest {} (a virtual workspace manifest? \
         point at the plugin crate's own directory)",
        manifest.display()
    )]
    PackageNotFound { manifest: PathBuf },
    /// The package has no library target.
    #[error(
        "package `{package}` has no library target: a plugin is a library with \
         `crate-type = [\"cdylib\"]` under [lib] in {}",
        manifest.display()
    )]
    NoLibTarget { package: String, manifest: PathBuf },
    /// The package's library is not built as a `cdylib`.
    #[error(
        "package `{package}` is not a cdylib: add `crate-type = [\"cdylib\"]` under [lib] in {}",
        manifest.display()
    )]
    NotCdylib { package: String, manifest: PathBuf },
    /// `--debug` together with a cargo argument choosing another profile.
    #[error("conflicting profiles: {0}")]
    ProfileConflict(String),
    /// `cargo build` exited with an error (cargo printed why on stderr).
    #[error("`cargo build` of {} failed ({status}); cargo's messages are above", manifest.display())]
    Cargo {
        manifest: PathBuf,
        status: ExitStatus,
    },
    /// Reading cargo's JSON messages failed.
    #[error("cannot read the output of `cargo build`")]
    CargoOutput(#[source] io::Error),
    /// Cargo succeeded but named no cdylib for the package.
    #[error(
        "`cargo build` succeeded but reported no {DLL_SUFFIX} library for package `{package}`"
    )]
    NoArtifact { package: String },
    /// `--no-build` and the library is not in the target directory.
    #[error(
        "--no-build: there is no built library at {} (build it first, with the same --debug, \
         --target-dir and cargo arguments)",
        path.display()
    )]
    MissingArtifact { path: PathBuf },
    /// libgit2 failed on the repository holding the plugin.
    #[error("cannot read the git state of {}", path.display())]
    Git {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// The built library cannot be read.
    #[error("cannot read built library {}", path.display())]
    ReadArtifact {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The built library is not a loadable hotswap plugin.
    #[error("built library {} cannot be loaded by a hotswap host", path.display())]
    NotAPlugin {
        path: PathBuf,
        #[source]
        source: ElfError,
    },
    /// The library is built with `panic = "abort"` and `--allow-panic-abort` was not given.
    #[error("{plugin} is built with panic = \"abort\": a panic in it would abort the host; use panic = \"unwind\" (the default) or pass --allow-panic-abort")]
    PanicAbort { plugin: String },
    /// A source file could not be read while computing the source hash.
    #[error("cannot hash plugin sources: cannot read {}", path.display())]
    SourceHash {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `rustc -vV` failed or printed something unexpected.
    #[error("cannot get the compiler version from `{program} -vV`: {detail}")]
    Rustc { program: String, detail: String },
    /// Writing into the output directory failed.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the manifest failed (the library just written was removed again).
    #[error("cannot write manifest {}", path.display())]
    WriteManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `--leave-temps` could not create its directory.
    #[error("cannot create a directory for temporary files")]
    TempDir(#[source] io::Error),
}

/// Builds and packages one plugin; see the module documentation for the steps.
///
/// Prints cargo's progress (its stderr), and with `verbose` each step, on stderr. Fails
/// with a [`BuildError`] naming the step that failed; nothing is left in the output
/// directory then (except a partial copy with `leave_temps`).
pub fn build(opts: &BuildOptions) -> Result<BuildOutput, BuildError> {
    let log = Log {
        verbose: opts.verbose,
    };
    let plugin_dir =
        std::fs::canonicalize(&opts.plugin_dir).map_err(|source| BuildError::PluginDir {
            path: opts.plugin_dir.clone(),
            source,
        })?;
    let cargo_toml = plugin_dir.join("Cargo.toml");
    if !cargo_toml.is_file() {
        return Err(BuildError::NoCargoToml { path: plugin_dir });
    }
    let temps = Temps::new(opts.leave_temps)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));

    // 1. What is this package?
    log.step(format_args!(
        "reading package metadata of {}",
        cargo_toml.display()
    ));
    let package = cargo_metadata(&cargo, &cargo_toml, &log, &temps)?;
    // Cargo runs in the plugin directory, so a relative --target-dir must be made absolute
    // against ours first.
    let target_dir = match &opts.target_dir {
        Some(dir) => std::path::absolute(dir).map_err(|source| BuildError::Resolve {
            path: dir.clone(),
            source,
        })?,
        None => package.target_directory.join(DEFAULT_TARGET_SUBDIR),
    };
    let profile = Profile::choose(opts.debug, &opts.cargo_args)?;
    let target_triple = cargo_arg_value(&opts.cargo_args, "--target");

    // 2. Build it, or find what an earlier build left.
    let artifact = if opts.no_build {
        let path = expected_artifact(
            &target_dir,
            target_triple.as_deref(),
            &profile.dir,
            &package.lib_name,
        );
        log.step(format_args!("--no-build: packaging {}", path.display()));
        if !path.is_file() {
            return Err(BuildError::MissingArtifact { path });
        }
        path
    } else {
        cargo_build(
            &cargo,
            &plugin_dir,
            &package,
            &target_dir,
            &profile,
            &opts.cargo_args,
            &log,
            &temps,
        )?
    };

    // 3. Git state of the plugin's sources.
    let git = git_state(&plugin_dir)?;
    log.step(format_args!(
        "git: {}",
        describe_git(git.commit.as_deref(), git.dirty)
    ));

    // 4. Is it a plugin, and of which ABI?
    let bytes = std::fs::read(&artifact).map_err(|source| BuildError::ReadArtifact {
        path: artifact.clone(),
        source,
    })?;
    let abi = elf::read_plugin_abi(&bytes).map_err(|source| BuildError::NotAPlugin {
        path: artifact.clone(),
        source,
    })?;
    log.step(format_args!(
        "plugin ABI {}.{} in {}",
        abi.abi_major,
        abi.abi_minor,
        artifact.display()
    ));
    let panic = panic_strategy(&package.name, &bytes, &artifact, opts, &log)?;

    let (source_hash, hashed) =
        source_hash(&plugin_dir, opts.include.as_ref(), opts.exclude.as_ref())?;
    log.step(format_args!(
        "source hash {source_hash} over {} files",
        hashed.len()
    ));
    temps.save("source-files.txt", hashed.join("\n").as_bytes());
    let toolchain = rustc_info(&plugin_dir)?;
    let target = target_triple.unwrap_or(toolchain.host);

    // 5. Copy under a fresh name, then the manifest.
    let build_time_ms = now_unix_ms();
    let time = UtcTime::from_unix_ms(build_time_ms);
    let build_id = build_id(&time, random_u16());
    let file_name = library_file_name(
        &package.name,
        &package.version,
        git.commit.as_deref(),
        &build_id,
    );
    std::fs::create_dir_all(&opts.output_dir).map_err(|source| BuildError::Write {
        path: opts.output_dir.clone(),
        source,
    })?;
    let library = opts.output_dir.join(&file_name);
    log.step(format_args!("writing {}", library.display()));
    write_library(&artifact, &bytes, &library, opts.leave_temps)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        name: package.name.clone(),
        version: package.version.clone(),
        file: file_name,
        git_commit: git.commit,
        git_dirty: git.dirty,
        build_time: time.rfc3339(),
        build_time_ms,
        build_id,
        sha256: sha256_hex(&bytes),
        source_hash,
        plugin_api_abi: [abi.abi_major, abi.abi_minor],
        rustc_version: toolchain.version,
        profile: profile.name,
        target,
        live_prefix: opts.live_prefix.clone(),
        live_functions: live_functions(&plugin_dir, &hashed, &opts.live_prefix),
        panic,
    };
    let manifest_path = Manifest::path_for(&library);
    log.step(format_args!("writing {}", manifest_path.display()));
    if let Err(source) = manifest.write(&manifest_path) {
        // A library without its manifest is never loaded; do not leave it lying around.
        let _ = std::fs::remove_file(&library);
        return Err(BuildError::WriteManifest {
            path: manifest_path,
            source,
        });
    }

    // 6. Prune old builds.
    let pruned = match opts.keep {
        Some(keep) => prune(&opts.output_dir, &manifest, keep, &log),
        None => Vec::new(),
    };
    Ok(BuildOutput {
        library,
        manifest_path,
        manifest,
        pruned,
        temp_dir: temps.dir,
    })
}

/// The panic strategy of the built library `bytes`: `export_plugin!` exports
/// [`elf::PANIC_ABORT_SYMBOL`] only under `panic = "abort"`. Refused unless
/// `allow_panic_abort`, then accepted with a loud warning.
fn panic_strategy(
    plugin: &str,
    bytes: &[u8],
    artifact: &Path,
    opts: &BuildOptions,
    log: &Log,
) -> Result<PanicStrategy, BuildError> {
    let aborts = elf::exports_symbol(bytes, elf::PANIC_ABORT_SYMBOL).map_err(|source| {
        BuildError::NotAPlugin {
            path: artifact.to_owned(),
            source,
        }
    })?;
    if !aborts {
        return Ok(PanicStrategy::Unwind);
    }
    if !opts.allow_panic_abort {
        return Err(BuildError::PanicAbort {
            plugin: plugin.to_owned(),
        });
    }
    log.warn(format_args!(
        "{plugin} is built with panic = \"abort\" (--allow-panic-abort): a panic anywhere in \
         it will ABORT THE HOST PROCESS instead of coming back as an error; the manifest \
         records \"panic\": \"abort\""
    ));
    Ok(PanicStrategy::Abort)
}

/// Progress messages on stderr, shown with `--verbose`.
struct Log {
    verbose: bool,
}

impl Log {
    fn step(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("hotswap: {msg}");
        }
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("hotswap: warning: {msg}");
    }
}

/// The directory `--leave-temps` keeps cargo's output and the list of hashed files in.
/// Without `--leave-temps` nothing is written.
struct Temps {
    dir: Option<PathBuf>,
}

impl Temps {
    fn new(leave: bool) -> Result<Temps, BuildError> {
        if !leave {
            return Ok(Temps { dir: None });
        }
        let dir = tempfile::Builder::new()
            .prefix("hotswap-build-")
            .tempdir()
            .map_err(BuildError::TempDir)?
            .keep();
        eprintln!("hotswap: keeping temporary files in {}", dir.display());
        Ok(Temps { dir: Some(dir) })
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Best effort: a temporary file that cannot be written is reported, not fatal.
    fn save(&self, name: &str, contents: &[u8]) {
        if let Some(path) = self.path(name) {
            if let Err(e) = std::fs::write(&path, contents) {
                eprintln!(
                    "hotswap: warning: cannot write temporary file {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// The facts about the plugin package `cargo metadata` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PackageInfo {
    name: String,
    version: String,
    /// Cargo's package id, to recognise the package's artifact among cargo's messages.
    id: String,
    /// Library target name, `-` replaced by `_` as in the file cargo writes.
    lib_name: String,
    manifest_path: PathBuf,
    target_directory: PathBuf,
}

fn cargo_metadata(
    cargo: &OsString,
    cargo_toml: &Path,
    log: &Log,
    temps: &Temps,
) -> Result<PackageInfo, BuildError> {
    let (printed, json) = metadata::run(cargo, cargo_toml, |cmd| {
        log.step(format_args!("running {}", describe_command(cmd)))
    })?;
    temps.save("cargo-metadata.json", &printed);
    parse_metadata(&json, cargo_toml)
}

/// Picks the package whose manifest is `cargo_toml` out of `cargo metadata` output and
/// checks it builds a cdylib.
fn parse_metadata(json: &Value, cargo_toml: &Path) -> Result<PackageInfo, BuildError> {
    let shape = |what: &str| MetadataError::format(cargo_toml, format!("missing {what}"));
    let target_directory = json["target_directory"]
        .as_str()
        .ok_or_else(|| shape("target_directory"))?;
    if json["packages"].as_array().is_none() {
        return Err(shape("packages").into());
    }
    let package =
        metadata::package_of(json, cargo_toml).ok_or_else(|| BuildError::PackageNotFound {
            manifest: cargo_toml.to_owned(),
        })?;
    let field = |name: &str| {
        package[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| shape(&format!("package {name}")))
    };
    let name = field("name")?;
    let strings = metadata::strings;
    const LIB_KINDS: [&str; 6] = ["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"];
    let targets = package["targets"]
        .as_array()
        .ok_or_else(|| shape("package targets"))?;
    let lib = metadata::lib_target(targets, &LIB_KINDS).ok_or_else(|| BuildError::NoLibTarget {
        package: name.clone(),
        manifest: cargo_toml.to_owned(),
    })?;
    let crate_types = strings(&lib["crate_types"]);
    if !crate_types.iter().any(|k| k == "cdylib")
        && !strings(&lib["kind"]).contains(&"cdylib".into())
    {
        return Err(BuildError::NotCdylib {
            package: name,
            manifest: cargo_toml.to_owned(),
        });
    }
    let lib_name = lib["name"]
        .as_str()
        .ok_or_else(|| shape("library target name"))?
        .replace('-', "_");
    Ok(PackageInfo {
        version: field("version")?,
        id: field("id")?,
        manifest_path: cargo_toml.to_owned(),
        target_directory: PathBuf::from(target_directory),
        lib_name,
        name,
    })
}

/// The cargo profile to build with: its name (for the manifest), the directory cargo puts
/// its output in, and the flag to pass (none when the user's cargo arguments choose it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Profile {
    name: String,
    dir: String,
    flag: Option<&'static str>,
}

impl Profile {
    /// Release unless `debug`; a `--profile <name>` or `--release` among the cargo
    /// arguments wins over the default (and conflicts with `--debug`).
    fn choose(debug: bool, cargo_args: &[String]) -> Result<Profile, BuildError> {
        let explicit = cargo_arg_value(cargo_args, "--profile");
        let release_flag = cargo_args.iter().any(|a| a == "--release" || a == "-r");
        if debug && (explicit.is_some() || release_flag) {
            return Err(BuildError::ProfileConflict(
                "--debug asks for the dev profile, but the cargo arguments choose another".into(),
            ));
        }
        let (name, flag) = match explicit {
            Some(name) => (name, None),
            None if release_flag => ("release".to_owned(), None),
            None if debug => ("dev".to_owned(), None),
            None => ("release".to_owned(), Some("--release")),
        };
        let dir = match name.as_str() {
            "dev" | "test" => "debug".to_owned(),
            "release" | "bench" => "release".to_owned(),
            other => other.to_owned(),
        };
        Ok(Profile { name, dir, flag })
    }
}

/// Value of `flag` in cargo arguments (`--flag value` or `--flag=value`), the last one wins.
fn cargo_arg_value(args: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            found = iter.next().cloned();
        } else if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            found = Some(value.to_owned());
        }
    }
    found
}

/// Where cargo puts the cdylib of `lib_name`: `<target_dir>/[<triple>/]<profile>/<file>`.
fn expected_artifact(
    target_dir: &Path,
    triple: Option<&str>,
    profile_dir: &str,
    lib_name: &str,
) -> PathBuf {
    let mut path = target_dir.to_owned();
    if let Some(triple) = triple {
        // A custom target given as a path to a JSON spec builds into a directory named
        // after the file.
        let dir = triple
            .strip_suffix(".json")
            .map(|p| Path::new(p).file_name().unwrap_or_default().to_owned())
            .unwrap_or_else(|| triple.into());
        path.push(dir);
    }
    path.push(profile_dir);
    path.push(format!("{DLL_PREFIX}{lib_name}{DLL_SUFFIX}"));
    path
}

#[allow(clippy::too_many_arguments)]
fn cargo_build(
    cargo: &OsString,
    plugin_dir: &Path,
    package: &PackageInfo,
    target_dir: &Path,
    profile: &Profile,
    cargo_args: &[String],
    log: &Log,
    temps: &Temps,
) -> Result<PathBuf, BuildError> {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--lib", "--manifest-path"])
        .arg(&package.manifest_path)
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(flag) = profile.flag {
        cmd.arg(flag);
    }
    cmd.arg("--message-format=json-render-diagnostics")
        .args(cargo_args)
        .current_dir(plugin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let described = describe_command(&cmd);
    log.step(format_args!("running {described}"));
    temps.save("cargo-build-command.txt", described.as_bytes());
    let mut child = cmd.spawn().map_err(|source| BuildError::Spawn {
        program: cargo.to_string_lossy().into_owned(),
        step: "cargo build",
        source,
    })?;
    let mut messages = temps
        .path("cargo-build-messages.jsonl")
        .and_then(|p| std::fs::File::create(p).ok());
    let mut artifact = None;
    let mut read_error = None;
    if let Some(stdout) = child.stdout.take() {
        for line in io::BufReader::new(stdout).lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            if let Some(file) = messages.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(msg) => {
                    if let Some(path) = artifact_in_message(&msg, package) {
                        artifact = Some(path);
                    }
                }
                // Not one of cargo's messages: pass it on rather than swallow it.
                Err(_) => eprintln!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(BuildError::CargoOutput)?;
    if !status.success() {
        return Err(BuildError::Cargo {
            manifest: package.manifest_path.clone(),
            status,
        });
    }
    if let Some(e) = read_error {
        return Err(BuildError::CargoOutput(e));
    }
    artifact.ok_or_else(|| BuildError::NoArtifact {
        package: package.name.clone(),
    })
}

/// The cdylib file named by a `compiler-artifact` message of `package`, if `msg` is one.
fn artifact_in_message(msg: &Value, package: &PackageInfo) -> Option<PathBuf> {
    if msg["reason"].as_str() != Some("compiler-artifact") {
        return None;
    }
    let ours = msg["package_id"].as_str() == Some(package.id.as_str())
        || msg["manifest_path"]
            .as_str()
            .is_some_and(|m| metadata::same_path(Path::new(m), &package.manifest_path));
    if !ours {
        return None;
    }
    msg["filenames"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.ends_with(DLL_SUFFIX))
        .map(PathBuf::from)
}

/// `cmd` as a shell-quoted line, with the directory it runs in.
fn describe_command(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(out, "(in {}) ", dir.display());
    }
    out.push_str(&shell_quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    out
}

/// `arg` quoted for a POSIX shell when it needs to be.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The git state recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GitState {
    /// Full hex id of HEAD's commit; `None` outside git or before the first commit.
    commit: Option<String>,
    /// Whether anything under the plugin directory differs from HEAD (untracked files
    /// count, ignored ones do not); `None` outside git.
    dirty: Option<bool>,
}

fn git_state(plugin_dir: &Path) -> Result<GitState, BuildError> {
    let git_err = |source| BuildError::Git {
        path: plugin_dir.to_owned(),
        source,
    };
    let repo = match git2::Repository::discover(plugin_dir) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Ok(GitState {
                commit: None,
                dirty: None,
            })
        }
        Err(e) => return Err(git_err(e)),
    };
    let Some(workdir) = repo.workdir() else {
        // A bare repository has no work tree the sources could be in.
        return Ok(GitState {
            commit: None,
            dirty: None,
        });
    };
    let commit = match repo.head() {
        Ok(head) => Some(head.peel_to_commit().map_err(git_err)?.id().to_string()),
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
            ) =>
        {
            None
        }
        Err(e) => return Err(git_err(e)),
    };
    let workdir = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_owned());
    // Forward slashes, as git reports paths; empty when the plugin is the whole repository.
    let prefix = plugin_dir
        .strip_prefix(&workdir)
        .map(|rel| {
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .include_unmodified(false);
    if !prefix.is_empty() {
        options.pathspec(&prefix);
    }
    let statuses = repo.statuses(Some(&mut options)).map_err(git_err)?;
    let dirty = statuses.iter().any(|entry| {
        let status = entry.status();
        status != git2::Status::CURRENT
            && !status.contains(git2::Status::IGNORED)
            && path_is_under(entry.path_bytes(), prefix.as_bytes())
    });
    Ok(GitState {
        commit,
        dirty: Some(dirty),
    })
}

/// `path` is `dir` or inside it (both `/`-separated, relative); everything is under "".
fn path_is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// `abcdef12`, `abcdef12+dirty`, `nogit` or `nogit+dirty`, for people.
fn describe_git(commit: Option<&str>, dirty: Option<bool>) -> String {
    let mut out = short_commit(commit).to_owned();
    if dirty == Some(true) {
        out.push_str("+dirty");
    }
    out
}

/// First 8 hex digits of `commit`, or `nogit`.
fn short_commit(commit: Option<&str>) -> &str {
    match commit {
        Some(c) => c.get(..8).unwrap_or(c),
        None => "nogit",
    }
}

/// Whether the file at relative path `rel` counts toward the source hash: Rust sources and
/// cargo manifests, plus `include`, minus `exclude`.
fn counts_toward_source_hash(rel: &str, include: Option<&Regex>, exclude: Option<&Regex>) -> bool {
    let wanted = DEFAULT_SOURCE_REGEX.is_match(rel) || include.is_some_and(|r| r.is_match(rel));
    wanted && !exclude.is_some_and(|r| r.is_match(rel))
}

/// Hash of the plugin's sources: sha256 over, for each counted file in order of its
/// relative path, the path, a NUL byte, the content length (u64, little-endian) and the
/// content. `target/` directories and directories starting with `.` are skipped. Returns
/// the hex hash and the relative paths hashed.
fn source_hash(
    dir: &Path,
    include: Option<&Regex>,
    exclude: Option<&Regex>,
) -> Result<(String, Vec<String>), BuildError> {
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)?;
    files.retain(|(rel, _)| counts_toward_source_hash(rel, include, exclude));
    files.sort();
    let mut hasher = sha2::Sha256::new();
    for (rel, path) in &files {
        let contents = std::fs::read(path).map_err(|source| BuildError::SourceHash {
            path: path.clone(),
            source,
        })?;
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    let hex = hasher.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok((hex, files.into_iter().map(|(rel, _)| rel).collect()))
}

/// Names of the functions in the plugin's Rust sources whose name starts with `prefix`
/// (case-insensitive), as Go hotswap collects live functions. The host checks each is
/// registered in `export_plugin!(…, live { … })`. Unreadable files are skipped: the
/// source hash above already read them.
pub(crate) fn live_functions(dir: &Path, files: &[String], prefix: &str) -> Vec<String> {
    let Ok(pattern) = Regex::new(&format!(r"(?i)\bfn\s+({}\w*)", regex::escape(prefix))) else {
        return Vec::new();
    };
    let mut names: Vec<String> = files
        .iter()
        .filter(|rel| rel.ends_with(".rs"))
        .filter_map(|rel| std::fs::read_to_string(dir.join(rel)).ok())
        .flat_map(|text| {
            pattern
                .captures_iter(&text)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every file under `dir` as (`/`-separated path relative to the root, full path), except
/// in `target` and dot-directories. Symbolic links to directories are not followed.
pub(crate) fn collect_files(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), BuildError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::SourceHash { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = entry.file_type().map_err(read_err(&path))?;
        if file_type.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            collect_files(&path, &child_rel, out)?;
        } else if file_type.is_file() || (file_type.is_symlink() && path.is_file()) {
            out.push((child_rel, path));
        }
    }
    Ok(())
}

/// The compiler cargo will use, as `rustc -vV` reports it.
struct Toolchain {
    /// First line, the same as `rustc --version`.
    version: String,
    /// The `host:` triple.
    host: String,
}

fn rustc_info(plugin_dir: &Path) -> Result<Toolchain, BuildError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let program = rustc.to_string_lossy().into_owned();
    // Run in the plugin directory so a rust-toolchain file there picks the same compiler
    // cargo used.
    let output = Command::new(&rustc)
        .arg("-vV")
        .current_dir(plugin_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BuildError::Spawn {
            program: program.clone(),
            step: "the compiler version",
            source,
        })?;
    if !output.status.success() {
        return Err(BuildError::Rustc {
            program,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    parse_rustc_vv(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| BuildError::Rustc {
        program,
        detail: "no version or host line in its output".into(),
    })
}

fn parse_rustc_vv(text: &str) -> Option<Toolchain> {
    let version = text.lines().next()?.trim();
    let host = text.lines().find_map(|l| l.strip_prefix("host:"))?.trim();
    (!version.is_empty() && !host.is_empty()).then(|| Toolchain {
        version: version.to_owned(),
        host: host.to_owned(),
    })
}

/// `<UTC time, compact>-<4 hex digits>`, e.g. `20261121T190803123Z-3fa9`.
fn build_id(time: &UtcTime, salt: u16) -> String {
    format!("{}-{salt:04x}", time.compact())
}

/// 16 bits that differ between builds: std's randomly keyed hasher over time and pid.
fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish() as u16
}

/// File name of a packaged plugin: `{name}-{version}-{commit8|nogit}-{build_id}{DLL_SUFFIX}`.
pub fn library_file_name(
    name: &str,
    version: &str,
    commit: Option<&str>,
    build_id: &str,
) -> String {
    format!(
        "{name}-{version}-{}-{build_id}{DLL_SUFFIX}",
        short_commit(commit)
    )
}

/// Writes `bytes` (read from `artifact`) to `dest` through a temporary file in the same
/// directory and a rename, so `dest` appears complete or not at all.
fn write_library(
    artifact: &Path,
    bytes: &[u8],
    dest: &Path,
    leave_temps: bool,
) -> Result<(), BuildError> {
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{file_name}.tmp"));
    let write = || -> io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = std::fs::metadata(artifact) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dest)
    };
    write().map_err(|source| {
        if !leave_temps {
            let _ = std::fs::remove_file(&tmp);
        }
        BuildError::Write {
            path: dest.to_owned(),
            source,
        }
    })
}

/// One build of a plugin found in the output directory, for pruning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEntry {
    /// `build_time_ms` of its manifest.
    pub build_time_ms: u64,
    /// `build_id` of its manifest (breaks ties between equal times).
    pub build_id: String,
}

/// Indices into `builds` of the builds `--keep keep` deletes: all but the `keep` newest
/// (by build time, then build id). The build whose id is `current` is always kept.
pub fn select_prunable(builds: &[BuildEntry], keep: usize, current: &str) -> Vec<usize> {
    let mut order: Vec<usize> = (0..builds.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            let b = &builds[i];
            (b.build_id == current, b.build_time_ms, b.build_id.as_str())
        };
        key(b).cmp(&key(a))
    });
    let mut doomed: Vec<usize> = order.into_iter().skip(keep).collect();
    doomed.sort_unstable();
    doomed
}

/// Deletes all but the `keep` newest builds of `current`'s plugin in `dir` (manifest first,
/// then library, so a host never finds a manifest without its library). Returns the
/// libraries deleted. Problems are warnings: the build itself has already succeeded.
fn prune(dir: &Path, current: &Manifest, keep: usize, log: &Log) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log.warn(format_args!(
                "--keep: cannot list {}: {e}; nothing pruned",
                dir.display()
            ));
            return Vec::new();
        }
    };
    let mut found: Vec<(PathBuf, Manifest)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_manifest = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(MANIFEST_SUFFIX));
        if !is_manifest {
            continue;
        }
        match Manifest::read(&path) {
            Ok(m) if m.name == current.name => found.push((path, m)),
            Ok(_) => {}
            Err(e) => log.step(format_args!("--keep: skipping {e}")),
        }
    }
    let builds: Vec<BuildEntry> = found
        .iter()
        .map(|(_, m)| BuildEntry {
            build_time_ms: m.build_time_ms,
            build_id: m.build_id.clone(),
        })
        .collect();
    let mut pruned = Vec::new();
    for index in select_prunable(&builds, keep, &current.build_id) {
        let (manifest_path, manifest) = &found[index];
        // Only ever delete a plain file name inside `dir`, whatever the manifest says.
        if Path::new(&manifest.file).file_name() != Some(std::ffi::OsStr::new(&manifest.file)) {
            log.warn(format_args!(
                "--keep: {} names file {:?} outside its directory; not deleted",
                manifest_path.display(),
                manifest.file
            ));
            continue;
        }
        let library = dir.join(&manifest.file);
        log.step(format_args!("--keep: deleting {}", library.display()));
        if let Err(e) = std::fs::remove_file(manifest_path) {
            log.warn(format_args!(
                "--keep: cannot delete {}: {e}",
                manifest_path.display()
            ));
            continue;
        }
        match std::fs::remove_file(&library) {
            Ok(()) => pruned.push(library),
            Err(e) if e.kind() == io::ErrorKind::NotFound => pruned.push(library),
            Err(e) => log.warn(format_args!(
                "--keep: cannot delete {}: {e}",
                library.display()
            )),
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, id: &str) -> BuildEntry {
        BuildEntry {
            build_time_ms: ms,
            build_id: id.into(),
        }
    }

    #[test]
    fn file_names() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let id = "20261121T190803123Z-3fa9";
        assert_eq!(
            library_file_name("world", "0.1.0", Some(commit), id),
            format!("world-0.1.0-01234567-{id}{DLL_SUFFIX}")
        );
        assert_eq!(
            library_file_name("world", "0.1.0", None, id),
            format!("world-0.1.0-nogit-{id}{DLL_SUFFIX}")
        );
        let lib = PathBuf::from("/out").join(library_file_name("world", "0.1.0", None, id));
        assert_eq!(
            Manifest::path_for(&lib),
            PathBuf::from(format!("/out/world-0.1.0-nogit-{id}{MANIFEST_SUFFIX}"))
        );
        assert_eq!(
            build_id(&UtcTime::from_unix_ms(1_795_288_083_123), 0x3fa9),
            id
        );
        assert_eq!(describe_git(Some(commit), Some(true)), "01234567+dirty");
        assert_eq!(describe_git(None, None), "nogit");
    }

    #[test]
    fn source_file_selection() {
        let inc = Regex::new(r"\.sql$").expect("regex");
        let exc = Regex::new(r"^src/generated/").expect("regex");
        for (path, include, exclude, expected) in [
            ("src/lib.rs", None, None, true),
            ("Cargo.toml", None, None, true),
            ("Cargo.lock", None, None, true),
            ("sub/Cargo.toml", None, None, true),
            ("MyCargo.toml", None, None, false),
            ("README.md", None, None, false),
            ("db/q.sql", None, None, false),
            ("db/q.sql", Some(&inc), None, true),
            ("src/generated/x.rs", None, Some(&exc), false),
            ("src/generated/x.rs", Some(&inc), Some(&exc), false),
            ("src/main.rs", None, Some(&exc), true),
        ] {
            assert_eq!(
                counts_toward_source_hash(path, include, exclude),
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn source_hash_follows_sources_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("Cargo.toml", "[package]\nname = \"p\"\n");
        write("src/lib.rs", "pub fn f() {}\n");
        write("README.md", "hello\n");
        write("target/debug/junk.rs", "ignored\n");
        write(".git/hooks/x.rs", "ignored\n");
        write("assets/q.sql", "select 1;\n");

        let (base, files) = source_hash(root, None, None).expect("hash");
        assert_eq!(files, ["Cargo.toml", "src/lib.rs"]);
        assert_eq!(base.len(), 64);
        // Not counted: changing it does not change the hash.
        write("README.md", "changed\n");
        write("target/debug/junk.rs", "changed\n");
        assert_eq!(source_hash(root, None, None).expect("hash").0, base);
        // Counted.
        write("src/lib.rs", "pub fn f() { }\n");
        let changed = source_hash(root, None, None).expect("hash").0;
        assert_ne!(changed, base);
        // --include adds, --exclude removes.
        let inc = Regex::new(r"\.sql$").expect("regex");
        let (with_sql, files) = source_hash(root, Some(&inc), None).expect("hash");
        assert_eq!(files, ["Cargo.toml", "assets/q.sql", "src/lib.rs"]);
        assert_ne!(with_sql, changed);
        let exc = Regex::new(r"^src/").expect("regex");
        let (_, files) = source_hash(root, Some(&inc), Some(&exc)).expect("hash");
        assert_eq!(files, ["Cargo.toml", "assets/q.sql"]);
    }

    #[test]
    fn prune_selection() {
        let builds = [
            entry(100, "a"),
            entry(300, "c"),
            entry(200, "b"),
            entry(300, "d"),
        ];
        // Newest first: d (300, "d" > "c"), c, b, a.
        assert_eq!(select_prunable(&builds, 1, "d"), [0, 1, 2]);
        assert_eq!(select_prunable(&builds, 2, "d"), [0, 2]);
        assert_eq!(select_prunable(&builds, 4, "d"), Vec::<usize>::new());
        assert_eq!(select_prunable(&builds, 10, "d"), Vec::<usize>::new());
        // The current build survives even if another claims to be newer (clock skew).
        assert_eq!(select_prunable(&builds, 1, "a"), [1, 2, 3]);
        assert_eq!(select_prunable(&[], 1, "a"), Vec::<usize>::new());
    }

    #[test]
    fn prune_deletes_old_builds_of_this_plugin_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, ms: u64, id: &str| {
            let file = library_file_name(name, "0.1.0", None, id);
            std::fs::write(dir.path().join(&file), b"lib").expect("write lib");
            let m = Manifest {
                format: MANIFEST_FORMAT.into(),
                name: name.into(),
                version: "0.1.0".into(),
                file: file.clone(),
                git_commit: None,
                git_dirty: None,
                build_time: UtcTime::from_unix_ms(ms).rfc3339(),
                build_time_ms: ms,
                build_id: id.into(),
                sha256: String::new(),
                source_hash: String::new(),
                plugin_api_abi: [1, 0],
                rustc_version: String::new(),
                profile: "release".into(),
                target: String::new(),
                live_prefix: DEFAULT_LIVE_PREFIX.into(),
                live_functions: Vec::new(),
                panic: Default::default(),
            };
            m.write(&Manifest::path_for(&dir.path().join(&file)))
                .expect("write manifest");
            m
        };
        make("world", 1, "1");
        make("world", 2, "2");
        make("other", 0, "0");
        let current = make("world", 3, "3");
        let pruned = prune(dir.path(), &current, 1, &Log { verbose: false });
        assert_eq!(pruned.len(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left
            .iter()
            .all(|n| n.contains("-3") || n.starts_with("other-")));
    }

    #[test]
    fn cargo_argument_values() {
        let args: Vec<String> = ["--features", "v2", "--target=aarch64-unknown-linux-gnu"]
            .map(String::from)
            .into();
        assert_eq!(
            cargo_arg_value(&args, "--target").as_deref(),
            Some("aarch64-unknown-linux-gnu")
        );
        assert_eq!(cargo_arg_value(&args, "--features").as_deref(), Some("v2"));
        assert_eq!(cargo_arg_value(&args, "--profile"), None);
        // `--target-dir` is not `--target`.
        let args: Vec<String> = ["--target-dir=x"].map(String::from).into();
        assert_eq!(cargo_arg_value(&args, "--target"), None);
    }

    #[test]
    fn profiles_and_artifact_paths() {
        let none: [String; 0] = [];
        let release = Profile::choose(false, &none).expect("release");
        assert_eq!(
            (release.name.as_str(), release.dir.as_str(), release.flag),
            ("release", "release", Some("--release"))
        );
        let dev = Profile::choose(true, &none).expect("dev");
        assert_eq!(
            (dev.name.as_str(), dev.dir.as_str(), dev.flag),
            ("dev", "debug", None)
        );
        let custom = Profile::choose(false, &["--profile".into(), "fast".into()]).expect("custom");
        assert_eq!(
            (custom.name.as_str(), custom.dir.as_str(), custom.flag),
            ("fast", "fast", None)
        );
        assert!(Profile::choose(true, &["--release".into()]).is_err());

        let t = Path::new("/t");
        assert_eq!(
            expected_artifact(t, None, "release", "my_plugin"),
            PathBuf::from(format!("/t/release/{DLL_PREFIX}my_plugin{DLL_SUFFIX}"))
        );
        assert_eq!(
            expected_artifact(t, Some("x86_64-unknown-linux-gnu"), "debug", "w"),
            PathBuf::from(format!(
                "/t/x86_64-unknown-linux-gnu/debug/{DLL_PREFIX}w{DLL_SUFFIX}"
            ))
        );
        assert_eq!(
            expected_artifact(t, Some("specs/my-target.json"), "debug", "w"),
            PathBuf::from(format!("/t/my-target/debug/{DLL_PREFIX}w{DLL_SUFFIX}"))
        );
    }

    #[test]
    fn metadata_picks_the_plugin_package() {
        let json: Value = serde_json::from_str(
            r#"{
              "target_directory": "/ws/target",
              "packages": [
                {"name": "other", "version": "1.0.0", "id": "other-id",
                 "manifest_path": "/ws/other/Cargo.toml",
                 "targets": [{"name": "other", "kind": ["lib"], "crate_types": ["lib"]}]},
                {"name": "my-plugin", "version": "0.2.0", "id": "plugin-id",
                 "manifest_path": "/ws/plug/Cargo.toml",
                 "targets": [
                   {"name": "build-script-build", "kind": ["custom-build"], "crate_types": ["bin"]},
                   {"name": "my-plugin", "kind": ["cdylib"], "crate_types": ["cdylib"]}
                 ]}
              ]
            }"#,
        )
        .expect("json");
        let info = parse_metadata(&json, Path::new("/ws/plug/Cargo.toml")).expect("plugin");
        assert_eq!(info.name, "my-plugin");
        assert_eq!(info.version, "0.2.0");
        assert_eq!(info.lib_name, "my_plugin");
        assert_eq!(info.id, "plugin-id");
        assert_eq!(info.target_directory, PathBuf::from("/ws/target"));

        let err = parse_metadata(&json, Path::new("/ws/other/Cargo.toml")).expect_err("rlib");
        assert!(matches!(err, BuildError::NotCdylib { .. }));
        assert!(err
            .to_string()
            .contains(r#"is not a cdylib: add `crate-type = ["cdylib"]` under [lib]"#));
        let err = parse_metadata(&json, Path::new("/ws/none/Cargo.toml")).expect_err("none");
        assert!(matches!(err, BuildError::PackageNotFound { .. }));
    }

    #[test]
    fn artifact_messages() {
        let package = PackageInfo {
            name: "world".into(),
            version: "0.1.0".into(),
            id: "path+file:///ws/world#0.1.0".into(),
            lib_name: "world".into(),
            manifest_path: "/ws/world/Cargo.toml".into(),
            target_directory: "/ws/target".into(),
        };
        let msg: Value = serde_json::json!({
            "reason": "compiler-artifact",
            "package_id": "path+file:///ws/world#0.1.0",
            "manifest_path": "/ws/world/Cargo.toml",
            "filenames": ["/t/release/libworld.rlib", format!("/t/release/libworld{DLL_SUFFIX}")],
            "fresh": true
        });
        assert_eq!(
            artifact_in_message(&msg, &package),
            Some(PathBuf::from(format!("/t/release/libworld{DLL_SUFFIX}")))
        );
        let mut other = msg.clone();
        other["package_id"] = "registry+https://x#dep@1.0.0".into();
        other["manifest_path"] = "/registry/dep/Cargo.toml".into();
        assert_eq!(artifact_in_message(&other, &package), None);
        let finished = serde_json::json!({"reason": "build-finished", "success": true});
        assert_eq!(artifact_in_message(&finished, &package), None);
    }

    #[test]
    fn rustc_output() {
        let text = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        let t = parse_rustc_vv(text).expect("parsed");
        assert_eq!(t.version, "rustc 1.95.0 (59807616e 2026-04-14)");
        assert_eq!(t.host, "x86_64-unknown-linux-gnu");
        assert!(parse_rustc_vv("").is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--release"), "--release");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn git_state_of_a_subdirectory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let plugin = root.join("plugins/p");
        std::fs::create_dir_all(&plugin).expect("mkdir");
        std::fs::create_dir_all(root.join("elsewhere")).expect("mkdir");

        // Outside git: nothing known, not an error.
        assert_eq!(
            git_state(&plugin).expect("no repo"),
            GitState {
                commit: None,
                dirty: None
            }
        );

        let repo = git2::Repository::init(&root).expect("init");
        std::fs::write(plugin.join("lib.rs"), "v1").expect("write");
        // Unborn HEAD: no commit, but the new file makes it dirty.
        let state = git_state(&plugin).expect("unborn");
        assert_eq!(state.commit, None);
        assert_eq!(state.dirty, Some(true));

        std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .expect("commit");

        let clean = git_state(&plugin).expect("clean");
        assert_eq!(clean.commit, Some(commit.to_string()));
        assert_eq!(clean.dirty, Some(false));

        // Changes elsewhere in the repository and ignored files do not count.
        std::fs::write(root.join("elsewhere/x.rs"), "x").expect("write");
        std::fs::write(plugin.join("build.log"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("still clean").dirty, Some(false));
        // A sibling directory sharing the prefix does not count either.
        std::fs::create_dir_all(root.join("plugins/p2")).expect("mkdir");
        std::fs::write(root.join("plugins/p2/lib.rs"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("still clean").dirty, Some(false));

        // Untracked, modified and deleted files under the plugin do.
        std::fs::write(plugin.join("new.rs"), "x").expect("write");
        assert_eq!(git_state(&plugin).expect("untracked").dirty, Some(true));
        std::fs::remove_file(plugin.join("new.rs")).expect("rm");
        std::fs::write(plugin.join("lib.rs"), "v2").expect("write");
        assert_eq!(git_state(&plugin).expect("modified").dirty, Some(true));
        std::fs::remove_file(plugin.join("lib.rs")).expect("rm");
        assert_eq!(git_state(&plugin).expect("deleted").dirty, Some(true));
    }

    #[test]
    fn path_prefixes() {
        assert!(path_is_under(b"a/b/c.rs", b"a/b"));
        assert!(path_is_under(b"a/b", b"a/b"));
        assert!(!path_is_under(b"a/bc/d.rs", b"a/b"));
        assert!(path_is_under(b"anything", b""));
    }
}
