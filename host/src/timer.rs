//! The host's timer: what `hotswap_plugin_api::sleep` awaits. One thread per process,
//! started at the first sleep, so a host without an async runtime serves it too (and a
//! host with one does not need it current on the polling thread).
//!
//! The waker a sleep keeps may be plugin code (a clone made inside the plugin has the
//! vtable of the plugin's copy of async-ffi), so it must be woken or dropped while its
//! version is loaded. Each entry holds the version (`keep`) from the poll that left it a
//! waker until it fired or its future was dropped; a sleep never polled pending keeps
//! nothing (a plugin may keep an unpolled sleep in its instance or a static: holding
//! the version there would be a cycle, and the version would never unload). The timer takes the waker and the version out of the entry together,
//! under the entry's lock (which the future's drop takes too), and wakes after the lock
//! is released, the version still held until the wake returned: a wake never overlaps
//! the version's last moments, and an executor whose wake polls or drops the sleep at
//! once (on this thread) finds the lock free. An entry whose future was forgotten
//! (`mem::forget`) fires at its deadline and only then lets the version go; an entry
//! whose future was dropped leaves the queue at once (a timeout that did not fire,
//! made on every call, must not pile up until its deadline).
//!
//! The wakes run plugin code on the timer's thread, which never pins a generation, so
//! what that code registers there (a thread-local of the plugin's own runtime) would
//! never meet a call boundary: the thread runs the drained versions' per-thread items
//! itself, after each round of wakes and whenever a version drains
//! ([`crate::threads::on_drain`]).

use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What keeps a version loaded (its `Arc<Version>`, type-erased).
pub(crate) type Keep = Arc<dyn Send + Sync>;

/// What a sleep takes its [`Keep`] from when it is first polled pending.
pub(crate) type Keeper = std::sync::Weak<dyn Send + Sync>;

struct EntryState {
    /// The deadline passed (or the future was dropped).
    done: bool,
    waker: Option<Waker>,
    keep: Option<Keep>,
}

struct Entry {
    deadline: Instant,
    state: Mutex<EntryState>,
}

impl Entry {
    /// Wakes and lets go of the version (see the module docs): both taken under the
    /// entry's lock, the wake made outside it, the version dropped after the wake.
    fn fire(&self) {
        let (waker, keep) = {
            let mut st = self.state.lock();
            st.done = true;
            (st.waker.take(), st.keep.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        drop(keep);
    }
}

/// Where an entry is in the queue: its deadline, then its arrival.
type Key = (Instant, u64);

#[derive(Default)]
struct Queue {
    entries: BTreeMap<Key, Arc<Entry>>,
    seq: u64,
    /// A version drained: the thread runs its per-thread items at its next turn.
    drained: bool,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The process's timer, its thread started on first use; `None` if the thread could
/// not be started (sleeps then complete at once rather than never).
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        crate::threads::on_drain(|| {
            if let Some(t) = timer() {
                t.queue.lock().drained = true;
                t.changed.notify_one();
            }
        });
        std::thread::Builder::new()
            .name("hotswap-timer".into())
            .spawn(move || t.run())
            .ok()
            .map(|_| t)
    })
}

impl Timer {
    fn run(&self) {
        let mut q = self.queue.lock();
        loop {
            let now = Instant::now();
            let due = q
                .entries
                .first_key_value()
                .map(|(&(deadline, _), _)| deadline);
            match due {
                Some(deadline) if deadline <= now => {
                    let Some((_, entry)) = q.entries.pop_first() else {
                        continue;
                    };
                    // Not under the queue's lock: a wake may take its time, and the
                    // woken task may sleep again at once (or drop another sleep).
                    parking_lot::MutexGuard::unlocked(&mut q, move || entry.fire());
                    // What the wake's plugin code registered on this thread: run now if
                    // its version has drained meanwhile.
                    q.drained = true;
                }
                _ if q.drained => {
                    q.drained = false;
                    parking_lot::MutexGuard::unlocked(&mut q, crate::threads::run_drained);
                }
                Some(deadline) => {
                    self.changed.wait_until(&mut q, deadline);
                }
                None => self.changed.wait(&mut q),
            }
        }
    }

