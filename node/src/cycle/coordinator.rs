//! The coordinator: runs on the control group's leader, one cycle at a
//! time for every window, each as close → decide → apply:
//!
//! 1. `Start` in the control log (cycle id, window, each shard's quota);
//! 2. every shard appends `CycleClose` (freezes candidates, snapshots
//!    balances) — idempotent;
//! 3. the solver decides (on its own thread, within a time budget, else
//!    the fallback grouping); `Decide` in the control log carries the
//!    decision and its inputs;
//! 4. every shard appends `CycleApply` with its legs — idempotent;
//! 5. `Complete` in the control log.
//!
//! Recovery is the same path: at start the coordinator finishes the cycle
//! the control log shows in progress (re-closing is a no-op where it was
//! closed; an undecided cycle is decided again on the balances frozen at
//! close; a decided one is re-applied, a no-op where it was applied). So a
//! transaction is settled exactly once or still waiting, never both.
//!
//! Only cycles move balances, one at a time, so a decision made on the
//! balances at close stays feasible until it is applied.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use openraft::async_runtime::WatchReceiver;
use settle_codec::messages::{
    CycleCost, CycleOutcome, CycleRecord, CycleStatus, CycleSummary, DecisionMethod,
    MAX_CYCLE_TRANSACTIONS,
};
use settle_codec::{TxResult, Window};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::decide::{self, Closed, SolveBudget};
use super::instance::{build_instance, instance_indices, set_aside_in};
use super::{CoordinatorMsg, CycleConfig};
use crate::control::proposer::write;
use crate::control::{ControlState, CycleCommand};
use crate::intake::router::{ShardError, ShardRouter, ShardStatus};
use crate::participants::Participant;
use crate::raft::ControlRaft;
use crate::shard::command::OPENINGS_MAX;
use crate::shard::{CycleApply, DecisionFacts, GroupId, ShardMap, CONTROL_GROUP};

/// Back-off after a failed step before the cycle is tried again (a shard
/// or the control group is not ready, e.g. during start-up or shutdown).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// How often a coordinator that does not lead the control group checks
/// whether it does now.
const LEADERSHIP_POLL: Duration = Duration::from_millis(200);

/// Consecutive cycles of one window run while each fills its candidate
/// bound (more is waiting), before other windows get a turn.
const DRAIN_CYCLES_MAX: usize = 16;

/// Environment variable naming a step after which the process aborts (as
/// kill -9 would stop it), for the recovery tests: `started`, `closed`,
/// `decided`, `half-applied`, `applied`, `completed`. It fires once, for
/// the first cycle this process started that reaches the step (a cycle
/// being recovered never fires it, so a restart recovers).
pub const CRASH_AT_ENV: &str = "SETTLE_TEST_CRASH_AT";

/// A queued cycle: its window and who waits for its summary, if anyone.
type Job = (
    Window,
    Option<oneshot::Sender<Result<CycleSummary, ShardError>>>,
);

/// The coordinator of one node.
pub struct Coordinator {
    raft: ControlRaft,
    state: Rc<RefCell<ControlState>>,
    router: ShardRouter,
    shards: ShardMap,
    config: CycleConfig,
    /// Cycles this process started (crash points fire only for these).
    started_here: BTreeSet<u64>,
    crash_at: Option<String>,
    /// Where applied cycles' wires go (when execution is on).
    wires: Option<mpsc::Sender<Vec<crate::execution::SettlementInstruction>>>,
    /// Per window: what the shards and the control group looked like right
    /// after a scheduled cycle that settled nothing. While nothing moved
    /// since (no submit, deposit, rate, other cycle or rail outcome), the
    /// same inputs would give the same decision: the next scheduled cycle is
    /// skipped instead of writing the same deferral again every period, but
    /// only for [`QUIET_SKIP_SHARE`] of the RTGS wait (waiting payments get
    /// dearer with time, so the decision changes even when nothing moved):
    /// schedules never stop while payments wait.
    quiet: [Option<(Inputs, Instant)>; 4],
}

