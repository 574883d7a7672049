//! How much heap a version's code holds: the C allocation functions defined again
//! inside the plugin, counting what this copy of the code allocates and frees.
//!
//! `export_plugin!` defines `malloc`, `calloc`, `realloc`, `reallocarray`, `free`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc` and `pvalloc` in the
//! plugin's cdylib, each calling the function of the same name here. As with the
//! thread functions (see [`interpose`](crate::interpose)), the host opens plugins with
//! `RTLD_DEEPBIND`, so the plugin's own code (its copy of std's allocator, and every Rust
//! or C crate linked into it) binds to these, while the rest of the process keeps
//! glibc's. Each forwards to glibc's allocator (`__libc_malloc` and friends) and adds the
//! block's usable size to a counter; the counters are statics of this crate, so every
//! loaded library (every version of every plugin) has its own. The host reads them
//! through [`PluginVTable::heap`](crate::vtable::PluginVTable::heap): while the version
//! is loaded, in `status()` and `/metrics`, and once more just before it unloads, when
//! what is left is what the version leaked (its statics, caches, forgotten buffers).
//!
//! What the count means: bytes of blocks this version's code allocated minus bytes of
//! blocks it freed, counted by `malloc_usable_size`, so a block is counted the same on
//! both sides. A block that crosses the boundary moves the count: memory the plugin
//! allocates and the host frees stays counted against the version, and memory the
//! host allocates and the plugin frees lowers it (the count can go below zero). The
//! plugin's Rust code allocates from the host's allocator instead (see
//! [`host_heap`](crate::host_heap)), counted there into the same counters; a plugin with
//! its own `#[global_allocator]` (`own-allocator`) that does not call `malloc`
//! (mimalloc, jemalloc) is not counted. Blocks glibc allocates internally (`strdup`,
//! `getline`) and the plugin frees lower it too.
//!
//! Nothing is reclaimed at unload, on purpose: the host cannot tell a leak from a block
//! that is still in use elsewhere (state the version handed its successor, a string a
//! caller kept), and freeing the latter would turn a leak into a use-after-free. The
//! one exception is made at allocation, not at unload: what `tracing` allocates for the
//! log bridge's global subscriber, which it never frees, comes from a static arena of
//! the library and is neither counted nor left behind (`forever.rs`).
//!
//! Cost: a few nanoseconds per allocation (the thread pointer, hashed to a counter no
//! other thread writes, a plain load-and-store on it, and `malloc_usable_size`);
//! measured by `cargo bench -p hotswap-host --bench calls` (`alloc/*` lines). The
//! `no-heap-stats` feature leaves these functions out.

use crate::forever;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

pub use hotswap_abi::vtable::HeapUsage;

/// Counters, one cache line each. A thread counts into the slot its thread pointer
/// hashes to (or the next one) once it owns it, as its only writer, with a plain
/// load-and-store (no lock prefix, no line shared with another thread); a thread whose
/// two slots are owned by others pays an atomic add on [`SHARED`]. A slot stays with its
/// owner's thread pointer after the thread exits, which only a later thread with the
/// same pointer (glibc reuses stacks) takes over: never two live writers.
const SLOTS: usize = 128;

/// Bytes and blocks packed into one word, `bytes + (blocks << BLOCK_SHIFT)`, so a
/// count is one load and one store. Wrapping addition is linear, so the sum over the
/// slots decodes right whatever each slot holds, while the true byte total stays within
/// ±2^(BLOCK_SHIFT-1) (512 GiB).
const BLOCK_SHIFT: u32 = 40;

#[repr(align(64))]
struct Slot {
    /// Thread pointer of the owning thread, 0 for none.
    owner: AtomicUsize,
    packed: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)] // only to initialise the array
const EMPTY: Slot = Slot {
    owner: AtomicUsize::new(0),
    packed: AtomicI64::new(0),
};

static SLOT: [Slot; SLOTS] = [EMPTY; SLOTS];
static SHARED: Slot = EMPTY;

