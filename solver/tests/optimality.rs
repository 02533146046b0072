//! Exact mode against brute force, the optimiser against exact mode, and
//! the properties every answer must have (valid under `check`, costs that
//! agree with the recomputation, never worse than naive).

use proptest::prelude::*;
use settle_solver::{
    check, evaluate, exact, generate_instance, naive, solve, ExactLimits, GenOptions, Instance,
    SolveOptions,
};

/// The optimum by enumerating every subset of transactions.
fn brute_force(inst: &Instance) -> f64 {
    let n = inst.transactions.len();
    assert!(n <= 16, "brute force is for tiny instances");
    let mut best = f64::INFINITY;
    for mask in 0u32..(1 << n) {
        let settled: Vec<bool> = (0..n).map(|t| mask & (1 << t) != 0).collect();
        if let Some(cost) = evaluate(inst, &settled) {
            best = best.min(cost.total);
        }
    }
    best
}

fn small_instances() -> Vec<Instance> {
    let mut out = Vec::new();
    for n in [1usize, 3, 5, 7, 9, 10, 11, 12] {
        for seed in 0..3u64 {
            for currencies in [4, 8] {
                let mut opts = GenOptions::new(seed * 100 + n as u64, n);
                opts.currencies = currencies;
                // Few banks: more cycles, more gridlock, tighter choices.
                opts.participants = Some(3 + (seed as usize % 3));
                out.push(generate_instance(&opts).expect("generated instance is valid"));
            }
        }
    }
    out
}

#[test]
fn exact_mode_equals_brute_force_and_the_optimiser_equals_exact() {
    let mut settled_some = 0;
    let mut deferred_some = 0;
    for inst in small_instances() {
        let optimum = brute_force(&inst);
        let ex = exact(&inst, &ExactLimits::default()).expect("small instances are solved exactly");
        assert!(
            (ex.cost.total - optimum).abs() < 1e-6,
            "exact {} vs brute force {optimum}",
            ex.cost.total
        );
        let sol = solve(&inst, &SolveOptions::default());
        assert!(
            (sol.cost.total - optimum).abs() < 1e-6,
            "optimiser {} vs optimum {optimum} on {} transactions",
            sol.cost.total,
            inst.transactions.len()
        );
        settled_some += usize::from(sol.settled_count() > 0);
        deferred_some += usize::from(sol.settled_count() < inst.transactions.len());
    }
    // The instances exercise both decisions, so the comparison means something.
    assert!(
        settled_some > 10 && deferred_some > 10,
        "{settled_some} {deferred_some}"
    );
}

#[test]
fn heuristic_alone_stays_close_to_exact_on_medium_instances() {
    // Without the exact finish: the search itself. Gap measured, bounded.
    let opts = SolveOptions {
        exact_transactions_max: 0,
        ..SolveOptions::default()
    };
    let (mut heuristic, mut optimum) = (0.0, 0.0);
    for seed in 0..6u64 {
        let inst = generate_instance(&GenOptions::new(seed, 30)).unwrap();
        let ex = exact(&inst, &ExactLimits::default()).expect("30 transactions solve exactly");
        let sol = solve(&inst, &opts);
        assert!(
            sol.cost.total >= ex.cost.total - 1e-6,
            "nothing beats the optimum"
        );
        heuristic += sol.cost.total;
        optimum += ex.cost.total;
    }
    let gap = 100.0 * (heuristic - optimum) / optimum;
    assert!(
        gap < 2.0,
        "aggregate gap {gap:.3}% on 30-transaction instances"
    );
}

#[test]
fn exact_mode_refuses_instances_beyond_its_limits() {
    let inst = generate_instance(&GenOptions::new(1, 50)).unwrap();
    let limits = ExactLimits {
        transactions_max: 20,
        ..ExactLimits::default()
    };
    assert!(exact(&inst, &limits).is_none());
}

fn assert_valid_and_agreeing(inst: &Instance, sol: &settle_solver::Solution, what: &str) {
    let file = sol.to_file(inst);
    let report = check(inst, &file);
    assert!(report.valid, "{what}: {:?}", report.errors);
    assert!(
        (report.cost.total - sol.cost.total).abs() < 0.02,
        "{what}: cost disagrees"
    );
    assert_eq!(
        file.settled.len() + file.deferred.len(),
        inst.transactions.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_solution_is_valid_and_costed_right(
        seed in 0u64..10_000,
        n in 0usize..120,
        eight in any::<bool>(),
        participants in 2usize..30,
        max_batch_size in 1u32..6,
    ) {
        let mut opts = GenOptions::new(seed, n);
        opts.currencies = if eight { 8 } else { 4 };
        opts.participants = Some(participants);
        opts.max_batch_size = max_batch_size;
        let inst = generate_instance(&opts).unwrap();
        let base = naive(&inst);
        assert_valid_and_agreeing(&inst, &base, "naive");
        let sol = solve(&inst, &SolveOptions::default());
        assert_valid_and_agreeing(&inst, &sol, "solve");
        prop_assert!(sol.cost.total <= base.cost.total + 1e-6, "never worse than naive");
        prop_assert!((sol.naive_cost.total - base.cost.total).abs() < 1e-9);
        prop_assert!(sol.savings_pct() >= -1e-9);
        for b in &sol.batches {
            prop_assert!(!b.transactions.is_empty() && b.transactions.len() <= max_batch_size as usize);
        }
    }
}

#[test]
fn solve_is_deterministic() {
    let inst = generate_instance(&GenOptions::new(7, 400)).unwrap();
    // A budget no debug build reaches: the result depends on the input only.
    let opts = SolveOptions {
        time_budget: std::time::Duration::from_secs(600),
        ..SolveOptions::default()
    };
    let a = solve(&inst, &opts);
    let b = solve(&inst, &opts);
    assert_eq!(a.settled, b.settled);
    assert_eq!(a.batches, b.batches);
    assert_eq!(a.fx_trades, b.fx_trades);
    assert_eq!(a.cost, b.cost);
}
