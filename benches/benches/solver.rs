//! Solver benchmarks: time to solve generated instances of 100, 1,000 and
//! 10,000 transactions over 4 and 8 currencies, plus (printed once, outside
//! the timing) the savings against naive and the gap to the exact optimum
//! where exact mode can compute it.
//!
//! `cargo bench -p settle-benches --bench solver`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use settle_solver::{
    check, exact, generate_instance, solve, ExactLimits, GenOptions, Instance, SolveOptions,
};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const CURRENCIES: [usize; 2] = [4, 8];

fn instance(seed: u64, transactions: usize, currencies: usize) -> Instance {
    let mut opts = GenOptions::new(seed, transactions);
    opts.currencies = currencies;
    generate_instance(&opts).expect("generated instances are valid")
}

/// The search's own time, not the production cap: a budget it never hits.
fn options() -> SolveOptions {
    SolveOptions {
        time_budget: Duration::from_secs(10),
        ..SolveOptions::default()
    }
}

/// Quality figures, printed once: savings vs naive per size, and the gap of
/// the heuristic alone (no exact finish) to the proven optimum on instances
/// exact mode can solve.
fn report_quality() {
    for currencies in CURRENCIES {
        for n in SIZES {
            let inst = instance(1, n, currencies);
            let sol = solve(&inst, &options());
            let valid = check(&inst, &sol.to_file(&inst)).valid;
            println!(
                "quality {currencies} ccy {n} tx: cost {:.2} naive {:.2} savings {:.2}% settled {}/{n} valid {valid}",
                sol.cost.total,
                sol.naive_cost.total,
                sol.savings_pct(),
                sol.settled_count()
            );
        }
        // No exact optimum at 1,000: compare with a far longer search
        // (four starts, neighbourhoods of 40) as the best known.
        let inst = instance(1, 1_000, currencies);
        let default = solve(&inst, &options());
        let thorough = SolveOptions {
            starts: 4,
            neighbourhood_transactions: 40,
            neighbourhood_nodes: 50_000,
            ..options()
        };
        let best_known = solve(&inst, &thorough);
        println!(
            "gap {currencies} ccy 1000 tx: default {:.2} vs best known {:.2} (thorough search): {:.3}%",
            default.cost.total,
            best_known.cost.total,
            100.0 * (default.cost.total - best_known.cost.total) / best_known.cost.total
        );
        let heuristic_only = SolveOptions {
            exact_transactions_max: 0,
            ..options()
        };
        for n in [12usize, 30, 50] {
            let (mut h, mut e, mut worst) = (0.0, 0.0, 0.0f64);
            let mut solved = 0;
            for seed in 0..10 {
                let inst = instance(seed, n, currencies);
                let limits = ExactLimits {
                    transactions_max: 64,
                    nodes_max: 50_000_000,
                };
                let Some(ex) = exact(&inst, &limits) else {
                    continue;
                };
                let sol = solve(&inst, &heuristic_only);
                h += sol.cost.total;
                e += ex.cost.total;
                worst =
                    worst.max(100.0 * (sol.cost.total - ex.cost.total) / ex.cost.total.max(1e-9));
                solved += 1;
            }
            println!(
                "gap {currencies} ccy {n} tx: heuristic alone vs exact over {solved} instances: aggregate {:.3}%, worst {worst:.3}%",
                100.0 * (h - e) / e.max(1e-9)
            );
        }
    }
}

fn bench_solve(c: &mut Criterion) {
    report_quality();
    let mut group = c.benchmark_group("solve");
    group.sample_size(10);
    for currencies in CURRENCIES {
        for n in SIZES {
            let inst = instance(1, n, currencies);
            let opts = options();
            group.bench_with_input(
                BenchmarkId::new(format!("{currencies}ccy"), n),
                &inst,
                |b, inst| b.iter(|| black_box(solve(black_box(inst), &opts))),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_solve);
criterion_main!(benches);