/// The calling thread's thread pointer: unique among live threads, and cheaper to read
/// than a thread-local (which costs a `__tls_get_addr` call in a shared library).
#[inline(always)]
fn thread_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: the x86-64 TLS ABI stores the thread pointer in the first word of
        // the thread control block, which %fs points at, on every thread; reading it
        // has no other effect.
        unsafe {
            std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags, pure));
        }
        tp
    }
    #[cfg(target_arch = "aarch64")]
    {
        let tp: usize;
        // SAFETY: reading TPIDR_EL0, the thread pointer register, has no effect.
        unsafe {
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags, pure));
        }
        tp
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // SAFETY: no preconditions.
        unsafe { libc::pthread_self() as usize }
    }
}

/// Adds `bytes` and `blocks` (either may be negative) to the calling thread's counter.
#[inline(always)]
pub(crate) fn count(bytes: i64, blocks: i64) {
    let delta = bytes.wrapping_add(blocks.wrapping_shl(BLOCK_SHIFT));
    let tp = thread_pointer();
    let h = (tp.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 7)) % SLOTS;
    let s = &SLOT[h];
    if s.owner.load(Ordering::Relaxed) == tp {
        // This thread is the slot's only writer (see `SLOTS`): readers may see the old
        // or the new value, never a torn one, and no update is lost.
        s.packed.store(
            s.packed.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    } else {
        count_cold(h, tp, delta);
    }
}

#[cold]
#[inline(never)]
fn count_cold(h: usize, tp: usize, delta: i64) {
    for s in [&SLOT[h], &SLOT[(h + 1) % SLOTS]] {
        let owner = s.owner.load(Ordering::Relaxed);
        let mine = owner == tp
            || (owner == 0
                && s.owner
                    .compare_exchange(0, tp, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        if mine {
            s.packed.store(
                s.packed.load(Ordering::Relaxed).wrapping_add(delta),
                Ordering::Relaxed,
            );
            return;
        }
    }
    SHARED.packed.fetch_add(delta, Ordering::Relaxed);
}

/// This library's counts, summed over every thread (each thread's last writes may not
/// be in yet: a snapshot, not a barrier).
pub extern "C" fn usage() -> HeapUsage {
    let mut u = HeapUsage {
        measured: cfg!(not(any(feature = "static", feature = "no-heap-stats"))),
        ..HeapUsage::default()
    };
    let total = SLOT
        .iter()
        .chain(std::iter::once(&SHARED))
        .fold(0i64, |sum, s| {
            sum.wrapping_add(s.packed.load(Ordering::Relaxed))
        });
    // Round to the nearest block count, so a negative byte total decodes as one.
    u.blocks = total.wrapping_add(1 << (BLOCK_SHIFT - 1)) >> BLOCK_SHIFT;
    u.bytes = total.wrapping_sub(u.blocks.wrapping_shl(BLOCK_SHIFT));
    u
}

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn malloc_usable_size(p: *mut c_void) -> usize;
}

/// Usable size of a live block, as an `i64` (0 for null).
///
/// # Safety
/// `p` is null or a live block of glibc's allocator.
#[inline]
unsafe fn usable(p: *mut c_void) -> i64 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: upheld by the caller.
    unsafe { malloc_usable_size(p) as i64 }
}

/// Counts `p`, just returned by glibc, and returns it.
///
/// # Safety
/// `p` is null or a block glibc just allocated.
#[inline]
unsafe fn allocated(p: *mut c_void) -> *mut c_void {
    if !p.is_null() {
        // SAFETY: upheld by the caller.
        count(unsafe { usable(p) }, 1);
    }
    p
}

/// `malloc` of this plugin.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    if forever::capturing() {
        return forever_or(size, || {
            // SAFETY: as below.
            unsafe { allocated(__libc_malloc(size)) }
        });
    }
    // SAFETY: glibc's function; what it returns is a fresh block or null.
    unsafe { allocated(__libc_malloc(size)) }
}

/// A block from the `forever` arena (not counted: it leaves with the library), or, when
/// the arena is full, what `heap` gives.
#[cold]
#[inline(never)]
fn forever_or(size: usize, heap: impl FnOnce() -> *mut c_void) -> *mut c_void {
    let p = forever::alloc(size);
    if p.is_null() {
        heap()
    } else {
        p
    }
}

