//! Forwarding: the tasks between intake and a group's proposer.
//!
//! Intake sends every request for a shard to that shard's inboxes on this
//! node; these tasks hand a write to the local proposer when this node leads
//! the group, and to the leader's node otherwise (over the core's forward
//! link, where it joins the leader's group commit), relaying the answer.
//! When leadership moves while a request is under way (a NotLeader answer, a
//! lost connection, a timeout), the request is sent again to the new leader
//! until [`FORWARD_DEADLINE`]: transaction ids (and deposit and cycle ids)
//! are idempotency keys, so a repeat of something already committed is
//! answered `Duplicate`, which is an acknowledgement. Only a leader's
//! proposer ever answers, after its entry is committed, so a reply still
//! means "durable on a majority".
//!
//! Writes forwarded: submits; deposits, balance openings, cycle close and
//! apply, execution outcomes (shards); participants, cycle runs and FX
//! settings (control). Reads (lookups, balances, statuses, cycle records)
//! are served from this node's replica.

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use settle_codec::{ErrorCode, ForwardSubmit, Transaction, TxResult, MAX_BATCH_TRANSACTIONS};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::core::CoreCluster;
use super::handle::GroupHandle;
use super::link::{Answer, LinkError};
use super::proto::{
    OP_CONTROL_COMMAND, OP_FORWARD_CONTROL, OP_SHARD_COMMAND, STATUS_NOT_LEADER, STATUS_OK,
};
use super::remote::{self, ControlAnswer, ShardAnswer, ShardCommand};
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
/// durable commit on a busy shared machine can take a while; a cycle close
/// collects candidates).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed attempt, how long to wait for a different leader before
/// trying the same one again: short at first (a leader elected a moment
/// ago refuses writes until a quorum has acknowledged it, which takes one
/// round trip), doubling up to the last (a leader that is gone).
const RETRY_WAITS: [Duration; 6] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(150),
    Duration::from_millis(400),
];

const POLL: Duration = Duration::from_millis(2);

/// Why one attempt failed.
enum Attempt {
    /// Try again (after the leader changes, or a moment).
    Retry(String),
    /// The answer for the client.
    Final(ShardError),
}

/// Where one attempt goes.
#[derive(Clone, Copy)]
enum Target {
    Local,
    Remote(NodeId),
}

