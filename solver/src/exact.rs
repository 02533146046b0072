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
    let none = vec![false; n];
    let start = incumbent.unwrap_or(&none);
    debug_assert!(crate::solution::is_feasible(inst, start));
    let free: Vec<usize> = (0..n).collect();
    let mut base = OwnedBase::of(inst, start);
    let mut bb = Bb::new(inst, base.view(start), &free, limits.nodes_max, usize::MAX);
    if incumbent.is_some() {
        bb.best_cost = price(inst, start).cost.total;
    }
    bb.run();
    if !bb.completed() {
        return None;
    }
    let mut best = start.to_vec();
    match bb.best_moves() {
        Some(moves) => {
            for (t, settle) in moves {
                best[t] = settle;
            }
        }
        // No better assignment than the incumbent (or none at all).
        None if incumbent.is_none() => return None,
        None => {}
    }
    Some(price(inst, &best))
}

/// A feasible assignment with its running sums: what the branch and bound
/// starts from. The optimiser keeps these up to date; exact mode computes
/// them once ([`OwnedBase::of`]).
pub(crate) struct Base<'b> {
    pub x: &'b [bool],
    /// Balances, limit use and group counts of `x`: borrowed, changed for
    /// the search and restored exactly when the search is dropped (no copy
    /// per neighbourhood).
    pub bal: &'b mut [i128],
    pub used: &'b mut [i128],
    pub gn: &'b mut [u32],
    /// Scratch per group: all zero on entry, all zero again after the drop.
    pub gopen: &'b mut [u32],
    pub pos: &'b [f64],
    /// The dual vertices' values at `pos`, when the caller keeps them.
    pub vp: Option<&'b [f64]>,
    pub deferral: f64,
    pub wire: f64,
}

pub(crate) struct OwnedBase {
    bal: Vec<i128>,
    used: Vec<i128>,
    gn: Vec<u32>,
    gopen: Vec<u32>,
    pos: Vec<f64>,
    deferral: f64,
    wire: f64,
}

impl OwnedBase {
    pub(crate) fn of(inst: &Instance, x: &[bool]) -> OwnedBase {
        let nc = inst.currencies.len();
        let mut bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
        for p in &inst.participants {
            bal.extend(p.balances.iter().map(|&b| b as i128));
        }
        let mut used = vec![0i128; inst.participants.len()];
        let mut gn = vec![0u32; inst.group_count()];
        let mut pos = vec![0.0f64; nc];
        let mut deferral = 0.0;
        for (t, tx) in inst.transactions.iter().enumerate() {
            if x[t] {
                bal[tx.debtor as usize * nc + tx.send as usize] -= tx.amount as i128;
                bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
                used[tx.creditor as usize] += inst.receive_usd_fixed[t];
                gn[inst.group_of(t)] += 1;
                if tx.send != tx.receive {
                    pos[tx.send as usize] += inst.value_usd(t);
                    pos[tx.receive as usize] -= inst.value_usd(t);
                }
            } else {
                deferral += inst.defer_usd(t);
            }
        }
        let wire = gn.iter().map(|&k| inst.group_wire_usd(k as usize)).sum();
        OwnedBase {
            bal,
            used,
            gopen: vec![0; gn.len()],
            gn,
            pos,
            deferral,
            wire,
        }
    }

    pub(crate) fn view<'b>(&'b mut self, x: &'b [bool]) -> Base<'b> {
        Base {
            x,
            bal: &mut self.bal,
            used: &mut self.used,
            gn: &mut self.gn,
            gopen: &mut self.gopen,
            pos: &self.pos,
            vp: None,
            deferral: self.deferral,
            wire: self.wire,
        }
    }
}

/// Branch and bound over the `free` transactions, every other one fixed as
/// in the base assignment. Used whole by exact mode and on small
/// neighbourhoods by the optimiser.
pub(crate) struct Bb<'a, 'b> {
    inst: &'a Instance,
    /// Free transactions in decision order: most expensive to defer first.
    order: Vec<usize>,
    /// Decision per position of `order`.
    x_free: Vec<bool>,
    /// The dual vertices the bound uses (all of them, or the most promising).
    sub: Vec<usize>,
    /// `suffix[i * (m + 1) + k]`: Σ over order[k..] of min(defer, v_i·δ).
    suffix: Vec<f64>,
    /// `vp_sub[i]`: vertex `sub[i]` dotted with `pos`.
    vp_sub: Vec<f64>,

