//! The optimiser: start from everything settled, repair liquidity and
//! counterparty violations by cheapest loss per unit freed (which resolves
//! gridlock: cycles of payments that fund each other stay in), then improve
//! by local search with exact move prices (deferral, wire grouping and FX
//! netting through the dual vertices). Small instances are finished by the
//! exact branch and bound. Deterministic: fixed orders, no hashing, no RNG.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bound::lagrangian_bound;
use crate::exact::{exact_with_incumbent, Base, Bb, ExactLimits};
use crate::solution::{is_feasible, naive, price, Solution};
use crate::Instance;

mod mip_lns;
mod oscillate;

/// A move must improve the cost by more than this (USD) to be taken: keeps
/// float noise from cycling the search.
const IMPROVEMENT_EPS_USD: f64 = 1e-9;

/// The starts of [`solve`], in order: (repair ranks by loss per unit of
/// shortfall covered rather than per unit freed, repair rounds re-ranked by
/// liquidity prices).
const START_VARIANTS: [(bool, usize); 4] = [(false, 1), (true, 1), (false, 3), (true, 3)];

/// Cap on the steps of the strategic oscillation (small instances; see
/// [`SolveOptions::oscillation_work`]).
const OSCILLATION_STEPS_MAX: usize = 2_000;
/// The oscillation only up to this many transactions: at 10,000 it took
/// 2.5x the CPU of the whole solve for 0.03-0.05 % of cost (with a
/// second pass loop after it), and its few steps there barely move.
const OSCILLATION_TRANSACTIONS_MAX: usize = 3_000;

/// Local search passes at most; each pass is O(transactions x dual vertices).
const PASSES_MAX: usize = 12;

/// Above this many transactions no exact large-neighbourhood search (as the
/// oscillation).
const LNS_TRANSACTIONS_MAX: usize = 3_000;

/// Up to this many transactions the LNS ends with sub-problems over the
/// whole instance (each connected part), [`LNS_WHOLE_NODES`] nodes each.
const LNS_WHOLE_TRANSACTIONS_MAX: usize = 120;
const LNS_WHOLE_NODES: u64 = 5_000;
const LNS_WHOLE_SUBPROBLEMS_MAX: usize = 4;

/// Rounds of exact sub-problems and the pass loop after them, at most.
const LNS_CYCLES_MAX: usize = 4;

/// Candidates scanned per blocked transaction in a swap move.
const SWAP_CANDIDATES_MAX: usize = 48;

/// Opposite flows settled together at most to net one conversion.
const NETTING_SET_MAX: usize = 3;

/// Transactions added together at most in one gridlock-resolution move.
const GRIDLOCK_SET_MAX: usize = 8;

/// Deferrals one ejection chain may make.
const CHAIN_STEPS_MAX: usize = 64;

/// Flips one funding chain may make (the seed included).
const FUND_CHAIN_STEPS_MAX: usize = 48;

/// Funding and closing chains run up to this size: at 10,000 transactions
/// they made the solve half as slow again for 0.13 % of cost.
const FUND_CHAIN_TRANSACTIONS_MAX: usize = 3_000;

/// How far the running losses of a funding chain may exceed its seed's
/// gain before it is given up (a share of that gain).
const FUND_CHAIN_SLACK: f64 = 0.25;

/// Candidates of each kind (credits to settle, debits to defer) a funding
/// chain weighs at one balance.
const FUND_CANDIDATES_MAX: usize = 32;

/// Members of a group moved together at most in one group move.
const GROUP_MOVE_MAX: usize = 16;

/// Transactions of each kind taken from one balance into a neighbourhood.
const LNS_PER_SLOT: usize = 4;

/// Total branch-and-bound nodes of the exact local search per transaction
/// (about ten times what a 1,000-transaction instance normally uses).
const LNS_NODES_PER_TRANSACTION: u64 = 400;

/// A deferred payment seeds a neighbourhood only when settling it alone
/// would gain more than this (USD): smaller gains rarely repay the search.
const LNS_SEED_GAIN_MIN_USD: f64 = 5.0;

/// Deferred payments (largest gains first) that get one more exact local
/// search with neighbourhoods twice the size once the search has settled.
const INTENSIFY_SEEDS: usize = 16;

/// Dual vertices the neighbourhood bound uses (the most binding ones).
const LNS_VERTICES_MAX: usize = 64;

/// Branch-and-bound nodes allowed when finishing a small instance exactly.
const EXACT_NODES_MAX: u64 = 2_000_000;

/// The whole-shortfall repair is O(transactions^2): past this size it
/// costs more time than its start is worth (measured on the suite: it helps
/// at 100 transactions, not at 1,000).
const GLOBAL_REPAIR_TRANSACTIONS_MAX: usize = 300;

/// Shares of the liquidity-priced start's iterations a payment must be in
/// to start settled; each threshold is one candidate construction.
const GUIDE_THRESHOLDS: [f64; 3] = [0.25, 0.5, 0.75];

/// Transaction visits the lower bound after the search may spend (each
/// iteration visits every transaction once). On the suite at 1,000
/// transactions 50 iterations leave the bound 57.9 % below the optimum,
/// 200 iterations 55.4 %, at four times the time (about 3.5 ms on the
/// loaded box): not worth a quarter of the solve.
const BOUND_WORK: usize = 50_000;

/// Iterations of the lower bound at least, however large the instance.
const BOUND_ITERATIONS_MIN: usize = 20;

/// Instances up to this size get the wider neighbourhoods of
/// [`SolveOptions::neighbourhood_transactions_small`]: at 1,000
/// transactions 32 instead of 16 free doubled the solve time for 0.15
/// point of aggregate gap on the suite.
const WIDE_NEIGHBOURHOOD_TRANSACTIONS_MAX: usize = 300;

/// Ruin and recreate runs up to this size: at 1,000 transactions its 20
/// perturbations doubled the solve time for 0.1 point of aggregate gap on
/// the suite (2.58 -> 2.47 %), not worth it against a 5 ms budget.
const RUIN_TRANSACTIONS_MAX: usize = 300;

/// Participants drawn into one ruin region besides the seed's two.
const RUIN_EXTRA_PARTICIPANTS_MAX: usize = 3;

/// Seed of the perturbation's random stream: fixed, so a solve depends on
/// its input only.
const RUIN_SEED: u64 = 0x5e77_1e15;

/// Knobs of [`solve`].
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Wall-clock cap on the search; the answer is valid whenever it stops.
    /// Deterministic as long as the search finishes within it (it normally
    /// does: passes are bounded by [`PASSES_MAX`]).
    pub time_budget: Duration,
    /// Instances with at most this many transactions are finished by the
    /// exact branch and bound (node-limited), so small ones come out optimal.
    pub exact_transactions_max: usize,
    /// Free transactions per neighbourhood of the exact local search: small
    /// enough that the branch and bound over one takes microseconds.
    pub neighbourhood_transactions: usize,
    /// Free transactions per neighbourhood on instances of at most
    /// [`WIDE_NEIGHBOURHOOD_TRANSACTIONS_MAX`] transactions, where wider
    /// neighbourhoods are affordable (suite, 100 tx: 16 -> 32 took 35 -> 39
    /// of 72 to the optimum, 1.11 -> 0.89 % aggregate).
    pub neighbourhood_transactions_small: usize,
    /// Branch-and-bound nodes per neighbourhood; the best found is used even
    /// when the search is cut.
    pub neighbourhood_nodes: u64,
    /// Independent starts (1 to 4), each a full search with a different
    /// repair ranking; the best is kept. More starts, better and slower.
    pub starts: usize,
    /// Work of the ruin-and-recreate phase after the local search, in
    /// transaction visits: `ruin_work / transactions` perturbations (at
    /// most [`SolveOptions::ruin_iterations_max`]), each settling every
    /// deferred payment among a few participants, repairing with a noisy
    /// ranking and polishing; kept when better. 0 turns it off.
    pub ruin_work: usize,
    /// Cap on the number of perturbations.
    pub ruin_iterations_max: usize,
    /// Subgradient iterations of the liquidity-priced start (a Lagrangian
    /// relaxation of balances and limits), which competes with the repair
    /// starts; 0 turns it off.
    pub guide_iterations: usize,
    /// Whether the whole-shortfall repair start (see `repair_global`)
    /// competes with the balance-by-balance one.
    pub global_repair: bool,
    /// Subgradient iterations of the lower bound computed after the search
    /// (see `bound::lagrangian_bound`), at most: large instances get
    /// [`BOUND_WORK`] / transactions (at least [`BOUND_ITERATIONS_MIN`]).
    /// 0 keeps only the bound the liquidity-priced start found on the way.
    pub bound_iterations: usize,
    /// Work of the strategic oscillation run on the best start (see
    /// `solve/oscillate.rs`), in transaction visits: each step weighs
    /// every payment, so `oscillation_work / transactions` steps (at most
    /// [`OSCILLATION_STEPS_MAX`]; none above
    /// [`OSCILLATION_TRANSACTIONS_MAX`] transactions). 0 turns it off. Suite at 1,000 tx
    /// (aggregate gap): 0 -> 1.96 %, 300,000 -> 1.65 %, 1,000,000 -> 1.53 %,
    /// 3,000,000 -> 1.51 %.
    pub oscillation_work: usize,
    /// Settled payments the ejection-with-refill pass tries per pass (the
    /// least loss per USD first; see `Search::eject_refill_pass`). 0 turns
    /// it off.
    pub eject_candidates: usize,
    /// Exact sub-problems of the large-neighbourhood search run after the
    /// oscillation (see `solve/mip_lns.rs`), at most; 0 turns it off.
    pub lns_subproblems: usize,
    /// Free payments per exact sub-problem.
    pub lns_free_transactions: usize,
    /// Free payments per exact sub-problem on instances of at most
    /// [`WIDE_NEIGHBOURHOOD_TRANSACTIONS_MAX`] transactions, where more
    /// and smaller neighbourhoods do better (suite, 100 tx: 100 -> 40 took
    /// 0.26 -> 0.16 % aggregate).
    pub lns_free_transactions_small: usize,
    /// Branch-and-bound nodes per exact sub-problem.
    pub lns_nodes: u64,
    /// Whether each LNS round opens with the relaxation-induced
    /// neighbourhood (the payments whose share in the whole program's LP
    /// relaxation disagrees most with the incumbent).
    /// Off by default: the suite's aggregate at 1,000 tx was 0.76 % without
    /// it and 0.83 % with it (with `lns_groups`), though 10 of 12 families
    /// came out better (`BENCHMARKS.md`, fourth pass).
    pub lns_relaxation: bool,
    /// Whether the third LNS round takes whole wire groups (a payment
    /// brings its (creditor, currency) group along). Off by default for the
    /// same reason as `lns_relaxation` (0.76 -> 0.81 % alone).
    pub lns_groups: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            time_budget: Duration::from_millis(200),
            exact_transactions_max: 30,
            neighbourhood_transactions: 16,
            neighbourhood_transactions_small: 32,
            neighbourhood_nodes: 4_000,
            starts: 1,
            ruin_work: 10_000,
            ruin_iterations_max: 200,
            guide_iterations: 150,
            global_repair: true,
            bound_iterations: 200,
            oscillation_work: 1_000_000,
            eject_candidates: 32,
            lns_subproblems: 1_000,
            lns_free_transactions: 100,
            lns_free_transactions_small: 40,
            lns_nodes: 500,
            lns_relaxation: false,
            lns_groups: false,
        }
    }
}

