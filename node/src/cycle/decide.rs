//! Deciding a cycle: the record of its inputs, the solve (on a thread of
//! its own, against a time budget), the fallback grouping, the reasons
//! behind every deferral, and each shard's legs of the decision.
//!
//! Everything here but [`solve_within`] is a plain function of its inputs,
//! tested without a node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use settle_codec::messages::{
    CycleBalance, CycleCost, CycleCurrency, CycleFxTrade, CycleNetFlow, CycleOutcome,
    CycleParticipant, CycleRecord, CycleSpread, CycleStatus, CycleSummary, DecisionMethod,
    MAX_REASON_BYTES,
};
use settle_codec::tx::DeferReason;
use settle_codec::{Currency, ParticipantId, Transaction, Window};
use settle_solver::{is_feasible, naive, price, solve, Cost, Instance, Solution, SolveOptions};

use super::deadline::{self, Deadlines};
use super::fx::FxConfig;
use super::instance::{admit, instance_indices, RecordError, SetAside};
use crate::participants::Registry;
use crate::shard::Leg;

/// Solver threads still running past their deadline that a new cycle may
/// leave behind before it stops trying the solver (each holds one
/// instance; a solver that keeps overrunning must not pile up threads).
pub const SOLVER_STRAGGLERS_MAX: usize = 2;

/// Solves running now (on their own threads).
static SOLVES_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// What one shard froze for a cycle.
#[derive(Debug, Clone)]
pub struct Closed {
    pub currency: Currency,
    /// In the window each waits in now (its own, or the one it rolled to).
    pub candidates: Vec<Transaction>,
    /// Per candidate: since when it waits in that window (its deadline
    /// counts from then).
    pub since_us: Vec<u64>,
    /// Every account's balance at close.
    pub balances: Vec<(ParticipantId, u64)>,
}

/// The time the solver gets: its own budget, and how long past it the
/// coordinator waits for the answer before it falls back.
#[derive(Debug, Clone, Copy)]
pub struct SolveBudget {
    pub budget: Duration,
    pub grace: Duration,
}

impl SolveBudget {
    /// 10 µs per candidate, within [10 ms, 200 ms], and half that again
    /// (at least 5 ms) for the answer to come back.
    pub fn for_candidates(candidates: usize) -> SolveBudget {
        let budget = Duration::from_micros(10 * candidates as u64)
            .clamp(Duration::from_millis(10), Duration::from_millis(200));
        SolveBudget {
            budget,
            grace: (budget / 2).max(Duration::from_millis(5)),
        }
    }
}

fn cost(c: Cost) -> CycleCost {
    CycleCost {
        fx: c.fx,
        wire: c.wire,
        deferral: c.deferral,
        total: c.total,
    }
}

