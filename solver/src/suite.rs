//! The fixed suite of `solver/suite/`: instances of [`crate::generate_family`]
//! with their optima proven by the MIP reference (`solver/reference`, CBC),
//! and the report of the optimiser against them (`settle-solver suite`).
//! Reading it needs no MIP solver: the optima are in `optima.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::check::{check, COST_TOLERANCE_USD};
use crate::solve::{solve, SolveOptions};
use crate::Instance;

/// One suite instance and what the reference proved about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteEntry {
    pub name: String,
    pub family: String,
    pub seed: u64,
    pub transactions: usize,
    pub currencies: usize,
    /// "optimal": `optimum_usd` is proven; "feasible": the reference's
    /// time limit stopped it, `optimum_usd` is the best known and
    /// `bound_usd` the MIP lower bound.
    pub status: String,
    pub optimum_usd: f64,
    pub bound_usd: f64,
    pub cbc_seconds: f64,
}

impl SuiteEntry {
    pub fn is_proven(&self) -> bool {
        self.status == "optimal"
    }
}

/// Reads `dir/optima.json`.
pub fn load_entries(dir: &Path) -> Result<Vec<SuiteEntry>, String> {
    let path = dir.join("optima.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads one suite instance.
pub fn load_instance(dir: &Path, entry: &SuiteEntry) -> Result<Instance, String> {
    let path = dir.join("instances").join(format!("{}.json", entry.name));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Instance::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The optimiser on one suite instance.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub valid: bool,
    pub cost_usd: f64,
    /// Cost above the reference's best (`optimum_usd`), USD.
    pub gap_usd: f64,
    /// `gap_usd` as a percentage of `optimum_usd`.
    pub gap_pct: f64,
    /// Fastest of the timed runs, milliseconds.
    pub solve_ms: f64,
    /// The solve's own lower bound on the optimum (0 when none).
    pub lower_bound_usd: f64,
}

/// Solves `inst` `runs` times (at least once) and checks the last answer.
pub fn run_one(inst: &Instance, entry: &SuiteEntry, opts: &SolveOptions, runs: usize) -> Outcome {
    let mut ms = f64::INFINITY;
    let mut sol = None;
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let s = solve(inst, opts);
        ms = ms.min(t0.elapsed().as_secs_f64() * 1e3);
        sol = Some(s);
    }
    let sol = sol.expect("at least one run");
    let report = check(inst, &sol.to_file(inst));
    let gap_usd = report.cost.total - entry.optimum_usd;
    Outcome {
        valid: report.valid,
        cost_usd: report.cost.total,
        gap_usd,
        gap_pct: 100.0 * gap_usd / entry.optimum_usd.max(1e-9),
        solve_ms: ms,
        lower_bound_usd: sol.lower_bound_usd.unwrap_or(0.0),
    }
}

/// Per-(family, size) summary line of a suite run.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub count: usize,
    pub valid: usize,
    /// Within [`COST_TOLERANCE_USD`] of the reference's best.
    pub equal: usize,
    /// Σ cost and Σ optimum: the aggregate gap.
    pub cost_sum: f64,
    pub optimum_sum: f64,
    pub gap_pct_max: f64,
    pub ms: Vec<f64>,
    /// Σ of the solves' own lower bounds.
    pub bound_sum: f64,
}

impl Tally {
    pub fn add(&mut self, o: &Outcome, entry: &SuiteEntry) {
        self.count += 1;
        self.valid += usize::from(o.valid);
        self.equal += usize::from(o.gap_usd < COST_TOLERANCE_USD);
        self.cost_sum += o.cost_usd;
        self.optimum_sum += entry.optimum_usd;
        self.gap_pct_max = self.gap_pct_max.max(o.gap_pct);
        self.ms.push(o.solve_ms);
        self.bound_sum += o.lower_bound_usd;
    }

    /// How far below the optimum the solves' own bounds are, aggregate
    /// percent of the optimum: what "at most X % above optimal" claims cost.
    pub fn bound_gap_pct(&self) -> f64 {
        100.0 * (self.optimum_sum - self.bound_sum) / self.optimum_sum.max(1e-9)
    }

    pub fn gap_pct(&self) -> f64 {
        100.0 * (self.cost_sum - self.optimum_sum) / self.optimum_sum.max(1e-9)
    }

    /// (median, max) solve time, ms.
    pub fn ms_median_max(&self) -> (f64, f64) {
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => (0.0, 0.0),
            n => (v[n / 2], v[n - 1]),
        }
    }
}

/// Tallies keyed by (size, family); family "ALL" sums a size.
pub type Report = BTreeMap<(usize, String), Tally>;

/// Runs the optimiser on every entry the filter keeps.
pub fn run_suite(
    dir: &Path,
    opts: &SolveOptions,
    runs: usize,
    keep: impl Fn(&SuiteEntry) -> bool,
    mut each: impl FnMut(&SuiteEntry, &Outcome),
) -> Result<Report, String> {
    let mut report = Report::new();
    for entry in load_entries(dir)?.iter().filter(|e| keep(e)) {
        let inst = load_instance(dir, entry)?;
        let o = run_one(&inst, entry, opts, runs);
        each(entry, &o);
        for family in [entry.family.as_str(), "ALL"] {
            report
                .entry((entry.transactions, family.to_string()))
                .or_default()
                .add(&o, entry);
        }
    }
    Ok(report)
}