    /// Whether `sub` holds every vertex that can be the maximum at a leaf.
    leaf_on_sub: bool,
    /// Otherwise: every vertex's value at the root, so that a leaf computes
    /// only the vertices that can still be the maximum.
    vp_root: Vec<f64>,
    /// Σ value * dist over settled free transactions: how far any vertex's
    /// value can have moved from the root.
    reach: f64,
    /// The base assignment (for restoring the borrowed arrays).
    x_base: &'b [bool],
    /// Balance with every open credit counted in: must stay >= 0.
    opt_bal: &'b mut [i128],
    used: &'b mut [i128],
    /// Settled and open members per group.
    gin: &'b mut [u32],
    gopen: &'b mut [u32],
    /// Σ_g least wire cost over reachable sizes, kept up to date; exact once
    /// every free transaction is decided.
    wire_lb: f64,
    deferral: f64,
    pos: Vec<f64>,
    best: Option<Vec<bool>>,
    pub(crate) best_cost: f64,
    nodes: u64,
    nodes_max: u64,
}

impl<'a, 'b> Bb<'a, 'b> {
    /// `vertices_max`: how many dual vertices the bound may use (a subset
    /// gives a weaker but cheaper bound; leaves are always priced exactly).
    pub(crate) fn new(
        inst: &'a Instance,
        base: Base<'b>,
        free: &[usize],
        nodes_max: u64,
        vertices_max: usize,
    ) -> Bb<'a, 'b> {
        let nc = inst.currencies.len();
        let mut order: Vec<usize> = free.to_vec();
        order.sort_by(|&a, &b| {
            inst.defer_usd(b)
                .total_cmp(&inst.defer_usd(a))
                .then(a.cmp(&b))
        });
        let Base {
            x: x_base,
            bal: opt_bal,
            used,
            gn: gin,
            gopen,
            pos: base_pos,
            vp: base_vp,
            deferral: base_deferral,
            wire: base_wire,
        } = base;
        debug_assert!(gopen.iter().all(|&g| g == 0), "scratch starts zeroed");
        let mut pos = base_pos.to_vec();
        let mut wire_untouched = base_wire;
        let mut deferral = base_deferral;
        let mut touched: Vec<usize> = Vec::with_capacity(order.len());
        // Take the free transactions out of the base: open, credits counted.
        for &t in &order {
            let tx = &inst.transactions[t];
            let ds = tx.debtor as usize * nc + tx.send as usize;
            let cs = tx.creditor as usize * nc + tx.receive as usize;
            let g = inst.group_of(t);
            if !touched.contains(&g) {
                touched.push(g);
                wire_untouched -= inst.group_wire_usd(gin[g] as usize);
            }
            if x_base[t] {
                opt_bal[ds] += tx.amount as i128;
                used[tx.creditor as usize] -= inst.receive_usd_fixed[t];
                gin[g] -= 1;
                if tx.send != tx.receive {
                    pos[tx.send as usize] -= inst.value_usd(t);
                    pos[tx.receive as usize] += inst.value_usd(t);
                }
            } else {
                deferral -= inst.defer_usd(t);
                opt_bal[cs] += tx.receive_amount as i128;
            }
            gopen[g] += 1;
        }
        let m = order.len();
        // The vertices that can still be the FX maximum: the free decisions
        // move each vertex's value by at most R = Σ value * dist, so only
        // vertices within 2R of the root maximum matter (exact, not a guess).
        let mut vp_root = Vec::new();
        let (sub, suffix, vp_sub, leaf_on_sub) = match inst.fx().dual_vertices() {
            None => (Vec::new(), Vec::new(), Vec::new(), false),
            Some(dv) => {
                let dot = |v: usize| -> f64 {
                    dv.columns.iter().zip(&pos).map(|(col, p)| col[v] * p).sum()
                };
                let reach_of = |t: usize| {
                    let tx = &inst.transactions[t];
                    inst.value_usd(t) * inst.fx().dist(tx.send, tx.receive)
                };
                let reach: f64 = order.iter().map(|&t| reach_of(t)).sum();
                // With the caller's current dual values: taking the free
                // payments out moved each vertex by at most `removed`, so a
                // vertex far below the current maximum can matter neither
                // to the bound nor at a leaf; it is left at -inf, uncomputed.
                let vp_all: Vec<f64> = match base_vp {
                    Some(now) => {
                        let removed: f64 = order
                            .iter()
                            .filter(|&&t| x_base[t])
                            .map(|&t| reach_of(t))
                            .sum();
                        let max_now = now.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let floor = max_now - 2.0 * (reach + removed) * (1.0 + 1e-6) - 1e-6;
                        now.iter()
                            .enumerate()
                            .map(|(v, &x)| {
                                if x >= floor {
                                    dot(v)
                                } else {
                                    f64::NEG_INFINITY
                                }
                            })
                            .collect()
                    }
                    None => (0..dv.count).map(dot).collect(),
                };
                let top = vp_all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let floor = top - 2.0 * reach * (1.0 + 1e-6) - 1e-6;
                let mut sub: Vec<usize> = (0..dv.count).filter(|&v| vp_all[v] >= floor).collect();
                let mut leaf_on_sub = true;
                if sub.len() > vertices_max {
                    // Too many to track: bound with the most binding ones,
                    // price leaves over all vertices.
                    // The highest by root value (a linear selection, not a sort).
                    let key = |v: &usize| -vp_all[*v];
                    sub.select_nth_unstable_by(vertices_max - 1, |a, b| {
                        key(a).total_cmp(&key(b)).then(a.cmp(b))
                    });
                    sub.truncate(vertices_max);
                    sub.sort_unstable();
                    leaf_on_sub = false;
                    vp_root = vp_all.clone();
                }
                let mut suffix = vec![0.0; sub.len() * (m + 1)];
                for (i, &v) in sub.iter().enumerate() {
                    for k in (0..m).rev() {
                        let t = order[k];
                        let tx = &inst.transactions[t];
                        let vd = inst.value_usd(t)
                            * (dv.columns[tx.send as usize][v]
                                - dv.columns[tx.receive as usize][v]);
                        suffix[i * (m + 1) + k] =
                            suffix[i * (m + 1) + k + 1] + inst.defer_usd(t).min(vd);
                    }
                }
                let vp_sub = sub.iter().map(|&v| vp_all[v]).collect();
                (sub, suffix, vp_sub, leaf_on_sub)
            }
        };
        let mut bb = Bb {
            inst,
            order,
            x_free: vec![false; m],
            sub,
            suffix,
            vp_sub,
            leaf_on_sub,
            vp_root,
            reach: 0.0,
            x_base,
            opt_bal,
            used,
            gin,
            gopen,
            wire_lb: 0.0,
            deferral,
            pos,
            best: None,
            best_cost: f64::INFINITY,
            nodes: 0,
            nodes_max,
        };
        bb.wire_lb = wire_untouched + touched.iter().map(|&g| bb.group_lb(g)).sum::<f64>();
        bb
    }

