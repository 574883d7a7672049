//! The plugin's Rust heap is the host's: `export_plugin!` makes [`HostHeap`] the
//! plugin's `#[global_allocator]`, which allocates from the host's global allocator
//! through the [`HostVTable`], so a `String` a typed function returns becomes the host's
//! `String` without a copy (see `typed.rs`, `HostString`), and a block the plugin leaks
//! stays valid host memory after its library is closed.
//!
//! Counted as the C allocation functions of [`heap`](crate::heap) count (by the
//! layout's size here), in the same per-version counters, unless `no-heap-stats`.
//!
//! Before the host's first call into the library (`new`) the allocator is not known
//! yet: what Rust code allocates then (a static constructor) comes from a small arena
//! inside the library, [`ARENA`] bytes, never handed to the host and never freed (nor
//! counted: it goes with the library). What is allocated past that comes from the
//! system allocator instead, and then for good: such a library (one whose code runs
//! before or without the host, called through `dlsym`) never moves to the host's
//! allocator, and its `String` results are copied. What the library allocates forever
//! while the log bridge installs its subscriber (`forever.rs`: tracing's global
//! dispatcher) comes from the arena too, so that an unloaded version leaves nothing of
//! it on the host's heap.
//!
//! Left out when the plugin is linked into the host (`static`: the host's allocator is
//! the plugin's already) and with the `own-allocator` feature, for a plugin that sets a
//! `#[global_allocator]` of its own: a `String` result is then copied into a block of
//! the host's before the call returns.

use crate::vtable::HostVTable;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// The host's callbacks, set by [`attach`] before any other plugin code runs.
static HOST: AtomicPtr<HostVTable> = AtomicPtr::new(std::ptr::null_mut());

/// [`HOST`] once [`MODE`] is [`HOSTS`] (set by [`attach`] after it), else null: what the
/// allocation functions test first, one load for what would be two (the mode and the
/// callbacks). Null while the mode is still moving, so those calls take the general
/// path, which reads both.
static HEAP: AtomicPtr<HostVTable> = AtomicPtr::new(std::ptr::null_mut());

/// Where this library's Rust heap is: [`UNATTACHED`] until the host's first call, then
/// [`HOSTS`] for good; or [`SYSTEM`] for good if the early arena ran out before the
/// host attached (code of the library called without the host, say through `dlsym`).
/// It only moves forward, so a block's origin is known from when it was made: from
/// the arena by its address, else from the host's allocator in `HOSTS` and from the
/// system allocator in `SYSTEM` (the two never both happen in one library).
static MODE: AtomicU8 = AtomicU8::new(UNATTACHED);
const UNATTACHED: u8 = 0;
const HOSTS: u8 = 1;
const SYSTEM: u8 = 2;

/// Size of the arena for allocations made before the host's first call.
pub const ARENA: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA]>,
    used: AtomicUsize,
}

// SAFETY: `used` hands each byte range out at most once (a compare-exchange), so no two
// threads ever touch the same bytes through it.
unsafe impl Sync for Arena {}

static EARLY: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA]),
    used: AtomicUsize::new(0),
};

/// Makes `vtable`'s allocator this library's. Called first thing in `new`, before any
/// allocation the host's call makes.
pub(crate) fn attach(vtable: &'static HostVTable) {
    let vtable = std::ptr::from_ref(vtable).cast_mut();
    HOST.store(vtable, Ordering::Release);
    // Stays `SYSTEM` if the library already allocates from there.
    let _ = MODE.compare_exchange(UNATTACHED, HOSTS, Ordering::AcqRel, Ordering::Acquire);
    if mode() == HOSTS {
        HEAP.store(vtable, Ordering::Release);
    }
}

/// The host's callbacks when this library's Rust heap is the host's ([`HEAP`]).
#[inline(always)]
fn heap() -> Option<&'static HostVTable> {
    let p = HEAP.load(Ordering::Acquire);
    // SAFETY: null, or the `&'static HostVTable` `attach` stored.
    unsafe { p.cast_const().as_ref() }
}

