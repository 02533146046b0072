//! Store work off the cores: flushes, snapshot dumps and loads, reads of
//! finished transactions and archived cycles.
//!
//! Why not glommio's blocking pool: it has one thread per executor and
//! glommio itself runs file renames, removals and truncations there (the
//! Raft log's segments and snapshot files). A RocksDB flush that takes a
//! second would hold the log's next segment behind it. Store work gets its
//! own named threads and a bounded queue instead; the cores only await
//! the answer.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};

/// Threads doing store work for the whole node.
pub const STORE_IO_THREADS: usize = 2;

/// Jobs waiting for a store thread; more are refused (the caller's error
/// says the store is busy) rather than queued without bound.
pub const STORE_IO_QUEUE_MAX: usize = 1_024;

type Job = Box<dyn FnOnce() + Send>;

/// Why a store job gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreIoError {
    #[error("state store busy: {STORE_IO_QUEUE_MAX} store jobs already wait")]
    Busy,
    #[error("a state store job panicked")]
    Panicked,
}

fn queue() -> &'static Mutex<SyncSender<Job>> {
    static QUEUE: OnceLock<Mutex<SyncSender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(STORE_IO_QUEUE_MAX);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..STORE_IO_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("settle-store-io-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    // A panicking job must not take the thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                })
                .expect("spawning a store I/O thread");
        }
        Mutex::new(tx)
    })
}

/// Runs `f` on a store thread and waits for its result without blocking
/// the caller's core.
pub async fn run<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, StoreIoError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    match queue()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .try_send(job)
    {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(StoreIoError::Busy),
        Err(TrySendError::Disconnected(_)) => unreachable!("store threads never stop"),
    }
    // A job that panicked dropped its sender.
    rx.await.map_err(|_| StoreIoError::Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_off_the_core_and_answers() {
        let ex = glommio::LocalExecutor::default();
        ex.run(async {
            let name = run(|| std::thread::current().name().map(str::to_string))
                .await
                .unwrap();
            assert!(name.unwrap().starts_with("settle-store-io-"));
        });
    }
}
