//! Solutions: the in-process form (indices), the JSON file form (ids), and
//! turning a settled set into a full priced solution (batches, netted FX
//! trades, costs). Also the naive baseline.

use serde::{Deserialize, Serialize};

use crate::fx::FxTrade;
use crate::model::Instance;

/// Cost breakdown in USD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub fx: f64,
    pub wire: f64,
    pub deferral: f64,
    pub total: f64,
}

impl Cost {
    pub fn new(fx: f64, wire: f64, deferral: f64) -> Cost {
        Cost {
            fx,
            wire,
            deferral,
            total: fx + wire + deferral,
        }
    }
}

/// One wire: settled transactions of one (creditor, receive currency).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub creditor: u32,
    pub currency: u32,
    pub transactions: Vec<u32>,
}

/// A priced solution, by index.
#[derive(Clone, Debug)]
pub struct Solution {
    /// `settled[t]`: whether transaction `t` settles this cycle.
    pub settled: Vec<bool>,
    pub batches: Vec<Batch>,
    pub fx_trades: Vec<FxTrade>,
    pub cost: Cost,
    pub naive_cost: Cost,
    pub solve_ms: f64,
    /// A proven lower bound on the optimum's total (USD), when the solve
    /// computed one: the optimum lies in `[lower_bound_usd, cost.total]`.
    pub lower_bound_usd: Option<f64>,
}

impl Solution {
    pub fn savings_pct(&self) -> f64 {
        savings_pct(self.naive_cost.total, self.cost.total)
    }

    /// How far above the lower bound the cost is, percent of the cost: the
    /// solution is at most this far above optimal.
    pub fn gap_to_bound_pct(&self) -> Option<f64> {
        self.lower_bound_usd
            .map(|lb| 100.0 * (self.cost.total - lb).max(0.0) / self.cost.total.max(1e-9))
    }

    pub fn settled_count(&self) -> usize {
        self.settled.iter().filter(|&&s| s).count()
    }

    /// The spec's solution JSON, by ids.
    pub fn to_file(&self, inst: &Instance) -> SolutionFile {
        let ids = |settled: bool| {
            inst.transactions
                .iter()
                .zip(&self.settled)
                .filter(|(_, &s)| s == settled)
                .map(|(t, _)| t.id.clone())
                .collect()
        };
        SolutionFile {
            settled: ids(true),
            deferred: ids(false),
            batches: self
                .batches
                .iter()
                .map(|b| BatchFile {
                    creditor: inst.participants[b.creditor as usize].id.clone(),
                    currency: inst.currencies[b.currency as usize].code.clone(),
                    transactions: b
                        .transactions
                        .iter()
                        .map(|&t| inst.transactions[t as usize].id.clone())
                        .collect(),
                })
                .collect(),
            fx_trades: self
                .fx_trades
                .iter()
                .map(|t| FxTradeFile {
                    from: inst.currencies[t.from as usize].code.clone(),
                    to: inst.currencies[t.to as usize].code.clone(),
                    usd: t.usd,
                })
                .collect(),
            cost: Some(self.cost),
            naive_cost: Some(self.naive_cost),
            savings_pct: Some(self.savings_pct()),
            solve_ms: Some(self.solve_ms),
        }
    }
}

pub(crate) fn savings_pct(naive: f64, cost: f64) -> f64 {
    if naive > 0.0 {
        100.0 * (naive - cost) / naive
    } else {
        0.0
    }
}

