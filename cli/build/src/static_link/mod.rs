//! `hotswap build --static-linking <pluginDir> <hostDir>`: link a plugin crate into a
//! host crate as an ordinary Rust dependency, so that one binary holds host and plugin
//! code and a debugger sees both (Go hotswap's `--staticLinking`).
//!
//! Nothing is compiled here. The command writes, into the host crate:
//!
//! - `src/hotswap_static.rs` ([`GENERATED_FILE`]): `pub fn static_plugins()`, the list of
//!   every plugin linked so far, for `PluginManager::builder(dir).static_plugins(…)`;
//! - in `Cargo.toml`, between the lines [`BLOCK_BEGIN`] and [`BLOCK_END`] inside
//!   `[dependencies]`: a path dependency on each plugin, and `hotswap-plugin-api` with
//!   its `static` feature (so `export_plugin!` leaves the header out of the symbol table
//!   and two plugins do not collide).
//!
//! Both are regenerated as a whole from the plugins listed in the block, each inspected
//! again (`cargo metadata`, live functions in its sources), so re-running for another
//! plugin adds it, and re-running for a linked one changes nothing unless its sources
//! did. Hand edits outside the block are kept; the block and the generated file are
//! rewritten. The plugin crate needs `rlib` next to `cdylib` in its `crate-type`; its
//! source is not touched.
//!
//! The submodules, each using only those listed before it: `markers` (the marks this
//! command leaves), `error`, `package` (`cargo metadata` of either crate), `plugin` (a
//! plugin crate to link), `host_toml` (the block in the host's `Cargo.toml`, edited with
//! `toml_edit`), `generated` (the Rust module); this file runs the steps.

mod error;
mod generated;
mod host_toml;
mod markers;
mod package;
mod plugin;

pub use error::StaticLinkError;
pub use markers::{BLOCK_BEGIN, BLOCK_END, GENERATED_FILE, GENERATED_MARK};
pub use plugin::{ApiDependency, LinkedPlugin};

use generated::{declares_module, module};
use host_toml::{block, TomlLayout};
use markers::PLUGIN_API;
use package::{metadata, package_of};
use plugin::{absolute_from, inspect};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// What to link where; the fields mirror the flags of `hotswap build --static-linking`.
#[derive(Debug, Clone)]
pub struct StaticLinkOptions {
    /// Directory of the plugin crate (holding its `Cargo.toml`).
    pub plugin_dir: PathBuf,
    /// Directory of the host crate (holding its `Cargo.toml` and `src/`).
    pub host_dir: PathBuf,
    /// Case-insensitive name prefix of live functions looked for in the plugins' sources.
    pub live_prefix: String,
    /// Print each step on stderr.
    pub verbose: bool,
}

/// What `hotswap build --static-linking` did.
#[derive(Debug, Clone)]
pub struct StaticLinkOutput {
    /// The plugin this run linked.
    pub plugin: LinkedPlugin,
    /// The host package's name.
    pub host: String,
    /// Every plugin now linked into the host, in the order `static_plugins()` lists them.
    pub plugins: Vec<LinkedPlugin>,
    /// Files written, with what changed in each; empty when everything was up to date.
    pub changed: Vec<(PathBuf, String)>,
    /// Files that already had the right contents.
    pub unchanged: Vec<PathBuf>,
    /// Things the user still has to do (e.g. declare the module in `main.rs`).
    pub notes: Vec<String>,
}

impl StaticLinkOutput {
    /// What the command prints: one line for the link, one per file, then the notes.
    pub fn summary(&self) -> String {
        let p = &self.plugin;
        let names: Vec<&str> = self.plugins.iter().map(|p| p.package.as_str()).collect();
        let mut out = format!(
            "linked {} {} ({}) into {}: static plugins {}",
            p.package,
            p.version,
            p.path,
            self.host,
            names.join(", ")
        );
        for (path, what) in &self.changed {
            let _ = write!(out, "\n  updated   {}: {what}", path.display());
        }
        for path in &self.unchanged {
            let _ = write!(out, "\n  unchanged {}", path.display());
        }
        for note in &self.notes {
            let _ = write!(out, "\nnote: {note}");
        }
        out
    }
}

