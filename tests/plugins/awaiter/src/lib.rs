//! Async functions for `tests/async_fn.rs` and the benchmark: each future awaits only
//! what the host provides (`sleep`, `spawn_async`, the DataBag), never a runtime of
//! its own.

use hotswap_plugin_api::{export_plugin, retired, sleep, spawn_async, vault, Plugin, Value};
use probe_api::{Answer, Job};
use std::time::Duration;

const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

#[derive(Default)]
struct Awaiter;

impl Plugin for Awaiter {
    fn on_load(
        &mut self,
        _data: &Value,
        _imports: &hotswap_plugin_api::Imports,
    ) -> hotswap_plugin_api::Result<()> {
        if cfg!(feature = "ticker-then-fail") {
            spawn_async("ticker", async {
                while !retired() {
                    sleep(Duration::from_millis(1)).await;
                }
            })?;
        }
        Ok(())
    }

    fn on_init(&mut self, _vault: &hotswap_plugin_api::Vault) -> hotswap_plugin_api::Result<()> {
        if cfg!(feature = "ticker-then-fail") {
            return Err(hotswap_plugin_api::Error::msg(
                "awaiter fails on_init on purpose",
            ));
        }
        Ok(())
    }
}

/// Waits, on the host's timer, until the DataBag holds `true` under `key` (the test's
/// condition; the sleep only spaces the checks).
async fn wait_for_gate(key: &str) {
    if key.is_empty() {
        return;
    }
    loop {
        let open = vault().ok().and_then(|v| v.get(key)) == Some(Value::Bool(true));
        if open {
            return;
        }
        sleep(Duration::from_millis(1)).await;
    }
}

impl Awaiter {
    /// Answers a job once its gate is open.
    async fn handle(&self, job: Job) -> Answer {
        wait_for_gate(job.gate.as_str()).await;
        Answer {
            id: job.id,
            version: VERSION,
            text: format!("v{VERSION}:{}", job.text).into(),
        }
    }

    /// Completes at once (the benchmark's async row).
    async fn ready(&self, x: u64) -> u64 {
        x + 1
    }

    /// Panics in a poll after the first one returned pending, when `x > 0`.
    async fn explode(&self, x: u64) -> u64 {
        sleep(Duration::from_millis(1)).await;
        if x > 0 {
            panic!("exploded after a sleep: {x}");
        }
        x
    }

    /// Starts a background future that, once the job's gate is open, writes `true`
    /// under the job's text; returns the job's id at once.
    async fn background(&self, job: Job) -> Result<u64, String> {
        let id = job.id;
        spawn_async("gated", async move {
            wait_for_gate(job.gate.as_str()).await;
            if let Ok(v) = vault() {
                let _ = v.set(job.text.as_str(), true);
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Starts a background ticker that runs until this version is retired (the README's
    /// pattern: `on_free` runs only after it ended), then writes `true` under
    /// `ticker.<n>.ended`. Returns 1 when the version was not retired yet, 0 if it
    /// was, 2 when the ticker could not start.
    fn ticker(&self, n: u64) -> u64 {
        let started = spawn_async("ticker", async move {
            while !retired() {
                sleep(Duration::from_millis(1)).await;
            }
            if let Ok(v) = vault() {
                let _ = v.set(&format!("ticker.{n}.ended"), true);
            }
        });
        match started {
            Ok(()) => u64::from(!retired()),
            Err(_) => 2,
        }
    }

    /// Registers a SIGUSR1 handler with signal-hook's safe API (what a plugin wanting to
    /// "reload its config on SIGUSR1" writes): 1 if it was installed, 0 if refused. An
    /// installed handler is process-wide and would outlive this library.
    fn signal_handler(&self, (): ()) -> u64 {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        match signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag) {
            Ok(_) => 1,
            Err(_) => 0,
        }
    }

    /// Sets `HOTSWAP_ENV_<i>` to `v<i>` for every `i < n` with this plugin's own std
    /// (`std::env::set_var`, safe in edition 2021), removes the odd ones again, then
    /// reads them all back with its own `std::env::var`, and the host's
    /// `HOTSWAP_ENV_FROM_HOST` too (`tests/env.rs`). Returns how many of those `n + 1`
    /// reads were right.
    fn set_env(&self, n: u64) -> u64 {
        let name = |i: u64| format!("HOTSWAP_ENV_{i}");
        for i in 0..n {
            std::env::set_var(name(i), format!("v{i}"));
        }
        for i in (1..n).step_by(2) {
            std::env::remove_var(name(i));
        }
        let right = (0..n)
            .filter(|&i| std::env::var(name(i)).ok() == (i % 2 == 0).then(|| format!("v{i}")))
            .count() as u64;
        right + u64::from(std::env::var("HOTSWAP_ENV_FROM_HOST").as_deref() == Ok("host"))
    }

    /// A typed (not async) function, for the mismatch test.
    fn plain(&self, x: u64) -> u64 {
        x
    }
}

export_plugin!(Awaiter, typed {
    plain: fn(u64) -> u64,
    ticker: fn(u64) -> u64,
    set_env: fn(u64) -> u64,
    signal_handler: fn(()) -> u64,
}, async {
    handle: fn(Job) -> Answer,
    ready: fn(u64) -> u64,
    explode: fn(u64) -> u64,
    background: fn(Job) -> Result<u64, String>,
});

/// The benchmark's `raw-async` baseline: the same work as `ready` (x + 1, ready at the
/// first poll) as an async-ffi future from a plain `extern "C"` function, which the
/// benchmark finds with `dlsym` in a copy of the library it never unloads. Plugin
/// authors never write these.
#[no_mangle]
pub extern "C" fn awaiter_raw_ready(x: u64) -> async_ffi::FfiFuture<u64> {
    async_ffi::FfiFuture::new(async move { x + 1 })
}
