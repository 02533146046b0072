//! Audit: a transaction's trail as people read it, and a cycle's decision
//! re-costed from its recorded inputs by the solver's own checker (so
//! anyone holding the record can verify the costs and the savings).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use settle_codec::messages::{CycleOutcome, CycleRecord, DecisionMethod};
use settle_codec::tx::{CandidateProblem, DeferReason, EventDetail};
use settle_codec::{format_id, Currency, LookupItem, TxEvent};
use settle_solver::{check, naive, CheckReport, Cost, Instance, COST_TOLERANCE_USD};

use super::instance::{build_instance, instance_indices, set_aside_in, solution_file, RecordError};

/// A decision re-costed from its inputs.
#[derive(Debug, Clone)]
pub struct Recost {
    /// The checker's verdict and cost of the recorded decision.
    pub report: CheckReport,
    /// The naive baseline recomputed on the same instance.
    pub naive: Cost,
    /// Recorded cost and naive cost both agree with the recomputation.
    pub agrees: bool,
    /// The recorded net flows are exactly the settled legs: per currency,
    /// the receive amounts credited minus the amounts debited, recomputed
    /// from the instance (rates included) and the recorded outcomes.
    pub flows_agree: bool,
}

/// Per currency of the record, the settled legs' net flow in minor units
/// (credits paid minus debits taken), recomputed from `inst` (the instance
/// the record rebuilds, [`build_instance`]) and its outcomes, in the
/// record's currency order.
pub fn settled_net_flows(
    record: &CycleRecord,
    inst: &Instance,
) -> Result<Vec<(Currency, i128)>, RecordError> {
    let indices = instance_indices(&set_aside_in(record));
    let mut net = vec![0i128; inst.currencies.len()];
    for (outcome, index) in record.outcomes.iter().zip(&indices) {
        if !outcome.is_settled() {
            continue;
        }
        let Some(t) = index else {
            return Err(RecordError::Field {
                field: "outcomes".into(),
                message: "a candidate set aside is recorded as settled".into(),
            });
        };
        let tx = &inst.transactions[*t as usize];
        net[tx.send as usize] -= i128::from(tx.amount);
        net[tx.receive as usize] += i128::from(tx.receive_amount);
    }
    Ok(record
        .currencies
        .iter()
        .map(|c| c.currency)
        .zip(net)
        .collect())
}

/// Rebuilds the instance from the record and checks the decision.
pub fn recost(record: &CycleRecord) -> Result<Recost, RecordError> {
    let inst = build_instance(record)?;
    let report = check(&inst, &solution_file(record));
    let naive = naive(&inst).cost;
    let close = |a: f64, b: f64| (a - b).abs() < COST_TOLERANCE_USD;
    let agrees = report.valid
        && close(report.cost.total, record.summary.cost.total)
        && close(naive.total, record.summary.naive_cost.total);
    let recorded: Vec<(Currency, i128)> = record
        .net_flows
        .iter()
        .map(|n| (n.currency, i128::from(n.minor)))
        .collect();
    let flows_agree = settled_net_flows(record, &inst)? == recorded;
    Ok(Recost {
        report,
        naive,
        agrees: agrees && flows_agree,
        flows_agree,
    })
}

/// `amount` minor units of `currency` as a decimal (`1234.56 EUR`).
pub fn money(amount: u64, currency: Currency) -> String {
    let units = u32::from(currency.minor_units().unwrap_or(2));
    if units == 0 {
        return format!("{amount} {currency}");
    }
    let scale = 10u64.pow(units);
    format!(
        "{}.{:0width$} {currency}",
        amount / scale,
        amount % scale,
        width = units as usize
    )
}

/// A leader timestamp as RFC 3339 (UTC, microseconds).
pub fn timestamp(at_us: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(at_us)).to_string()
}