/// The solution file of the spec. Only the lists are needed to check one;
/// the priced fields are optional on input.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SolutionFile {
    pub settled: Vec<String>,
    pub deferred: Vec<String>,
    pub batches: Vec<BatchFile>,
    pub fx_trades: Vec<FxTradeFile>,
    #[serde(default)]
    pub cost: Option<Cost>,
    #[serde(default)]
    pub naive_cost: Option<Cost>,
    #[serde(default)]
    pub savings_pct: Option<f64>,
    #[serde(default)]
    pub solve_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchFile {
    pub creditor: String,
    pub currency: String,
    pub transactions: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FxTradeFile {
    pub from: String,
    pub to: String,
    pub usd: f64,
}

/// Whether settling exactly `settled` keeps every balance non-negative and
/// every counterparty limit, by exact integer arithmetic.
pub fn is_feasible(inst: &Instance, settled: &[bool]) -> bool {
    let nc = inst.currencies.len();
    let mut bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
    for p in &inst.participants {
        bal.extend(p.balances.iter().map(|&b| b as i128));
    }
    let mut used = vec![0i128; inst.participants.len()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        if settled[t] {
            bal[tx.debtor as usize * nc + tx.send as usize] -= tx.amount as i128;
            bal[tx.creditor as usize * nc + tx.receive as usize] += tx.receive_amount as i128;
            used[tx.creditor as usize] += inst.receive_usd_fixed[t];
        }
    }
    bal.iter().all(|&b| b >= 0) && used.iter().zip(&inst.limit_fixed).all(|(u, l)| u <= l)
}

/// Net FX positions (USD, surplus > 0) of a settled set.
pub fn positions(inst: &Instance, settled: &[bool]) -> Vec<f64> {
    // Summed in exact fixed point, converted once.
    let mut fixed = vec![0i128; inst.currencies.len()];
    for (t, tx) in inst.transactions.iter().enumerate() {
        if settled[t] && tx.send != tx.receive {
            fixed[tx.send as usize] += inst.send_usd_fixed[t];
            fixed[tx.receive as usize] -= inst.send_usd_fixed[t];
        }
    }
    let unit = 10f64.powi(inst.usd_scale);
    fixed.iter().map(|&v| v as f64 / unit).collect()
}

/// Prices a settled set: optimal batching, exactly netted FX, deferral.
/// The caller checks feasibility ([`is_feasible`]); `naive_cost` is left zero.
pub fn price(inst: &Instance, settled: &[bool]) -> Solution {
    assert_eq!(
        settled.len(),
        inst.transactions.len(),
        "one flag per transaction"
    );
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); inst.group_count()];
    let mut deferral = 0.0;
    for (t, &s) in settled.iter().enumerate() {
        if s {
            members[inst.group_of(t)].push(t as u32);
        } else {
            deferral += inst.defer_usd(t);
        }
    }
    let b = inst.max_batch_size as usize;
    let mut batches = Vec::new();
    let mut wire = 0.0;
    for (g, txs) in members.iter().enumerate() {
        if txs.is_empty() {
            continue;
        }
        let (creditor, currency) = inst.group(g);
        // Fewest batches, sizes as even as possible: every batch has >= 2
        // transactions whenever the group allows it.
        let k = txs.len().div_ceil(b);
        let (base, extra) = (txs.len() / k, txs.len() % k);
        let mut at = 0;
        for i in 0..k {
            let size = base + usize::from(i < extra);
            assert!(size >= 1 && size <= b, "batch within max_batch_size");
            batches.push(Batch {
                creditor,
                currency,
                transactions: txs[at..at + size].to_vec(),
            });
            at += size;
        }
        wire += inst.group_wire_usd(txs.len());
    }
    let pos = positions(inst, settled);
    let (_, flow) = inst.fx.min_cost_flow(&pos);
    let fx_trades = inst.fx.flows_to_trades(&flow);
    let fx = trades_cost(inst, &fx_trades);
    Solution {
        settled: settled.to_vec(),
        batches,
        fx_trades,
        cost: Cost::new(fx, wire, deferral),
        naive_cost: Cost::default(),
        solve_ms: 0.0,
        lower_bound_usd: None,
    }
}

/// Cost of a list of trades, each priced at its pair's spread.
pub(crate) fn trades_cost(inst: &Instance, trades: &[FxTrade]) -> f64 {
    trades
        .iter()
        .map(|t| t.usd * inst.fx.edge_cost(t.from, t.to).unwrap_or(f64::INFINITY))
        .sum()
}

/// Cost of settling exactly `settled` (with optimal batching and netting),
/// or `None` when it breaks a balance or a limit.
pub fn evaluate(inst: &Instance, settled: &[bool]) -> Option<Cost> {
    if !is_feasible(inst, settled) {
        return None;
    }
    Some(price(inst, settled).cost)
}

/// The naive baseline of the spec: in order, settle what fits, one wire
/// each, each converted alone along its cheapest path.
pub fn naive(inst: &Instance) -> Solution {
    let n = inst.transactions.len();
    let nc = inst.currencies.len();
    let mut bal: Vec<i128> = Vec::with_capacity(inst.slot_count());
    for p in &inst.participants {
        bal.extend(p.balances.iter().map(|&b| b as i128));
    }
    let mut used = vec![0i128; inst.participants.len()];
    let mut settled = vec![false; n];
    let mut batches = Vec::new();
    let mut flow = vec![0.0f64; nc * nc];
    let mut deferral = 0.0;
    let mut fx = 0.0;
    for (t, tx) in inst.transactions.iter().enumerate() {
        let ds = tx.debtor as usize * nc + tx.send as usize;
        let cs = tx.creditor as usize * nc + tx.receive as usize;
        let c = tx.creditor as usize;
        let mut after = bal[ds] - tx.amount as i128;
        if ds == cs {
            after += tx.receive_amount as i128;
        }
        let fits = after >= 0 && used[c] + inst.receive_usd_fixed[t] <= inst.limit_fixed[c];
        if !fits {
            deferral += inst.defer_usd(t);
            continue;
        }
        settled[t] = true;
        bal[ds] -= tx.amount as i128;
        bal[cs] += tx.receive_amount as i128;
        used[c] += inst.receive_usd_fixed[t];
        batches.push(Batch {
            creditor: tx.creditor,
            currency: tx.receive,
            transactions: vec![t as u32],
        });
        if tx.send != tx.receive {
            inst.fx
                .add_path_flow(tx.send, tx.receive, inst.value_usd(t), &mut flow);
            fx += inst.value_usd(t) * inst.fx.dist(tx.send, tx.receive);
        }
    }
    // Trades per directed pair, opposite directions kept apart: no netting.
    let mut fx_trades = Vec::new();
    for i in 0..nc {
        for j in 0..nc {
            if flow[i * nc + j] > 0.0 {
                fx_trades.push(FxTrade {
                    from: i as u32,
                    to: j as u32,
                    usd: flow[i * nc + j],
                });
            }
        }
    }
    let wire = batches.len() as f64 * inst.wire_usd;
    let cost = Cost::new(fx, wire, deferral);
    Solution {
        settled,
        batches,
        fx_trades,
        cost,
        naive_cost: cost,
        solve_ms: 0.0,
        lower_bound_usd: None,
    }
}
