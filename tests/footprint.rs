//! What the host keeps per reload is bounded (issue #16): after hundreds of reloads the
//! host holds no more memory than after a few, counted by a counting global allocator in
//! this test binary (every block the process's Rust code holds, whatever the allocator
//! underneath: the plugin's Rust heap is the host's allocator too), and each unloaded
//! version's plugin code left only a small, known amount on the heap
//! (`Status::unloaded_heap`), which is subtracted to get what the host itself keeps.

mod common;

use common::{build, plugin_dir};
use hotswap_host::{Outcome, PluginManager, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

/// The system allocator, counting the bytes of the blocks it holds for this process's
/// Rust code.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Reloads measured after the warm-up.
const RELOADS: usize = 400;
/// Bytes the host may hold more after [`RELOADS`] reloads than after the warm-up: room
/// for a vector's capacity to double once, not for anything kept per reload.
const HOST_SLACK: isize = 16 * 1024;
/// Heap each unloaded version of the probe plugin's code may leave behind: nothing.
/// What `tracing` keeps forever for the plugin's global subscriber (about 150 bytes,
/// which no API frees) lives in the library's own memory and goes with it
/// (`plugin-api/src/forever.rs`).
const PLUGIN_LEFT_PER_VERSION: i64 = 0;

#[test]
fn memory_held_per_reload_does_not_grow() {
    let v1 = build("tests/plugins/probe", &[]);
    let v2 = build("tests/plugins/probe", &["v2"]);
    let dir = plugin_dir();
    // Both libraries in the directory; which manifest is there says which is newest.
    for b in [&v1, &v2] {
        std::fs::copy(&b.library, dir.path().join(&b.manifest.file)).unwrap();
    }
    let manifest_of = |b: &common::Build| dir.path().join(b.manifest_path.file_name().unwrap());
    std::fs::copy(&v1.manifest_path, manifest_of(&v1)).unwrap();
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let f = m.func::<u64, u64>("probe", "add_one").unwrap();
    let mut current = &v1;
    let mut reload = |i: usize| {
        let next = if std::ptr::eq(current, &v1) { &v2 } else { &v1 };
        std::fs::remove_file(manifest_of(current)).unwrap();
        std::fs::copy(&next.manifest_path, manifest_of(next)).unwrap();
        current = next;
        let report = m.reload(&Value::Null).unwrap();
        assert_eq!(
            report.plugin("probe").map(|p| p.outcome),
            Some(Outcome::Loaded),
            "reload {i}"
        );
        assert_eq!(f.call(41).unwrap(), 42);
        assert!(
            m.collect(Duration::from_secs(30)),
            "reload {i}: collect timed out"
        );
    };
    for i in 0..50 {
        reload(i);
    }
    let after_warmup = LIVE.load(Ordering::Relaxed);
    let footprint_after_warmup = m.footprint();
    let (unloaded_before, left_before) = {
        let s = m.status();
        (s.unloaded, s.unloaded_heap.bytes)
    };
    for i in 0..RELOADS {
        reload(50 + i);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let status = m.status();
    println!(
        "host heap (Rust blocks): {after_warmup} bytes after 50 reloads, {after} after {} more; \
         {} versions unloaded, their code left {:?}",
        RELOADS, status.unloaded, status.unloaded_heap
    );
    assert_eq!(
        status.versions.len(),
        1,
        "only the current version in memory"
    );
    assert_eq!(status.unloaded - unloaded_before, RELOADS as u64);
    // What the unloaded versions' code left is on the same heap; the rest is the host's.
    let plugins_left = (status.unloaded_heap.bytes - left_before) as isize;
    let host_grew = after - after_warmup - plugins_left;
    assert!(
        host_grew <= HOST_SLACK,
        "the host holds {host_grew} bytes more after {RELOADS} reloads ({} per reload; \
         the plugin's code left {plugins_left} more)",
        host_grew / RELOADS as isize
    );
    let per_version = status.unloaded_heap.bytes / status.unloaded as i64;
    assert!(
        per_version <= PLUGIN_LEFT_PER_VERSION,
        "each unloaded version left {per_version} heap bytes (at most {PLUGIN_LEFT_PER_VERSION})"
    );

    // Counted by the manager, not the allocator: every per-version structure is where it
    // was after the warm-up (one version loaded, one record, one private copy, the one
    // handle's symbol, the two files checked).
    let footprint = m.footprint();
    println!("footprint after the warm-up {footprint_after_warmup:?}, after {RELOADS} more {footprint:?}");
    assert_eq!(footprint, footprint_after_warmup);
    assert_eq!(
        (
            footprint.records,
            footprint.private_copies,
            footprint.typed_symbols,
            footprint.verified_files
        ),
        (1, 1, 1, 2)
    );

    // Each library written afresh before its reload, as new builds are: every load is a
    // file the host has not checked, and what it remembers of checked files stops at its
    // bound while the rest stays as it was.
    let mut current = &v1;
    for i in 0..VERIFIED_BOUND + 16 {
        let next = if std::ptr::eq(current, &v1) { &v2 } else { &v1 };
        std::fs::remove_file(manifest_of(current)).unwrap();
        let library = dir.path().join(&next.manifest.file);
        std::fs::remove_file(&library).unwrap();
        std::fs::copy(&next.library, &library).unwrap();
        std::fs::copy(&next.manifest_path, manifest_of(next)).unwrap();
        current = next;
        m.reload(&Value::Null).unwrap();
        assert_eq!(f.call(1).unwrap(), 2);
        assert!(
            m.collect(Duration::from_secs(30)),
            "fresh reload {i}: collect timed out"
        );
    }
    let footprint = m.footprint();
    println!(
        "footprint after {} fresh files: {footprint:?}",
        VERIFIED_BOUND + 16
    );
    assert_eq!(
        (
            footprint.records,
            footprint.private_copies,
            footprint.typed_symbols
        ),
        (1, 1, 1)
    );
    assert_eq!(footprint.verified_files, VERIFIED_BOUND);
    assert_eq!(m.status().versions.len(), 1);
}

/// How many checked files a manager remembers (`host/src/verified.rs`).
const VERIFIED_BOUND: usize = 64;
