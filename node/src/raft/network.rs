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

// ---------------------------------------------------------------------------
// TCP network of multi-node groups (see `crate::cluster` for the transport).

use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, Timeout};
use openraft::network::{Backoff, RPCTypes};
use openraft::raft::AppendEntriesResponse as AppendAnswer;
use openraft::raft::{StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse};

use super::wire::{decode_append_result, encode_append_request, from_json, to_json};
use crate::cluster::link::{Answer, Link, LinkError, Links};
use crate::cluster::proto::{
    SnapshotHeader, OP_APPEND, OP_HEARTBEAT, OP_PRE_VOTE, OP_SNAPSHOT, OP_TRANSFER_LEADER, OP_VOTE,
    STATUS_NOT_READY, STATUS_OK,
};

/// AppendEntries requests of one replication stream sent and not yet
/// answered: enough to keep the follower's disk and the wire busy while
/// answers travel back (openraft's own receive pipeline holds 64).
pub const APPEND_PIPELINE_DEPTH: usize = 64;

/// How long an AppendEntries answer may take before the stream is declared
/// broken (openraft then resends from the last match). openraft suggests the
/// heartbeat interval; a multi-megabyte append behind a busy follower's fsync
/// on a shared machine needs longer, and a dead follower is noticed by its
/// connection closing long before this.
pub const APPEND_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// Vote and pre-vote answers: an election that waits longer has lost anyway.
pub const VOTE_TIMEOUT_MIN: Duration = Duration::from_millis(250);

/// A whole snapshot: sending and installing a large state takes a while.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

pub const TRANSFER_LEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Retry delays of a replication stream that keeps failing (a peer that is
/// down): short first, so a restarted follower is caught up quickly.
const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Network factory of one group replicated over the core's peer links.
pub struct TcpNetwork {
    group: u16,
    links: Rc<Links>,
}

impl TcpNetwork {
    pub fn new(group: u16, links: Rc<Links>) -> Self {
        TcpNetwork { group, links }
    }

    fn client(&self, target: NodeId, node: &NodeAddr, heartbeat: bool) -> TcpClient {
        TcpClient {
            group: self.group,
            source: self.links.me(),
            target,
            link: self.links.link(target, &node.addr),
            heartbeat,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> TcpClient {
        self.client(target, node, false)
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &NodeAddr) -> TcpClient {
        self.client(target, node, true)
    }
}

/// One group's RPCs to one peer.
pub struct TcpClient {
    group: u16,
    source: NodeId,
    target: NodeId,
    link: Result<Rc<Link>, LinkError>,
    /// Heartbeats are answered one by one, not in a replication stream.
    heartbeat: bool,
}

fn rpc_error(e: LinkError, action: RPCTypes, source: NodeId) -> RPCError<TypeConfig> {
    match e {
        LinkError::Timeout { target, after } => RPCError::Timeout(Timeout {
            action,
            id: source,
            target,
            timeout: after,
        }),
        LinkError::Closed { .. } | LinkError::Protocol { .. } => {
            RPCError::Network(NetworkError::from_string(e.to_string()))
        }
        LinkError::Unreachable { .. } => RPCError::Unreachable(Unreachable::from_string(e)),
    }
}

/// The payload of an OK answer, or the RPC error a refusal means.
fn expect_ok(
    answer: Result<(u8, Vec<u8>), LinkError>,
    action: RPCTypes,
    source: NodeId,
    target: NodeId,
) -> Result<Vec<u8>, RPCError<TypeConfig>> {
    match answer {
        Ok((STATUS_OK, payload)) => Ok(payload),
        Ok((STATUS_NOT_READY, payload)) => {
            Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "node {target}: group not open: {}",
                String::from_utf8_lossy(&payload)
            ))))
        }
        Ok((status, payload)) => Err(RPCError::Network(NetworkError::from_string(format!(
            "node {target}: status {status}: {}",
            String::from_utf8_lossy(&payload)
        )))),
        Err(e) => Err(rpc_error(e, action, source)),
    }
}

impl TcpClient {
    fn link(&self, action: RPCTypes) -> Result<Rc<Link>, RPCError<TypeConfig>> {
        self.link
            .clone()
            .map_err(|e| rpc_error(e, action, self.source))
    }

    async fn call(
        &self,
        action: RPCTypes,
        op: u8,
        payload: &[u8],
        limit: Duration,
    ) -> Result<Vec<u8>, RPCError<TypeConfig>> {
        let link = self.link(action)?;
        let answer = link.call(self.group, op, payload, limit).await;
        expect_ok(answer, action, self.source, self.target)
    }

