//! [`AsyncFunc`]: a handle on an async plugin function, and [`AsyncCall`], the future
//! one call returns.

use crate::call_stats::Kind;
use crate::error::CallError;
use crate::generation::Generation;
use crate::shared::Shared;
use crate::version::Version;
use abi_stable::std_types::RResult;
use abi_stable::StableAbi;
use async_ffi::{ContextExt, FfiContext, FfiFuture, FfiPoll};
use hotswap_abi::vtable::{AsyncRet, Failure, TypedCall};
use hotswap_plugin_api::typed::{HostCopy, Ret};
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A handle on an async plugin function (`export_plugin!(.., async { handle: fn(A) ->
/// R })`), from [`PluginManager::async_func`](crate::PluginManager::async_func): `A`
/// is the argument, moved into the plugin (a `Pod`, `()`, or a struct of owned fields
/// declared with `typed_result!`), `R` the result (any
/// [`Ret`](hotswap_plugin_api::typed::Ret)).
///
/// [`call`](Self::call) starts the call on the generation current at that moment and
/// returns a future to await from any executor (tokio or another: the plugin's
/// awaits of the host's timer need none). Until that future completes or is dropped,
/// it keeps the plugin's version loaded (instance and library): a reload does not wait
/// for it, later calls go to the new version, and the old one unloads after it. Its
/// output is copied into a host-owned `R` before the future returns it.
///
/// Valid across reloads, like [`Func`](crate::Func); cheap to clone.
pub struct AsyncFunc<A, R> {
    shared: Arc<Shared>,
    symbol: usize,
    plugin: Arc<str>,
    function: Arc<str>,
    _signature: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for AsyncFunc<A, R> {
    fn clone(&self) -> Self {
        AsyncFunc {
            shared: self.shared.clone(),
            symbol: self.symbol,
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            _signature: PhantomData,
        }
    }
}

impl<A, R> AsyncFunc<A, R>
where
    A: HostCopy + StableAbi + Send + 'static,
    R: Ret,
    R::Wire: Send,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        symbol: usize,
        plugin: &str,
        function: &str,
    ) -> AsyncFunc<A, R> {
        AsyncFunc {
            shared,
            symbol,
            plugin: plugin.into(),
            function: function.into(),
            _signature: PhantomData,
        }
    }

    /// Starts the function on the current generation (or, nested in a call of this
    /// manager, on that call's) and returns its future.
    ///
    /// The future's output is `Err` when the generation lacks the plugin or function
    /// or has another signature for it, or when the plugin's code panicked (in the
    /// method or in a poll of its future; caught in the plugin). What the function
    /// returns, an `Err` of its own included, is the `Ok` value.
    ///
    /// The call runs up to its first pending await inside `call` (polled once there, on
    /// the pinned generation, with a waker that does nothing): a function that completes
    /// at once is done when `call` returns, and awaiting the future only hands its
    /// output over.
    #[inline]
    pub fn call(&self, arg: A) -> AsyncCall<R> {
        // The id of the version a call that completes at once ran on, written inside the
        // pin: the pinned section returns only the small `Started` (two registers for a
        // word-sized `R`), not the whole state, which would come back through memory.
        let mut ran_on = 0;
        let started = self
            .shared
            .domain
            .with_pinned(|g, _| self.start(g, arg, &mut ran_on));
        AsyncCall {
            state: match started {
                Started::Ready(out) => State::Ready {
                    out,
                    version: ran_on,
                },
                Started::Running(r) => State::Running(r),
                Started::Failed(e) => State::Failed(e),
            },
        }
    }

    /// Starts the call on a pinned generation: the plugin makes the future, which is
    /// polled once here, inside the pin, with a waker that does nothing. One that is
    /// ready (most handlers) is done: its output is made host-owned and its future
    /// dropped while the generation is pinned, and the version's refcount is never
    /// touched. One that is pending takes the version with it before the pin ends; the
    /// first poll of the `AsyncCall` polls it again with the caller's waker (a future
    /// must expect a poll it was not woken for, and wakes the waker of its latest poll).
    #[inline]
    fn start(&self, g: &Generation, arg: A, ran_on: &mut u64) -> Started<R> {
        let Some(slot) = g.typed.get(self.symbol) else {
            // An outer generation pinned before this handle was made.
            return Started::Failed(Box::new(CallError::UnknownPlugin(self.plugin.to_string())));
        };
        if let Some(stats) = slot.stats() {
            // Counted when it starts; not timed (its time is the caller's awaiting).
            stats.count(Kind::Async);
        }
        // SAFETY: `call` is either the TypedCall of an async function whose argument and
        // result layouts abi_stable found equal to `A`'s and `AsyncRet<R::Wire>`'s when
        // the generation was built, or `func::unresolved` for exactly these types.
        let f: TypedCall<A, AsyncRet<R::Wire>> = unsafe {
            std::mem::transmute::<*const std::ffi::c_void, TypedCall<A, AsyncRet<R::Wire>>>(
                slot.call,
            )
        };
        let mut err = MaybeUninit::<Failure>::uninit();
        // SAFETY: the instance belongs to a version the pinned generation owns (or is
        // ignored by the stub); `err` is valid for writes; `arg` is moved in. The
        // instance stays live until the future is dropped: it is dropped inside this pin
        // or `Running` holds its version.
        let ret = unsafe { f(slot.instance, arg, err.as_mut_ptr()) };
        if !ret.ok {
            return Started::Failed(Box::new(self.failed(g, slot.plugin, err)));
        }
        let version = &g.versions()[slot.plugin];
        // SAFETY: `ok` means the function returned its future.
        let mut fut = ManuallyDrop::new(unsafe { ret.value.assume_init() });
        let mut cx = Context::from_waker(Waker::noop());
        match poll_plugin(&mut fut, &mut cx, version, slot.call) {
            // Boxed: the pending state is the rare one, and the state moved on every
            // call stays a few words.
            Poll::Pending => Started::Running(Box::new(Running {
                fut,
                version: version.clone(),
                call: slot.call,
            })),
            Poll::Ready(out) => {
                // SAFETY: dropped once, here, while the pinned generation keeps the code
                // that drops it loaded; never used again.
                unsafe { ManuallyDrop::drop(&mut fut) };
                match out {
                    // Copied while the generation holds the version whose code made it.
                    Ok(w) => {
                        *ran_on = version.id();
                        // SAFETY: host code, on the output the plugin's future made
                        // with `into_wire` (its entry point's contract).
                        Started::Ready(unsafe { R::from_wire(w) })
                    }
                    Err(e) => Started::Failed(e),
                }
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, g: &Generation, plugin: usize, err: MaybeUninit<Failure>) -> CallError {
        if let Some(e) = g.typed_error(self.symbol) {
            // The stub ran: it wrote nothing and returned no future.
            return e.clone();
        }
        // SAFETY: a real function returned `!ok`, so it wrote the failure.
        let failure = unsafe { err.assume_init() };
        g.versions()[plugin].call_error(&self.function, failure)
    }

    /// The plugin this handle calls into.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The function this handle calls.
    pub fn function(&self) -> &str {
        &self.function
    }
}

/// A pending call: the plugin-made future and the version whose code it runs.
struct Running<W> {
    fut: ManuallyDrop<AsyncRet<W>>,
    /// Keeps the instance and the library alive while `fut` exists.
    version: Arc<Version>,
    /// The function's entry point: names it in an error (no name is copied per call).
    call: *const std::ffi::c_void,
}

// SAFETY: `call` is only compared, never called or dereferenced; the future is `Send`
// and the version `Send + Sync`.
unsafe impl<W: Send> Send for Running<W> {}

/// The fields of an async-ffi future (`LocalBorrowingFfiFuture`, which `FfiFuture` wraps
/// transparently) in the order of its `#[repr(C)]` layout, which is async-ffi's ABI
/// (`async_ffi::ABI_VERSION`, checked below; a change of it is a new major version) and
/// the layout abi_stable compares, field names included, between host and plugin when a
/// handle is made. Read to call the future's poll function with its answer written in
/// place: `FfiFuture::poll` returns the answer by value, moved three times on its way
/// out (stack traffic for the 56-byte answer of an async call of a word-sized output,
/// with loads of narrower stores that stall), and turns the plugin's caught panic into a
/// panic of the host that has to be caught again.
#[repr(C)]
struct FfiParts<T> {
    fut_ptr: *mut (),
    poll_fn: unsafe extern "C" fn(*mut (), *mut FfiContext<'_>) -> FfiPoll<T>,
    // Dropped through `FfiFuture`'s own `Drop`, never read here.
    _drop_fn: unsafe extern "C" fn(*mut ()),
}

const _: () = assert!(
    async_ffi::ABI_VERSION == 2,
    "FfiParts mirrors the layout of async-ffi's ABI version 2"
);
const _: () = assert!(
    std::mem::size_of::<FfiParts<u64>>() == std::mem::size_of::<AsyncRet<u64>>()
        && std::mem::align_of::<FfiParts<u64>>() == std::mem::align_of::<AsyncRet<u64>>()
);

/// Polls the plugin's future once: its output, or the error of a poll that panicked
/// (caught in the plugin, by `Guarded` with its message, or by async-ffi's poll function
/// without one), naming the function of `version` whose entry point is `call`. The
/// answer is written into this frame and read in place: the output alone is moved out,
/// and a failure is taken by reference, off the hot path.
#[inline(always)]
fn poll_plugin<W>(
    fut: &mut AsyncRet<W>,
    cx: &mut Context<'_>,
    version: &Version,
    call: *const std::ffi::c_void,
) -> Poll<Result<W, Box<CallError>>> {
    let mut answer = MaybeUninit::uninit();
    poll_in_place(fut, cx, &mut answer);
    // SAFETY: `poll_in_place` wrote it; `answer` is never dropped, so what is read out of
    // it (the output, or the failure in `failed_poll`) moves.
    match unsafe { answer.assume_init_mut() } {
        FfiPoll::Pending => Poll::Pending,
        // SAFETY: as above: read once.
        FfiPoll::Ready(RResult::ROk(w)) => Poll::Ready(Ok(unsafe { std::ptr::read(w) })),
        FfiPoll::Ready(RResult::RErr(f)) => Poll::Ready(Err(failed_poll(version, call, f))),
        FfiPoll::Panicked => Poll::Ready(Err(panicked_poll(version, call))),
    }
}

/// Polls `fut` once, as `FfiFuture::poll` does, writing the plugin's answer into
/// `answer` (initialised when this returns) instead of returning it.
#[inline(always)]
fn poll_in_place<T>(
    fut: &mut FfiFuture<T>,
    cx: &mut Context<'_>,
    answer: &mut MaybeUninit<FfiPoll<T>>,
) {
    // SAFETY: `FfiParts` has the layout of `FfiFuture<T>` (see there); the reference lives
    // while `fut` is borrowed, and the fields are only read.
    let parts = unsafe { &*std::ptr::from_mut(fut).cast::<FfiParts<T>>() };
    cx.with_ffi_context(|ctx| {
        // SAFETY: what `FfiFuture::poll` does: the future's own poll function, on its own
        // pointer, with a context that lives for the call. It never unwinds (async-ffi
        // catches every panic inside it, and it is `extern "C"`).
        answer.write(unsafe { (parts.poll_fn)(parts.fut_ptr, ctx) });
    });
}

/// The error of a poll that panicked where async-ffi caught it (outside `Guarded`: no
/// message).
#[cold]
#[inline(never)]
fn panicked_poll(version: &Version, call: *const std::ffi::c_void) -> Box<CallError> {
    call_error(
        version,
        call,
        Failure {
            kind: hotswap_abi::vtable::FailKind::Panic,
            message: "its future panicked across the boundary".into(),
        },
    )
}

/// The error of a poll whose answer was `failure`, which it moves out of (the caller
/// never drops it): see [`call_error`].
#[cold]
#[inline(never)]
fn failed_poll(
    version: &Version,
    call: *const std::ffi::c_void,
    failure: &mut Failure,
) -> Box<CallError> {
    // SAFETY: read once, from the poll's answer, which the caller does not drop.
    call_error(version, call, unsafe { std::ptr::read(failure) })
}

/// The error of a failed poll of the function whose entry point is `call`, named from
/// the version's table (no name is copied per call).
#[cold]
#[inline(never)]
fn call_error(
    version: &Version,
    call: *const std::ffi::c_void,
    failure: Failure,
) -> Box<CallError> {
    let name = version
        .vtable()
        .typed
        .iter()
        .find(|f| f.call == call)
        .map_or("?", |f| f.name.as_str());
    Box::new(version.call_error(name, failure))
}

impl<W> Drop for Running<W> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again. The plugin's code drops it
        // while `version` (dropped after this, as a field) keeps that code loaded.
        unsafe { ManuallyDrop::drop(&mut self.fut) };
        // This thread may be one that never pins (an executor's worker, a timeout's):
        // a call boundary for the per-thread state plugin code left here (see `poll_other`).
        crate::threads::run_drained();
    }
}

