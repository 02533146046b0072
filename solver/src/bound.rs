//! A lower bound on the optimum: the Lagrangian relaxation of the balance
//! and limit rows, with each (creditor, currency) group's wire cost kept
//! exact and FX relaxed to zero. Any prices give a bound; a projected
//! subgradient with Polyak's step, aimed at a known solution's cost, finds
//! good ones. It is what lets a decision say "at most X % above optimal".
//!
//! Its limit is the LP relaxation of those rows (plus the wire's grouping),
//! which is weak where payments are large against balances (circulations
//! among banks with almost no liquidity: there the LP settles fractions of
//! payments the integer problem must settle whole or not at all).

use crate::Instance;

/// Polyak step factor at the start.
const THETA_START: f64 = 1.0;

/// Iterations without a better bound before the step factor halves.
const PATIENCE: usize = 10;

/// Step factor below which the prices no longer move enough to matter.
const THETA_MIN: f64 = 1e-4;

/// The best Lagrangian bound found in `iterations` subgradient steps
/// aimed at `upper_bound` (the cost of a known solution, USD). Always a
/// valid lower bound on the optimum (USD, 0 when nothing better is found).
pub(crate) fn lagrangian_bound(inst: &Instance, iterations: usize, upper_bound: f64) -> f64 {
    let n = inst.transactions.len();
    if n == 0 {
        return 0.0;
    }
    let slots = inst.slot_count();
    let np = inst.participants.len();
    let nc = inst.currencies.len();
    let txs = &inst.transactions;
    // Every row in USD, so one step fits every currency.
    let unit: Vec<f64> = inst
        .currencies
        .iter()
        .map(|c| c.usd_per_unit.to_f64() / 10f64.powi(c.minor_units as i32))
        .collect();
    let fixed_unit = 10f64.powi(-inst.usd_scale);
    let deb: Vec<usize> = txs.iter().map(|t| inst.slot(t.debtor, t.send)).collect();
    let cred: Vec<usize> = txs
        .iter()
        .map(|t| inst.slot(t.creditor, t.receive))
        .collect();
    let take: Vec<f64> = txs
        .iter()
        .map(|t| t.amount as f64 * unit[t.send as usize])
        .collect();
    let give: Vec<f64> = txs
        .iter()
        .map(|t| t.receive_amount as f64 * unit[t.receive as usize])
        .collect();
    let uses: Vec<f64> = (0..n)
        .map(|t| inst.receive_usd_fixed[t] as f64 * fixed_unit)
        .collect();
    let start: Vec<f64> = (0..slots)
        .map(|s| inst.participants[s / nc].balances[s % nc] as f64 * unit[s % nc])
        .collect();
    let limit: Vec<f64> = inst
        .limit_fixed
        .iter()
        .map(|&l| l as f64 * fixed_unit)
        .collect();
    // Transactions in group order (flat, with each group's end): one pass
    // over them per iteration visits every group's members together.
    let groups = inst.group_count();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&t| (inst.group_of(t), t));
    let mut group_end = vec![0usize; groups];
    for &t in &order {
        group_end[inst.group_of(t)] += 1;
    }
    for g in 1..groups {
        group_end[g] += group_end[g - 1];
    }
    let defer: Vec<f64> = order.iter().map(|&t| inst.defer_usd(t)).collect();
    let deb: Vec<usize> = order.iter().map(|&t| deb[t]).collect();
    let cred: Vec<usize> = order.iter().map(|&t| cred[t]).collect();
    let creditor: Vec<usize> = order.iter().map(|&t| txs[t].creditor as usize).collect();
    let take: Vec<f64> = order.iter().map(|&t| take[t]).collect();
    let give: Vec<f64> = order.iter().map(|&t| give[t]).collect();
    let uses: Vec<f64> = order.iter().map(|&t| uses[t]).collect();
    let defer_total: f64 = defer.iter().sum();
    let mut price = vec![0f64; slots];
    let mut limit_price = vec![0f64; np];
    let mut bal = vec![0f64; slots];
    let mut used = vec![0f64; np];
    // Per group: its members that would gain by settling at these prices
    // (reduced cost, transaction), best first.
    let mut gainers: Vec<(f64, usize)> = Vec::new();
    let mut bound = 0.0f64;
    let mut theta = THETA_START;
    let mut stale = 0usize;
    for _ in 0..iterations {
        if theta < THETA_MIN {
            break;
        }
        bal.copy_from_slice(&start);
        used.iter_mut().for_each(|u| *u = 0.0);
        let mut lagrangian = defer_total
            - price.iter().zip(&start).map(|(p, b)| p * b).sum::<f64>()
            - limit_price
                .iter()
                .zip(&limit)
                .map(|(p, l)| p * l)
                .sum::<f64>();
        let mut first = 0;
        for &end in &group_end {
            gainers.clear();
            for t in first..end {
                let reduced = price[deb[t]] * take[t] - price[cred[t]] * give[t]
                    + limit_price[creditor[t]] * uses[t]
                    - defer[t];
                if reduced < 0.0 {
                    gainers.push((reduced, t));
                }
            }
            first = end;
            if gainers.is_empty() {
                continue;
            }
            gainers.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // The group's best count k: its k best gains and its wire.
            let (mut sum, mut best, mut best_k) = (0.0, 0.0, 0);
            for (k, &(r, _)) in gainers.iter().enumerate() {
                sum += r;
                let v = sum + inst.group_wire_usd(k + 1);
                if v < best {
                    (best, best_k) = (v, k + 1);
                }
            }
            lagrangian += best;
            for &(_, t) in &gainers[..best_k] {
                bal[deb[t]] -= take[t];
                bal[cred[t]] += give[t];
                used[creditor[t]] += uses[t];
            }
        }
        if lagrangian > bound {
            bound = lagrangian;
            stale = 0;
        } else {
            stale += 1;
            if stale >= PATIENCE {
                theta *= 0.5;
                stale = 0;
            }
        }
        // Projected subgradient: components that would push a zero price
        // below zero are dropped.
        let mut norm = 0.0;
        for s in 0..slots {
            if bal[s] < 0.0 || price[s] > 0.0 {
                norm += bal[s] * bal[s];
            }
        }
        for p in 0..np {
            let g = used[p] - limit[p];
            if g > 0.0 || limit_price[p] > 0.0 {
                norm += g * g;
            }
        }
        if norm <= 0.0 {
            // Feasible and complementary: these prices are optimal.
            break;
        }
        let target = upper_bound.max(lagrangian + 1e-3 * lagrangian.abs() + 1e-6);
        let step = theta * (target - lagrangian) / norm;
        for s in 0..slots {
            price[s] = (price[s] - step * bal[s]).max(0.0);
        }
        for p in 0..np {
            limit_price[p] = (limit_price[p] + step * (used[p] - limit[p])).max(0.0);
        }
    }
    // Float sums: a relative margin keeps the bound a bound.
    (bound * (1.0 - 1e-9) - 1e-6).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{exact, generate_family, ExactLimits, FAMILIES};

    #[test]
    fn the_bound_never_exceeds_the_proven_optimum() {
        let limits = ExactLimits {
            transactions_max: 12,
            nodes_max: 2_000_000,
        };
        for (i, family) in FAMILIES.iter().enumerate() {
            for seed in 0..3u64 {
                let text = generate_family(family, seed, 12, 2 + i % 4).expect("a family");
                let inst = Instance::from_json(&text).expect("a valid instance");
                let opt = exact(&inst, &limits).expect("12 transactions are solved exactly");
                // Aimed far too high and exactly at the optimum: a bound either way.
                for aim in [opt.cost.total * 10.0, opt.cost.total] {
                    let bound = lagrangian_bound(&inst, 300, aim);
                    assert!(
                        bound <= opt.cost.total + 1e-6,
                        "{family} seed {seed}: bound {bound} above the optimum {}",
                        opt.cost.total
                    );
                }
            }
        }
    }
}
