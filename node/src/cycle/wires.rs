//! Cycles meet execution: every batch of an applied cycle becomes one wire
//! (a `SettlementInstruction`) for the execution engine, and the engine's
//! final answers go back to the shards as log entries (`Execution`): a
//! confirmed wire makes the creditor's incoming credit spendable, a failed
//! one refunds the debtors and drops the credit (SETTLEMENT_FAILED then
//! SETTLEMENT_REVERSED in the trail).
//!
//! The engine is in memory; what is in flight is in the shards' state
//! (each creditor shard lists its batches in flight), so after a restart
//! the wires still in flight are sent again: a rail sees the same
//! instruction id, and a second answer changes nothing (the shards apply
//! an outcome once).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use settle_codec::messages::{CycleOutcome, CycleRecord};
use settle_codec::{Currency, ParticipantId, Window};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::execution::breaker::BreakerState;
use crate::execution::{
    BackoffSchedule, EnqueueError, ExecutionConfig, ExecutionEngine, ExecutionEventKind,
    SettlementInstruction, SimulatedRail, TimeWindow, DEFAULT_MAX_RETRIES,
};
use crate::intake::router::{ShardError, ShardRouter};
use crate::metrics::cells::RailEvent;
use crate::shard::{BatchOutcome, GroupId, ShardMap};

/// Instruction lists (one per applied cycle) queued for the wires task
/// before the coordinator waits: a slow rail slows the cycles down rather
/// than pile up wires.
pub const WIRES_INBOX_CYCLES_MAX: usize = 16;

/// Instructions held while the engine's queue is full (a few cycles' worth).
pub const WIRES_BACKLOG_MAX: usize = 16_384;

/// The "account" wires are sent from: the engine's settlement account.
pub const ENGINE_ACCOUNT: ParticipantId = ParticipantId(u32::MAX);

/// How the simulated rails behave (tests and demos inject faults here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiresConfig {
    /// Seed of the simulated rails' randomness.
    pub seed: u64,
    /// Replace every rail's chance of failing an attempt, parts per million.
    pub failure_ppm: Option<u32>,
    /// Participants no rail can reach (their wires fail and are reversed).
    pub unreachable: Vec<ParticipantId>,
    /// Delays before each retry (empty: the engine's default schedule).
    pub retry_delays: Vec<Duration>,
}

impl Default for WiresConfig {
    fn default() -> Self {
        WiresConfig {
            seed: 7,
            failure_ppm: None,
            unreachable: Vec::new(),
            retry_delays: Vec::new(),
        }
    }
}