    /// Searches; afterwards [`Bb::best_moves`] holds the best found.
    pub(crate) fn run(&mut self) {
        self.dfs(0);
    }

    /// Nodes visited so far.
    pub(crate) fn nodes(&self) -> u64 {
        self.nodes
    }

    /// Whether the search finished within its node limit (so the best found
    /// is optimal for the free transactions).
    pub(crate) fn completed(&self) -> bool {
        self.nodes <= self.nodes_max
    }

    /// The decisions of the best assignment found, if it beat `best_cost`
    /// as first set.
    pub(crate) fn best_moves(&self) -> Option<Vec<(usize, bool)>> {
        let best = self.best.as_ref()?;
        Some(
            self.order
                .iter()
                .copied()
                .zip(best.iter().copied())
                .collect(),
        )
    }

    fn group_lb(&self, g: usize) -> f64 {
        let (a, m) = (self.gin[g] as usize, self.gopen[g] as usize);
        if self.inst.max_batch_size >= 3 {
            // Wire cost is 0, w, then w(1-d) per batch: non-decreasing from 2.
            return match a {
                0 => 0.0,
                1 if m >= 1 => self.inst.group_wire_usd(2),
                _ => self.inst.group_wire_usd(a),
            };
        }
        (a..=a + m)
            .map(|k| self.inst.group_wire_usd(k))
            .fold(f64::INFINITY, f64::min)
    }

