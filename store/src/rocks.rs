//! The store on RocksDB: one database per shard, a column family per
//! [`Column`], no WAL (the Raft log is the write-ahead log), atomic flushes
//! across column families (a flushed state is one point of the write order),
//! checksums verified on every read, a block cache of a set size, and
//! compaction that drops idempotency keys past their leader-time expiry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, FlushOptions,
    Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use crate::{key_expiry, Batch, Column, Op, Pair, Store, StoreError, StoreStats, KEY_BYTES_MAX};

/// Sizes of one store: every buffer RocksDB keeps has a named bound.
#[derive(Debug, Clone, Copy)]
pub struct RocksOptions {
    /// Block cache (data, index and filter blocks).
    pub cache_bytes: usize,
    /// One memtable per column family; at most `MEMTABLES_MAX` each.
    pub write_buffer_bytes: usize,
    /// Flush and compaction jobs at once.
    pub background_jobs: i32,
}

/// Memtables a column family may hold (one active, the rest flushing).
pub const MEMTABLES_MAX: i32 = 3;

/// Table files read whole at open, newest first: the files written last
/// before a crash are the likeliest to be damaged, and every block of them
/// is checked before the node serves.
pub const VERIFY_FILES_ON_OPEN: usize = 4;

/// Most bytes of table files read at open to verify them.
pub const VERIFY_BYTES_ON_OPEN: usize = 256 << 20;

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            background_jobs: 2,
        }
    }
}

/// The memtable size that keeps every memtable of a store within `bytes`.
pub fn rocks_memtables(bytes: usize) -> usize {
    bytes / (MEMTABLES_MAX as usize * Column::ALL.len())
}

impl RocksOptions {
    /// Memory this store may use at most: the cache and every memtable.
    pub fn memory_bound(&self) -> usize {
        self.cache_bytes + self.write_buffer_bytes * MEMTABLES_MAX as usize * Column::ALL.len()
    }
}

