//! Forwarding: the task between intake and a group's proposer.
//!
//! Intake sends every sub-batch to its shard's inbox on this node; this task
//! hands it to the local proposer when this node leads the shard, and to the
//! leader's node otherwise (over the core's peer link, where it joins the
//! leader's group commit), relaying the answer. When leadership moves while
//! a request is under way (a NotLeader answer, a lost connection, a
//! timeout), the request is sent again to the new leader until
//! [`FORWARD_DEADLINE`]: transaction ids are idempotency keys, so a repeat
//! of something already committed is answered `Duplicate`, which is an
//! acknowledgement. Only a leader's proposer ever answers, after its entry
//! is committed, so a reply still means "durable on a majority".
//!
//! Lookups (and any other message) go to the local proposer: reads are
//! served from this node's replica.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use settle_codec::{ErrorCode, ForwardSubmit, Transaction, TxResult, MAX_BATCH_TRANSACTIONS};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::core::CoreCluster;
use super::handle::GroupHandle;
use super::link::{Answer, LinkError};
use super::proto::{OP_FORWARD_CONTROL, STATUS_NOT_LEADER, STATUS_OK};
use crate::intake::router::{ControlMsg, ShardError, ShardMsg};
use crate::raft::NodeId;
use crate::shard::{GroupId, CONTROL_GROUP};

/// Requests of one group being submitted or forwarded at once. Beyond this
/// the forwarder stops reading its inbox, so intake's bounded inbox is the
/// back-pressure again.
pub const FORWARDS_IN_FLIGHT_MAX: u64 = 1_024;

/// How long a request may keep looking for a leader that commits it.
/// Failover takes well under this; past it the client gets an error (its
/// transactions may or may not be durable; resubmitting is safe).
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(10);

/// How long one forwarded request may wait for the leader's answer (a
/// durable commit on a busy shared machine can take a while).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed attempt, how long to wait for a different leader before
/// trying the same one again (a transient connection failure).
const LEADER_CHANGE_WAIT: Duration = Duration::from_millis(500);

const POLL: Duration = Duration::from_millis(5);

/// Why one attempt failed.
enum Attempt {
    /// Try again (after the leader changes, or a moment).
    Retry(String),
    /// The answer for the client.
    Final(ShardError),
}

