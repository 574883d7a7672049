//! [`Trigger`]: the one function every reload trigger (SIGHUP, the admin endpoint, the
//! file watcher, host code) goes through. It calls [`PluginManager::reload`] with the
//! host's reload data and records the outcome and duration for the metrics.

use crate::error::Error;
use crate::manager::PluginManager;
use crate::report::ReloadReport;
use hotswap_plugin_api::Value;
use parking_lot::Mutex;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the reload-duration histogram buckets; `+Inf` is implied.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What asked for a reload; a label of the reload metrics and of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// Host code called [`Trigger::reload`] directly.
    Api,
    /// SIGHUP (see [`crate::signals`]).
    Signal,
    /// `POST /reload` on the admin endpoint.
    Admin,
    /// The plugin-directory watcher (see `crate::watch`).
    Watch,
}

impl Source {
    /// Every source, in a fixed order (for the metrics).
    pub const ALL: [Source; 4] = [Source::Api, Source::Signal, Source::Admin, Source::Watch];

    /// The label value: `api`, `signal`, `admin`, `watch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Signal => "signal",
            Source::Admin => "admin",
            Source::Watch => "watch",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a triggered reload ended; a label of the reload metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// A new generation was published.
    Success,
    /// The reload failed; the old generation keeps serving.
    Failure,
    /// Refused because another reload was running ([`Error::ReloadInProgress`]).
    Refused,
}

impl ReloadOutcome {
    /// Every outcome, in a fixed order (for the metrics).
    pub const ALL: [ReloadOutcome; 3] = [
        ReloadOutcome::Success,
        ReloadOutcome::Failure,
        ReloadOutcome::Refused,
    ];

    /// The label value: `success`, `failure`, `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Success => "success",
            ReloadOutcome::Failure => "failure",
            ReloadOutcome::Refused => "refused",
        }
    }

    fn of(result: &Result<ReloadReport, Error>) -> ReloadOutcome {
        match result {
            Ok(_) => ReloadOutcome::Success,
            Err(Error::ReloadInProgress) => ReloadOutcome::Refused,
            Err(_) => ReloadOutcome::Failure,
        }
    }
}

/// Counters of the reloads that went through a [`Trigger`] (and its clones).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStats {
    /// `(source, outcome, count)` for every pair seen at least once.
    pub counts: Vec<(Source, ReloadOutcome, u64)>,
    /// Cumulative counts per bucket of `DURATION_BUCKETS` (refused reloads excluded).
    pub duration_buckets: Vec<u64>,
    /// Number of reloads observed by the histogram (success and failure).
    pub duration_count: u64,
    /// Sum of their durations, in seconds.
    pub duration_sum_seconds: f64,
    /// When the last reload that ran ended and how; `None` before the first.
    pub last: Option<LastReload>,
    /// `(plugin, outcome, count)`, sorted: what the reloads that ran did to each plugin.
    /// The outcome is a successful reload's [`Outcome`](crate::Outcome) for the plugin
    /// (`loaded`, `unchanged`, ..., [`Outcome::as_str`](crate::Outcome::as_str)), or
    /// `failure` for a reload that failed loading that plugin.
    pub plugins: Vec<(String, &'static str, u64)>,
}

/// The last reload a [`Trigger`] ran (refusals not included).
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// What asked for it.
    pub source: Source,
    /// How it ended.
    pub outcome: ReloadOutcome,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// Seconds since the Unix epoch when it ended.
    pub unix_time: f64,
}

#[derive(Debug, Default)]
struct Stats {
    counts: Vec<(Source, ReloadOutcome, u64)>,
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
    last: Option<LastReload>,
    plugins: Vec<(String, &'static str, u64)>,
}

impl Stats {
    fn record(&mut self, source: Source, result: &Result<ReloadReport, Error>, took: Duration) {
        let outcome = ReloadOutcome::of(result);
        match self
            .counts
            .iter_mut()
            .find(|(s, o, _)| *s == source && *o == outcome)
        {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((source, outcome, 1)),
        }
        if outcome == ReloadOutcome::Refused {
            return;
        }
        match result {
            Ok(report) => {
                for p in &report.plugins {
                    self.count_plugin(&p.plugin, p.outcome.as_str());
                }
            }
            Err(e) => {
                if let Some(plugin) = e.as_load().and_then(|l| l.plugin.as_deref()) {
                    self.count_plugin(plugin, "failure");
                }
            }
        }
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last = Some(LastReload {
            source,
            outcome,
            error: result.as_ref().err().map(ToString::to_string),
            unix_time,
        });
    }
}

impl Stats {
    fn count_plugin(&mut self, plugin: &str, outcome: &'static str) {
        match self
            .plugins
            .iter_mut()
            .find(|(p, o, _)| p == plugin && *o == outcome)
        {
            Some((_, _, n)) => *n += 1,
            None => self.plugins.push((plugin.to_owned(), outcome, 1)),
        }
    }
}

type DataFn = dyn Fn() -> Value + Send + Sync;

struct Inner {
    manager: Arc<PluginManager>,
    data: Box<DataFn>,
    stats: Mutex<Stats>,
}

/// The shared reload path of a host: cheap to clone, every clone shares the manager,
/// the reload data and the statistics.
///
/// ```no_run
/// use hotswap_host::{PluginManager, Trigger, Source, Value};
/// use std::sync::Arc;
///
/// let manager = Arc::new(PluginManager::new("plugins")?);
/// manager.load_plugins(&Value::Null)?;
/// let trigger = Trigger::with_data(manager.clone(), || Value::Null);
/// let report = trigger.reload(Source::Api)?;
/// println!("{report}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Trigger {
    inner: Arc<Inner>,
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("dir", &self.inner.manager.dir())
            .finish_non_exhaustive()
    }
}

