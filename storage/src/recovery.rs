//! Scanning one segment at open: verify every record, find where the valid
//! data ends, and tell a torn last write (cut and report) from damage in the
//! middle of the log (an error naming segment and offset).
//!
//! Why the distinction is sound: the log only ever writes past the end of
//! the newest segment, one group per write, and a new segment is created only
//! after the previous one's last write was durable. So a crash can leave
//! at most one partial group, at the end of the newest segment, and nothing
//! valid after it. A bad record anywhere else, or one followed by a valid
//! group header, is damage.
//!
//! A segment may end in preallocated space: zeros up to the end of the
//! file, written before any record (see `Log::preallocate_step`). A missing
//! group header followed by nothing but zeros is that space: the end of the
//! log, neither torn nor cut.

use std::path::Path;

use crate::{
    error::{Error, IoContext, Result},
    format::{
        align_up, decode_group_header, decode_record, CorruptReason, GroupHeader, BLOCK_BYTES,
        GROUP_PREFIX_BYTES, HEADER_BYTES, KIND_ENTRY,
    },
    io::SegmentFile,
    log::{Terms, TornTail},
};

/// Read-ahead of the scan: large enough that small groups do not cost a
/// read each, small enough that recovery memory stays flat.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// What a scan found in one segment.
pub(crate) struct Scan {
    /// Offset of each record, from the segment's base index on.
    pub offsets: Vec<u32>,
    pub terms: Terms,
    /// Index after the last valid record.
    pub next: u64,
    /// Where valid data ends: for the newest segment, where the next group
    /// goes; for one cut short by `limit`, the end of its last live record.
    pub end: u64,
    pub torn: Option<TornTail>,
    /// The file's length: past `end` when it ends in preallocated zeros.
    pub file_len: u64,
}

