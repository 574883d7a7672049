//! `hotswap reload`: asks a running host to reload its plugins through its admin endpoint
//! and prints the report; exits non-zero when the reload fails.

use crate::admin::{error_message, AdminArgs};
use clap::Args;
use hotswap_host::admin::client::{Client, ClientError, Response};
use serde_json::Value as Json;
use std::fmt::Write;

/// Arguments of `hotswap reload`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Which host to talk to (`--admin`, `--token`).
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Print the host's JSON answer instead of the summary
    #[arg(long)]
    pub json: bool,

    /// Reload data (JSON) passed to the plugins' on_load instead of the host's own
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: Option<Json>,
}

fn parse_json(s: &str) -> Result<Json, String> {
    serde_json::from_str(s).map_err(|e| format!("not valid JSON: {e}"))
}

/// Why `hotswap reload` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The endpoint could not be reached or answered garbage.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The arguments do not name an endpoint.
    #[error(transparent)]
    Args(#[from] crate::admin::AdminArgsError),
    /// The host answered with an error: the reload failed and the old plugins serve.
    #[error("reload failed (HTTP {status}): {message}")]
    Failed {
        /// HTTP status of the answer.
        status: u16,
        /// The host's explanation, with step and plugin when known.
        message: String,
        /// The host's answer as it came (JSON), for `--json`.
        body: String,
    },
}

/// Sends `POST /reload` (with `{"data": …}` when given) and returns the host's answer
/// when it is a success.
///
/// Fails when the host cannot be reached or the reload failed; the error carries the
/// host's message, step and plugin.
pub fn reload(client: &Client, data: Option<&Json>) -> Result<Response, ReloadError> {
    let body = data.map(|d| serde_json::json!({ "data": d }).to_string().into_bytes());
    answer(client.post("/reload", body.as_deref())?)
}

/// The answer to `POST /reload` or `POST /rollback`: the response when it is a success,
/// else the host's message, step and plugin as a [`ReloadError::Failed`].
pub fn answer(response: Response) -> Result<Response, ReloadError> {
    if response.is_success() {
        return Ok(response);
    }
    let mut message = error_message(&response);
    if let Ok(j) = response.json() {
        let field = |k: &str| j.get(k).and_then(Json::as_str).map(str::to_owned);
        if let Some(step) = field("step") {
            let _ = write!(message, "\n  step:    {step}");
        }
        if let Some(plugin) = field("plugin") {
            let version = field("version").unwrap_or_default();
            let _ = write!(message, "\n  plugin:  {plugin} {version}");
        }
        if let Some(file) = field("file") {
            let _ = write!(message, "\n  file:    {file}");
        }
        if response.status == 409 {
            message.push_str("\n  nothing changed; try again when the running reload finishes");
        } else {
            message.push_str("\n  the host keeps serving its current plugins");
        }
    }
    Err(ReloadError::Failed {
        status: response.status,
        message,
        body: response.text(),
    })
}

/// The report as `hotswap reload` prints it (the JSON of a `ReloadReport`).
pub fn format_report(report: &Json) -> String {
    let num = |v: &Json, k: &str| v.get(k).and_then(Json::as_u64).unwrap_or(0);
    let text = |v: &Json, k: &str| {
        v.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut out = format!(
        "reloaded: generation {} -> {} in {:.1} ms\n",
        num(report, "previous_generation"),
        num(report, "generation"),
        report.get("duration").and_then(Json::as_f64).unwrap_or(0.0)
    );
    let plugins = report
        .get("plugins")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if plugins.is_empty() {
        out.push_str("  (no plugins)\n");
    }
    for p in &plugins {
        let outcome = text(p, "outcome");
        let previous = match p.get("previous_build_id").and_then(Json::as_str) {
            Some(prev) if outcome == "loaded" => format!(" (was {prev})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<15} {} {}{previous}",
            text(p, "plugin"),
            outcome.replace('_', " "),
            text(p, "version"),
            text(p, "build_id"),
        );
    }
    out
}

/// Runs `hotswap reload`; returns the exit status.
pub fn run(args: ReloadArgs) -> i32 {
    let client = match args.admin.client() {
        Ok(c) => c,
        Err(e) => return crate::report(&e),
    };
    print_outcome(reload(&client, args.data.as_ref()), args.json)
}

/// Prints a reload's (or rollback's) outcome as `hotswap reload` does; returns the exit
/// status.
pub fn print_outcome(result: Result<Response, ReloadError>, json: bool) -> i32 {
    match result {
        Ok(response) if json => {
            print!("{}", response.text());
            0
        }
        Ok(response) => match response.json() {
            Ok(report) => {
                print!("{}", format_report(&report));
                0
            }
            Err(_) => {
                println!("{}", response.text().trim());
                0
            }
        },
        Err(e) => {
            // With --json, machines also get the host's JSON error on stdout.
            if let (true, ReloadError::Failed { body, .. }) = (json, &e) {
                print!("{body}");
            }
            crate::report(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_readable() {
        let report = serde_json::json!({
            "generation": 2, "previous_generation": 1, "duration": 3.25,
            "plugins": [
                {"plugin": "world", "outcome": "loaded", "version": "0.1.0",
                 "build_id": "b2", "previous_build_id": "b1", "load_time": 1.0},
                {"plugin": "other", "outcome": "not_reloadable", "version": "1.0.0",
                 "build_id": "x", "previous_build_id": "x", "load_time": 0.0}
            ]
        });
        let text = format_report(&report);
        assert!(
            text.starts_with("reloaded: generation 1 -> 2 in 3.2 ms\n"),
            "{text}"
        );
        assert!(text.contains("world"));
        assert!(text.contains("b2 (was b1)"));
        assert!(text.contains("not reloadable"));
    }
}