/// The record of a cycle's inputs (decision fields empty): the shard
/// currencies with their rates, the spreads among them, every participant
/// a candidate involves with its limit, the balances each candidate touches
/// (at close), the candidates in shard order, and what deferring each costs
/// at `now_us` (see [`super::deadline`]). Also, per candidate, whether it
/// is due (a deferral now rolls it to the next window).
pub fn prepare(
    cycle_id: u64,
    window: Window,
    fx: &FxConfig,
    closed: &[Closed],
    registry: &Registry,
    deadlines: &Deadlines,
    now_us: u64,
) -> (CycleRecord, Vec<bool>) {
    let currencies: Vec<Currency> = closed.iter().map(|c| c.currency).collect();
    let transactions: Vec<Transaction> = closed
        .iter()
        .flat_map(|c| c.candidates.iter().copied())
        .collect();
    let mut slots: BTreeMap<(ParticipantId, Currency), u64> = BTreeMap::new();
    for t in &transactions {
        slots.insert((t.debtor, t.send), 0);
        slots.insert((t.creditor, t.receive), 0);
    }
    for c in closed {
        for &(p, balance) in &c.balances {
            if let Some(slot) = slots.get_mut(&(p, c.currency)) {
                *slot = balance;
            }
        }
    }
    let mut participants: Vec<ParticipantId> = slots.keys().map(|&(p, _)| p).collect();
    participants.dedup();
    let order = |c: Currency| currencies.iter().position(|&x| x == c);
    let mut balances: Vec<CycleBalance> = slots
        .into_iter()
        .map(|((participant, currency), balance)| CycleBalance {
            participant,
            currency,
            balance,
        })
        .collect();
    balances.sort_by_key(|b| (b.participant, order(b.currency)));
    let since: Vec<u64> = closed
        .iter()
        .flat_map(|c| {
            assert_eq!(
                c.since_us.len(),
                c.candidates.len(),
                "one time per candidate"
            );
            c.since_us.iter().copied()
        })
        .collect();
    let (defer_usd, due) = defer_prices(fx, &transactions, &since, deadlines, now_us);
    let record = CycleRecord {
        summary: CycleSummary {
            cycle_id,
            window,
            status: CycleStatus::Started,
            method: DecisionMethod::Optimiser,
            candidates: transactions.len() as u32,
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
        },
        fallback_reason: String::new(),
        max_batch_size: fx.max_batch_size,
        wire_usd: fx.wire_usd,
        consolidation_discount: fx.consolidation_discount,
        defer_bps: fx.defer_bps.as_array(),
        currencies: currencies
            .iter()
            .map(|&c| CycleCurrency {
                currency: c,
                minor_units: c.minor_units().unwrap_or(2),
                usd_per_unit: fx.usd_per_unit.get(&c).cloned().unwrap_or_default(),
            })
            .collect(),
        spreads: fx
            .spreads_among(&currencies)
            .into_iter()
            .map(|(a, b, bps)| CycleSpread { a, b, bps })
            .collect(),
        participants: participants
            .into_iter()
            .map(|id| CycleParticipant {
                id,
                counterparty_limit_usd: registry.get(id).map_or(0.0, |p| p.counterparty_limit_usd),
            })
            .collect(),
        balances,
        transactions,
        defer_usd,
        outcomes: Vec::new(),
        fx_trades: Vec::new(),
        net_flows: Vec::new(),
    };
    (record, due)
}

/// Per candidate: what deferring it costs now, and whether it is due.
fn defer_prices(
    fx: &FxConfig,
    transactions: &[Transaction],
    since: &[u64],
    deadlines: &Deadlines,
    now_us: u64,
) -> (Vec<f64>, Vec<bool>) {
    let rate = |c: Currency| -> f64 {
        fx.usd_per_unit
            .get(&c)
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Any path's spread is at most the sum of all spreads.
    let spreads_bps: f64 = fx.spreads.iter().map(|s| s.bps).sum();
    let defer_bps = fx.defer_bps.as_array();
    transactions
        .iter()
        .zip(since)
        .map(|(t, &since_us)| {
            let minor = t.send.minor_units().unwrap_or(2) as i32;
            let value_usd = t.amount as f64 / 10f64.powi(minor) * rate(t.send);
            let slot = Window::ALL
                .iter()
                .position(|&w| w == t.window)
                .expect("a window");
            let base = value_usd * defer_bps[slot] / 10_000.0;
            let fx_usd = if t.send == t.receive {
                0.0
            } else {
                value_usd * spreads_bps / 10_000.0
            };
            let alone = fx.wire_usd + fx_usd;
            let due_at = deadlines.due_at_us(t.window, since_us);
            deadline::defer_price(base, alone, since_us, due_at, now_us)
        })
        .unzip()
}

/// Runs the solver on a thread of its own and waits at most
/// `budget.budget + budget.grace` for it. `Err` says why there is no
/// (timely) answer.
pub async fn solve_within(inst: Arc<Instance>, budget: SolveBudget) -> Result<Solution, String> {
    if SOLVES_RUNNING.load(Ordering::SeqCst) > SOLVER_STRAGGLERS_MAX {
        return Err("the solver is still busy with earlier cycles that overran".into());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    SOLVES_RUNNING.fetch_add(1, Ordering::SeqCst);
    let options = SolveOptions {
        time_budget: budget.budget,
        ..SolveOptions::default()
    };
    let spawned = std::thread::Builder::new()
        .name("settle-solver".into())
        .spawn(move || {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| solve(&inst, &options)));
            SOLVES_RUNNING.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(outcome.map_err(|_| "the solver panicked".to_string()));
        });
    if let Err(e) = spawned {
        SOLVES_RUNNING.fetch_sub(1, Ordering::SeqCst);
        return Err(format!("cannot start the solver thread: {e}"));
    }
    let wait = budget.budget + budget.grace;
    let started = Instant::now();
    let answer = async { Some(rx.await) };
    let deadline = async {
        glommio::timer::sleep(wait).await;
        None
    };
    let overran = || {
        format!(
            "the solver exceeded its time budget of {} ms (waited {} ms)",
            budget.budget.as_millis(),
            wait.as_millis()
        )
    };
    match futures_lite::future::or(answer, deadline).await {
        // An answer that came after the deadline is as late as none.
        Some(Ok(_)) if started.elapsed() > wait => Err(overran()),
        Some(Ok(result)) => result,
        Some(Err(_)) => Err("the solver thread ended without an answer".into()),
        None => Err(overran()),
    }
}