/// The id of the wire of batch `batch` of cycle `cycle_id` (batches per
/// cycle stay far below 2^20).
pub fn instruction_id(cycle_id: u64, batch: u32) -> u64 {
    assert!(batch < 1 << 20);
    (cycle_id << 20) | u64::from(batch)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The wires of a decided cycle: one per batch, carrying the batch's
/// credit (the sum of what its creditor receives) and its transactions.
pub fn instructions(
    record: &CycleRecord,
    receive_amounts: impl Fn(usize) -> u64,
) -> Vec<SettlementInstruction> {
    let mut by_batch: std::collections::BTreeMap<u32, SettlementInstruction> = Default::default();
    for (t, (tx, outcome)) in record.transactions.iter().zip(&record.outcomes).enumerate() {
        let CycleOutcome::Settled { batch } = *outcome else {
            continue;
        };
        let wire = by_batch
            .entry(batch)
            .or_insert_with(|| SettlementInstruction {
                instruction_id: instruction_id(record.summary.cycle_id, batch),
                batch_id: instruction_id(record.summary.cycle_id, batch),
                cycle_id: record.summary.cycle_id,
                source: ENGINE_ACCOUNT,
                destination: tx.creditor,
                amount: 0,
                currency: tx.receive,
                window: record.summary.window,
                counterparty: tx.creditor,
                retry_count: 0,
                max_retries: DEFAULT_MAX_RETRIES,
                transaction_ids: Vec::new(),
            });
        wire.amount += receive_amounts(t);
        wire.transaction_ids.push(tx.id);
    }
    by_batch.into_values().collect()
}

/// Builds the simulated engine with the configured faults.
fn engine(config: &WiresConfig) -> ExecutionEngine<SimulatedRail> {
    let mut execution = ExecutionConfig::default();
    if !config.retry_delays.is_empty() {
        let delays = config
            .retry_delays
            .iter()
            .map(|d| d.as_micros() as u64)
            .collect();
        execution.backoff = BackoffSchedule::new(delays).expect("retry delays were validated");
    }
    let (mut engine, rails) =
        ExecutionEngine::simulated(execution, config.seed).expect("the simulated setup is valid");
    for rail in [rails.fedwire, rails.swift, rails.correspondent] {
        let rail = engine.rail_mut(rail).expect("a rail of the setup");
        if let Some(ppm) = config.failure_ppm {
            rail.set_failure_ppm(ppm).expect("ppm was validated");
        }
        for &p in &config.unreachable {
            rail.add_counterparty_outage(p, TimeWindow::starting_at(0))
                .expect("outages within the bound");
        }
    }
    engine
}

/// Runs the wires until the inbox closes: sends what the coordinator hands
/// over, polls the engine when it has work due, and records final answers
/// in every shard.
pub async fn run(
    config: WiresConfig,
    router: ShardRouter,
    shards: ShardMap,
    mut inbox: mpsc::Receiver<Vec<SettlementInstruction>>,
) {
    let mut engine = engine(&config);
    let mut backlog: VecDeque<SettlementInstruction> = resend_in_flight(&router, &shards).await;
    if !backlog.is_empty() {
        info!(
            wires = backlog.len(),
            "wires in flight before the restart are sent again"
        );
    }
    loop {
        while let Some(wire) = backlog.pop_front() {
            match engine.enqueue(wire.clone(), now_us()) {
                Ok(()) | Err(EnqueueError::Duplicate { .. }) => {}
                Err(EnqueueError::QueueFull { .. }) => {
                    backlog.push_front(wire);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, instruction = wire.instruction_id, "wire refused by the engine")
                }
            }
        }
        let outcomes = collect(engine.poll(now_us()));
        count_breakers(&engine);
        if !outcomes.is_empty() {
            record(&router, &shards, outcomes).await;
            continue;
        }
        let wait = engine
            .next_due_us()
            .map_or(Duration::from_secs(3600), |due| {
                Duration::from_micros(due.saturating_sub(now_us()))
            });
        let room = backlog.len() < WIRES_BACKLOG_MAX;
        let message = async {
            if room {
                Some(inbox.recv().await)
            } else {
                futures_lite::future::pending().await
            }
        };
        let timer = async {
            glommio::timer::sleep(wait).await;
            None
        };
        match futures_lite::future::or(message, timer).await {
            Some(Some(wires)) => backlog.extend(wires),
            Some(None) => return,
            None => {}
        }
    }
}

/// Publishes every rail's breaker state to this core's metrics.
fn count_breakers(engine: &ExecutionEngine<SimulatedRail>) {
    let now = now_us();
    for id in engine.rail_ids() {
        let (Some(name), Some(breaker)) = (engine.rail_name(id), engine.breaker(id)) else {
            continue;
        };
        let state = match breaker.state(now) {
            BreakerState::Closed { .. } => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        };
        crate::metrics::cells::set_rail(id.index(), name, state, breaker.times_opened());
    }
}

/// The final answers among engine events, as shard outcomes.
fn collect(events: Vec<crate::execution::ExecutionEvent>) -> Vec<BatchOutcome> {
    let mut outcomes = Vec::new();
    for e in events {
        crate::metrics::cells::rail_event(match &e.kind {
            ExecutionEventKind::Initiated => RailEvent::Initiated,
            ExecutionEventKind::Rerouted { .. } => RailEvent::Rerouted,
            ExecutionEventKind::RetryScheduled { .. } => RailEvent::RetryScheduled,
            ExecutionEventKind::Confirmed { .. } => RailEvent::Confirmed,
            ExecutionEventKind::Failed { .. } => RailEvent::Failed,
            ExecutionEventKind::Reversed { .. } => RailEvent::Reversed,
        });
        let cycle_id = e.cycle_id;
        let batch = (e.batch_id & ((1 << 20) - 1)) as u32;
        match e.kind {
            ExecutionEventKind::Confirmed { latency_us } => {
                debug!(cycle_id, batch, latency_us, "wire confirmed");
                outcomes.push(BatchOutcome {
                    cycle_id,
                    batch,
                    confirmed: true,
                    attempts: e.attempt,
                });
            }
            ExecutionEventKind::Failed { reason, .. } => {
                warn!(
                    cycle_id,
                    batch,
                    reason = reason.as_str(),
                    attempts = e.attempt,
                    "wire failed: reversing"
                );
            }
            ExecutionEventKind::Reversed { .. } => outcomes.push(BatchOutcome {
                cycle_id,
                batch,
                confirmed: false,
                attempts: e.attempt,
            }),
            ExecutionEventKind::Initiated
            | ExecutionEventKind::Rerouted { .. }
            | ExecutionEventKind::RetryScheduled { .. } => {}
        }
    }
    outcomes
}