/// Returns a valid solution with its batches, netted FX trades, cost and the
/// naive cost.
pub fn solve(inst: &Instance, opts: &SolveOptions) -> Solution {
    let started = Instant::now();
    let deadline = started + opts.time_budget;
    // Starts differ in how the repair ranks what to defer; the local optima
    // they reach differ by a percent or more, so keep the best.
    let mut best: Option<(f64, Vec<bool>)> = None;
    let mut lower_bound = 0.0f64;
    // The whole-shortfall repair start is a search of its own (its
    // construction cost says little about where its local search ends).
    let global = opts.global_repair && inst.transactions.len() <= GLOBAL_REPAIR_TRANSACTIONS_MAX;
    let starts = START_VARIANTS
        .iter()
        .take(opts.starts.max(1))
        .map(|&(cap, rounds)| (cap, rounds, false, false))
        .chain(global.then_some((false, 1, true, false)))
        .chain((opts.guide_iterations > 0).then_some((false, 1, false, true)));
    for (cap_shortfall, rounds, global_start, guide_start) in starts {
        if best.is_some() && Instant::now() >= deadline {
            break;
        }
        let mut search = Search::new(inst, opts, cap_shortfall);
        search.global_start = global_start;
        search.guide_start = guide_start;
        search.run(deadline, rounds);
        let n = inst.transactions.len();
        let iterations = if n <= RUIN_TRANSACTIONS_MAX {
            (opts.ruin_work / n.max(1)).min(opts.ruin_iterations_max)
        } else {
            0
        };
        search.ruin_and_recreate(deadline, iterations);
        lower_bound = lower_bound.max(search.lower_bound);
        let total = search.total();
        if best
            .as_ref()
            .is_none_or(|(b, _)| total < b - IMPROVEMENT_EPS_USD)
        {
            best = Some((total, search.x));
        }
    }
    let (_, mut settled) = best.expect("at least one start");
    let n = inst.transactions.len();
    let steps = if n <= OSCILLATION_TRANSACTIONS_MAX {
        (opts.oscillation_work / n.max(1)).min(OSCILLATION_STEPS_MAX)
    } else {
        0
    };
    if steps > 0 && Instant::now() < deadline {
        // On the best start only: its steps cost a pass over every payment.
        let mut search = Search::new(inst, opts, false);
        search.restore(&settled);
        search.oscillate(steps, deadline);
        // The oscillation ends where no single flip improves, but the wider
        // moves often still do (suite, 1,000 tx: 1.53 -> 1.44 %; 100 tx:
        // 0.50 -> 0.30 %).
        search.run(deadline, 0);
        settled = search.x;
    }
    if n > opts.exact_transactions_max
        && n <= LNS_TRANSACTIONS_MAX
        && opts.lns_subproblems > 0
        && Instant::now() < deadline
    {
        let mut limits = mip_lns::LnsLimits {
            subproblems_max: opts.lns_subproblems,
            free_max: if n <= WIDE_NEIGHBOURHOOD_TRANSACTIONS_MAX {
                opts.lns_free_transactions_small
            } else {
                opts.lns_free_transactions
            },
            nodes_max: opts.lns_nodes,
            relaxation: opts.lns_relaxation,
            groups: opts.lns_groups,
        };
        for _ in 0..LNS_CYCLES_MAX {
            let report = mip_lns::improve(inst, &mut settled, deadline, &limits);
            trace_lns("lns", &report);
            limits.subproblems_max = limits.subproblems_max.saturating_sub(report.subproblems);
            if report.improved == 0 || Instant::now() >= deadline {
                break;
            }
            // The sub-problems move whole sets; the cheap moves tidy up, and
            // what they change opens new neighbourhoods.
            let mut search = Search::new(inst, opts, false);
            search.restore(&settled);
            search.run(deadline, 0);
            settled = search.x;
            if limits.subproblems_max == 0 {
                break;
            }
        }
        if n <= LNS_WHOLE_TRANSACTIONS_MAX && Instant::now() < deadline {
            // Small enough for one sub-problem over everything (per
            // connected part), given more nodes.
            let whole = mip_lns::LnsLimits {
                subproblems_max: LNS_WHOLE_SUBPROBLEMS_MAX,
                free_max: n,
                nodes_max: LNS_WHOLE_NODES,
                relaxation: false,
                groups: false,
            };
            let report = mip_lns::improve(inst, &mut settled, deadline, &whole);
            trace_lns("lns whole", &report);
        }
    }
    let mut proven = false;
    assert!(
        is_feasible(inst, &settled),
        "local search keeps feasibility"
    );
    if inst.transactions.len() <= opts.exact_transactions_max {
        let limits = ExactLimits {
            transactions_max: opts.exact_transactions_max,
            nodes_max: EXACT_NODES_MAX,
        };
        if let Some(better) = exact_with_incumbent(inst, &limits, Some(&settled)) {
            // The search completed: this is the optimum.
            settled = better.settled;
            proven = true;
        }
    }
    let mut sol = price(inst, &settled);
    let base = naive(inst);
    // The naive settled set, batched and netted, is never worse than naive:
    // keep it if the search somehow ended above it.
    let netted_naive = price(inst, &base.settled);
    if netted_naive.cost.total < sol.cost.total {
        sol = netted_naive;
    }
    sol.naive_cost = base.cost;
    if !proven && opts.bound_iterations > 0 {
        // Aimed at the answer's cost: the closer the aim, the better the step.
        let iterations = (BOUND_WORK / inst.transactions.len().max(1))
            .max(BOUND_ITERATIONS_MIN)
            .min(opts.bound_iterations);
        let bound = lagrangian_bound(inst, iterations, sol.cost.total);
        lower_bound = lower_bound.max(bound);
    }
    sol.lower_bound_usd = Some(if proven {
        sol.cost.total
    } else {
        lower_bound.clamp(0.0, sol.cost.total)
    });
    sol.solve_ms = started.elapsed().as_secs_f64() * 1e3;
    sol
}

/// A development aid: with `SETTLE_LNS_TRACE` set, what each LNS run did
/// (sub-problems, proven, improved, refused) goes to stderr; the
/// fourth-pass figures in `BENCHMARKS.md` quote it.
fn trace_lns(label: &str, report: &mip_lns::LnsReport) {
    if std::env::var_os("SETTLE_LNS_TRACE").is_some() {
        eprintln!("{label}: {report:?}");
    }
}

/// Prices FX moves: by the dual vertices when the graph has them (a move is
/// a max over vertices), else by min-cost flow.
#[derive(Clone, Debug)]
pub(crate) struct FxState<'a> {
    inst: &'a Instance,
    /// Net position per currency, USD.
    pos: Vec<f64>,
    /// `vp[v]`: vertex v's potentials dotted with `pos` (dual path only).
    vp: Vec<f64>,
    /// Vertices within `margin` of the maximum. A move of `usd` between s
    /// and r changes any vertex's value by at most |usd| * dist(s, r)
    /// ("reach"); when 2 * reach <= margin no other vertex can become the
    /// maximum, so the move is priced over `top` alone, exactly.
    top: Vec<u32>,
    margin: f64,
    /// Current FX cost.
    cost: f64,
}

impl<'a> FxState<'a> {
    pub(crate) fn new(inst: &'a Instance) -> FxState<'a> {
        let count = inst.fx().dual_vertices().map_or(0, |d| d.count);
        // Twice the reach of a large (95th percentile) transaction: most
        // moves are priced over `top`, the rare larger ones over everything.
        let mut reach: Vec<f64> = inst
            .transactions
            .iter()
            .enumerate()
            .map(|(t, tx)| inst.value_usd(t) * inst.fx().dist(tx.send, tx.receive))
            .collect();
        reach.sort_by(|a, b| a.total_cmp(b));
        let p95 = reach.get(reach.len() * 95 / 100).copied().unwrap_or(0.0);
        FxState {
            inst,
            pos: vec![0.0; inst.currencies.len()],
            vp: vec![0.0; count],
            top: (0..count as u32).collect(),
            margin: 2.0 * p95 * (1.0 + 1e-9) + 1e-6,
            cost: 0.0,
        }
    }

    pub(crate) fn cost(&self) -> f64 {
        self.cost
    }

    /// FX cost after adding `usd` flowing from `s` into `r` (negative: the
    /// opposite), without changing anything.
    pub(crate) fn cost_with(&self, s: u32, r: u32, usd: f64) -> f64 {
        if s == r {
            return self.cost;
        }
        match self.inst.fx().dual_vertices() {
            Some(dv) => {
                let cs = &dv.columns[s as usize];
                let cr = &dv.columns[r as usize];
                let reach = usd.abs() * self.inst.fx().dist(s, r);
                let mut best = 0.0f64;
                if 2.0 * reach <= self.margin {
                    for &v in &self.top {
                        let v = v as usize;
                        best = best.max(self.vp[v] + usd * (cs[v] - cr[v]));
                    }
                } else {
                    for ((vp, a), b) in self.vp.iter().zip(cs).zip(cr) {
                        best = best.max(vp + usd * (a - b));
                    }
                }
                best
            }
            None => {
                let mut pos = self.pos.clone();
                pos[s as usize] += usd;
                pos[r as usize] -= usd;
                self.inst.fx().min_cost_flow(&pos).0
            }
        }
    }

    /// The dual vertex whose value is the current FX cost, if the graph
    /// prices by vertices and the cost is above zero (else none is needed:
    /// see [`FxState::delta_at_vertex`]).
    pub(crate) fn maximising_vertex(&self) -> Option<usize> {
        self.inst.fx().dual_vertices()?;
        let mut best: Option<(f64, usize)> = None;
        for &v in &self.top {
            let v = v as usize;
            if best.is_none_or(|(b, _)| self.vp[v] > b) {
                best = Some((self.vp[v], v));
            }
        }
        best.map(|(_, v)| v)
    }

    /// A lower bound on `cost_with(s, r, usd) - cost()`: the new value of
    /// vertex `v` alone (the cost is a maximum over vertices and zero).
    pub(crate) fn delta_at_vertex(&self, s: u32, r: u32, usd: f64, v: usize) -> f64 {
        if s == r {
            return 0.0;
        }
        let dv = self
            .inst
            .fx()
            .dual_vertices()
            .expect("a vertex implies vertices");
        let value = self.vp[v] + usd * (dv.columns[s as usize][v] - dv.columns[r as usize][v]);
        value.max(0.0) - self.cost
    }

    /// FX cost after several flows (s, r, usd) at once, without changing
    /// anything.
    pub(crate) fn cost_with_many(&self, flows: &[(u32, u32, f64)]) -> f64 {
        let mut pos = self.pos.clone();
        for &(s, r, usd) in flows {
            if s != r {
                pos[s as usize] += usd;
                pos[r as usize] -= usd;
            }
        }
        self.inst.fx().cost(&pos)
    }

    pub(crate) fn apply(&mut self, s: u32, r: u32, usd: f64) {
        if s == r {
            return;
        }
        self.pos[s as usize] += usd;
        self.pos[r as usize] -= usd;
        match self.inst.fx().dual_vertices() {
            Some(dv) => {
                let cs = &dv.columns[s as usize];
                let cr = &dv.columns[r as usize];
                // The new maximum is at least the old one less this move's
                // reach, so one pass can both update and collect `top`
                // (a superset of the vertices within `margin` of it).
                let reach = usd.abs() * self.inst.fx().dist(s, r) * (1.0 + 1e-9) + 1e-9;
                let floor = self.cost - reach - self.margin;
                let mut best = 0.0f64;
                self.top.clear();
                for (v, ((vp, a), b)) in self.vp.iter_mut().zip(cs).zip(cr).enumerate() {
                    *vp += usd * (a - b);
                    best = best.max(*vp);
                    if *vp >= floor {
                        self.top.push(v as u32);
                    }
                }
                self.cost = best;
            }
            None => self.cost = self.inst.fx().min_cost_flow(&self.pos).0,
        }
    }

    fn retop(&mut self) {
        let floor = self.cost - self.margin;
        self.top.clear();
        for (v, &vp) in self.vp.iter().enumerate() {
            if vp >= floor {
                self.top.push(v as u32);
            }
        }
    }

    /// Recomputes from the positions, dropping accumulated float drift.
    pub(crate) fn refresh(&mut self) {
        match self.inst.fx().dual_vertices() {
            Some(dv) => {
                let mut best = 0.0f64;
                for (v, vp) in self.vp.iter_mut().enumerate() {
                    *vp = dv
                        .columns
                        .iter()
                        .zip(&self.pos)
                        .map(|(col, p)| col[v] * p)
                        .sum();
                    best = best.max(*vp);
                }
                self.cost = best;
                self.retop();
            }
            None => self.cost = self.inst.fx().min_cost_flow(&self.pos).0,
        }
    }
}

/// Compressed adjacency lists: for each key, the transactions under it.
struct Lists {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    /// `key(t)` for every transaction; each list sorted by `order` (ascending).
    fn build(keys: usize, n: usize, key: impl Fn(usize) -> usize, order: &[f64]) -> Lists {
        let mut count = vec![0u32; keys + 1];
        for t in 0..n {
            count[key(t) + 1] += 1;
        }
        for k in 0..keys {
            count[k + 1] += count[k];
        }
        let start = count.clone();
        let mut fill = count;
        let mut items = vec![0u32; n];
        for t in 0..n {
            let k = key(t);
            items[fill[k] as usize] = t as u32;
            fill[k] += 1;
        }
        for k in 0..keys {
            let s = &mut items[start[k] as usize..start[k + 1] as usize];
            s.sort_by(|&a, &b| {
                order[a as usize]
                    .total_cmp(&order[b as usize])
                    .then(a.cmp(&b))
            });
        }
        Lists { start, items }
    }

