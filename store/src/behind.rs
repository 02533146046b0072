//! Writes behind the core: [`WriteBehind`] wraps a store so that a shard's
//! core hands its batches to a writer thread of its own and goes on, while
//! every reader through the wrapper still sees every write handed over.
//!
//! Why: a payment id is random (an ISO 20022 UETR is a version-4 UUID), so
//! the keys a shard writes land all over RocksDB's memtable, and inserting
//! them one small batch per log entry cost a sealed node, or any node given
//! random ids, about 40 % of its intake on the core (BENCHMARKS.md, issue
//! 16). Batches of [`WRITE_BEHIND_OPS`] written in key order by another
//! thread cost the core nothing but the hand-over.
//!
//! The rules that keep it correct:
//!
//! - Batches are written in the order they were handed over, one at a
//!   time, by one thread: the applied index each batch carries only grows.
//! - Every [`Store`] method of the wrapper that reads (or writes, or
//!   flushes) first waits until every batch handed over so far is written,
//!   so a reader off the core, a flush before a snapshot and a dump for a
//!   replica see all of them. The core itself never waits on a read: what it
//!   looks up on the hot path it keeps beside the batches in flight, and it
//!   reads the store under the wrapper ([`WriteBehind::inner`]) only for
//!   keys no batch in flight holds.
//! - At most [`WRITE_BEHIND_QUEUE`] batches wait for the writer; handing
//!   over one more waits for a place (the store's pace becomes the core's).
//! - A failed write is kept and given back to the core at its next look
//!   ([`WriteBehind::error`]), and to every reader: the shard stops.
//!
//! Nothing written behind is durable before a [`Store::flush`] anyway (the
//! store has no WAL: the Raft log is the write-ahead log), so a crash with
//! batches in flight loses what a crash before a flush always lost, and the
//! log replays it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::{Batch, Column, Pair, Store, StoreError, StoreStats};

/// Operations a shard gathers before it hands them to its writer.
pub const WRITE_BEHIND_OPS: usize = 16_384;

/// Batches that may wait for the writer (one more is being written).
pub const WRITE_BEHIND_QUEUE: usize = 2;

struct Progress {
    /// Batches handed over (numbered from 1).
    sent: u64,
    /// The first failure of the writer, as text (it is given to every
    /// waiter, so it cannot be moved out).
    failed: Option<String>,
    /// The writer thread is gone (it failed to start, or panicked).
    gone: bool,
}

struct Shared {
    inner: Arc<dyn Store>,
    progress: Mutex<Progress>,
    /// Batches written, in order; read by the core without the lock.
    written: AtomicU64,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A store whose writes a thread of its own makes (see the module docs).
pub struct WriteBehind {
    shared: Arc<Shared>,
    /// The writer's queue, made at the first hand-over.
    queue: Mutex<Option<SyncSender<(u64, Batch)>>>,
    name: String,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("name", &self.name)
            .field("written", &self.written())
            .finish()
    }
}

impl WriteBehind {
    /// Writes to `inner` from a thread named `settle-wb-{name}`.
    pub fn new(inner: Arc<dyn Store>, name: &str) -> WriteBehind {
        WriteBehind {
            shared: Arc::new(Shared {
                inner,
                progress: Mutex::new(Progress {
                    sent: 0,
                    failed: None,
                    gone: false,
                }),
                written: AtomicU64::new(0),
                changed: Condvar::new(),
            }),
            queue: Mutex::new(None),
            name: name.to_string(),
        }
    }

