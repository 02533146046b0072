//! openraft's [`AsyncRuntime`] on glommio.
//!
//! Each core runs one pinned glommio `LocalExecutor`; every Raft group of the
//! shards on that core lives in it, so openraft must spawn with
//! `spawn_local` and never ask for `Send` (hence openraft's `single-threaded`
//! feature). Timers are glommio's (driven by the executor's io_uring reactor),
//! time is `std::time::Instant`, and channels/mutex are `openraft-rt-tokio`'s
//! wrappers of `tokio::sync`, which need no tokio runtime.
//!
//! Panics: glommio does not catch a panic in a task; it unwinds out of
//! `LocalExecutor::run` and takes the core down. That is deliberate (a failed
//! assertion must be a visible crash), so a [`JoinError`] only ever means the
//! task was cancelled and [`GlommioRuntime::is_panic`] is always `false`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use openraft_rt::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::{TokioMpsc, TokioMutex, TokioOneshot, TokioWatch};

/// io_uring buffer memory of an executor made by [`AsyncRuntime::new`]. That
/// constructor exists only for tests and tools (production runs inside the
/// node's own per-core executors), so it gets glommio's minimum-ish budget
/// rather than the 10 MiB default.
const TEST_EXECUTOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// The glommio runtime as seen by openraft.
///
/// In production it is only a type parameter (the node's per-core executors
/// are already running); the executor inside is used by
/// [`AsyncRuntime::new`]/[`AsyncRuntime::block_on`], which exist for tests.
pub struct GlommioRuntime {
    executor: LocalExecutor,
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime")
            .field("executor_id", &self.executor.id())
            .finish()
    }
}

/// Why awaiting a spawned task produced no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The task was cancelled (e.g. its executor shut down) before finishing.
    #[error("glommio task was cancelled before it completed")]
    Cancelled,
}

/// Handle of a task spawned through openraft: detached, so dropping the handle
/// lets the task run on (tokio semantics, which openraft assumes).
pub struct JoinHandle<T> {
    inner: glommio::task::JoinHandle<T>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // glommio's handle yields None for both "cancelled" and "panicked"; a
        // panic never reaches here (it unwinds out of the executor).
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|output| output.ok_or(JoinError::Cancelled))
    }
}

/// A glommio timer whose output is `()`, as openraft's `Sleep` must be.
pub struct Sleep {
    timer: Timer,
}

impl Sleep {
    fn after(duration: Duration) -> Self {
        Self {
            timer: Timer::new(duration),
        }
    }

    fn until(deadline: Instant) -> Self {
        Self::after(deadline.saturating_duration_since(Instant::now()))
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_fired_at| ())
    }
}

/// The deadline of a [`Timeout`] passed before its future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// A future raced against a glommio timer. The future is polled first, so
    /// a future that is ready at the deadline still wins.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand_rt::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        JoinHandle {
            inner: glommio::spawn_local(future).detach(),
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep::after(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future,
            sleep: Sleep::after(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future,
            sleep: Sleep::until(deadline),
        }
    }

    fn is_panic(_join_error: &Self::JoinError) -> bool {
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand_rt::rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    /// Makes an unpinned executor on the calling thread. For tests and tools:
    /// `threads` is ignored because a glommio executor is one thread.
    fn new(_threads: usize) -> Self {
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(TEST_EXECUTOR_IO_MEMORY_BYTES)
            .make()
            .expect("glommio executor (io_uring) could not be created");
        Self { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft_rt::testing::Suite;

    #[test]
    fn glommio_runtime_passes_openraft_conformance_suite() {
        Suite::<GlommioRuntime>::test_all();
    }

    #[test]
    fn timeout_reports_elapsed_when_future_is_slower_than_deadline() {
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let slow = GlommioRuntime::sleep(Duration::from_millis(200));
            let started = Instant::now();
            let result = GlommioRuntime::timeout(Duration::from_millis(5), slow).await;
            assert_eq!(result, Err(Elapsed));
            assert!(started.elapsed() < Duration::from_millis(200));
        });
    }

    #[test]
    fn dropped_join_handle_does_not_cancel_task() {
        use openraft_rt::{Oneshot, OneshotSender};
        let mut rt = GlommioRuntime::new(1);
        let value = rt.block_on(async {
            let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel::<u32>();
            let handle = GlommioRuntime::spawn(async move {
                GlommioRuntime::sleep(Duration::from_millis(1)).await;
                let _ = tx.send(7);
            });
            drop(handle);
            rx.await
        });
        assert_eq!(value, Ok(7));
    }
}
