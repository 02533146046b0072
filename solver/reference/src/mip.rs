//! The contract as a mixed-integer program, solved by CBC.
//!
//! Variables: `x_t` (binary: t settles), per (creditor, currency) group the
//! number of batches `k_g` and of single-transaction batches `s_g`
//! (integers), per tradable pair a flow in each direction (continuous,
//! thousands of USD). Minimise
//! `Σ defer_t (1 - x_t) + Σ_g (w(1-d) k_g + w d s_g) + Σ_ab bps_ab/10^4 f_ab`
//! subject to: every balance non-negative; every counterparty limit; per
//! group `n_g ≤ s_g + B (k_g - s_g)` (batches hold at most B), `n_g ≥ 2 k_g - s_g`
//! (a batch that is not single holds two or more), `s_g ≤ k_g`; per currency
//! the trades cover the net position (flow out − flow in = position).
//!
//! CBC works in floating point; the settled set it returns is checked
//! feasible by exact integer arithmetic and priced by settle-solver's own
//! coster, so the reported optimum is the cost of a valid solution.

use std::time::Instant;

use coin_cbc::{Col, Model, Sense};
use settle_solver::{is_feasible, price, Instance};

/// CBC stops when its bound is this close to its best solution (USD): well
/// below the contract's 0.02 USD tolerance.
const GAP_ABS_USD: f64 = 0.001;

/// FX flows and positions are in thousands of USD: keeps the currency rows'
/// coefficients near one.
const FX_UNIT_USD: f64 = 1_000.0;

pub enum MipStatus {
    Optimal,
    Feasible,
}

pub struct MipResult {
    pub status: MipStatus,
    pub settled: Vec<bool>,
    /// Cost of `settled`, priced by settle-solver.
    pub cost: f64,
    /// CBC's lower bound on the optimum.
    pub bound: f64,
    pub seconds: f64,
}

struct Vars {
    x: Vec<Col>,
    k: Vec<Col>,
    s: Vec<Col>,
}

fn add_balance_rows(m: &mut Model, inst: &Instance, x: &[Col]) {
    let nc = inst.currencies.len();
    // (coefficient per transaction) per slot, in minor units.
    let mut terms: Vec<Vec<(usize, f64)>> = vec![Vec::new(); inst.slot_count()];
    let mut debits = vec![false; inst.slot_count()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        let ds = inst.slot(tx.debtor, tx.send);
        let cs = inst.slot(tx.creditor, tx.receive);
        terms[ds].push((t, -(tx.amount as f64)));
        terms[cs].push((t, tx.receive_amount as f64));
        debits[ds] = true;
    }
    for (slot, list) in terms.iter().enumerate() {
        if !debits[slot] {
            continue;
        }
        let start = inst.participants[slot / nc].balances[slot % nc] as f64;
        let scale = list
            .iter()
            .map(|(_, c)| c.abs())
            .fold(start, f64::max)
            .max(1.0);
        let row = m.add_row();
        // Merge a transaction's debit and credit on the same slot.
        let mut merged: Vec<(usize, f64)> = Vec::with_capacity(list.len());
        for &(t, c) in list {
            match merged.iter_mut().find(|(u, _)| *u == t) {
                Some(e) => e.1 += c,
                None => merged.push((t, c)),
            }
        }
        for (t, c) in merged {
            m.set_weight(row, x[t], c / scale);
        }
        m.set_row_lower(row, -start / scale);
    }
}

fn add_limit_rows(m: &mut Model, inst: &Instance, x: &[Col]) {
    let np = inst.participants.len();
    let mut total = vec![0.0f64; np];
    for t in 0..inst.transactions.len() {
        total[inst.transactions[t].creditor as usize] += inst.receive_value_usd(t);
    }
    for (p, part) in inst.participants.iter().enumerate() {
        let limit = part.counterparty_limit_usd.to_f64();
        if total[p] <= limit {
            continue;
        }
        let row = m.add_row();
        for (t, tx) in inst.transactions.iter().enumerate() {
            if tx.creditor as usize == p {
                m.set_weight(row, x[t], inst.receive_value_usd(t) / limit.max(1.0));
            }
        }
        m.set_row_upper(row, limit / limit.max(1.0));
    }
}