/// A quiet window's scheduled cycles are skipped for at most the RTGS
/// deadline divided by this (3 s of the default 60 s).
const QUIET_SKIP_SHARE: u32 = 20;

/// The applied indexes a scheduled cycle's decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    control_index: u64,
    shards: Vec<ShardStatus>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A summary for "nothing to do": cycle id 0.
fn empty_summary(window: Window) -> CycleSummary {
    CycleSummary {
        cycle_id: 0,
        window,
        status: CycleStatus::Applied,
        method: DecisionMethod::Optimiser,
        candidates: 0,
        settled: 0,
        deferred: 0,
        batches: 0,
        cost: CycleCost::default(),
        naive_cost: CycleCost::default(),
        solve_us: 0,
        started_at_us: 0,
        decided_at_us: 0,
        applied_at_us: 0,
        decision_index: 0,
    }
}

/// Splits `cap` candidates over shards with `waiting` each: everything
/// when it fits, else water-filling (small shards get all theirs, the rest
/// share equally), so no shard starves another.
pub fn quotas(waiting: &[u64], cap: usize) -> Vec<u32> {
    let mut quota = vec![0u32; waiting.len()];
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by_key(|&i| waiting[i]);
    let mut left = cap as u64;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (order.len() - k) as u64;
        let take = waiting[i].min(share);
        quota[i] = take as u32;
        left -= take;
    }
    quota
}

impl Coordinator {
    pub fn new(
        raft: ControlRaft,
        state: Rc<RefCell<ControlState>>,
        router: ShardRouter,
        shards: ShardMap,
        config: CycleConfig,
    ) -> Coordinator {
        assert!(config.candidates_max >= 1 && config.candidates_max <= MAX_CYCLE_TRANSACTIONS);
        Coordinator {
            raft,
            state,
            router,
            shards,
            config,
            started_here: BTreeSet::new(),
            crash_at: std::env::var(CRASH_AT_ENV).ok(),
            wires: None,
            quiet: [None, None, None, None],
        }
    }

    /// Aborts the process at a test crash point (see [`CRASH_AT_ENV`]).
    fn crash_point(&mut self, step: &str, cycle_id: u64) {
        if self.crash_at.as_deref() == Some(step) && self.started_here.contains(&cycle_id) {
            error!(step, cycle_id, "test crash point: aborting");
            std::process::abort();
        }
    }

