//! Async functions (`export_plugin!(.., async { handle: fn(Request) -> Response })`) and
//! what their code can await of the host: [`sleep`] and [`spawn_async`].
//!
//! A plugin's `async fn handle(&self, req: Request) -> Response` becomes, at the
//! boundary, an [async-ffi](async_ffi) `FfiFuture` made by the plugin, which the host
//! polls from its own executor (a tokio runtime, say) and whose output it copies into a
//! host-owned value. The argument is moved into the plugin: a `Pod`, or a
//! `#[derive(StableAbi)]` struct of owned fields (`RString`, `RVec`, ...) declared with
//! [`typed_result!`](crate::typed_result) (which makes it a [`HostCopy`]); `()` for none.
//! The result is any typed-function result ([`Ret`]).
//!
//! While such a future is pending, the host keeps the version that made it loaded (its
//! instance too: the future may borrow `&self`); a reload does not wait for it, and
//! the old version unloads once the future completes or is dropped. A panic in the
//! future's `poll` (or in the method before its future exists) is caught here and
//! reaches the host as an error with the panic's message.
//!
//! # What this plugin's own copy of tokio cannot do
//!
//! A plugin carries its own copy of every crate it uses, tokio included, and that copy
//! has no runtime: the host's runtime (its reactor and timer) belongs to the host's
//! copy. `tokio::time::sleep`, `tokio::net::TcpStream` and `tokio::spawn` in plugin
//! code panic ("there is no reactor running") or, with a runtime the plugin starts
//! itself, run on threads the host does not know and that keep running the version's
//! code after it was replaced. Await the host's services instead: [`sleep`] for time,
//! [`spawn_async`] for background work, and let the host do I/O (hand the plugin the
//! bytes, as the HTTP demo's handlers get a request and return a response). Pure
//! future combinators (`futures`' `join!`/`select!`, channels of `futures`, async
//! locks that need no runtime) work, as they only use the waker they are given.
//!
//! # Wakers
//!
//! The waker plugin code sees is the host's, wrapped: async-ffi hands a pointer to
//! the host's waker across, and a clone made in plugin code is a `Waker` whose vtable is
//! this library's copy of async-ffi (which forwards to the host's). Such a clone must
//! not outlive this version; the host's services that keep one ([`sleep`]) keep the
//! version loaded until they woke or dropped it. Do not hand one to a thread or a
//! static that outlives the version.

use crate::host::{current, SpawnError};
use crate::panic::{panic_text, warn_stderr};
use crate::typed::{HostCopy, Ret};
use crate::vtable::{AsyncRet, FailKind, Failure};
use abi_stable::std_types::RResult;
use abi_stable::StableAbi;
use async_ffi::FfiFuture;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One async method, named by a marker type `export_plugin!` generates.
#[doc(hidden)]
pub trait AsyncMethod {
    /// The plugin type the method belongs to.
    type Plugin: crate::Plugin;
    /// The argument, moved into the plugin (see the module docs).
    type Arg: HostCopy + StableAbi + Send + 'static;
    /// The result.
    type Ret: Ret;
    /// Calls the method: its future may borrow the instance.
    fn call(plugin: &Self::Plugin, arg: Self::Arg) -> impl Future<Output = Self::Ret> + Send + '_;
}

/// The plugin-made future of an async call, as the host receives it: `M`'s future,
/// its result turned into its wire form, every panic caught. Inlined into the entry
/// point (`glue::async_call`), its only caller.
#[doc(hidden)]
#[inline(always)]
pub fn start<M: AsyncMethod>(
    plugin: &'static M::Plugin,
    arg: M::Arg,
) -> AsyncRet<<M::Ret as Ret>::Wire>
where
    <M::Ret as Ret>::Wire: Send,
{
    let fut = M::call(plugin, arg);
    FfiFuture::new(Guarded::new(async move { fut.await.into_wire() }))
}

/// A future whose `poll` and drop never unwind: a panic in `poll` is its output
/// (`RErr` with the message), a panic in its drop is reported on stderr and stops there.
/// What crosses the boundary must be such a future (async-ffi aborts the process on a
/// panic in a drop).
#[doc(hidden)]
pub struct Guarded<F> {
    // ManuallyDrop: dropped in place, under `catch_unwind`, by `Drop`.
    inner: ManuallyDrop<F>,
}

impl<F> Guarded<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Guarded<F> {
        Guarded {
            inner: ManuallyDrop::new(inner),
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = RResult<F::Output, Failure>;

    // Inlined into async-ffi's poll function, which writes its answer in place: called,
    // the answer (56 bytes for a word-sized output) is built on this frame and copied.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: `inner` is never moved out of a pinned `Guarded`
        // (nothing hands out `&mut F` but this, and `Drop` drops it in place).
        let inner = unsafe { self.map_unchecked_mut(|g| &mut *g.inner) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(RResult::ROk(v)),
            Err(payload) => {
                let message = panic_text(payload);
                Poll::Ready(RResult::RErr(Failure {
                    kind: FailKind::Panic,
                    message: message.into(),
                }))
            }
        }
    }
}

impl<F> Drop for Guarded<F> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `inner` is not used after.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
            ManuallyDrop::drop(&mut self.inner)
        }));
        if let Err(payload) = dropped {
            let message = panic_text(payload);
            warn_stderr(format_args!(
                "hotswap: a plugin future panicked while being dropped: {message}"
            ));
        }
    }
}

/// A future that completes after a [`Duration`], served by the host ([`sleep`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep(Option<FfiFuture<()>>);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(f) => Pin::new(f).poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// Waits for `duration` on the host's timer: the async sleep of plugin code (where
/// `tokio::time::sleep` panics, see the module docs). Works under any executor the host
/// polls with, tokio or not. Precision is the host timer thread's, about a millisecond.
///
/// Completes at once when called before the host created this plugin, or from code of
/// a version already freed.
pub fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `ctx` is the host's own pointer, passed back unchanged.
    Sleep(current().map(|host| unsafe { (host.vtable.sleep)(host.ctx, nanos) }))
}

/// Runs `task` to completion in the background, on a thread the host starts and
/// tracks (as [`spawn`](crate::spawn) does for a closure): this version is not unloaded
/// while the task runs, status counts it among the version's tasks, and a panic inside
/// it is caught and reported on stderr. Await [`sleep`] in it, not the plugin's own
/// tokio. Meant for a few long-running jobs: each task has a thread. A job that runs
/// until stopped must end once [`retired`](crate::retired) turns true (poll it, e.g.
/// `while !retired() { sleep(…).await }`): `on_free` runs only after the last task
/// ended, so it cannot be what stops one.
///
/// Fails when called before the host created this plugin, or when the host refuses (the
/// version is being freed).
pub fn spawn_async(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SpawnError> {
    let host =
        current().ok_or_else(|| SpawnError("the host has not created this plugin yet".into()))?;
    let guarded = Guarded::new(task);
    let task = FfiFuture::new(async move {
        if let RResult::RErr(f) = guarded.await {
            warn_stderr(format_args!(
                "hotswap: a plugin task panicked: {}",
                f.message
            ));
        }
    });
    // SAFETY: `ctx` is the host's own pointer, passed back unchanged.
    match unsafe { (host.vtable.spawn_future)(host.ctx, name.into(), task) } {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(f) => Err(SpawnError(f.message.into_string())),
    }
}