/// The simple grouping: the naive baseline's settled set (in order,
/// whatever fits), priced with batches by creditor and netted FX.
pub fn fallback(inst: &Instance) -> Solution {
    let base = naive(inst);
    let mut sol = price(inst, &base.settled);
    sol.naive_cost = base.cost;
    sol
}

/// Checks what keeps money safe before a decision is recorded: exact
/// feasibility (no balance below zero, no counterparty limit broken, by
/// integer arithmetic) and the batches (every settled transaction in
/// exactly one batch of its creditor and currency, within the size bound).
/// The costs are re-computed by the solver's full checker at audit time
/// (`settle audit --cycle`), off the settlement path.
fn verified(inst: &Instance, sol: &Solution) -> Result<(), String> {
    let n = inst.transactions.len();
    if sol.settled.len() != n {
        return Err(format!("{} flags for {n} transactions", sol.settled.len()));
    }
    if !is_feasible(inst, &sol.settled) {
        return Err("the solution overdraws a balance or breaks a counterparty limit".into());
    }
    let mut batched = vec![0u8; n];
    for b in &sol.batches {
        if b.transactions.is_empty() || b.transactions.len() > inst.max_batch_size as usize {
            return Err(format!("a batch of {} transactions", b.transactions.len()));
        }
        for &t in &b.transactions {
            let tx = inst
                .transactions
                .get(t as usize)
                .ok_or_else(|| format!("a batch holds unknown transaction {t}"))?;
            if !sol.settled[t as usize] || (tx.creditor, tx.receive) != (b.creditor, b.currency) {
                return Err(format!("transaction {} is batched wrongly", tx.id));
            }
            batched[t as usize] += 1;
        }
    }
    if let Some(t) = (0..n).find(|&t| sol.settled[t] != (batched[t] == 1)) {
        return Err(format!(
            "transaction {} is in {} batches",
            inst.transactions[t].id, batched[t]
        ));
    }
    if !sol.cost.total.is_finite() || !sol.naive_cost.total.is_finite() {
        return Err("the solution's cost is not a number".into());
    }
    Ok(())
}

/// Runs `work` on a thread of its own and awaits its result, so that
/// CPU-heavy steps (instance building, checking, pricing) never stall the
/// core's executor, which also serves shards. `Err` if the thread died.
pub async fn off_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("settle-cycle".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a cycle thread: {e}"))?;
    rx.await
        .map_err(|_| "a cycle thread ended without an answer".to_string())
}