fn add_group_rows(m: &mut Model, inst: &Instance, x: &[Col]) -> (Vec<Col>, Vec<Col>) {
    let b = f64::from(inst.max_batch_size);
    let w = inst.wire_usd;
    let d = inst.consolidation_discount;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); inst.group_count()];
    for t in 0..inst.transactions.len() {
        members[inst.group_of(t)].push(t);
    }
    let (mut ks, mut ss) = (Vec::new(), Vec::new());
    for list in &members {
        let k = m.add_integer();
        let s = m.add_integer();
        let n = list.len() as f64;
        m.set_col_lower(k, 0.0);
        m.set_col_upper(k, n);
        m.set_col_lower(s, 0.0);
        m.set_col_upper(s, n);
        m.set_obj_coeff(k, w * (1.0 - d));
        m.set_obj_coeff(s, w * d);
        // n - B k + (B - 1) s <= 0
        let cap = m.add_row();
        // n - 2k + s >= 0
        let two = m.add_row();
        // s - k <= 0
        let single = m.add_row();
        for &t in list {
            m.set_weight(cap, x[t], 1.0);
            m.set_weight(two, x[t], 1.0);
        }
        m.set_weight(cap, k, -b);
        m.set_weight(cap, s, b - 1.0);
        m.set_row_upper(cap, 0.0);
        m.set_weight(two, k, -2.0);
        m.set_weight(two, s, 1.0);
        m.set_row_lower(two, 0.0);
        m.set_weight(single, s, 1.0);
        m.set_weight(single, k, -1.0);
        m.set_row_upper(single, 0.0);
        ks.push(k);
        ss.push(s);
    }
    (ks, ss)
}

fn add_fx_rows(m: &mut Model, inst: &Instance, x: &[Col]) {
    let nc = inst.currencies.len();
    let rows: Vec<_> = (0..nc).map(|_| m.add_row()).collect();
    for &row in &rows {
        m.set_row_lower(row, 0.0);
        m.set_row_upper(row, 0.0);
    }
    // flow out - flow in - position = 0, position = Σ sends - Σ receives.
    for e in inst.fx().edges() {
        for (from, to) in [(e.a, e.b), (e.b, e.a)] {
            let f = m.add_col();
            m.set_col_lower(f, 0.0);
            m.set_obj_coeff(f, e.cost * FX_UNIT_USD);
            m.set_weight(rows[from as usize], f, 1.0);
            m.set_weight(rows[to as usize], f, -1.0);
        }
    }
    for (t, tx) in inst.transactions.iter().enumerate() {
        if tx.send != tx.receive {
            let v = inst.value_usd(t) / FX_UNIT_USD;
            m.set_weight(rows[tx.send as usize], x[t], -v);
            m.set_weight(rows[tx.receive as usize], x[t], v);
        }
    }
}

fn build(inst: &Instance) -> (Model, Vars, f64) {
    let mut m = Model::default();
    let mut defer_total = 0.0;
    let x: Vec<Col> = (0..inst.transactions.len())
        .map(|t| {
            let c = m.add_binary();
            m.set_obj_coeff(c, -inst.defer_usd(t));
            defer_total += inst.defer_usd(t);
            c
        })
        .collect();
    add_balance_rows(&mut m, inst, &x);
    add_limit_rows(&mut m, inst, &x);
    let (k, s) = add_group_rows(&mut m, inst, &x);
    add_fx_rows(&mut m, inst, &x);
    m.set_obj_sense(Sense::Minimize);
    (m, Vars { x, k, s }, defer_total)
}

