//! TEST ONLY: an in-process network joining several Raft nodes on one executor.
//!
//! Each RPC is a direct call on the target's `Raft` handle. A node can be
//! isolated, after which every RPC from or to it fails as `Unreachable`,
//! which is how the tests stage a leader failure, and healed again. Generic
//! over the state machine, so the same router joins in-memory test nodes and
//! nodes on the production stores.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use openraft::storage::RaftStateMachine;

use crate::raft::type_config::{NodeAddr, NodeId, Raft, TypeConfig};

/// What a router can join: any state machine whose snapshots are bytes.
pub trait RoutableMachine: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>> {}

impl<SM: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>> RoutableMachine for SM {}

struct Nodes<SM: RoutableMachine> {
    rafts: BTreeMap<NodeId, Raft<SM>>,
    isolated: BTreeSet<NodeId>,
}

/// Directory of the nodes of one test cluster.
pub struct Router<SM: RoutableMachine> {
    nodes: Rc<RefCell<Nodes<SM>>>,
}

impl<SM: RoutableMachine> Clone for Router<SM> {
    fn clone(&self) -> Self {
        Router {
            nodes: self.nodes.clone(),
        }
    }
}

impl<SM: RoutableMachine> Default for Router<SM> {
    fn default() -> Self {
        Router {
            nodes: Rc::new(RefCell::new(Nodes {
                rafts: BTreeMap::new(),
                isolated: BTreeSet::new(),
            })),
        }
    }
}

impl<SM: RoutableMachine> Router<SM> {
    pub fn add(&self, id: NodeId, raft: Raft<SM>) {
        self.nodes.borrow_mut().rafts.insert(id, raft);
    }

    /// Cut `id` off from every other node, in both directions.
    pub fn isolate(&self, id: NodeId) {
        self.nodes.borrow_mut().isolated.insert(id);
    }

    /// Reconnect an isolated node.
    pub fn heal(&self, id: NodeId) {
        self.nodes.borrow_mut().isolated.remove(&id);
    }

    /// Drop every handle (breaks the router ↔ raft reference cycle).
    pub fn clear(&self) -> Vec<Raft<SM>> {
        let mut nodes = self.nodes.borrow_mut();
        std::mem::take(&mut nodes.rafts).into_values().collect()
    }

    /// The target's handle, cloned so no `RefCell` borrow lives across an await.
    fn reach(&self, source: NodeId, target: NodeId) -> Result<Raft<SM>, Unreachable<TypeConfig>> {
        let nodes = self.nodes.borrow();
        if nodes.isolated.contains(&source) || nodes.isolated.contains(&target) {
            return Err(Unreachable::from_string(format!(
                "{source} -> {target}: isolated"
            )));
        }
        nodes
            .rafts
            .get(&target)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("{source} -> {target}: no such node")))
    }

    pub fn factory(&self, source: NodeId) -> NetworkFactory<SM> {
        NetworkFactory {
            source,
            router: self.clone(),
        }
    }
}

/// What openraft asks for a connection to a peer.
pub struct NetworkFactory<SM: RoutableMachine> {
    source: NodeId,
    router: Router<SM>,
}

impl<SM: RoutableMachine> RaftNetworkFactory<TypeConfig> for NetworkFactory<SM> {
    type Network = Connection<SM>;

    async fn new_client(&mut self, target: NodeId, _node: &NodeAddr) -> Connection<SM> {
        Connection {
            source: self.source,
            target,
            router: self.router.clone(),
        }
    }
}

/// One node's link to one peer.
pub struct Connection<SM: RoutableMachine> {
    source: NodeId,
    target: NodeId,
    router: Router<SM>,
}

impl<SM: RoutableMachine> RaftNetworkV2<TypeConfig> for Connection<SM> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.router.reach(self.source, self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.router.reach(self.source, self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self.router.reach(self.source, self.target)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}
