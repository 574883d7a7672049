//! What each admin route answers. Only the public manager API and the [`Trigger`] are
//! used: nothing here touches the call path.

use super::http::{Request, Response, TEXT};
use crate::error::Error;
use crate::manager::PluginInfo;
use crate::scan::BuildInfo;
use crate::status::Status;
use crate::trigger::{LastReload, Source, Trigger};
use hotswap_plugin_api::Value;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The body of `GET /status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBody {
    /// The host's process id.
    pid: u32,
    /// The directory the next reload reads.
    dir: PathBuf,
    /// Generation, versions in memory (current, draining, pinned), reclamation mode.
    #[serde(flatten)]
    status: Status,
    /// The plugins of the current generation, dependencies first.
    plugins: Vec<PluginInfo>,
    /// The last reload that went through the host's triggers.
    last_reload: Option<LastReload>,
    /// Every build kept in the plugin directory (what `POST /rollback` can go back to);
    /// empty when the directory cannot be read.
    builds: Vec<BuildInfo>,
}

/// The JSON body of `POST /rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The plugin to roll back.
    plugin: String,
    /// The build to go to; the one before the running one if absent.
    build_id: Option<String>,
}

/// The optional JSON body of `POST /reload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    /// Reload data passed to `on_load` instead of the host's own.
    data: Option<Value>,
}

/// The error body of a failed `POST /reload`.
#[derive(Debug, Serialize)]
struct ReloadError {
    error: String,
    kind: &'static str,
    step: Option<String>,
    plugin: Option<String>,
    version: Option<String>,
    file: Option<PathBuf>,
}

/// Answers `request`.
pub(crate) fn handle(trigger: &Trigger, request: &Request) -> Response {
    let head = request.method == "HEAD";
    let get = request.method == "GET" || head;
    let mut response = match request.path.as_str() {
        "/reload" if request.method == "POST" => reload(trigger, request),
        "/reload" => not_allowed("POST"),
        "/rollback" if request.method == "POST" => rollback(trigger, request),
        "/rollback" => not_allowed("POST"),
        "/status" if get => status(trigger),
        "/metrics" if get => Response::bytes(
            200,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(trigger).into_bytes(),
        ),
        "/healthz" if get => Response::bytes(200, TEXT, b"ok\n".to_vec()),
        "/status" | "/metrics" | "/healthz" => not_allowed("GET, HEAD"),
        _ => Response::error(
            404,
            "no such route; try POST /reload, POST /rollback, GET /status, GET /metrics, GET /healthz",
        ),
    };
    response.head_only = head;
    response
}

fn not_allowed(allow: &'static str) -> Response {
    Response::error(405, &format!("method not allowed; use {allow}")).with_header("Allow", allow)
}

fn status(trigger: &Trigger) -> Response {
    let manager = trigger.manager();
    let body = StatusBody {
        pid: std::process::id(),
        dir: manager.dir(),
        status: manager.status(),
        plugins: manager.plugins(),
        last_reload: trigger.stats().last,
        builds: manager.builds().unwrap_or_default(),
    };
    Response::json(200, &body)
}

fn reload(trigger: &Trigger, request: &Request) -> Response {
    let data = if request.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        if let Some(ct) = request.header("content-type") {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Response::error(415, "the reload body must be application/json");
            }
        }
        match serde_json::from_slice::<ReloadBody>(&request.body) {
            Ok(body) => body.data,
            Err(e) => {
                return Response::error(
                    400,
                    &format!("the reload body must be {{\"data\": <json>}}: {e}"),
                )
            }
        }
    };
    let result = match &data {
        Some(data) => trigger.reload_with(Source::Admin, data),
        None => trigger.reload(Source::Admin),
    };
    match result {
        Ok(report) => Response::json(200, &report),
        Err(e) => reload_error(&e),
    }
}

fn rollback(trigger: &Trigger, request: &Request) -> Response {
    if let Some(ct) = request.header("content-type") {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Response::error(415, "the rollback body must be application/json");
        }
    }
    let body: RollbackBody = match serde_json::from_slice(&request.body) {
        Ok(b) => b,
        Err(e) => {
            return Response::error(
                400,
                &format!("the rollback body must be {{\"plugin\": <name>, \"build_id\": <optional id>}}: {e}"),
            )
        }
    };
    match trigger.rollback(Source::Admin, &body.plugin, body.build_id.as_deref()) {
        Ok(report) => Response::json(200, &report),
        Err(e) => reload_error(&e),
    }
}

fn reload_error(e: &Error) -> Response {
    let (status, kind) = match e {
        Error::ReloadInProgress => (409, "reload_in_progress"),
        Error::NotLoaded => (409, "not_loaded"),
        Error::AlreadyLoaded => (409, "already_loaded"),
        Error::Unsupported(_) => (501, "unsupported"),
        Error::Rollback { .. } => (404, "no_such_build"),
        Error::Dir { .. } => (500, "plugin_dir"),
        Error::TooManyUnloading { .. } => (503, "too_many_unloading"),
        _ if e.as_load().is_some() => (500, "load"),
        _ => (500, "reload_failed"),
    };
    let load = e.as_load();
    let body = ReloadError {
        error: e.to_string(),
        kind,
        step: load.map(|l| l.step.to_string()),
        plugin: load.and_then(|l| l.plugin.clone()),
        version: load.and_then(|l| l.version.clone()),
        file: load.and_then(|l| l.file.clone()),
    };
    Response::json(status, &body)
}
