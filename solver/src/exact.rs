//! Exact mode: branch and bound over settle/defer that proves the optimum of
//! small instances (the mixed-integer program of the spec).
//!
//! The bound at a node (some transactions decided, the rest open) is the
//! deferral of decided-out transactions, plus per group the least wire cost
//! over the group's reachable sizes, plus the max over dual vertices v of
//! `v·pos_in + Σ_open min(defer_u, v·δ_u)`: for any completion, FX cost >= v·pos (LP duality) and each open
//! transaction either pays its deferral or adds v·δ_u to that term. Balances
//! prune with an optimistic balance (every open credit in, no open debit).

use std::time::Instant;

use crate::solution::{naive, price, Solution};
use crate::Instance;

/// Limits of [`exact`]: past them it gives up (returns `None`) rather than
/// run for ever.
#[derive(Clone, Debug)]
pub struct ExactLimits {
    /// Refuse instances with more transactions than this.
    pub transactions_max: usize,
    /// Give up after visiting this many nodes.
    pub nodes_max: u64,
}

impl Default for ExactLimits {
    fn default() -> Self {
        ExactLimits {
            transactions_max: 40,
            nodes_max: 20_000_000,
        }
    }
}

/// The proven optimum, or `None` when the instance exceeds the limits.
pub fn exact(inst: &Instance, limits: &ExactLimits) -> Option<Solution> {
    let started = Instant::now();
    let mut sol = exact_with_incumbent(inst, limits, None)?;
    sol.naive_cost = naive(inst).cost;
    sol.solve_ms = started.elapsed().as_secs_f64() * 1e3;
    Some(sol)
}

/// Branch and bound seeded with a feasible `incumbent` (if any). Returns the
/// optimum (priced, `naive_cost` left zero) when the search completes.
pub(crate) fn exact_with_incumbent(
    inst: &Instance,
    limits: &ExactLimits,
    incumbent: Option<&[bool]>,
) -> Option<Solution> {
    let n = inst.transactions.len();
    if n > limits.transactions_max {
        return None;
    }
    let mut bb = Bb::new(inst, limits.nodes_max);
    if let Some(inc) = incumbent {
        debug_assert!(crate::solution::is_feasible(inst, inc));
        bb.best_cost = price(inst, inc).cost.total;
        bb.best = Some(inc.to_vec());
    }
    bb.dfs(0);
    if bb.nodes > bb.nodes_max {
        return None;
    }
    let best = bb.best?;
    Some(price(inst, &best))
}

struct Bb<'a> {
    inst: &'a Instance,
    /// Decision order: most expensive to defer first.
    order: Vec<usize>,
    /// `suffix[v * (n + 1) + k]`: Σ over open o_k.. of min(defer, v·δ).
    suffix: Vec<f64>,
    vcount: usize,
    x: Vec<bool>,
    /// Balance with every open credit counted in: must stay >= 0.
    opt_bal: Vec<i128>,
    used: Vec<i128>,
    /// Settled and open members per group.
    gin: Vec<u32>,
    gopen: Vec<u32>,
    /// Σ_g min wire over reachable sizes, kept up to date.
    wire_lb: f64,
    deferral: f64,
    pos: Vec<f64>,
    /// `vp[v]`: vertex v dotted with `pos`.
    vp: Vec<f64>,
    best: Option<Vec<bool>>,
    best_cost: f64,
    nodes: u64,
    nodes_max: u64,
}

