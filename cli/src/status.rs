//! `hotswap status`: shows a running host's generation, plugins and every version still
//! in memory (current, draining, stuck, closing, pinned), as a table or as JSON.

use crate::admin::{error_message, AdminArgs};
use clap::Args;
use hotswap_host::admin::client::ClientError;
use serde_json::Value as Json;
use std::fmt::Write;

/// Arguments of `hotswap status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which host to talk to (`--admin`, `--token`).
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Print the host's JSON answer (for machines)
    #[arg(long)]
    pub json: bool,
}

/// Why `hotswap status` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The endpoint could not be reached or answered garbage.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The arguments do not name an endpoint.
    #[error(transparent)]
    Args(#[from] crate::admin::AdminArgsError),
    /// The host answered with an error status.
    #[error("the host answered HTTP {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The host's explanation.
        message: String,
    },
    /// The answer is not the JSON status document.
    #[error("the host's status is not valid JSON")]
    NotJson(#[source] serde_json::Error),
}

/// Runs `hotswap status`; returns the exit status.
pub fn run(args: StatusArgs) -> i32 {
    match fetch(&args) {
        Ok((raw, _)) if args.json => {
            print!("{raw}");
            0
        }
        Ok((_, json)) => {
            print!("{}", format_status(&json));
            0
        }
        Err(e) => crate::report(&e),
    }
}

fn fetch(args: &StatusArgs) -> Result<(String, Json), StatusError> {
    let response = args.admin.client()?.get("/status")?;
    if !response.is_success() {
        return Err(StatusError::Refused {
            status: response.status,
            message: error_message(&response),
        });
    }
    let json = response.json().map_err(StatusError::NotJson)?;
    Ok((response.text(), json))
}

fn text(v: &Json, k: &str) -> String {
    match v.get(k) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The status document of `GET /status` as a readable report with two tables.
pub fn format_status(s: &Json) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "host pid {} · plugin dir {}",
        text(s, "pid"),
        text(s, "dir")
    );
    let _ = writeln!(
        out,
        "generation {} · {} reload(s) published · {} version(s) unloaded · reclamation: {}",
        text(s, "generation"),
        text(s, "reloads"),
        text(s, "unloaded"),
        text(s, "reclamation")
    );
    if let Some(trust) = s.get("trust").filter(|t| !t.is_null()) {
        let keys: Vec<String> = trust
            .get("trusted_keys")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        let signatures = if keys.is_empty() {
            "signatures not required".to_owned()
        } else {
            format!("signatures required (keys {})", keys.join(", "))
        };
        let _ = writeln!(
            out,
            "trust: {} plugin directory · {signatures}",
            text(trust, "mode")
        );
    }
    if let Some(last) = s.get("last_reload").filter(|l| !l.is_null()) {
        let _ = write!(
            out,
            "last reload: {} via {}",
            text(last, "outcome"),
            text(last, "source")
        );
        if let Some(t) = last.get("unix_time").and_then(Json::as_f64) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(t, |d| d.as_secs_f64());
            let _ = write!(out, ", {} ago", ago(now - t));
        }
        let error = text(last, "error");
        if !error.is_empty() {
            let _ = write!(out, ": {error}");
        }
        out.push('\n');
    }

    out.push('\n');
    let plugins = s.get("plugins").and_then(Json::as_array);
    let rows: Vec<Vec<String>> = plugins
        .into_iter()
        .flatten()
        .map(|p| {
            let reloadable = match p.get("reloadable").and_then(Json::as_bool) {
                Some(false) => "no",
                _ => "yes",
            };
            vec![
                text(p, "name"),
                text(p, "version"),
                text(p, "build_id"),
                reloadable.to_owned(),
                text(p, "id"),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no plugins loaded\n");
    } else {
        table(
            &mut out,
            &["PLUGIN", "VERSION", "BUILD", "RELOADABLE", "ID"],
            &rows,
        );
    }

    out.push('\n');
    let versions = s.get("versions").and_then(Json::as_array);
    let rows: Vec<Vec<String>> = versions
        .into_iter()
        .flatten()
        .map(|v| {
            let state = text(v, "state");
            let state = match state.as_str() {
                "draining" => format!("draining ({} task(s))", text(v, "tasks")),
                "pinned" => format!("pinned: {}", text(v, "reason")),
                "stuck" => format!(
                    "stuck in {} since {} ms",
                    text(v, "step"),
                    text(v, "since_ms")
                ),
                "closing" => format!(
                    "closing: {} thread(s) hold its thread-locals, {} thread(s) it started run",
                    text(v, "thread_locals"),
                    text(v, "threads")
                ),
                _ => state,
            };
            vec![
                text(v, "id"),
                text(v, "plugin"),
                text(v, "version"),
                text(v, "build_id"),
                state,
            ]
        })
        .collect();
    let _ = writeln!(out, "versions in memory: {}", rows.len());
    if !rows.is_empty() {
        table(
            &mut out,
            &["ID", "PLUGIN", "VERSION", "BUILD", "STATE"],
            &rows,
        );
    }

    // What `hotswap rollback` can go back to.
    let builds = s.get("builds").and_then(Json::as_array);
    let rows: Vec<Vec<String>> = builds
        .into_iter()
        .flatten()
        .map(|b| {
            let flag = |k: &str| b.get(k).and_then(Json::as_bool).unwrap_or(false);
            let mark = match (flag("running"), flag("pinned")) {
                (true, true) => "running (rolled back)",
                (true, false) => "running",
                (false, true) => "rolled back to",
                (false, false) => "",
            };
            vec![
                text(b, "plugin"),
                text(b, "version"),
                text(b, "build_id"),
                text(b, "build_time"),
                mark.to_owned(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "builds in the plugin directory (hotswap rollback PLUGIN [--to BUILD]):"
        );
        table(
            &mut out,
            &["PLUGIN", "VERSION", "BUILD", "BUILT", ""],
            &rows,
        );
    }
    out
}

fn ago(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_as_tables() {
        let s = serde_json::json!({
            "pid": 42, "dir": "/srv/plugins", "generation": 3, "reloads": 2,
            "unloaded": 1, "reclamation": "membarrier",
            "trust": {"mode": "strict", "signatures_required": true, "trusted_keys": ["ABCD"]},
            "plugins": [{"name": "world", "version": "0.1.0", "build_id": "b3",
                          "reloadable": true, "id": 7}],
            "versions": [
                {"id": 7, "plugin": "world", "version": "0.1.0", "build_id": "b3", "state": "current"},
                {"id": 5, "plugin": "world", "version": "0.1.0", "build_id": "b1", "state": "pinned",
                 "reason": "thread-local destructor"}
            ],
            "last_reload": {"source": "signal", "outcome": "success", "error": null, "unix_time": 0.0}
        });
        let text = format_status(&s);
        assert!(text.contains("generation 3"), "{text}");
        assert!(text.contains("last reload: success via signal"), "{text}");
        assert!(
            text.contains("trust: strict plugin directory · signatures required (keys ABCD)"),
            "{text}"
        );
        assert!(
            text.contains("PLUGIN  VERSION  BUILD  RELOADABLE  ID\n"),
            "{text}"
        );
        assert!(
            text.contains("world   0.1.0    b3     yes         7\n"),
            "{text}"
        );
        assert!(text.contains("versions in memory: 2"), "{text}");
        assert!(text.contains("pinned: thread-local destructor"), "{text}");
    }
}