/// Runs a shard's forwarder until intake's inbox closes.
pub async fn run_shard(
    group: GroupId,
    cluster: Rc<CoreCluster>,
    handle: Rc<dyn GroupHandle>,
    mut inbox: mpsc::Receiver<ShardMsg>,
    proposer: mpsc::Sender<ShardMsg>,
) {
    let slots = Rc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX));
    while let Some(msg) = inbox.recv().await {
        match msg {
            ShardMsg::Submit {
                transactions,
                reply,
            } => {
                let permit = slots
                    .clone()
                    .acquire_static_permit(1)
                    .await
                    .expect("the semaphore is never closed");
                let (cluster, handle, proposer) =
                    (cluster.clone(), handle.clone(), proposer.clone());
                glommio::spawn_local(async move {
                    let outcome =
                        submit_anywhere(group, &cluster, handle.as_ref(), &proposer, transactions)
                            .await;
                    let _ = reply.send(outcome);
                    drop(permit);
                })
                .detach();
            }
            other => {
                if proposer.send(other).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Submits through whichever node leads the group, in chunks a frame holds.
async fn submit_anywhere(
    group: GroupId,
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ShardMsg>,
    transactions: Vec<Transaction>,
) -> Result<Vec<TxResult>, ShardError> {
    if transactions.len() <= MAX_BATCH_TRANSACTIONS {
        return submit_batch(group, cluster, handle, proposer, transactions).await;
    }
    let mut results = Vec::with_capacity(transactions.len());
    for chunk in transactions.chunks(MAX_BATCH_TRANSACTIONS) {
        results.extend(submit_batch(group, cluster, handle, proposer, chunk.to_vec()).await?);
    }
    Ok(results)
}

async fn submit_batch(
    group: GroupId,
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ShardMsg>,
    transactions: Vec<Transaction>,
) -> Result<Vec<TxResult>, ShardError> {
    let me = cluster.node.node_id();
    let forward = ForwardSubmit {
        group,
        transactions,
    };
    let deadline = Instant::now() + FORWARD_DEADLINE;
    loop {
        let leader = wait_for_leader(handle, deadline).await;
        let attempt = match leader {
            None => Err(Attempt::Retry("no leader".into())),
            Some(leader) if leader == me => {
                submit_local(group, proposer, forward.transactions.clone()).await
            }
            Some(leader) => submit_remote(cluster, leader, &forward).await,
        };
        match attempt {
            Ok(results) => {
                if results.len() != forward.transactions.len() {
                    return Err(ShardError::Internal {
                        group,
                        message: format!(
                            "{} results for {} transactions",
                            results.len(),
                            forward.transactions.len()
                        ),
                    });
                }
                return Ok(results);
            }
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => {
                if Instant::now() >= deadline {
                    return Err(ShardError::NotLeader {
                        group,
                        leader: handle.current_leader(),
                    });
                }
                debug!(group, ?leader, %reason, "submit attempt failed; retrying");
                wait_for_change(handle, leader, deadline).await;
            }
        }
    }
}

/// The current leader, waiting (until `deadline`) while there is none.
async fn wait_for_leader(handle: &dyn GroupHandle, deadline: Instant) -> Option<NodeId> {
    loop {
        let leader = handle.current_leader();
        if leader.is_some() || Instant::now() >= deadline {
            return leader;
        }
        glommio::timer::sleep(POLL).await;
    }
}

/// Waits until the leader is no longer `failed` (or a short while passed).
async fn wait_for_change(handle: &dyn GroupHandle, failed: Option<NodeId>, deadline: Instant) {
    let until = (Instant::now() + LEADER_CHANGE_WAIT).min(deadline);
    while Instant::now() < until {
        let leader = handle.current_leader();
        if leader.is_some() && leader != failed {
            return;
        }
        glommio::timer::sleep(POLL).await;
    }
}

async fn submit_local(
    group: GroupId,
    proposer: &mpsc::Sender<ShardMsg>,
    transactions: Vec<Transaction>,
) -> Result<Vec<TxResult>, Attempt> {
    let (reply, answer) = oneshot::channel();
    proposer
        .send(ShardMsg::Submit {
            transactions,
            reply,
        })
        .await
        .map_err(|_| Attempt::Final(ShardError::ShuttingDown(group)))?;
    match answer.await {
        Ok(Ok(results)) => Ok(results),
        Ok(Err(ShardError::NotLeader { .. })) => Err(Attempt::Retry("lost leadership".into())),
        Ok(Err(e)) => Err(Attempt::Final(e)),
        Err(_) => Err(Attempt::Final(ShardError::ShuttingDown(group))),
    }
}

async fn submit_remote(
    cluster: &CoreCluster,
    leader: NodeId,
    forward: &ForwardSubmit,
) -> Result<Vec<TxResult>, Attempt> {
    let group = forward.group;
    let link = cluster
        .links
        .forward(leader)
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    let sent = async {
        let conn = link.connection().await?;
        conn.send_forward(forward)
            .await?
            .wait(FORWARD_TIMEOUT)
            .await
    };
    match sent.await {
        Ok(Answer::Submit(results)) => Ok(results),
        Ok(Answer::Error(e)) => match e.code {
            ErrorCode::NotLeader | ErrorCode::ShuttingDown => Err(Attempt::Retry(e.message)),
            ErrorCode::Overloaded => Err(Attempt::Final(ShardError::Full { group, records: 0 })),
            _ => Err(Attempt::Final(ShardError::Internal {
                group,
                message: format!("leader {leader}: {}", e.message),
            })),
        },
        Ok(Answer::Peer { payload, .. }) => Err(Attempt::Final(ShardError::Internal {
            group,
            message: format!(
                "leader {leader} answered a peer message: {}",
                String::from_utf8_lossy(&payload)
            ),
        })),
        Err(e @ LinkError::Protocol { .. }) => Err(Attempt::Final(ShardError::Internal {
            group,
            message: e.to_string(),
        })),
        Err(e) => Err(Attempt::Retry(e.to_string())),
    }
}

/// Runs the control group's forwarder: participant upserts go to the
/// control leader; everything else to the local control proposer.
pub async fn run_control(
    cluster: Rc<CoreCluster>,
    handle: Rc<dyn GroupHandle>,
    mut inbox: mpsc::Receiver<ControlMsg>,
    proposer: mpsc::Sender<ControlMsg>,
) {
    while let Some(msg) = inbox.recv().await {
        match msg {
            ControlMsg::UpsertParticipants {
                participants,
                reply,
            } => {
                let (cluster, handle, proposer) =
                    (cluster.clone(), handle.clone(), proposer.clone());
                glommio::spawn_local(async move {
                    let outcome =
                        upsert_anywhere(&cluster, handle.as_ref(), &proposer, participants).await;
                    let _ = reply.send(outcome);
                })
                .detach();
            }
            #[allow(unreachable_patterns)]
            other => {
                if proposer.send(other).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn upsert_anywhere(
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ControlMsg>,
    participants: Vec<crate::participants::Participant>,
) -> Result<(), ShardError> {
    let me = cluster.node.node_id();
    let deadline = Instant::now() + FORWARD_DEADLINE;
    let body = serde_json::to_vec(&participants).expect("participants are plain data");
    loop {
        let leader = wait_for_leader(handle, deadline).await;
        let attempt = match leader {
            None => Err(Attempt::Retry("no leader".into())),
            Some(leader) if leader == me => {
                let (reply, answer) = oneshot::channel();
                let msg = ControlMsg::UpsertParticipants {
                    participants: participants.clone(),
                    reply,
                };
                if proposer.send(msg).await.is_err() {
                    return Err(ShardError::ShuttingDown(CONTROL_GROUP));
                }
                match answer.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(ShardError::NotLeader { .. })) => {
                        Err(Attempt::Retry("lost leadership".into()))
                    }
                    Ok(Err(e)) => Err(Attempt::Final(e)),
                    Err(_) => Err(Attempt::Final(ShardError::ShuttingDown(CONTROL_GROUP))),
                }
            }
            Some(leader) => match cluster.links.forward(leader) {
                Err(e) => Err(Attempt::Retry(e.to_string())),
                Ok(link) => match link
                    .call(CONTROL_GROUP, OP_FORWARD_CONTROL, &body, FORWARD_TIMEOUT)
                    .await
                {
                    Ok((STATUS_OK, _)) => Ok(()),
                    Ok((STATUS_NOT_LEADER, _)) => Err(Attempt::Retry("not leader".into())),
                    Ok((_, message)) => Err(Attempt::Final(ShardError::Internal {
                        group: CONTROL_GROUP,
                        message: String::from_utf8_lossy(&message).into_owned(),
                    })),
                    Err(e) => Err(Attempt::Retry(e.to_string())),
                },
            },
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => {
                if Instant::now() >= deadline {
                    return Err(ShardError::NotLeader {
                        group: CONTROL_GROUP,
                        leader,
                    });
                }
                debug!(?leader, %reason, "participant upsert attempt failed; retrying");
                wait_for_change(handle, leader, deadline).await;
            }
        }
    }
}
