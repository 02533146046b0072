//! Large-neighbourhood search with exact sub-problems: free the payments
//! around one binding balance (and the balances they reach, breadth first),
//! fix every other payment at the incumbent, and solve what is left as the
//! contract's mixed-integer program (`solver/reference`'s model restricted
//! to the free payments) by LP-based branch and bound (`microlp`, pure
//! Rust). The LP relaxation with the rest fixed is what the local moves
//! lack: it sees a circulation through a hub as one trade-off, so the
//! branch and bound can rebuild one that no sequence of improving single
//! moves reaches.
//!
//! The sub-problem is solved in floating point; its answer is only a
//! proposal. It replaces the incumbent only when the exact feasibility
//! check (`is_feasible`, integer arithmetic) accepts it and the exact coster
//! (`price`) finds it strictly cheaper.

use std::collections::VecDeque;
use std::time::Instant;

use microlp::{ComparisonOp, LinearExpr, OptimizationDirection, Problem, Variable};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::solution::{is_feasible, price};
use crate::Instance;

/// FX flows and positions in thousands of USD: keeps the currency rows'
/// coefficients near the others (as in `solver/reference`).
const FX_UNIT_USD: f64 = 1_000.0;

/// Balance and limit rows are tightened by this fraction of their scale
/// (where the incumbent's slack allows), so that an LP answer within the
/// LP's tolerance (1e-7 of the row) is exactly feasible too.
const ROW_MARGIN: f64 = 2e-7;

/// A proposal must beat the incumbent by more than this (USD), exactly
/// priced, to replace it.
const ACCEPT_EPS_USD: f64 = 1e-6;

/// Balances tried as seeds per round: the most blocked first.
const SEEDS_PER_ROUND_MAX: usize = 24;

/// A payment is in the relaxation-induced neighbourhood when its LP share
/// is at least this far from the incumbent's 0 or 1.
const RINS_DISAGREEMENT_MIN: f64 = 0.05;

/// Rounds over the seeds, at most.
const ROUNDS_MAX: usize = 50;

/// Rounds in a row that improve nothing before the search ends.
const STALE_ROUNDS_MAX: usize = 3;

/// Seed of the noisy neighbourhoods' random stream: fixed, so a solve
/// depends on its input only.
const LNS_SEED: u64 = 0x1a5_0e8c;

/// Work limits of one LNS run (all counts, never a clock: the result
/// depends on the input only unless the deadline cuts it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LnsLimits {
    /// Sub-problems solved at most, over the whole run.
    pub subproblems_max: usize,
    /// Free payments per sub-problem.
    pub free_max: usize,
    /// Branch-and-bound nodes per sub-problem (microlp's node limit).
    pub nodes_max: u64,
    /// Whether each round opens with the relaxation-induced neighbourhood.
    pub relaxation: bool,
    /// Whether the third round takes whole wire groups.
    pub groups: bool,
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LnsReport {
    pub subproblems: usize,
    pub improved: usize,
    /// Sub-problems microlp could not solve (numerical trouble): skipped.
    pub failed: usize,
    /// Proposals the exact check refused (infeasible or not cheaper).
    pub refused: usize,
    /// Sub-problems microlp proved optimal (the rest hit the node limit).
    pub proven: usize,
    /// Branch-and-bound nodes, over all sub-problems.
    pub nodes: u64,
    /// Improvements from the relaxation-induced neighbourhood.
    pub rins_improved: usize,
}

/// Why a sub-problem gave no proposal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubproblemError {
    #[error("microlp: {0}")]
    Lp(#[from] microlp::Error),
    #[error("the node limit or deadline came before any solution")]
    Interrupted,
}