/// The current [`MODE`].
#[inline(always)]
fn mode() -> u8 {
    MODE.load(Ordering::Acquire)
}

/// A block of the early arena, or once it is full (still unattached), the system
/// allocator's from now on: the library then never moves to the host's.
#[cold]
fn unattached_alloc(l: Layout, zeroed: bool) -> *mut u8 {
    let p = early_alloc(l);
    if !p.is_null() {
        return p;
    }
    match MODE.compare_exchange(UNATTACHED, SYSTEM, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) | Err(SYSTEM) => system_alloc(l, zeroed),
        // The host attached meanwhile.
        Err(_) => match host() {
            // SAFETY: any pair is valid for the host's allocator.
            Some(h) if zeroed => unsafe { counted((h.alloc_zeroed)(l.size(), l.align()), l) },
            // SAFETY: as above.
            Some(h) => unsafe { counted((h.alloc)(l.size(), l.align()), l) },
            None => std::ptr::null_mut(),
        },
    }
}

/// A block of the system allocator (the plugin's own `malloc`, counted there).
fn system_alloc(l: Layout, zeroed: bool) -> *mut u8 {
    if zeroed {
        // SAFETY: GlobalAlloc's contract, forwarded (a non-empty layout).
        unsafe { std::alloc::System.alloc_zeroed(l) }
    } else {
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc(l) }
    }
}

/// Counts `p`, a block of the host's allocator of layout `l` (or null), and returns it.
#[inline(always)]
fn counted(p: *mut u8, l: Layout) -> *mut u8 {
    if !p.is_null() {
        count(l.size(), 1);
    }
    p
}

#[inline(always)]
fn host() -> Option<&'static HostVTable> {
    let p = HOST.load(Ordering::Acquire);
    // SAFETY: null, or the `&'static HostVTable` `attach` stored.
    unsafe { p.cast_const().as_ref() }
}

/// Whether `p` lies in the early arena.
#[inline(always)]
fn early(p: *const u8) -> bool {
    let start = EARLY.bytes.get().cast::<u8>().cast_const();
    (p as usize).wrapping_sub(start as usize) < ARENA
}

#[cold]
fn early_alloc(l: Layout) -> *mut u8 {
    let base = EARLY.bytes.get().cast::<u8>();
    let mut used = EARLY.used.load(Ordering::Relaxed);
    loop {
        let start = (base as usize + used).next_multiple_of(l.align()) - base as usize;
        let Some(end) = start.checked_add(l.size()).filter(|&e| e <= ARENA) else {
            return std::ptr::null_mut();
        };
        match EARLY
            .used
            .compare_exchange(used, end, Ordering::Relaxed, Ordering::Relaxed)
        {
            // SAFETY: `start..end` lies inside the arena (checked above).
            Ok(_) => return unsafe { base.add(start) },
            Err(now) => used = now,
        }
    }
}

#[inline(always)]
fn count(bytes: usize, blocks: i64) {
    #[cfg(not(feature = "no-heap-stats"))]
    crate::heap::count(bytes as i64 * blocks.signum(), blocks);
    #[cfg(feature = "no-heap-stats")]
    let _ = (bytes, blocks);
}

/// Whether a block this library's Rust code allocated at `p` is the host's: with
/// [`HostHeap`] as the global allocator, every block but those of the early arena;
/// linked into the host (`static`), every block; with `own-allocator`, none.
#[inline(always)]
pub(crate) fn is_hosts(p: *const u8) -> bool {
    if cfg!(feature = "static") {
        true
    } else if cfg!(feature = "own-allocator") {
        false
    } else {
        mode() == HOSTS && !early(p)
    }
}

/// Takes a block out of this version's count: it now belongs to the host (a typed
/// result the host adopts).
#[inline(always)]
pub(crate) fn hand_over(size: usize) {
    count(size, -1);
}

