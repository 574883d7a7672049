//! The HTTP demo's request handlers: async functions the host's axum routes await
//! (`hotswap-http-demo`, `demo/http/main.rs`), with the typed request and response of
//! `http-api`. One source, two versions: the `v2` feature changes the greeting.
//!
//! `/sleep/<ms>` awaits the host's timer (`hotswap_plugin_api::sleep`): no thread is
//! held while it waits, and the plugin's own tokio (which has no reactor) is not used.

use hotswap_plugin_api::{export_plugin, sleep, Plugin};
use http_api::{Request, Response};
use std::time::Duration;

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The longest `/sleep/<ms>` honours.
const MAX_SLEEP_MS: u64 = 10_000;

#[derive(Default)]
struct Handlers;

impl Plugin for Handlers {}

impl Handlers {
    /// `GET /`.
    async fn index(&self, _req: Request) -> Response {
        Response::text(200, format!("hello from handlers {VERSION}\n"))
    }

    /// `GET /version`.
    async fn version(&self, _req: Request) -> Response {
        Response::text(200, format!("{VERSION}\n"))
    }

    /// `POST /echo`, `PUT /echo`: the body back.
    async fn echo(&self, req: Request) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; charset=utf-8".into(),
            body: req.body,
        }
    }

    /// `GET /sleep/<ms>`: answers after `ms` milliseconds (at most [`MAX_SLEEP_MS`]).
    async fn sleep(&self, ms: u64) -> Response {
        let ms = ms.min(MAX_SLEEP_MS);
        sleep(Duration::from_millis(ms)).await;
        Response::text(200, format!("slept {ms} ms in handlers {VERSION}\n"))
    }

    /// Every other request.
    async fn not_found(&self, req: Request) -> Response {
        Response::text(404, format!("no route for {} {}\n", req.method, req.path))
    }
}

export_plugin!(Handlers, async {
    index: fn(Request) -> Response,
    version: fn(Request) -> Response,
    echo: fn(Request) -> Response,
    sleep: fn(u64) -> Response,
    not_found: fn(Request) -> Response,
});
