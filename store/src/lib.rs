//! The state store of a shard: what a shard keeps on disk rather than in
//! memory (finished transactions and their audit trail, idempotency keys for
//! the rest of the dedup window, cycle facts).
//!
//! One interface, [`Store`], two implementations: [`RocksStore`] (RocksDB,
//! for the node) and [`MemStore`] (a map in memory, for unit tests and a
//! deterministic simulator). The store is not a write-ahead log: the Raft log
//! is. Writes skip RocksDB's WAL and become durable at [`Store::flush`];
//! whatever a crash loses since the last flush is rebuilt by replaying the
//! Raft log, which is purged only up to a flushed point.
//!
//! Keys and values are bytes; the shard owns their layout. One rule is the
//! store's own: a value in [`Column::Keys`] begins with the leader time (u64,
//! little-endian, microseconds) at which the key may be forgotten, so that
//! compaction can drop keys that left the dedup window ([`Store::set_clock`])
//! without knowing anything else about them.
//!
//! Encryption at rest is a layer at this boundary: [`SealedStore`] wraps a
//! store so that values are sealed (AES-256-GCM, the Raft log's keys) and
//! the ids keys begin with are hidden; [`open_rocks`] opens a node's store
//! sealed or not, and refuses one written the other way.

mod batch;
mod behind;
mod mem;
mod rocks;
mod sealed;

pub use batch::{Batch, Op};
pub use behind::{WriteBehind, WRITE_BEHIND_OPS, WRITE_BEHIND_QUEUE};
pub use mem::MemStore;
pub use rocks::{rocks_memtables, RocksOptions, RocksStore, MEMTABLES_MAX};
pub use sealed::{open_rocks, refuse_if_sealed, SealedStore, EXPIRY_BYTES, ID_BYTES, META_SEAL};

use std::path::PathBuf;

/// The column families of a shard's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Idempotency keys that left memory: each value starts with the leader
    /// time after which it may be dropped (see the crate docs).
    Keys,
    /// Finished records, kept for the retention period.
    Ledger,
    /// Facts of cycles, by cycle id.
    Cycles,
    /// The store's own small facts (the applied index).
    Meta,
}

impl Column {
    pub const ALL: [Column; 4] = [Column::Keys, Column::Ledger, Column::Cycles, Column::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Column::Keys => "keys",
            Column::Ledger => "ledger",
            Column::Cycles => "cycles",
            Column::Meta => "meta",
        }
    }

    fn slot(self) -> usize {
        match self {
            Column::Keys => 0,
            Column::Ledger => 1,
            Column::Cycles => 2,
            Column::Meta => 3,
        }
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Bytes a key may have: ids are 16, with a suffix 24.
pub const KEY_BYTES_MAX: usize = 64;
/// Bytes a value may have (a cycle's full record is at most ~1 MiB).
pub const VALUE_BYTES_MAX: usize = 8 << 20;

/// The key under [`Column::Meta`] that holds the last applied log index
/// written with the state it describes.
pub const META_APPLIED: &[u8] = b"applied";

/// Why the store refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: cannot open: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("state store {path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("state store {path}: {op}: {reason}")]
    Io {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error("state store: {0} bytes of key exceed KEY_BYTES_MAX ({KEY_BYTES_MAX})")]
    KeyTooLong(usize),
    #[error("state store: {0} bytes of value exceed VALUE_BYTES_MAX ({VALUE_BYTES_MAX})")]
    ValueTooLong(usize),
    /// Tampered, misplaced or truncated ciphertext, or a value sealed under
    /// a key not given: refused like any corruption.
    #[error("state store {path}: a sealed value in column {column} was refused: {source}")]
    Sealed {
        path: PathBuf,
        column: &'static str,
        #[source]
        source: settle_storage::SealError,
    },
    /// A write made behind the core failed (see [`WriteBehind`]).
    #[error("state store: a write behind the core failed: {reason}")]
    Behind { reason: String },
    #[error(
        "state store {path} was written without an encryption key and is opened with one: \
         start without the key, or wipe this node's data directory so that it rebuilds \
         (sealed) from a peer; nothing seals an existing store in place"
    )]
    NotSealed { path: PathBuf },
    #[error(
        "state store {path} is sealed: give the encryption key it was sealed with \
         (--encryption-key-file or SETTLE_ENCRYPTION_KEY)"
    )]
    NeedsKey { path: PathBuf },
    #[error(
        "state store: column {column} hides the ids its keys begin with, so its keys are \
         ordered within one id only: a scan from a key, or a bound of another id, is refused"
    )]
    UnorderedScan { column: &'static str },
    #[error("state store: a key of {len} bytes in column {column} is shorter than its id")]
    KeyWithoutId { column: &'static str, len: usize },
    #[error("state store: a value of {len} bytes in column keys does not begin with its expiry")]
    KeyValueShort { len: usize },
}

/// Counters a store reports (for metrics and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes in SST files on disk.
    pub disk_bytes: u64,
    /// Bytes in memtables (not yet flushed).
    pub memtable_bytes: u64,
    /// Bytes of the block cache in use.
    pub cache_bytes: u64,
    /// Estimated live keys in [`Column::Keys`].
    pub keys_estimate: u64,
}

/// A shard's state store. Shared between the shard's core (writes, rare
/// point reads) and a blocking pool (flushes, audit reads, checkpoints).
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `column`, if any.
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The greatest key in `column` that starts with `prefix` and is at most
    /// `at_most`, with its value (the newest version of a key whose suffix
    /// is a version number, as of a given version).
    fn last_at_or_below(
        &self,
        column: Column,
        prefix: &[u8],
        at_most: &[u8],
    ) -> Result<Option<Pair>, StoreError>;

    /// The greatest key in `column` that starts with `prefix`, with its value.
    fn last_with_prefix(&self, column: Column, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        let mut bound = prefix.to_vec();
        bound.resize(KEY_BYTES_MAX + 1, 0xff);
        self.last_at_or_below(column, prefix, &bound)
    }

    /// Applies every operation of `batch` atomically (in memory; durable at
    /// the next [`Store::flush`]).
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Makes every write so far durable. Blocks: call it off the core.
    fn flush(&self) -> Result<(), StoreError>;

    /// Visits the pairs of `column` from the first key ≥ `from`, in key
    /// order, until `visit` says stop. (A [`SealedStore`] keeps the order
    /// within one id only in columns whose keys begin with an id: there it
    /// visits whole columns only, see its docs.)
    fn scan_from(
        &self,
        column: Column,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Visits every pair of `column` in key order until `visit` says stop.
    fn scan(
        &self,
        column: Column,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_from(column, &[], visit)
    }

    /// Removes everything (a snapshot from the leader replaces the state).
    fn clear(&self) -> Result<(), StoreError>;

    /// The leader time compaction uses to drop expired [`Column::Keys`].
    fn set_clock(&self, now_us: u64);

    /// What the store holds and uses.
    fn stats(&self) -> StoreStats;

    /// The last applied index written with the state ([`META_APPLIED`]).
    fn applied_index(&self) -> Result<u64, StoreError> {
        match self.get(Column::Meta, META_APPLIED)? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    path: PathBuf::new(),
                    reason: format!("the applied index is {} bytes, not 8", v.len()),
                })?;
                Ok(u64::from_le_bytes(bytes))
            }
        }
    }
}

/// The expiry time a [`Column::Keys`] value starts with, if it has one.
pub fn key_expiry(value: &[u8]) -> Option<u64> {
    value
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}