/// `calloc` of this plugin.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
    if forever::capturing() {
        if let Some(total) = n.checked_mul(size) {
            // The arena is zeroed and never reused: its blocks are zeroed.
            return forever_or(total, || {
                // SAFETY: as below.
                unsafe { allocated(__libc_calloc(n, size)) }
            });
        }
    }
    // SAFETY: as in `malloc`.
    unsafe { allocated(__libc_calloc(n, size)) }
}

/// `realloc` of this plugin.
///
/// # Safety
/// As glibc's: `p` is null or a live block of glibc's allocator.
#[inline]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if forever::contains(p) {
        // SAFETY: `p` is a live block of the arena (the caller's contract).
        return unsafe { realloc_forever(p, size) };
    }
    // SAFETY: upheld by the caller; read before glibc may free it.
    let before = unsafe { usable(p) };
    // SAFETY: glibc's function with the caller's arguments.
    let q = unsafe { __libc_realloc(p, size) };
    if q.is_null() {
        // Either `realloc(p, 0)` freed `p` (glibc returns null then), or it failed and
        // `p` is untouched.
        if !p.is_null() && size == 0 {
            count(-before, -1);
        }
        return q;
    }
    // SAFETY: `q` is the live block glibc just returned.
    let after = unsafe { usable(q) };
    count(after - before, if p.is_null() { 1 } else { 0 });
    q
}

/// `realloc` of a block of the `forever` arena: a new block (from the heap, or the arena
/// while capturing) with the old contents; the old block is left as it is (it is
/// never reused).
///
/// # Safety
/// `p` is a block of the arena.
#[cold]
#[inline(never)]
unsafe fn realloc_forever(p: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 {
        // What glibc does: `realloc(p, 0)` frees `p` (a no-op here) and returns null.
        return std::ptr::null_mut();
    }
    // SAFETY: plain allocation.
    let q = unsafe { malloc(size) };
    if !q.is_null() {
        // SAFETY: `p` holds `size_of(p)` bytes (the caller's contract), `q` at least
        // `size`; they do not overlap (`q` is fresh).
        unsafe {
            std::ptr::copy_nonoverlapping(
                p.cast::<u8>(),
                q.cast::<u8>(),
                forever::size_of(p).min(size),
            )
        };
    }
    q
}

/// `reallocarray` of this plugin.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: as `realloc`.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// `free` of this plugin.
///
/// # Safety
/// As glibc's: `p` is null or a live block of glibc's allocator.
#[inline]
pub unsafe fn free(p: *mut c_void) {
    // A block of the `forever` arena is never reused: nothing to do.
    if p.is_null() || forever::contains(p) {
        return;
    }
    // SAFETY: upheld by the caller; read before the block goes back.
    count(-unsafe { usable(p) }, -1);
    // SAFETY: as above.
    unsafe { __libc_free(p) }
}

/// `memalign` (and `aligned_alloc`) of this plugin.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn memalign(align: usize, size: usize) -> *mut c_void {
    if forever::capturing() && align.is_power_of_two() && align <= forever::ALIGN {
        return forever_or(size, || {
            // SAFETY: as below.
            unsafe { allocated(__libc_memalign(align, size)) }
        });
    }
    // SAFETY: glibc's function (it checks `align` itself).
    unsafe { allocated(__libc_memalign(align, size)) }
}

/// `posix_memalign` of this plugin.
///
/// # Safety
/// As glibc's: `out` is valid for a write.
#[inline]
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // Both powers of two: a multiple of the pointer size exactly when not smaller.
    if !align.is_power_of_two() || align < std::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    // SAFETY: as in `memalign`.
    let p = unsafe { memalign(align, size) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: upheld by the caller.
    unsafe { out.write(p) };
    0
}

/// `valloc` of this plugin.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn valloc(size: usize) -> *mut c_void {
    // SAFETY: as in `memalign`; a page is a power of two.
    unsafe { memalign(page(), size) }
}