/// Improves `settled` (feasible) in place by exact sub-problems until
/// [`STALE_ROUNDS_MAX`] rounds in a row improve nothing, the work limits
/// are spent or `deadline` passes.
pub(crate) fn improve(
    inst: &Instance,
    settled: &mut Vec<bool>,
    deadline: Instant,
    limits: &LnsLimits,
) -> LnsReport {
    assert!(is_feasible(inst, settled), "the LNS starts feasible");
    let mut report = LnsReport::default();
    let mut total = price(inst, settled).cost.total;
    let mut tried: Vec<Vec<u32>> = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(LNS_SEED ^ inst.transactions.len() as u64);
    let touching = touching_slots(inst);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); inst.group_count()];
    for t in 0..inst.transactions.len() {
        members[inst.group_of(t)].push(t as u32);
    }
    let lp = if limits.relaxation {
        lp_relaxation(inst, deadline).ok()
    } else {
        None
    };
    let mut stale = 0;
    'rounds: for round in 0..ROUNDS_MAX {
        let before = report.improved;
        let seeds = seed_slots(inst, settled);
        // First round: the plain breadth-first neighbourhoods; then pairs of
        // blocked balances; then noisy weights (a fixed-seed stream).
        let kind = match (round, limits.groups) {
            (0, _) => Kind::Plain,
            (1, _) => Kind::Pair,
            (2, true) => Kind::Groups,
            _ => Kind::Noisy,
        };
        // Each round opens with the relaxation-induced neighbourhood: the
        // payments whose LP share disagrees most with the incumbent.
        let rins = lp
            .as_deref()
            .map(|lp| rins_neighbourhood(settled, lp, limits.free_max));
        let plain = seeds.iter().enumerate().map(|(i, &seed)| {
            let partner = seeds.get((i + 1 + round) % seeds.len().max(1)).copied();
            (seed, partner)
        });
        for (step, (seed, partner)) in rins
            .iter()
            .map(|_| (usize::MAX, None))
            .chain(plain)
            .enumerate()
        {
            if report.subproblems >= limits.subproblems_max || Instant::now() >= deadline {
                break 'rounds;
            }
            let free = if seed == usize::MAX {
                debug_assert_eq!(step, 0);
                rins.clone().unwrap_or_default()
            } else {
                let shape = Shape {
                    partner: partner.filter(|_| kind == Kind::Pair),
                    noise: (kind == Kind::Noisy).then_some(&mut rng),
                    groups: (kind == Kind::Groups).then_some(&members),
                };
                neighbourhood(inst, &touching, settled, seed, shape, limits.free_max)
            };
            if free.is_empty() {
                continue;
            }
            // The same neighbourhood around the same incumbent gives the same
            // answer: skip it (cleared whenever the incumbent moves).
            if tried.contains(&free) {
                continue;
            }
            report.subproblems += 1;
            let proposal = match solve_subproblem(inst, settled, &free, deadline, limits.nodes_max)
            {
                Ok((x, proven, nodes)) => {
                    report.proven += usize::from(proven);
                    report.nodes += nodes;
                    x
                }
                Err(_) => {
                    report.failed += 1;
                    tried.push(free);
                    continue;
                }
            };
            if proposal == *settled || !is_feasible(inst, &proposal) {
                report.refused += usize::from(proposal != *settled);
                tried.push(free);
                continue;
            }
            let cost = price(inst, &proposal).cost.total;
            if cost < total - ACCEPT_EPS_USD {
                total = cost;
                *settled = proposal;
                report.improved += 1;
                report.rins_improved += usize::from(seed == usize::MAX);
                tried.clear();
            } else {
                report.refused += 1;
                tried.push(free);
            }
        }
        if report.improved == before {
            stale += 1;
            if stale >= STALE_ROUNDS_MAX {
                break;
            }
        } else {
            stale = 0;
        }
    }
    assert!(is_feasible(inst, settled), "the LNS keeps feasibility");
    report
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Pair,
    /// Whole groups: a payment comes in with its (creditor, currency)
    /// group, so opening or closing a wire is one decision.
    Groups,
    Noisy,
}

/// How a neighbourhood grows beyond the plain breadth-first one.
struct Shape<'r> {
    /// A second balance to start from.
    partner: Option<usize>,
    /// Weights times a draw in [0.25, 1.75).
    noise: Option<&'r mut ChaCha8Rng>,
    /// Members per group: each payment taken brings its group along.
    groups: Option<&'r Vec<Vec<u32>>>,
}

