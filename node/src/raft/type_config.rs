//! The openraft type configuration of a shard group.
//!
//! Every shard (and the control group 0) is one openraft group of this type,
//! driven by [`GlommioRuntime`]. The payload of an entry is opaque bytes
//! ([`ShardRequest`]): the group's state (`GroupState`) decodes them, so the
//! log store and the network move bytes without knowing commands. Applying an
//! entry answers the proposer with a [`ShardReply`].

use std::fmt;

use serde::{Deserialize, Serialize};
use settle_codec::TxResult;

use super::runtime::GlommioRuntime;

/// What a proposer asks a group to append: an encoded command (rkyv for
/// shards, JSON for the control group), opaque to Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest(pub Vec<u8>);

impl fmt::Display for ShardRequest {
    // openraft logs entries through Display: print the size, never the payload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardRequest({} bytes)", self.0.len())
    }
}

/// What applying one entry returns to its proposer (only on the node that
/// proposed it): one result per transaction of a submit command, in order;
/// empty for entries that carry no transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReply {
    pub results: Vec<TxResult>,
    /// Set when the committed entry did not apply (it cannot be interpreted):
    /// every replica rejected it the same way and left its state unchanged;
    /// `results` is then empty.
    pub rejected: Option<String>,
}

impl ShardReply {
    /// The entry's results, or why every replica rejected it.
    pub fn into_results(self) -> Result<Vec<TxResult>, String> {
        match self.rejected {
            None => Ok(self.results),
            Some(reason) => {
                assert!(self.results.is_empty(), "a rejected entry has no results");
                Err(reason)
            }
        }
    }
}

/// The application payload of a log entry.
pub type Request = ShardRequest;
/// The reply produced by applying an entry.
pub type Response = ShardReply;

/// Id of a node (a `settle` process) within a group.
pub type NodeId = u64;

/// How to reach a node. Kept as our own type (not `openraft::BasicNode`) so
/// fields such as a per-core port can be added without touching openraft.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node's Raft listener.
    pub addr: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// Type configuration of every settle Raft group (shards and control group).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        // openraft's default leader id ("advanced": several leaders per term
        // allowed, log ids carry the node id) is the most exercised path.
        AsyncRuntime = GlommioRuntime,
);

/// A log entry of a settle group.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id of a settle group.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote of a settle group.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// The Raft handle of a settle group with state machine `SM`.
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_display_shows_size_not_payload() {
        let request = ShardRequest(vec![0xAB; 48]);
        assert_eq!(request.to_string(), "ShardRequest(48 bytes)");
    }
}