    async fn vote_rpc(
        &self,
        rpc: VoteRequest<TypeConfig>,
        op: u8,
        option: &RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let limit = option.soft_ttl().max(VOTE_TIMEOUT_MIN);
        let started = std::time::Instant::now();
        let answer = self.call(RPCTypes::Vote, op, &to_json(&rpc), limit).await;
        tracing::debug!(
            group = self.group,
            target = self.target,
            pre = op == OP_PRE_VOTE,
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = answer.is_ok(),
            "vote request sent"
        );
        let payload = answer?;
        from_json(&payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

/// One sent AppendEntries' pending answer (or why it was not sent).
type SentAppend = Result<crate::cluster::link::Pending, LinkError>;

impl RaftNetworkV2<TypeConfig> for TcpClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut bytes = Vec::new();
        encode_append_request(&rpc, &mut bytes);
        let limit = option.soft_ttl().max(APPEND_TIMEOUT_MIN);
        let payload = self
            .call(RPCTypes::AppendEntries, OP_HEARTBEAT, &bytes, limit)
            .await?;
        let result =
            decode_append_result(&payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        Ok(AppendAnswer::from(result))
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin + 'static,
    {
        let op = if self.heartbeat {
            OP_HEARTBEAT
        } else {
            OP_APPEND
        };
        let limit = option.soft_ttl().max(if self.heartbeat {
            Duration::ZERO
        } else {
            APPEND_TIMEOUT_MIN
        });
        let (group, source, target) = (self.group, self.source, self.target);
        Box::pin(async move {
            let action = RPCTypes::AppendEntries;
            let link = self.link(action)?;
            let (sent_tx, sent_rx) =
                tokio::sync::mpsc::channel::<SentAppend>(APPEND_PIPELINE_DEPTH);
            // Sender: every request goes out as soon as openraft produces it.
            // It connects only once the first request exists: openraft applies
            // its retry backoff while producing a request, so a peer that is
            // down is retried at the backoff's pace. (Failing here, before the
            // stream exists, would bypass the backoff and spin.)
            glommio::spawn_local(async move {
                let mut input = input;
                let mut bytes = Vec::new();
                let mut conn = None;
                while let Some(rpc) = input.next().await {
                    let conn = match &conn {
                        Some(conn) => conn,
                        None => match link.connection().await {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                let _ = sent_tx.send(Err(e)).await;
                                return;
                            }
                        },
                    };
                    bytes.clear();
                    encode_append_request(&rpc, &mut bytes);
                    drop(rpc);
                    let pending = conn.send(group, op, &bytes).await;
                    let failed = pending.is_err();
                    if sent_tx.send(pending).await.is_err() || failed {
                        return;
                    }
                }
            })
            .detach();
            // Receiver: answers in request order; the stream ends at the first failure.
            let answers = futures_util::stream::unfold(Some(sent_rx), move |state| async move {
                let mut sent_rx = state?;
                let sent = sent_rx.recv().await?;
                let result = match sent {
                    Err(e) => Err(rpc_error(e, action, source)),
                    Ok(pending) => {
                        let answer = pending.wait(limit).await.map(|a| match a {
                            Answer::Peer { status, payload } => (status, payload),
                            other => (u8::MAX, format!("{other:?}").into_bytes()),
                        });
                        expect_ok(answer, action, source, target).and_then(|payload| {
                            decode_append_result(&payload)
                                .map_err(|e| RPCError::Network(NetworkError::new(&e)))
                        })
                    }
                };
                let keep = matches!(result, Ok(Ok(_)));
                Some((result, keep.then_some(sent_rx)))
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.vote_rpc(rpc, OP_VOTE, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.vote_rpc(rpc, OP_PRE_VOTE, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = to_json(&SnapshotHeader {
            vote,
            meta: snapshot.meta,
        });
        let mut payload = Vec::with_capacity(4 + header.len() + snapshot.snapshot.len());
        payload.extend_from_slice(&(header.len() as u32).to_le_bytes());
        payload.extend_from_slice(&header);
        payload.extend_from_slice(&snapshot.snapshot);
        drop(snapshot.snapshot);
        let call = self.call(
            RPCTypes::InstallSnapshot,
            OP_SNAPSHOT,
            &payload,
            SNAPSHOT_TIMEOUT,
        );
        let outcome =
            futures_lite::future::or(async { Ok(call.await) }, async { Err(cancel.await) }).await;
        match outcome {
            Err(closed) => Err(StreamingError::Closed(closed)),
            Ok(Err(e)) => Err(match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => {
                    StreamingError::Network(NetworkError::from_string(r.to_string()))
                }
            }),
            Ok(Ok(answer)) => {
                from_json(&answer).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let payload = self
            .call(
                RPCTypes::TransferLeader,
                OP_TRANSFER_LEADER,
                &to_json(&req),
                TRANSFER_LEADER_TIMEOUT,
            )
            .await?;
        from_json(&payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    fn backoff(&self) -> Option<Backoff> {
        let mut next = BACKOFF_START;
        Some(Backoff::new(std::iter::from_fn(move || {
            let now = next;
            next = (next * 2).min(BACKOFF_MAX);
            Some(now)
        })))
    }
}