    /// Queues `entry`; returns its key, with which a dropped sleep leaves the queue.
    fn add(&self, entry: Arc<Entry>) -> Key {
        let mut q = self.queue.lock();
        q.seq += 1;
        let key = (entry.deadline, q.seq);
        let earliest = q.entries.first_key_value().is_none_or(|(k, _)| key < *k);
        q.entries.insert(key, entry);
        if earliest {
            self.changed.notify_one();
        }
        key
    }

    /// Takes a dropped sleep's entry out of the queue (if the timer has not already).
    fn remove(&self, key: Key) {
        let removed = self.queue.lock().entries.remove(&key);
        // Dropped after the lock: the last reference to the entry may be this one.
        drop(removed);
    }
}

/// A sleep of the host's timer: ready once its deadline passed. Registered with the
/// timer at its first pending poll.
pub(crate) struct Sleep {
    entry: Arc<Entry>,
    /// Where the entry is queued, once it is.
    queued: Option<Key>,
    /// The version, held by the entry from the first pending poll (see the module docs).
    keeper: Keeper,
}

/// Sleeps for `duration`; what `keeper` names is held from the first poll that leaves a
/// waker until the sleep fired or was dropped (see the module docs). Ready at once when
/// it is gone by then.
pub(crate) fn sleep(duration: Duration, keeper: Keeper) -> Sleep {
    let deadline = crate::deadline::after(duration);
    Sleep {
        entry: Arc::new(Entry {
            deadline,
            state: Mutex::new(EntryState {
                done: false,
                waker: None,
                keep: None,
            }),
        }),
        queued: None,
        keeper,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.entry.deadline <= Instant::now() {
            return Poll::Ready(());
        }
        {
            let mut st = self.entry.state.lock();
            if st.done {
                return Poll::Ready(());
            }
            // The waker left here may be plugin code: from now on the entry holds the
            // version, so it is woken or dropped while that code is loaded.
            if st.keep.is_none() {
                match self.keeper.upgrade() {
                    Some(keep) => st.keep = Some(keep),
                    None => return Poll::Ready(()),
                }
            }
            match &mut st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        if self.queued.is_none() {
            match timer() {
                Some(t) => self.queued = Some(t.add(self.entry.clone())),
                None => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // Only a queued sleep has a timer to leave (asking a never-queued one for it
        // would start the timer's thread).
        if let Some(key) = self.queued {
            if let Some(t) = timer() {
                t.remove(key);
            }
        }
        // Taken under the lock, so the timer has either taken them first (and holds the
        // version until its wake returned) or finds nothing; dropped here, on this
        // thread, which runs the version's code (so it is still loaded).
        let (waker, keep) = {
            let mut st = self.entry.state.lock();
            st.done = true;
            (st.waker.take(), st.keep.take())
        };
        drop(waker);
        drop(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize, std::thread::Thread);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.unpark();
        }
    }

    #[test]
    fn a_sleep_wakes_once_and_lets_go_of_what_it_keeps() {
        let (tx, rx) = std::sync::mpsc::channel();
        let keep: Keep = Arc::new(Released(Mutex::new(tx)));
        let count = Arc::new(Count(AtomicUsize::new(0), std::thread::current()));
        let waker = Waker::from(count.clone());
        let mut s = sleep(Duration::from_millis(5), Arc::downgrade(&keep));
        let mut cx = Context::from_waker(&waker);
        let first = Pin::new(&mut s).poll(&mut cx);
        // Only the entry holds it now (if it was polled pending).
        drop(keep);
        let mut pending = first.is_pending();
        while pending {
            std::thread::park();
            pending = Pin::new(&mut s).poll(&mut cx).is_pending();
        }
        // Ready: the timer fired (or the deadline passed before it did). The keep-alive
        // goes with the drop, or (if the timer fired) once its wake returned.
        drop(s);
        let released = rx.recv_timeout(Duration::from_secs(30));
        assert_eq!(released, Ok("released"), "the keep-alive is released");
        assert!(count.0.load(Ordering::SeqCst) <= 1);
    }

    /// A waker that, as some executors do, drops the sleep it wakes right away, on the
    /// timer's thread.
    struct DropOnWake(
        Mutex<Option<Sleep>>,
        Mutex<std::sync::mpsc::Sender<&'static str>>,
    );
    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            drop(self.0.lock().take());
            let _ = self.1.lock().send("woken");
        }
    }

    /// A keep-alive that says when it is dropped.
    struct Released(Mutex<std::sync::mpsc::Sender<&'static str>>);
    impl Drop for Released {
        fn drop(&mut self) {
            let _ = self.0.lock().send("released");
        }
    }

    #[test]
    fn a_wake_that_drops_the_sleep_at_once_does_not_deadlock() {
        for _ in 0..20 {
            let (tx, rx) = std::sync::mpsc::channel();
            let keep: Keep = Arc::new(Released(Mutex::new(tx.clone())));
            let wake = Arc::new(DropOnWake(Mutex::new(None), Mutex::new(tx)));
            let waker = Waker::from(wake.clone());
            let mut s = sleep(Duration::from_millis(1), Arc::downgrade(&keep));
            let ready = Pin::new(&mut s)
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            drop(keep);
            if ready {
                continue;
            }
            *wake.0.lock() = Some(s);
            // Deadlock guards, not timings: each comes within a millisecond or so;
            // before the fix the timer thread hung in the wake for good.
            let next = || {
                rx.recv_timeout(Duration::from_secs(30))
                    .expect("no deadlock")
            };
            // The version is let go only after the wake returned.
            assert_eq!(next(), "woken");
            assert_eq!(next(), "released");
            assert!(wake.0.lock().is_none(), "the wake dropped the sleep");
        }
    }

    #[test]
    fn a_dropped_sleep_leaves_the_queue_at_once() {
        let count = Arc::new(Count(AtomicUsize::new(0), std::thread::current()));
        let waker = Waker::from(count);
        let mut keys = Vec::new();
        // A timeout on every call that never fires: before, each stayed queued until
        // its deadline (an hour here), about 130 bytes a call.
        for _ in 0..1000 {
            let keep: Keep = Arc::new(());
            let mut s = sleep(Duration::from_secs(3600), Arc::downgrade(&keep));
            assert!(Pin::new(&mut s)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            keys.push(s.queued.expect("queued at its first pending poll"));
            drop(s);
        }
        let q = timer().expect("the timer runs").queue.lock();
        let left = keys.iter().filter(|k| q.entries.contains_key(k)).count();
        assert_eq!(left, 0, "dropped sleeps still queued");
    }

    #[test]
    fn a_sleep_never_polled_pending_keeps_nothing() {
        // A plugin may keep an unpolled sleep in its instance or a static: holding the
        // version from there would be a cycle, and the version would never unload.
        let keep: Keep = Arc::new(());
        let weak = Arc::downgrade(&keep);
        let mut s = sleep(Duration::from_secs(3600), weak.clone());
        drop(keep);
        assert!(weak.upgrade().is_none(), "the unpolled sleep holds nothing");
        // Polled once the version is gone: ready at once, nothing registered.
        let count = Arc::new(Count(AtomicUsize::new(0), std::thread::current()));
        let waker = Waker::from(count);
        assert!(Pin::new(&mut s)
            .poll(&mut Context::from_waker(&waker))
            .is_ready());
        assert!(s.queued.is_none());
    }

    #[test]
    fn a_dropped_sleep_drops_its_waker_and_keep_alive_at_once() {
        let keep: Keep = Arc::new(());
        let weak = Arc::downgrade(&keep);
        let count = Arc::new(Count(AtomicUsize::new(0), std::thread::current()));
        let waker = Waker::from(count.clone());
        let mut s = sleep(Duration::from_secs(3600), weak.clone());
        assert!(Pin::new(&mut s)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(keep);
        assert!(weak.upgrade().is_some(), "the polled sleep holds it");
        assert_eq!(Arc::strong_count(&count), 3, "the sleep holds a clone");
        drop(s);
        assert!(weak.upgrade().is_none());
        assert_eq!(Arc::strong_count(&count), 2, "the clone was dropped");
    }
}
