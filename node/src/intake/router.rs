//! The messages intake sends to a shard's core, and the handles it sends
//! them through.
//!
//! Connections are accepted on every core; a request's transactions are split
//! by shard and each sub-batch travels to the shard's core over a bounded
//! channel. The reply comes back on a one-shot channel. Bounded queues are the
//! back-pressure: a full queue makes the sender wait, never grow memory.

use settle_codec::messages::{CycleRecord, CycleSummary};
use settle_codec::{Currency, LookupItem, ParticipantId, Transaction, TxResult, Window};
use tokio::sync::{mpsc, oneshot};

use crate::participants::Participant;
use crate::shard::flows::FlowSeries;
use crate::shard::visibility::Visibility;
use crate::shard::{Account, BatchOutcome, CycleApply, GroupId, IncomingBatch, CONTROL_GROUP};

/// Requests queued per shard before senders wait. At up to 8,192
/// transactions per request this bounds a shard's inbox to a few entries'
/// worth of work.
pub const SHARD_INBOX_REQUESTS_MAX: usize = 1_024;

/// Reads and control requests (lookups, balances, funding, cycle steps)
/// queued per shard before senders wait. They have their own queue so that
/// they never wait behind submits for an in-flight entry slot.
pub const SHARD_PRIORITY_REQUESTS_MAX: usize = 256;

/// A shard's two queues: submits (group-committed) and everything else.
pub struct ShardInbox {
    pub submits: mpsc::Receiver<ShardMsg>,
    pub priority: mpsc::Receiver<ShardMsg>,
}

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
        /// Whose transactions the answer may show (hidden ones: NotFound).
        visibility: Visibility,
        /// Err: the store refused a read (never answered as NotFound).
        reply: oneshot::Sender<Result<Vec<LookupItem>, ShardError>>,
    },
    /// Set opening balances (idempotent per participant); one result each.
    Open {
        openings: Vec<(ParticipantId, u64)>,
        reply: oneshot::Sender<Result<Vec<TxResult>, ShardError>>,
    },
    /// An operator's deposit; the result and the balance after it. A shard
    /// given a deposit of another currency only reserves its id (it is the
    /// id's home; the balance answered is 0).
    Deposit {
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
        reply: oneshot::Sender<Result<(TxResult, u64), ShardError>>,
    },
    /// Every account of the shard's currency (or one participant's).
    Balances {
        participant: Option<ParticipantId>,
        reply: oneshot::Sender<Vec<(ParticipantId, Account)>>,
    },
    /// Participants' flow histories and balances for liquidity forecasts
    /// (one participant's, or up to `max` participants'), up to `now_us`.
    Flows {
        participant: Option<ParticipantId>,
        max: usize,
        now_us: u64,
        reply: oneshot::Sender<Vec<ParticipantFlows>>,
    },
    /// What the coordinator needs to plan and recover cycles.
    Status { reply: oneshot::Sender<ShardStatus> },
    /// Freeze cycle candidates (idempotent by cycle id).
    CycleClose {
        cycle_id: u64,
        window: Window,
        candidates_max: u32,
        reply: oneshot::Sender<Result<ClosedCycle, ShardError>>,
    },
    /// Apply a shard's legs of a decided cycle (idempotent by cycle id).
    CycleApply {
        apply: CycleApply,
        reply: oneshot::Sender<Result<TxResult, ShardError>>,
    },
    /// Record rails' final answers (idempotent by batch).
    Execution {
        outcomes: Vec<BatchOutcome>,
        reply: oneshot::Sender<Result<(), ShardError>>,
    },
}

/// A shard's cycle bookkeeping, read on its leader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStatus {
    /// Transactions waiting per window (RTGS, T0, T1, T2).
    pub waiting: [u64; 4],
    pub open_cycles: Vec<u64>,
    pub last_applied_cycle: u64,
    /// Batches in flight on a rail whose credit this shard holds.
    pub incoming: Vec<IncomingBatch>,
    /// The replica's last applied log index: it moves with every submit,
    /// deposit, cycle step or rail outcome (what could change a decision).
    pub applied_index: u64,
}

/// One participant's balance and flow history in a shard's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantFlows {
    pub participant: ParticipantId,
    pub balance: u64,
    /// `None` when no balance of it ever changed here.
    pub series: Option<FlowSeries>,
}