/// Decides a prepared record: the optimiser's answer if it came in time
/// and checks out, else the fallback grouping (the reason recorded), else
/// (no instance at all) everything deferred as unsolvable. The heavy steps
/// run off the core ([`off_core`]).
///
/// Candidates the instance cannot hold are set aside (deferred with the
/// problem as reason) and the cycle goes on with the rest; a deferred
/// candidate that was `due` is rolled to its next window.
pub async fn decide(
    record: CycleRecord,
    due: Vec<bool>,
    budget: SolveBudget,
) -> (CycleRecord, Option<Arc<Instance>>) {
    assert_eq!(due.len(), record.transactions.len());
    let built = off_core(move || {
        let (set_aside, inst) = admit(&record);
        (record, set_aside, inst.map(Arc::new))
    })
    .await;
    let (record, set_aside, inst) = match built {
        Ok((record, set_aside, Ok(inst))) => (record, set_aside, inst),
        Ok((record, _, Err(e))) => return (unsolvable(record, &e), None),
        Err(e) => panic!("building a cycle instance: {e}"),
    };
    let started = Instant::now();
    let solved = solve_within(inst.clone(), budget).await;
    let elapsed = started.elapsed();
    let finishing = inst.clone();
    let record = off_core(move || {
        let inst = &finishing;
        let checked = solved.and_then(|sol| verified(inst, &sol).map(|()| sol));
        let (sol, reason) = match checked {
            Ok(sol) => (sol, None),
            Err(reason) => {
                let sol = fallback(inst);
                if let Err(e) = verified(inst, &sol) {
                    let e = RecordError::Field {
                        field: "fallback".into(),
                        message: e,
                    };
                    return unsolvable(record, &e);
                }
                (sol, Some(reason))
            }
        };
        finish(record, inst, &sol, reason, elapsed, &set_aside, &due)
    })
    .await
    .unwrap_or_else(|e| panic!("finishing a cycle decision: {e}"));
    (record, Some(inst))
}

/// Fills a record's decision from a solution of the instance of its
/// candidates but those `set_aside`: set-aside candidates are deferred with
/// their problem as reason; a deferred candidate that was `due` rolls to
/// its next window.
pub fn finish(
    mut record: CycleRecord,
    inst: &Instance,
    sol: &Solution,
    fallback_reason: Option<String>,
    elapsed: Duration,
    set_aside: &SetAside,
    due: &[bool],
) -> CycleRecord {
    let n = inst.transactions.len();
    let indices = instance_indices(set_aside);
    assert_eq!(indices.len(), record.transactions.len());
    assert_eq!(due.len(), record.transactions.len());
    assert_eq!(
        n,
        indices.iter().flatten().count(),
        "the instance is the record's admitted candidates"
    );
    let mut batch_of = vec![0u32; n];
    for (b, batch) in sol.batches.iter().enumerate() {
        for &t in &batch.transactions {
            batch_of[t as usize] = b as u32 + 1;
        }
    }
    let reasons = defer_reasons(inst, &sol.settled);
    record.outcomes = indices
        .iter()
        .zip(set_aside)
        .zip(record.transactions.iter().zip(due))
        .map(|((&index, problem), (tx, &due))| {
            let reason = match (index, problem) {
                (Some(t), _) if sol.settled[t as usize] => {
                    let t = t as usize;
                    assert!(batch_of[t] > 0, "a settled transaction is in a batch");
                    return CycleOutcome::Settled { batch: batch_of[t] };
                }
                (Some(t), _) => reasons[t as usize],
                (None, Some(problem)) => {
                    return CycleOutcome::Deferred {
                        reason: DeferReason::SetAside { problem: *problem },
                    }
                }
                (None, None) => unreachable!("a candidate out of the instance has a problem"),
            };
            if due {
                CycleOutcome::Rolled {
                    reason,
                    to: deadline::next_window(tx.window),
                }
            } else {
                CycleOutcome::Deferred { reason }
            }
        })
        .collect();
    record.fx_trades = sol
        .fx_trades
        .iter()
        .map(|f| CycleFxTrade {
            from: record.currencies[f.from as usize].currency,
            to: record.currencies[f.to as usize].currency,
            usd: f.usd,
        })
        .collect();
    let mut net = vec![0i128; inst.currencies.len()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        if sol.settled[t] {
            net[tx.send as usize] -= tx.amount as i128;
            net[tx.receive as usize] += tx.receive_amount as i128;
        }
    }
    record.net_flows = net
        .iter()
        .zip(&record.currencies)
        .map(|(&minor, c)| CycleNetFlow {
            currency: c.currency,
            minor: minor.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        })
        .collect();
    let settled = sol.settled_count() as u32;
    let n = record.transactions.len();
    let s = &mut record.summary;
    s.method = if fallback_reason.is_some() {
        DecisionMethod::Fallback
    } else {
        DecisionMethod::Optimiser
    };
    s.settled = settled;
    s.deferred = n as u32 - settled;
    s.batches = sol.batches.len() as u32;
    s.cost = cost(sol.cost);
    s.naive_cost = cost(sol.naive_cost);
    s.solve_us = elapsed.as_micros() as u64;
    record.fallback_reason = bounded(fallback_reason.unwrap_or_default());
    record
}