impl<'a> Bb<'a> {
    fn new(inst: &'a Instance, nodes_max: u64) -> Bb<'a> {
        let n = inst.transactions.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            inst.defer_usd(b)
                .total_cmp(&inst.defer_usd(a))
                .then(a.cmp(&b))
        });
        let duals = inst.fx().dual_vertices();
        let vcount = duals.map_or(0, |d| d.count);
        let mut suffix = vec![0.0; vcount * (n + 1)];
        if let Some(dv) = duals {
            for v in 0..vcount {
                for k in (0..n).rev() {
                    let t = order[k];
                    let tx = &inst.transactions[t];
                    let vd = inst.value_usd(t)
                        * (dv.columns[tx.send as usize][v] - dv.columns[tx.receive as usize][v]);
                    suffix[v * (n + 1) + k] =
                        suffix[v * (n + 1) + k + 1] + inst.defer_usd(t).min(vd);
                }
            }
        }
        let nc = inst.currencies.len();
        let mut opt_bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
        for p in &inst.participants {
            opt_bal.extend(p.balances.iter().map(|&b| b as i128));
        }
        let mut gopen = vec![0u32; inst.group_count()];
        for (t, tx) in inst.transactions.iter().enumerate() {
            opt_bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
            gopen[inst.group_of(t)] += 1;
        }
        Bb {
            inst,
            order,
            suffix,
            vcount,
            x: vec![false; n],
            opt_bal,
            used: vec![0; inst.participants.len()],
            gin: vec![0; inst.group_count()],
            gopen,
            wire_lb: 0.0,
            deferral: 0.0,
            pos: vec![0.0; nc],
            vp: vec![0.0; vcount],
            best: None,
            best_cost: f64::INFINITY,
            nodes: 0,
            nodes_max,
        }
    }

    fn group_lb(&self, g: usize) -> f64 {
        let (a, m) = (self.gin[g] as usize, self.gopen[g] as usize);
        (a..=a + m)
            .map(|k| self.inst.group_wire_usd(k))
            .fold(f64::INFINITY, f64::min)
    }

    fn bound(&self, k: usize) -> f64 {
        let n = self.x.len();
        let fx = if self.vcount == 0 {
            0.0
        } else {
            (0..self.vcount)
                .map(|v| self.vp[v] + self.suffix[v * (n + 1) + k])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        self.deferral + self.wire_lb + fx
    }

    fn leaf_cost(&self) -> f64 {
        let wire: f64 = (0..self.gin.len())
            .map(|g| self.inst.group_wire_usd(self.gin[g] as usize))
            .sum();
        let fx = match self.inst.fx().dual_vertices() {
            Some(_) => self.vp.iter().copied().fold(0.0, f64::max),
            None => self.inst.fx().min_cost_flow(&self.pos).0,
        };
        self.deferral + wire + fx
    }

    /// Decides transaction t; returns false (and changes nothing) when the
    /// decision is infeasible.
    fn decide(&mut self, t: usize, settle: bool) -> bool {
        let inst = self.inst;
        let tx = &inst.transactions[t];
        let nc = inst.currencies.len();
        let ds = tx.debtor as usize * nc + tx.send as usize;
        let cs = tx.creditor as usize * nc + tx.receive as usize;
        let c = tx.creditor as usize;
        if settle {
            if self.opt_bal[ds] - (tx.amount as i128) < 0
                || self.used[c] + inst.receive_usd_fixed[t] > inst.limit_fixed[c]
            {
                return false;
            }
        } else if self.opt_bal[cs] - (tx.receive_amount as i128) < 0 {
            return false;
        }
        let g = inst.group_of(t);
        let before = self.group_lb(g);
        self.gopen[g] -= 1;
        if settle {
            self.opt_bal[ds] -= tx.amount as i128;
            self.used[c] += inst.receive_usd_fixed[t];
            self.gin[g] += 1;
            self.x[t] = true;
            self.shift(t, 1.0);
        } else {
            self.opt_bal[cs] -= tx.receive_amount as i128;
            self.deferral += inst.defer_usd(t);
        }
        self.wire_lb += self.group_lb(g) - before;
        true
    }

    fn undo(&mut self, t: usize, settle: bool) {
        let inst = self.inst;
        let tx = &inst.transactions[t];
        let nc = inst.currencies.len();
        let ds = tx.debtor as usize * nc + tx.send as usize;
        let cs = tx.creditor as usize * nc + tx.receive as usize;
        let g = inst.group_of(t);
        let before = self.group_lb(g);
        if settle {
            self.opt_bal[ds] += tx.amount as i128;
            self.used[tx.creditor as usize] -= inst.receive_usd_fixed[t];
            self.gin[g] -= 1;
            self.x[t] = false;
            self.shift(t, -1.0);
        } else {
            self.opt_bal[cs] += tx.receive_amount as i128;
            self.deferral -= inst.defer_usd(t);
        }
        self.gopen[g] += 1;
        self.wire_lb += self.group_lb(g) - before;
    }

    fn shift(&mut self, t: usize, sign: f64) {
        let tx = &self.inst.transactions[t];
        if tx.send == tx.receive {
            return;
        }
        let usd = sign * self.inst.value_usd(t);
        self.pos[tx.send as usize] += usd;
        self.pos[tx.receive as usize] -= usd;
        if let Some(dv) = self.inst.fx().dual_vertices() {
            let (cs, cr) = (
                &dv.columns[tx.send as usize],
                &dv.columns[tx.receive as usize],
            );
            for ((vp, a), b) in self.vp.iter_mut().zip(cs).zip(cr) {
                *vp += usd * (a - b);
            }
        }
    }

    fn dfs(&mut self, k: usize) {
        self.nodes += 1;
        if self.nodes > self.nodes_max {
            return;
        }
        // Relative slack so that float noise never prunes the optimum.
        let slack = if self.best_cost.is_finite() {
            1e-9 * self.best_cost.abs().max(1.0)
        } else {
            0.0
        };
        if self.bound(k) >= self.best_cost - slack {
            return;
        }
        if k == self.order.len() {
            let cost = self.leaf_cost();
            if cost < self.best_cost - slack {
                self.best_cost = cost;
                self.best = Some(self.x.clone());
            }
            return;
        }
        let t = self.order[k];
        let tx = &self.inst.transactions[t];
        let alone = self.inst.value_usd(t) * self.inst.fx().dist(tx.send, tx.receive);
        let first = self.inst.defer_usd(t) > alone;
        for settle in [first, !first] {
            if self.decide(t, settle) {
                self.dfs(k + 1);
                self.undo(t, settle);
            }
        }
    }
}
