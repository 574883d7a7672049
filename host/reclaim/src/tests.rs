//! The domain's stress and unit tests (normal builds; the loom models are in
//! `tests/loom.rs`).

use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;

/// Set in the child process that reruns the stress test in fence mode.
const FENCE_CHILD: &str = "HOTSWAP_RECLAIM_FENCE_CHILD";

/// Tests that need slots of their own take this for reading; the one that takes
/// every free slot index takes it for writing, so the others never run slot-less.
static SLOTS_GUARD: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

const LIVE: u64 = 0x11FE;
const DEAD: u64 = 0xDEAD;

/// A value that counts how many of its kind are alive, and marks itself dead when
/// dropped (so that a reader reaching a freed one is likely to see it).
struct Tracked {
    value: u64,
    state: AtomicU64,
    alive: Arc<AtomicU64>,
}

impl Tracked {
    fn value(&self) -> u64 {
        assert_eq!(self.state.load(Ordering::SeqCst), LIVE, "read after free");
        self.value
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.state.store(DEAD, Ordering::SeqCst);
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pinned section ([`Domain::with_section`]) that runs a closure on what it pinned.
struct Reading<F>(F);

impl<T, R, F: FnOnce(&T, Pinned) -> R> Section<T> for Reading<F> {
    type Output = R;
    #[inline(always)]
    fn run(self, value: &T, pinned: Pinned) -> R {
        (self.0)(value, pinned)
    }
}

fn tracked(value: u64, alive: &Arc<AtomicU64>) -> Arc<Tracked> {
    alive.fetch_add(1, Ordering::SeqCst);
    Arc::new(Tracked {
        value,
        state: AtomicU64::new(LIVE),
        alive: alive.clone(),
    })
}

#[test]
fn readers_never_see_freed_values() {
    let _slots = SLOTS_GUARD.read();
    if std::env::var_os(FENCE_CHILD).is_some() {
        assert!(mode().starts_with("fence"), "{}", mode());
    }
    let alive = Arc::new(AtomicU64::new(0));
    let domain = Arc::new(Domain::new(tracked(0, &alive)));
    // The pins below are hazard pins, fast (membarrier) or fenced, never Arc clones.
    assert_ne!(domain.hot.own, FULL);
    let fast = barrier::membarrier_registered();
    assert_eq!(domain.hot.check == domain.hot.own, fast);
    let stop = Arc::new(AtomicBool::new(false));
    // Readers announce themselves, so publishing starts only once all are reading
    // (on a loaded machine they might otherwise not run before it ends).
    let started = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let domain = domain.clone();
            let stop = stop.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Both kinds of pinned section, each nesting the other: a nested
                    // pin of the same domain sees the same value.
                    let v = if calls % 2 == 0 {
                        domain.with(|t| {
                            let inner = domain.with_section(Reading(|u: &Tracked, _| u.value()));
                            assert_eq!(inner, t.value());
                            t.value()
                        })
                    } else {
                        domain.with_section(Reading(|t: &Tracked, _| {
                            let inner = domain.with(|u| u.value());
                            assert_eq!(inner, t.value());
                            t.value()
                        }))
                    };
                    assert!(v >= last, "went backwards: {v} after {last}");
                    last = v;
                    if calls == 0 {
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 4 {
        std::thread::yield_now();
    }
    let mut pending = Vec::new();
    for i in 1..=2000 {
        pending.push(domain.publish(tracked(i, &alive)));
        reclaim(&mut pending).expect("the barrier runs");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    reclaim(&mut pending).expect("the barrier runs");
    assert!(pending.is_empty(), "nothing is pinned once readers stopped");
    // Only the published value is alive.
    assert_eq!(alive.load(Ordering::SeqCst), 1);
}

#[test]
fn readers_never_see_freed_values_in_fence_mode() {
    // Membarrier is set up once per process, so fence mode needs a process of its
    // own: this test binary again, running only the stress test, with it disabled.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::readers_never_see_freed_values",
            "--nocapture",
        ])
        .env("HOTSWAP_NO_MEMBARRIER", "1")
        .env(FENCE_CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "the stress test ran: {text}");
}

#[test]
fn a_nested_pin_of_the_same_domain_keeps_the_outer_value() {
    let _slots = SLOTS_GUARD.read();
    let alive = Arc::new(AtomicU64::new(0));
    let domain = Domain::new(tracked(1, &alive));
    let mut pending = Vec::new();
    domain.with_pinned(|outer, how| {
        assert_eq!((outer.value, how), (1, Pinned::Fresh));
        pending.push(domain.publish(tracked(2, &alive)));
        reclaim(&mut pending).expect("the barrier runs");
        assert_eq!(pending.len(), 1, "the outer pin protects value 1");
        domain.with_pinned(|inner, how| {
            assert_eq!((inner.value, how), (1, Pinned::Outer));
        });
        domain.with_section(Reading(|inner: &Tracked, how| {
            assert_eq!((inner.value, how), (1, Pinned::Outer));
        }));
    });
    domain.with_section(Reading(|outer: &Tracked, how| {
        assert_eq!((outer.value, how), (2, Pinned::Fresh));
        domain.with_pinned(|inner, how| {
            assert_eq!((inner.value, how), (2, Pinned::Outer));
        });
    }));
    domain.with_pinned(|t, how| assert_eq!((t.value, how), (2, Pinned::Fresh)));
    reclaim(&mut pending).expect("the barrier runs");
    assert!(pending.is_empty());
    assert_eq!(alive.load(Ordering::SeqCst), 1);
}

#[test]
fn pins_of_different_domains_nest() {
    let _slots = SLOTS_GUARD.read();
    let alive = Arc::new(AtomicU64::new(0));
    let a = Domain::new(tracked(10, &alive));
    let b = Domain::new(tracked(20, &alive));
    let sum = a.with(|x| {
        b.with(|y| {
            a.with_pinned(|x2, how| {
                assert_eq!(how, Pinned::Outer);
                x.value + y.value + x2.value
            })
        })
    });
    assert_eq!(sum, 40);
    // Both slots were given back: b pins afresh on its own.
    b.with_pinned(|y, how| assert_eq!((y.value, how), (20, Pinned::Fresh)));
}

#[test]
fn domains_beyond_the_slots_pin_by_arc_and_indices_are_reused() {
    let _slots = SLOTS_GUARD.write();
    let alive = Arc::new(AtomicU64::new(0));
    // More domains than slots (other tests may hold some as well).
    let domains: Vec<_> = (0..SLOTS as u64 + 4)
        .map(|i| Domain::new(tracked(i, &alive)))
        .collect();
    let overflow = domains
        .iter()
        .rfind(|d| d.hot.own == FULL)
        .expect("some domain found no free slot");
    let before = overflow.with(|t| t.value());
    // A value a slow-path pin uses survives its retirement and free until the pin
    // ends: the pin holds its own Arc. Nested pins stay on it.
    overflow.with(|t| {
        let mut pending = vec![overflow.publish(tracked(1000, &alive))];
        reclaim(&mut pending).expect("the barrier runs");
        assert!(pending.is_empty(), "a slow-path pin holds no slot");
        assert_eq!(t.value(), before);
        overflow.with_pinned(|nested, how| {
            assert_eq!((nested.value(), how), (before, Pinned::Outer));
        });
    });
    overflow.with_pinned(|t, how| assert_eq!((t.value(), how), (1000, Pinned::Fresh)));
    // The same through a section, whose cold path takes the pin and hands it back.
    overflow.with_section(Reading(|t: &Tracked, how| {
        assert_eq!((t.value(), how), (1000, Pinned::Fresh));
        let mut pending = vec![overflow.publish(tracked(1001, &alive))];
        reclaim(&mut pending).expect("the barrier runs");
        assert_eq!(t.value(), 1000, "the section's Arc pin holds it");
        overflow.with_section(Reading(|nested: &Tracked, how| {
            assert_eq!((nested.value(), how), (1000, Pinned::Outer));
        }));
    }));
    overflow.with_pinned(|t, how| assert_eq!((t.value(), how), (1001, Pinned::Fresh)));
    for (i, d) in domains.iter().enumerate() {
        if !std::ptr::eq(d, overflow) {
            assert_eq!(d.with(|t| d.with(|u| t.value + u.value)), 2 * i as u64);
        }
    }
    drop(domains);
    assert_eq!(alive.load(Ordering::SeqCst), 0, "every value was released");
    let again = Domain::new(tracked(7, &alive));
    assert_ne!(again.hot.own, FULL, "dropped domains gave their slots back");
    assert_eq!(again.with(|t| t.value), 7);
}

#[test]
fn pins_from_thread_local_destructors_work() {
    let _slots = SLOTS_GUARD.read();
    struct PinOnExit(Arc<Domain<u64>>, std::sync::mpsc::Sender<u64>);
    impl Drop for PinOnExit {
        fn drop(&mut self) {
            let plain = self.0.with(|v| *v);
            let section = self.0.with_section(Reading(|v: &u64, _| *v));
            let _ = self.1.send(plain + section);
        }
    }
    thread_local! {
        static PIN_ON_EXIT: std::cell::RefCell<Option<PinOnExit>> =
            const { std::cell::RefCell::new(None) };
    }
    let domain = Arc::new(Domain::new(Arc::new(5u64)));
    for pinned_before in [false, true] {
        let (tx, rx) = std::sync::mpsc::channel();
        let d = domain.clone();
        std::thread::spawn(move || {
            PIN_ON_EXIT.with(|p| *p.borrow_mut() = Some(PinOnExit(d.clone(), tx)));
            if pinned_before {
                // Registers the record, whose release may run before or after the
                // destructor above: the destructor's pin then finds it exiting.
                assert_eq!(d.with(|v| *v), 5);
            }
        })
        .join()
        .expect("a pin during teardown must not panic");
        assert_eq!(rx.recv().unwrap(), 10, "pinned before: {pinned_before}");
    }
}

#[test]
fn a_section_that_panics_ends_its_pin() {
    let _slots = SLOTS_GUARD.read();
    let alive = Arc::new(AtomicU64::new(0));
    let domain = Domain::new(tracked(1, &alive));
    // Many times in one process, on the fast path and nested (the cold path's guard).
    for i in 0..200u64 {
        let nested = i % 2 == 1;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let boom = |t: &Tracked, _| -> u64 { panic!("section {i} on {}", t.value()) };
            if nested {
                domain.with(|_| domain.with_section(Reading(boom)))
            } else {
                domain.with_section(Reading(boom))
            }
        }));
        assert!(caught.is_err());
        let mut pending = vec![domain.publish(tracked(i + 2, &alive))];
        reclaim(&mut pending).expect("the barrier runs");
        assert!(pending.is_empty(), "round {i}: the panicked pin was ended");
    }
    assert_eq!(alive.load(Ordering::SeqCst), 1);
}