    /// FX duality with each open payment charged min(deferral, v·δ), plus
    /// the deferral and wire costs already fixed.
    fn bound(&self, k: usize) -> f64 {
        let m1 = self.order.len() + 1;
        let fx = if self.sub.is_empty() {
            0.0
        } else {
            self.vp_sub
                .iter()
                .enumerate()
                .map(|(i, vp)| vp + self.suffix[i * m1 + k])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        self.deferral + self.wire_lb + fx
    }

    fn leaf_cost(&self) -> f64 {
        let mut fx = self.vp_sub.iter().copied().fold(0.0, f64::max);
        if !self.leaf_on_sub {
            match self.inst.fx().dual_vertices() {
                Some(dv) => {
                    let reach = self.reach * (1.0 + 1e-9) + 1e-9;
                    for (v, &root) in self.vp_root.iter().enumerate() {
                        if root + reach <= fx {
                            continue;
                        }
                        let value: f64 = dv
                            .columns
                            .iter()
                            .zip(&self.pos)
                            .map(|(col, p)| col[v] * p)
                            .sum();
                        fx = fx.max(value);
                    }
                }
                None => fx = self.inst.fx().min_cost_flow(&self.pos).0,
            }
        }
        self.deferral + self.wire_lb + fx
    }

    /// Decides position k; returns false (and changes nothing) when the
    /// decision is infeasible.
    fn decide(&mut self, k: usize, settle: bool) -> bool {
        let inst = self.inst;
        let t = self.order[k];
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
            self.x_free[k] = true;
            self.shift(t, 1.0);
        } else {
            self.opt_bal[cs] -= tx.receive_amount as i128;
            self.deferral += inst.defer_usd(t);
        }
        self.wire_lb += self.group_lb(g) - before;
        true
    }

    fn undo(&mut self, k: usize, settle: bool) {
        let inst = self.inst;
        let t = self.order[k];
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
            self.x_free[k] = false;
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
        self.reach += sign * self.inst.value_usd(t) * self.inst.fx().dist(tx.send, tx.receive);
        if let Some(dv) = self.inst.fx().dual_vertices() {
            let (cs, cr) = (
                &dv.columns[tx.send as usize],
                &dv.columns[tx.receive as usize],
            );
            for (vp, &v) in self.vp_sub.iter_mut().zip(&self.sub) {
                *vp += usd * (cs[v] - cr[v]);
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
                self.best = Some(self.x_free.clone());
            }
            return;
        }
        let t = self.order[k];
        let tx = &self.inst.transactions[t];
        let alone = self.inst.value_usd(t) * self.inst.fx().dist(tx.send, tx.receive);
        let first = self.inst.defer_usd(t) > alone;
        for settle in [first, !first] {
            if self.decide(k, settle) {
                self.dfs(k + 1);
                self.undo(k, settle);
            }
        }
    }
}

impl Drop for Bb<'_, '_> {
    /// Puts the borrowed arrays back as the base had them: every decision is
    /// undone by the search itself, so only the free transactions' removal
    /// from the base is reverted here.
    fn drop(&mut self) {
        let inst = self.inst;
        let nc = inst.currencies.len();
        for &t in &self.order {
            let tx = &inst.transactions[t];
            let ds = tx.debtor as usize * nc + tx.send as usize;
            let cs = tx.creditor as usize * nc + tx.receive as usize;
            let g = inst.group_of(t);
            if self.x_base[t] {
                self.opt_bal[ds] -= tx.amount as i128;
                self.used[tx.creditor as usize] += inst.receive_usd_fixed[t];
                self.gin[g] += 1;
            } else {
                self.opt_bal[cs] -= tx.receive_amount as i128;
            }
            self.gopen[g] -= 1;
        }
    }
}