fn set_start(m: &mut Model, inst: &Instance, v: &Vars, settled: &[bool]) {
    let mut n = vec![0usize; inst.group_count()];
    for (t, &s) in settled.iter().enumerate() {
        m.set_col_initial_solution(v.x[t], f64::from(u8::from(s)));
        if s {
            n[inst.group_of(t)] += 1;
        }
    }
    let b = inst.max_batch_size as usize;
    for (g, &n) in n.iter().enumerate() {
        let k = n.div_ceil(b);
        let s = (2 * k).saturating_sub(n).min(k);
        m.set_col_initial_solution(v.k[g], k as f64);
        m.set_col_initial_solution(v.s[g], s as f64);
    }
}

/// Solves `inst` within `seconds`, starting from `incumbent` (a feasible
/// settled set) when given.
pub fn solve_mip(
    inst: &Instance,
    seconds: f64,
    incumbent: Option<&[bool]>,
) -> Result<MipResult, String> {
    let started = Instant::now();
    let (mut m, vars, defer_total) = build(inst);
    // CBC 2.10's MIP start is unreliable here (with an optimal start it
    // may stop at the root with neither the start nor a bound), so the
    // start only seeds CBC when asked; it always competes at the end.
    if let (Some(start), true) = (incumbent, std::env::var_os("CBC_MIPSTART").is_some()) {
        set_start(&mut m, inst, &vars, start);
    }
    m.set_parameter(
        "log",
        &std::env::var("CBC_LOG").unwrap_or_else(|_| "0".into()),
    );
    m.set_parameter("seconds", &format!("{seconds}"));
    m.set_parameter("threads", "1");
    m.set_parameter("preprocess", "off");
    m.set_parameter("ratioGap", "0");
    m.set_parameter("allowableGap", &format!("{GAP_ABS_USD}"));
    let sol = m.solve();
    let raw = sol.raw();
    let settled: Vec<bool> = vars.x.iter().map(|&c| sol.col(c) > 0.5).collect();
    let mip_cost = raw.obj_value() + defer_total;
    let bound = raw.best_possible_value() + defer_total;
    let proven = raw.is_proven_optimal();
    let mut best = settled;
    if !is_feasible(inst, &best) {
        match incumbent {
            Some(start) => best = start.to_vec(),
            None => {
                return Err(format!(
                    "CBC's solution breaks a balance or limit exactly (its cost {mip_cost})"
                ))
            }
        }
    }
    let cost = price(inst, &best).cost.total;
    if let Some(start) = incumbent {
        // CBC never returns worse than its start; the exact pricing decides.
        let start_cost = price(inst, start).cost.total;
        if start_cost < cost - 1e-9 {
            best = start.to_vec();
        }
    }
    let cost = price(inst, &best).cost.total;
    let status = if proven && cost - bound.min(mip_cost) <= GAP_ABS_USD + 1e-6 {
        MipStatus::Optimal
    } else {
        MipStatus::Feasible
    };
    Ok(MipResult {
        status,
        settled: best,
        cost,
        bound: bound.min(cost),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The LP relaxation of the balance and limit rows alone (wire and FX
/// costs dropped, `0 <= x_t <= 1`): the best any Lagrangian price of the
/// liquidity rows can prove, the yardstick of the solver's own bound.
pub fn liquidity_lp_bound(inst: &Instance) -> f64 {
    let mut m = Model::default();
    let mut defer_total = 0.0;
    let x: Vec<Col> = (0..inst.transactions.len())
        .map(|t| {
            let c = m.add_col();
            m.set_col_lower(c, 0.0);
            m.set_col_upper(c, 1.0);
            m.set_obj_coeff(c, -inst.defer_usd(t));
            defer_total += inst.defer_usd(t);
            c
        })
        .collect();
    add_balance_rows(&mut m, inst, &x);
    add_limit_rows(&mut m, inst, &x);
    m.set_obj_sense(Sense::Minimize);
    m.set_parameter("log", "0");
    let sol = m.solve();
    sol.raw().obj_value() + defer_total
}