/// What the pinned section of [`AsyncFunc::call`] returns: small, so that for a
/// word-sized `R` it comes back in two registers (the version of a ready call is written
/// beside it).
enum Started<R: Ret> {
    Ready(R),
    Running(Box<Running<R::Wire>>),
    Failed(Box<CallError>),
}

enum State<R: Ret> {
    /// Pending at its first poll: the plugin's future and the version it runs on.
    Running(Box<Running<R::Wire>>),
    /// Completed at its first poll, inside `call`: the host-owned output, and the id of
    /// the version that made it.
    Ready {
        out: R,
        version: u64,
    },
    /// Boxed: the state, moved on every call, stays small.
    Failed(Box<CallError>),
    Done,
}

/// The future of one async call ([`AsyncFunc::call`]): `Ok(R)` with a host-owned
/// result, or `Err(CallError)` (see `call`). Dropping it before it completes drops
/// the plugin's future, then lets its version go. `Send` when `R` is, so it can be
/// spawned on a multi-threaded runtime.
#[must_use = "futures do nothing unless awaited"]
pub struct AsyncCall<R: Ret> {
    state: State<R>,
}

// Nothing is pinned through an `AsyncCall`: its output is only moved out, and the
// plugin's future lives in async-ffi's box.
impl<R: Ret> Unpin for AsyncCall<R> {}

