//! Bytes of the Raft RPCs that travel between nodes.
//!
//! AppendEntries (the hot path, megabytes of entries a second) and its
//! answer are encoded by hand: fixed-width little-endian fields, entry bodies
//! copied once, no serde. Everything else (votes, snapshot metadata,
//! leadership transfer) is small and rare, so it is JSON through openraft's
//! serde derives, which keeps it readable in a packet dump.
//!
//! Decoding reads bytes from another process: every length is checked and a
//! malformed message is a [`WireError`], never a panic.

use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, StreamAppendError, StreamAppendResult};
use openraft::{EntryPayload, Membership};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::type_config::{Entry, LogId, NodeAddr, NodeId, ShardRequest, TypeConfig, Vote};

/// Most entries one AppendEntries may carry on the wire: far above what
/// openraft sends (`max_payload_entries`), low enough that a forged count
/// cannot make the reader reserve unbounded memory.
pub const APPEND_ENTRIES_MAX: usize = 65_536;

const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;

const RESULT_MATCHED_NONE: u8 = 0;
const RESULT_MATCHED: u8 = 1;
const RESULT_CONFLICT: u8 = 2;
const RESULT_HIGHER_VOTE: u8 = 3;

/// Why received Raft bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("bad {what} tag {tag}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("{count} entries in one message, more than {APPEND_ENTRIES_MAX}")]
    TooManyEntries { count: usize },
    #[error("{extra} bytes after the message")]
    Trailing { extra: usize },
    #[error("json: {0}")]
    Json(String),
}

/// A cursor over received bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let available = self.bytes.len() - self.at;
        if n > available {
            return Err(WireError::Truncated {
                at: self.at,
                needed: n - available,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn log_id(&mut self) -> Result<LogId, WireError> {
        let term = self.u64()?;
        let node_id = self.u64()?;
        let index = self.u64()?;
        Ok(LogId {
            leader_id: LeaderId { term, node_id },
            index,
        })
    }

    fn opt_log_id(&mut self) -> Result<Option<LogId>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            tag => Err(WireError::BadTag {
                what: "optional log id",
                tag,
            }),
        }
    }

    fn vote(&mut self) -> Result<Vote, WireError> {
        let term = self.u64()?;
        let node_id = self.u64()?;
        let committed = match self.u8()? {
            0 => false,
            1 => true,
            tag => return Err(WireError::BadTag { what: "vote", tag }),
        };
        Ok(Vote {
            leader_id: LeaderId { term, node_id },
            committed,
        })
    }

    fn finish(self) -> Result<(), WireError> {
        let extra = self.bytes.len() - self.at;
        if extra != 0 {
            return Err(WireError::Trailing { extra });
        }
        Ok(())
    }
}

fn put_log_id(out: &mut Vec<u8>, log_id: &LogId) {
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&log_id.index.to_le_bytes());
}

fn put_opt_log_id(out: &mut Vec<u8>, log_id: &Option<LogId>) {
    match log_id {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            put_log_id(out, l);
        }
    }
}

fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
}

/// Bytes an AppendEntries request will take (to size the buffer once).
pub fn append_request_len(rpc: &AppendEntriesRequest<TypeConfig>) -> usize {
    let fixed = 17 + 2 * 25 + 4;
    let entries: usize = rpc
        .entries
        .iter()
        .map(|e| {
            29 + match &e.payload {
                EntryPayload::Normal(r) => r.0.len(),
                EntryPayload::Membership(_) => 256,
                EntryPayload::Blank => 0,
            }
        })
        .sum();
    fixed + entries
}

/// Appends the bytes of an AppendEntries request to `out`.
pub fn encode_append_request(rpc: &AppendEntriesRequest<TypeConfig>, out: &mut Vec<u8>) {
    assert!(
        rpc.entries.len() <= APPEND_ENTRIES_MAX,
        "openraft's max_payload_entries is far below the wire bound"
    );
    out.reserve(append_request_len(rpc));
    put_vote(out, &rpc.vote);
    put_opt_log_id(out, &rpc.prev_log_id);
    put_opt_log_id(out, &rpc.leader_commit);
    out.extend_from_slice(&(rpc.entries.len() as u32).to_le_bytes());
    for entry in &rpc.entries {
        put_log_id(out, &entry.log_id());
        match &entry.payload {
            EntryPayload::Blank => {
                out.push(TAG_BLANK);
                out.extend_from_slice(&0u32.to_le_bytes());
            }
            EntryPayload::Normal(request) => {
                out.push(TAG_NORMAL);
                out.extend_from_slice(&(request.0.len() as u32).to_le_bytes());
                out.extend_from_slice(&request.0);
            }
            EntryPayload::Membership(membership) => {
                let json = serde_json::to_vec(membership).expect("membership is plain data");
                out.push(TAG_MEMBERSHIP);
                out.extend_from_slice(&(json.len() as u32).to_le_bytes());
                out.extend_from_slice(&json);
            }
        }
    }
}

/// Decodes an AppendEntries request.
pub fn decode_append_request(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, WireError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let prev_log_id = r.opt_log_id()?;
    let leader_commit = r.opt_log_id()?;
    let count = r.u32()? as usize;
    if count > APPEND_ENTRIES_MAX {
        return Err(WireError::TooManyEntries { count });
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let log_id = r.log_id()?;
        let tag = r.u8()?;
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let payload = match tag {
            TAG_BLANK if body.is_empty() => EntryPayload::Blank,
            TAG_NORMAL => EntryPayload::Normal(ShardRequest(body.to_vec())),
            TAG_MEMBERSHIP => {
                let membership: Membership<NodeId, NodeAddr> = serde_json::from_slice(body)
                    .map_err(|e| WireError::Json(format!("membership: {e}")))?;
                EntryPayload::Membership(membership)
            }
            tag => return Err(WireError::BadTag { what: "entry", tag }),
        };
        entries.push(Entry { log_id, payload });
    }
    r.finish()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries,
    })
}

