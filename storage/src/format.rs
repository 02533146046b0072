//! On-disk record format of a log segment.
//!
//! A segment is a sequence of *groups*, each starting on a [`BLOCK_BYTES`]
//! boundary: one group is exactly what one flush wrote with one durable
//! O_DIRECT write. A group is a group header record, then its entry
//! records packed back to back, then zero padding up to the next block
//! boundary. The group header says how many bytes and records the group holds,
//! so recovery can tell a torn last write (the only thing a crash can leave
//! behind) from damage in the middle of the log.
//!
//! Every record (group header or entry) has the same 32-byte header:
//!
//! ```text
//! 0..4   magic "SLR1" (zero bytes here mean padding / unwritten space)
//! 4      kind: 1 = entry, 2 = group header
//! 5      flags: bit 0 = payload sealed (AES-256-GCM, see `seal`); entries only
//! 6..8   reserved, zero
//! 8..12  payload length, u32 LE
//! 12..16 crc32c over header bytes 0..12 and 16..32, then the payload
//! 16..24 index, u64 LE (group header: first index of the group)
//! 24..32 term, u64 LE (caller metadata; group header: zero)
//! ```
//!
//! A group header's payload is 16 bytes: group length in bytes (u64 LE,
//! a multiple of [`BLOCK_BYTES`], padding included) and the number of entry
//! records (u32 LE), then 4 reserved zero bytes.

use std::fmt;

/// O_DIRECT alignment we write with. 4 KiB is the largest logical block size
/// of the devices we target (NVMe/virtio report 512 or 4096), so aligning to it
/// satisfies any of them.
pub const BLOCK_BYTES: usize = 4096;

/// Size of every record header.
pub const HEADER_BYTES: usize = 32;

/// Size of the group header's payload.
pub(crate) const GROUP_PAYLOAD_BYTES: usize = 16;

/// Bytes a group spends before its first entry record.
pub(crate) const GROUP_PREFIX_BYTES: usize = HEADER_BYTES + GROUP_PAYLOAD_BYTES;

/// Largest group (one flush) in bytes, padding included. This bounds the
/// staging buffer (memory per log: two of these at most, one staged and one
/// in flight) and the size of one write. 4 MiB holds ~25 ms of records at
/// 1 M records/s of 160 bytes, far longer than a durable write takes, so a
/// caller that flushes as soon as the previous flush returns never fills it.
pub const GROUP_BYTES_MAX: usize = 4 << 20;

/// Largest payload of one record: it must fit in a group with its header.
pub const PAYLOAD_BYTES_MAX: usize = GROUP_BYTES_MAX - GROUP_PREFIX_BYTES - HEADER_BYTES;

const MAGIC: [u8; 4] = *b"SLR1";
pub(crate) const KIND_ENTRY: u8 = 1;
pub(crate) const KIND_GROUP: u8 = 2;
/// Record flag: the payload is sealed (see [`crate::seal`]).
pub(crate) const FLAG_SEALED: u8 = 1;

/// Why a record or file was found invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptReason {
    /// Fewer bytes than the header or group says are there.
    Truncated,
    /// No record magic where a record must start (often zeroed space).
    BadMagic,
    /// Unknown record kind or non-zero reserved bytes.
    BadKind,
    /// The crc32c of header + payload does not match.
    BadChecksum,
    /// The payload length is larger than any record we write.
    BadLength,
    /// A checksummed group header with impossible fields.
    BadGroupHeader,
    /// Non-zero bytes in a group's padding.
    NonZeroPadding,
    /// A checksummed record whose index is not the next one.
    IndexMismatch { expected: u64, found: u64 },
    /// The segment's records stop before the next segment (or the log's
    /// first index) begins: records are missing.
    Gap { expected: u64, found: u64 },
    /// A small file (meta, snapshot) with a bad header or checksum.
    BadFile,
    /// A sealed payload that does not open (altered, moved, or sealed with
    /// a key not given).
    Sealed(crate::seal::SealError),
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "truncated record"),
            Self::BadMagic => write!(f, "bad magic"),
            Self::BadKind => write!(f, "bad record kind"),
            Self::BadChecksum => write!(f, "checksum mismatch"),
            Self::BadLength => write!(f, "bad payload length"),
            Self::BadGroupHeader => write!(f, "bad group header"),
            Self::NonZeroPadding => write!(f, "non-zero padding"),
            Self::IndexMismatch { expected, found } => {
                write!(f, "index {found} where {expected} was expected")
            }
            Self::Gap { expected, found } => {
                write!(f, "missing records: next index {expected}, found {found}")
            }
            Self::BadFile => write!(f, "bad file header or checksum"),
            Self::Sealed(e) => write!(f, "sealed payload: {e}"),
        }
    }
}

/// A decoded, checksum-verified record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u8,
    pub flags: u8,
    pub payload_bytes: u32,
    pub index: u64,
    pub term: u64,
}

/// A decoded group header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupHeader {
    pub first_index: u64,
    pub group_bytes: u64,
    pub record_count: u32,
}

pub(crate) fn align_up(v: u64) -> u64 {
    v.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64
}

/// Bytes a record with `payload_bytes` of payload occupies.
pub(crate) fn record_bytes(payload_bytes: usize) -> usize {
    HEADER_BYTES + payload_bytes
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(header.len(), HEADER_BYTES);
    let crc = crc32c::crc32c(&header[0..12]);
    let crc = crc32c::crc32c_append(crc, &header[16..32]);
    crc32c::crc32c_append(crc, payload)
}

