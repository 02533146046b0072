//! The messages intake sends to a shard's core, and the handles it sends
//! them through.
//!
//! Connections are accepted on every core; a request's transactions are split
//! by shard and each sub-batch travels to the shard's core over a bounded
//! channel. The reply comes back on a one-shot channel. Bounded queues are the
//! back-pressure: a full queue makes the sender wait, never grow memory.

use settle_codec::{LookupItem, Transaction, TxResult};
use tokio::sync::{mpsc, oneshot};

use crate::participants::Participant;
use crate::shard::{GroupId, CONTROL_GROUP};

/// Requests queued per shard before senders wait. At up to 8,192
/// transactions per request this bounds a shard's inbox to a few entries'
/// worth of work.
pub const SHARD_INBOX_REQUESTS_MAX: usize = 1_024;

/// Why a shard could not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// This node does not lead the shard's group (the leader, if known).
    #[error("not the leader of shard {group}; leader: {leader:?}")]
    NotLeader { group: GroupId, leader: Option<u64> },
    #[error("shard {0} is shutting down")]
    ShuttingDown(GroupId),
    /// The shard holds as many transactions as it may (memory bound): retry later.
    #[error("shard {group} is full ({records} transactions held): retry later")]
    Full { group: GroupId, records: usize },
    #[error("shard {group}: {message}")]
    Internal { group: GroupId, message: String },
}

/// A request to a shard.
pub enum ShardMsg {
    /// Make these transactions durable; one result each, in order.
    Submit {
        transactions: Vec<Transaction>,
        reply: oneshot::Sender<Result<Vec<TxResult>, ShardError>>,
    },
    /// Look these ids up; items for ids this shard does not know have status NotFound.
    Lookup {
        ids: Vec<u128>,
        reply: oneshot::Sender<Vec<LookupItem>>,
    },
}

/// Control requests queued before senders wait: participant changes are rare.
pub const CONTROL_INBOX_REQUESTS_MAX: usize = 64;

/// A request to the control group.
pub enum ControlMsg {
    /// Add or replace participants.
    UpsertParticipants {
        participants: Vec<Participant>,
        reply: oneshot::Sender<Result<(), ShardError>>,
    },
}

/// The sending ends of every shard's inbox (and the control group's), cloned
/// into every core and the HTTP thread. Index `g - 1` is shard group `g`.
#[derive(Clone)]
pub struct ShardRouter {
    inboxes: Vec<mpsc::Sender<ShardMsg>>,
    control: mpsc::Sender<ControlMsg>,
}

impl ShardRouter {
    /// Creates the inboxes; the receivers go to the groups' cores.
    pub fn new(
        shard_count: usize,
    ) -> (
        ShardRouter,
        Vec<mpsc::Receiver<ShardMsg>>,
        mpsc::Receiver<ControlMsg>,
    ) {
        let (inboxes, receivers) = (0..shard_count)
            .map(|_| mpsc::channel(SHARD_INBOX_REQUESTS_MAX))
            .unzip();
        let (control, control_inbox) = mpsc::channel(CONTROL_INBOX_REQUESTS_MAX);
        (ShardRouter { inboxes, control }, receivers, control_inbox)
    }

    /// Records participants in the control group; returns once committed.
    pub async fn upsert_participants(
        &self,
        participants: Vec<Participant>,
    ) -> Result<(), ShardError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(ControlMsg::UpsertParticipants {
                participants,
                reply,
            })
            .await
            .map_err(|_| ShardError::ShuttingDown(CONTROL_GROUP))?;
        answer
            .await
            .map_err(|_| ShardError::ShuttingDown(CONTROL_GROUP))?
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// Submits to one shard and waits for its results.
    pub async fn submit(
        &self,
        group: GroupId,
        transactions: Vec<Transaction>,
    ) -> Result<Vec<TxResult>, ShardError> {
        let (reply, answer) = oneshot::channel();
        self.inbox(group)
            .send(ShardMsg::Submit {
                transactions,
                reply,
            })
            .await
            .map_err(|_| ShardError::ShuttingDown(group))?;
        answer.await.map_err(|_| ShardError::ShuttingDown(group))?
    }

    /// Looks ids up in every shard and merges: an id lives in at most one shard.
    pub async fn lookup(&self, ids: &[u128]) -> Result<Vec<LookupItem>, ShardError> {
        let mut answers = Vec::with_capacity(self.inboxes.len());
        for (i, inbox) in self.inboxes.iter().enumerate() {
            let (reply, answer) = oneshot::channel();
            let group = (i + 1) as GroupId;
            inbox
                .send(ShardMsg::Lookup {
                    ids: ids.to_vec(),
                    reply,
                })
                .await
                .map_err(|_| ShardError::ShuttingDown(group))?;
            answers.push((group, answer));
        }
        let mut merged: Vec<LookupItem> = ids
            .iter()
            .map(|&id| LookupItem {
                id,
                status: settle_codec::TxStatus::NotFound,
                events: Vec::new(),
            })
            .collect();
        for (group, answer) in answers {
            let items = answer.await.map_err(|_| ShardError::ShuttingDown(group))?;
            assert_eq!(items.len(), ids.len(), "a shard answers every id");
            for (slot, item) in merged.iter_mut().zip(items) {
                if item.status != settle_codec::TxStatus::NotFound {
                    // Two shards knowing one id would be a double booking: keep
                    // both trails so the lookup shows it (verify counts it).
                    slot.status = item.status;
                    slot.events.extend(item.events);
                }
            }
        }
        Ok(merged)
    }

    fn inbox(&self, group: GroupId) -> &mpsc::Sender<ShardMsg> {
        assert!(
            group >= 1 && (group as usize) <= self.inboxes.len(),
            "group {group} is a shard"
        );
        &self.inboxes[group as usize - 1]
    }
}
