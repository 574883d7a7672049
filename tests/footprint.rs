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

/// The probe's v1 and v2 builds, and a plugin directory holding both libraries and v1's
/// manifest: which manifest is there says which build is newest, so a test switches
/// versions by copying a manifest.
fn both_builds_v1_manifest() -> (common::Build, common::Build, tempfile::TempDir) {
    let v1 = build("tests/plugins/probe", &[]);
    let v2 = build("tests/plugins/probe", &["v2"]);
    let dir = plugin_dir();
    for b in [&v1, &v2] {
        std::fs::copy(&b.library, dir.path().join(&b.manifest.file)).unwrap();
    }
    std::fs::copy(
        &v1.manifest_path,
        dir.path().join(v1.manifest_path.file_name().unwrap()),
    )
    .unwrap();
    (v1, v2, dir)
}

#[test]
fn memory_held_per_reload_does_not_grow() {
    let (v1, v2, dir) = both_builds_v1_manifest();
    let manifest_of = |b: &common::Build| dir.path().join(b.manifest_path.file_name().unwrap());
    // Counting calls: each version's counters are part of what must not pile up.
    let m = PluginManager::builder(dir.path())
        .call_metrics(true)
        .build()
        .unwrap();
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
    // The other build's copy is kept as a spare (its version is unloaded), and two
    // files' layout checks (the vtable and the one handle's) are remembered.
    assert_eq!(
        (
            footprint.records,
            footprint.private_copies,
            footprint.spare_copies,
            footprint.typed_symbols,
            footprint.verified_files,
            footprint.checked_layouts,
            footprint.call_metric_labels
        ),
        (1, 1, 1, 1, 2, 4, 1)
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
    assert!(footprint.spare_copies <= SPARE_BOUND, "{footprint:?}");
    // The two builds' bytes, whatever file holds them: the same checksums.
    assert_eq!(footprint.checked_layouts, 4);
    assert_eq!(m.status().versions.len(), 1);
}

/// How many spare private copies a manager keeps (`host/src/spare.rs`).
const SPARE_BOUND: usize = 4;

/// Loading a file again reuses the private copy of its unloaded version (renamed, not
/// copied: the same inode) and runs that file's code; a copy whose library is still
/// open is never reused (`dlopen` would return the open library), so a version still
/// pinned gets a copy of its own.
#[test]
fn a_file_loaded_again_reuses_the_copy_of_its_unloaded_version_never_an_open_one() {
    use std::os::unix::fs::MetadataExt;
    let (v1, v2, dir) = both_builds_v1_manifest();
    let manifest_of = |b: &common::Build| dir.path().join(b.manifest_path.file_name().unwrap());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let f = m.func::<u64, u64>("probe", "add_one").unwrap();
    let version = || m.invoke_func("probe", "version", &[]).unwrap();
    // The inodes of the private copies mapped now.
    let mapped = || -> Vec<u64> {
        hotswap_host::maps::mapped_under(m.private_dir())
            .iter()
            // A path the reaper unmapped and renamed to a spare after the maps were read
            // is no longer mapped: skipped, not a failure.
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.ino()))
            .collect()
    };
    let mut current = &v1;
    let mut switch = || {
        let next = if std::ptr::eq(current, &v1) { &v2 } else { &v1 };
        std::fs::remove_file(manifest_of(current)).unwrap();
        std::fs::copy(&next.manifest_path, manifest_of(next)).unwrap();
        current = next;
        let report = m.reload(&Value::Null).unwrap();
        assert_eq!(
            report.plugin("probe").map(|p| p.outcome),
            Some(Outcome::Loaded)
        );
    };
    let first_v1 = mapped();
    assert_eq!(first_v1.len(), 1);
    switch();
    assert!(m.collect(Duration::from_secs(30)));
    assert_eq!(version(), Value::from("v2"));
    let first_v2 = mapped();
    let footprint = m.footprint();
    assert_eq!((footprint.private_copies, footprint.spare_copies), (1, 1));
    switch();
    assert!(m.collect(Duration::from_secs(30)));
    assert_eq!(version(), Value::from("v1"));
    assert_eq!(f.call(41).unwrap(), 42);
    assert_eq!(mapped(), first_v1, "v1 runs from its first copy again");

    m.with_generation(|g| {
        // `g` keeps this v1 loaded through two reloads: its copy is not a spare, and
        // the v1 loaded again is a library of its own, from a copy of its own.
        // (Calls on this thread run on `g` until the closure returns.)
        switch();
        switch();
        let pinned = g.find("probe").unwrap();
        assert_eq!(pinned.invoke("version", &[]).unwrap(), Value::from("v1"));
        let now = mapped();
        assert!(now.contains(&first_v1[0]), "the pinned v1 is still mapped");
        assert!(
            now.iter().any(|i| *i != first_v1[0] && *i != first_v2[0]),
            "the new v1 runs from a new copy: {now:?}, v1 {first_v1:?}, v2 {first_v2:?}"
        );
    });
    assert!(m.collect(Duration::from_secs(30)));
    assert_eq!(version(), Value::from("v1"));
    assert_eq!(f.call(1).unwrap(), 2);
    assert_eq!(m.status().versions.len(), 1);
    assert_eq!(mapped().len(), 1);
    assert!(m.footprint().spare_copies <= SPARE_BOUND);
}

/// How many checked files a manager remembers (`host/src/verified.rs`).
const VERIFIED_BOUND: usize = 64;
