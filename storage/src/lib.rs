//! settle-storage: the durable state of one shard on local disk.
//!
//! Owns the segmented append-only log (checksummed records, group commit with
//! one durable O_DIRECT + O_DSYNC write per group through io_uring, reads by
//! index range, suffix truncation, prefix purge, segment rotation, recovery
//! that cuts a torn tail and refuses mid-log damage), a small atomically
//! replaced meta file (the Raft vote and committed index) and a snapshot
//! store. Record payloads may be sealed with AES-256-GCM ([`seal`]).
//!
//! Must not know what a transaction, an entry type or a Raft vote is: records
//! are (index, term, opaque bytes). All I/O goes through our private `io` module
//! (glommio `DmaFile` today) so the engine can be swapped. The
//! types are `!Send` and run on one glommio `LocalExecutor` thread.

pub mod error;
pub mod format;
mod io;
pub mod log;
pub mod meta;
mod recovery;
pub mod seal;
pub mod snapshot;
pub mod stats;

pub use error::{Error, Result};
pub use format::{CorruptReason, BLOCK_BYTES, GROUP_BYTES_MAX, HEADER_BYTES, PAYLOAD_BYTES_MAX};
pub use log::{
    Entry, Log, LogOptions, Purged, Record, RecoveryReport, TornTail, SEGMENT_BYTES_DEFAULT,
};
pub use meta::{MetaFile, META_BYTES_MAX};
pub use seal::{Cipher, SealError};
pub use snapshot::{Snapshot, SnapshotStore, SNAPSHOT_DATA_BYTES_MAX, SNAPSHOT_META_BYTES_MAX};
