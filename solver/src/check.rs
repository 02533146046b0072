//! The independent checker: validity and cost of a solution file, computed
//! from its lists alone, whatever produced it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::solution::{Cost, SolutionFile};
use crate::Instance;

/// Errors kept in a report: a broken file can break every rule for every
/// transaction; the first ones say what is wrong, the count says how much.
pub const CHECK_ERRORS_MAX: usize = 100;

/// Costs agree when they differ by less than this (spec), USD.
pub const COST_TOLERANCE_USD: f64 = 0.02;

/// Verdict on a solution.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub valid: bool,
    /// The first [`CHECK_ERRORS_MAX`] errors.
    pub errors: Vec<String>,
    /// All errors found (may exceed `errors.len()`).
    pub error_count: usize,
    /// Cost recomputed from the lists.
    pub cost: Cost,
}

struct Errors {
    list: Vec<String>,
    count: usize,
}

impl Errors {
    fn push(&mut self, e: String) {
        self.count += 1;
        if self.list.len() < CHECK_ERRORS_MAX {
            self.list.push(e);
        }
    }
}

/// Checks `sol` against `inst` by the spec's validity rules and recomputes
/// its cost from its lists.
pub fn check(inst: &Instance, sol: &SolutionFile) -> CheckReport {
    let mut errs = Errors {
        list: Vec::new(),
        count: 0,
    };
    let n = inst.transactions.len();
    let nc = inst.currencies.len();
    let tx_ix: BTreeMap<&str, usize> = inst
        .transactions
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let cur_ix: BTreeMap<&str, u32> = inst
        .currencies
        .iter()
        .enumerate()
        .map(|(i, c)| (c.code.as_str(), i as u32))
        .collect();
    let part_ix: BTreeMap<&str, u32> = inst
        .participants
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i as u32))
        .collect();

    // 0 = unlisted, 1 = settled, 2 = deferred.
    let mut state = vec![0u8; n];
    for (list, tag, name) in [
        (&sol.settled, 1u8, "settled"),
        (&sol.deferred, 2u8, "deferred"),
    ] {
        for id in list {
            match tx_ix.get(id.as_str()) {
                None => errs.push(format!("{name}: unknown transaction {id:?}")),
                Some(&t) if state[t] != 0 => errs.push(format!(
                    "{name}: transaction {id:?} listed more than once in settled/deferred"
                )),
                Some(&t) => state[t] = tag,
            }
        }
    }
    for (t, &s) in state.iter().enumerate() {
        if s == 0 {
            errs.push(format!(
                "transaction {:?} is neither settled nor deferred",
                inst.transactions[t].id
            ));
        }
    }
    let settled: Vec<bool> = state.iter().map(|&s| s == 1).collect();

    // Batches.
    let mut in_batch = vec![0u32; n];
    let mut wire = 0.0;
    for (i, b) in sol.batches.iter().enumerate() {
        let creditor = part_ix.get(b.creditor.as_str()).copied();
        let currency = cur_ix.get(b.currency.as_str()).copied();
        if creditor.is_none() {
            errs.push(format!(
                "batches[{i}].creditor: unknown participant {:?}",
                b.creditor
            ));
        }
        if currency.is_none() {
            errs.push(format!(
                "batches[{i}].currency: unknown currency {:?}",
                b.currency
            ));
        }
        if b.transactions.is_empty() {
            errs.push(format!("batches[{i}]: empty batch"));
        }
        if b.transactions.len() > inst.max_batch_size as usize {
            errs.push(format!(
                "batches[{i}]: {} transactions exceed max_batch_size {}",
                b.transactions.len(),
                inst.max_batch_size
            ));
        }
        wire += match b.transactions.len() {
            0 => 0.0,
            1 => inst.wire_usd,
            _ => inst.wire_usd * (1.0 - inst.consolidation_discount),
        };
        for id in &b.transactions {
            let Some(&t) = tx_ix.get(id.as_str()) else {
                errs.push(format!("batches[{i}]: unknown transaction {id:?}"));
                continue;
            };
            let tx = &inst.transactions[t];
            in_batch[t] += 1;
            if !settled[t] {
                errs.push(format!("batches[{i}]: transaction {id:?} is not settled"));
            }
            if creditor.is_some_and(|c| c != tx.creditor)
                || currency.is_some_and(|c| c != tx.receive)
            {
                errs.push(format!(
                    "batches[{i}]: transaction {id:?} pays {} in {}, not {} in {}",
                    inst.participants[tx.creditor as usize].id,
                    inst.currencies[tx.receive as usize].code,
                    b.creditor,
                    b.currency
                ));
            }
        }
    }
    for t in 0..n {
        if settled[t] && in_batch[t] != 1 {
            errs.push(format!(
                "transaction {:?} is settled but in {} batches (must be exactly one)",
                inst.transactions[t].id, in_batch[t]
            ));
        }
    }

    // Balances and counterparty limits, exactly.
    let mut bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
    for p in &inst.participants {
        bal.extend(p.balances.iter().map(|&b| b as i128));
    }
    let mut used = vec![0i128; inst.participants.len()];
    let mut deferral = 0.0;
    for (t, tx) in inst.transactions.iter().enumerate() {
        if settled[t] {
            bal[tx.debtor as usize * nc + tx.send as usize] -= tx.amount as i128;
            bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
            used[tx.creditor as usize] += inst.receive_usd_fixed[t];
        } else {
            deferral += inst.defer_usd(t);
        }
    }
    for (slot, &b) in bal.iter().enumerate() {
        if b < 0 {
            let (p, c) = (slot / nc, slot % nc);
            errs.push(format!(
                "balance of {} in {} ends at {b} minor units (negative)",
                inst.participants[p].id, inst.currencies[c].code
            ));
        }
    }
    let unit = 10f64.powi(inst.usd_scale);
    for (p, (&u, &l)) in used.iter().zip(&inst.limit_fixed).enumerate() {
        if u > l {
            errs.push(format!(
                "{} receives {:.2} USD, above its counterparty limit {}",
                inst.participants[p].id,
                u as f64 / unit,
                inst.participants[p].counterparty_limit_usd
            ));
        }
    }

    // FX: trades along tradable pairs must cover every net position.
    let pos = crate::solution::positions(inst, &settled);
    let mut residual = pos.clone();
    let mut gross = vec![0.0f64; nc];
    let mut fx = 0.0;
    for (i, tr) in sol.fx_trades.iter().enumerate() {
        let from = cur_ix.get(tr.from.as_str()).copied();
        let to = cur_ix.get(tr.to.as_str()).copied();
        let (Some(from), Some(to)) = (from, to) else {
            errs.push(format!(
                "fx_trades[{i}]: unknown currency in {:?}->{:?}",
                tr.from, tr.to
            ));
            continue;
        };
        if !(tr.usd.is_finite() && tr.usd >= 0.0) {
            errs.push(format!(
                "fx_trades[{i}].usd: must be a non-negative number, got {}",
                tr.usd
            ));
            continue;
        }
        let Some(cost) = inst.fx.edge_cost(from, to) else {
            errs.push(format!(
                "fx_trades[{i}]: {}/{} is not a tradable pair",
                tr.from, tr.to
            ));
            continue;
        };
        fx += tr.usd * cost;
        residual[from as usize] -= tr.usd;
        residual[to as usize] += tr.usd;
        gross[from as usize] += tr.usd;
        gross[to as usize] += tr.usd;
    }
    for (c, &r) in residual.iter().enumerate() {
        let cur = &inst.currencies[c];
        let minor_unit_usd = cur.usd_per_unit.to_f64() / 10f64.powi(cur.minor_units as i32);
        // One minor unit, plus the rounding of the f64 sums themselves.
        let tol = minor_unit_usd + 1e-12 * (gross[c] + pos[c].abs());
        if r.abs() > tol {
            errs.push(format!(
                "net position in {} is {:.6} USD, trades leave {:.6} USD uncovered",
                cur.code, pos[c], r
            ));
        }
    }
    let cost = Cost::new(fx, wire, deferral);
    match &sol.cost {
        None => errs.push("cost: missing".to_string()),
        Some(claimed) => {
            for (name, a, b) in [
                ("fx", claimed.fx, cost.fx),
                ("wire", claimed.wire, cost.wire),
                ("deferral", claimed.deferral, cost.deferral),
                ("total", claimed.total, cost.total),
            ] {
                let agree = (a - b).abs() < COST_TOLERANCE_USD;
                if !agree {
                    errs.push(format!("cost.{name}: claims {a}, recomputed {b}"));
                }
            }
        }
    }
    CheckReport {
        valid: errs.count == 0,
        errors: errs.list,
        error_count: errs.count,
        cost,
    }
}
