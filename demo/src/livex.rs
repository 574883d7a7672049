//! The livex and extension demos.
//!
//! livex: a host with a delayed job queue. The `jobs` plugin schedules mail jobs through
//! the host's Extension; each job carries its data as live data (type `Live_Mail`) in
//! host memory. The plugin is swapped for v2 before the jobs fire: they run v2's code,
//! with v1's data intact.
//!
//! extension: the host makes a fresh Extension for every generation; every plugin,
//! carried over or new, sees the new one.

use crate::{hotswap_build, repo};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RStr, RString};
use hotswap_host::{LiveData, PluginManager, Value};
use livex_api::{HostExt, HostExtObj};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A job waiting in the host: when, which live function, and its live data.
type Queue = Arc<Mutex<Vec<(Instant, String, LiveData)>>>;

struct Ext {
    tag: u64,
    queue: Queue,
}

impl HostExt for Ext {
    fn generation_tag(&self) -> u64 {
        self.tag
    }
    fn schedule(&self, delay_ms: u64, func: RStr<'_>, payload: RStr<'_>) {
        // `<type>:<hex bytes>`, as the plugin encodes it.
        let Some((ty, hex)) = payload.as_str().split_once(':') else {
            return;
        };
        let bytes = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        let data = LiveData {
            type_name: ty.to_owned(),
            bytes,
        };
        let due = Instant::now() + Duration::from_millis(delay_ms);
        if let Ok(mut q) = self.queue.lock() {
            q.push((due, func.to_string(), data));
        }
    }
    fn greet(&self, who: RStr<'_>) -> RString {
        format!("hello {who} from the host's extension #{}", self.tag).into()
    }
}

fn setup(name: &str) -> Result<(std::path::PathBuf, PluginManager, Queue), String> {
    let work = repo().join("target/hotswap-demo").join(name);
    let plugins = work.join("plugins");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    hotswap_build(&repo().join("demo/livex/jobs"), &plugins, &[])?;
    let queue = Queue::default();
    let made = Arc::new(AtomicU64::new(0));
    let q = queue.clone();
    let manager = PluginManager::builder(&plugins)
        .extension_newer(move || {
            let tag = made.fetch_add(1, Ordering::SeqCst) + 1;
            println!("  (host) extension_newer: extension #{tag} for the new generation");
            HostExtObj::from_value(
                Ext {
                    tag,
                    queue: q.clone(),
                },
                TD_Opaque,
            )
        })
        .build()
        .map_err(|e| e.to_string())?;
    manager
        .load_plugins(&Value::Null)
        .map_err(|e| e.to_string())?;
    Ok((plugins, manager, queue))
}

/// Builds jobs v2 into `plugins` and reloads, printing the report.
fn swap_in_v2(plugins: &std::path::Path, manager: &PluginManager) -> Result<(), String> {
    hotswap_build(
        &repo().join("demo/livex/jobs"),
        plugins,
        &["--features", "v2"],
    )?;
    let report = manager.reload(&Value::Null).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

pub(crate) fn livex() -> Result<(), String> {
    println!("== 1. build jobs v1, start a host with a delayed job queue");
    let (plugins, manager, queue) = setup("livex")?;
    println!("== 2. v1 schedules three mail jobs (fire in 0.5 s, 1 s, 1.5 s)");
    for (i, who) in ["ann", "bo", "cy"].iter().enumerate() {
        let args = [
            Value::from(format!("{who}@example.org")),
            Value::from(format!("hello {who}, scheduled by v1")),
            Value::from(500 * (i as i64 + 1)),
        ];
        manager
            .invoke_func("jobs", "schedule_mail", &args)
            .map_err(|e| e.to_string())?;
    }
    println!("== 3. swap in jobs v2 before they fire");
    swap_in_v2(&plugins, &manager)?;
    println!("== 4. the host's queue fires the jobs by live-function name");
    let mut fired = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fired < 3 && Instant::now() < deadline {
        let due: Vec<_> = {
            let mut q = queue.lock().map_err(|e| e.to_string())?;
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = q.drain(..).partition(|(t, _, _)| *t <= now);
            *q = later;
            due
        };
        for (_, func, data) in due {
            let out = manager
                .call_live(&func, &[data.to_value()])
                .map_err(|e| e.to_string())?;
            println!("  job fired: {out}");
            fired += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if fired != 3 {
        return Err(format!("only {fired} of 3 jobs fired"));
    }
    println!("\nall jobs were scheduled by v1 and ran on v2's code with their data intact");
    Ok(())
}

pub(crate) fn extension() -> Result<(), String> {
    println!("== 1. build jobs v1 and start a host with extension_newer");
    let (plugins, manager, _) = setup("extension")?;
    let greet = |m: &PluginManager| {
        m.invoke_func("jobs", "ext_greet", &[Value::from("world")])
            .map_err(|e| e.to_string())
    };
    println!("jobs.ext_greet() -> {}", greet(&manager)?);
    println!("== 2. reload with nothing changed: a new generation gets a new extension");
    let report = manager.reload(&Value::Null).map_err(|e| e.to_string())?;
    print!("{report}");
    println!(
        "jobs.ext_greet() -> {}   (carried-over plugin, new extension)",
        greet(&manager)?
    );
    println!("== 3. swap in v2");
    swap_in_v2(&plugins, &manager)?;
    println!("jobs.ext_greet() -> {}", greet(&manager)?);
    Ok(())
}