/// A closed cycle as one shard froze it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedCycle {
    /// Created (closed now), Duplicate (closed before: the same candidates)
    /// or Conflict (the cycle was applied here already: nothing to close).
    pub result: TxResult,
    /// In the window each waits in now (its own, or the one it rolled to).
    pub candidates: Vec<Transaction>,
    /// Per candidate: since when it waits in that window.
    pub since_us: Vec<u64>,
    /// Every account's balance at close.
    pub balances: Vec<(ParticipantId, u64)>,
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
    /// Run a cycle of a window now; answered once it is applied (cycle id 0
    /// when nothing of the window was waiting).
    RunCycle {
        window: Window,
        reply: oneshot::Sender<Result<CycleSummary, ShardError>>,
    },
    /// A cycle's record, if still kept.
    CycleRecord {
        cycle_id: u64,
        reply: oneshot::Sender<Option<CycleRecord>>,
    },
    /// The cycle parameters now.
    Fx {
        reply: oneshot::Sender<crate::cycle::fx::FxConfig>,
    },
    /// Replaces the cycle parameters (from the next cycle on).
    SetFx {
        fx: crate::cycle::fx::FxConfig,
        reply: oneshot::Sender<Result<(), ShardError>>,
    },
    /// Summaries of cycles after `after_cycle`, and the next cycle id.
    CycleList {
        after_cycle: u64,
        max: usize,
        reply: oneshot::Sender<(Vec<CycleSummary>, u64)>,
    },
}

/// The sending ends of every shard's inbox (and the control group's), cloned
/// into every core and the HTTP thread. Index `g - 1` is shard group `g`.
#[derive(Clone)]
pub struct ShardRouter {
    inboxes: Vec<mpsc::Sender<ShardMsg>>,
    priority: Vec<mpsc::Sender<ShardMsg>>,
    control: mpsc::Sender<ControlMsg>,
}