    fn get(&self, k: usize) -> &[u32] {
        &self.items[self.start[k] as usize..self.start[k + 1] as usize]
    }
}

struct Search<'a> {
    inst: &'a Instance,
    n: usize,
    x: Vec<bool>,
    bal: Vec<i128>,
    used: Vec<i128>,
    gn: Vec<u32>,
    fx: FxState<'a>,
    deferral: f64,
    wire: f64,
    deb_slot: Vec<u32>,
    cred_slot: Vec<u32>,
    /// Per slot and per participant: the move count when it last changed,
    /// so that the exact local search revisits only what moved.
    slot_epoch: Vec<u64>,
    participant_epoch: Vec<u64>,
    epoch: u64,
    /// Move count at the start of the previous exact local search pass.
    lns_epoch: Option<u64>,
    /// Move count at the start of the previous chain and gridlock passes:
    /// a blocked payment whose surroundings did not change since is not
    /// retried (its move failed then and would fail again).
    chain_epoch: Option<u64>,
    fund_epoch: Option<u64>,
    /// USD per minor unit of each currency.
    unit_usd: Vec<f64>,
    /// USD per unit of the fixed-point USD values (limits).
    fixed_unit: f64,
    /// Per payment, the most its flip can change the FX cost (USD): its
    /// value times the cheapest conversion between its currencies.
    fx_reach: Vec<f64>,
    /// Per payment, its amount (minor units) and what it uses of its
    /// creditor's limit (fixed-point USD), as floats for the repair's ranks.
    amount_f: Vec<f64>,
    limit_use_f: Vec<f64>,
    /// `group_wire_usd(k)` for every k a group can reach (0..=n).
    wire_by_count: Vec<f64>,
    /// Scratch of the funding chains: the payments one chain has flipped
    /// (never flipped back within it). All false between moves.
    pinned: Vec<bool>,
    gridlock_epoch: Option<u64>,
    /// Static orders, shared so that a move can walk one while changing state.
    idx: Rc<Index>,
    /// All transactions, most valuable to settle first.
    urgency: Vec<u32>,
    /// Loss of deferring each one, net of the FX it would cost alone.
    loss: Vec<f64>,
    /// What the repair ranks by: `loss` plus the liquidity its credit gives
    /// its creditor, at that balance's price from the previous round.
    rank_loss: Vec<f64>,
    /// Price of one minor unit of liquidity per slot (USD), from the
    /// cheapest profitable payment the previous round had to defer there.
    price: Vec<f64>,
    /// Repair ranks by loss per unit of shortfall covered (true) or per
    /// unit freed (false).
    cap_shortfall: bool,
    lns_free_max: usize,
    lns_nodes_max: u64,
    /// Branch-and-bound nodes left for the whole exact local search: a
    /// work bound (not a clock), so the result depends on the input only.
    lns_nodes_left: u64,
    /// Scratch for the neighbourhood search, one per group, kept zeroed.
    gopen: Vec<u32>,
    /// Seeds one exact local search pass may try.
    lns_seeds_max: usize,
    /// Subgradient iterations of the liquidity-priced start (0: none).
    guide_iterations: usize,
    /// This search starts from the whole-shortfall repair only.
    global_start: bool,
    /// This search starts from the liquidity-priced constructions only.
    guide_start: bool,
    /// Best lower bound on the optimum found (USD; 0 when none).
    lower_bound: f64,
    /// See [`SolveOptions::eject_candidates`].
    eject_candidates: usize,
}

struct Index {
    /// Debits of each slot, cheapest loss per minor unit freed first.
    out: Lists,
    /// Credits into each slot, largest first.
    incoming: Lists,
    /// Transactions to each creditor, cheapest loss per USD of limit first.
    to_creditor: Lists,
    /// Members of each group, most urgent first.
    members: Lists,
    /// Transactions per (send, receive) currency pair, largest value first.
    by_direction: Lists,
}

impl<'a> Search<'a> {
    /// Settle all, drop the unprofitable, repair, then local search passes
    /// until one improves nothing or the deadline passes. With no rounds
    /// and neither special start: the passes alone, from the current
    /// assignment.
    fn run(&mut self, deadline: Instant, rounds: usize) {
        let mut best: Option<(f64, Vec<bool>)> = None;
        let rounds = if self.global_start || self.guide_start {
            0
        } else {
            rounds
        };
        for round in 0..rounds {
            if round > 0 {
                self.update_prices();
                self.reset();
            }
            self.settle_all();
            self.drop_unprofitable();
            self.polish_and_keep_best(&mut best);
        }
        if self.global_start {
            self.reset();
            self.settle_all();
            self.drop_unprofitable();
            self.repair_global();
            self.polish_and_keep_best(&mut best);
        }
        if self.guide_start {
            let (guide, bound) = self.liquidity_guide(self.guide_iterations);
            self.lower_bound = self.lower_bound.max(bound);
            // Shares in between are the payments the prices could not
            // decide: try them in, half in, out.
            for threshold in GUIDE_THRESHOLDS {
                if best.is_some() && Instant::now() >= deadline {
                    break;
                }
                self.reset();
                for (t, &g) in guide.iter().enumerate() {
                    if g >= threshold {
                        self.set_quietly(t, true);
                    }
                }
                self.fx.refresh();
                self.drop_unprofitable();
                self.polish_and_keep_best(&mut best);
            }
        }
        if let Some((_, x)) = best {
            if x != self.x {
                self.reset();
                for (t, &on) in x.iter().enumerate() {
                    if on {
                        self.set_quietly(t, true);
                    }
                }
                self.fx.refresh();
            }
        }
        debug_assert!(self.is_feasible());
        for _ in 0..PASSES_MAX {
            if Instant::now() >= deadline {
                break;
            }
            let before = self.total();
            // The deadline between passes too: one round of them can take
            // several milliseconds at 1,000 transactions.
            let passes: [fn(&mut Self); 7] = [
                Self::add_pass,
                Self::drop_pass,
                Self::group_pass,
                Self::swap_pass,
                Self::gridlock_pass,
                Self::netting_pass,
                Self::chain_pass,
            ];
            for pass in passes {
                if Instant::now() >= deadline {
                    break;
                }
                pass(self);
            }
            self.lns_pass(deadline);
            self.refresh_fx();
            if Instant::now() >= deadline {
                break;
            }
            if self.total() > before - 1e-7 {
                // A local optimum of the moves above: only then the funding
                // chains, whose wide moves would otherwise pull the search
                // elsewhere before the cheap moves are done.
                let converged = self.total();
                self.fund_chain_pass(deadline);
                self.refresh_fx();
                if self.total() > converged - 1e-7 {
                    self.eject_refill_pass(deadline);
                    if self.total() > converged - 1e-7 {
                        break;
                    }
                }
            }
        }
        // Intensify: the payments with the largest gains still deferred get
        // neighbourhoods twice the size.
        {
            let (free_max, nodes_max) = (self.lns_free_max, self.lns_nodes_max);
            self.lns_free_max = free_max * 2;
            self.lns_nodes_max = nodes_max * 5;
            self.lns_epoch = None;
            self.lns_seeds_max = INTENSIFY_SEEDS;
            self.lns_pass(deadline);
            self.refresh_fx();
            self.lns_free_max = free_max;
            self.lns_nodes_max = nodes_max;
            self.lns_seeds_max = usize::MAX;
        }
    }

    /// Ruin and recreate: settle every profitable deferred payment among a
    /// few participants (the seed payment's debtor and creditor and up to
    /// [`RUIN_EXTRA_PARTICIPANTS_MAX`] others), repair with a noisy ranking,
    /// polish with the cheap passes; keep the result when it is better, else
    /// go back. This escapes local optima no single move leaves: the
    /// trade-offs that span many payments (settle one large payment and defer
    /// dozens of small ones, or settle a whole circulation at once).
    fn ruin_and_recreate(&mut self, deadline: Instant, iterations: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(RUIN_SEED ^ self.n as u64);
        let mut best_total = self.total();
        let mut best_x = self.x.clone();
        let np = self.inst.participants.len();
        let mut in_region = vec![false; np];
        for _ in 0..iterations {
            if Instant::now() >= deadline {
                break;
            }
            let deferred: Vec<usize> = (0..self.n)
                .filter(|&t| !self.x[t] && self.loss[t] > 0.0)
                .collect();
            if deferred.is_empty() {
                break;
            }
            let t = deferred[rng.gen_range(0..deferred.len())];
            let tx = &self.inst.transactions[t];
            let mut region = vec![tx.debtor as usize, tx.creditor as usize];
            for _ in 0..rng.gen_range(0..=RUIN_EXTRA_PARTICIPANTS_MAX) {
                region.push(rng.gen_range(0..np));
            }
            for &p in &region {
                in_region[p] = true;
            }
            for &u in &deferred {
                let ux = &self.inst.transactions[u];
                if in_region[ux.debtor as usize] && in_region[ux.creditor as usize] {
                    self.set_quietly(u, true);
                }
            }
            for &p in &region {
                in_region[p] = false;
            }
            self.fx.refresh();
            let saved = self.rank_loss.clone();
            for r in self.rank_loss.iter_mut() {
                *r *= rng.gen_range(0.5..1.5);
            }
            self.repair();
            self.rank_loss = saved;
            self.add_pass();
            self.drop_pass();
            self.swap_pass();
            self.gridlock_pass();
            self.chain_pass();
            self.fund_chain_pass(deadline);
            self.refresh_fx();
            debug_assert!(self.is_feasible(), "a recreated assignment is feasible");
            let total = self.total();
            if total < best_total - IMPROVEMENT_EPS_USD {
                best_total = total;
                best_x.clone_from(&self.x);
            } else {
                self.restore(&best_x);
            }
        }
    }

