//! The network of a group, as openraft's `RaftNetworkFactory`.
//!
//! Today every group has one voter, this node: [`SoloNetwork`] is its
//! factory, and a one-member group never sends an RPC. If openraft ever asks
//! (a membership change added a peer without a real network), every RPC
//! fails as `Unreachable`, which makes openraft back off instead of spin.
//!
//! The TCP network of 3-node clusters slots in as another factory: one per
//! group (its frames carry the group id, the server dispatches to that
//! group's `Raft` handle), with `SnapshotData = Vec<u8>` like the state
//! machine's. `group::open_group_with` takes any such factory.

use std::future::Future;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use super::type_config::{NodeAddr, NodeId, TypeConfig};

/// Network factory of a group whose only voter is this node.
#[derive(Debug, Clone)]
pub struct SoloNetwork {
    group: u16,
    node_id: NodeId,
}

impl SoloNetwork {
    pub fn new(group: u16, node_id: NodeId) -> Self {
        SoloNetwork { group, node_id }
    }
}

impl RaftNetworkFactory<TypeConfig> for SoloNetwork {
    type Network = SoloClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> SoloClient {
        SoloClient {
            group: self.group,
            source: self.node_id,
            target,
            target_addr: node.addr.clone(),
        }
    }
}

/// A "connection" to a peer of a single-node group: there is no transport.
#[derive(Debug, Clone)]
pub struct SoloClient {
    group: u16,
    source: NodeId,
    target: NodeId,
    target_addr: String,
}

impl SoloClient {
    fn unreachable(&self, rpc: &str) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "group {}: node {} has no network to send {rpc} to node {} ({}): this build runs single-node groups only",
            self.group, self.source, self.target, self.target_addr
        ))
    }
}

impl RaftNetworkV2<TypeConfig> for SoloClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable("append_entries")))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable("vote")))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable("a snapshot")))
    }
}