impl ShardRouter {
    /// Creates the inboxes; the receivers go to the groups' cores.
    pub fn new(shard_count: usize) -> (ShardRouter, Vec<ShardInbox>, mpsc::Receiver<ControlMsg>) {
        let mut inboxes = Vec::with_capacity(shard_count);
        let mut priority = Vec::with_capacity(shard_count);
        let mut receivers = Vec::with_capacity(shard_count);
        for _ in 0..shard_count {
            let (submit_tx, submits) = mpsc::channel(SHARD_INBOX_REQUESTS_MAX);
            let (priority_tx, priority_rx) = mpsc::channel(SHARD_PRIORITY_REQUESTS_MAX);
            inboxes.push(submit_tx);
            priority.push(priority_tx);
            receivers.push(ShardInbox {
                submits,
                priority: priority_rx,
            });
        }
        let (control, control_inbox) = mpsc::channel(CONTROL_INBOX_REQUESTS_MAX);
        (
            ShardRouter {
                inboxes,
                priority,
                control,
            },
            receivers,
            control_inbox,
        )
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

    async fn ask_control<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ControlMsg,
    ) -> Result<T, ShardError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(make(reply))
            .await
            .map_err(|_| ShardError::ShuttingDown(CONTROL_GROUP))?;
        answer
            .await
            .map_err(|_| ShardError::ShuttingDown(CONTROL_GROUP))
    }

    async fn ask_shard<T>(
        &self,
        group: GroupId,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardMsg,
    ) -> Result<T, ShardError> {
        let (reply, answer) = oneshot::channel();
        self.priority_inbox(group)
            .send(make(reply))
            .await
            .map_err(|_| ShardError::ShuttingDown(group))?;
        answer.await.map_err(|_| ShardError::ShuttingDown(group))
    }

    /// Runs a cycle of `window` and waits until it is applied.
    pub async fn run_cycle(&self, window: Window) -> Result<CycleSummary, ShardError> {
        self.ask_control(|reply| ControlMsg::RunCycle { window, reply })
            .await?
    }

    /// A cycle's record, if the control group still keeps it.
    pub async fn cycle_record(&self, cycle_id: u64) -> Result<Option<CycleRecord>, ShardError> {
        self.ask_control(|reply| ControlMsg::CycleRecord { cycle_id, reply })
            .await
    }

    /// Summaries of cycles after `after_cycle` (at most `max`) and the next id.
    pub async fn cycle_list(
        &self,
        after_cycle: u64,
        max: usize,
    ) -> Result<(Vec<CycleSummary>, u64), ShardError> {
        self.ask_control(|reply| ControlMsg::CycleList {
            after_cycle,
            max,
            reply,
        })
        .await
    }

    /// The cycle parameters now.
    pub async fn fx(&self) -> Result<crate::cycle::fx::FxConfig, ShardError> {
        self.ask_control(|reply| ControlMsg::Fx { reply }).await
    }

    /// Replaces the cycle parameters; returns once committed.
    pub async fn set_fx(&self, fx: crate::cycle::fx::FxConfig) -> Result<(), ShardError> {
        self.ask_control(|reply| ControlMsg::SetFx { fx, reply })
            .await?
    }

    /// Sets opening balances in shard `group`'s currency.
    pub async fn open(
        &self,
        group: GroupId,
        openings: Vec<(ParticipantId, u64)>,
    ) -> Result<Vec<TxResult>, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Open { openings, reply })
            .await?
    }

    /// Deposits `currency` in shard `group`: books it when the shard serves
    /// `currency`, else reserves its id there. The result and the balance after.
    pub async fn deposit(
        &self,
        group: GroupId,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    ) -> Result<(TxResult, u64), ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Deposit {
            deposit_id,
            participant,
            currency,
            amount,
            reply,
        })
        .await?
    }

    /// Accounts of shard `group`'s currency.
    pub async fn balances(
        &self,
        group: GroupId,
        participant: Option<ParticipantId>,
    ) -> Result<Vec<(ParticipantId, Account)>, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Balances { participant, reply })
            .await
    }

    /// Balances and flow histories of shard `group`'s currency (read on
    /// this node's replica, like balances).
    pub async fn flows(
        &self,
        group: GroupId,
        participant: Option<ParticipantId>,
        max: usize,
        now_us: u64,
    ) -> Result<Vec<ParticipantFlows>, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Flows {
            participant,
            max,
            now_us,
            reply,
        })
        .await
    }

    /// A shard's cycle bookkeeping.
    pub async fn status(&self, group: GroupId) -> Result<ShardStatus, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Status { reply })
            .await
    }

    /// Closes a cycle in one shard.
    pub async fn cycle_close(
        &self,
        group: GroupId,
        cycle_id: u64,
        window: Window,
        candidates_max: u32,
    ) -> Result<ClosedCycle, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::CycleClose {
            cycle_id,
            window,
            candidates_max,
            reply,
        })
        .await?
    }

    /// Records rails' final answers in one shard.
    pub async fn execution(
        &self,
        group: GroupId,
        outcomes: Vec<BatchOutcome>,
    ) -> Result<(), ShardError> {
        self.ask_shard(group, |reply| ShardMsg::Execution { outcomes, reply })
            .await?
    }

    /// Applies a cycle's legs in one shard.
    pub async fn cycle_apply(
        &self,
        group: GroupId,
        apply: CycleApply,
    ) -> Result<TxResult, ShardError> {
        self.ask_shard(group, |reply| ShardMsg::CycleApply { apply, reply })
            .await?
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

    /// Looks ids up in every shard and merges: an id lives in at most one
    /// shard. Transactions `visibility` does not show are answered NotFound.
    pub async fn lookup(
        &self,
        ids: &[u128],
        visibility: Visibility,
    ) -> Result<Vec<LookupItem>, ShardError> {
        let mut answers = Vec::with_capacity(self.priority.len());
        for (i, inbox) in self.priority.iter().enumerate() {
            let (reply, answer) = oneshot::channel();
            let group = (i + 1) as GroupId;
            inbox
                .send(ShardMsg::Lookup {
                    ids: ids.to_vec(),
                    visibility,
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
            let items = answer
                .await
                .map_err(|_| ShardError::ShuttingDown(group))??;
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

    fn priority_inbox(&self, group: GroupId) -> &mpsc::Sender<ShardMsg> {
        assert!(
            group >= 1 && (group as usize) <= self.priority.len(),
            "group {group} is a shard"
        );
        &self.priority[group as usize - 1]
    }

    fn inbox(&self, group: GroupId) -> &mpsc::Sender<ShardMsg> {
        assert!(
            group >= 1 && (group as usize) <= self.inboxes.len(),
            "group {group} is a shard"
        );
        &self.inboxes[group as usize - 1]
    }
}