/// A sliding read-ahead window over a segment file.
struct Window<'a> {
    file: &'a SegmentFile,
    file_len: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl<'a> Window<'a> {
    /// Bytes `[pos, pos + len)`, fewer if the file ends first.
    async fn get(&mut self, pos: u64, len: usize) -> std::io::Result<&[u8]> {
        let want_end = (pos + len as u64).min(self.file_len);
        let covered = pos >= self.start && want_end <= self.start + self.bytes.len() as u64;
        if !covered {
            let read_len =
                (len.max(SCAN_CHUNK_BYTES) as u64).min(self.file_len.saturating_sub(pos));
            self.bytes = self.file.read_at(pos, read_len as usize).await?;
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        let to = (from + len).min(self.bytes.len());
        Ok(&self.bytes[from.min(to)..to])
    }

    /// Whether every byte from `pos` to the end of the file is zero.
    async fn all_zero(&mut self, mut pos: u64) -> std::io::Result<bool> {
        while pos < self.file_len {
            let chunk = self.get(pos, SCAN_CHUNK_BYTES).await?;
            if chunk.is_empty() {
                break;
            }
            if chunk.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            pos += chunk.len() as u64;
        }
        Ok(true)
    }
}

enum GroupOutcome {
    /// The whole group is valid.
    Done,
    /// The limit index was reached: the rest of the segment is overridden
    /// by the next segment and is not looked at.
    Stop,
    /// Invalid bytes that a torn write could have left (bad checksum,
    /// zeros, short file): torn tail if nothing valid follows.
    Bad { offset: u64, reason: CorruptReason },
    /// Checksummed data that is wrong (a torn write cannot produce it).
    Corrupt { offset: u64, reason: CorruptReason },
}

/// Verifies the records of one group whose header is `group`, appending
/// their offsets and terms. `bytes` starts at the group and may be shorter
/// than the group when the file ends early.
fn parse_group(
    bytes: &[u8],
    pos: u64,
    group: GroupHeader,
    limit: Option<u64>,
    scan: &mut Scan,
) -> GroupOutcome {
    let group_bytes = group.group_bytes as usize;
    let mut off = GROUP_PREFIX_BYTES;
    for _ in 0..group.record_count {
        if limit.is_some_and(|l| scan.next >= l) {
            return GroupOutcome::Stop;
        }
        let rest = bytes.get(off..).unwrap_or(&[]);
        let (h, payload) = match decode_record(rest) {
            Ok(r) => r,
            Err(reason) => {
                return GroupOutcome::Bad {
                    offset: pos + off as u64,
                    reason,
                }
            }
        };
        let offset = pos + off as u64;
        if h.kind != KIND_ENTRY {
            return GroupOutcome::Corrupt {
                offset,
                reason: CorruptReason::BadKind,
            };
        }
        if h.index != scan.next {
            let reason = CorruptReason::IndexMismatch {
                expected: scan.next,
                found: h.index,
            };
            return GroupOutcome::Corrupt { offset, reason };
        }
        let record_end = off + HEADER_BYTES + payload.len();
        if record_end > group_bytes {
            return GroupOutcome::Corrupt {
                offset,
                reason: CorruptReason::BadGroupHeader,
            };
        }
        assert!(
            offset <= u32::MAX as u64,
            "segment larger than the u32 offset index"
        );
        scan.offsets.push(offset as u32);
        scan.terms.push(h.index, h.term);
        scan.next += 1;
        scan.end = pos + record_end as u64;
        off = record_end;
    }
    if limit.is_some_and(|l| scan.next >= l) {
        return GroupOutcome::Stop;
    }
    if bytes.len() < group_bytes {
        return GroupOutcome::Bad {
            offset: pos + bytes.len() as u64,
            reason: CorruptReason::Truncated,
        };
    }
    if let Some(i) = bytes[off..group_bytes].iter().position(|b| *b != 0) {
        let offset = pos + (off + i) as u64;
        return GroupOutcome::Bad {
            offset,
            reason: CorruptReason::NonZeroPadding,
        };
    }
    GroupOutcome::Done
}

/// Scans the segment `path` whose first record has index `base`.
///
/// `limit`: the next segment's base; records from it on are overridden (a
/// later truncation started a new segment there) and not examined.
/// `is_last`: only the newest segment may end in a torn write.
pub(crate) async fn scan_segment(
    file: &SegmentFile,
    path: &Path,
    base: u64,
    limit: Option<u64>,
    is_last: bool,
) -> Result<Scan> {
    let file_len = file.len().await.at(path)?;
    let mut window = Window {
        file,
        file_len,
        start: 0,
        bytes: Vec::new(),
    };
    let mut scan = Scan {
        offsets: Vec::new(),
        terms: Terms::default(),
        next: base,
        end: 0,
        torn: None,
        file_len,
    };
    let corrupt = |offset, reason| Error::Corrupt {
        segment: path.to_path_buf(),
        offset,
        reason,
    };
    let mut pos = 0u64;
    loop {
        if limit.is_some_and(|l| scan.next >= l) || pos >= file_len {
            return Ok(scan);
        }
        let head = window.get(pos, GROUP_PREFIX_BYTES).await.at(path)?;
        let (bad_offset, reason) = match decode_group_header(head) {
            Err(CorruptReason::BadGroupHeader) => {
                return Err(corrupt(pos, CorruptReason::BadGroupHeader));
            }
            Err(reason) => (pos, reason),
            Ok(group) if group.first_index != scan.next => {
                let reason = CorruptReason::IndexMismatch {
                    expected: scan.next,
                    found: group.first_index,
                };
                return Err(corrupt(pos, reason));
            }
            Ok(group) => {
                let records_before = scan.offsets.len();
                let bytes = window.get(pos, group.group_bytes as usize).await.at(path)?;
                match parse_group(bytes, pos, group, limit, &mut scan) {
                    GroupOutcome::Done => {
                        pos += group.group_bytes;
                        scan.end = pos;
                        continue;
                    }
                    GroupOutcome::Stop => return Ok(scan),
                    GroupOutcome::Corrupt { offset, reason } => {
                        return Err(corrupt(offset, reason))
                    }
                    GroupOutcome::Bad { offset, reason } => {
                        // Forget this group's records: the cut is at its start.
                        scan.offsets.truncate(records_before);
                        scan.terms.truncate(group.first_index);
                        scan.next = group.first_index;
                        (offset, reason)
                    }
                }
            }
        };
        // `pos` is the start of the group holding the bad bytes.
        if !is_last {
            return Err(corrupt(bad_offset, reason));
        }
        if bad_offset == pos && window.all_zero(pos).await.at(path)? {
            // Preallocated space: the log ends here.
            scan.end = pos;
            return Ok(scan);
        }
        let mut probe = align_up(bad_offset + 1);
        while probe + GROUP_PREFIX_BYTES as u64 <= file_len {
            let head = window.get(probe, GROUP_PREFIX_BYTES).await.at(path)?;
            if decode_group_header(head).is_ok_and(|g| g.first_index >= scan.next) {
                return Err(corrupt(bad_offset, reason));
            }
            probe += BLOCK_BYTES as u64;
        }
        scan.torn = Some(TornTail {
            segment: path.to_path_buf(),
            offset: pos,
            bad_offset,
            bytes: file_len - pos,
            reason,
        });
        scan.end = pos;
        return Ok(scan);
    }
}