/// Balances ranked by what the incumbent leaves blocked there: the deferral
/// price of the deferred payments debiting them (a binding hub first).
/// Only slots with a deferred debit.
fn seed_slots(inst: &Instance, settled: &[bool]) -> Vec<usize> {
    let nc = inst.currencies.len();
    let mut blocked = vec![0.0f64; inst.slot_count()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        if !settled[t] {
            blocked[tx.debtor as usize * nc + tx.send as usize] += inst.defer_usd(t);
        }
    }
    let mut slots: Vec<usize> = (0..blocked.len()).filter(|&s| blocked[s] > 0.0).collect();
    slots.sort_by(|&a, &b| blocked[b].total_cmp(&blocked[a]).then(a.cmp(&b)));
    slots.truncate(SEEDS_PER_ROUND_MAX);
    slots
}

/// The `free_max` payments whose share in the LP relaxation `lp` differs
/// most from the incumbent (at least [`RINS_DISAGREEMENT_MIN`]): where the
/// relaxation points away from it. Sorted by index.
fn rins_neighbourhood(settled: &[bool], lp: &[f64], free_max: usize) -> Vec<u32> {
    let gap = |t: usize| (lp[t] - f64::from(u8::from(settled[t]))).abs();
    let mut list: Vec<u32> = (0..settled.len() as u32)
        .filter(|&t| gap(t as usize) >= RINS_DISAGREEMENT_MIN)
        .collect();
    list.sort_by(|&a, &b| gap(b as usize).total_cmp(&gap(a as usize)).then(a.cmp(&b)));
    list.truncate(free_max);
    list.sort_unstable();
    list
}

/// Per balance slot, the payments debiting or crediting it.
fn touching_slots(inst: &Instance) -> Vec<Vec<u32>> {
    let nc = inst.currencies.len();
    let mut touching: Vec<Vec<u32>> = vec![Vec::new(); inst.slot_count()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        let d = tx.debtor as usize * nc + tx.send as usize;
        let c = tx.creditor as usize * nc + tx.receive as usize;
        touching[d].push(t as u32);
        if c != d {
            touching[c].push(t as u32);
        }
    }
    touching
}

/// The payments around `seed` (and the shape's partner), breadth first
/// over balances: every payment debiting or crediting a balance (the
/// heaviest first: a deferred one weighs its deferral price, a settled one
/// a ten-thousandth of its value), then those of the balances at their
/// other ends, until `free_max`. Sorted by index.
fn neighbourhood(
    inst: &Instance,
    touching: &[Vec<u32>],
    settled: &[bool],
    seed: usize,
    shape: Shape<'_>,
    free_max: usize,
) -> Vec<u32> {
    let Shape {
        partner,
        mut noise,
        groups,
    } = shape;
    let nc = inst.currencies.len();
    let slots = inst.slot_count();
    let mut weight = vec![0.0f64; inst.transactions.len()];
    for (t, w) in weight.iter_mut().enumerate() {
        *w = if settled[t] {
            inst.value_usd(t) * 1e-4
        } else {
            inst.defer_usd(t)
        };
        if let Some(rng) = noise.as_deref_mut() {
            *w *= rng.gen_range(0.25..1.75);
        }
    }
    let mut taken = vec![false; inst.transactions.len()];
    let mut seen = vec![false; slots];
    let mut queue = VecDeque::from([seed]);
    seen[seed] = true;
    if let Some(p) = partner.filter(|&p| p != seed) {
        queue.push_back(p);
        seen[p] = true;
    }
    // With a partner, each of the two first gets half the room.
    let first_share = if queue.len() == 2 {
        free_max / 2
    } else {
        free_max
    };
    let mut free: Vec<u32> = Vec::with_capacity(free_max);
    let mut popped = 0;
    while let Some(s) = queue.pop_front() {
        popped += 1;
        let cap = if popped == 1 { first_share } else { free_max };
        let mut list = touching[s].clone();
        list.sort_by(|&a, &b| {
            weight[b as usize]
                .total_cmp(&weight[a as usize])
                .then(a.cmp(&b))
        });
        for t in list {
            if free.len() >= cap {
                break;
            }
            if taken[t as usize] {
                continue;
            }
            let mates: &[u32] = match groups {
                Some(g) => &g[inst.group_of(t as usize)],
                None => std::slice::from_ref(&t),
            };
            for &u in std::iter::once(&t).chain(mates) {
                if taken[u as usize] || free.len() >= free_max {
                    continue;
                }
                taken[u as usize] = true;
                free.push(u);
                let tx = &inst.transactions[u as usize];
                for other in [
                    tx.debtor as usize * nc + tx.send as usize,
                    tx.creditor as usize * nc + tx.receive as usize,
                ] {
                    if !seen[other] {
                        seen[other] = true;
                        queue.push_back(other);
                    }
                }
            }
        }
        if free.len() >= free_max {
            break;
        }
    }
    free.sort_unstable();
    free
}

