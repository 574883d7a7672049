//! The two long valgrind checks in one test binary, so that they run side by side:
//! `unload.rs` (a thousand loads, layout checks and unloads under memcheck) and
//! `hooks.rs` (every hook fails 20 times in one process, plain and under memcheck).
//! `cargo test` runs test binaries one after the other, a binary's tests in parallel,
//! and each of these does its work in a child process of its own (this binary re-run
//! with `--exact` on the test's module-qualified name, `common::test_name`), so they
//! share nothing but the parent, which only builds plugins and reads the children's
//! output. Both files are modules of this one (`common` is declared here, once).

mod common;
#[path = "hooks.rs"]
mod hooks;
#[path = "unload.rs"]
mod unload;
