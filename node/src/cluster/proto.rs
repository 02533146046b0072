//! The peer protocol's operations and its small JSON bodies.
//!
//! Every exchange is a `PeerRequest { group, op, payload }` answered by a
//! `PeerResponse { status, payload }` under the same request id (forwarded
//! submits use `ForwardSubmit` and the client's own answers). A connection
//! starts with [`OP_HELLO`] from the dialer, answered before anything else is
//! sent, so the acceptor can move the connection to the core it is for.
//!
//! On a TLS peer port (any node not started `--insecure`) that first answer
//! is [`STARTTLS`], in plaintext: the hello only routes the connection to a
//! core and is trusted for nothing else. The dialer then runs a mutual TLS
//! 1.3 handshake; the acceptor admits a node certificate whose id is the
//! hello's, or a tool's certificate (admin, operator, auditor) for
//! [`OP_STATUS`] only, and answers the hello again inside TLS. A tool may
//! also start TLS at once (first byte a TLS record): it is then served on
//! whichever core accepted it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// First request of a connection: who is calling and which core it wants.
pub const OP_HELLO: u8 = 1;
/// AppendEntries of a replication stream: applied in order per connection and group.
pub const OP_APPEND: u8 = 2;
/// A lone AppendEntries (heartbeats): applied independently.
pub const OP_HEARTBEAT: u8 = 3;
pub const OP_VOTE: u8 = 4;
pub const OP_PRE_VOTE: u8 = 5;
/// A whole snapshot (chunked): `[u32 header length][SnapshotHeader JSON][data]`.
pub const OP_SNAPSHOT: u8 = 6;
pub const OP_TRANSFER_LEADER: u8 = 7;
/// Metrics of every group of the core, optionally with state digests.
pub const OP_STATUS: u8 = 8;
/// "Is any of your groups initialized?" — the formation rule's question.
pub const OP_PROBE: u8 = 9;
/// Participants to upsert through the control group's leader (JSON list).
pub const OP_FORWARD_CONTROL: u8 = 10;
/// A shard write other than a submit, for the shard's leader (rkyv
/// `remote::ShardCommand`, answered by a `remote::ShardAnswer`).
pub const OP_SHARD_COMMAND: u8 = 11;
/// A control write for the control leader (JSON `remote::ControlCommand`,
/// answered by a `remote::ControlAnswer`).
pub const OP_CONTROL_COMMAND: u8 = 12;

pub const STATUS_OK: u8 = 0;
/// The request failed; the payload says why.
pub const STATUS_ERROR: u8 = 1;
/// The group is not open on this node (yet): retry later.
pub const STATUS_NOT_READY: u8 = 2;
/// This node does not lead the group.
pub const STATUS_NOT_LEADER: u8 = 3;
/// The hello was refused (different cluster shape): the connection closes.
pub const STATUS_REFUSED: u8 = 4;
/// The request could not be decoded.
pub const STATUS_BAD_REQUEST: u8 = 5;

/// The payload of the plaintext answer to a hello on a TLS peer port: the
/// connection has reached the core it is for, the dialer starts TLS now and
/// the acceptor answers the hello again, inside TLS, with a [`HelloAck`].
pub const STARTTLS: &[u8] = b"starttls";

/// What a dialer says first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The caller's node id; 0 for a tool (`settle status`), which is not a member.
    pub node_id: NodeId,
    /// The core of the acceptor the connection is for.
    pub core: usize,
    /// The caller's core count (0 for a tool): must equal the acceptor's,
    /// since groups are placed on cores by the same rule on every node.
    pub cores: usize,
    /// The caller's shard currencies, in order (empty for a tool).
    pub currencies: Vec<String>,
}

/// The acceptor's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    pub node_id: NodeId,
    pub core: usize,
    pub cores: usize,
}

/// Header of an [`OP_SNAPSHOT`] payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: crate::raft::type_config::Vote,
    pub meta: openraft::alias::SnapshotMetaOf<crate::raft::TypeConfig>,
}

/// Body of [`OP_STATUS`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Also give each replica's digest: at the index in `digest_at` for its
    /// group, else its newest (constant time, see [`crate::raft::digest`]).
    pub digest: bool,
    /// Group → the applied index to give the digest at (the status tool
    /// asks every replica of a group for the same one).
    #[serde(default)]
    pub digest_at: BTreeMap<u16, u64>,
}

/// One core's answer to [`OP_STATUS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoreStatus {
    pub node_id: NodeId,
    pub core: usize,
    pub cores: usize,
    /// The node's peer map as it sees it.
    pub peers: BTreeMap<NodeId, String>,
    pub groups: Vec<GroupStatus>,
}

/// A group's replica on one node, from its Raft metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: u16,
    pub name: String,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub voters: Vec<NodeId>,
    /// On the leader: each member's matched log index.
    pub replication: BTreeMap<NodeId, Option<u64>>,
    /// On the leader: how long since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    pub digest: Option<Digest>,
}

pub use crate::raft::digest::Digest;

/// Answer to [`OP_PROBE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub node_id: NodeId,
    /// Any group on this node has a log or a vote.
    pub initialized: bool,
    /// A group on this core has committed an entry beyond the initial
    /// membership: a leader was elected with a quorum, so the cluster was
    /// formed (not merely being formed) before the asking node started.
    #[serde(default)]
    pub formed: bool,
}