/// Nothing settles: the instance could not be built (e.g. a rate missing).
fn unsolvable(mut record: CycleRecord, error: &RecordError) -> CycleRecord {
    let n = record.transactions.len();
    record.outcomes = vec![
        CycleOutcome::Deferred {
            reason: DeferReason::Unsolvable
        };
        n
    ];
    record.summary.method = DecisionMethod::Fallback;
    record.summary.deferred = n as u32;
    record.fallback_reason = bounded(format!("no instance: {error}"));
    record.net_flows = record
        .currencies
        .iter()
        .map(|c| CycleNetFlow {
            currency: c.currency,
            minor: 0,
        })
        .collect();
    record
}

fn bounded(mut text: String) -> String {
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Why each deferred transaction was deferred, given the settled set:
/// settling it too would overdraw its debtor (by how much), or break its
/// creditor's counterparty limit (by how much), or else it was feasible
/// and the optimiser found deferring cheaper (at its deferral price).
pub fn defer_reasons(inst: &Instance, settled: &[bool]) -> Vec<DeferReason> {
    let nc = inst.currencies.len();
    let mut bal: Vec<i128> = inst
        .participants
        .iter()
        .flat_map(|p| p.balances.iter().map(|&b| b as i128))
        .collect();
    let mut used = vec![0f64; inst.participants.len()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        if settled[t] {
            bal[tx.debtor as usize * nc + tx.send as usize] -= tx.amount as i128;
            bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
            used[tx.creditor as usize] += inst.receive_value_usd(t);
        }
    }
    inst.transactions
        .iter()
        .enumerate()
        .map(|(t, tx)| {
            let ds = tx.debtor as usize * nc + tx.send as usize;
            let cs = tx.creditor as usize * nc + tx.receive as usize;
            let mut after = bal[ds] - tx.amount as i128;
            if ds == cs {
                after += tx.receive_amount as i128;
            }
            let limit = inst.participants[tx.creditor as usize]
                .counterparty_limit_usd
                .to_f64();
            let over = used[tx.creditor as usize] + inst.receive_value_usd(t) - limit;
            if settled[t] {
                DeferReason::Unsolvable // unused: settled transactions have no reason
            } else if after < 0 {
                DeferReason::Liquidity {
                    short: u64::try_from(-after).unwrap_or(u64::MAX),
                }
            } else if over > 0.0 {
                DeferReason::CounterpartyLimit {
                    over_usd_cents: (over * 100.0).round() as u64,
                }
            } else {
                DeferReason::Cost {
                    defer_cost_usd_micros: (inst.defer_usd(t) * 1e6).round() as u64,
                }
            }
        })
        .collect()
}

/// One shard's legs of a decision: one leg per candidate (in candidate
/// order) and the credits of its currency, summed per creditor (final at
/// once) and per batch (when each batch's wire decides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLegs {
    pub legs: Vec<Leg>,
    pub credits: Vec<(ParticipantId, u64)>,
    pub incoming: Vec<(u32, ParticipantId, u64)>,
}

