//! The demo's axum routes: each awaits one async function of the `handlers` plugin
//! with the typed request and response of `http-api`, and stamps every answer with
//! `X-Pid` (this process) and, for plugin answers, `X-Generation`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use hotswap_host::{AsyncFunc, CallError, PluginManager};
use http_api::{Request, Response};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Handles on the plugin's async functions, made once; they follow every reload.
pub struct Handlers {
    index: AsyncFunc<Request, Response>,
    version: AsyncFunc<Request, Response>,
    echo: AsyncFunc<Request, Response>,
    sleep: AsyncFunc<u64, Response>,
    not_found: AsyncFunc<Request, Response>,
}

impl Handlers {
    /// Resolves every handle on the `handlers` plugin; fails (naming the function and
    /// what differs) when the loaded plugin lacks one or has another signature.
    pub fn new(m: &PluginManager) -> Result<Handlers, CallError> {
        Ok(Handlers {
            index: m.async_func("handlers", "index")?,
            version: m.async_func("handlers", "version")?,
            echo: m.async_func("handlers", "echo")?,
            sleep: m.async_func("handlers", "sleep")?,
            not_found: m.async_func("handlers", "not_found")?,
        })
    }
}

/// What every route sees.
pub struct App {
    pub manager: Arc<PluginManager>,
    pub handlers: Handlers,
    /// Set by the stop signal: answers then carry `Connection: close`.
    pub draining: AtomicBool,
    pub served: AtomicU64,
    pub pid: HeaderValue,
}

type Shared = State<Arc<App>>;

/// The service: routes, the fallback, and the stamp on every answer.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/version", get(version))
        .route("/echo", post(echo).put(echo))
        .route("/sleep/{ms}", get(sleep))
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            app.clone(),
            stamp,
        ))
        .with_state(app)
}

fn request(method: &Method, uri: &Uri, body: &[u8]) -> Request {
    Request {
        method: method.as_str().into(),
        path: uri.path().into(),
        query: uri.query().unwrap_or("").into(),
        body: body.to_vec().into(),
    }
}

/// Awaits one plugin call and turns its answer into HTTP.
async fn answer<A>(app: &App, f: &AsyncFunc<A, Response>, arg: A) -> HttpResponse
where
    A: hotswap_host::HostCopy + abi_stable::StableAbi + Send + 'static,
{
    let generation = app.manager.generation_id();
    let mut reply = match f.call(arg).await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = HeaderValue::from_str(r.content_type.as_str())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                status,
                [(header::CONTENT_TYPE, content_type)],
                r.body.into_vec(),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("plugin call failed: {e}\n"),
        )
            .into_response(),
    };
    reply
        .headers_mut()
        .insert("x-generation", HeaderValue::from(generation));
    reply
}

async fn index(State(app): Shared, method: Method, uri: Uri) -> HttpResponse {
    answer(&app, &app.handlers.index, request(&method, &uri, &[])).await
}

async fn version(State(app): Shared, method: Method, uri: Uri) -> HttpResponse {
    answer(&app, &app.handlers.version, request(&method, &uri, &[])).await
}

async fn echo(State(app): Shared, method: Method, uri: Uri, body: Bytes) -> HttpResponse {
    answer(&app, &app.handlers.echo, request(&method, &uri, &body)).await
}

async fn sleep(State(app): Shared, Path(ms): Path<String>) -> HttpResponse {
    match ms.parse::<u64>() {
        Ok(ms) => answer(&app, &app.handlers.sleep, ms).await,
        Err(_) => (StatusCode::BAD_REQUEST, "usage: /sleep/<milliseconds>\n").into_response(),
    }
}

async fn not_found(State(app): Shared, method: Method, uri: Uri) -> HttpResponse {
    answer(&app, &app.handlers.not_found, request(&method, &uri, &[])).await
}

/// `X-Pid` on every answer; `Connection: close` once draining, so keep-alive clients
/// move to the process that replaces this one.
async fn stamp(State(app): Shared, mut reply: HttpResponse) -> HttpResponse {
    app.served.fetch_add(1, Ordering::Relaxed);
    let headers = reply.headers_mut();
    headers.insert("x-pid", app.pid.clone());
    if app.draining.load(Ordering::SeqCst) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    reply
}
