//! The trine demo: three plugins in a dependency chain, gamma -> beta -> alpha, each
//! importing the next one's exported `Stage` trait object. Reloading only alpha rebinds
//! beta and gamma (fresh instances of the same files) to the new alpha.

use crate::{hotswap_build, repo};
use hotswap_host::{PluginManager, Value};

fn run_chain(manager: &PluginManager) -> Result<(Value, Value), String> {
    let out = manager
        .invoke_func("gamma", "run", &[Value::from(5)])
        .map_err(|e| e.to_string())?;
    let how = manager
        .invoke_func("gamma", "describe", &[])
        .map_err(|e| e.to_string())?;
    Ok((out, how))
}

pub(crate) fn run() -> Result<(), String> {
    let work = repo().join("target/hotswap-demo/trine");
    let plugins = work.join("plugins");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    let src = repo().join("demo/trine");

    println!("== 1. build alpha, beta, gamma (v1)");
    for p in ["alpha", "beta", "gamma"] {
        hotswap_build(&src.join(p), &plugins, &[])?;
    }
    let manager = PluginManager::new(&plugins).map_err(|e| e.to_string())?;
    let report = manager
        .load_plugins(&Value::Null)
        .map_err(|e| e.to_string())?;
    print!("{report}");
    let (before, how_before) = run_chain(&manager)?;
    println!("gamma.run(5) -> {before}   via {how_before}");

    println!("== 2. rebuild only alpha (v2: x3 instead of x2) and reload");
    hotswap_build(&src.join("alpha"), &plugins, &["--features", "v2"])?;
    let report = manager.reload(&Value::Null).map_err(|e| e.to_string())?;
    print!("{report}");
    let (after, how_after) = run_chain(&manager)?;
    println!("gamma.run(5) -> {after}   via {how_after}");
    println!("\nbefore: {before} ({how_before})\nafter:  {after} ({how_after})");
    if after != Value::from(25) {
        return Err(format!(
            "expected 5*3+10 = 25 after the reload, got {after}"
        ));
    }
    Ok(())
}