/// Appends one record (header + payload) to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, kind: u8, index: u64, term: u64, payload: &[u8]) {
    encode_record_flagged(out, kind, 0, index, term, payload);
}

/// [`encode_record`] with record flags (e.g. [`FLAG_SEALED`]).
pub(crate) fn encode_record_flagged(
    out: &mut Vec<u8>,
    kind: u8,
    flags: u8,
    index: u64,
    term: u64,
    payload: &[u8],
) {
    assert!(payload.len() <= PAYLOAD_BYTES_MAX);
    assert!(flags == 0 || (kind == KIND_ENTRY && flags == FLAG_SEALED));
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = kind;
    h[5] = flags;
    h[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&term.to_le_bytes());
    let crc = checksum(&h, payload);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    out.reserve(HEADER_BYTES + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// The group header record for a group; `encode_group_header_into` writes it
/// over the placeholder at the start of a staged group.
pub(crate) fn encode_group_header_into(dst: &mut [u8], group: GroupHeader) {
    assert_eq!(dst.len(), GROUP_PREFIX_BYTES);
    let mut payload = [0u8; GROUP_PAYLOAD_BYTES];
    payload[0..8].copy_from_slice(&group.group_bytes.to_le_bytes());
    payload[8..12].copy_from_slice(&group.record_count.to_le_bytes());
    let mut out = Vec::with_capacity(GROUP_PREFIX_BYTES);
    encode_record(&mut out, KIND_GROUP, group.first_index, 0, &payload);
    dst.copy_from_slice(&out);
}

/// Decodes and verifies the record at the start of `bytes`; returns its
/// header and payload. `bytes` may extend past the record.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<(Header, &[u8]), CorruptReason> {
    if bytes.len() < HEADER_BYTES {
        return Err(if bytes.len() >= 4 && bytes[0..4] != MAGIC {
            CorruptReason::BadMagic
        } else {
            CorruptReason::Truncated
        });
    }
    let h = &bytes[..HEADER_BYTES];
    if h[0..4] != MAGIC {
        return Err(CorruptReason::BadMagic);
    }
    let kind = h[4];
    let flags = h[5];
    let flags_ok = flags == 0 || (kind == KIND_ENTRY && flags == FLAG_SEALED);
    if (kind != KIND_ENTRY && kind != KIND_GROUP) || !flags_ok || h[6..8] != [0, 0] {
        return Err(CorruptReason::BadKind);
    }
    let payload_bytes = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if payload_bytes as usize > PAYLOAD_BYTES_MAX {
        return Err(CorruptReason::BadLength);
    }
    let end = HEADER_BYTES + payload_bytes as usize;
    if bytes.len() < end {
        return Err(CorruptReason::Truncated);
    }
    let payload = &bytes[HEADER_BYTES..end];
    let crc = u32::from_le_bytes(h[12..16].try_into().unwrap());
    if checksum(h, payload) != crc {
        return Err(CorruptReason::BadChecksum);
    }
    let header = Header {
        kind,
        flags,
        payload_bytes,
        index: u64::from_le_bytes(h[16..24].try_into().unwrap()),
        term: u64::from_le_bytes(h[24..32].try_into().unwrap()),
    };
    Ok((header, payload))
}

/// Decodes and verifies a group header at the start of `bytes`.
/// A checksummed header with impossible fields is `BadGroupHeader`.
pub(crate) fn decode_group_header(bytes: &[u8]) -> Result<GroupHeader, CorruptReason> {
    let (h, payload) = decode_record(bytes)?;
    if h.kind != KIND_GROUP {
        return Err(CorruptReason::BadKind);
    }
    if payload.len() != GROUP_PAYLOAD_BYTES || payload[12..16] != [0; 4] {
        return Err(CorruptReason::BadGroupHeader);
    }
    let group = GroupHeader {
        first_index: h.index,
        group_bytes: u64::from_le_bytes(payload[0..8].try_into().unwrap()),
        record_count: u32::from_le_bytes(payload[8..12].try_into().unwrap()),
    };
    let min_bytes = (GROUP_PREFIX_BYTES + group.record_count as usize * HEADER_BYTES) as u64;
    let plausible = group.record_count >= 1
        && group.group_bytes.is_multiple_of(BLOCK_BYTES as u64)
        && group.group_bytes >= min_bytes
        && group.group_bytes <= GROUP_BYTES_MAX as u64;
    if !plausible {
        return Err(CorruptReason::BadGroupHeader);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_every_flipped_bit_is_detected() {
        let mut out = Vec::new();
        encode_record(&mut out, KIND_ENTRY, 7, 3, b"hello world");
        let (h, p) = decode_record(&out).unwrap();
        assert_eq!(
            (h.kind, h.index, h.term, p),
            (KIND_ENTRY, 7, 3, &b"hello world"[..])
        );
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_record(&bad).is_err(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn zeroed_space_reads_as_bad_magic() {
        assert_eq!(
            decode_record(&[0u8; 64]).unwrap_err(),
            CorruptReason::BadMagic
        );
    }

    #[test]
    fn group_header_round_trips_and_rejects_unaligned_length() {
        let mut buf = [0u8; GROUP_PREFIX_BYTES];
        let g = GroupHeader {
            first_index: 5,
            group_bytes: 8192,
            record_count: 3,
        };
        encode_group_header_into(&mut buf, g);
        assert_eq!(decode_group_header(&buf).unwrap(), g);
        let bad = GroupHeader {
            group_bytes: 8000,
            ..g
        };
        encode_group_header_into(&mut buf, bad);
        assert_eq!(
            decode_group_header(&buf).unwrap_err(),
            CorruptReason::BadGroupHeader
        );
    }
}
