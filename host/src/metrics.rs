//! The host's metrics in the Prometheus text exposition format (version 0.0.4), as
//! `GET /metrics` serves them. Built from [`Trigger::stats`] and
//! [`PluginManager::status`](crate::PluginManager::status) and
//! [`PluginManager::call_metrics`](crate::PluginManager::call_metrics) when asked.

use crate::call_stats::CallMetrics;
use crate::status::VersionState;
use crate::trigger::{ReloadOutcome, Source, Trigger, DURATION_BUCKETS};
use std::fmt::Write;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric of the host behind `trigger`:
///
/// - `hotswap_reloads_total{trigger,outcome}`: reloads through the trigger (outcome
///   `success`, `failure`, `refused`).
/// - `hotswap_reload_duration_seconds`: histogram of those that ran.
/// - `hotswap_last_reload_timestamp_seconds`, `hotswap_last_reload_success`.
/// - `hotswap_generation`: id of the generation serving.
/// - `hotswap_generations_published_total`: generations published since start, the
///   first load included, whatever started them (host code calling the manager
///   directly included); reloads alone are [`Status::reloads`](crate::Status::reloads).
/// - `hotswap_versions_in_memory{state}`: `current`, `draining`, `stuck`, `closing`,
///   `pinned`.
/// - `hotswap_versions_unloaded_total`: versions unloaded and verified unmapped.
/// - `hotswap_plugin_info{plugin,version,build_id,reloadable}`: always 1.
/// - `hotswap_hook_timeouts_total`: hooks that overran their deadline.
/// - `hotswap_version_heap_bytes{plugin,version,id}`,
///   `hotswap_version_heap_blocks{plugin,version,id}`: heap each version in memory
///   holds (its code's allocations not yet freed), for the versions that count it.
/// - `hotswap_unloaded_heap_bytes_total`, `hotswap_unloaded_heap_blocks_total`: heap
///   unloaded versions left allocated (leaked) when they unloaded.
/// - `hotswap_reclamation_info{mode}`: always 1; `mode` says how readers are fenced.
/// - `hotswap_trust_info{mode,signatures}`: always 1; `mode` is `strict` or
///   `permissive` (the plugin directory's owner and mode checks), `signatures` is
///   `required` (trusted keys configured) or `not_required`.
/// - `hotswap_trusted_keys`: how many signing keys the host trusts.
/// - `hotswap_plugin_reloads_total{plugin,outcome}`: what the reloads through the
///   trigger did to each plugin (`loaded`, `unchanged`, `not_reloadable`, `removed`,
///   `rebound`, or `failure` when loading it failed the reload).
/// - `hotswap_calls_total{plugin,version,kind}`: calls each plugin version served,
///   `kind` `typed`, `async`, `by_name` or `live`; `hotswap_call_failures_total` and
///   `hotswap_call_panics_total{plugin,version}`: those that returned a `CallError`
///   (panics included), and the panics; `hotswap_call_duration_seconds{plugin,version}`:
///   histogram of the sampled synchronous calls (see
///   [`Builder::call_latency_sampling`](crate::Builder::call_latency_sampling)). Absent
///   with call metrics off.
pub fn render(trigger: &Trigger) -> String {
    let stats = trigger.stats();
    let manager = trigger.manager();
    let status = manager.status();
    let plugins = manager.plugins();
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "hotswap_reloads_total",
        "counter",
        "Reloads requested through the host's triggers, by trigger and outcome.",
    );
    for source in Source::ALL {
        for outcome in ReloadOutcome::ALL {
            let n = stats
                .counts
                .iter()
                .find(|(s, o, _)| *s == source && *o == outcome)
                .map_or(0, |(_, _, n)| *n);
            let _ = writeln!(
                out,
                "hotswap_reloads_total{{trigger=\"{}\",outcome=\"{}\"}} {n}",
                source.as_str(),
                outcome.as_str()
            );
        }
    }

    family(
        &mut out,
        "hotswap_reload_duration_seconds",
        "histogram",
        "Wall time of the reloads that ran (successful or failed), in seconds.",
    );
    for (bound, n) in DURATION_BUCKETS.iter().zip(&stats.duration_buckets) {
        let _ = writeln!(
            out,
            "hotswap_reload_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "hotswap_reload_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        stats.duration_count
    );
    let _ = writeln!(
        out,
        "hotswap_reload_duration_seconds_sum {}",
        stats.duration_sum_seconds
    );
    let _ = writeln!(
        out,
        "hotswap_reload_duration_seconds_count {}",
        stats.duration_count
    );

    if let Some(last) = &stats.last {
        family(
            &mut out,
            "hotswap_last_reload_timestamp_seconds",
            "gauge",
            "When the last reload that ran ended, in seconds since the Unix epoch.",
        );
        let _ = writeln!(
            out,
            "hotswap_last_reload_timestamp_seconds {}",
            last.unix_time
        );
        family(
            &mut out,
            "hotswap_last_reload_success",
            "gauge",
            "1 if the last reload that ran published a generation, 0 if it failed.",
        );
        let ok = u8::from(last.outcome == ReloadOutcome::Success);
        let _ = writeln!(out, "hotswap_last_reload_success {ok}");
    }

    family(
        &mut out,
        "hotswap_generation",
        "gauge",
        "Id of the generation serving calls (0 before the first load).",
    );
    let _ = writeln!(out, "hotswap_generation {}", status.generation);

    family(
        &mut out,
        "hotswap_generations_published_total",
        "counter",
        "Generations published since start, whatever triggered them.",
    );
    let _ = writeln!(
        out,
        "hotswap_generations_published_total {}",
        // Ids count publishes from 1: the id of the serving generation is their number.
        status.generation
    );

    family(
        &mut out,
        "hotswap_versions_in_memory",
        "gauge",
        "Plugin versions still in memory, by state.",
    );
    let (mut current, mut draining, mut stuck, mut closing, mut pinned) = (0u64, 0, 0, 0, 0);
    for v in &status.versions {
        match v.state {
            VersionState::Current => current += 1,
            VersionState::Draining { .. } => draining += 1,
            VersionState::Stuck { .. } => stuck += 1,
            VersionState::Closing { .. } => closing += 1,
            VersionState::Pinned { .. } => pinned += 1,
        }
    }
    for (state, n) in [
        ("current", current),
        ("draining", draining),
        ("stuck", stuck),
        ("closing", closing),
        ("pinned", pinned),
    ] {
        let _ = writeln!(out, "hotswap_versions_in_memory{{state=\"{state}\"}} {n}");
    }

    family(
        &mut out,
        "hotswap_hook_timeouts_total",
        "counter",
        "Lifecycle hooks that overran their deadline since start (each failed its reload).",
    );
    let _ = writeln!(out, "hotswap_hook_timeouts_total {}", status.hook_timeouts);

    family(
        &mut out,
        "hotswap_versions_unloaded_total",
        "counter",
        "Versions unloaded and verified unmapped since start.",
    );
    let _ = writeln!(out, "hotswap_versions_unloaded_total {}", status.unloaded);

    for (name, help, pick) in [
        (
            "hotswap_version_heap_bytes",
            "Usable bytes each version's code holds on the heap (allocated, not yet freed).",
            (|h: &crate::HeapStatus| h.bytes) as fn(&crate::HeapStatus) -> i64,
        ),
        (
            "hotswap_version_heap_blocks",
            "Heap blocks each version's code holds (allocated, not yet freed).",
            |h: &crate::HeapStatus| h.blocks,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for v in &status.versions {
            if let Some(h) = &v.heap {
                let _ = writeln!(
                    out,
                    "{name}{{plugin=\"{}\",version=\"{}\",id=\"{}\"}} {}",
                    escape(&v.plugin),
                    escape(&v.version),
                    v.id,
                    pick(h)
                );
            }
        }
    }
    family(
        &mut out,
        "hotswap_unloaded_heap_bytes_total",
        "counter",
        "Heap bytes unloaded versions left allocated when they unloaded (leaked; not reclaimed).",
    );
    let _ = writeln!(
        out,
        "hotswap_unloaded_heap_bytes_total {}",
        status.unloaded_heap.bytes
    );
    family(
        &mut out,
        "hotswap_unloaded_heap_blocks_total",
        "counter",
        "Heap blocks unloaded versions left allocated when they unloaded.",
    );
    let _ = writeln!(
        out,
        "hotswap_unloaded_heap_blocks_total {}",
        status.unloaded_heap.blocks
    );

    family(
        &mut out,
        "hotswap_plugin_info",
        "gauge",
        "The plugins of the current generation (always 1).",
    );
    for p in &plugins {
        let _ = writeln!(
            out,
            "hotswap_plugin_info{{plugin=\"{}\",version=\"{}\",build_id=\"{}\",reloadable=\"{}\"}} 1",
            escape(&p.name),
            escape(&p.version),
            escape(&p.build_id),
            p.reloadable
        );
    }

    family(
        &mut out,
        "hotswap_reclamation_info",
        "gauge",
        "How readers of the current generation are fenced (always 1).",
    );
    let _ = writeln!(
        out,
        "hotswap_reclamation_info{{mode=\"{}\"}} 1",
        escape(&status.reclamation)
    );

    family(
        &mut out,
        "hotswap_trust_info",
        "gauge",
        "Trust checks in force: plugin directory mode and whether signatures are required (always 1).",
    );
    let _ = writeln!(
        out,
        "hotswap_trust_info{{mode=\"{}\",signatures=\"{}\"}} 1",
        status.trust.mode,
        if status.trust.signatures_required {
            "required"
        } else {
            "not_required"
        }
    );
    family(
        &mut out,
        "hotswap_trusted_keys",
        "gauge",
        "Signing keys the host trusts.",
    );
    let _ = writeln!(
        out,
        "hotswap_trusted_keys {}",
        status.trust.trusted_keys.len()
    );

    family(
        &mut out,
        "hotswap_plugin_reloads_total",
        "counter",
        "What the reloads that ran did to each plugin, by outcome.",
    );
    for (plugin, outcome, n) in &stats.plugins {
        let _ = writeln!(
            out,
            "hotswap_plugin_reloads_total{{plugin=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape(plugin)
        );
    }

    calls(&mut out, &manager.call_metrics());
    out
}

/// The call metrics families, one series per plugin version (and kind).
fn calls(out: &mut String, metrics: &[CallMetrics]) {
    if metrics.is_empty() {
        return;
    }
    let labels = |m: &CallMetrics| {
        format!(
            "plugin=\"{}\",version=\"{}\"",
            escape(&m.plugin),
            escape(&m.version)
        )
    };
    family(
        out,
        "hotswap_calls_total",
        "counter",
        "Calls each plugin version served, by how they reached it.",
    );
    for m in metrics {
        let l = labels(m);
        for (kind, n) in [
            ("typed", m.typed_calls),
            ("async", m.async_calls),
            ("by_name", m.by_name_calls),
            ("live", m.live_calls),
        ] {
            let _ = writeln!(out, "hotswap_calls_total{{{l},kind=\"{kind}\"}} {n}");
        }
    }
    for (name, help, pick) in [
        (
            "hotswap_call_failures_total",
            "Calls that returned an error from the version (a panic, a failure), by version.",
            (|m: &CallMetrics| m.failures) as fn(&CallMetrics) -> u64,
        ),
        (
            "hotswap_call_panics_total",
            "Calls that panicked in the plugin (caught there), by version.",
            |m: &CallMetrics| m.panics,
        ),
    ] {
        family(out, name, "counter", help);
        for m in metrics {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(m), pick(m));
        }
    }
    family(
        out,
        "hotswap_call_duration_seconds",
        "histogram",
        "Wall time of sampled synchronous calls (one in the sampling rate per thread), by version.",
    );
    for m in metrics {
        let l = labels(m);
        for (bound, n) in &m.latency.buckets {
            let _ = writeln!(
                out,
                "hotswap_call_duration_seconds_bucket{{{l},le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "hotswap_call_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            m.latency.count
        );
        let _ = writeln!(
            out,
            "hotswap_call_duration_seconds_sum{{{l}}} {}",
            m.latency.sum_seconds
        );
        let _ = writeln!(
            out,
            "hotswap_call_duration_seconds_count{{{l}}} {}",
            m.latency.count
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