/// The contract's program over the `free` payments, every other payment
/// fixed at `settled`; returns the whole assignment microlp proposes (not
/// yet checked).
fn solve_subproblem(
    inst: &Instance,
    settled: &[bool],
    free: &[u32],
    deadline: Instant,
    nodes_max: u64,
) -> Result<(Vec<bool>, bool, u64), SubproblemError> {
    let (m, x, hint) = build_model(inst, settled, free, false);
    let left = deadline.saturating_duration_since(Instant::now());
    let mut options = microlp::SolveOptions::default();
    options.time_limit = Some(left);
    options.node_limit = Some(nodes_max);
    options.warm_start = Some(hint);
    let outcome = m.solve_with(options)?;
    let Some(sol) = outcome.solution() else {
        return Err(SubproblemError::Interrupted);
    };
    let mut proposal = settled.to_vec();
    for (&t, &v) in free.iter().zip(&x) {
        proposal[t as usize] = sol.var_value(v) > 0.5;
    }
    let proven = outcome.is_optimal();
    Ok((proposal, proven, outcome.stats().nodes_solved))
}

/// The LP relaxation of the whole program (every payment free, settled in
/// any share from 0 to 1, batches fractional): each payment's share, the
/// guide of the relaxation-induced neighbourhoods.
fn lp_relaxation(inst: &Instance, deadline: Instant) -> Result<Vec<f64>, SubproblemError> {
    let n = inst.transactions.len();
    let free: Vec<u32> = (0..n as u32).collect();
    let none = vec![false; n];
    let (m, x, _) = build_model(inst, &none, &free, true);
    let mut options = microlp::SolveOptions::default();
    options.time_limit = Some(deadline.saturating_duration_since(Instant::now()));
    let outcome = m.solve_with(options)?;
    let Some(sol) = outcome.solution() else {
        return Err(SubproblemError::Interrupted);
    };
    Ok(x.iter().map(|&v| sol.var_value(v)).collect())
}

