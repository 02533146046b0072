//! A cycle record's inputs as a batching instance (the solver's contract,
//! `shared/spec/batching.md`), and the decision as a solution file.
//!
//! The coordinator builds the instance it solves from the record it is
//! about to write, and `settle audit --cycle` builds it again from the
//! record it reads back: one function, so the two are the same instance.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use settle_codec::messages::{CycleOutcome, CycleRecord};
use settle_codec::tx::{CandidateProblem, DeferReason};
use settle_codec::{Currency, ParticipantId, Window};
use settle_solver::{
    BatchFile, Cost, Decimal, FxTradeFile, Instance, InstanceBuilder, SolutionFile,
};

/// Windows in instance order (the index is the window's instance index).
pub const WINDOWS: [Window; 4] = [Window::Rtgs, Window::T0, Window::T1, Window::T2];

/// Why a record does not make an instance.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error(transparent)]
    Instance(#[from] settle_solver::InstanceError),
}

fn field(field: impl Into<String>, message: impl Into<String>) -> RecordError {
    RecordError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// An exact decimal of a counterparty limit (its shortest f64 spelling).
pub fn limit_decimal(limit_usd: f64) -> Result<Decimal, RecordError> {
    let text = format!("{limit_usd}");
    text.parse()
        .map_err(|e| field("counterparty_limit_usd", format!("{text}: {e}")))
}

/// The id a transaction has in an instance: its u128 in decimal.
pub fn instance_id(id: u128) -> String {
    id.to_string()
}

/// Rounds of [`admit`]: each sets aside at least one more candidate the
/// builder refused, so a handful of bad candidates cannot keep a cycle from
/// its instance; past this the cycle is unsolvable (nothing settles).
const ADMIT_ROUNDS_MAX: usize = 16;

/// Per record transaction: the problem that kept it out of the instance.
pub type SetAside = Vec<Option<CandidateProblem>>;

/// Which candidates a decided record's instance leaves out (its set-aside
/// outcomes). Empty outcomes (not decided yet): none.
pub fn set_aside_in(record: &CycleRecord) -> SetAside {
    let mut out = vec![None; record.transactions.len()];
    for (slot, outcome) in out.iter_mut().zip(&record.outcomes) {
        if let CycleOutcome::Deferred {
            reason: DeferReason::SetAside { problem },
        } = outcome
        {
            *slot = Some(*problem);
        }
    }
    out
}

/// Record index → instance index (`None` for a candidate set aside).
pub fn instance_indices(set_aside: &[Option<CandidateProblem>]) -> Vec<Option<u32>> {
    let mut next = 0u32;
    set_aside
        .iter()
        .map(|p| {
            p.is_none().then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// The candidates no instance can hold as they stand: a second candidate
/// with an id already in the cycle (the first is kept), a currency the
/// cycle has no rate for, a zero amount. Deterministic from the record.
pub fn screen(record: &CycleRecord) -> SetAside {
    let priced: BTreeSet<Currency> = record
        .currencies
        .iter()
        .filter(|c| {
            c.usd_per_unit
                .parse::<Decimal>()
                .is_ok_and(|d| !d.is_zero())
        })
        .map(|c| c.currency)
        .collect();
    let mut seen = BTreeSet::new();
    record
        .transactions
        .iter()
        .map(|t| {
            if !seen.insert(t.id) {
                Some(CandidateProblem::DuplicateId)
            } else if !priced.contains(&t.send) || !priced.contains(&t.receive) {
                Some(CandidateProblem::UnpricedCurrency)
            } else if t.amount == 0 {
                Some(CandidateProblem::BadAmount)
            } else {
                None
            }
        })
        .collect()
}

/// Builds the instance a record about to be decided makes, setting aside
/// every candidate that [`screen`] finds, and any the builder still refuses
/// (its error names the transaction): one bad candidate never stops a
/// cycle for the others. The set-aside list goes into the decision.
pub fn admit(record: &CycleRecord) -> (SetAside, Result<Instance, RecordError>) {
    let mut set_aside = screen(record);
    for _ in 0..ADMIT_ROUNDS_MAX {
        let built = build_admitted(record, &set_aside);
        let refused = match &built {
            Err(RecordError::Instance(settle_solver::InstanceError::Invalid { field, .. })) => {
                refused_candidate(field, &set_aside)
            }
            _ => None,
        };
        match refused {
            Some((t, problem)) => {
                tracing::warn!(
                    cycle_id = record.summary.cycle_id,
                    id = %settle_codec::format_id(record.transactions[t].id),
                    ?problem,
                    "a candidate the instance refused is set aside"
                );
                set_aside[t] = Some(problem);
            }
            None => return (set_aside, built),
        }
    }
    let built = build_admitted(record, &set_aside);
    (set_aside, built)
}

/// The record index and problem of the candidate an instance error names
/// (`transactions[i].field`, `i` counting admitted candidates only).
fn refused_candidate(
    field: &str,
    set_aside: &[Option<CandidateProblem>],
) -> Option<(usize, CandidateProblem)> {
    let rest = field.strip_prefix("transactions[")?;
    let (index, tail) = rest.split_once(']')?;
    let index: u32 = index.parse().ok()?;
    let t = instance_indices(set_aside)
        .iter()
        .position(|&i| i == Some(index))?;
    let problem = match tail {
        ".id" => CandidateProblem::DuplicateId,
        ".send" | ".receive" => CandidateProblem::UnpricedCurrency,
        _ => CandidateProblem::BadAmount,
    };
    Some((t, problem))
}

/// Builds the batching instance a decided record's inputs describe (its
/// set-aside candidates left out: see [`set_aside_in`]).
pub fn build_instance(record: &CycleRecord) -> Result<Instance, RecordError> {
    build_admitted(record, &set_aside_in(record))
}

/// Builds the instance of a record's candidates but those set aside.
/// Instance indices follow the record's order (currencies, participants,
/// admitted transactions: see [`instance_indices`]). A transaction carries
/// the record's `defer_usd` when the record has them.
pub fn build_admitted(
    record: &CycleRecord,
    set_aside: &[Option<CandidateProblem>],
) -> Result<Instance, RecordError> {
    assert_eq!(set_aside.len(), record.transactions.len());
    if !record.defer_usd.is_empty() && record.defer_usd.len() != record.transactions.len() {
        return Err(field(
            "defer_usd",
            format!(
                "{} prices for {} transactions",
                record.defer_usd.len(),
                record.transactions.len()
            ),
        ));
    }
    let mut b = InstanceBuilder::new(
        record.max_batch_size,
        record.wire_usd,
        record.consolidation_discount,
    );
    let mut currency_ix: BTreeMap<Currency, u32> = BTreeMap::new();
    for (i, c) in record.currencies.iter().enumerate() {
        let rate: Decimal = c.usd_per_unit.parse().map_err(|e| {
            field(
                format!("currencies.{}.usd_per_unit", c.currency),
                format!("{:?}: {e}", c.usd_per_unit),
            )
        })?;
        let ix = b.currency(c.currency.as_str(), u32::from(c.minor_units), rate);
        if currency_ix.insert(c.currency, ix).is_some() {
            return Err(field(format!("currencies[{i}]"), "duplicate currency"));
        }
    }
    let ix_of = |c: Currency, what: &str| {
        currency_ix.get(&c).copied().ok_or_else(|| {
            field(
                what.to_string(),
                format!("{c} is not a currency of the cycle"),
            )
        })
    };
    for (i, s) in record.spreads.iter().enumerate() {
        let (a, bb) = (
            ix_of(s.a, &format!("spreads[{i}].a"))?,
            ix_of(s.b, &format!("spreads[{i}].b"))?,
        );
        b.pair(a, bb, s.bps);
    }
    for (w, bps) in WINDOWS.iter().zip(record.defer_bps) {
        b.window(w.as_str(), bps);
    }
    let mut balances: BTreeMap<ParticipantId, Vec<(u32, u64)>> = BTreeMap::new();
    for (i, slot) in record.balances.iter().enumerate() {
        let c = ix_of(slot.currency, &format!("balances[{i}].currency"))?;
        balances
            .entry(slot.participant)
            .or_default()
            .push((c, slot.balance));
    }
    let mut participant_ix: BTreeMap<ParticipantId, u32> = BTreeMap::new();
    for p in &record.participants {
        let ix = b.participant(
            &p.id.name(),
            limit_decimal(p.counterparty_limit_usd)?,
            balances.get(&p.id).map_or(&[][..], Vec::as_slice),
        );
        participant_ix.insert(p.id, ix);
    }
    let party = |p: ParticipantId, what: String| {
        participant_ix
            .get(&p)
            .copied()
            .ok_or_else(|| field(what, format!("{p} is not a participant of the cycle")))
    };
    for (i, t) in record.transactions.iter().enumerate() {
        if set_aside[i].is_some() {
            continue;
        }
        let window = WINDOWS
            .iter()
            .position(|&w| w == t.window)
            .expect("every window has an index") as u32;
        b.transaction(
            &instance_id(t.id),
            party(t.debtor, format!("transactions[{i}].debtor"))?,
            party(t.creditor, format!("transactions[{i}].creditor"))?,
            t.amount,
            ix_of(t.send, &format!("transactions[{i}].send"))?,
            ix_of(t.receive, &format!("transactions[{i}].receive"))?,
            window,
        );
        if let Some(&usd) = record.defer_usd.get(i) {
            b.defer_usd(usd);
        }
    }
    Ok(b.build()?)
}

/// The decision as the spec's solution file, with the recorded costs as
/// its claims (the checker prices the lists itself and compares).
pub fn solution_file(record: &CycleRecord) -> SolutionFile {
    let mut settled = Vec::new();
    let mut deferred = Vec::new();
    let mut batches: BTreeMap<u32, BatchFile> = BTreeMap::new();
    for (t, outcome) in record.transactions.iter().zip(&record.outcomes) {
        match outcome {
            CycleOutcome::Settled { batch } => {
                settled.push(instance_id(t.id));
                batches
                    .entry(*batch)
                    .or_insert_with(|| BatchFile {
                        creditor: t.creditor.name(),
                        currency: t.receive.as_str().to_string(),
                        transactions: Vec::new(),
                    })
                    .transactions
                    .push(instance_id(t.id));
            }
            CycleOutcome::Deferred {
                reason: DeferReason::SetAside { .. },
            } => {}
            CycleOutcome::Deferred { .. } | CycleOutcome::Rolled { .. } => {
                deferred.push(instance_id(t.id))
            }
        }
    }
    SolutionFile {
        settled,
        deferred,
        batches: batches.into_values().collect(),
        fx_trades: record
            .fx_trades
            .iter()
            .map(|f| FxTradeFile {
                from: f.from.as_str().to_string(),
                to: f.to.as_str().to_string(),
                usd: f.usd,
            })
            .collect(),
        cost: Some(cost(&record.summary.cost)),
        naive_cost: Some(cost(&record.summary.naive_cost)),
        savings_pct: Some(record.summary.savings_pct()),
        solve_ms: Some(record.summary.solve_us as f64 / 1e3),
    }
}

fn cost(c: &settle_codec::messages::CycleCost) -> Cost {
    Cost {
        fx: c.fx,
        wire: c.wire,
        deferral: c.deferral,
        total: c.total,
    }
}

/// The record's inputs as the spec's instance JSON, for `settle-solver`.
pub fn instance_json(record: &CycleRecord) -> Value {
    let set_aside = set_aside_in(record);
    let mut balances: BTreeMap<ParticipantId, serde_json::Map<String, Value>> = BTreeMap::new();
    for slot in &record.balances {
        balances
            .entry(slot.participant)
            .or_default()
            .insert(slot.currency.as_str().to_string(), json!(slot.balance));
    }
    // Rates are written as the decimal text they are (exactness matters).
    let currencies: serde_json::Map<String, Value> = record
        .currencies
        .iter()
        .map(|c| {
            let rate: Value = serde_json::from_str(&c.usd_per_unit).unwrap_or(Value::Null);
            (
                c.currency.as_str().to_string(),
                json!({"minor_units": c.minor_units, "usd_per_unit": rate}),
            )
        })
        .collect();
    json!({
        "version": settle_solver::INSTANCE_VERSION,
        "max_batch_size": record.max_batch_size,
        "wire_usd": record.wire_usd,
        "consolidation_discount": record.consolidation_discount,
        "spread_bps": record.spreads.iter().map(|s| json!({"pair": [s.a.as_str(), s.b.as_str()], "bps": s.bps})).collect::<Vec<_>>(),
        "defer_bps": WINDOWS.iter().zip(record.defer_bps).map(|(w, b)| (w.as_str().to_string(), json!(b))).collect::<serde_json::Map<_, _>>(),
        "currencies": currencies,
        "participants": record.participants.iter().map(|p| json!({
            "id": p.id.name(),
            "counterparty_limit_usd": p.counterparty_limit_usd,
            "balances": balances.get(&p.id).cloned().unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "transactions": record.transactions.iter().enumerate()
            .filter(|(i, _)| set_aside[*i].is_none())
            .map(|(i, t)| {
                let mut tx = json!({
                    "id": instance_id(t.id),
                    "debtor": t.debtor.name(),
                    "creditor": t.creditor.name(),
                    "amount": t.amount,
                    "send": t.send.as_str(),
                    "receive": t.receive.as_str(),
                    "window": t.window.as_str(),
                });
                if let Some(usd) = record.defer_usd.get(i) {
                    tx["defer_usd"] = json!(usd);
                }
                tx
            }).collect::<Vec<_>>(),
    })
}