impl Trigger {
    /// A trigger reloading `manager` with `Value::Null` as the reload data.
    pub fn new(manager: Arc<PluginManager>) -> Trigger {
        Trigger::with_data(manager, || Value::Null)
    }

    /// A trigger reloading `manager` with the data `data` makes, called fresh on every
    /// reload (so a host can pass its current configuration to `on_load`).
    pub fn with_data(
        manager: Arc<PluginManager>,
        data: impl Fn() -> Value + Send + Sync + 'static,
    ) -> Trigger {
        Trigger {
            inner: Arc::new(Inner {
                manager,
                data: Box::new(data),
                stats: Mutex::new(Stats::default()),
            }),
        }
    }

    /// The manager this trigger reloads.
    pub fn manager(&self) -> &Arc<PluginManager> {
        &self.inner.manager
    }

    /// Reloads with the host's reload data; see [`PluginManager::reload`] for what can
    /// fail. A reload already running makes this one fail with
    /// [`Error::ReloadInProgress`], changing nothing. The outcome is logged and counted.
    pub fn reload(&self, source: Source) -> Result<ReloadReport, Error> {
        let data = (self.inner.data)();
        self.reload_with(source, &data)
    }

    /// Like [`reload`](Self::reload) with explicit reload data (the admin endpoint's
    /// `POST /reload` body, when it has one).
    pub fn reload_with(&self, source: Source, data: &Value) -> Result<ReloadReport, Error> {
        self.record(source, "reload", || self.inner.manager.reload(data))
    }

    /// Rolls `plugin` back (to build `to`, or the one before the running one) with the
    /// host's reload data; see [`PluginManager::rollback`] for what can fail. Logged
    /// and counted like a reload.
    pub fn rollback(
        &self,
        source: Source,
        plugin: &str,
        to: Option<&str>,
    ) -> Result<ReloadReport, Error> {
        let data = (self.inner.data)();
        self.record(source, "rollback", || {
            self.inner.manager.rollback(plugin, to, &data)
        })
    }

    /// Runs one reload (or rollback), then counts and logs its outcome.
    fn record(
        &self,
        source: Source,
        what: &'static str,
        reload: impl FnOnce() -> Result<ReloadReport, Error>,
    ) -> Result<ReloadReport, Error> {
        let started = Instant::now();
        // On SIGHUP's, the watcher's or an admin thread: a panic would end it, and with
        // it every later reload from there.
        let result = crate::contain::contain_or_why("a reload", reload)
            .unwrap_or_else(|m| Err(Error::Panicked(m)));
        let took = started.elapsed();
        self.inner.stats.lock().record(source, &result, took);
        match &result {
            Ok(report) => tracing::info!(
                trigger = source.as_str(),
                generation = report.generation,
                took_ms = took.as_secs_f64() * 1000.0,
                "{what} succeeded"
            ),
            Err(Error::ReloadInProgress) => {
                tracing::warn!(
                    trigger = source.as_str(),
                    "{what} refused: a reload is running"
                )
            }
            Err(e) => tracing::error!(trigger = source.as_str(), error = %e, "{what} failed"),
        }
        result
    }

    /// A snapshot of the reload counters and the duration histogram.
    pub fn stats(&self) -> ReloadStats {
        let s = self.inner.stats.lock();
        let mut counts = s.counts.clone();
        counts.sort_by_key(|(src, out, _)| (*src as u8, *out as u8));
        ReloadStats {
            counts,
            duration_buckets: s.buckets.to_vec(),
            duration_count: s.count,
            duration_sum_seconds: s.sum,
            last: s.last.clone(),
            plugins: {
                let mut p = s.plugins.clone();
                p.sort();
                p
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_refusals_are_not_timed() {
        let mut s = Stats::default();
        s.record(
            Source::Admin,
            &Err(Error::NotLoaded),
            Duration::from_millis(3),
        );
        s.record(
            Source::Admin,
            &Err(Error::NotLoaded),
            Duration::from_secs(20),
        );
        s.record(
            Source::Signal,
            &Err(Error::ReloadInProgress),
            Duration::ZERO,
        );
        assert_eq!(s.count, 2);
        assert_eq!(s.buckets[0], 0); // 1 ms
        assert_eq!(s.buckets[1], 1); // 5 ms
        assert_eq!(*s.buckets.last().unwrap(), 1); // 10 s: the 20 s one is only in +Inf
        assert_eq!(
            s.counts,
            vec![
                (Source::Admin, ReloadOutcome::Failure, 2),
                (Source::Signal, ReloadOutcome::Refused, 1)
            ]
        );
        assert_eq!(s.last.as_ref().map(|l| l.source), Some(Source::Admin));
    }
}