/// This library's `#[global_allocator]` (set by `export_plugin!`): the host's global
/// allocator, counted per version.
pub struct HostHeap;

// SAFETY: every block comes from the host's allocator with the caller's layout (which
// the host checks), from the arena (never reused, never freed), or from the system
// allocator, and goes back to where it came from: the arena's by address, the others by
// `MODE`, which never lets one library use both (see there).
unsafe impl GlobalAlloc for HostHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if let Some(h) = heap() {
            if !crate::forever::capturing() {
                // SAFETY: any pair is valid for the host's `alloc`.
                return counted(unsafe { (h.alloc)(l.size(), l.align()) }, l);
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_general(l) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if let Some(h) = heap() {
            if !crate::forever::capturing() {
                // SAFETY: any pair is valid for the host's `alloc_zeroed`.
                return counted(unsafe { (h.alloc_zeroed)(l.size(), l.align()) }, l);
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_zeroed_general(l) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if early(p) {
            return;
        }
        match heap() {
            Some(h) => {
                count(l.size(), -1);
                // SAFETY: not in the arena and the mode is `HOSTS` (`heap`), so the host's
                // allocator made `p`, with layout `l` (GlobalAlloc's contract).
                unsafe { (h.dealloc)(p, l.size(), l.align()) }
            }
            // SAFETY: forwarded.
            None => unsafe { dealloc_general(p, l) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if !early(p) {
            if let Some(h) = heap() {
                // SAFETY: as in `dealloc`; `new_size` is checked by the host.
                let q = unsafe { (h.realloc)(p, l.size(), l.align(), new_size) };
                if !q.is_null() {
                    count(l.size(), -1);
                    count(new_size, 1);
                }
                return q;
            }
        }
        // SAFETY: forwarded.
        unsafe { self.realloc_general(p, l, new_size) }
    }
}

/// The general paths of [`HostHeap`]'s functions, by [`MODE`]: taken when the Rust heap
/// is not (yet) the host's, or while the log bridge installs (`forever`). Out of line,
/// so the fast paths above stay a few instructions.
impl HostHeap {
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_general(&self, l: Layout) -> *mut u8 {
        match (mode(), host()) {
            (HOSTS, Some(h)) if !crate::forever::capturing() => {
                // SAFETY: any pair is valid for the host's `alloc`.
                counted(unsafe { (h.alloc)(l.size(), l.align()) }, l)
            }
            (SYSTEM, _) => system_alloc(l, false),
            // Not counted: arena blocks go with the library. (A full arena while the
            // log bridge installs: the host's allocator after all.)
            (HOSTS, Some(h)) => match early_alloc(l) {
                // SAFETY: as above.
                p if p.is_null() => counted(unsafe { (h.alloc)(l.size(), l.align()) }, l),
                p => p,
            },
            _ => unattached_alloc(l, false),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_zeroed_general(&self, l: Layout) -> *mut u8 {
        match (mode(), host()) {
            (HOSTS, Some(h)) if !crate::forever::capturing() => {
                // SAFETY: as in `alloc`.
                counted(unsafe { (h.alloc_zeroed)(l.size(), l.align()) }, l)
            }
            (SYSTEM, _) => system_alloc(l, true),
            // The arena is zeroed and never reused.
            (HOSTS, Some(h)) => match early_alloc(l) {
                // SAFETY: as above.
                p if p.is_null() => counted(unsafe { (h.alloc_zeroed)(l.size(), l.align()) }, l),
                p => p,
            },
            _ => unattached_alloc(l, true),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::realloc`.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_general(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if !early(p) {
            return match (mode(), host()) {
                (HOSTS, Some(h)) => {
                    // SAFETY: as in `dealloc`; `new_size` is checked by the host.
                    let q = unsafe { (h.realloc)(p, l.size(), l.align(), new_size) };
                    if !q.is_null() {
                        count(l.size(), -1);
                        count(new_size, 1);
                    }
                    q
                }
                // SAFETY: as in `dealloc`: the system allocator's block.
                _ => unsafe { std::alloc::System.realloc(p, l, new_size) },
            };
        }
        // An arena block: move it wherever new blocks go now.
        let Ok(nl) = Layout::from_size_align(new_size, l.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `nl` is valid; GlobalAlloc's contract makes it non-empty.
        let q = unsafe { self.alloc(nl) };
        if !q.is_null() {
            // SAFETY: both blocks are live and at least this long; distinct.
            unsafe { std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size)) };
        }
        q
    }
}

/// `HostHeap::dealloc` of a block outside the arena when [`HEAP`] is null.
///
/// # Safety
/// As `GlobalAlloc::dealloc`, and `p` is not in the arena.
#[cold]
#[inline(never)]
unsafe fn dealloc_general(p: *mut u8, l: Layout) {
    match (mode(), host()) {
        (HOSTS, Some(h)) => {
            count(l.size(), -1);
            // SAFETY: not in the arena and the mode is `HOSTS`, so the host's allocator
            // made `p`, with layout `l` (GlobalAlloc's contract).
            unsafe { (h.dealloc)(p, l.size(), l.align()) }
        }
        // SAFETY: not in the arena and not the host's: the system allocator's.
        _ => unsafe { std::alloc::System.dealloc(p, l) },
    }
}

/// A host block of `len` bytes holding a copy of `bytes[..len]`, for a plugin whose Rust
/// heap is not the host's (`own-allocator`) or a block of the early arena; null with
/// `len == 0`.
///
/// # Panics
/// When the host's allocator fails, or before the host attached.
pub(crate) fn copy_to_host(bytes: &[u8]) -> *mut u8 {
    copy_to_host_aligned(bytes, 1)
}

/// As [`copy_to_host`], in a block aligned to `align` (a power of two).
///
/// # Panics
/// As `copy_to_host`.
pub(crate) fn copy_to_host_aligned(bytes: &[u8], align: usize) -> *mut u8 {
    if bytes.is_empty() {
        return std::ptr::null_mut();
    }
    let h = host().expect("a typed call runs after the host attached");
    // SAFETY: any pair is valid for the host's `alloc`.
    let p = unsafe { (h.alloc)(bytes.len(), align) };
    assert!(!p.is_null(), "the host's allocator failed");
    // SAFETY: `p` is a fresh block of `bytes.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of this binary that touches the allocator's state (`MODE`, the arena).
    #[test]
    fn a_library_used_without_the_host_falls_back_to_the_system_allocator_for_good() {
        assert_eq!(mode(), UNATTACHED);
        let l = Layout::from_size_align(1024, 8).unwrap();
        // More than the arena holds: the first blocks from the arena, the rest from the
        // system allocator, none failing.
        let blocks: Vec<*mut u8> = (0..2 * ARENA / 1024)
            // SAFETY: a valid, non-empty layout.
            .map(|_| unsafe { HostHeap.alloc(l) })
            .collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        assert!(early(blocks[0]));
        assert!(!early(*blocks.last().unwrap()));
        assert_eq!(mode(), SYSTEM);
        // Linked into a host (`static`, as a workspace build of the host unifies it),
        // every block is the host's whatever the mode; else none is now.
        if !cfg!(any(feature = "static", feature = "own-allocator")) {
            assert!(blocks.iter().all(|&p| !is_hosts(p)));
        }
        // SAFETY: blocks of `HostHeap` with layout `l`, each freed once; the first is
        // grown (moved out of the arena) before.
        unsafe {
            let grown = HostHeap.realloc(blocks[0], l, 4096);
            assert!(!grown.is_null() && !early(grown));
            HostHeap.dealloc(grown, Layout::from_size_align(4096, 8).unwrap());
            for &p in &blocks[1..] {
                HostHeap.dealloc(p, l);
            }
        }
        assert_eq!(mode(), SYSTEM);
    }
}