/// Runs `attempt` against the group's leader until it succeeds, fails for
/// good, or [`FORWARD_DEADLINE`] passes.
async fn with_leader<T, F, Fut>(
    group: GroupId,
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    mut attempt: F,
) -> Result<T, ShardError>
where
    F: FnMut(Target) -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let me = cluster.node.node_id();
    let deadline = Instant::now() + FORWARD_DEADLINE;
    let mut failures = 0usize;
    loop {
        let leader = wait_for_leader(handle, deadline).await;
        let outcome = match leader {
            None => Err(Attempt::Retry("no leader".into())),
            Some(leader) if leader == me => attempt(Target::Local).await,
            Some(leader) => attempt(Target::Remote(leader)).await,
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => {
                if Instant::now() >= deadline {
                    return Err(ShardError::NotLeader {
                        group,
                        leader: handle.current_leader(),
                    });
                }
                debug!(group, ?leader, %reason, "attempt failed; retrying");
                let wait = RETRY_WAITS[failures.min(RETRY_WAITS.len() - 1)];
                failures += 1;
                wait_for_change(handle, leader, wait, deadline).await;
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

/// Waits until the leader is no longer `failed`, at most `wait`.
async fn wait_for_change(
    handle: &dyn GroupHandle,
    failed: Option<NodeId>,
    wait: Duration,
    deadline: Instant,
) {
    let until = (Instant::now() + wait).min(deadline);
    while Instant::now() < until {
        let leader = handle.current_leader();
        if leader.is_some() && leader != failed {
            return;
        }
        glommio::timer::sleep(POLL).await;
    }
}

/// A link failure: retry unless the peer spoke nonsense.
fn link_attempt(group: GroupId, e: LinkError) -> Attempt {
    match e {
        LinkError::Protocol { .. } => Attempt::Final(ShardError::Internal {
            group,
            message: e.to_string(),
        }),
        e => Attempt::Retry(e.to_string()),
    }
}

/// Hands `msg` to this node's proposer of `group` and waits for `answer`.
async fn ask_local<M, A>(
    group: GroupId,
    proposer: &mpsc::Sender<M>,
    msg: M,
    answer: oneshot::Receiver<A>,
) -> Result<A, Attempt> {
    proposer
        .send(msg)
        .await
        .map_err(|_| Attempt::Final(ShardError::ShuttingDown(group)))?;
    answer
        .await
        .map_err(|_| Attempt::Final(ShardError::ShuttingDown(group)))
}

/// Sends `body` as `op` of `group` to `leader` and returns the answer's
/// payload; an answer that is not OK is worth another attempt.
async fn call_leader(
    cluster: &CoreCluster,
    group: GroupId,
    leader: NodeId,
    op: u8,
    body: &[u8],
) -> Result<Vec<u8>, Attempt> {
    let link = cluster
        .links
        .forward(leader)
        .map_err(|e| link_attempt(group, e))?;
    let (status, payload) = link
        .call(group, op, body, FORWARD_TIMEOUT)
        .await
        .map_err(|e| link_attempt(group, e))?;
    if status != STATUS_OK {
        return Err(Attempt::Retry(format!(
            "leader {leader}: status {status}: {}",
            String::from_utf8_lossy(&payload)
        )));
    }
    Ok(payload)
}

// ---------------------------------------------------------------------------
// Shards.

/// Runs a shard's submit forwarder until intake's inbox closes.
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

/// Runs a shard's priority forwarder (deposits, openings, cycle commands)
/// until intake's priority inbox closes.
pub async fn run_shard_priority(
    group: GroupId,
    cluster: Rc<CoreCluster>,
    handle: Rc<dyn GroupHandle>,
    mut inbox: mpsc::Receiver<ShardMsg>,
    proposer: mpsc::Sender<ShardMsg>,
) {
    let slots = Rc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX));
    while let Some(msg) = inbox.recv().await {
        match remote::split(msg) {
            Ok((command, reply)) => {
                let permit = slots
                    .clone()
                    .acquire_static_permit(1)
                    .await
                    .expect("the semaphore is never closed");
                let (cluster, handle, proposer) =
                    (cluster.clone(), handle.clone(), proposer.clone());
                glommio::spawn_local(async move {
                    let outcome =
                        command_anywhere(group, &cluster, handle.as_ref(), &proposer, command)
                            .await;
                    reply.deliver(group, outcome);
                    drop(permit);
                })
                .detach();
            }
            Err(read) => {
                if proposer.send(read).await.is_err() {
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
    let count = transactions.len();
    let forward = ForwardSubmit {
        group,
        transactions,
    };
    let forward = &forward;
    let results = with_leader(group, cluster, handle, |target| async move {
        match target {
            Target::Local => submit_local(group, proposer, forward.transactions.clone()).await,
            Target::Remote(leader) => submit_remote(cluster, leader, forward).await,
        }
    })
    .await?;
    if results.len() != count {
        return Err(ShardError::Internal {
            group,
            message: format!("{} results for {count} transactions", results.len()),
        });
    }
    Ok(results)
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
        .map_err(|e| link_attempt(group, e))?;
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
        Err(e) => Err(link_attempt(group, e)),
    }
}

/// Runs a shard command on whichever node leads the group.
async fn command_anywhere(
    group: GroupId,
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ShardMsg>,
    command: ShardCommand,
) -> Result<ShardAnswer, ShardError> {
    let command = &command;
    let encoded = remote::encode(command);
    let encoded = &encoded;
    let answer = with_leader(group, cluster, handle, |target| async move {
        let answer = match target {
            Target::Local => {
                let (msg, answer) = remote::to_local(command.clone());
                ask_local(group, proposer, msg, answer).await?
            }
            Target::Remote(leader) => {
                let payload =
                    call_leader(cluster, group, leader, OP_SHARD_COMMAND, encoded).await?;
                remote::decode_answer(&payload).map_err(|e| {
                    Attempt::Final(ShardError::Internal {
                        group,
                        message: e.to_string(),
                    })
                })?
            }
        };
        match answer {
            ShardAnswer::Failed(
                remote::RemoteError::NotLeader | remote::RemoteError::ShuttingDown,
            ) => Err(Attempt::Retry("not the leader".into())),
            answer => Ok(answer),
        }
    })
    .await?;
    Ok(answer)
}

// ---------------------------------------------------------------------------
// Control group.

/// Runs the control group's forwarder: participant upserts, cycle runs and
/// FX settings go to the control leader; reads to the local control proposer.
pub async fn run_control(
    cluster: Rc<CoreCluster>,
    handle: Rc<dyn GroupHandle>,
    mut inbox: mpsc::Receiver<ControlMsg>,
    proposer: mpsc::Sender<ControlMsg>,
) {
    while let Some(msg) = inbox.recv().await {
        let (cluster, handle, proposer) = (cluster.clone(), handle.clone(), proposer.clone());
        match msg {
            ControlMsg::UpsertParticipants {
                participants,
                reply,
            } => {
                glommio::spawn_local(async move {
                    let outcome =
                        upsert_anywhere(&cluster, handle.as_ref(), &proposer, participants).await;
                    let _ = reply.send(outcome);
                })
                .detach();
            }
            other => match remote::split_control(other) {
                Ok((command, reply)) => {
                    glommio::spawn_local(async move {
                        let outcome =
                            control_anywhere(&cluster, handle.as_ref(), &proposer, command).await;
                        reply.deliver(outcome);
                    })
                    .detach();
                }
                Err(read) => {
                    if proposer.send(read).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

async fn upsert_anywhere(
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ControlMsg>,
    participants: Vec<crate::participants::Participant>,
) -> Result<(), ShardError> {
    let body = serde_json::to_vec(&participants).expect("participants are plain data");
    let (participants, body) = (&participants, &body);
    with_leader(CONTROL_GROUP, cluster, handle, |target| async move {
        match target {
            Target::Local => {
                let (reply, answer) = oneshot::channel();
                let msg = ControlMsg::UpsertParticipants {
                    participants: participants.clone(),
                    reply,
                };
                if proposer.send(msg).await.is_err() {
                    return Err(Attempt::Final(ShardError::ShuttingDown(CONTROL_GROUP)));
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
            Target::Remote(leader) => {
                let link = cluster
                    .links
                    .forward(leader)
                    .map_err(|e| link_attempt(CONTROL_GROUP, e))?;
                match link
                    .call(CONTROL_GROUP, OP_FORWARD_CONTROL, body, FORWARD_TIMEOUT)
                    .await
                {
                    Ok((STATUS_OK, _)) => Ok(()),
                    Ok((STATUS_NOT_LEADER, _)) => Err(Attempt::Retry("not leader".into())),
                    Ok((_, message)) => Err(Attempt::Final(ShardError::Internal {
                        group: CONTROL_GROUP,
                        message: String::from_utf8_lossy(&message).into_owned(),
                    })),
                    Err(e) => Err(link_attempt(CONTROL_GROUP, e)),
                }
            }
        }
    })
    .await
}

async fn control_anywhere(
    cluster: &CoreCluster,
    handle: &dyn GroupHandle,
    proposer: &mpsc::Sender<ControlMsg>,
    command: remote::ControlCommand,
) -> Result<ControlAnswer, ShardError> {
    let body = serde_json::to_vec(&command).expect("control commands are plain data");
    let (command, body) = (&command, &body);
    with_leader(CONTROL_GROUP, cluster, handle, |target| async move {
        let answer = match target {
            Target::Local => {
                let (msg, answer) = remote::control_to_local(command.clone());
                ask_local(CONTROL_GROUP, proposer, msg, answer).await?
            }
            Target::Remote(leader) => {
                let payload =
                    call_leader(cluster, CONTROL_GROUP, leader, OP_CONTROL_COMMAND, body).await?;
                serde_json::from_slice(&payload).map_err(|e| {
                    Attempt::Final(ShardError::Internal {
                        group: CONTROL_GROUP,
                        message: format!("control answer: {e}"),
                    })
                })?
            }
        };
        match answer {
            ControlAnswer::NotLeader => Err(Attempt::Retry("not the control leader".into())),
            answer => Ok(answer),
        }
    })
    .await
}