    /// The store under the wrapper: reads of it do not wait for batches in
    /// flight, so they do not see them (the core's own lookups, for keys
    /// it knows no batch in flight holds).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.shared.inner
    }

    /// Batches written so far: every batch numbered up to it is in the store.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// The writer's failure, if it failed.
    pub fn error(&self) -> Option<StoreError> {
        let progress = self.shared.lock();
        Self::failure(&progress)
    }

    fn failure(progress: &Progress) -> Option<StoreError> {
        if let Some(reason) = &progress.failed {
            return Some(StoreError::Behind {
                reason: reason.clone(),
            });
        }
        progress.gone.then(|| StoreError::Behind {
            reason: "the store's writer thread is gone".into(),
        })
    }

    /// Hands `batch` to the writer; returns its number. Waits only while
    /// [`WRITE_BEHIND_QUEUE`] batches already wait.
    pub fn hand_over(&self, batch: Batch) -> Result<u64, StoreError> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            *queue = Some(self.spawn()?);
        }
        let seq = {
            let mut progress = self.shared.lock();
            if let Some(e) = Self::failure(&progress) {
                return Err(e);
            }
            progress.sent += 1;
            progress.sent
        };
        let sent = queue.as_ref().expect("made above").send((seq, batch));
        if sent.is_err() {
            let mut progress = self.shared.lock();
            progress.gone = true;
            self.shared.changed.notify_all();
            return Err(Self::failure(&progress).expect("gone"));
        }
        Ok(seq)
    }

    fn spawn(&self) -> Result<SyncSender<(u64, Batch)>, StoreError> {
        let (tx, rx) = sync_channel(WRITE_BEHIND_QUEUE);
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("settle-wb-{}", self.name))
            .spawn(move || write_loop(&shared, &rx))
            .map_err(|e| StoreError::Behind {
                reason: format!("cannot start the store's writer thread: {e}"),
            })?;
        Ok(tx)
    }

    /// Waits until every batch handed over so far is written.
    pub fn wait(&self) -> Result<(), StoreError> {
        let mut progress = self.shared.lock();
        loop {
            if let Some(e) = Self::failure(&progress) {
                return Err(e);
            }
            if self.written() >= progress.sent {
                return Ok(());
            }
            progress = self
                .shared
                .changed
                .wait(progress)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // The writer finishes what it was handed (its queue ends with the
        // sender), so a store reopened after this one sees it all.
        let _ = self.wait();
    }
}

fn write_loop(shared: &Shared, rx: &Receiver<(u64, Batch)>) {
    /// Marks the writer gone if it unwinds, so that no waiter waits forever.
    struct Gone<'a>(&'a Shared);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut progress = self.0.lock();
                progress.gone = true;
                self.0.changed.notify_all();
            }
        }
    }
    let _gone = Gone(shared);
    while let Ok((seq, batch)) = rx.recv() {
        let done = shared.inner.write(&batch);
        let mut progress = shared.lock();
        match done {
            Ok(()) => {
                let before = shared.written.swap(seq, Ordering::AcqRel);
                assert_eq!(before + 1, seq, "batches are written in order");
            }
            Err(e) => {
                // Nothing after a failed batch is written: the store holds a
                // prefix of the handed-over batches, as the applied index
                // it carries says. The core logs it when it stops.
                progress.failed.get_or_insert(e.to_string());
                shared.changed.notify_all();
                return;
            }
        }
        shared.changed.notify_all();
    }
}

impl Store for WriteBehind {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.wait()?;
        self.shared.inner.get(column, key)
    }

    fn last_at_or_below(
        &self,
        column: Column,
        prefix: &[u8],
        at_most: &[u8],
    ) -> Result<Option<Pair>, StoreError> {
        self.wait()?;
        self.shared.inner.last_at_or_below(column, prefix, at_most)
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        self.wait()?;
        self.shared.inner.write(batch)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.wait()?;
        self.shared.inner.flush()
    }

    fn scan_from(
        &self,
        column: Column,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.wait()?;
        self.shared.inner.scan_from(column, from, visit)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.wait()?;
        self.shared.inner.clear()
    }

    fn set_clock(&self, now_us: u64) {
        self.shared.inner.set_clock(now_us);
    }

    fn stats(&self) -> StoreStats {
        self.shared.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    #[test]
    fn readers_through_the_wrapper_see_every_batch_handed_over() {
        let mem = Arc::new(MemStore::new());
        let behind = WriteBehind::new(mem.clone() as Arc<dyn Store>, "test");
        for i in 0u32..200 {
            let mut b = Batch::new();
            b.put(Column::Ledger, &i.to_be_bytes(), b"v").unwrap();
            assert_eq!(behind.hand_over(b).unwrap(), u64::from(i) + 1);
            assert_eq!(
                behind.get(Column::Ledger, &i.to_be_bytes()).unwrap(),
                Some(b"v".to_vec()),
                "batch {i} is seen through the wrapper at once"
            );
        }
        assert_eq!(behind.written(), 200);
        assert_eq!(mem.len(Column::Ledger), 200);
    }

    #[test]
    fn a_failed_write_reaches_the_core_and_every_reader() {
        let broken = MemStore::with_write_hook(|| {
            Err(StoreError::Io {
                path: "/broken".into(),
                op: "write",
                reason: "no space left on device".into(),
            })
        });
        let behind = WriteBehind::new(Arc::new(broken), "broken");
        let mut b = Batch::new();
        b.put(Column::Keys, b"k", b"v").unwrap();
        behind.hand_over(b).unwrap();
        let read = behind.get(Column::Keys, b"k").unwrap_err();
        assert!(read.to_string().contains("no space left"), "{read}");
        assert!(behind.error().is_some());
        assert_eq!(behind.written(), 0);
        let again = behind.hand_over(Batch::new()).unwrap_err();
        assert!(again.to_string().contains("no space left"), "{again}");
    }
}
