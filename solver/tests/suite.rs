//! The optimiser against the fixed suite (`solver/suite/`): 240 instances of
//! twelve generator families with optima proven by the MIP reference (CBC,
//! `solver/reference`). Needs no MIP solver: the optima are committed.
//!
//! Pins: every solution valid and costed as the checker costs it; equal to
//! the proven optimum (within the contract's 0.02 USD) up to 30
//! transactions; and, as a regression guard, aggregate gaps at 100 and
//! 1,000 transactions no worse than measured when the suite was made (the
//! issue's target, equality at 100, is not met yet; see BENCHMARKS.md).
//! Search bounded by work, not by the clock, so the result is the same on
//! a slow debug build.
//!
//! The larger tiers take minutes in a debug build (the search's debug
//! assertions recheck feasibility after moves, and the 10-currency market
//! prices FX by min-cost flow), so the default run solves every instance
//! up to 30 transactions and one in eight above (validity only); the
//! whole 100 and 1,000 tiers and their guards run with
//! `cargo test --release -p settle-solver --test suite -- --ignored`.

use std::path::Path;
use std::time::Duration;

use settle_solver::suite::{load_entries, load_instance, run_one};
use settle_solver::{SolveOptions, COST_TOLERANCE_USD};

/// Aggregate gap (Σ cost / Σ optimum − 1) allowed per size, percent: the
/// measured figure plus a margin for changes that trade a little on one
/// family for more on another (fourth pass of issue 15, the exact LNS:
/// 0.069 % at 100, 0.76 % at 1,000; the guards were 0.6 and 2.0 after the
/// third pass, 2.0 and 3.5 before it).
const GAP_PCT_MAX: [(usize, f64); 2] = [(100, 0.2), (1_000, 1.1)];

fn suite_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
}

fn options() -> SolveOptions {
    SolveOptions {
        // A cap the work bounds always stop under: deterministic.
        time_budget: Duration::from_secs(120),
        ..SolveOptions::default()
    }
}

/// The default run's options: the defaults without the ruin-and-recreate
/// phase and the second start, which multiply a debug build's time (the
/// exact finish, not they, makes instances up to 30 transactions optimal).
fn quick_options() -> SolveOptions {
    SolveOptions {
        ruin_work: 0,
        global_repair: false,
        ..options()
    }
}

#[test]
fn suite_is_valid_and_optimal_up_to_30_transactions() {
    run(
        |size, index| size <= 30 || index % 8 == 0,
        &[],
        &quick_options(),
    );
}

#[test]
#[ignore = "minutes in a debug build: run with --release -- --ignored"]
fn suite_at_100_and_1000_is_valid_and_within_the_guards() {
    run(|size, _| size > 30, &GAP_PCT_MAX, &options());
}

/// Solves the entries `keep(transactions, index within its size)` admits
/// and checks them; each guard applies to the size it names.
fn run(keep: impl Fn(usize, usize) -> bool, guards: &[(usize, f64)], opts: &SolveOptions) {
    let dir = suite_dir();
    let entries = load_entries(dir).expect("the committed suite");
    assert!(
        entries.len() >= 200,
        "the suite has {} entries",
        entries.len()
    );
    let mut failures = Vec::new();
    let mut sums = vec![(0.0f64, 0.0f64); guards.len()];
    let mut seen_per_size = std::collections::BTreeMap::<usize, usize>::new();
    for entry in &entries {
        let index = seen_per_size.entry(entry.transactions).or_default();
        let admitted = keep(entry.transactions, *index);
        *index += 1;
        if !admitted {
            continue;
        }
        let inst = load_instance(dir, entry).expect("a committed instance parses");
        let o = run_one(&inst, entry, opts, 1);
        if !o.valid {
            failures.push(format!("{}: invalid solution", entry.name));
        }
        // Never below a proven optimum (that would be a checker or MIP bug).
        if entry.is_proven() && o.gap_usd <= -COST_TOLERANCE_USD {
            failures.push(format!(
                "{}: cost {} below the proven optimum {}",
                entry.name, o.cost_usd, entry.optimum_usd
            ));
        }
        // The solve's own lower bound must be a bound.
        if o.lower_bound_usd > entry.optimum_usd + COST_TOLERANCE_USD {
            failures.push(format!(
                "{}: lower bound {} above the optimum {}",
                entry.name, o.lower_bound_usd, entry.optimum_usd
            ));
        }
        if entry.transactions <= 30 && entry.is_proven() && o.gap_usd >= COST_TOLERANCE_USD {
            failures.push(format!(
                "{}: cost {} above the proven optimum {} ({:.4} %)",
                entry.name, o.cost_usd, entry.optimum_usd, o.gap_pct
            ));
        }
        for (i, &(size, _)) in guards.iter().enumerate() {
            if entry.transactions == size {
                sums[i].0 += o.cost_usd;
                sums[i].1 += entry.optimum_usd;
            }
        }
    }
    for (i, &(size, max)) in guards.iter().enumerate() {
        let (cost, best) = sums[i];
        assert!(best > 0.0, "the suite has {size}-transaction instances");
        let gap = 100.0 * (cost - best) / best;
        if gap > max {
            failures.push(format!(
                "{size} transactions: aggregate gap {gap:.3} % above the guard {max} %"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