/// The program over `free` with the rest fixed at `settled` (`relax`: its
/// LP relaxation), its `x` per free payment and a start at `settled`.
fn build_model(
    inst: &Instance,
    settled: &[bool],
    free: &[u32],
    relax: bool,
) -> (Problem, Vec<Variable>, Vec<(Variable, f64)>) {
    let nc = inst.currencies.len();
    let mut is_free = vec![false; inst.transactions.len()];
    for &t in free {
        is_free[t as usize] = true;
    }
    // What the fixed payments leave: balances, limit use, FX positions,
    // settled members per group.
    let mut bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
    for p in &inst.participants {
        bal.extend(p.balances.iter().map(|&b| b as i128));
    }
    let mut used = vec![0i128; inst.participants.len()];
    let mut pos = vec![0i128; nc];
    let mut fixed_members = vec![0usize; inst.group_count()];
    let mut members = vec![0usize; inst.group_count()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        members[inst.group_of(t)] += 1;
        if !settled[t] || is_free[t] {
            continue;
        }
        bal[tx.debtor as usize * nc + tx.send as usize] -= tx.amount as i128;
        bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
        used[tx.creditor as usize] += inst.receive_usd_fixed[t];
        if tx.send != tx.receive {
            pos[tx.send as usize] += inst.send_usd_fixed[t];
            pos[tx.receive as usize] -= inst.send_usd_fixed[t];
        }
        fixed_members[inst.group_of(t)] += 1;
    }
    let mut m = Problem::new(OptimizationDirection::Minimize);
    let x: Vec<Variable> = free
        .iter()
        .map(|&t| {
            let defer = -inst.defer_usd(t as usize);
            if relax {
                m.add_var(defer, (0.0, 1.0))
            } else {
                m.add_binary_var(defer)
            }
        })
        .collect();
    add_balance_rows(&mut m, inst, settled, free, &x, &bal);
    add_limit_rows(&mut m, inst, settled, free, &x, &used);
    let mut hint: Vec<(Variable, f64)> = free
        .iter()
        .zip(&x)
        .map(|(&t, &v)| (v, f64::from(u8::from(settled[t as usize]))))
        .collect();
    let fixed = GroupFix {
        fixed_members: &fixed_members,
        members: &members,
        relax,
    };
    add_group_rows(&mut m, inst, settled, free, &x, &fixed, &mut hint);
    let unit = 10f64.powi(inst.usd_scale);
    let pos: Vec<f64> = pos.iter().map(|&v| v as f64 / unit).collect();
    add_fx_rows(&mut m, inst, free, &x, &pos);
    (m, x, hint)
}

/// Per group: settled members fixed outside the sub-problem, all members,
/// and whether batch counts are relaxed.
struct GroupFix<'a> {
    fixed_members: &'a [usize],
    members: &'a [usize],
    relax: bool,
}

/// Per balance a free payment touches: what the fixed payments leave plus
/// the free ones' debits and credits stays non-negative.
fn add_balance_rows(
    m: &mut Problem,
    inst: &Instance,
    settled: &[bool],
    free: &[u32],
    x: &[Variable],
    bal: &[i128],
) {
    let nc = inst.currencies.len();
    // (slot, index into free, coefficient in minor units), merged below.
    let mut terms: Vec<(usize, usize, i128)> = Vec::with_capacity(2 * free.len());
    for (i, &t) in free.iter().enumerate() {
        let tx = &inst.transactions[t as usize];
        terms.push((
            tx.debtor as usize * nc + tx.send as usize,
            i,
            -(tx.amount as i128),
        ));
        terms.push((
            tx.creditor as usize * nc + tx.receive as usize,
            i,
            tx.receive_amount as i128,
        ));
    }
    terms.sort_unstable();
    let mut start = 0;
    while start < terms.len() {
        let slot = terms[start].0;
        let mut end = start;
        while end < terms.len() && terms[end].0 == slot {
            end += 1;
        }
        let mut row: Vec<(usize, i128)> = Vec::with_capacity(end - start);
        for &(_, i, c) in &terms[start..end] {
            match row.last_mut() {
                Some((j, acc)) if *j == i => *acc += c,
                _ => row.push((i, c)),
            }
        }
        start = end;
        // Non-negative whatever the free payments do: no row needed.
        let lowest: i128 = bal[slot] + row.iter().map(|&(_, c)| c.min(0)).sum::<i128>();
        if lowest >= 0 {
            continue;
        }
        let incumbent: i128 = bal[slot]
            + row
                .iter()
                .filter(|&&(i, _)| settled[free[i] as usize])
                .map(|&(_, c)| c)
                .sum::<i128>();
        debug_assert!(incumbent >= 0, "the incumbent is feasible");
        let scale = row
            .iter()
            .map(|&(_, c)| c.unsigned_abs() as f64)
            .fold(bal[slot].unsigned_abs() as f64, f64::max)
            .max(1.0);
        let margin = (ROW_MARGIN * scale).min(incumbent as f64);
        let expr: Vec<(Variable, f64)> = row
            .iter()
            .filter(|&&(_, c)| c != 0)
            .map(|&(i, c)| (x[i], c as f64 / scale))
            .collect();
        m.add_constraint(
            &expr[..],
            ComparisonOp::Ge,
            (margin - bal[slot] as f64) / scale,
        );
    }
}

