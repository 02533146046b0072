//! The openraft type configuration of a shard group.
//!
//! Every shard (and the control group 0) is one openraft group of this type,
//! driven by [`GlommioRuntime`]. The application payload [`ShardRequest`] and
//! reply [`ShardResponse`] are placeholders: the real shard command/reply
//! types replace them by editing the two `pub type` lines below (they must be
//! `Debug + Display + serde` because openraft's `serde` feature is on).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::runtime::GlommioRuntime;

/// What a client asks a shard group to append (placeholder: opaque bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest(pub Vec<u8>);

impl fmt::Display for ShardRequest {
    // openraft logs entries through Display: print the size, never the payload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardRequest({} bytes)", self.0.len())
    }
}

/// What applying one entry returns to the proposer (placeholder: opaque bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardResponse(pub Vec<u8>);

/// The application payload of a log entry. Swap this line for the real command type.
pub type Request = ShardRequest;
/// The reply produced by applying an entry. Swap this line for the real reply type.
pub type Response = ShardResponse;

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
