//! What a load or reload did, plugin by plugin (Go hotswap's `Details`).

use serde::Serialize;
use std::time::Duration;

/// What happened to one plugin in a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// A new version was loaded.
    Loaded,
    /// Same file content as the current version: the current version is kept.
    Unchanged,
    /// The current version said it is not reloadable: it is kept.
    NotReloadable,
    /// Its builds left the directory: it is not part of the new generation.
    Removed,
    /// Unchanged, but a plugin it imports changed: a fresh instance (from a fresh copy of
    /// the same file) was bound to the new provider.
    Rebound,
}

impl Outcome {
    /// The label value: `loaded`, `unchanged`, `not_reloadable`, `removed`, `rebound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Unchanged => "unchanged",
            Outcome::NotReloadable => "not_reloadable",
            Outcome::Removed => "removed",
            Outcome::Rebound => "rebound",
        }
    }
}

/// One plugin's line in a [`ReloadReport`].
#[derive(Debug, Clone, Serialize)]
pub struct PluginReport {
    /// Plugin name.
    pub plugin: String,
    /// What happened.
    pub outcome: Outcome,
    /// Crate version now serving (for `Removed`: the one removed).
    pub version: String,
    /// Build id now serving.
    pub build_id: String,
    /// Build id served before, if any.
    pub previous_build_id: Option<String>,
    /// Time spent loading it (zero when not loaded).
    #[serde(serialize_with = "as_millis")]
    pub load_time: Duration,
}

/// The result of a successful load or reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The generation now serving.
    pub generation: u64,
    /// The generation served before.
    pub previous_generation: u64,
    /// One line per plugin, in dependency order (removed ones last).
    pub plugins: Vec<PluginReport>,
    /// Wall time of the whole reload.
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

impl ReloadReport {
    /// The line for `plugin`.
    pub fn plugin(&self, plugin: &str) -> Option<&PluginReport> {
        self.plugins.iter().find(|p| p.plugin == plugin)
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "generation {} -> {} in {:.1} ms",
            self.previous_generation,
            self.generation,
            self.duration.as_secs_f64() * 1000.0
        )?;
        for p in &self.plugins {
            writeln!(
                f,
                "  {:<20} {:<15?} {} {}",
                p.plugin, p.outcome, p.version, p.build_id
            )?;
        }
        Ok(())
    }
}