/// Per creditor of a free payment whose limit could bind: the limit use of
/// the fixed payments plus the free ones' stays within it.
fn add_limit_rows(
    m: &mut Problem,
    inst: &Instance,
    settled: &[bool],
    free: &[u32],
    x: &[Variable],
    used: &[i128],
) {
    let mut by_creditor: Vec<(u32, usize)> = free
        .iter()
        .enumerate()
        .map(|(i, &t)| (inst.transactions[t as usize].creditor, i))
        .collect();
    by_creditor.sort_unstable();
    for chunk in by_creditor.chunk_by(|a, b| a.0 == b.0) {
        let p = chunk[0].0 as usize;
        let room = inst.limit_fixed[p] - used[p];
        let all: i128 = chunk
            .iter()
            .map(|&(_, i)| inst.receive_usd_fixed[free[i] as usize])
            .sum();
        if all <= room {
            continue;
        }
        let incumbent: i128 = chunk
            .iter()
            .filter(|&&(_, i)| settled[free[i] as usize])
            .map(|&(_, i)| inst.receive_usd_fixed[free[i] as usize])
            .sum();
        debug_assert!(incumbent <= room, "the incumbent is feasible");
        let scale = (inst.limit_fixed[p].max(1)) as f64;
        let margin = (ROW_MARGIN * scale).min((room - incumbent) as f64);
        let expr: Vec<(Variable, f64)> = chunk
            .iter()
            .map(|&(_, i)| {
                (
                    x[i],
                    inst.receive_usd_fixed[free[i] as usize] as f64 / scale,
                )
            })
            .collect();
        m.add_constraint(&expr[..], ComparisonOp::Le, (room as f64 - margin) / scale);
    }
}

/// Per group of a free payment: batches `k` and single batches `s` (as in
/// `solver/reference`), cost `w(1-d) k + w d s`, with the fixed members
/// counted in.
fn add_group_rows(
    m: &mut Problem,
    inst: &Instance,
    settled: &[bool],
    free: &[u32],
    x: &[Variable],
    fix: &GroupFix<'_>,
    hint: &mut Vec<(Variable, f64)>,
) {
    let (fixed_members, members) = (fix.fixed_members, fix.members);
    let b = f64::from(inst.max_batch_size);
    let w = inst.wire_usd;
    let d = inst.consolidation_discount;
    let mut by_group: Vec<(usize, usize)> = free
        .iter()
        .enumerate()
        .map(|(i, &t)| (inst.group_of(t as usize), i))
        .collect();
    by_group.sort_unstable();
    for chunk in by_group.chunk_by(|a, b| a.0 == b.0) {
        let g = chunk[0].0;
        let upper = i32::try_from(members[g]).unwrap_or(i32::MAX);
        let (k, s) = if fix.relax {
            (
                m.add_var(w * (1.0 - d), (0.0, f64::from(upper))),
                m.add_var(w * d, (0.0, f64::from(upper))),
            )
        } else {
            (
                m.add_integer_var(w * (1.0 - d), (0, upper)),
                m.add_integer_var(w * d, (0, upper)),
            )
        };
        let fixed = fixed_members[g] as f64;
        let mut cap: LinearExpr = LinearExpr::empty();
        let mut two: LinearExpr = LinearExpr::empty();
        for &(_, i) in chunk {
            cap.add(x[i], 1.0);
            two.add(x[i], 1.0);
        }
        // fixed + Σx - B k + (B - 1) s <= 0
        cap.add(k, -b);
        cap.add(s, b - 1.0);
        m.add_constraint(cap, ComparisonOp::Le, -fixed);
        // fixed + Σx - 2k + s >= 0
        two.add(k, -2.0);
        two.add(s, 1.0);
        m.add_constraint(two, ComparisonOp::Ge, -fixed);
        m.add_constraint([(s, 1.0), (k, -1.0)], ComparisonOp::Le, 0.0);
        let n = fixed_members[g]
            + chunk
                .iter()
                .filter(|&&(_, i)| settled[free[i] as usize])
                .count();
        let batches = n.div_ceil(inst.max_batch_size as usize);
        let singles = (2 * batches).saturating_sub(n).min(batches);
        hint.push((k, batches as f64));
        hint.push((s, singles as f64));
    }
}