/// A shard's state in RocksDB.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    clock_us: Arc<AtomicU64>,
    write: WriteOptions,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksStore {
    /// Opens (or creates) the store in `path`. A damaged store is refused
    /// with [`StoreError::Corrupt`] naming what RocksDB found.
    pub fn open(path: impl AsRef<Path>, sizes: RocksOptions) -> Result<RocksStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let cache = Cache::new_lru_cache(sizes.cache_bytes);
        let clock_us = Arc::new(AtomicU64::new(0));

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_atomic_flush(true);
        db_opts.set_paranoid_checks(true);
        db_opts.set_max_background_jobs(sizes.background_jobs);
        db_opts.set_max_open_files(256);
        db_opts.set_keep_log_file_num(2);
        db_opts.set_max_total_wal_size(1 << 20);

        let descriptors = Column::ALL.map(|column| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut opts = Options::default();
            opts.set_write_buffer_size(sizes.write_buffer_bytes);
            opts.set_max_write_buffer_number(MEMTABLES_MAX);
            opts.set_compression_type(DBCompressionType::Lz4);
            if column == Column::Keys {
                table.set_bloom_filter(10.0, false);
                table.set_whole_key_filtering(true);
                opts.set_memtable_whole_key_filtering(true);
                opts.set_memtable_prefix_bloom_ratio(0.02);
                let clock = clock_us.clone();
                opts.set_compaction_filter("settle-dedup-expiry", move |_level, _key, value| {
                    match key_expiry(value) {
                        Some(expires) if expires <= clock.load(Ordering::Relaxed) => {
                            Decision::Remove
                        }
                        _ => Decision::Keep,
                    }
                });
            }
            opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(column.name(), opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, &path, descriptors).map_err(|e| {
            if e.kind() == ErrorKind::Corruption {
                StoreError::Corrupt {
                    path: path.clone(),
                    reason: e.into_string(),
                }
            } else {
                StoreError::Open {
                    path: path.clone(),
                    reason: e.into_string(),
                }
            }
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let store = RocksStore {
            db,
            path,
            clock_us,
            write,
        };
        store.verify_newest_files()?;
        Ok(store)
    }

    /// Reads every block of the newest table files (see
    /// [`VERIFY_FILES_ON_OPEN`]); a checksum mismatch is an error naming the
    /// file.
    fn verify_newest_files(&self) -> Result<(), StoreError> {
        let mut files = self
            .db
            .live_files()
            .map_err(|e| self.err("list table files", e))?;
        // Table file names are increasing numbers: newest first.
        files.sort_by(|a, b| b.name.cmp(&a.name));
        let mut bytes = 0;
        for file in files.iter().take(VERIFY_FILES_ON_OPEN) {
            bytes += file.size;
            if bytes > VERIFY_BYTES_ON_OPEN {
                break;
            }
            let Some(column) = Column::ALL
                .into_iter()
                .find(|c| c.name() == file.column_family_name)
            else {
                continue;
            };
            let (Some(first), Some(last)) = (&file.start_key, &file.end_key) else {
                continue;
            };
            let mut it = self
                .db
                .raw_iterator_cf_opt(self.cf(column), Self::read_opts());
            it.seek(first);
            while let Some(k) = it.key() {
                if k > last.as_slice() {
                    break;
                }
                it.next();
            }
            if let Err(e) = it.status() {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: format!(
                        "table file {} (column {}): {}",
                        file.name,
                        file.column_family_name,
                        e.into_string()
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, column: Column) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(column.name())
            .expect("every column family is created at open")
    }

    fn err(&self, op: &'static str, e: rocksdb::Error) -> StoreError {
        if e.kind() == ErrorKind::Corruption {
            StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("{op}: {}", e.into_string()),
            }
        } else {
            StoreError::Io {
                path: self.path.clone(),
                op,
                reason: e.into_string(),
            }
        }
    }

    fn read_opts() -> ReadOptions {
        let mut opts = ReadOptions::default();
        opts.set_verify_checksums(true);
        opts
    }

    /// A consistent copy of the store in `dir` (hard-linked SST files).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<(), StoreError> {
        self.flush()?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| self.err("checkpoint", e))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|e| self.err("checkpoint", e))
    }

    /// Compacts every column family now (tests, and an operator's command).
    pub fn compact_all(&self) -> Result<(), StoreError> {
        self.flush()?;
        for column in Column::ALL {
            self.db
                .compact_range_cf(self.cf(column), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn int_property(&self, column: Option<Column>, name: &str) -> u64 {
        let value = match column {
            Some(c) => self.db.property_int_value_cf(self.cf(c), name),
            None => self.db.property_int_value(name),
        };
        value.ok().flatten().unwrap_or(0)
    }
}

impl Store for RocksStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf_opt(self.cf(column), key, &Self::read_opts())
            .map_err(|e| self.err("get", e))
    }

    fn last_at_or_below(
        &self,
        column: Column,
        prefix: &[u8],
        at_most: &[u8],
    ) -> Result<Option<Pair>, StoreError> {
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(column), Self::read_opts());
        it.seek_for_prev(at_most);
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => Some((k.to_vec(), v.to_vec())),
            _ => None,
        };
        it.status().map_err(|e| self.err("seek", e))?;
        Ok(found)
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        // In key order, so the memtable's skip list can start each insert's
        // search from the previous one's place (its sequential-insert
        // hint). Ids arrive in any order (random ids, and every id once the
        // store is sealed), and the search from the top per key was a
        // quarter of a sealed node's CPU at 200 k keys/s; sorting won back
        // a little of it (BENCHMARKS.md, issue 16), not all. The sort is
        // stable, so two writes of one key keep their order (the later wins).
        let mut ops: Vec<Op<'_>> = batch.ops().collect();
        ops.sort_by(|a, b| op_place(a).cmp(&op_place(b)));
        let mut wb = WriteBatch::default();
        for op in ops {
            match op {
                Op::Put { column, key, value } => wb.put_cf(self.cf(column), key, value),
                Op::Delete { column, key } => wb.delete_cf(self.cf(column), key),
            }
        }
        self.db
            .write_opt(wb, &self.write)
            .map_err(|e| self.err("write", e))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        let cfs: Vec<_> = Column::ALL.iter().map(|&c| self.cf(c)).collect();
        self.db
            .flush_cfs_opt(&cfs, &opts)
            .map_err(|e| self.err("flush", e))
    }

    fn scan_from(
        &self,
        column: Column,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(column), Self::read_opts());
        it.seek(from);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !visit(k, v) {
                break;
            }
            it.next();
        }
        it.status().map_err(|e| self.err("scan", e))
    }

    fn clear(&self) -> Result<(), StoreError> {
        let end = [0xffu8; KEY_BYTES_MAX + 1];
        let mut wb = WriteBatch::default();
        for column in Column::ALL {
            wb.delete_range_cf(self.cf(column), [].as_slice(), end.as_slice());
        }
        self.db
            .write_opt(wb, &self.write)
            .map_err(|e| self.err("clear", e))?;
        self.flush()
    }

    fn set_clock(&self, now_us: u64) {
        self.clock_us.fetch_max(now_us, Ordering::Relaxed);
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            disk_bytes: self.int_property(None, "rocksdb.total-sst-files-size"),
            memtable_bytes: self.int_property(None, "rocksdb.cur-size-all-mem-tables"),
            cache_bytes: self.int_property(None, "rocksdb.block-cache-usage"),
            keys_estimate: self.int_property(Some(Column::Keys), "rocksdb.estimate-num-keys"),
        }
    }
}

/// Where an operation lands: its column, then its key.
fn op_place<'a>(op: &Op<'a>) -> (Column, &'a [u8]) {
    match *op {
        Op::Put { column, key, .. } | Op::Delete { column, key } => (column, key),
    }
}