/// Splits a decision into every shard's legs, by currency. `inst` gives
/// the receive amounts; it may be `None` only when nothing settled.
pub fn legs(record: &CycleRecord, inst: Option<&Instance>) -> BTreeMap<Currency, ShardLegs> {
    let mut out: BTreeMap<Currency, ShardLegs> = record
        .currencies
        .iter()
        .map(|c| (c.currency, ShardLegs::default()))
        .collect();
    let mut credits: BTreeMap<(Currency, ParticipantId), u64> = BTreeMap::new();
    let mut batches: BTreeMap<(Currency, u32), (ParticipantId, u64)> = BTreeMap::new();
    let indices = instance_indices(&super::instance::set_aside_in(record));
    for ((tx, outcome), index) in record
        .transactions
        .iter()
        .zip(&record.outcomes)
        .zip(indices)
    {
        let leg = match *outcome {
            CycleOutcome::Settled { batch } => {
                let inst = inst.expect("an instance when something settled");
                let t = index.expect("a settled candidate is in the instance") as usize;
                let receive_amount = inst.transactions[t].receive_amount;
                *credits.entry((tx.receive, tx.creditor)).or_default() += receive_amount;
                let slot = batches
                    .entry((tx.receive, batch))
                    .or_insert((tx.creditor, 0));
                assert_eq!(slot.0, tx.creditor, "a batch pays one creditor");
                slot.1 += receive_amount;
                Leg::Settled {
                    batch,
                    receive_amount,
                }
            }
            CycleOutcome::Deferred { reason } => Leg::Deferred { reason },
            CycleOutcome::Rolled { reason, to } => Leg::Rolled { reason, to },
        };
        out.entry(tx.send).or_default().legs.push(leg);
    }
    for ((currency, creditor), amount) in credits {
        out.entry(currency)
            .or_default()
            .credits
            .push((creditor, amount));
    }
    for ((currency, batch), (creditor, amount)) in batches {
        out.entry(currency)
            .or_default()
            .incoming
            .push((batch, creditor, amount));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's budget for `candidates`, but waiting as long as it takes
    /// for the answer: on a loaded 2-core box a debug build may answer late,
    /// and what these tests check must not depend on the scheduler.
    fn patient(candidates: usize) -> SolveBudget {
        SolveBudget {
            grace: Duration::from_secs(60),
            ..SolveBudget::for_candidates(candidates)
        }
    }
    use crate::cycle::instance::{build_instance, solution_file};
    use crate::participants::Participant;
    use settle_solver::check;

    fn t(id: u128, d: u32, c: u32, amount: u64, send: Currency, receive: Currency) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(d),
            creditor: ParticipantId(c),
            amount,
            send,
            receive,
            window: Window::Rtgs,
            client_timestamp_us: 0,
        }
    }

    fn registry(limits: &[(u32, f64)]) -> Registry {
        Registry::new(limits.iter().map(|&(id, limit)| Participant {
            id: ParticipantId(id),
            counterparty_limit_usd: limit,
            balances: Default::default(),
        }))
    }

    /// Bank 1 holds 100,000.00 USD; bank 2 nothing. Bank 1 pays bank 2
    /// 60,000 USD and 50,000 USD (only one fits) and 100 EUR it does not
    /// have; bank 3 pays bank 4 90 EUR in USD beyond its 50 USD limit.
    fn closed() -> Vec<Closed> {
        vec![
            Closed {
                currency: Currency::USD,
                candidates: vec![
                    t(1, 1, 2, 6_000_000, Currency::USD, Currency::USD),
                    t(2, 1, 2, 5_000_000, Currency::USD, Currency::USD),
                ],
                since_us: vec![0; 2],
                balances: vec![(ParticipantId(1), 10_000_000), (ParticipantId(9), 5)],
            },
            Closed {
                currency: Currency::EUR,
                candidates: vec![
                    t(3, 1, 2, 10_000, Currency::EUR, Currency::EUR),
                    t(4, 3, 4, 9_000, Currency::EUR, Currency::USD),
                ],
                since_us: vec![0; 2],
                balances: vec![(ParticipantId(3), 1_000_000)],
            },
        ]
    }

    /// One second after every candidate started waiting: none is due.
    const NOW_US: u64 = 1_000_000;

    fn deadlines() -> Deadlines {
        crate::cycle::CycleConfig::default().deadlines()
    }

    fn decided(budget: SolveBudget) -> (CycleRecord, Option<Arc<Instance>>) {
        decided_at(&closed(), NOW_US, budget)
    }

    fn decided_at(
        closed: &[Closed],
        now_us: u64,
        budget: SolveBudget,
    ) -> (CycleRecord, Option<Arc<Instance>>) {
        let (record, due) = prepare(
            7,
            Window::Rtgs,
            &FxConfig::default(),
            closed,
            &registry(&[(1, 1e9), (2, 1e9), (3, 1e9), (4, 50.0)]),
            &deadlines(),
            now_us,
        );
        let mut rt = crate::raft::GlommioRuntime::new(1);
        use openraft::AsyncRuntime;
        rt.block_on(decide(record, due, budget))
    }

    #[test]
    fn a_bad_candidate_is_set_aside_and_the_cycle_goes_on() {
        // Issue 13: one id twice among the candidates made every RTGS cycle
        // unsolvable, for everyone. Now the second is set aside.
        let mut closed = closed();
        let twin = closed[0].candidates[0];
        closed[1].candidates.push(Transaction {
            send: Currency::EUR,
            ..twin
        });
        closed[1].since_us.push(0);
        let (record, inst) = decided_at(&closed, NOW_US, patient(5));
        let inst = inst.expect("an instance of the others");
        assert_eq!(record.summary.method, DecisionMethod::Optimiser);
        assert_eq!(inst.transactions.len(), 4);
        assert!(matches!(record.outcomes[0], CycleOutcome::Settled { .. }));
        assert_eq!(
            record.outcomes[4],
            CycleOutcome::Deferred {
                reason: DeferReason::SetAside {
                    problem: settle_codec::tx::CandidateProblem::DuplicateId
                }
            }
        );
        // The audit rebuilds the same instance from the record and agrees.
        let rebuilt = build_instance(&record).unwrap();
        assert_eq!(rebuilt.transactions.len(), 4);
        let report = check(&rebuilt, &solution_file(&record));
        assert!(report.valid, "{:?}", report.errors);
        assert!((report.cost.total - record.summary.cost.total).abs() < 0.02);
        // Every candidate still gets its leg, in candidate order.
        let legs = legs(&record, Some(&inst));
        assert_eq!(legs[&Currency::EUR].legs.len(), 3);
    }

    #[test]
    fn a_small_payment_settles_by_its_deadline_and_an_unfundable_one_rolls() {
        // 1.00 USD, RTGS: waiting costs 0.005 USD against a 5 USD wire.
        let small = t(10, 1, 2, 100, Currency::USD, Currency::USD);
        let broke = t(11, 5, 2, 100, Currency::USD, Currency::USD);
        let closed = vec![Closed {
            currency: Currency::USD,
            candidates: vec![small, broke],
            since_us: vec![0, 0],
            balances: vec![(ParticipantId(1), 10_000_000)],
        }];
        // However long a loaded box makes the solve: a late answer would be the
        // fallback's decision, not the optimiser's this test is about.
        let budget = patient(2);
        let (early, _) = decided_at(&closed, NOW_US, budget);
        assert!(
            matches!(
                early.outcomes[0],
                CycleOutcome::Deferred {
                    reason: DeferReason::Cost { .. }
                }
            ),
            "{:?}",
            early.outcomes
        );
        // At its deadline (less one cycle) deferring it is prohibitive.
        let due_at = deadlines().due_at_us(Window::Rtgs, 0).unwrap();
        let (late, inst) = decided_at(&closed, due_at, budget);
        assert!(late.defer_usd[0] > 1_000.0, "{:?}", late.defer_usd);
        assert!(matches!(late.outcomes[0], CycleOutcome::Settled { .. }));
        // Bank 5 has nothing: its payment cannot be funded, so it rolls.
        assert_eq!(
            late.outcomes[1],
            CycleOutcome::Rolled {
                reason: DeferReason::Liquidity { short: 100 },
                to: Window::T0
            }
        );
        let legs = legs(&late, inst.as_deref());
        assert_eq!(
            legs[&Currency::USD].legs[1],
            Leg::Rolled {
                reason: DeferReason::Liquidity { short: 100 },
                to: Window::T0
            }
        );
    }

    #[test]
    fn prepare_keeps_only_the_slots_candidates_touch() {
        let (record, due) = prepare(
            7,
            Window::Rtgs,
            &FxConfig::default(),
            &closed(),
            &registry(&[]),
            &deadlines(),
            NOW_US,
        );
        assert_eq!(due, vec![false; 4]);
        assert_eq!(record.defer_usd.len(), 4);
        assert_eq!(record.transactions.len(), 4);
        assert_eq!(
            record
                .participants
                .iter()
                .map(|p| p.id.0)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let slots: Vec<_> = record
            .balances
            .iter()
            .map(|b| (b.participant.0, b.currency.as_str(), b.balance))
            .collect();
        assert_eq!(
            slots,
            vec![
                (1, "USD", 10_000_000),
                (1, "EUR", 0),
                (2, "USD", 0),
                (2, "EUR", 0),
                (3, "EUR", 1_000_000),
                (4, "USD", 0),
            ]
        );
        assert_eq!(record.spreads.len(), 1, "USD/EUR only");
    }

    #[test]
    fn decisions_explain_every_deferral_and_pass_the_checker() {
        let (record, inst) = decided(patient(4));
        let inst = inst.unwrap();
        assert_eq!(
            record.summary.method,
            DecisionMethod::Optimiser,
            "{}",
            record.fallback_reason
        );
        let outcome = |i: usize| record.outcomes[i];
        assert!(matches!(outcome(0), CycleOutcome::Settled { .. }));
        assert_eq!(
            outcome(1),
            CycleOutcome::Deferred {
                reason: DeferReason::Liquidity { short: 1_000_000 }
            },
            "60,000 + 50,000 > 100,000: short by 10,000.00"
        );
        assert_eq!(
            outcome(2),
            CycleOutcome::Deferred {
                reason: DeferReason::Liquidity { short: 10_000 }
            }
        );
        // 90 EUR = 97.20 USD against a 50 USD limit.
        assert_eq!(
            outcome(3),
            CycleOutcome::Deferred {
                reason: DeferReason::CounterpartyLimit {
                    over_usd_cents: 4_720
                }
            }
        );
        let report = check(&inst, &solution_file(&record));
        assert!(report.valid, "{:?}", report.errors);
        assert!((report.cost.total - record.summary.cost.total).abs() < 0.02);
        // The legs move 60,000.00 USD from bank 1 to bank 2, nothing in EUR.
        let legs = legs(&record, Some(&inst));
        assert_eq!(
            legs[&Currency::USD].credits,
            vec![(ParticipantId(2), 6_000_000)]
        );
        assert_eq!(legs[&Currency::USD].legs.len(), 2);
        assert_eq!(legs[&Currency::EUR].legs.len(), 2);
        assert!(legs[&Currency::EUR].credits.is_empty());
        assert_eq!(
            record.net_flows.iter().map(|n| n.minor).collect::<Vec<_>>(),
            vec![0, 0],
            "same-currency settlement moves nothing between currencies"
        );
    }

    #[test]
    fn the_audit_recomputes_net_flows_from_the_settled_legs() {
        let (mut record, _) = decided(SolveBudget::for_candidates(4));
        let checked = crate::cycle::audit::recost(&record).unwrap();
        assert!(checked.agrees && checked.flows_agree);
        // One minor unit that no settled leg explains.
        record.net_flows[1].minor += 1;
        let checked = crate::cycle::audit::recost(&record).unwrap();
        assert!(!checked.flows_agree && !checked.agrees);
    }

    #[test]
    fn an_overrun_falls_back_and_says_so() {
        let (record, _) = decided(SolveBudget {
            budget: Duration::ZERO,
            grace: Duration::ZERO,
        });
        assert_eq!(record.summary.method, DecisionMethod::Fallback);
        assert!(
            record.fallback_reason.contains("time budget"),
            "{}",
            record.fallback_reason
        );
        // The fallback is the naive order: the first USD payment settles.
        assert!(matches!(record.outcomes[0], CycleOutcome::Settled { .. }));
        assert_eq!(record.summary.cost, record.summary.naive_cost);
    }

    #[test]
    fn a_cycle_without_an_instance_defers_everything() {
        let mut fx = FxConfig::default();
        fx.usd_per_unit.remove(&Currency::EUR);
        let (record, due) = prepare(
            1,
            Window::T0,
            &fx,
            &closed(),
            &registry(&[]),
            &deadlines(),
            NOW_US,
        );
        let mut rt = crate::raft::GlommioRuntime::new(1);
        use openraft::AsyncRuntime;
        let (record, inst) = rt.block_on(decide(record, due, patient(4)));
        assert!(inst.is_none());
        assert_eq!(record.summary.deferred, 4);
        assert!(
            record.fallback_reason.contains("EUR"),
            "{}",
            record.fallback_reason
        );
        let legs = legs(&record, None);
        assert!(legs.values().all(|l| l.credits.is_empty()));
    }
}
