//! Quick quality/time report of the heuristic (no exact finish) on
//! generated instances, with the exact optimum when it can be computed:
//! `cargo run --release -p settle-solver --example eval -- N [CURRENCIES] [SEEDS]`.
//! Knobs (env): NB, NODES, STARTS, BUDGET_MS map to `SolveOptions`.

use std::time::Instant;

use settle_solver::{
    check, exact, generate_instance, naive, solve, ExactLimits, GenOptions, SolveOptions,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let nc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let seeds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    for seed in 0..seeds {
        let mut opts = GenOptions::new(seed, n);
        opts.currencies = nc;
        let inst = generate_instance(&opts).expect("generated instance is valid");
        let mut heur_opts = SolveOptions {
            exact_transactions_max: 0,
            ..SolveOptions::default()
        };
        if let Ok(v) = std::env::var("NB") {
            heur_opts.neighbourhood_transactions = v.parse().unwrap();
        }
        if let Ok(v) = std::env::var("STARTS") {
            heur_opts.starts = v.parse().unwrap();
        }
        if let Ok(v) = std::env::var("NODES") {
            heur_opts.neighbourhood_nodes = v.parse().unwrap();
        }
        if let Ok(v) = std::env::var("BUDGET_MS") {
            heur_opts.time_budget = std::time::Duration::from_millis(v.parse().unwrap());
        }
        // Minimum of a few runs: robust to a busy machine.
        let mut ms = f64::INFINITY;
        let mut sol = solve(&inst, &heur_opts);
        for _ in 0..5 {
            let t0 = Instant::now();
            sol = solve(&inst, &heur_opts);
            ms = ms.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        let report = check(&inst, &sol.to_file(&inst));
        let nv = naive(&inst);
        let ex = if n <= 60 {
            exact(
                &inst,
                &ExactLimits {
                    transactions_max: 60,
                    nodes_max: 50_000_000,
                },
            )
            .map(|s| s.cost.total)
        } else {
            None
        };
        let gap = ex.map(|e| 100.0 * (sol.cost.total - e) / e.max(1e-9));
        println!(
            "seed {seed}: n={n} settled {}/{} cost {:.2} (fx {:.2} wire {:.2} defer {:.2}) naive {:.2} savings {:.2}% valid {} {:.3} ms exact {:?} gap {:?} duals {:?}",
            sol.settled_count(), n, sol.cost.total, sol.cost.fx, sol.cost.wire, sol.cost.deferral,
            nv.cost.total, sol.savings_pct(), report.valid, ms, ex, gap,
            inst.fx().dual_vertices().map(|d| d.count)
        );
        if !report.valid {
            println!(
                "  errors: {:?}",
                &report.errors[..report.errors.len().min(5)]
            );
        }
    }
}