    /// Runs until the inbox closes (the node is stopping).
    pub async fn run(mut self, mut inbox: mpsc::Receiver<CoordinatorMsg>) {
        // In a cluster only the control group's leader coordinates.
        while !self.leads() {
            glommio::timer::sleep(LEADERSHIP_POLL).await;
            if let Ok(CoordinatorMsg::Run { reply, .. }) = inbox.try_recv() {
                let _ = reply.send(Err(self.not_leader()));
            }
        }
        if let Some(config) = self.config.wires.clone() {
            let (tx, rx) = mpsc::channel(super::wires::WIRES_INBOX_CYCLES_MAX);
            glommio::spawn_local(super::wires::run(
                config,
                self.router.clone(),
                self.shards.clone(),
                rx,
            ))
            .detach();
            self.wires = Some(tx);
        }
        let registry = self.state.borrow().registry();
        self.open_accounts(registry.iter().cloned().collect()).await;
        self.recover().await;

        type Job = (
            Window,
            Option<oneshot::Sender<Result<CycleSummary, ShardError>>>,
        );
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut due: Vec<Option<Instant>> = Window::ALL.iter().map(|&w| self.next_due(w)).collect();
        let mut drained = 0usize;
        loop {
            while let Ok(msg) = inbox.try_recv() {
                self.handle(msg, &mut queue).await;
            }
            let now = Instant::now();
            for (i, &w) in Window::ALL.iter().enumerate() {
                if due[i].is_some_and(|at| at <= now) {
                    due[i] = self.next_due(w);
                    if !queue.iter().any(|(x, _)| *x == w) {
                        queue.push_back((w, None));
                    }
                }
            }
            if !self.leads() {
                // A follower: scheduled work waits, requests are refused.
                for (_, reply) in queue.drain(..) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(self.not_leader()));
                    }
                }
                glommio::timer::sleep(LEADERSHIP_POLL).await;
                continue;
            }
            if let Some((window, reply)) = queue.pop_front() {
                let scheduled = reply.is_none();
                let outcome = self.run_cycle(window, scheduled).await;
                let full = outcome
                    .as_ref()
                    .is_ok_and(|s| s.candidates as usize >= self.config.candidates_max);
                count_cycle(&outcome);
                if let Err(e) = &outcome {
                    warn!(%window, error = %e, "cycle failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
                // A full cycle left transactions waiting: run the window again.
                if full && drained < DRAIN_CYCLES_MAX {
                    drained += 1;
                    if !queue.iter().any(|(x, _)| *x == window) {
                        queue.push_front((window, None));
                    }
                } else {
                    drained = 0;
                }
                continue;
            }
            let wait = due
                .iter()
                .flatten()
                .min()
                .map_or(Duration::from_secs(3600), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            let message = async { Some(inbox.recv().await) };
            let timer = async {
                glommio::timer::sleep(wait).await;
                None
            };
            match futures_lite::future::or(message, timer).await {
                Some(Some(msg)) => self.handle(msg, &mut queue).await,
                Some(None) => return,
                None => {}
            }
        }
    }

    /// Whether this node leads the control group now.
    fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.current_leader == Some(m.id)
    }

    fn not_leader(&self) -> ShardError {
        ShardError::NotLeader {
            group: CONTROL_GROUP,
            leader: self.raft.metrics().borrow_watched().current_leader,
        }
    }

    fn next_due(&self, window: Window) -> Option<Instant> {
        self.config
            .schedule(window)
            .next_after(now_us())
            .map(|d| Instant::now() + d)
    }

    async fn handle(&mut self, msg: CoordinatorMsg, queue: &mut VecDeque<Job>) {
        match msg {
            CoordinatorMsg::Run { window, reply } => queue.push_back((window, Some(reply))),
            CoordinatorMsg::Open { participants } => self.open_accounts(participants).await,
        }
    }

    /// Opens the accounts the participants' balances fund, in every shard
    /// currency (idempotent: an account opens once).
    async fn open_accounts(&mut self, participants: Vec<Participant>) {
        for group in self.shards.shards().collect::<Vec<_>>() {
            let currency = self.shards.currency_of(group).expect("a shard currency");
            let openings: Vec<_> = participants
                .iter()
                .filter_map(|p| {
                    p.balances
                        .get(&currency.0)
                        .filter(|&&b| b > 0)
                        .map(|&b| (p.id, b))
                })
                .collect();
            for chunk in openings.chunks(OPENINGS_MAX) {
                loop {
                    match self.router.open(group, chunk.to_vec()).await {
                        Ok(results) => {
                            let opened =
                                results.iter().filter(|r| **r == TxResult::Created).count();
                            if opened > 0 {
                                info!(%currency, accounts = opened, "opening balances funded");
                            }
                            for ((p, amount), r) in chunk.iter().zip(results) {
                                match r {
                                    TxResult::Created => {
                                        debug!(participant = %p, %currency, amount, "opening balance")
                                    }
                                    TxResult::Duplicate => {}
                                    other => warn!(
                                        participant = %p, %currency, amount, result = ?other,
                                        "opening balance not applied (an account opens once; use a deposit)"
                                    ),
                                }
                            }
                            break;
                        }
                        Err(ShardError::ShuttingDown(_)) => return,
                        Err(e) => {
                            warn!(group, error = %e, "opening balances failed; retrying");
                            glommio::timer::sleep(RETRY_BACKOFF).await;
                        }
                    }
                }
            }
        }
    }

    /// Finishes the cycle the control log shows in progress, retrying until
    /// it is done (nothing else may run before it).
    async fn recover(&mut self) {
        loop {
            let Some(current) = self.state.borrow().current().cloned() else {
                return;
            };
            info!(
                cycle_id = current.cycle_id,
                window = %current.window,
                decided = current.decision_index.is_some(),
                "recovering the cycle in progress"
            );
            match self.finish(current.cycle_id).await {
                Ok(summary) => {
                    info!(
                        cycle_id = summary.cycle_id,
                        settled = summary.settled,
                        "cycle recovered"
                    );
                    return;
                }
                Err(ShardError::ShuttingDown(_)) => return,
                Err(e) => {
                    warn!(cycle_id = current.cycle_id, error = %e, "recovery failed; retrying");
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }

    /// Starts and finishes one cycle of `window`; cycle id 0 when nothing of
    /// the window is waiting.
    /// A scheduled cycle is skipped while nothing changed since the last
    /// scheduled one of its window settled nothing (see `quiet`); an
    /// operator's request always runs.
    async fn run_cycle(
        &mut self,
        window: Window,
        scheduled: bool,
    ) -> Result<CycleSummary, ShardError> {
        if self.state.borrow().current().is_some() {
            // A failed cycle is still open: finish it first.
            self.recover().await;
        }
        let slot = Window::ALL
            .iter()
            .position(|&w| w == window)
            .expect("a window");
        let inputs = self.inputs().await?;
        let quiet_max = self.config.rtgs_max_wait / QUIET_SKIP_SHARE;
        if scheduled
            && self.quiet[slot]
                .as_ref()
                .is_some_and(|(quiet, since)| *quiet == inputs && since.elapsed() < quiet_max)
        {
            return Ok(empty_summary(window));
        }
        self.quiet[slot] = None;
        let waiting: Vec<u64> = inputs.shards.iter().map(|s| s.waiting[slot]).collect();
        if waiting.iter().all(|&w| w == 0) {
            return Ok(empty_summary(window));
        }
        let quotas = quotas(&waiting, self.config.candidates_max);
        let cycle_id = self.state.borrow().next_cycle_id();
        let start = CycleCommand::Start {
            leader_ts_us: now_us(),
            cycle_id,
            window,
            quotas,
        };
        self.write_cycle(start).await?;
        self.started_here.insert(cycle_id);
        self.crash_point("started", cycle_id);
        let summary = self.finish(cycle_id).await?;
        if scheduled && summary.settled == 0 {
            self.quiet[slot] = Some((self.inputs().await?, Instant::now()));
        }
        Ok(summary)
    }

    /// The shards' statuses and the control group's applied index.
    async fn inputs(&self) -> Result<Inputs, ShardError> {
        let groups: Vec<GroupId> = self.shards.shards().collect();
        let statuses = join_all(groups.iter().map(|&g| self.router.status(g))).await;
        let control_index = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.last_applied.as_ref().map_or(0, |id| id.index)
        };
        Ok(Inputs {
            control_index,
            shards: statuses.into_iter().collect::<Result<_, _>>()?,
        })
    }

    /// Appends a cycle command; a refusal is an error.
    async fn write_cycle(&self, command: CycleCommand) -> Result<(), ShardError> {
        let before = self.state.borrow().current().cloned();
        write(&self.raft, command.encode()).await?;
        // The state applied it; a refusal leaves the current cycle as it was.
        let after = self.state.borrow().current().cloned();
        let changed = match &command {
            CycleCommand::Start { cycle_id, .. } => {
                after.as_ref().map(|c| c.cycle_id) == Some(*cycle_id) && before.is_none()
            }
            CycleCommand::Decide { .. } => {
                after.as_ref().is_some_and(|c| c.decision_index.is_some())
            }
            CycleCommand::Complete { .. } => after.is_none(),
        };
        if changed {
            Ok(())
        } else {
            Err(ShardError::Internal {
                group: CONTROL_GROUP,
                message: format!("the control group refused {}", command_name(&command)),
            })
        }
    }

    /// Takes cycle `cycle_id` (the current one) from wherever it is to
    /// applied everywhere.
    async fn finish(&mut self, cycle_id: u64) -> Result<CycleSummary, ShardError> {
        let current = self
            .state
            .borrow()
            .current()
            .cloned()
            .filter(|c| c.cycle_id == cycle_id)
            .ok_or_else(|| ShardError::Internal {
                group: CONTROL_GROUP,
                message: format!("cycle {cycle_id} is not in progress"),
            })?;
        let groups: Vec<GroupId> = self.shards.shards().collect();
        if current.quotas.len() != groups.len() {
            return Err(ShardError::Internal {
                group: CONTROL_GROUP,
                message: format!(
                    "cycle {cycle_id} was started with {} shards, this node has {}",
                    current.quotas.len(),
                    groups.len()
                ),
            });
        }
        let mut achieved_at_us = now_us();
        let mut laps = Laps::new();
        // The instance the decision was made on, when made by this call.
        let mut decided_on = None;
        // When each candidate began to wait, when closed by this call (a
        // recovered cycle's candidates are not known here: not measured).
        let mut waiting_since = None;
        if current.decision_index.is_none() {
            let closes = join_all(
                groups
                    .iter()
                    .zip(&current.quotas)
                    .map(|(&g, &q)| self.router.cycle_close(g, cycle_id, current.window, q)),
            )
            .await;
            let mut closed = Vec::with_capacity(groups.len());
            for (&g, close) in groups.iter().zip(closes) {
                let close = close?;
                if close.result == TxResult::Conflict {
                    return Err(ShardError::Internal {
                        group: g,
                        message: format!("cycle {cycle_id} was already applied but not decided"),
                    });
                }
                closed.push(Closed {
                    currency: self.shards.currency_of(g).expect("a shard currency"),
                    candidates: close.candidates,
                    since_us: close.since_us,
                    balances: close.balances,
                });
            }
            laps.lap("close");
            waiting_since = Some(waiting_since_of(&closed));
            self.crash_point("closed", cycle_id);
            let (fx, registry) = {
                let state = self.state.borrow();
                (state.fx().clone(), state.registry())
            };
            let window = current.window;
            let deadlines = self.config.deadlines();
            let now = now_us();
            let (record, due) = decide::off_core(move || {
                decide::prepare(cycle_id, window, &fx, &closed, &registry, &deadlines, now)
            })
            .await
            .map_err(|message| ShardError::Internal {
                group: CONTROL_GROUP,
                message,
            })?;
            laps.lap("prepare");
            let budget = match self.config.solver_budget {
                Some(budget) => SolveBudget {
                    budget,
                    grace: (budget / 2).max(Duration::from_millis(5)),
                },
                None => SolveBudget::for_candidates(record.transactions.len()),
            };
            let (record, inst) = decide::decide(record, due, budget).await;
            decided_on = inst;
            laps.lap("decide");
            if record.summary.method == DecisionMethod::Fallback {
                warn!(cycle_id, reason = %record.fallback_reason, "cycle decided by the fallback");
            }
            self.write_cycle(CycleCommand::Decide {
                leader_ts_us: now_us(),
                record: Box::new(record),
            })
            .await?;
            achieved_at_us = now_us();
            laps.lap("record");
            self.crash_point("decided", cycle_id);
        }
        let record = self
            .state
            .borrow()
            .record(cycle_id)
            .cloned()
            .ok_or_else(|| ShardError::Internal {
                group: CONTROL_GROUP,
                message: format!("the record of decided cycle {cycle_id} is gone"),
            })?;
        let inst = match decided_on {
            Some(inst) => Some(inst),
            None if record.summary.settled > 0 => {
                // Recovering a decided cycle: the receive amounts come from
                // the instance its recorded inputs make.
                let inputs = record.clone();
                let built = decide::off_core(move || build_instance(&inputs))
                    .await
                    .map_err(|message| ShardError::Internal {
                        group: CONTROL_GROUP,
                        message,
                    })?;
                Some(std::sync::Arc::new(built.map_err(|e| {
                    ShardError::Internal {
                        group: CONTROL_GROUP,
                        message: format!(
                            "cycle {cycle_id}: the recorded inputs do not rebuild: {e}"
                        ),
                    }
                })?))
            }
            None => None,
        };
        let mut legs = decide::legs(&record, inst.as_deref());
        let facts = DecisionFacts {
            decision_index: record.summary.decision_index,
            optimized_at_us: record.summary.decided_at_us,
            decided_at_us: record.summary.decided_at_us,
            achieved_at_us,
            fallback: record.summary.method == DecisionMethod::Fallback,
        };
        let applies: Vec<(GroupId, CycleApply)> = groups
            .iter()
            .map(|&g| {
                let currency = self.shards.currency_of(g).expect("a shard currency");
                let shard = legs.remove(&currency).unwrap_or_default();
                let confirm = self.wires.is_none();
                (
                    g,
                    CycleApply {
                        cycle_id,
                        decision: facts,
                        confirm,
                        legs: shard.legs,
                        credits: if confirm { shard.credits } else { Vec::new() },
                        incoming: if confirm { Vec::new() } else { shard.incoming },
                    },
                )
            })
            .collect();
        let mut applies = applies.into_iter();
        if self.crash_at.as_deref() == Some("half-applied") && self.started_here.contains(&cycle_id)
        {
            // Apply on the first shard alone, then stop, as a crash between
            // two shards' applies would.
            if let Some((g, apply)) = applies.next() {
                self.apply_one(g, apply).await?;
            }
            self.crash_point("half-applied", cycle_id);
        }
        let outcomes = join_all(applies.map(|(g, apply)| self.apply_one(g, apply))).await;
        for outcome in outcomes {
            outcome?;
        }
        laps.lap("apply");
        if let Some(since) = &waiting_since {
            let applied_at_us = now_us();
            crate::metrics::cells::settled_after(
                settled_waits(&record, since, applied_at_us).map(|us| us as f64 / 1e3),
            );
        }
        if let (Some(wires), Some(inst)) = (&self.wires, &inst) {
            let indices = instance_indices(&set_aside_in(&record));
            let sent = super::wires::instructions(&record, |t| {
                let t = indices[t].expect("a settled candidate is in the instance");
                inst.transactions[t as usize].receive_amount
            });
            if !sent.is_empty() && wires.send(sent).await.is_err() {
                warn!(
                    cycle_id,
                    "the wires task stopped: the wires go out after a restart"
                );
            }
        }
        self.crash_point("applied", cycle_id);
        self.write_cycle(CycleCommand::Complete {
            leader_ts_us: now_us(),
            cycle_id,
        })
        .await?;
        laps.lap("complete");
        debug!(cycle_id, laps = %laps, "cycle steps");
        self.crash_point("completed", cycle_id);
        let summary = self
            .state
            .borrow()
            .summary(cycle_id)
            .copied()
            .unwrap_or(record.summary);
        Ok(summary)
    }

    async fn apply_one(&self, group: GroupId, apply: CycleApply) -> Result<(), ShardError> {
        let cycle_id = apply.cycle_id;
        match self.router.cycle_apply(group, apply).await? {
            TxResult::Created | TxResult::Duplicate => Ok(()),
            other => {
                error!(group, cycle_id, result = ?other, "a shard refused a decided cycle");
                Err(ShardError::Internal {
                    group,
                    message: format!("shard refused the legs of cycle {cycle_id}"),
                })
            }
        }
    }
}

/// Time spent in each step of a cycle, for the debug log.
struct Laps {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            last: Instant::now(),
            laps: Vec::with_capacity(8),
        }
    }

    fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        self.laps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Laps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (step, d) in &self.laps {
            write!(f, "{step}={:.2}ms ", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

fn command_name(command: &CycleCommand) -> String {
    match command {
        CycleCommand::Start { cycle_id, .. } => format!("the start of cycle {cycle_id}"),
        CycleCommand::Decide { record, .. } => {
            format!("the decision of cycle {}", record.summary.cycle_id)
        }
        CycleCommand::Complete { cycle_id, .. } => format!("the completion of cycle {cycle_id}"),
    }
}

/// Each candidate's id and since when it waits, as the shards closed them.
fn waiting_since_of(closed: &[Closed]) -> rustc_hash::FxHashMap<u128, u64> {
    closed
        .iter()
        .flat_map(|c| {
            c.candidates
                .iter()
                .map(|t| t.id)
                .zip(c.since_us.iter().copied())
        })
        .collect()
}

/// How long each transaction the record settles waited, µs: from when it
/// began to wait in its window until `applied_at_us`.
fn settled_waits<'r>(
    record: &'r CycleRecord,
    since: &'r rustc_hash::FxHashMap<u128, u64>,
    applied_at_us: u64,
) -> impl Iterator<Item = u64> + 'r {
    record
        .transactions
        .iter()
        .zip(&record.outcomes)
        .filter(|(_, outcome)| matches!(outcome, CycleOutcome::Settled { .. }))
        .filter_map(move |(t, _)| since.get(&t.id))
        .map(move |&since_us| applied_at_us.saturating_sub(since_us))
}

