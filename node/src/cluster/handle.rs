//! A group's Raft handle with its state machine type erased, so the peer
//! server can dispatch an RPC to any group of its core (shards and the
//! control group have different state machines).

use std::collections::BTreeMap;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use openraft::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::async_runtime::WatchReceiver;
use openraft::metrics::RaftMetrics;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};

use super::proto::{Digest, GroupStatus};
use crate::raft::type_config::Vote;
use crate::raft::{GroupState, GroupStateMachine, NodeAddr, NodeId, Raft, TypeConfig};

/// What the peer server and the cluster tasks need from a group.
pub trait GroupHandle {
    /// Feeds one ordered stream of AppendEntries to the group; the answers
    /// come back in order and the stream ends after the first refusal.
    fn append_stream(
        &self,
        input: LocalBoxStream<'static, AppendEntriesRequest<TypeConfig>>,
    ) -> LocalBoxStream<'static, Result<StreamAppendResult<TypeConfig>, String>>;

    fn append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> LocalBoxFuture<'static, Result<AppendEntriesResponse<TypeConfig>, String>>;

    fn vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
        pre_vote: bool,
    ) -> LocalBoxFuture<'static, Result<VoteResponse<TypeConfig>, String>>;

    fn install_snapshot(
        &self,
        vote: Vote,
        meta: SnapshotMetaOf<TypeConfig>,
        data: Vec<u8>,
    ) -> LocalBoxFuture<'static, Result<SnapshotResponse<TypeConfig>, String>>;

    fn transfer_leader(
        &self,
        rpc: TransferLeaderRequest<TypeConfig>,
    ) -> LocalBoxFuture<'static, Result<TransferLeaderResponse<TypeConfig>, String>>;

    /// Asks this (leading) replica to hand leadership to `to`.
    fn trigger_transfer(&self, to: NodeId) -> LocalBoxFuture<'static, Result<(), String>>;

    /// Initializes a pristine group with `members`.
    fn initialize(
        &self,
        members: BTreeMap<NodeId, NodeAddr>,
    ) -> LocalBoxFuture<'static, Result<(), String>>;

    /// The group's current metrics.
    fn metrics(&self) -> RaftMetrics<TypeConfig>;

    /// The leader this replica knows (cheap: no copy of the metrics).
    fn current_leader(&self) -> Option<NodeId>;

    /// The replica's digest after applying `at` (the newest with `None`);
    /// `None` when it does not keep that index (see [`crate::raft::digest`]).
    /// Constant time: it never serialises the state.
    fn digest(&self, at: Option<u64>) -> LocalBoxFuture<'static, Result<Option<Digest>, String>>;

    fn shutdown(&self) -> LocalBoxFuture<'static, ()>;
}

impl<S: GroupState> GroupHandle for Raft<GroupStateMachine<S>> {
    fn append_stream(
        &self,
        input: LocalBoxStream<'static, AppendEntriesRequest<TypeConfig>>,
    ) -> LocalBoxStream<'static, Result<StreamAppendResult<TypeConfig>, String>> {
        self.stream_append(input)
            .map(|r| r.map_err(|fatal| fatal.to_string()))
            .boxed_local()
    }

    fn append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> LocalBoxFuture<'static, Result<AppendEntriesResponse<TypeConfig>, String>> {
        let raft = self.clone();
        Box::pin(async move { raft.append_entries(rpc).await.map_err(|e| e.to_string()) })
    }

    fn vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
        pre_vote: bool,
    ) -> LocalBoxFuture<'static, Result<VoteResponse<TypeConfig>, String>> {
        let raft = self.clone();
        Box::pin(async move {
            if pre_vote {
                raft.pre_vote(rpc).await.map_err(|e| e.to_string())
            } else {
                raft.vote(rpc).await.map_err(|e| e.to_string())
            }
        })
    }

    fn install_snapshot(
        &self,
        vote: Vote,
        meta: SnapshotMetaOf<TypeConfig>,
        data: Vec<u8>,
    ) -> LocalBoxFuture<'static, Result<SnapshotResponse<TypeConfig>, String>> {
        let raft = self.clone();
        Box::pin(async move {
            let snapshot = SnapshotOf::<TypeConfig, Vec<u8>> {
                meta,
                snapshot: data,
            };
            raft.install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn transfer_leader(
        &self,
        rpc: TransferLeaderRequest<TypeConfig>,
    ) -> LocalBoxFuture<'static, Result<TransferLeaderResponse<TypeConfig>, String>> {
        let raft = self.clone();
        Box::pin(async move {
            raft.handle_transfer_leader(rpc)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn trigger_transfer(&self, to: NodeId) -> LocalBoxFuture<'static, Result<(), String>> {
        let raft = self.clone();
        Box::pin(async move {
            raft.trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn initialize(
        &self,
        members: BTreeMap<NodeId, NodeAddr>,
    ) -> LocalBoxFuture<'static, Result<(), String>> {
        let raft = self.clone();
        Box::pin(async move { raft.initialize(members).await.map_err(|e| e.to_string()) })
    }

    fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.metrics().borrow_watched().clone()
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.metrics().borrow_watched().current_leader
    }

    fn digest(&self, at: Option<u64>) -> LocalBoxFuture<'static, Result<Option<Digest>, String>> {
        let raft = self.clone();
        Box::pin(async move {
            raft.with_state_machine(move |sm: &mut GroupStateMachine<S>| {
                let digest = sm.digest_at(at);
                Box::pin(async move { digest })
            })
            .await
            .map_err(|e| e.to_string())
        })
    }

    fn shutdown(&self) -> LocalBoxFuture<'static, ()> {
        let raft = self.clone();
        Box::pin(async move {
            let _ = raft.shutdown().await;
        })
    }
}

/// A group's status line from its metrics.
#[allow(deprecated)] // millis_since_quorum_ack: the relative form is what people read
pub fn group_status(group: u16, name: &str, handle: &Rc<dyn GroupHandle>) -> GroupStatus {
    let m = handle.metrics();
    GroupStatus {
        group,
        name: name.to_string(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log: m.last_log_index,
        committed: m.local_committed.map(|l| l.index),
        applied: m.last_applied.map(|l| l.index),
        snapshot: m.snapshot.map(|l| l.index),
        purged: m.purged.map(|l| l.index),
        voters: m.membership_config.membership().voter_ids().collect(),
        replication: m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log_id)| (*id, log_id.as_ref().map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default(),
        millis_since_quorum_ack: m.millis_since_quorum_ack,
        digest: None,
    }
}