/// Links `opts.plugin_dir` into the host crate `opts.host_dir`; see the module docs.
///
/// Fails with a [`StaticLinkError`] naming what failed: a directory that is not a cargo
/// package, a plugin without `rlib` in its `crate-type` or without a dependency on
/// `hotswap-plugin-api`, a hand-edited generated block, a write error, or a `Cargo.toml`
/// cargo refuses after the edit (the files are then restored).
pub fn link(opts: &StaticLinkOptions) -> Result<StaticLinkOutput, StaticLinkError> {
    let log = |msg: std::fmt::Arguments<'_>| {
        if opts.verbose {
            eprintln!("hotswap: {msg}");
        }
    };
    let plugin_dir = crate_dir("plugin", &opts.plugin_dir)?;
    let host_dir = crate_dir("host", &opts.host_dir)?;
    if plugin_dir == host_dir {
        return Err(StaticLinkError::SameCrate { path: host_dir });
    }
    let host_toml = host_dir.join("Cargo.toml");
    log(format_args!(
        "reading package metadata of {}",
        host_toml.display()
    ));
    let host_json = metadata(&host_toml)?;
    let host_name = package_of(&host_json, &host_toml)?["name"]
        .as_str()
        .unwrap_or("host")
        .to_owned();

    let original = read(&host_toml)?;
    let layout = TomlLayout::parse(&original, &host_toml)?;
    // The plugins linked so far, in their order, this one in its place (or last if new).
    let (plugin, api_dep) = inspect(&plugin_dir, &host_dir, &opts.live_prefix, &log)?;
    let mut plugins = Vec::new();
    let mut placed = false;
    for path in &layout.plugin_paths {
        let dir = absolute_from(&host_dir, path);
        let Ok(dir) = std::fs::canonicalize(&dir) else {
            // A linked plugin that moved or was deleted drops out of the list.
            log(format_args!("{} is gone; unlinking it", dir.display()));
            continue;
        };
        let p = if dir == plugin_dir {
            plugin.clone()
        } else {
            inspect(&dir, &host_dir, &opts.live_prefix, &log)?.0
        };
        if p.package == plugin.package {
            if !placed {
                plugins.push(plugin.clone());
                placed = true;
            }
        } else {
            plugins.push(p);
        }
    }
    if !placed {
        plugins.push(plugin.clone());
    }
    // The plugin-api the plugin just linked builds against, with the `static` feature;
    // left alone when the host declares that dependency itself.
    let api_dep = (!layout.user_declares_api).then_some(api_dep);
    for p in &plugins {
        if layout.declared_outside.contains(&p.package) {
            return Err(StaticLinkError::DeclaredTwice {
                path: host_toml.clone(),
                package: p.package.clone(),
            });
        }
    }

    let toml = layout.render(&original, &block(&plugins, api_dep.as_ref()));
    let rs_path = host_dir.join(GENERATED_FILE);
    let rs_old = match std::fs::read_to_string(&rs_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(StaticLinkError::Read {
                path: rs_path,
                source,
            })
        }
    };
    let rs = module(&plugins, &opts.live_prefix);

    // Paths as the user wrote them, for the summary.
    let shown = |p: &Path| opts.host_dir.join(p.strip_prefix(&host_dir).unwrap_or(p));
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    let names: Vec<&str> = plugins.iter().map(|p| p.package.as_str()).collect();
    if toml != original {
        write(&host_toml, &toml)?;
        let what = format!(
            "dependencies {}{}",
            names.join(", "),
            if api_dep.is_some() {
                format!(", {PLUGIN_API} (feature static)")
            } else {
                String::new()
            }
        );
        // Let cargo judge the edit; put everything back if it refuses.
        if let Err(e) = metadata(&host_toml) {
            let _ = std::fs::write(&host_toml, &original);
            return Err(StaticLinkError::Rejected {
                path: host_toml,
                source: Box::new(e),
            });
        }
        changed.push((shown(&host_toml), what));
    } else {
        unchanged.push(shown(&host_toml));
    }
    if rs_old.as_deref() != Some(rs.as_str()) {
        if let Some(parent) = rs_path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StaticLinkError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        if let Err(e) = write(&rs_path, &rs) {
            if toml != original {
                let _ = std::fs::write(&host_toml, &original);
            }
            return Err(e);
        }
        changed.push((
            shown(&rs_path),
            format!("static_plugins() lists {}", names.join(", ")),
        ));
    } else {
        unchanged.push(shown(&rs_path));
    }

    let mut notes = Vec::new();
    if layout.user_declares_api {
        notes.push(format!(
            "{} declares {PLUGIN_API} itself: give it `features = [\"static\"]`, or two \
             plugins will not link together",
            host_toml.display()
        ));
    }
    if !declares_module(&host_dir) {
        notes.push(format!(
            "declare the module in the host: `mod hotswap_static;` in src/main.rs (or \
             src/lib.rs), then `PluginManager::builder(dir).static_plugins(\
             hotswap_static::static_plugins())` in {host_name}"
        ));
    }
    Ok(StaticLinkOutput {
        plugin,
        host: host_name,
        plugins,
        changed,
        unchanged,
        notes,
    })
}

/// The canonical directory of a crate, which must hold a `Cargo.toml`.
fn crate_dir(what: &'static str, dir: &Path) -> Result<PathBuf, StaticLinkError> {
    let path = std::fs::canonicalize(dir).map_err(|source| StaticLinkError::Dir {
        what,
        path: dir.to_owned(),
        source,
    })?;
    if !path.join("Cargo.toml").is_file() {
        return Err(StaticLinkError::NoCargoToml { what, path });
    }
    Ok(path)
}

fn read(path: &Path) -> Result<String, StaticLinkError> {
    std::fs::read_to_string(path).map_err(|source| StaticLinkError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `text` through a temporary file in the same directory, so a crash leaves the
/// old file or the new one, never half of one. Keeps the old file's permissions.
fn write(path: &Path, text: &str) -> Result<(), StaticLinkError> {
    let err = |source| StaticLinkError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    let permissions = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        #[cfg(unix)]
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
        #[cfg(not(unix))]
        Err(_) => tmp.as_file().metadata().map_err(err)?.permissions(),
    };
    tmp.as_file().set_permissions(permissions).map_err(err)?;
    io::Write::write_all(&mut tmp, text.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
