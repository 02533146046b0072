//! Typed errors of encoding and decoding. Decoding reads untrusted bytes, so
//! every way they can be wrong has a variant here, never a panic.

use core::fmt;

use crate::frame::{MAGIC, VERSION};
use crate::messages::MessageKind;

/// Which checksummed part of a frame failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramePart {
    Header,
    Body,
}

impl fmt::Display for FramePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramePart::Header => "header",
            FramePart::Body => "body",
        })
    }
}

/// Why received bytes are not a usable frame or message. After any of these
/// the byte stream is out of step: close the connection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad magic {found:#010x} (expected {MAGIC:#010x}): not a settle frame")]
    BadMagic { found: u32 },
    #[error("unsupported protocol version {found} (this build speaks {VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("unknown message kind {found:#06x}")]
    UnknownKind { found: u16 },
    #[error("expected a {expected:?} frame, got {found:?}")]
    UnexpectedKind {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("reserved header field is {found:#x}, must be zero")]
    ReservedNotZero { found: u32 },
    #[error("truncated frame: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("oversize frame: body of {body_len} bytes exceeds the maximum of {max}")]
    Oversize { body_len: usize, max: usize },
    #[error("{part} checksum mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    BadChecksum {
        part: FramePart,
        expected: u32,
        actual: u32,
    },
    /// The body does not start on a 16-byte boundary in memory, so it cannot
    /// be accessed in place (a caller's buffer problem, not the sender's).
    #[error("frame body is not 16-byte aligned in memory")]
    Misaligned,
    #[error("invalid archive: {0}")]
    InvalidArchive(rkyv::rancor::Error),
    #[error("too many {what}: {len} exceeds the limit of {max}")]
    BatchTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

/// Why a message could not be framed. The limits are checked on the way out
/// as on the way in, so a peer never receives a frame it must refuse.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("too many {what}: {len} exceeds the limit of {max}")]
    BatchTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("oversize frame: body of {body_len} bytes exceeds the maximum of {max}")]
    Oversize { body_len: usize, max: usize },
    #[error("serialisation failed: {0}")]
    Serialize(rkyv::rancor::Error),
}