/// Per tradable pair a flow each way (thousands of USD, its spread per
/// USD); per currency flow out - flow in = the net position, the fixed
/// payments' plus the free ones'.
fn add_fx_rows(m: &mut Problem, inst: &Instance, free: &[u32], x: &[Variable], pos: &[f64]) {
    let nc = inst.currencies.len();
    let mut rows: Vec<LinearExpr> = (0..nc).map(|_| LinearExpr::empty()).collect();
    for e in inst.fx().edges() {
        for (from, to) in [(e.a, e.b), (e.b, e.a)] {
            let f = m.add_var(e.cost * FX_UNIT_USD, (0.0, f64::INFINITY));
            rows[from as usize].add(f, 1.0);
            rows[to as usize].add(f, -1.0);
        }
    }
    for (i, &t) in free.iter().enumerate() {
        let tx = &inst.transactions[t as usize];
        if tx.send != tx.receive {
            let v = inst.value_usd(t as usize) / FX_UNIT_USD;
            rows[tx.send as usize].add(x[i], -v);
            rows[tx.receive as usize].add(x[i], v);
        }
    }
    for (c, row) in rows.into_iter().enumerate() {
        m.add_constraint(row, ComparisonOp::Eq, pos[c] / FX_UNIT_USD);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{generate_family, FAMILIES};

    fn limits() -> LnsLimits {
        LnsLimits {
            subproblems_max: 50,
            free_max: 60,
            nodes_max: 500,
            relaxation: true,
            groups: true,
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn an_exact_subproblem_leaves_the_hub_trade_for_the_optimum() {
        // No single move leaves it (see solve.rs: the hub trade): deferring
        // the two cheap payments and settling the two dear ones is one
        // trade-off of four payments.
        let inst = super::super::tests::hub_trade();
        let mut settled = vec![true, true, false, false];
        assert!((price(&inst, &settled).cost.total - 1010.0).abs() < 1e-6);
        let report = improve(&inst, &mut settled, far(), &limits());
        assert_eq!(settled, vec![false, false, true, true]);
        assert!((price(&inst, &settled).cost.total - 710.0).abs() < 1e-6);
        assert!(report.improved >= 1);
    }

    #[test]
    fn the_search_never_ends_worse_or_infeasible() {
        for (i, family) in FAMILIES.iter().enumerate() {
            let text = generate_family(family, i as u64, 60, 2 + i % 4).expect("a family");
            let inst = Instance::from_json(&text).expect("a valid instance");
            let mut settled = vec![false; inst.transactions.len()];
            let before = price(&inst, &settled).cost.total;
            improve(&inst, &mut settled, far(), &limits());
            assert!(is_feasible(&inst, &settled), "{family}");
            assert!(
                price(&inst, &settled).cost.total <= before + 1e-9,
                "{family}"
            );
        }
    }

    #[test]
    fn the_same_input_gives_the_same_answer() {
        let text = generate_family("skewed_tight", 3, 120, 4).expect("a family");
        let inst = Instance::from_json(&text).expect("a valid instance");
        let run = || {
            let mut settled = vec![false; inst.transactions.len()];
            improve(&inst, &mut settled, far(), &limits());
            settled
        };
        assert_eq!(run(), run());
    }
}
