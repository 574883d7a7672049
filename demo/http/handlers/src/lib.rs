//! The HTTP demo's request handlers. The host (`hotswap-http-demo`) parses HTTP and calls
//! `handle(method, path, body)`; the answer is a map `{status, content_type, body}`. One
//! source, two versions: the `v2` feature changes the greeting.

use hotswap_plugin_api::{export_plugin, Error, Plugin, Result, Value};
use std::time::Duration;

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The longest `/sleep/<ms>` honours, so a request cannot hold a worker forever.
const MAX_SLEEP_MS: u64 = 10_000;

#[derive(Default)]
struct Handlers;

fn answer(status: i64, body: impl Into<String>) -> Value {
    Value::map([
        ("status", Value::from(status)),
        ("content_type", Value::from("text/plain; charset=utf-8")),
        ("body", Value::from(body.into())),
    ])
}

fn handle(method: &str, target: &str, body: &[u8]) -> Value {
    let path = target.split(['?', '#']).next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/") => answer(200, format!("hello from handlers {VERSION}\n")),
        ("GET" | "HEAD", "/version") => answer(200, format!("{VERSION}\n")),
        ("POST" | "PUT", "/echo") => answer(200, String::from_utf8_lossy(body).into_owned()),
        ("GET", p) if p.starts_with("/sleep/") => match p["/sleep/".len()..].parse::<u64>() {
            Ok(ms) => {
                let ms = ms.min(MAX_SLEEP_MS);
                std::thread::sleep(Duration::from_millis(ms));
                answer(200, format!("slept {ms} ms in handlers {VERSION}\n"))
            }
            Err(_) => answer(400, "usage: /sleep/<milliseconds>\n"),
        },
        _ => answer(404, format!("no route for {method} {path}\n")),
    }
}

impl Plugin for Handlers {
    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "handle" => {
                let method = args.first().and_then(Value::as_str).unwrap_or("GET");
                let target = args.get(1).and_then(Value::as_str).unwrap_or("/");
                let body = match args.get(2) {
                    Some(Value::Bytes(b)) => b.as_slice(),
                    _ => &[],
                };
                Ok(handle(method, target, body))
            }
            "version" => Ok(Value::from(VERSION)),
            _ => Err(Error::unknown_function(name)),
        }
    }
}

export_plugin!(Handlers);
