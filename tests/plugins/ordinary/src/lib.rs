//! Test plugin for the ordinary-crates unload suite (`tests/ordinary.rs`): code that
//! every real plugin has, which leaves per-thread state behind on the host threads that
//! call it. Cargo features choose what `call` does besides answering (one behaviour per
//! feature, see Cargo.toml); `v2` changes the answer, so two builds differ.
//!
//! `call(x)` answers `x * 10 + 1` (v1) or `x * 10 + 2` (v2).

use hotswap_plugin_api::{export_plugin, Imports, Plugin, Result, Value};

// Named only by the features that print or log it.
#[allow(dead_code)]
const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };
/// Bytes the `leak` feature leaks per version.
#[cfg(feature = "leak")]
const LEAK: usize = 100_000;
const VERSION_NUMBER: u64 = if cfg!(feature = "v2") { 2 } else { 1 };

#[derive(Default)]
struct Ordinary {
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Runtime>,
    #[cfg(feature = "raw-thread")]
    sender: std::sync::Mutex<Option<std::sync::mpsc::Sender<u64>>>,
}

impl Ordinary {
    fn call(&self, x: u64) -> u64 {
        #[cfg(feature = "tls")]
        std::hint::black_box(tls::touch(x));
        #[cfg(feature = "rand")]
        std::hint::black_box(rand::Rng::random::<u64>(&mut rand::rng()));
        #[cfg(feature = "println")]
        println!("ordinary {VERSION} call {x}");
        #[cfg(feature = "current")]
        {
            let me = std::thread::current();
            std::hint::black_box((me.name().map(str::len), me.id()));
            std::thread::park_timeout(std::time::Duration::ZERO);
        }
        #[cfg(feature = "tokio")]
        if let Some(rt) = &self.runtime {
            let y = rt.block_on(async move { tokio::spawn(async move { x }).await });
            assert_eq!(y.expect("the trivial task ran"), x);
        }
        #[cfg(feature = "lazy")]
        lazy::check(x);
        #[cfg(feature = "timer-waker")]
        timer_waker::wait();
        #[cfg(feature = "rand08")]
        std::hint::black_box(rand08::Rng::gen::<u64>(&mut rand08::thread_rng()));
        #[cfg(feature = "fork")]
        if x % 32 == 0 {
            fork::run_true();
        }
        x * 10 + VERSION_NUMBER
    }
}

impl Plugin for Ordinary {
    fn on_load(&mut self, _data: &Value, _imports: &Imports) -> Result<()> {
        #[cfg(feature = "backtrace")]
        std::hint::black_box(std::backtrace::Backtrace::force_capture().to_string());
        #[cfg(feature = "leak")]
        std::hint::black_box(Box::leak(vec![7u8; LEAK].into_boxed_slice()));
        #[cfg(feature = "tokio")]
        {
            self.runtime = Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(format!("plug-{VERSION}-tokio"))
                    .enable_time()
                    .build()
                    .map_err(|e| hotswap_plugin_api::Error::msg(e.to_string()))?,
            );
        }
        #[cfg(feature = "raw-thread")]
        {
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            *self.sender.lock().unwrap() = Some(tx);
            // Detached: nobody joins it; it leaves once `on_free` drops the sender.
            std::thread::Builder::new()
                .name(format!("plug-{VERSION}-raw"))
                .spawn(move || {
                    while let Ok(x) = rx.recv() {
                        std::hint::black_box(x);
                    }
                    if cfg!(feature = "raw-thread-forever") {
                        loop {
                            std::thread::park();
                        }
                    }
                })
                .map_err(|e| hotswap_plugin_api::Error::msg(e.to_string()))?;
        }
        Ok(())
    }

    fn on_free(&mut self) {
        #[cfg(feature = "tokio")]
        drop(self.runtime.take());
        #[cfg(feature = "raw-thread")]
        drop(self.sender.lock().unwrap().take());
    }
}

export_plugin!(Ordinary, typed { call: fn(u64) -> u64 });

/// A thread-local cache with a destructor: glibc's `__cxa_thread_atexit_impl` is told
/// about it on every host thread that calls.
#[cfg(feature = "tls")]
mod tls {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::io::Write;

    struct Cache {
        map: HashMap<u64, String>,
    }

    impl Drop for Cache {
        /// Appends `dropped <version> <thread name>` to `$ORDINARY_DROP_LOG`, if set.
        /// The name is the OS thread name (this copy of std does not know the name the
        /// host's std gave the thread).
        fn drop(&mut self) {
            // Calls back into the host from a destructor that may run after the version
            // was retired and freed: the host must answer (an error, `None`), never
            // read freed state (the valgrind scenarios check).
            if let Ok(vault) = hotswap_plugin_api::vault() {
                let _ = vault.get("ordinary.seen");
                let _ = vault.set("ordinary.dropped", super::VERSION);
            }
            tracing::debug!(version = super::VERSION, "thread-local cache dropped");
            let Some(path) = std::env::var_os("ORDINARY_DROP_LOG") else {
                return;
            };
            let name = std::fs::read_to_string("/proc/thread-self/comm")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            std::hint::black_box(self.map.len());
            let line = format!("dropped {} {name}\n", super::VERSION);
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                // One write per line: O_APPEND keeps lines of concurrent threads whole.
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    thread_local! {
        static CACHE: RefCell<Cache> = RefCell::new(Cache { map: HashMap::new() });
    }

    pub fn touch(x: u64) -> usize {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.map.insert(x % 16, x.to_string());
            c.map.len()
        })
    }
}

/// A `LazyLock` regex, initialized under contention by the first calls.
#[cfg(feature = "lazy")]
mod lazy {
    use std::sync::LazyLock;

    static RE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(?-u)^([a-z]+)-([0-9]+)$").unwrap());

    pub fn check(x: u64) {
        let text = format!("call-{x}");
        let caps = RE.captures(&text).expect("the regex matches");
        assert_eq!(caps[2].parse::<u64>().unwrap(), x);
    }
}

/// A sleep of the host's timer awaited with a waker of the plugin's own, whose wake
/// (plugin code, run on the timer's thread) touches a thread-local with a destructor.
#[cfg(feature = "timer-waker")]
mod timer_waker {
    use std::cell::Cell;
    use std::future::Future;
    use std::sync::{Arc, Condvar, Mutex};
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    struct Wakes(Cell<u64>);

    impl Drop for Wakes {
        fn drop(&mut self) {
            std::hint::black_box(self.0.get());
        }
    }

    thread_local! {
        static WAKES: Wakes = const { Wakes(Cell::new(0)) };
    }

    struct Flag(Mutex<bool>, Condvar);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            WAKES.with(|w| w.0.set(w.0.get() + 1));
            *self.0.lock().unwrap() = true;
            self.1.notify_all();
        }
    }

    pub fn wait() {
        let flag = Arc::new(Flag(Mutex::new(false), Condvar::new()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut sleep = std::pin::pin!(hotswap_plugin_api::sleep(Duration::from_micros(200)));
        while sleep.as_mut().poll(&mut cx).is_pending() {
            let mut woken = flag.0.lock().unwrap();
            while !*woken {
                woken = flag.1.wait(woken).unwrap();
            }
            *woken = false;
        }
    }
}

/// A child process made with `fork` (std uses `posix_spawn` unless told otherwise; a
/// uid makes it fork), which runs every `pthread_atfork` handler of the process.
#[cfg(feature = "fork")]
mod fork {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;

    pub fn run_true() {
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let status = std::process::Command::new("true")
            .uid(uid)
            .status()
            .expect("spawn true");
        assert!(status.success(), "{status}");
    }
}
