//! Multi-node clusters: every shard group and the control group replicated
//! over TCP between the nodes of `--peers`, and any node accepting any
//! request.
//!
//! Design (one paragraph per piece):
//!
//! - **Addresses.** `--peers 1=host:port,2=…` gives every node's Raft (peer)
//!   address, separate from the client `--listen`. A node binds its own
//!   entry and dials the others; the map is local configuration, so a test
//!   can put a fault-injecting proxy between two nodes by giving each node a
//!   different address for the same peer.
//! - **Connections.** Each core of a node keeps one connection to each peer
//!   ([`link`]), and every group of that core (shards and control) sends its
//!   RPCs over it: frames carry the group id. Groups live on the same core
//!   index on every node (`ShardMap::core_of`, same `--cores` everywhere,
//!   checked at the handshake), so the dialer names the core it wants in its
//!   hello. The peer port is bound on every core (SO_REUSEPORT); a
//!   connection accepted on the wrong core is handed to the right core as a
//!   file descriptor, once, so no RPC ever crosses cores ([`server`]).
//! - **Raft RPCs** ([`crate::raft::network`], [`crate::raft::wire`]):
//!   AppendEntries is pipelined (openraft's stream of requests is sent
//!   without waiting for answers, the receiver feeds one ordered
//!   `Raft::stream_append` per connection and group) and batched (openraft
//!   packs entries, the writer coalesces frames into one write).
//! - **Forwarding** ([`forward`]): a task between intake and each group's
//!   proposer sends a sub-batch to the proposer when this node leads the
//!   group and to the leader's node otherwise, relaying the answer; a reply
//!   still means durable on a majority, because only the leader's proposer
//!   answers.
//! - **Formation** ([`init`]): the first start with pristine data
//!   directories everywhere is initialized by the lowest node id, once every
//!   peer has answered that it is pristine too; a node that finds the cluster
//!   already formed (a wiped node) joins and is caught up by the leaders.
//! - **Balance** ([`core`]): the first leader of every group is the node
//!   that formed the cluster; each leader hands its group to the group's
//!   preferred member (ids in order, round-robin over groups) once that
//!   member has caught up, so the shards' leader work is spread.
//! - **Status** ([`status`]): `settle status --target` asks every core of
//!   every member for its groups' metrics (and optionally a digest of each
//!   replica's state). A node started without `--peers` answers it on its
//!   client port ([`solo`]).

pub mod bounds;
pub mod conn;
pub mod core;
pub mod forward;
pub mod handle;
pub mod init;
pub mod link;
pub mod proto;
pub mod remote;
pub mod repair;
pub mod server;
pub mod solo;
pub mod status;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::raft::NodeId;

pub use self::core::{CoreCluster, NodeCluster};

/// Most members a cluster may have: Raft groups of more voters only add
/// latency, and every per-peer table is bounded by this.
pub const MEMBERS_MAX: usize = 15;

/// The cluster as one node sees it: its id and every member's peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Peer (Raft) address of every member, this node included.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Hand each group's leadership to its preferred member (see
    /// [`core::preferred_leader`]) once that member has caught up, so the
    /// leaders of different shards sit on different nodes.
    pub balance_leaders: bool,
    /// Mutual TLS 1.3 on the peer links; `None` only with `--insecure`.
    pub tls: Option<PeerTls>,
}

/// The TLS configurations of the peer links: both ends present a node
/// certificate of the cluster CA (see [`server`] for the handshake order).
#[derive(Clone)]
pub struct PeerTls {
    /// Requires a client certificate of the CA.
    pub server: std::sync::Arc<futures_rustls::rustls::ServerConfig>,
    /// Offers this node's certificate, verifies the peer's.
    pub client: std::sync::Arc<futures_rustls::rustls::ClientConfig>,
}

impl PeerTls {
    pub fn new(
        credentials: &settle_security::Credentials,
    ) -> Result<Self, settle_security::TlsError> {
        Ok(PeerTls {
            server: credentials.server_mutual()?,
            client: credentials.client()?,
        })
    }
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PartialEq for PeerTls {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.server, &other.server)
            && std::sync::Arc::ptr_eq(&self.client, &other.client)
    }
}

impl Eq for PeerTls {}

/// Why a `--peers` value is not a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersError {
    #[error("--peers: {0:?} is not id=host:port")]
    BadEntry(String),
    #[error("--peers: node id {0} appears twice")]
    Duplicate(NodeId),
    #[error("--peers: node id 0 is reserved")]
    ZeroId,
    #[error("--peers: {0} members, at most {MEMBERS_MAX}")]
    TooMany(usize),
    #[error("--peers does not list this node's id {0}")]
    SelfMissing(NodeId),
    #[error("--peers: cannot resolve {0:?}")]
    Unresolved(String),
}

/// Parses `1=127.0.0.1:7101,2=127.0.0.1:7102` (commas or whitespace).
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, PeersError> {
    let mut peers = BTreeMap::new();
    for entry in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| PeersError::BadEntry(entry.to_string()))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| PeersError::BadEntry(entry.to_string()))?;
        if id == 0 {
            return Err(PeersError::ZeroId);
        }
        let addr = addr
            .trim()
            .to_socket_addrs()
            .map_err(|_| PeersError::Unresolved(addr.to_string()))?
            .next()
            .ok_or_else(|| PeersError::Unresolved(addr.to_string()))?;
        if peers.insert(id, addr).is_some() {
            return Err(PeersError::Duplicate(id));
        }
    }
    if peers.is_empty() {
        return Err(PeersError::BadEntry(text.to_string()));
    }
    if peers.len() > MEMBERS_MAX {
        return Err(PeersError::TooMany(peers.len()));
    }
    Ok(peers)
}

impl ClusterConfig {
    pub fn new(node_id: NodeId, peers: BTreeMap<NodeId, SocketAddr>) -> Result<Self, PeersError> {
        if !peers.contains_key(&node_id) {
            return Err(PeersError::SelfMissing(node_id));
        }
        Ok(ClusterConfig {
            node_id,
            peers,
            balance_leaders: true,
            tls: None,
        })
    }

    /// The address this node's peer listener binds.
    pub fn own_addr(&self) -> SocketAddr {
        self.peers[&self.node_id]
    }

    /// Every member but this node.
    pub fn others(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.peers
            .iter()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, addr)| (*id, *addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_maps_name_the_problem() {
        let peers = parse_peers("1=127.0.0.1:7101,2=127.0.0.1:7102 3=127.0.0.1:7103").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "127.0.0.1:7102".parse::<SocketAddr>().unwrap());
        let config = ClusterConfig::new(2, peers.clone()).unwrap();
        assert_eq!(config.own_addr().port(), 7102);
        assert_eq!(
            config.others().map(|(id, _)| id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            ClusterConfig::new(4, peers),
            Err(PeersError::SelfMissing(4))
        );
        assert_eq!(
            parse_peers("1=127.0.0.1:1,1=127.0.0.1:2"),
            Err(PeersError::Duplicate(1))
        );
        assert!(matches!(
            parse_peers("1:127.0.0.1:1"),
            Err(PeersError::BadEntry(_))
        ));
        assert_eq!(parse_peers("0=127.0.0.1:1"), Err(PeersError::ZeroId));
        assert!(parse_peers("").is_err());
    }
}