impl<R: Ret> AsyncCall<R> {
    /// The id of the plugin version this call runs on (or ran on, when it completed
    /// inside [`AsyncFunc::call`]); `None` if it failed to start or its output was
    /// taken.
    pub fn version_id(&self) -> Option<u64> {
        match &self.state {
            State::Running(r) => Some(r.version.id()),
            State::Ready { version, .. } => Some(*version),
            _ => None,
        }
    }
}

impl<R: Ret> Future for AsyncCall<R> {
    type Output = Result<R, CallError>;

    /// Inlined for the common case, a call that completed inside `call`: the output is
    /// handed over where the caller awaits it; every other state is polled out of line.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if matches!(this.state, State::Ready { .. }) {
            if let State::Ready { out, .. } = std::mem::replace(&mut this.state, State::Done) {
                return Poll::Ready(Ok(out));
            }
        }
        this.poll_other(cx)
    }
}

impl<R: Ret> AsyncCall<R> {
    /// [`poll`](Future::poll) of every state but `Ready`.
    #[inline(never)]
    fn poll_other(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, CallError>> {
        let out = match &mut self.state {
            State::Running(r) => match poll_plugin(&mut r.fut, cx, &r.version, r.call) {
                Poll::Pending => {
                    // The poll ran plugin code on this thread, which may be one that never
                    // pins a generation (an executor's worker), so never meets the call
                    // boundary where drained versions' per-thread state is destroyed:
                    // this is one (`threads.rs`: sound anywhere no drained version's code
                    // can run, and a drained version's cannot run at all).
                    crate::threads::run_drained();
                    return Poll::Pending;
                }
                // Copied while `r` holds the version whose code made it; the plugin-made
                // value is dropped inside `from_wire`.
                // SAFETY: host code, on the output the plugin's future made with
                // `into_wire` (its entry point's contract).
                Poll::Ready(Ok(w)) => Ok(unsafe { R::from_wire(w) }),
                Poll::Ready(Err(e)) => Err(*e),
            },
            State::Ready { .. } | State::Failed(_) => {
                match std::mem::replace(&mut self.state, State::Done) {
                    State::Ready { out, .. } => return Poll::Ready(Ok(out)),
                    State::Failed(e) => return Poll::Ready(Err(*e)),
                    _ => unreachable!("matched Ready or Failed"),
                }
            }
            State::Done => panic!("AsyncCall polled after it completed"),
        };
        // Drops the plugin's future, then the version (see `Running`).
        self.state = State::Done;
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::type_layout::TLData;

    /// `FfiParts` reads async-ffi's fields by their place: they are these, in this order.
    #[test]
    fn ffi_parts_mirror_the_fields_of_async_ffis_future() {
        let layout = <FfiFuture<u64> as StableAbi>::LAYOUT;
        let inner = match layout.data() {
            // `FfiFuture` is a transparent wrapper of the future with the fields.
            TLData::Struct { fields } => fields.iter().next().expect("one field").layout(),
            other => panic!("FfiFuture is not a struct: {other:?}"),
        };
        let TLData::Struct { fields } = inner.data() else {
            panic!("LocalBorrowingFfiFuture is not a struct")
        };
        let names: Vec<String> = fields.iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(&names[..3], ["fut_ptr", "poll_fn", "drop_fn"]);
        assert_eq!(std::mem::offset_of!(FfiParts<u64>, poll_fn), 8);
        assert_eq!(std::mem::size_of::<FfiParts<u64>>(), layout.size());
    }

    fn poll_once<T>(fut: &mut FfiFuture<T>) -> FfiPoll<T> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut answer = MaybeUninit::uninit();
        poll_in_place(fut, &mut cx, &mut answer);
        // SAFETY: `poll_in_place` wrote it.
        unsafe { answer.assume_init() }
    }

    #[test]
    fn polling_in_place_answers_as_the_future_does() {
        let mut ready = FfiFuture::new(async { 41u64 + 1 });
        assert!(matches!(poll_once(&mut ready), FfiPoll::Ready(42)));

        let mut yielded = false;
        let mut later = FfiFuture::new(std::future::poll_fn(move |cx| {
            if yielded {
                Poll::Ready(String::from("done"))
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
        assert!(matches!(poll_once(&mut later), FfiPoll::Pending));
        assert!(matches!(poll_once(&mut later), FfiPoll::Ready(s) if s == "done"));

        // async-ffi catches a panic inside its poll function: answered, not unwound.
        let mut panics = FfiFuture::new(async {
            if std::hint::black_box(true) {
                panic!("a poll that panics");
            }
        });
        assert!(matches!(poll_once(&mut panics), FfiPoll::Panicked));
    }
}