/// What an event's detail says, in words.
pub fn describe(event: &TxEvent) -> String {
    match event.detail {
        EventDetail::None => String::new(),
        EventDetail::Candidate { window } => {
            format!(
                "frozen as a candidate of cycle {} ({window})",
                event.cycle_id
            )
        }
        EventDetail::Settle {
            receive_amount,
            receive,
            fallback,
        } => format!(
            "settles in batch {}: the creditor receives {}{}",
            event.batch_id().unwrap_or_else(|| "-".into()),
            money(receive_amount, receive),
            if fallback {
                " (decided by the fallback grouping)"
            } else {
                ""
            }
        ),
        EventDetail::Defer { reason, deferrals } => {
            format!(
                "{}; deferred {deferrals} time(s) so far",
                why_deferred(reason, event.currency)
            )
        }
        EventDetail::Rolled { from, to, reason } => format!(
            "not funded by the {from} deadline: rolled to {to} ({})",
            why_deferred(reason, event.currency)
        ),
        EventDetail::Execution { attempts } => format!("{attempts} attempt(s)"),
    }
}

/// Why a cycle deferred a transaction sending `currency`, in words.
fn why_deferred(reason: DeferReason, currency: Currency) -> String {
    match reason {
                DeferReason::Liquidity { short } => format!(
                    "deferred: settling it would leave the debtor's {} balance short by {}",
                    currency,
                    money(short, currency)
                ),
                DeferReason::CounterpartyLimit { over_usd_cents } => format!(
                    "deferred: the creditor would exceed its counterparty limit by {}",
                    money(over_usd_cents, Currency::USD)
                ),
                DeferReason::Cost {
                    defer_cost_usd_micros,
                } => format!(
                    "deferred by the optimiser: it would fit on its own, but the cycle's cheapest plan waits with it (waiting costs {:.6} USD)",
                    defer_cost_usd_micros as f64 / 1e6
                ),
                DeferReason::Unsolvable => {
                    "deferred: the cycle could not be optimised (see its record)".to_string()
                }
                DeferReason::SetAside { problem } => format!(
                    "set aside: the cycle could not price or settle it ({}); the others went on",
                    match problem {
                        CandidateProblem::DuplicateId =>
                            "another candidate of the cycle has its id",
                        CandidateProblem::UnpricedCurrency =>
                            "a currency without a rate in the cycle",
                        CandidateProblem::BadAmount => "an amount that cannot be valued",
                    }
                ),
            }
}

/// A transaction's trail, one line per event, oldest first.
pub fn render_trail(item: &LookupItem) -> String {
    let id = format_id(item.id);
    let mut out = format!("transaction {id}: {:?}\n", item.status);
    for e in &item.events {
        let _ = writeln!(
            out,
            "  {:<22} entry {}:{:<8} {}  tx {id}  batch {:<8} {:>20}  by {:<11} {}",
            e.kind.as_str(),
            e.group,
            e.entry_index,
            timestamp(e.at_us),
            e.batch_id().unwrap_or_else(|| "-".into()),
            money(e.amount, e.currency),
            format!("{:?}", e.actor).to_lowercase(),
            describe(e)
        );
    }
    out
}

/// A trail as JSON: every field of every event, plus the ids and the
/// explanation spelled out.
pub fn trail_json(item: &LookupItem) -> Value {
    let id = format_id(item.id);
    json!({
        "id": id,
        "status": item.status,
        "events": item.events.iter().map(|e| {
            let mut v = serde_json::to_value(e).expect("plain data");
            v["transaction_id"] = json!(id);
            v["entry_id"] = json!(format!("{}:{}", e.group, e.entry_index));
            v["batch_id"] = json!(e.batch_id());
            v["timestamp"] = json!(timestamp(e.at_us));
            v["event"] = json!(e.kind.as_str());
            v["details"] = json!(describe(e));
            v
        }).collect::<Vec<_>>(),
    })
}

/// Deferred transactions listed in a cycle report at most.
const REPORT_DEFERRED_MAX: usize = 20;