/// Feeds the settlement metrics with a cycle's outcome (cycle id 0: there
/// was nothing to settle, not a cycle).
fn count_cycle(outcome: &Result<CycleSummary, ShardError>) {
    match outcome {
        Ok(summary) => {
            if let Some(latency_us) = summary.latency_us().filter(|_| summary.cycle_id != 0) {
                crate::metrics::cells::cycle_applied(crate::metrics::CycleFigures {
                    settled: u64::from(summary.settled),
                    latency_ms: latency_us as f64 / 1e3,
                    fx_usd: summary.cost.fx,
                    cost_usd: summary.cost.total,
                    naive_cost_usd: summary.naive_cost.total,
                });
            }
        }
        Err(_) => crate::metrics::cells::cycle_failed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settlement_latency_is_each_settled_transactions_wait_until_the_apply() {
        let tx = |id| settle_codec::Transaction {
            id,
            debtor: settle_codec::ParticipantId(1),
            creditor: settle_codec::ParticipantId(2),
            amount: 100,
            send: settle_codec::Currency::USD,
            receive: settle_codec::Currency::USD,
            window: Window::T0,
            client_timestamp_us: 0,
        };
        let closed = [Closed {
            currency: settle_codec::Currency::USD,
            candidates: vec![tx(1), tx(2), tx(3)],
            since_us: vec![1_000, 4_000, 2_000],
            balances: Vec::new(),
        }];
        let since = waiting_since_of(&closed);
        let mut record = CycleRecord {
            summary: super::empty_summary(Window::T0),
            fallback_reason: String::new(),
            max_batch_size: 10,
            wire_usd: 5.0,
            consolidation_discount: 0.0,
            defer_bps: [0.0; 4],
            currencies: Vec::new(),
            spreads: Vec::new(),
            participants: Vec::new(),
            balances: Vec::new(),
            transactions: vec![tx(3), tx(1), tx(2)],
            defer_usd: Vec::new(),
            outcomes: Vec::new(),
            fx_trades: Vec::new(),
            net_flows: Vec::new(),
        };
        record.outcomes = vec![
            CycleOutcome::Settled { batch: 1 },
            CycleOutcome::Settled { batch: 1 },
            CycleOutcome::Deferred {
                reason: settle_codec::tx::DeferReason::Liquidity { short: 1 },
            },
        ];
        // tx 3 waited 10,000 - 2,000, tx 1 10,000 - 1,000; tx 2 was deferred.
        let waits: Vec<u64> = settled_waits(&record, &since, 10_000).collect();
        assert_eq!(waits, vec![8_000, 9_000]);
    }

    #[test]
    fn quotas_take_everything_that_fits_and_share_the_rest() {
        assert_eq!(quotas(&[3, 0, 5], 100), vec![3, 0, 5]);
        assert_eq!(quotas(&[10, 1_000, 2_000, 0], 1_000), vec![10, 495, 495, 0]);
        assert_eq!(quotas(&[7, 7], 10), vec![5, 5]);
        let q = quotas(&[4_000, 9_000, 100, 50_000], 10_000);
        assert!(q.iter().map(|&x| x as usize).sum::<usize>() <= 10_000);
        assert_eq!(q[2], 100);
    }
}
