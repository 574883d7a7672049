//! `hotswap build`: build a plugin crate with cargo and package the library, under a
//! unique file name, with its manifest into an output directory a host loads from.
//!
//! The steps, in order: ask `cargo metadata` about the crate, `cargo build` it (unless
//! `--no-build`), read its git state, check the library really is a hotswap plugin (and
//! read its ABI version), copy it into the output directory under a fresh name, write the
//! manifest beside it (only once the library is complete), and prune old builds
//! (`--keep`). A host never sees a manifest whose library is incomplete.

use crate::cargo_build::{cargo_arg_value, cargo_build, expected_artifact, Profile};
use crate::error::BuildError;
use crate::git::{describe_git, git_state};
use crate::log::{Log, Temps};
use crate::packaging::{build_id, library_file_name, random_u16, write_library, write_manifest};
use crate::plugin_crate::cargo_metadata;
use crate::prune::prune;
use crate::sources::{live_functions, source_digests, SourceDigests};
use crate::time::{now_unix_ms, UtcTime};
use crate::toolchain::rustc_info;
use hotswap_manifest::elf;
use hotswap_manifest::{sha256_hex, Manifest, PanicStrategy, MANIFEST_FORMAT};
use regex::Regex;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Default of `--live-prefix`.
pub const DEFAULT_LIVE_PREFIX: &str = "live_";

/// Subdirectory of the plugin's cargo target directory used when `--target-dir` is not
/// given and `hotswap build` runs inside a build script (see [`default_target_dir`]).
pub const DEFAULT_TARGET_SUBDIR: &str = "hotswap-build";

/// Where cargo builds when `--target-dir` is not given: the plugin's own target directory
/// (`package_target`), so the release build of its dependencies is the one a
/// `cargo build --release` of the plugin makes and uses, compiled once for both. Nothing
/// differs from such a build (`cargo build --lib` with the crate's own crate types, the
/// same profile, no flags of ours), and cargo holds a target directory's lock only while
/// it compiles, not while `cargo run` or `cargo test` run what they built.
///
/// Only a build script runs while its cargo holds that lock: there
/// (`in_build_script`, see [`running_in_build_script`]) the build goes to
/// `<package_target>/hotswap-build`, which has a lock of its own, rather than wait forever.
pub fn default_target_dir(package_target: &Path, in_build_script: bool) -> PathBuf {
    if in_build_script {
        package_target.join(DEFAULT_TARGET_SUBDIR)
    } else {
        package_target.to_owned()
    }
}

/// Whether this process runs as (or under) a cargo build script: cargo sets
/// `CARGO_CFG_TARGET_OS` and `OUT_DIR` for build scripts only.
pub fn running_in_build_script() -> bool {
    std::env::var_os("CARGO_CFG_TARGET_OS").is_some() && std::env::var_os("OUT_DIR").is_some()
}

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
    /// Cargo target directory; default the plugin's own (see [`default_target_dir`]).
    pub target_dir: Option<PathBuf>,
    /// After a successful build, delete all but this many newest builds of the plugin.
    pub keep: Option<usize>,
    /// Extra arguments for `cargo build`.
    pub cargo_args: Vec<String>,
    /// Package a library built with `panic = "abort"` (with a warning, and
    /// `"panic": "abort"` in its manifest) instead of refusing it.
    pub allow_panic_abort: bool,
    /// Sign each manifest with this minisign secret key file (`hotswap keygen`), into
    /// `<manifest>.minisig`, for hosts with trusted keys.
    pub sign: Option<PathBuf>,
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
            sign: None,
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
    /// The manifest's signature, with `--sign`.
    pub signature: Option<PathBuf>,
    /// Libraries of older builds deleted by `--keep`.
    pub pruned: Vec<PathBuf>,
    /// Where temporary files were kept (`--leave-temps`).
    pub temp_dir: Option<PathBuf>,
    /// The sources as this build hashed them (after cargo ran): the manifest's
    /// `source_hash` and each file's own sha256.
    pub sources: SourceDigests,
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
            if let Some(sig) = &self.signature {
                let _ = write!(out, "\n  signed   {}", sig.display());
            }
            for pruned in &self.pruned {
                let _ = write!(out, "\n  pruned   {}", pruned.display());
            }
        }
        out
    }
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
    // A bad signing key fails the build before cargo runs.
    let key = opts
        .sign
        .as_deref()
        .map(crate::signing::read_secret_key)
        .transpose()?;
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
        None => default_target_dir(&package.target_directory, running_in_build_script()),
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

    let sources = source_digests(&plugin_dir, opts.include.as_ref(), opts.exclude.as_ref())?;
    let hashed: Vec<String> = sources.files.keys().cloned().collect();
    log.step(format_args!(
        "source hash {} over {} files",
        sources.hash,
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
    create_output_dir(&opts.output_dir, &log)?;
    let library = opts.output_dir.join(&file_name);
    log.step(format_args!("writing {}", library.display()));
    write_library(&bytes, &library, opts.leave_temps)?;

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
        source_hash: sources.hash.clone(),
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
    let signature = write_manifest(&manifest, &manifest_path, &library, key.as_ref())?;
    if let Some(sig) = &signature {
        log.step(format_args!("signed it: {}", sig.display()));
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
        signature,
        pruned,
        temp_dir: temps.dir,
        sources,
    })
}

/// Creates the output directory (and missing parents) with mode 0755, and warns when
/// it already exists writable by others: a strict host refuses to load from it.
fn create_output_dir(dir: &Path, log: &Log) -> Result<(), BuildError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|source| BuildError::Write {
            path: dir.to_owned(),
            source,
        })?;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            log.warn(format_args!(
                "{} is writable by other users (mode {mode:04o}): a strict host refuses to load from it (`chmod go-w` it)",
                dir.display()
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_target_dir_is_the_plugins_own_except_in_a_build_script() {
        let target = Path::new("/ws/target");
        assert_eq!(default_target_dir(target, false), target);
        assert_eq!(
            default_target_dir(target, true),
            Path::new("/ws/target/hotswap-build")
        );
    }
}