/// Appends the outcomes to every shard (each applies what concerns it),
/// retrying until all have them: an answer must not be lost.
async fn record(router: &ShardRouter, shards: &ShardMap, outcomes: Vec<BatchOutcome>) {
    for chunk in outcomes.chunks(crate::shard::command::EXECUTION_OUTCOMES_MAX) {
        let mut left: Vec<GroupId> = shards.shards().collect();
        while !left.is_empty() {
            let results = join_all(left.iter().map(|&g| router.execution(g, chunk.to_vec()))).await;
            let mut failed = Vec::new();
            for (&g, r) in left.iter().zip(results) {
                match r {
                    Ok(()) => {}
                    Err(ShardError::ShuttingDown(_)) => return,
                    Err(e) => {
                        warn!(group = g, error = %e, "recording wire outcomes failed; retrying");
                        failed.push(g);
                    }
                }
            }
            if !failed.is_empty() {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            left = failed;
        }
    }
}

/// The wires the shards hold in flight (after a restart): one per batch,
/// from the creditor shard's record of its incoming credit.
async fn resend_in_flight(
    router: &ShardRouter,
    shards: &ShardMap,
) -> VecDeque<SettlementInstruction> {
    let mut wires = VecDeque::new();
    for group in shards.shards() {
        let currency: Currency = shards.currency_of(group).expect("a shard currency");
        let status = loop {
            match router.status(group).await {
                Ok(status) => break status,
                Err(ShardError::ShuttingDown(_)) => return wires,
                Err(_) => glommio::timer::sleep(Duration::from_millis(100)).await,
            }
        };
        for b in status.incoming {
            wires.push_back(SettlementInstruction {
                instruction_id: instruction_id(b.cycle_id, b.batch),
                batch_id: instruction_id(b.cycle_id, b.batch),
                cycle_id: b.cycle_id,
                source: ENGINE_ACCOUNT,
                destination: b.creditor,
                amount: b.amount,
                currency,
                window: Window::Rtgs,
                counterparty: b.creditor,
                retry_count: 0,
                max_retries: DEFAULT_MAX_RETRIES,
                transaction_ids: Vec::new(),
            });
        }
    }
    wires
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::{ExecutionEvent, ManualClock};

    #[test]
    fn ids_carry_cycle_and_batch() {
        assert_eq!(instruction_id(3, 7), (3 << 20) | 7);
    }

    #[test]
    fn unreachable_creditors_fail_and_are_reversed_others_confirm() {
        let config = WiresConfig {
            unreachable: vec![ParticipantId(5)],
            failure_ppm: Some(0),
            retry_delays: vec![Duration::from_millis(1)],
            ..WiresConfig::default()
        };
        let mut engine = engine(&config);
        let clock = ManualClock::new(1_000_000);
        let wire = |batch: u32, creditor: u32| SettlementInstruction {
            instruction_id: instruction_id(9, batch),
            batch_id: instruction_id(9, batch),
            cycle_id: 9,
            source: ENGINE_ACCOUNT,
            destination: ParticipantId(creditor),
            amount: 100,
            currency: Currency::USD,
            window: Window::Rtgs,
            counterparty: ParticipantId(creditor),
            retry_count: 0,
            max_retries: 1,
            transaction_ids: vec![1],
        };
        use crate::execution::Clock;
        engine.enqueue(wire(1, 2), clock.now_us()).unwrap();
        engine.enqueue(wire(2, 5), clock.now_us()).unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..1_000 {
            let events: Vec<ExecutionEvent> = engine.poll(clock.now_us());
            outcomes.extend(collect(events));
            if engine.is_idle() {
                break;
            }
            clock.advance_us(10_000);
        }
        outcomes.sort_by_key(|o| o.batch);
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert!(outcomes[0].confirmed, "bank_02 is reachable");
        assert!(!outcomes[1].confirmed, "bank_05 is not: reversed");
        assert_eq!(outcomes[1].attempts, 2, "the first attempt and one retry");
    }
}
