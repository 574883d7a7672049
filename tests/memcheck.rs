//! The long tests whose children run under valgrind, in one test binary so that they run
//! side by side: `unload.rs` (a thousand loads, layout checks and unloads under
//! memcheck), `hooks.rs` (every hook fails 20 times in one process, plain and under
//! memcheck) and `ordinary.rs` (ordinary crates unload: each scenario plain, two of them
//! under memcheck). `cargo test` runs test binaries one after the other, a binary's
//! tests in parallel, and each of these does its work in a child process of its own
//! (this binary re-run with `--exact` on the test's module-qualified name,
//! `common::test_name`), so they share nothing but the parent, which only builds plugins
//! and reads the children's output: while the one-CPU valgrind run of `hooks.rs` takes
//! one core, the others take turns on the other. The files are modules of this one
//! (`common` is declared here, once).

mod common;
#[path = "hooks.rs"]
mod hooks;
#[path = "ordinary.rs"]
mod ordinary;
#[path = "unload.rs"]
mod unload;
