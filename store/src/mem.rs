//! The store in memory: ordered maps behind a lock. For unit tests and the
//! simulator; it "flushes" by doing nothing and "compacts" expired keys at
//! each flush, as RocksDB's compaction filter would at some point.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{key_expiry, Batch, Column, Op, Pair, Store, StoreError, StoreStats};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Runs before every write; its error is the write's (faults for tests and
/// the simulator: a full disk, a writer that hangs).
type WriteHook = Box<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

#[derive(Default)]
pub struct MemStore {
    columns: Mutex<[Map; 4]>,
    clock_us: AtomicU64,
    before_write: Option<WriteHook>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("clock_us", &self.clock_us)
            .field("write_hook", &self.before_write.is_some())
            .finish()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A store that calls `hook` before every write (outside its lock, so a
    /// hook may block while others read); an error fails the write.
    pub fn with_write_hook(
        hook: impl Fn() -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> MemStore {
        MemStore {
            before_write: Some(Box::new(hook)),
            ..MemStore::default()
        }
    }

    fn columns(&self) -> std::sync::MutexGuard<'_, [Map; 4]> {
        // A panic while holding the lock leaves whole maps (every operation
        // is a single map call): the data is still consistent.
        self.columns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pairs in `column` (tests).
    pub fn len(&self, column: Column) -> usize {
        self.columns()[column.slot()].len()
    }
}

impl Store for MemStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.columns()[column.slot()].get(key).cloned())
    }

    fn last_at_or_below(
        &self,
        column: Column,
        prefix: &[u8],
        at_most: &[u8],
    ) -> Result<Option<Pair>, StoreError> {
        let columns = self.columns();
        let found = columns[column.slot()]
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(at_most)))
            .next_back()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()));
        Ok(found)
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if let Some(hook) = &self.before_write {
            hook()?;
        }
        let mut columns = self.columns();
        for op in batch.ops() {
            match op {
                Op::Put { column, key, value } => {
                    columns[column.slot()].insert(key.to_vec(), value.to_vec());
                }
                Op::Delete { column, key } => {
                    columns[column.slot()].remove(key);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let now = self.clock_us.load(Ordering::Relaxed);
        self.columns()[Column::Keys.slot()]
            .retain(|_, v| key_expiry(v).is_none_or(|expires| expires > now));
        Ok(())
    }

    fn scan_from(
        &self,
        column: Column,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let columns = self.columns();
        for (k, v) in
            columns[column.slot()].range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
        {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        for map in self.columns().iter_mut() {
            map.clear();
        }
        Ok(())
    }

    fn set_clock(&self, now_us: u64) {
        self.clock_us.fetch_max(now_us, Ordering::Relaxed);
    }

    fn stats(&self) -> StoreStats {
        let columns = self.columns();
        let bytes: usize = columns
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        StoreStats {
            memtable_bytes: bytes as u64,
            keys_estimate: columns[Column::Keys.slot()].len() as u64,
            ..StoreStats::default()
        }
    }
}
