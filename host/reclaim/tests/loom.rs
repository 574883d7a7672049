//! loom models of the reclamation protocol (crate docs, "The loom models").
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p hotswap-reclaim --release
//! --target-dir target/loom`. Every model runs the crate's own `Domain` and `reclaim`
//! (in fence mode: loom has no membarrier). Values are `Probe`s whose state is a loom
//! `UnsafeCell`: the writer initialises it before publishing, readers read it inside
//! their pins, and the writer overwrites it ("kills" it) right where `reclaim` freed it.
//! A reader use that does not happen before the free, or an initialisation a reader does
//! not see, is a concurrent access loom reports (a read of a killed value also fails an
//! assertion). The `Arc` allocations themselves are kept alive until the model ends, so
//! that a broken variant's use-after-free is reported, not performed.
//!
//! The sound protocol must pass every model; each broken variant (`Flaw`, one ordering
//! rule left out) must fail the model that shows why the rule is needed.
#![cfg(loom)]

use hotswap_reclaim::{mode, reclaim, reclaim_with_flaw, Domain, Flaw, Pinned, Retired};
use loom::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

const LIVE: u64 = 0x11FE;
const DEAD: u64 = 0xDEAD;

/// A published value whose every access loom checks.
struct Probe {
    state: UnsafeCell<u64>,
}

// SAFETY: every access to `state` goes through loom's `UnsafeCell`, which checks that
// no two conflicting accesses are concurrent; that is what the models test.
unsafe impl Sync for Probe {}

impl Probe {
    /// A live probe, initialised by the calling thread (a tracked write).
    fn new() -> Arc<Probe> {
        let probe = Probe {
            state: UnsafeCell::new(0),
        };
        // SAFETY: not shared yet.
        probe.state.with_mut(|s| unsafe { *s = LIVE });
        Arc::new(probe)
    }

    /// What a reader does with the value: fails if it was freed.
    fn read(&self) {
        // SAFETY: loom checks this read against every write to the cell.
        let state = self.state.with(|s| unsafe { *s });
        assert_eq!(state, LIVE, "read a freed value");
    }

    /// What freeing it does (a write every reader's read must happen before).
    fn kill(&self) {
        // SAFETY: loom checks this write against every access to the cell.
        self.state.with_mut(|s| unsafe { *s = DEAD });
    }
}

/// The writer's side: publishes, reclaims, and kills what `reclaim` freed.
struct Writer {
    /// Leaked: a failing model unwinds, and dropping a domain loom has just found in a
    /// race would panic again during that unwinding.
    domain: &'static Domain<Probe>,
    flaw: Option<Flaw>,
    pending: Vec<Retired<Probe>>,
    /// Every value ever published, kept allocated until the model ends.
    keep: Vec<Arc<Probe>>,
}

impl Writer {
    fn new(flaw: Option<Flaw>) -> Writer {
        let first = Probe::new();
        let domain = match flaw {
            Some(flaw) => Domain::with_flaw(first.clone(), flaw),
            None => Domain::new(first.clone()),
        };
        Writer {
            domain: Box::leak(Box::new(domain)),
            flaw,
            pending: Vec::new(),
            keep: vec![first],
        }
    }

    /// Publishes a new value and retires the old one.
    fn publish(&mut self) {
        let value = Probe::new();
        self.keep.push(value.clone());
        self.pending.push(self.domain.publish(value));
    }

    /// Scans and frees what no slot holds; kills each value it freed.
    fn reclaim(&mut self) {
        let before: Vec<*const Probe> = self.pending.iter().map(Retired::as_ptr).collect();
        let result = match self.flaw {
            Some(flaw) => reclaim_with_flaw(&mut self.pending, flaw),
            None => reclaim(&mut self.pending),
        };
        result.expect("a fence cannot fail");
        for p in before {
            if !self.pending.iter().any(|r| r.as_ptr() == p) {
                let freed = self.keep.iter().find(|k| Arc::as_ptr(k) == p).unwrap();
                freed.kill();
            }
        }
    }

    /// Once no reader runs: everything retired is freed.
    fn finish(mut self) {
        self.reclaim();
        assert!(
            self.pending.is_empty(),
            "nothing is pinned once readers end"
        );
    }
}

/// What a model is made of.
#[derive(Clone, Copy)]
struct Shape {
    /// Reader threads.
    readers: usize,
    /// Pins each reader makes, one after the other.
    pins: usize,
    /// Each reader's pins nest a second pin of the same domain.
    nested: bool,
    /// Publish + reclaim rounds of the writer (the model's main thread).
    publishes: usize,
}

/// One reader, one pin, one publish: the smallest race between a pin and a free.
const ONE: Shape = Shape {
    readers: 1,
    pins: 1,
    nested: false,
    publishes: 1,
};

/// Runs the model `shape` of the protocol with `flaw` (or the sound one) under loom.
fn model(shape: Shape, flaw: Option<Flaw>) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let mut writer = Writer::new(flaw);
        let readers: Vec<_> = (0..shape.readers)
            .map(|_| {
                let domain = writer.domain;
                loom::thread::spawn(move || {
                    for _ in 0..shape.pins {
                        domain.with_pinned(|v, how| {
                            assert_eq!(how, Pinned::Fresh);
                            v.read();
                            if shape.nested {
                                domain.with_pinned(|inner, how| {
                                    assert_eq!(how, Pinned::Outer);
                                    assert!(std::ptr::eq(v, inner), "a nested pin moved");
                                    inner.read();
                                });
                            }
                        });
                    }
                })
            })
            .collect();
        for _ in 0..shape.publishes {
            writer.publish();
            writer.reclaim();
        }
        for r in readers {
            r.join().unwrap();
        }
        writer.finish();
    });
}

/// Runs the model with `flaw` and asserts loom finds the failure it allows.
fn caught(shape: Shape, flaw: Flaw) {
    let outcome = catch_unwind(AssertUnwindSafe(|| model(shape, Some(flaw))));
    let Err(panic) = outcome else {
        panic!("loom did not catch the broken rule {flaw:?}");
    };
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        message.contains("Causality violation") || message.contains("read a freed value"),
        "{flaw:?} failed for another reason: {message}"
    );
}

#[test]
fn loom_runs_the_fence_fallback() {
    assert!(mode().starts_with("fence"), "{}", mode());
}

#[test]
fn a_reader_never_uses_a_freed_value() {
    model(ONE, None);
}

#[test]
fn two_readers_never_use_a_freed_value() {
    model(Shape { readers: 2, ..ONE }, None);
}

#[test]
fn a_reader_pinning_twice_across_two_publishes() {
    model(
        Shape {
            pins: 2,
            publishes: 2,
            ..ONE
        },
        None,
    );
}

#[test]
fn nested_pins_stay_on_the_outer_value() {
    model(
        Shape {
            nested: true,
            ..ONE
        },
        None,
    );
}

#[test]
fn broken_reader_fence_is_caught() {
    caught(ONE, Flaw::ReaderFence);
}

#[test]
fn broken_scan_fence_is_caught() {
    caught(ONE, Flaw::ScanFence);
}

#[test]
fn broken_release_clear_is_caught() {
    caught(ONE, Flaw::RelaxedClear);
}

#[test]
fn broken_acquire_scan_is_caught() {
    caught(ONE, Flaw::RelaxedScan);
}

#[test]
fn broken_revalidation_is_caught() {
    caught(ONE, Flaw::NoRevalidate);
}
