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
//!
//! Why `unload.rs` is the module `churn`: libtest starts a binary's tests in the order of
//! their names, and the two long valgrind runs (the churn, then `hooks.rs`'s) must start
//! first, one on each core, so that the short tests fill in beside them; as `unload` the
//! churn started last and ran alone for most of its minute.

#[path = "unload.rs"]
mod churn;
mod common;
#[path = "hooks.rs"]
mod hooks;
#[path = "ordinary.rs"]
mod ordinary;