    /// A Lagrangian relaxation of the balances and limits: each balance and
    /// limit gets a price, a payment is in when its loss beats the price of
    /// the liquidity it takes net of the liquidity it gives its creditor, and
    /// prices rise where the chosen set overdraws (subgradient steps). Returns
    /// per payment the share of the last half of the iterations it was in,
    /// and the best Lagrangian lower bound on the optimum seen on the way:
    /// whole circulations come out together, which a repair from "everything
    /// settled" unravels.
    fn liquidity_guide(&self, iterations: usize) -> (Vec<f64>, f64) {
        let inst = self.inst;
        let slots = inst.slot_count();
        let np = inst.participants.len();
        let txs = &inst.transactions;
        // Per balance: what its debits ask for and their loss per minor unit,
        // the scales that make one step size fit every balance.
        let mut demand = vec![0f64; slots];
        let mut worth = vec![0f64; slots];
        let mut limit_demand = vec![0f64; np];
        let mut limit_worth = vec![0f64; np];
        for t in 0..self.n {
            let loss = self.loss[t].max(0.0);
            demand[self.deb_slot[t] as usize] += txs[t].amount as f64;
            worth[self.deb_slot[t] as usize] += loss;
            let r = inst.receive_usd_fixed[t] as f64;
            limit_demand[txs[t].creditor as usize] += r;
            limit_worth[txs[t].creditor as usize] += loss;
        }
        let start: Vec<f64> = inst
            .participants
            .iter()
            .flat_map(|p| p.balances.iter().map(|&b| b as f64))
            .collect();
        let limit: Vec<f64> = inst.limit_fixed.iter().map(|&l| l as f64).collect();
        let mut price = vec![0f64; slots];
        let mut limit_price = vec![0f64; np];
        let mut on = vec![false; self.n];
        let mut share = vec![0f64; self.n];
        let mut bal = vec![0f64; slots];
        let mut used = vec![0f64; np];
        let counted = iterations / 2;
        let defer_total: f64 = (0..self.n).map(|t| inst.defer_usd(t)).sum();
        let mut bound = 0.0f64;
        for k in 0..iterations {
            bal.copy_from_slice(&start);
            used.iter_mut().for_each(|u| *u = 0.0);
            // Lagrangian bound at these prices (valid for any prices >= 0):
            // wire and FX costs relaxed to 0, balances and limits priced.
            let mut lagrangian = defer_total
                - price.iter().zip(&start).map(|(p, b)| p * b).sum::<f64>()
                - limit_price
                    .iter()
                    .zip(&limit)
                    .map(|(p, l)| p * l)
                    .sum::<f64>();
            for t in 0..self.n {
                let (ds, cs) = (self.deb_slot[t] as usize, self.cred_slot[t] as usize);
                let c = txs[t].creditor as usize;
                let settle_cost = -inst.defer_usd(t) + price[ds] * txs[t].amount as f64
                    - price[cs] * txs[t].receive_amount as f64
                    + limit_price[c] * inst.receive_usd_fixed[t] as f64;
                lagrangian += settle_cost.min(0.0);
                let reduced = self.loss[t] - price[ds] * txs[t].amount as f64
                    + price[cs] * txs[t].receive_amount as f64
                    - limit_price[c] * inst.receive_usd_fixed[t] as f64;
                on[t] = reduced > 0.0;
                if on[t] {
                    bal[ds] -= txs[t].amount as f64;
                    bal[cs] += txs[t].receive_amount as f64;
                    used[c] += inst.receive_usd_fixed[t] as f64;
                    if k >= iterations - counted {
                        share[t] += 1.0;
                    }
                }
            }
            bound = bound.max(lagrangian);
            let step = 2.0 / (2.0 + k as f64);
            for s in 0..slots {
                if demand[s] > 0.0 {
                    let unit = worth[s] / demand[s];
                    let g = -bal[s] / demand[s];
                    price[s] = (price[s] + step * unit * g).max(0.0);
                }
            }
            for p in 0..np {
                if limit_demand[p] > 0.0 {
                    let unit = limit_worth[p] / limit_demand[p];
                    let g = (used[p] - limit[p]) / limit_demand[p];
                    limit_price[p] = (limit_price[p] + step * unit * g).max(0.0);
                }
            }
        }
        share.iter_mut().for_each(|s| *s /= counted.max(1) as f64);
        // Float sums: a relative margin keeps the bound a bound.
        (share, bound * (1.0 - 1e-9) - 1e-6)
    }

