//! slink: hotswap plugins linked statically into one host binary, so that a debugger
//! sees host and plugin code as one program (Go hotswap's slink demo).
//!
//! The plugins (`demo/hello/world`, `demo/slink/counter`) are the same sources
//! `hotswap build` turns into loadable libraries; their crates declare
//! `crate-type = ["cdylib", "rlib"]`. `hotswap build --static-linking` generated
//! `src/hotswap_static.rs` and the marked block of this crate's Cargo.toml:
//!
//! ```sh
//! hotswap build --static-linking demo/hello/world demo/slink/host
//! hotswap build --static-linking demo/slink/counter demo/slink/host
//! cargo build -p slink-host
//! gdb -ex 'break world::World::version_number' -ex run target/debug/slink-host
//! ```
//!
//! (or `break demo/hello/world/src/lib.rs:25`; `rust-gdb` pretty-prints Rust values).
//! Everything else works as with loaded files (lifecycle, dependencies, vault, live
//! functions, typed handles), except that nothing can be swapped: `reload` answers that
//! static plugins are linked into the binary.

mod hotswap_static;

use hotswap_host::{PluginManager, Value};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slink-host: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The directory is not read in static mode: the plugins are in this binary.
    let manager = PluginManager::builder("plugins")
        .static_plugins(hotswap_static::static_plugins())
        .build()?;
    let report = manager.load_plugins(&Value::map([("greeting", "hello")]))?;
    print!("{report}");
    let greeting = manager.invoke_func("world", "greet", &[])?;
    println!("world.greet -> {greeting}");
    let version = manager
        .func::<(), u32>("world", "version_number")?
        .call(())?;
    println!("world.version_number -> {version}");
    for n in [1, 2, 3] {
        let total = manager.invoke_func("counter", "add", &[Value::from(n)])?;
        println!("counter.add({n}) -> {total}");
    }
    println!("live_total -> {}", manager.call_live("live_total", &[])?);
    match manager.reload(&Value::Null) {
        Ok(_) => return Err("reload of static plugins unexpectedly succeeded".into()),
        Err(e) => println!("reload -> {e}"),
    }
    Ok(())
}
