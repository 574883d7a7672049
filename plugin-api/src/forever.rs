//! Blocks this library allocates once and never frees, kept in the library's own memory
//! instead of the process heap, so that they go when the library is unmapped.
//!
//! `tracing` keeps, for the global subscriber the log bridge installs in every loaded
//! library (`log.rs`), an `Arc` of the subscriber and the list of registered
//! dispatchers, and frees neither (a global default lives as long as the process). On
//! the process heap that is about 150 bytes left by every unloaded version, forever:
//! 1.5 MB over 10,000 reloads. While [`capture`] runs its closure, the allocation
//! functions of `heap.rs` take blocks from [`ARENA`], a static of this library, instead
//! (until it is full; then from the heap as usual). `free` of such a block does nothing
//! and `realloc` moves it to the heap. A plugin built with `no-heap-stats` (glibc's
//! allocator, not `heap.rs`) or with a `#[global_allocator]` of its own that does not
//! call `malloc` still leaves those blocks on the heap.
//!
//! Why that is sound: the arena is never reused, so no part of it is handed out twice;
//! it is zeroed memory (`.bss`), so a `calloc` from it is zeroed too; and it is unmapped
//! with the library, which the host does only once no code of the library can run
//! (DESIGN invariants 3 and 7), while only this library's own statics (tracing's
//! globals) point into it. Only code of this library allocates from it: the one
//! `capture` runs in `new`, the first entry point the host calls after `dlopen`, before
//! any other code of the library can run on another thread.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of the arena: room for tracing's two blocks several times over.
const ARENA_BYTES: usize = 1024;
/// Alignment of every block (what glibc's `malloc` gives on 64-bit targets).
pub(crate) const ALIGN: usize = 16;
/// Bytes before each block: its size (for `realloc`), padded to keep the alignment.
const HEADER: usize = ALIGN;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: every block is handed out once (`NEXT` only grows), and only its receiver
// writes it; the header is written before the block is returned.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Offset of the next free byte of the arena (may run past the end: then it is full).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Set while [`capture`] runs.
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// Runs `f` with its allocations (of any thread of this library) taken from the arena.
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> T {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            CAPTURING.store(false, Ordering::Relaxed);
        }
    }
    CAPTURING.store(true, Ordering::Relaxed);
    let _stop = Stop;
    f()
}

/// Whether allocations go to the arena now.
#[inline(always)]
pub(crate) fn capturing() -> bool {
    CAPTURING.load(Ordering::Relaxed)
}

/// A fresh, zeroed block of `size` bytes aligned to [`ALIGN`] from the arena, or null
/// when it has no room left.
pub(crate) fn alloc(size: usize) -> *mut c_void {
    let Some(need) = size
        .checked_add(ALIGN - 1)
        .map(|s| s & !(ALIGN - 1))
        .and_then(|s| s.checked_add(HEADER))
    else {
        return std::ptr::null_mut();
    };
    if need > ARENA_BYTES {
        return std::ptr::null_mut();
    }
    let start = NEXT.fetch_add(need, Ordering::Relaxed);
    if start > ARENA_BYTES - need {
        return std::ptr::null_mut();
    }
    let base = ARENA.0.get().cast::<u8>();
    // SAFETY: `start + need <= ARENA_BYTES`, so header and block are inside the arena,
    // and this range was handed to no one else (`NEXT` only grows); `start` is a
    // multiple of ALIGN (every `need` is), so the header is aligned for a `usize`.
    unsafe {
        base.add(start).cast::<usize>().write(size);
        base.add(start + HEADER).cast()
    }
}

/// Whether `p` points into the arena (then it is one of its blocks, if it came from an
/// allocation function).
#[inline(always)]
pub(crate) fn contains(p: *const c_void) -> bool {
    (p as usize).wrapping_sub(ARENA.0.get() as usize) < ARENA_BYTES
}

/// The size `p` was allocated with.
///
/// # Safety
/// `p` is a block [`alloc`] returned.
pub(crate) unsafe fn size_of(p: *const c_void) -> usize {
    // SAFETY: `alloc` wrote the size HEADER bytes before the block, aligned.
    unsafe { p.cast::<u8>().sub(HEADER).cast::<usize>().read() }
}