    /// Repair from "everything settled" by the whole shortfall: each step
    /// defers the settled payment that removes the most overdraft and limit
    /// excess (USD, net of the overdraft its missing credit causes at its
    /// creditor) per USD of loss. Unlike the balance-by-balance repair it
    /// never defers a payment whose credit its creditor needs to pay others
    /// while a cheaper cut exists, so circulations with little liquidity
    /// survive. O(transactions) per step.
    fn repair_global(&mut self) {
        let inst = self.inst;
        let slots = inst.slot_count();
        let nc = inst.currencies.len();
        // USD per minor unit of each currency.
        let unit: Vec<f64> = inst
            .currencies
            .iter()
            .map(|c| c.usd_per_unit.to_f64() / 10f64.powi(c.minor_units as i32))
            .collect();
        let fixed_unit = 10f64.powi(-inst.usd_scale);
        let short = |b: i128| (-b).max(0) as f64;
        loop {
            let any_short = (0..slots).any(|s| self.bal[s] < 0);
            let any_over = (0..inst.participants.len()).any(|p| self.used[p] > inst.limit_fixed[p]);
            if !any_short && !any_over {
                return;
            }
            let mut best: Option<(f64, usize)> = None;
            for t in 0..self.n {
                if !self.x[t] {
                    continue;
                }
                let tx = &inst.transactions[t];
                let (ds, cs) = (self.deb_slot[t] as usize, self.cred_slot[t] as usize);
                let c = tx.creditor as usize;
                let (a, r) = (tx.amount as i128, tx.receive_amount as i128);
                let mut gain = 0.0;
                if ds == cs {
                    let b = self.bal[ds];
                    gain += (short(b) - short(b + a - r)) * unit[ds % nc];
                } else {
                    let (bd, bc) = (self.bal[ds], self.bal[cs]);
                    gain += (short(bd) - short(bd + a)) * unit[ds % nc];
                    gain -= (short(bc - r) - short(bc)) * unit[cs % nc];
                }
                let over = self.used[c] - inst.limit_fixed[c];
                if over > 0 {
                    gain += (over.min(inst.receive_usd_fixed[t]) as f64) * fixed_unit;
                }
                if gain > 0.0 {
                    let score = gain / self.loss[t].max(1e-9);
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, t));
                    }
                }
            }
            // None: every cut only moves the shortfall on (a circulation in
            // deficit all round); the balance-by-balance repair finishes.
            let Some((_, t)) = best else { return };
            self.set_quietly(t, false);
        }
    }

    /// Back to assignment `x` (feasible), moving only what differs.
    fn restore(&mut self, x: &[bool]) {
        for (t, &on) in x.iter().enumerate() {
            if self.x[t] != on {
                self.set_quietly(t, on);
            }
        }
        self.fx.refresh();
        debug_assert!(self.is_feasible());
    }

    fn new(inst: &'a Instance, opts: &SolveOptions, cap_shortfall: bool) -> Search<'a> {
        let n = inst.transactions.len();
        let nc = inst.currencies.len();
        let txs = &inst.transactions;
        let deb_slot: Vec<u32> = txs
            .iter()
            .map(|t| (t.debtor as usize * nc + t.send as usize) as u32)
            .collect();
        let cred_slot: Vec<u32> = txs
            .iter()
            .map(|t| (t.creditor as usize * nc + t.receive as usize) as u32)
            .collect();
        // Loss of not settling, net of the FX it would have cost alone.
        let loss: Vec<f64> = (0..n)
            .map(|t| {
                inst.defer_usd(t) - inst.value_usd(t) * inst.fx().dist(txs[t].send, txs[t].receive)
            })
            .collect();
        let per_amount: Vec<f64> = (0..n).map(|t| loss[t] / txs[t].amount as f64).collect();
        let per_limit: Vec<f64> = (0..n)
            .map(|t| loss[t] / (inst.receive_usd_fixed[t] as f64).max(1.0))
            .collect();
        let neg_receive: Vec<f64> = txs.iter().map(|t| -(t.receive_amount as f64)).collect();
        let neg_loss: Vec<f64> = loss.iter().map(|l| -l).collect();
        let slots = inst.slot_count();
        let out = Lists::build(slots, n, |t| deb_slot[t] as usize, &per_amount);
        let incoming = Lists::build(slots, n, |t| cred_slot[t] as usize, &neg_receive);
        let to_creditor = Lists::build(
            inst.participants.len(),
            n,
            |t| txs[t].creditor as usize,
            &per_limit,
        );
        let members = Lists::build(inst.group_count(), n, |t| inst.group_of(t), &neg_loss);
        let neg_value: Vec<f64> = (0..n).map(|t| -inst.value_usd(t)).collect();
        let by_direction = Lists::build(
            nc * nc,
            n,
            |t| txs[t].send as usize * nc + txs[t].receive as usize,
            &neg_value,
        );
        let mut urgency: Vec<u32> = (0..n as u32).collect();
        urgency.sort_by(|&a, &b| {
            neg_loss[a as usize]
                .total_cmp(&neg_loss[b as usize])
                .then(a.cmp(&b))
        });
        let mut bal = Vec::with_capacity(slots);
        for p in &inst.participants {
            bal.extend(p.balances.iter().map(|&b| b as i128));
        }
        Search {
            inst,
            n,
            x: vec![false; n],
            bal,
            used: vec![0; inst.participants.len()],
            gn: vec![0; inst.group_count()],
            fx: FxState::new(inst),
            deferral: (0..n).map(|t| inst.defer_usd(t)).sum(),
            wire: 0.0,
            slot_epoch: vec![0; slots],
            participant_epoch: vec![0; inst.participants.len()],
            epoch: 0,
            lns_epoch: None,
            chain_epoch: None,
            fund_epoch: None,
            wire_by_count: (0..=n).map(|k| inst.group_wire_usd(k)).collect(),
            amount_f: txs.iter().map(|t| t.amount as f64).collect(),
            limit_use_f: inst.receive_usd_fixed.iter().map(|&r| r as f64).collect(),
            unit_usd: inst
                .currencies
                .iter()
                .map(|c| c.usd_per_unit.to_f64() / 10f64.powi(c.minor_units as i32))
                .collect(),
            fixed_unit: 10f64.powi(-inst.usd_scale),
            fx_reach: (0..n)
                .map(|t| {
                    let tx = &txs[t];
                    inst.value_usd(t) * inst.fx().dist(tx.send, tx.receive) * (1.0 + 1e-9)
                })
                .collect(),
            pinned: vec![false; n],
            gridlock_epoch: None,
            deb_slot,
            cred_slot,
            idx: Rc::new(Index {
                out,
                incoming,
                to_creditor,
                members,
                by_direction,
            }),
            urgency,
            rank_loss: loss.clone(),
            price: vec![0.0; slots],
            loss,
            cap_shortfall,
            lns_free_max: if n <= WIDE_NEIGHBOURHOOD_TRANSACTIONS_MAX {
                opts.neighbourhood_transactions_small
            } else {
                opts.neighbourhood_transactions
            }
            .max(1),
            lns_nodes_max: opts.neighbourhood_nodes,
            lns_nodes_left: LNS_NODES_PER_TRANSACTION * n as u64 + opts.neighbourhood_nodes,
            gopen: vec![0; inst.group_count()],
            lns_seeds_max: usize::MAX,
            guide_iterations: opts.guide_iterations,
            global_start: false,
            guide_start: false,
            lower_bound: 0.0,
            eject_candidates: opts.eject_candidates,
        }
    }

    /// The end of every start: repair, add and drop passes, then keep the
    /// result in `best` if it beats it by more than the improvement epsilon.
    fn polish_and_keep_best(&mut self, best: &mut Option<(f64, Vec<bool>)>) {
        self.repair();
        self.add_pass();
        self.drop_pass();
        let total = self.total();
        if best
            .as_ref()
            .is_none_or(|(b, _)| total < b - IMPROVEMENT_EPS_USD)
        {
            *best = Some((total, self.x.clone()));
        }
    }

    fn total(&self) -> f64 {
        self.deferral + self.wire + self.fx.cost()
    }

    fn is_feasible(&self) -> bool {
        self.bal.iter().all(|&b| b >= 0)
            && self
                .used
                .iter()
                .zip(&self.inst.limit_fixed)
                .all(|(u, l)| u <= l)
    }

    fn wire_delta(&self, t: usize, add: bool) -> f64 {
        let g = self.inst.group_of(t);
        let n = self.gn[g] as usize;
        let after = if add { n + 1 } else { n - 1 };
        self.wire_by_count[after] - self.wire_by_count[n]
    }

    fn fx_delta(&self, t: usize, add: bool) -> f64 {
        let tx = &self.inst.transactions[t];
        let v = self.inst.value_usd(t);
        let usd = if add { v } else { -v };
        self.fx.cost_with(tx.send, tx.receive, usd) - self.fx.cost()
    }

    /// Cost change of settling `t` (ignoring feasibility).
    fn delta_add(&self, t: usize) -> f64 {
        -self.inst.defer_usd(t) + self.wire_delta(t, true) + self.fx_delta(t, true)
    }

    /// Cost change of deferring settled `t`.
    fn delta_remove(&self, t: usize) -> f64 {
        self.inst.defer_usd(t) + self.wire_delta(t, false) + self.fx_delta(t, false)
    }

    fn can_add(&self, t: usize) -> bool {
        let tx = &self.inst.transactions[t];
        let (ds, cs) = (self.deb_slot[t] as usize, self.cred_slot[t] as usize);
        let mut after = self.bal[ds] - tx.amount as i128;
        if ds == cs {
            after += tx.receive_amount as i128;
        }
        let c = tx.creditor as usize;
        after >= 0 && self.used[c] + self.inst.receive_usd_fixed[t] <= self.inst.limit_fixed[c]
    }

    fn can_remove(&self, t: usize) -> bool {
        let tx = &self.inst.transactions[t];
        let (ds, cs) = (self.deb_slot[t] as usize, self.cred_slot[t] as usize);
        let mut after = self.bal[cs] - tx.receive_amount as i128;
        if ds == cs {
            after += tx.amount as i128;
        }
        after >= 0
    }

    fn set(&mut self, t: usize, on: bool) {
        self.set_deferring_fx(t, on);
        let tx = &self.inst.transactions[t];
        let v = self.inst.value_usd(t);
        self.fx.apply(tx.send, tx.receive, if on { v } else { -v });
    }

    /// `set` without pricing FX: positions only; the caller refreshes the
    /// FX state once after a bulk change.
    fn set_quietly(&mut self, t: usize, on: bool) {
        self.set_deferring_fx(t, on);
        let tx = &self.inst.transactions[t];
        if tx.send != tx.receive {
            let v = if on {
                self.inst.value_usd(t)
            } else {
                -self.inst.value_usd(t)
            };
            self.fx.pos[tx.send as usize] += v;
            self.fx.pos[tx.receive as usize] -= v;
        }
    }

    fn set_deferring_fx(&mut self, t: usize, on: bool) {
        debug_assert_ne!(self.x[t], on, "a move flips its transaction");
        let inst = self.inst;
        let tx = &inst.transactions[t];
        let sign: i128 = if on { 1 } else { -1 };
        let wire = self.wire_delta(t, on);
        self.wire += wire;
        self.deferral += if on {
            -inst.defer_usd(t)
        } else {
            inst.defer_usd(t)
        };
        self.bal[self.deb_slot[t] as usize] -= sign * tx.amount as i128;
        self.bal[self.cred_slot[t] as usize] += sign * tx.receive_amount as i128;
        self.used[tx.creditor as usize] += sign * inst.receive_usd_fixed[t];
        self.epoch += 1;
        self.slot_epoch[self.deb_slot[t] as usize] = self.epoch;
        self.slot_epoch[self.cred_slot[t] as usize] = self.epoch;
        self.participant_epoch[tx.creditor as usize] = self.epoch;
        let g = inst.group_of(t);
        if on {
            self.gn[g] += 1;
        } else {
            self.gn[g] -= 1;
        }
        self.x[t] = on;
    }

    /// The total with FX priced from the positions: after quiet moves, when
    /// the dual values are stale.
    fn quiet_total(&self) -> f64 {
        self.deferral + self.wire + self.inst.fx().cost(&self.fx.pos)
    }

    fn refresh_fx(&mut self) {
        self.fx.refresh();
    }

    /// Back to nothing settled.
    fn reset(&mut self) {
        for t in 0..self.n {
            if self.x[t] {
                self.set_quietly(t, false);
            }
        }
        self.fx.refresh();
    }

    /// Liquidity prices from the current assignment: at each balance, the
    /// least loss per minor unit among profitable debits left deferred (what
    /// one more unit there would buy), damped against the previous price;
    /// then the repair ranking charges a payment's credit at its creditor's
    /// price, so payments that fund others are deferred last.
    fn update_prices(&mut self) {
        let idx = Rc::clone(&self.idx);
        for s in 0..self.inst.slot_count() {
            let mut p = f64::INFINITY;
            for &t in idx.out.get(s) {
                let t = t as usize;
                if !self.x[t] && self.loss[t] > 0.0 {
                    p = p.min(self.loss[t] / self.inst.transactions[t].amount as f64);
                }
            }
            let p = if p.is_finite() { p } else { 0.0 };
            self.price[s] = 0.5 * (self.price[s] + p);
        }
        for t in 0..self.n {
            let r = self.inst.transactions[t].receive_amount as f64;
            self.rank_loss[t] = self.loss[t] + self.price[self.cred_slot[t] as usize] * r;
        }
    }

    /// Everything settled: the start that keeps every gridlocked cycle in.
    fn settle_all(&mut self) {
        for t in 0..self.n {
            self.set_quietly(t, true);
        }
        self.fx.refresh();
    }

    /// Defers what costs more to settle than to defer, least urgent first.
    fn drop_unprofitable(&mut self) {
        for i in (0..self.n).rev() {
            let t = self.urgency[i] as usize;
            if self.x[t] && self.delta_remove(t) < -IMPROVEMENT_EPS_USD {
                self.set(t, false);
            }
        }
    }

    /// Removes settled transactions until every balance and limit holds,
    /// cheapest loss per unit freed first. Each removal can only lower the
    /// creditor's balance, so violations cascade through a queue; it ends
    /// because every step defers one more transaction.
    fn repair(&mut self) {
        let idx = Rc::clone(&self.idx);
        let slots = self.inst.slot_count();
        let np = self.inst.participants.len();
        // Queue entries: slot s as s, participant p as slots + p. Each entry
        // is queued at most once at a time, so the queue holds at most
        // slots + participants entries.
        let mut queued = vec![false; slots + np];
        let mut queue: VecDeque<usize> = VecDeque::with_capacity(slots + np);
        let short = (0..slots).filter(|&s| self.bal[s] < 0);
        let over = (0..np)
            .filter(|&p| self.used[p] > self.inst.limit_fixed[p])
            .map(|p| slots + p);
        for e in short.chain(over) {
            queued[e] = true;
            queue.push_back(e);
        }
        while let Some(e) = queue.pop_front() {
            queued[e] = false;
            let mut removed = Vec::new();
            if e < slots {
                // Deficit in a slot: defer its debits, first those whose
                // creditor can spare the credit (no cascade), then any.
                let list = idx.out.get(e);
                while self.bal[e] < 0 {
                    let deficit = -self.bal[e];
                    let amount = &self.amount_f;
                    let Some(t) = self
                        .pick(list, deficit, amount, true)
                        .or_else(|| self.pick(list, deficit, amount, false))
                    else {
                        break;
                    };
                    removed.push(t);
                    self.set_quietly(t, false);
                }
                assert!(self.bal[e] >= 0, "deferring every debit restores a balance");
            } else {
                let p = e - slots;
                let list = idx.to_creditor.get(p);
                while self.used[p] > self.inst.limit_fixed[p] {
                    let excess = self.used[p] - self.inst.limit_fixed[p];
                    let usd = &self.limit_use_f;
                    let Some(t) = self
                        .pick(list, excess, usd, true)
                        .or_else(|| self.pick(list, excess, usd, false))
                    else {
                        break;
                    };
                    removed.push(t);
                    self.set_quietly(t, false);
                }
                assert!(
                    self.used[p] <= self.inst.limit_fixed[p],
                    "deferring every credit restores a limit"
                );
            }
            for t in removed {
                let cs = self.cred_slot[t] as usize;
                if self.bal[cs] < 0 && !queued[cs] {
                    queued[cs] = true;
                    queue.push_back(cs);
                }
            }
        }
        // Deferrals are chosen by loss, not FX: price FX once at the end.
        self.fx.refresh();
    }

    /// The settled transaction of `list` to defer to cover `shortfall`: the
    /// least loss per unit of shortfall it covers (a huge payment covering a
    /// small shortfall is charged its whole loss for that small part). With
    /// `safe`, only those whose creditor can spare the credit (no cascade).
    fn pick(&self, list: &[u32], shortfall: i128, weights: &[f64], safe: bool) -> Option<usize> {
        self.pick_except(list, shortfall, weights, safe, usize::MAX)
    }

    /// [`Search::pick`] never choosing `pinned`.
    fn pick_except(
        &self,
        list: &[u32],
        shortfall: i128,
        weights: &[f64],
        safe: bool,
        pinned: usize,
    ) -> Option<usize> {
        // In floating point: the conversions from i128 were a tenth of the
        // solve's time, and one unit either way does not change a ranking.
        let shortfall = shortfall as f64;
        let mut best: Option<(f64, usize)> = None;
        for &t in list {
            let t = t as usize;
            if !self.x[t] || t == pinned || (safe && !self.can_remove(t)) {
                continue;
            }
            let covered = if self.cap_shortfall {
                weights[t].min(shortfall)
            } else {
                weights[t]
            }
            .max(1.0);
            let score = self.rank_loss[t] / covered;
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, t));
            }
        }
        best.map(|(_, t)| t)
    }

    /// Settles deferred transactions that fit and pay off, most urgent first.
    fn add_pass(&mut self) {
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if !self.x[t]
                && !self.pinned[t]
                && self.can_add(t)
                && self.delta_add(t) < -IMPROVEMENT_EPS_USD
            {
                self.set(t, true);
            }
        }
    }

    /// Defers settled transactions whose deferral is cheaper, least urgent first.
    fn drop_pass(&mut self) {
        for i in (0..self.n).rev() {
            let t = self.urgency[i] as usize;
            if self.x[t] && self.can_remove(t) && self.delta_remove(t) < -IMPROVEMENT_EPS_USD {
                self.set(t, false);
            }
        }
    }

    /// Whole-group moves: open a group whose members only pay off together
    /// (a shared wire), or close one whose wire outweighs its deferrals.
    fn group_pass(&mut self) {
        let idx = Rc::clone(&self.idx);
        let groups = self.inst.group_count();
        for g in 0..groups {
            let list: Vec<u32> = idx.members.get(g).to_vec();
            if self.gn[g] > 0 {
                self.fill_group(&list);
            }
            if self.gn[g] == 0 {
                // Open: add members in urgency order while feasible.
                if list.len() < 2 {
                    continue;
                }
                // Optimistic gain of the whole group (netting aside) must
                // cover its wire, or opening it cannot pay.
                let gain: f64 = list
                    .iter()
                    .take(GROUP_MOVE_MAX)
                    .map(|&t| {
                        let t = t as usize;
                        let tx = &self.inst.transactions[t];
                        self.inst.defer_usd(t)
                            - self.inst.value_usd(t) * self.inst.fx().dist(tx.send, tx.receive)
                    })
                    .filter(|g| *g > 0.0)
                    .sum();
                if gain <= self.inst.group_wire_usd(2) {
                    continue;
                }
                let before = self.total();
                let mut added = Vec::new();
                for &t in list.iter().take(GROUP_MOVE_MAX) {
                    let t = t as usize;
                    if self.can_add(t) {
                        self.set(t, true);
                        added.push(t);
                    }
                }
                if added.len() < 2 || self.total() > before - IMPROVEMENT_EPS_USD {
                    for &t in added.iter().rev() {
                        self.set(t, false);
                    }
                    // Keep the best prefix-free outcome: plain revert.
                }
            } else if (self.gn[g] as usize) <= GROUP_MOVE_MAX {
                // Close: defer every settled member, if balances allow.
                // Priced before anything moves; FX can save at most reach.
                let settled: Vec<usize> = list
                    .iter()
                    .map(|&t| t as usize)
                    .filter(|&t| self.x[t])
                    .collect();
                let (creditor, currency) = self.inst.group(g);
                let cs = self.inst.slot(creditor, currency);
                let mut bal = self.bal[cs];
                let mut deferral = 0.0;
                let mut reach = 0.0;
                let mut flows = Vec::with_capacity(settled.len());
                for &t in &settled {
                    let tx = &self.inst.transactions[t];
                    bal -= tx.receive_amount as i128;
                    if self.deb_slot[t] as usize == cs {
                        bal += tx.amount as i128;
                    }
                    let v = self.inst.value_usd(t);
                    deferral += self.inst.defer_usd(t);
                    reach += v * self.inst.fx().dist(tx.send, tx.receive);
                    flows.push((tx.send, tx.receive, -v));
                }
                let wire = -self.inst.group_wire_usd(self.gn[g] as usize);
                if bal < 0 || deferral + wire - reach >= -IMPROVEMENT_EPS_USD {
                    continue;
                }
                let fx = self.fx.cost_with_many(&flows) - self.fx.cost();
                if deferral + wire + fx < -IMPROVEMENT_EPS_USD {
                    for &t in &settled {
                        self.set(t, false);
                    }
                }
            }
        }
    }

    /// Fill an open group: with a small `max_batch_size` one more payment
    /// may open a new wire that only pays off once it carries two or more,
    /// so no single add pays. Adds the deferred members (most urgent first,
    /// those that fit) one by one, pricing each exactly, and keeps the best
    /// prefix when it lowers the cost.
    fn fill_group(&mut self, list: &[u32]) {
        let before = self.total();
        let mut added: Vec<usize> = Vec::new();
        let mut best = (before - IMPROVEMENT_EPS_USD, 0usize);
        for &t in list {
            if added.len() >= GROUP_MOVE_MAX {
                break;
            }
            let t = t as usize;
            if self.x[t] || !self.can_add(t) || self.loss[t] <= 0.0 {
                continue;
            }
            self.set(t, true);
            added.push(t);
            let total = self.total();
            if total < best.0 {
                best = (total, added.len());
            }
        }
        for &t in added[best.1..].iter().rev() {
            self.set(t, false);
        }
    }

    /// One-for-one swaps: a blocked transaction that pays off takes the place
    /// of a settled one on the binding balance or limit.
    fn swap_pass(&mut self) {
        let idx = Rc::clone(&self.idx);
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if self.x[t] || self.can_add(t) {
                continue;
            }
            let gain = -self.delta_add(t);
            if gain <= IMPROVEMENT_EPS_USD {
                continue;
            }
            let tx = &self.inst.transactions[t];
            let ds = self.deb_slot[t] as usize;
            let c = tx.creditor as usize;
            let slot_short =
                tx.amount as i128 - self.bal[ds] > 0 && self.deb_slot[t] != self.cred_slot[t];
            let limit_short =
                self.used[c] + self.inst.receive_usd_fixed[t] > self.inst.limit_fixed[c];
            if slot_short && limit_short {
                continue;
            }
            let candidates: &[u32] = if slot_short {
                idx.out.get(ds)
            } else {
                idx.to_creditor.get(c)
            };
            let mut best: Option<(f64, usize)> = None;
            let mut scanned = 0;
            for &u in candidates {
                let u = u as usize;
                if !self.x[u] || u == t {
                    continue;
                }
                scanned += 1;
                if scanned > SWAP_CANDIDATES_MAX {
                    break;
                }
                let frees = if slot_short {
                    self.bal[ds] + self.inst.transactions[u].amount as i128 >= tx.amount as i128
                } else {
                    self.used[c] - self.inst.receive_usd_fixed[u] + self.inst.receive_usd_fixed[t]
                        <= self.inst.limit_fixed[c]
                };
                if !frees || !self.can_remove(u) {
                    continue;
                }
                let loss = self.delta_remove(u);
                if loss < gain && best.is_none_or(|(l, _)| loss < l) {
                    best = Some((loss, u));
                }
            }
            let Some((_, u)) = best else { continue };
            let before = self.total();
            self.set(u, false);
            if self.can_add(t) {
                self.set(t, true);
                if self.total() < before - IMPROVEMENT_EPS_USD && self.is_locally_ok(u, t) {
                    continue;
                }
                self.set(t, false);
            }
            self.set(u, true);
        }
    }

    /// After a swap (u out, t in) every balance it touched is still >= 0.
    fn is_locally_ok(&self, u: usize, t: usize) -> bool {
        [
            self.deb_slot[u],
            self.cred_slot[u],
            self.deb_slot[t],
            self.cred_slot[t],
        ]
        .iter()
        .all(|&s| self.bal[s as usize] >= 0)
    }

    /// Gridlock resolution: a deferred transaction blocked by its debtor's
    /// balance is settled together with deferred credits into that balance
    /// (which may in turn need their own debtors funded), when the set pays
    /// off as a whole though no single member could settle alone.
    fn gridlock_pass(&mut self) {
        let idx = Rc::clone(&self.idx);
        let since = self.gridlock_epoch.replace(self.epoch);
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if self.x[t] || self.can_add(t) || !self.changed_since(t, since) {
                continue;
            }
            let tx = &self.inst.transactions[t];
            let c = tx.creditor as usize;
            if self.used[c] + self.inst.receive_usd_fixed[t] > self.inst.limit_fixed[c] {
                continue;
            }
            // Only for a transaction that pays off: the set is built for it.
            if -self.delta_add(t) <= IMPROVEMENT_EPS_USD {
                continue;
            }
            let before = self.total();
            let mut added: Vec<usize> = Vec::new();
            // Settle t first (temporarily infeasible), then fund negative slots.
            // Balances only until the set is priced, once, at the end.
            self.set_quietly(t, true);
            added.push(t);
            let mut ok = true;
            let mut cursor = 0;
            while cursor < added.len() {
                let a = added[cursor];
                cursor += 1;
                let s = self.deb_slot[a] as usize;
                if self.bal[s] >= 0 {
                    continue;
                }
                // Fund slot s from deferred credits, largest first.
                let list = idx.incoming.get(s);
                for &u in list {
                    if self.bal[s] >= 0 || added.len() >= GRIDLOCK_SET_MAX {
                        break;
                    }
                    let u = u as usize;
                    if self.x[u] {
                        continue;
                    }
                    let cu = self.inst.transactions[u].creditor as usize;
                    if self.used[cu] + self.inst.receive_usd_fixed[u] > self.inst.limit_fixed[cu] {
                        continue;
                    }
                    self.set_quietly(u, true);
                    added.push(u);
                }
                if self.bal[s] < 0 {
                    ok = false;
                    break;
                }
            }
            ok = ok
                && added
                    .iter()
                    .all(|&a| self.bal[self.deb_slot[a] as usize] >= 0)
                && self.quiet_total() < before - IMPROVEMENT_EPS_USD;
            if ok {
                self.fx.refresh();
            } else {
                for &a in added.iter().rev() {
                    self.set_quietly(a, false);
                }
            }
        }
    }

    /// Ejection chains: settle a blocked payment that pays off, then repair
    /// the limit and balances it breaks the way the repair does (cheapest loss per
    /// unit of shortfall, cascading to creditors), with the payment pinned.
    /// Kept when the whole chain lowers the cost, else undone.
    fn chain_pass(&mut self) {
        let idx = Rc::clone(&self.idx);
        let since = self.chain_epoch.replace(self.epoch);
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if self.x[t] || self.can_add(t) || !self.changed_since(t, since) {
                continue;
            }
            if -self.delta_add(t) <= IMPROVEMENT_EPS_USD {
                continue;
            }
            let c = self.inst.transactions[t].creditor as usize;
            let before = self.total();
            // Balances only while the chain is built; FX is priced once at
            // the end (and the dual values resynchronised if it is kept).
            self.set_quietly(t, true);
            let mut flipped: Vec<usize> = Vec::with_capacity(CHAIN_STEPS_MAX);
            // Over the creditor's limit: defer other credits to it first.
            while self.used[c] > self.inst.limit_fixed[c] && flipped.len() < CHAIN_STEPS_MAX {
                let excess = self.used[c] - self.inst.limit_fixed[c];
                let usd = &self.limit_use_f;
                let list = idx.to_creditor.get(c);
                let Some(u) = self
                    .pick_except(list, excess, usd, true, t)
                    .or_else(|| self.pick_except(list, excess, usd, false, t))
                else {
                    break;
                };
                self.set_quietly(u, false);
                flipped.push(u);
            }
            // Slots to repair: the seed's, then one per deferral at most, so
            // the queue holds at most 2 * CHAIN_STEPS_MAX + 1 entries.
            let mut queue: VecDeque<usize> = VecDeque::with_capacity(2 * CHAIN_STEPS_MAX + 1);
            queue.push_back(self.deb_slot[t] as usize);
            for &u in &flipped {
                let cs = self.cred_slot[u] as usize;
                if self.bal[cs] < 0 && !queue.contains(&cs) {
                    queue.push_back(cs);
                }
            }
            let mut ok = self.used[c] <= self.inst.limit_fixed[c];
            while let Some(s) = queue.pop_front() {
                while self.bal[s] < 0 {
                    if flipped.len() >= CHAIN_STEPS_MAX {
                        ok = false;
                        break;
                    }
                    let shortfall = -self.bal[s];
                    let amount = &self.amount_f;
                    let list = idx.out.get(s);
                    let pick = self
                        .pick_except(list, shortfall, amount, true, t)
                        .or_else(|| self.pick_except(list, shortfall, amount, false, t));
                    let Some(u) = pick else {
                        ok = false;
                        break;
                    };
                    self.set_quietly(u, false);
                    flipped.push(u);
                    let cs = self.cred_slot[u] as usize;
                    if self.bal[cs] < 0 && !queue.contains(&cs) {
                        queue.push_back(cs);
                    }
                }
                if !ok {
                    break;
                }
            }
            if ok && self.quiet_total() < before - IMPROVEMENT_EPS_USD {
                debug_assert!(self.is_feasible());
                self.fx.refresh();
                continue;
            }
            for &u in flipped.iter().rev() {
                self.set_quietly(u, true);
            }
            self.set_quietly(t, false);
        }
    }

    /// Funding chains: settle a blocked payment that pays off, then cover
    /// every balance it overdraws by whichever is cheaper per USD covered:
    /// settling a deferred credit into that balance (a gain when the credit
    /// pays off itself; if it overdraws its own debtor, that shortfall is
    /// charged at this balance's cheapest deferral and covered next), or
    /// deferring a settled debit from it (an ejection, cascading to its
    /// creditor). Kept when the whole chain lowers the cost, else undone.
    /// This settles the circulations of large payments among banks with
    /// little liquidity that neither pure ejection chains nor pure
    /// gridlock sets reach.
    fn fund_chain_pass(&mut self, deadline: Instant) {
        if self.n > FUND_CHAIN_TRANSACTIONS_MAX {
            return;
        }
        let since = self.fund_epoch.replace(self.epoch);
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if self.x[t] || self.pinned[t] || self.can_add(t) || !self.changed_since(t, since) {
                continue;
            }
            let c = self.inst.transactions[t].creditor as usize;
            if self.used[c] + self.inst.receive_usd_fixed[t] > self.inst.limit_fixed[c] {
                continue;
            }
            if -self.delta_add(t) <= IMPROVEMENT_EPS_USD {
                continue;
            }
            // The clock only before a chain: reading it for every payment
            // was 6 % of a 1,000-transaction solve.
            if Instant::now() >= deadline {
                return;
            }
            self.try_funding_chain(t);
        }
        self.close_group_chains(deadline);
    }

    /// Ejection with refill: defer a settled payment that holds much
    /// liquidity for little loss (keeping it out), repair what its missing
    /// credit overdraws, then refill the freed balance with the add pass and
    /// funding chains; kept when the whole is cheaper, else undone. This is
    /// the trade the funding chains cannot start from: the local optimum
    /// spends a hub's liquidity on one large, cheap-to-defer payment, the
    /// optimum spends it on many dearer ones, and the circulations those
    /// fund.
    fn eject_refill_pass(&mut self, deadline: Instant) {
        // Its refill leans on the funding chains, off above this size; at
        // 10,000 transactions without them it doubled the solve's CPU for
        // 0.03-0.05 % of cost.
        if self.n > FUND_CHAIN_TRANSACTIONS_MAX {
            return;
        }
        let mut candidates: Vec<(f64, usize)> = (0..self.n)
            .filter(|&t| self.x[t])
            .map(|t| (self.loss[t].max(0.0) / self.inst.value_usd(t).max(1e-9), t))
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        candidates.truncate(self.eject_candidates);
        let mut saved = self.x.clone();
        for (_, t) in candidates {
            if Instant::now() >= deadline {
                return;
            }
            if !self.x[t] || !self.has_blocked_debit(self.deb_slot[t] as usize) {
                continue;
            }
            let before = self.total();
            saved.clone_from(&self.x);
            self.set(t, false);
            self.pinned[t] = true;
            // Spend the freed liquidity first: what it settles may be what
            // covers the creditor's loss of the credit.
            self.add_pass();
            let cs = self.cred_slot[t] as usize;
            if self.bal[cs] < 0 {
                let gain = (before - self.total()).max(0.0);
                let mut flips = Vec::with_capacity(FUND_CHAIN_STEPS_MAX);
                // Left short when it fails: the repair below finishes.
                self.cover_shortfalls(cs, &mut flips, gain);
                for &u in &flips {
                    self.pinned[u] = false;
                }
                self.refresh_fx();
            }
            self.repair();
            self.add_pass();
            self.fund_chain_pass(deadline);
            self.add_pass();
            self.pinned[t] = false;
            self.add_pass();
            self.drop_pass();
            self.refresh_fx();
            debug_assert!(self.is_feasible(), "a refilled assignment is feasible");
            if self.total() >= before - IMPROVEMENT_EPS_USD {
                self.restore(&saved);
            }
        }
    }

    /// Whether balance `s` has a deferred debit that would pay off but does
    /// not fit: what freeing liquidity there could buy.
    fn has_blocked_debit(&self, s: usize) -> bool {
        self.idx.out.get(s).iter().any(|&u| {
            !self.x[u as usize] && self.loss[u as usize] > 0.0 && !self.can_add(u as usize)
        })
    }

    /// Closing chains: defer every settled member of a small group whose
    /// wire costs more than their deferrals, when the creditor has already
    /// spent their credits, and cover that creditor the funding chains'
    /// way. Light deferral prices leave many such groups open, each kept
    /// only because closing it alone would overdraw its creditor.
    fn close_group_chains(&mut self, deadline: Instant) {
        let idx = Rc::clone(&self.idx);
        for g in 0..self.inst.group_count() {
            if Instant::now() >= deadline {
                return;
            }
            let count = self.gn[g] as usize;
            if count == 0 || count > GROUP_MOVE_MAX {
                continue;
            }
            let members: Vec<usize> = idx
                .members
                .get(g)
                .iter()
                .map(|&t| t as usize)
                .filter(|&t| self.x[t])
                .collect();
            let losses: f64 = members.iter().map(|&t| self.loss[t]).sum();
            let gain = self.inst.group_wire_usd(count) - losses;
            if gain <= IMPROVEMENT_EPS_USD {
                continue;
            }
            let (creditor, currency) = self.inst.group(g);
            let cs = self.inst.slot(creditor, currency);
            let before = self.total();
            let mut flips: Vec<usize> = Vec::with_capacity(FUND_CHAIN_STEPS_MAX + members.len());
            for &t in &members {
                self.set_quietly(t, false);
                self.pinned[t] = true;
                flips.push(t);
            }
            if self.bal[cs] >= 0 {
                // The group pass closes such groups itself (or found it
                // does not pay): leave it to that.
                for &t in flips.iter().rev() {
                    self.set_quietly(t, true);
                    self.pinned[t] = false;
                }
                continue;
            }
            let ok = self.cover_shortfalls(cs, &mut flips, gain)
                && self.quiet_total() < before - IMPROVEMENT_EPS_USD;
            self.keep_or_undo(ok, &flips);
        }
    }

    /// Ends a chain: keeps `flips` (and resynchronises FX) when `ok`, else
    /// flips them back; unpins them either way.
    fn keep_or_undo(&mut self, ok: bool, flips: &[usize]) {
        if ok {
            debug_assert!(self.is_feasible());
            self.fx.refresh();
        } else {
            for &u in flips.iter().rev() {
                let on = self.x[u];
                self.set_quietly(u, !on);
            }
        }
        for &u in flips {
            self.pinned[u] = false;
        }
    }

    /// Settles blocked `t`, covers what it overdraws (see
    /// [`Search::cover_shortfalls`]) and keeps the chain when the whole
    /// lowers the cost; otherwise undoes it. (The mirror, deferring a
    /// payment whose creditor spent its credit and covering the creditor,
    /// changed nothing on the suite but noise: 100 tx 0.89 -> 0.92 %.)
    fn try_funding_chain(&mut self, t: usize) {
        let before = self.total();
        let gain = -self.delta_add(t);
        let mut flips: Vec<usize> = Vec::with_capacity(FUND_CHAIN_STEPS_MAX);
        self.set_quietly(t, true);
        self.pinned[t] = true;
        flips.push(t);
        let ok = self.cover_shortfalls(self.deb_slot[t] as usize, &mut flips, gain)
            && self.quiet_total() < before - IMPROVEMENT_EPS_USD;
        self.keep_or_undo(ok, &flips);
    }

    /// The chain of [`Search::fund_chain_pass`] from short balance `first`:
    /// appends every flip to `flips` and pins it. False when some balance or
    /// limit could not be restored within [`FUND_CHAIN_STEPS_MAX`] flips.
    /// Gives up as soon as the losses of the flips, net of the gains of the
    /// credits settled, exceed `gain_usd` (the seed's) by more than
    /// [`FUND_CHAIN_SLACK`]: such a chain can only pay through netting,
    /// rarely by that much, and pricing it would cost more than it finds.
    fn cover_shortfalls(&mut self, first: usize, flips: &mut Vec<usize>, gain_usd: f64) -> bool {
        let idx = Rc::clone(&self.idx);
        let nc = self.inst.currencies.len();
        let txs = &self.inst.transactions;
        let mut spent_usd = 0.0;
        let mut queue: VecDeque<usize> = VecDeque::with_capacity(FUND_CHAIN_STEPS_MAX + 1);
        queue.push_back(first);
        while let Some(s) = queue.pop_front() {
            let unit = self.unit_usd[s % nc];
            while self.bal[s] < 0 {
                if flips.len() >= FUND_CHAIN_STEPS_MAX {
                    return false;
                }
                let short = -self.bal[s];
                // Cheapest deferral of a settled debit, loss per USD covered.
                let mut eject: Option<(f64, usize)> = None;
                let mut seen = 0;
                for &u in idx.out.get(s) {
                    let u = u as usize;
                    if !self.x[u] || self.pinned[u] {
                        continue;
                    }
                    seen += 1;
                    if seen > FUND_CANDIDATES_MAX {
                        break;
                    }
                    let covered = (txs[u].amount as i128).min(short) as f64 * unit;
                    let mut score = self.rank_loss[u].max(0.0) / covered.max(1e-9);
                    if !self.can_remove(u) {
                        // It overdraws its creditor: charge that as well.
                        score *= 2.0;
                    }
                    if eject.is_none_or(|(b, _)| score < b) {
                        eject = Some((score, u));
                    }
                }
                // The price of covering a new shortfall elsewhere: this
                // balance's cheapest deferral, or a prohibitive one.
                let cascade_price = eject.map_or(1.0, |(b, _)| b.max(1e-6));
                let mut fund: Option<(f64, usize)> = None;
                let mut seen = 0;
                for &v in idx.incoming.get(s) {
                    let v = v as usize;
                    if self.x[v] || self.pinned[v] {
                        continue;
                    }
                    let cv = txs[v].creditor as usize;
                    if self.used[cv] + self.inst.receive_usd_fixed[v] > self.inst.limit_fixed[cv] {
                        continue;
                    }
                    seen += 1;
                    if seen > FUND_CANDIDATES_MAX {
                        break;
                    }
                    let ds = self.deb_slot[v] as usize;
                    let debtor_unit = self.unit_usd[ds % nc];
                    let mut after = self.bal[ds] - txs[v].amount as i128;
                    if ds == s {
                        after += txs[v].receive_amount as i128;
                    }
                    let new_short = (-after).max(0) as f64 * debtor_unit;
                    let covered = (txs[v].receive_amount as i128).min(short) as f64 * unit;
                    let score = (-self.loss[v] + cascade_price * new_short) / covered.max(1e-9);
                    if fund.is_none_or(|(b, _)| score < b) {
                        fund = Some((score, v));
                    }
                }
                let pick = match (eject, fund) {
                    (Some((e, u)), Some((f, v))) => {
                        if f < e {
                            (v, true)
                        } else {
                            (u, false)
                        }
                    }
                    (Some((_, u)), None) => (u, false),
                    (None, Some((_, v))) => (v, true),
                    (None, None) => return false,
                };
                let (u, settle) = pick;
                self.set_quietly(u, settle);
                self.pinned[u] = true;
                flips.push(u);
                spent_usd += if settle { -self.loss[u] } else { self.loss[u] };
                if spent_usd > gain_usd * (1.0 + FUND_CHAIN_SLACK) {
                    return false;
                }
                let next = if settle {
                    self.deb_slot[u] as usize
                } else {
                    self.cred_slot[u] as usize
                };
                if self.bal[next] < 0 && !queue.contains(&next) {
                    queue.push_back(next);
                }
            }
        }
        true
    }

    /// Netting pairs: a deferred transaction that does not pay off alone
    /// only because of its FX cost is settled together with a deferred one
    /// flowing the opposite way, when the pair pays off (their conversions
    /// cancel).
    fn netting_pass(&mut self) {
        let idx = Rc::clone(&self.idx);
        let nc = self.inst.currencies.len();
        for i in 0..self.n {
            let t = self.urgency[i] as usize;
            if self.x[t] || !self.can_add(t) {
                continue;
            }
            let tx = &self.inst.transactions[t];
            if tx.send == tx.receive || self.delta_add(t) < -IMPROVEMENT_EPS_USD {
                continue;
            }
            // Netting can only remove the FX part: without it, it must pay.
            if self.inst.defer_usd(t) <= self.wire_delta(t, true) {
                continue;
            }
            let before = self.total();
            self.set(t, true);
            let opposite = idx
                .by_direction
                .get(tx.receive as usize * nc + tx.send as usize);
            // Opposite flows, best first, while each still gains on its
            // own: one large conversion may take several smaller ones to
            // cancel.
            let mut added: Vec<usize> = Vec::with_capacity(NETTING_SET_MAX);
            while added.len() < NETTING_SET_MAX && self.total() >= before - IMPROVEMENT_EPS_USD {
                let mut best: Option<(f64, usize)> = None;
                let mut scanned = 0;
                for &u in opposite {
                    let u = u as usize;
                    if self.x[u] || !self.can_add(u) {
                        continue;
                    }
                    scanned += 1;
                    if scanned > SWAP_CANDIDATES_MAX {
                        break;
                    }
                    let d = self.delta_add(u);
                    if best.is_none_or(|(b, _)| d < b) {
                        best = Some((d, u));
                    }
                }
                match best {
                    Some((d, u)) if d < -IMPROVEMENT_EPS_USD => {
                        self.set(u, true);
                        added.push(u);
                    }
                    _ => break,
                }
            }
            if self.total() >= before - IMPROVEMENT_EPS_USD {
                for &u in added.iter().rev() {
                    self.set(u, false);
                }
                self.set(t, false);
            }
        }
    }

    /// Exact local search: around each deferred transaction that would pay
    /// off, free a small neighbourhood (the balances it touches, the
    /// debits competing for them, the credits that could fund them, and so
    /// on outwards) and solve it exactly with everything else fixed. This
    /// finds the combined moves (defer one, settle a cycle of three) that
    /// single flips miss.
    /// Whether the balance t debits or its creditor's limit changed after
    /// move count `since` (always, without one).
    fn changed_since(&self, t: usize, since: Option<u64>) -> bool {
        since.is_none_or(|since| {
            let c = self.inst.transactions[t].creditor as usize;
            self.slot_epoch[self.deb_slot[t] as usize] > since || self.participant_epoch[c] > since
        })
    }

    fn lns_pass(&mut self, deadline: Instant) {
        let since = self.lns_epoch;
        self.lns_epoch = Some(self.epoch);
        let mut seeds: Vec<u32> = self.urgency.clone();
        if self.lns_seeds_max < self.n {
            // Largest gains first, only the first few.
            let gains: Vec<f64> = (0..self.n)
                .map(|t| if self.x[t] { 0.0 } else { -self.delta_add(t) })
                .collect();
            seeds.sort_by(|&a, &b| {
                gains[b as usize]
                    .total_cmp(&gains[a as usize])
                    .then(a.cmp(&b))
            });
            seeds.truncate(self.lns_seeds_max);
        }
        for t in seeds {
            let t = t as usize;
            if self.x[t] || -self.delta_add(t) <= LNS_SEED_GAIN_MIN_USD {
                continue;
            }
            if let Some(since) = since {
                // Nothing around t changed since its neighbourhood was solved.
                let c = self.inst.transactions[t].creditor as usize;
                if self.slot_epoch[self.deb_slot[t] as usize] <= since
                    && self.participant_epoch[c] <= since
                {
                    continue;
                }
            }
            if Instant::now() >= deadline || self.lns_nodes_left == 0 {
                return;
            }
            let free = self.neighbourhood(t);
            if free.len() < 2 {
                // t alone: the add pass already priced it.
                continue;
            }
            let total = self.total();
            let nodes_max = self.lns_nodes_max.min(self.lns_nodes_left);
            let base = Base {
                x: &self.x,
                bal: &mut self.bal,
                used: &mut self.used,
                gn: &mut self.gn,
                gopen: &mut self.gopen,
                pos: &self.fx.pos,
                vp: (!self.fx.vp.is_empty()).then_some(&self.fx.vp[..]),
                deferral: self.deferral,
                wire: self.wire,
            };
            let mut bb = Bb::new(self.inst, base, &free, nodes_max, LNS_VERTICES_MAX);
            bb.best_cost = total;
            bb.run();
            let nodes = bb.nodes();
            let moves = bb.best_moves();
            drop(bb);
            self.lns_nodes_left = self.lns_nodes_left.saturating_sub(nodes.max(1));

            if let Some(moves) = moves {
                for (f, settle) in moves {
                    if settle != self.x[f] {
                        self.set(f, settle);
                    }
                }
                debug_assert!(
                    self.is_feasible(),
                    "an exact neighbourhood move stays feasible"
                );
            }
        }
    }

    /// The free set around deferred transaction `t`, at most `lns_free_max`.
    fn neighbourhood(&self, t: usize) -> Vec<usize> {
        let idx = &self.idx;
        let mut free = vec![t];
        let mut slots: VecDeque<usize> = VecDeque::with_capacity(self.lns_free_max * 2);
        let mut seen_slots: Vec<usize> = Vec::with_capacity(self.lns_free_max * 2);
        slots.push_back(self.deb_slot[t] as usize);
        let c = self.inst.transactions[t].creditor as usize;
        if self.used[c] + self.inst.receive_usd_fixed[t] > self.inst.limit_fixed[c] {
            for &u in idx.to_creditor.get(c) {
                let u = u as usize;
                if free.len() >= self.lns_free_max / 2 {
                    break;
                }
                if self.x[u] && !free.contains(&u) {
                    free.push(u);
                    slots.push_back(self.cred_slot[u] as usize);
                }
            }
        }
        while let Some(s) = slots.pop_front() {
            if free.len() >= self.lns_free_max {
                break;
            }
            if seen_slots.contains(&s) {
                continue;
            }
            seen_slots.push(s);
            // Settled debits that could make room (cheapest first): deferring
            // one lowers its creditor's balance, which joins the search.
            // The seed's own balance gets more room: a large payment may
            // need several others deferred to fit.
            let per_slot = if seen_slots.len() == 1 {
                self.lns_free_max / 2
            } else {
                LNS_PER_SLOT
            };
            // At the seed's balance, rank by loss per unit of the seed's
            // shortfall covered (one payment that alone makes room beats
            // several cheap ones that together cost more).
            let mut ranked: Vec<u32> = idx
                .out
                .get(s)
                .iter()
                .copied()
                .filter(|&u| self.x[u as usize])
                .collect();
            if seen_slots.len() == 1 && ranked.len() > per_slot {
                let tx = &self.inst.transactions[t];
                let shortfall = (tx.amount as i128 - self.bal[s]).max(1);
                let score = |u: u32| {
                    let u = u as usize;
                    let covered = (self.inst.transactions[u].amount as i128)
                        .min(shortfall)
                        .max(1);
                    self.rank_loss[u] / covered as f64
                };
                ranked.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
            }
            let mut taken = 0;
            for &u in &ranked {
                let u = u as usize;
                if taken >= per_slot || free.len() >= self.lns_free_max {
                    break;
                }
                if self.x[u] && !free.contains(&u) {
                    free.push(u);
                    taken += 1;
                    if self.can_remove(u) {
                        slots.push_back(self.cred_slot[u] as usize);
                    } else {
                        // Its creditor needs the credit: follow the cascade first.
                        slots.push_front(self.cred_slot[u] as usize);
                    }
                }
            }
            // Deferred credits that could fund it (largest first): settling
            // one needs its debtor's balance, which joins the search.
            taken = 0;
            for &u in idx.incoming.get(s) {
                let u = u as usize;
                if taken >= LNS_PER_SLOT || free.len() >= self.lns_free_max {
                    break;
                }
                if !self.x[u] && !free.contains(&u) {
                    free.push(u);
                    taken += 1;
                    slots.push_back(self.deb_slot[u] as usize);
                }
            }
            // Other deferred debits competing for the same balance.
            taken = 0;
            for &u in idx.out.get(s).iter().rev() {
                let u = u as usize;
                if taken >= LNS_PER_SLOT / 2 || free.len() >= self.lns_free_max {
                    break;
                }
                if !self.x[u] && !free.contains(&u) {
                    free.push(u);
                    taken += 1;
                }
            }
        }
        free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three banks with no liquidity and one circulation a -> b -> c -> a:
    /// no payment settles alone, all three together do.
    fn circulation() -> Instance {
        let text = r#"{
          "version": 1, "max_batch_size": 100, "wire_usd": 5.0,
          "consolidation_discount": 0.15,
          "spread_bps": [],
          "defer_bps": {"RTGS": 50.0, "T0": 10.0, "T1": 2.0, "T2": 1.0},
          "currencies": {"USD": {"minor_units": 2, "usd_per_unit": 1.0}},
          "participants": [
            {"id": "a", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}},
            {"id": "b", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}},
            {"id": "c", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}}
          ],
          "transactions": [
            {"id": "t1", "debtor": "a", "creditor": "b", "amount": 100000000,
             "send": "USD", "receive": "USD", "window": "RTGS"},
            {"id": "t2", "debtor": "c", "creditor": "a", "amount": 100000000,
             "send": "USD", "receive": "USD", "window": "T2"},
            {"id": "t3", "debtor": "b", "creditor": "c", "amount": 100000000,
             "send": "USD", "receive": "USD", "window": "T2"}
          ]
        }"#;
        Instance::from_json(text).expect("a valid instance")
    }

    #[test]
    fn a_funding_chain_settles_a_circulation_no_payment_can_start() {
        let inst = circulation();
        let opts = SolveOptions::default();
        let mut search = Search::new(&inst, &opts, false);
        search.fx.refresh();
        assert!(
            (0..3).all(|t| !search.can_add(t)),
            "each payment is blocked alone"
        );
        let before = search.total();
        search.fund_chain_pass(Instant::now() + Duration::from_secs(10));
        assert!(search.is_feasible());
        assert!(
            search.x.iter().all(|&on| on),
            "the chain settles the whole circulation"
        );
        assert!(search.total() < before);
        assert!(search.pinned.iter().all(|&p| !p), "no payment left pinned");
    }

    #[test]
    fn a_funding_chain_that_cannot_pay_is_undone() {
        let inst = circulation();
        let opts = SolveOptions::default();
        let mut search = Search::new(&inst, &opts, false);
        // With the only credit into a pinned, nothing can cover t1.
        search.fx.refresh();
        search.pinned[1] = true;
        let before = search.total();
        search.try_funding_chain(0);
        search.pinned[1] = false;
        assert!(
            search.x.iter().all(|&on| !on),
            "everything back to deferred"
        );
        assert!((search.total() - before).abs() < 1e-9);
    }

    /// A hub `h` spends its whole balance on `t0` to `a`, which passes it on
    /// in `t1`; the dearer `t2` and `t3` from `h` are deferred. Every
    /// single move and every chain that settles one of them first loses
    /// (deferring `t0` needs `t1` deferred too: 700 USD of losses for one
    /// payment's 500), the trade of both for both saves 300 USD.
    pub(super) fn hub_trade() -> Instance {
        let text = r#"{
          "version": 1, "max_batch_size": 100, "wire_usd": 5.0,
          "consolidation_discount": 0.15,
          "spread_bps": [],
          "defer_bps": {"RTGS": 50.0, "T0": 10.0, "T1": 2.0, "T2": 1.0},
          "currencies": {"USD": {"minor_units": 2, "usd_per_unit": 1.0}},
          "participants": [
            {"id": "h", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 100000000}},
            {"id": "a", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}},
            {"id": "b", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}},
            {"id": "c", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}},
            {"id": "d", "counterparty_limit_usd": 1.0e9, "balances": {"USD": 0}}
          ],
          "transactions": [
            {"id": "t0", "debtor": "h", "creditor": "a", "amount": 100000000,
             "send": "USD", "receive": "USD", "window": "T1", "defer_usd": 350.0},
            {"id": "t1", "debtor": "a", "creditor": "d", "amount": 100000000,
             "send": "USD", "receive": "USD", "window": "T1", "defer_usd": 350.0},
            {"id": "t2", "debtor": "h", "creditor": "b", "amount": 50000000,
             "send": "USD", "receive": "USD", "window": "T0", "defer_usd": 500.0},
            {"id": "t3", "debtor": "h", "creditor": "c", "amount": 50000000,
             "send": "USD", "receive": "USD", "window": "T0", "defer_usd": 500.0}
          ]
        }"#;
        Instance::from_json(text).expect("a valid instance")
    }

    /// A search of `hub_trade` at its local optimum: t0 and t1 settled.
    fn hub_trade_stuck<'a>(inst: &'a Instance, opts: &SolveOptions) -> Search<'a> {
        let mut search = Search::new(inst, opts, false);
        search.set_quietly(0, true);
        search.set_quietly(1, true);
        search.fx.refresh();
        assert!(search.is_feasible());
        assert!(
            (search.total() - 1010.0).abs() < 1e-6,
            "1,000 deferred + 2 wires"
        );
        search
    }

    #[test]
    fn no_single_move_or_chain_leaves_the_hub_trade() {
        let inst = hub_trade();
        let opts = SolveOptions::default();
        let mut search = hub_trade_stuck(&inst, &opts);
        let deadline = Instant::now() + Duration::from_secs(10);
        search.add_pass();
        search.drop_pass();
        search.group_pass();
        search.swap_pass();
        search.gridlock_pass();
        search.netting_pass();
        search.chain_pass();
        search.fund_chain_pass(deadline);
        assert_eq!(search.x, vec![true, true, false, false], "stuck");
        assert!((search.total() - 1010.0).abs() < 1e-6);
    }

    #[test]
    fn ejection_with_refill_trades_one_cheap_payment_for_two_dear_ones() {
        let inst = hub_trade();
        let opts = SolveOptions::default();
        let mut search = hub_trade_stuck(&inst, &opts);
        search.eject_refill_pass(Instant::now() + Duration::from_secs(10));
        assert!(search.is_feasible());
        assert_eq!(search.x, vec![false, false, true, true]);
        assert!(
            (search.total() - 710.0).abs() < 1e-6,
            "700 deferred + 2 wires"
        );
        assert!(search.pinned.iter().all(|&p| !p), "no payment left pinned");
    }

    #[test]
    fn ejection_with_refill_is_off_with_no_candidates() {
        let inst = hub_trade();
        let opts = SolveOptions {
            eject_candidates: 0,
            ..SolveOptions::default()
        };
        let mut search = hub_trade_stuck(&inst, &opts);
        search.eject_refill_pass(Instant::now() + Duration::from_secs(10));
        assert_eq!(search.x, vec![true, true, false, false]);
    }

    #[test]
    fn the_oscillation_leaves_the_hub_trade_for_the_optimum() {
        let inst = hub_trade();
        let opts = SolveOptions::default();
        let mut search = hub_trade_stuck(&inst, &opts);
        search.oscillate(50, Instant::now() + Duration::from_secs(10));
        assert!(search.is_feasible());
        assert_eq!(search.x, vec![false, false, true, true]);
        assert!((search.total() - 710.0).abs() < 1e-6);
    }

    #[test]
    fn the_oscillation_never_ends_worse_than_it_starts() {
        // Already optimal: every step away is worse; it must come back.
        let inst = hub_trade();
        let opts = SolveOptions::default();
        let mut search = Search::new(&inst, &opts, false);
        search.set_quietly(2, true);
        search.set_quietly(3, true);
        search.fx.refresh();
        search.oscillate(50, Instant::now() + Duration::from_secs(10));
        assert!(search.is_feasible());
        assert!((search.total() - 710.0).abs() < 1e-6);
    }
}