/// Appends the bytes of one stream-append result to `out`.
pub fn encode_append_result(result: &StreamAppendResult<TypeConfig>, out: &mut Vec<u8>) {
    match result {
        Ok(None) => out.push(RESULT_MATCHED_NONE),
        Ok(Some(log_id)) => {
            out.push(RESULT_MATCHED);
            put_log_id(out, log_id);
        }
        Err(StreamAppendError::Conflict(log_id)) => {
            out.push(RESULT_CONFLICT);
            put_log_id(out, log_id);
        }
        Err(StreamAppendError::HigherVote(vote)) => {
            out.push(RESULT_HIGHER_VOTE);
            put_vote(out, vote);
        }
    }
}

/// Decodes one stream-append result.
pub fn decode_append_result(bytes: &[u8]) -> Result<StreamAppendResult<TypeConfig>, WireError> {
    let mut r = Reader::new(bytes);
    let result = match r.u8()? {
        RESULT_MATCHED_NONE => Ok(None),
        RESULT_MATCHED => Ok(Some(r.log_id()?)),
        RESULT_CONFLICT => Err(StreamAppendError::Conflict(r.log_id()?)),
        RESULT_HIGHER_VOTE => Err(StreamAppendError::HigherVote(r.vote()?)),
        tag => {
            return Err(WireError::BadTag {
                what: "append result",
                tag,
            })
        }
    };
    r.finish()?;
    Ok(result)
}

/// JSON bytes of a small message.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("raft messages are plain data")
}

/// A small message from JSON bytes.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id },
            index,
        }
    }

    fn request() -> AppendEntriesRequest<TypeConfig> {
        let membership = Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], []);
        AppendEntriesRequest {
            vote: Vote {
                leader_id: LeaderId {
                    term: 7,
                    node_id: 2,
                },
                committed: true,
            },
            prev_log_id: Some(log_id(6, 1, 41)),
            leader_commit: Some(log_id(6, 1, 40)),
            entries: vec![
                Entry {
                    log_id: log_id(7, 2, 42),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(7, 2, 43),
                    payload: EntryPayload::Normal(ShardRequest(vec![9; 300])),
                },
                Entry {
                    log_id: log_id(7, 2, 44),
                    payload: EntryPayload::Membership(membership),
                },
            ],
        }
    }

    fn assert_same(a: &AppendEntriesRequest<TypeConfig>, b: &AppendEntriesRequest<TypeConfig>) {
        assert_eq!(a.vote, b.vote);
        assert_eq!(a.prev_log_id, b.prev_log_id);
        assert_eq!(a.leader_commit, b.leader_commit);
        assert_eq!(a.entries, b.entries);
    }

    #[test]
    fn append_request_round_trips_and_every_truncation_is_an_error() {
        let rpc = request();
        let mut bytes = Vec::new();
        encode_append_request(&rpc, &mut bytes);
        assert!(bytes.len() <= append_request_len(&rpc));
        let back = decode_append_request(&bytes).unwrap();
        assert_same(&back, &rpc);
        for cut in 0..bytes.len() {
            assert!(
                decode_append_request(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_append_request(&longer).err(),
            Some(WireError::Trailing { extra: 1 })
        );
        let heartbeat = AppendEntriesRequest::<TypeConfig> {
            entries: Vec::new(),
            prev_log_id: None,
            leader_commit: None,
            ..rpc
        };
        bytes.clear();
        encode_append_request(&heartbeat, &mut bytes);
        assert_same(&decode_append_request(&bytes).unwrap(), &heartbeat);
    }

    #[test]
    fn forged_counts_and_tags_are_errors() {
        let mut bytes = Vec::new();
        encode_append_request(&request(), &mut bytes);
        // The entry count sits after the vote (17) and two optional log ids (25 each).
        let count_at = 17 + 25 + 25;
        let mut forged = bytes.clone();
        forged[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_append_request(&forged),
            Err(WireError::TooManyEntries { .. })
        ));
        let mut forged = bytes.clone();
        forged[16] = 9; // the vote's committed flag
        assert!(matches!(
            decode_append_request(&forged),
            Err(WireError::BadTag { what: "vote", .. })
        ));
        let first_tag_at = count_at + 4 + 24;
        let mut forged = bytes;
        forged[first_tag_at] = 77;
        assert!(matches!(
            decode_append_request(&forged),
            Err(WireError::BadTag { what: "entry", .. })
        ));
    }

    #[test]
    fn append_results_round_trip() {
        let results: Vec<StreamAppendResult<TypeConfig>> = vec![
            Ok(None),
            Ok(Some(log_id(3, 1, 99))),
            Err(StreamAppendError::Conflict(log_id(2, 3, 10))),
            Err(StreamAppendError::HigherVote(Vote {
                leader_id: LeaderId {
                    term: 9,
                    node_id: 3,
                },
                committed: false,
            })),
        ];
        for result in results {
            let mut bytes = Vec::new();
            encode_append_result(&result, &mut bytes);
            assert_eq!(decode_append_result(&bytes).unwrap(), result);
            assert!(decode_append_result(&bytes[..bytes.len() - 1]).is_err());
        }
        assert!(decode_append_result(&[42]).is_err());
    }
}