/// `pvalloc` of this plugin: whole pages.
///
/// # Safety
/// As glibc's.
#[inline]
pub unsafe fn pvalloc(size: usize) -> *mut c_void {
    let page = page();
    match size.checked_add(page - 1) {
        // SAFETY: as in `memalign`.
        Some(s) => unsafe { memalign(page, (s / page).max(1) * page) },
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn set_errno(e: c_int) {
    // SAFETY: glibc's errno location is valid for the calling thread.
    unsafe { *libc::__errno_location() = e };
}

#[cfg(test)]
mod tests {
    use super::*;

    // These call the counting functions directly (a test binary does not interpose
    // them), so they see exactly their own blocks; one at a time, as they share the
    // counters.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn every_function_balances() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let before = usage();
        // SAFETY: plain C allocation calls on blocks this test owns.
        unsafe {
            let a = malloc(100);
            let b = calloc(10, 30);
            let c = realloc(std::ptr::null_mut(), 50);
            let c = realloc(c, 5000);
            let d = memalign(64, 200);
            let mut e = std::ptr::null_mut();
            assert_eq!(posix_memalign(&mut e, 128, 300), 0);
            assert_eq!(posix_memalign(&mut e, 3, 300), libc::EINVAL);
            let f = valloc(10);
            let g = pvalloc(10);
            let h = reallocarray(std::ptr::null_mut(), 4, 8);
            assert!(reallocarray(h, usize::MAX, 2).is_null());
            let mid = usage();
            assert_eq!(mid.blocks - before.blocks, 8);
            assert!(mid.bytes - before.bytes >= 100 + 300 + 5000 + 200 + 300 + 10 + 10 + 32);
            for p in [a, b, c, d, e, f, g, h] {
                free(p);
            }
            let i = malloc(10);
            assert!(realloc(i, 0).is_null());
            free(std::ptr::null_mut());
        }
        let after = usage();
        assert_eq!((after.bytes, after.blocks), (before.bytes, before.blocks));
    }

    #[test]
    fn blocks_allocated_while_capturing_live_in_the_library_and_move_out_on_realloc() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let before = usage();
        // SAFETY: plain C allocation calls on blocks this test owns.
        unsafe {
            let (a, b, c, d) = crate::forever::capture(|| {
                (malloc(40), calloc(3, 8), memalign(16, 24), memalign(64, 24))
            });
            for p in [a, b, c] {
                assert!(crate::forever::contains(p), "from the arena");
                assert_eq!(p as usize % crate::forever::ALIGN, 0);
            }
            assert!(
                !crate::forever::contains(d),
                "a larger alignment comes from glibc"
            );
            assert!(std::slice::from_raw_parts(b.cast::<u8>(), 24)
                .iter()
                .all(|&x| x == 0));
            // Arena blocks are not counted; the heap block is.
            assert_eq!(usage().blocks - before.blocks, 1);
            a.cast::<u8>().write_bytes(7, 40);
            // realloc moves the block to the heap with its contents.
            let a2 = realloc(a, 100);
            assert!(!crate::forever::contains(a2));
            assert!(std::slice::from_raw_parts(a2.cast::<u8>(), 40)
                .iter()
                .all(|&x| x == 7));
            assert!(realloc(b, 0).is_null());
            free(c);
            free(d);
            free(a2);
            // Outside `capture`, allocations come from glibc again.
            let e = malloc(8);
            assert!(!crate::forever::contains(e));
            free(e);
        }
        assert_eq!(usage(), before);
    }

    #[test]
    fn negative_counts_decode() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let before = usage();
        count(-5000, -3);
        let mid = usage();
        assert_eq!(
            (mid.bytes - before.bytes, mid.blocks - before.blocks),
            (-5000, -3)
        );
        count(5000, 3);
        assert_eq!(usage(), before);
    }

    #[test]
    fn threads_beyond_the_slots_share_one_counter() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let before = usage();
        let threads: Vec<_> = (0..2 * SLOTS + 8)
            .map(|_| {
                std::thread::spawn(|| {
                    // SAFETY: a block this thread owns, leaked on purpose.
                    let p = unsafe { malloc(64) };
                    assert!(!p.is_null());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(usage().blocks - before.blocks, (2 * SLOTS + 8) as i64);
    }
}
