//! Typed errors of the storage crate.

use std::{io, path::PathBuf};

use crate::format::CorruptReason;

/// Everything the log, the meta file and the snapshot store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record in the middle of the log (or of a non-last segment) is
    /// damaged. Never repaired silently: the operator decides.
    #[error("corrupt log segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: CorruptReason,
    },
    /// A meta or snapshot file fails its checksum or header check.
    #[error("corrupt file {path}: {reason}")]
    CorruptFile {
        path: PathBuf,
        reason: CorruptReason,
    },
    /// `append` was given an index other than the log's next index.
    #[error("append out of order: expected index {expected}, got {got}")]
    IndexGap { expected: u64, got: u64 },
    /// The staging buffer cannot take these records: flush, then retry.
    /// Nothing from the rejected call was staged.
    #[error("staging buffer full ({staged_bytes} bytes staged, {needed_bytes} more needed): flush first")]
    StagingFull {
        staged_bytes: usize,
        needed_bytes: usize,
    },
    /// A single record larger than any group can hold.
    #[error("record payload of {payload_bytes} bytes exceeds the maximum of {max_bytes}")]
    RecordTooLarge {
        payload_bytes: usize,
        max_bytes: usize,
    },
    /// A read, truncation or purge outside what the log holds.
    #[error("index range {start}..{end} outside the log's {first}..{next}")]
    OutOfRange {
        start: u64,
        end: u64,
        first: u64,
        next: u64,
    },
    /// `purge_prefix` named a term that differs from the stored record's.
    #[error("purge up to index {index}: term {given} given, the log holds term {stored}")]
    PurgeTermMismatch { index: u64, given: u64, stored: u64 },
    /// A small file is larger than its format allows.
    #[error("{what} of {bytes} bytes exceeds the maximum of {max_bytes}")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        max_bytes: usize,
    },
    /// A previous flush failed: the state of the last write on disk is
    /// unknown, so the log refuses writes until it is reopened (recovery
    /// then cuts the torn write).
    #[error("log poisoned by an earlier I/O error; reopen it to recover")]
    Poisoned,
    /// Invalid options passed to `Log::open`.
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