/// A cycle's decision with its costs, naive cost and savings, each shown
/// as recorded and as the checker recomputes it.
pub fn render_cycle(record: &CycleRecord, recost: &Result<Recost, RecordError>) -> String {
    let s = &record.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cycle {} ({}), {:?}, decision at control entry 0:{}",
        s.cycle_id, s.window, s.status, s.decision_index
    );
    let _ = writeln!(
        out,
        "  started {}  decided {}  applied {}",
        timestamp(s.started_at_us),
        timestamp(s.decided_at_us),
        if s.applied_at_us > 0 {
            timestamp(s.applied_at_us)
        } else {
            "-".into()
        }
    );
    match s.method {
        DecisionMethod::Optimiser => {
            let _ = writeln!(
                out,
                "  method: optimiser ({:.3} ms)",
                s.solve_us as f64 / 1e3
            );
        }
        DecisionMethod::Fallback => {
            let _ = writeln!(
                out,
                "  method: FALLBACK grouping: {}",
                record.fallback_reason
            );
        }
    }
    let _ = writeln!(
        out,
        "  candidates {}  settled {}  deferred {}  batches (wires) {}",
        s.candidates, s.settled, s.deferred, s.batches
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>14} {:>14} {:>14} {:>14}",
        "USD", "fx", "wire", "deferral", "total"
    );
    let row = |out: &mut String, name: &str, c: (f64, f64, f64, f64)| {
        let _ = writeln!(
            out,
            "  {name:<10} {:>14.4} {:>14.4} {:>14.4} {:>14.4}",
            c.0, c.1, c.2, c.3
        );
    };
    row(
        &mut out,
        "cost",
        (s.cost.fx, s.cost.wire, s.cost.deferral, s.cost.total),
    );
    match recost {
        Ok(r) => {
            let c = r.report.cost;
            row(&mut out, "  checker", (c.fx, c.wire, c.deferral, c.total));
            row(
                &mut out,
                "naive",
                (
                    s.naive_cost.fx,
                    s.naive_cost.wire,
                    s.naive_cost.deferral,
                    s.naive_cost.total,
                ),
            );
            let n = r.naive;
            row(&mut out, "  checker", (n.fx, n.wire, n.deferral, n.total));
        }
        Err(_) => row(
            &mut out,
            "naive",
            (
                s.naive_cost.fx,
                s.naive_cost.wire,
                s.naive_cost.deferral,
                s.naive_cost.total,
            ),
        ),
    }
    let _ = writeln!(
        out,
        "  savings against the naive baseline: {:.2} USD ({:.2} %)",
        s.naive_cost.total - s.cost.total,
        s.savings_pct()
    );
    for f in &record.fx_trades {
        let _ = writeln!(out, "  fx trade {} -> {}: {:.2} USD", f.from, f.to, f.usd);
    }
    for n in &record.net_flows {
        let _ = writeln!(out, "  net flow {}: {} minor units", n.currency, n.minor);
    }
    let deferred: Vec<_> = record
        .transactions
        .iter()
        .zip(&record.outcomes)
        .filter_map(|(t, o)| match o {
            CycleOutcome::Deferred { reason } | CycleOutcome::Rolled { reason, .. } => {
                Some((t, *reason))
            }
            CycleOutcome::Settled { .. } => None,
        })
        .collect();
    for (t, reason) in deferred.iter().take(REPORT_DEFERRED_MAX) {
        let event = TxEvent {
            group: 0,
            entry_index: s.decision_index,
            at_us: s.decided_at_us,
            kind: settle_codec::TxEventKind::BatchOptimized,
            cycle_id: s.cycle_id,
            batch: 0,
            amount: t.amount,
            currency: t.send,
            actor: settle_codec::tx::Actor::Solver,
            detail: EventDetail::Defer {
                reason: *reason,
                deferrals: 1,
            },
        };
        let why = describe(&event);
        let why = why
            .split("; deferred")
            .next()
            .unwrap_or_default()
            .to_string();
        let _ = writeln!(
            out,
            "  deferred {} ({} -> {}, {}): {why}",
            format_id(t.id),
            t.debtor,
            t.creditor,
            money(t.amount, t.send)
        );
    }
    if deferred.len() > REPORT_DEFERRED_MAX {
        let _ = writeln!(
            out,
            "  … and {} more deferred",
            deferred.len() - REPORT_DEFERRED_MAX
        );
    }
    match recost {
        Ok(r) if r.agrees => {
            let _ = writeln!(
                out,
                "VERIFIED: the decision is valid and its cost and naive cost agree with the checker's recomputation from the recorded inputs (within {COST_TOLERANCE_USD} USD)"
            );
        }
        Ok(r) => {
            let _ = writeln!(
                out,
                "MISMATCH: valid={} errors={} {:?}",
                r.report.valid, r.report.error_count, r.report.errors
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "NOT RE-COSTED: the recorded inputs do not make an instance: {e}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_uses_minor_units() {
        assert_eq!(money(123_456, Currency::EUR), "1234.56 EUR");
        assert_eq!(money(5, Currency::USD), "0.05 USD");
        assert_eq!(money(700, Currency::JPY), "700 JPY");
    }
}
