//! Quick quality/time report: `cargo run --release -p settle-solver --example eval -- N [CURRENCIES] [SEEDS]`.

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
        let heur_opts = SolveOptions {
            exact_transactions_max: 0,
            ..SolveOptions::default()
        };
        let t0 = Instant::now();
        let sol = solve(&inst, &heur_opts);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
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
