//! `settle-solver`: solve, cost, check and generate batching instances.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use settle_solver::{
    check, generate, naive, solve, suite, GenOptions, Instance, SolutionFile, SolveOptions,
};

/// The batching optimiser of settle (contract: shared/spec/batching.md).
///
/// Exit status: 0 ok, 1 `check` found the solution invalid, 2 bad input file.
#[derive(Parser)]
#[command(name = "settle-solver", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the suite's knobs make its variant large, and
// boxing them would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Print the optimised solution JSON of INSTANCE.
    Solve {
        instance: PathBuf,
        /// Wall-clock cap on the search, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        time_budget_ms: u64,
    },
    /// Print the naive baseline (in order, one wire each, no netting) as a solution JSON.
    Naive { instance: PathBuf },
    /// Check SOLUTION against INSTANCE: validity, errors and the recomputed cost.
    Check {
        instance: PathBuf,
        solution: PathBuf,
    },
    /// Run the optimiser on the fixed suite (instances with proven optima,
    /// see solver/reference) and print its gap per size and family.
    Suite {
        /// The suite directory (optima.json and instances/).
        #[arg(long, default_value = "solver/suite")]
        dir: PathBuf,
        /// Timed runs per instance (the fastest is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only instances with at most this many transactions.
        #[arg(long)]
        max_transactions: Option<usize>,
        /// Only instances with at least this many transactions.
        #[arg(long)]
        min_transactions: Option<usize>,
        /// Only this family.
        #[arg(long)]
        family: Option<String>,
        /// Only instances with this many currencies.
        #[arg(long)]
        currencies: Option<usize>,
        /// Also print one line per instance.
        #[arg(long)]
        verbose: bool,
        /// Wall-clock cap on each solve, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        time_budget_ms: u64,
        /// Override SolveOptions::starts.
        #[arg(long)]
        starts: Option<usize>,
        /// Override SolveOptions::exact_transactions_max.
        #[arg(long)]
        exact_max: Option<usize>,
        /// Override SolveOptions::neighbourhood_transactions (and its
        /// small-instance counterpart).
        #[arg(long)]
        neighbourhood: Option<usize>,
        /// Override SolveOptions::ruin_work.
        #[arg(long)]
        ruin_work: Option<usize>,
        /// Override SolveOptions::guide_iterations.
        #[arg(long)]
        guide: Option<usize>,
        /// Override SolveOptions::bound_iterations.
        #[arg(long)]
        bound_iterations: Option<usize>,
        /// Override SolveOptions::neighbourhood_nodes.
        #[arg(long)]
        neighbourhood_nodes: Option<u64>,
        /// Override SolveOptions::global_repair.
        #[arg(long)]
        global_repair: Option<bool>,
        /// Override SolveOptions::oscillation_work (0: no strategic oscillation).
        #[arg(long)]
        oscillation_work: Option<usize>,
        /// Override SolveOptions::eject_candidates (0: no ejection with refill).
        #[arg(long)]
        eject_candidates: Option<usize>,
        /// Override SolveOptions::lns_subproblems (0: no exact sub-problems).
        #[arg(long)]
        lns_subproblems: Option<usize>,
        /// Override SolveOptions::lns_free_transactions.
        #[arg(long)]
        lns_free: Option<usize>,
        /// Override SolveOptions::lns_nodes.
        #[arg(long)]
        lns_nodes: Option<u64>,
        /// Override SolveOptions::lns_relaxation.
        #[arg(long)]
        lns_relaxation: Option<bool>,
        /// Override SolveOptions::lns_groups.
        #[arg(long)]
        lns_groups: Option<bool>,
    },
    /// Print a realistic generated instance (seeded: same flags, same file).
    Gen {
        /// Random seed.
        #[arg(long)]
        seed: u64,
        /// Number of transactions.
        #[arg(long)]
        transactions: usize,
        /// Currencies: 4 (USD EUR GBP JPY) or 8 (adds CHF CAD AUD SGD).
        #[arg(long, default_value_t = 4, value_parser = parse_currencies)]
        currencies: usize,
        /// Participants [default: transactions / 10, within 8..=200].
        #[arg(long)]
        participants: Option<usize>,
        /// max_batch_size of the generated instance.
        #[arg(long, default_value_t = 100)]
        max_batch_size: u32,
    },
}

fn parse_currencies(s: &str) -> Result<usize, String> {
    match s {
        "4" => Ok(4),
        "8" => Ok(8),
        _ => Err(format!("must be 4 or 8, got {s}")),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_instance(path: &Path) -> Result<Instance, String> {
    Instance::from_json(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Solve {
            instance,
            time_budget_ms,
        } => {
            let inst = load_instance(&instance)?;
            let opts = SolveOptions {
                time_budget: Duration::from_millis(time_budget_ms),
                ..SolveOptions::default()
            };
            let sol = solve(&inst, &opts);
            // The spec's file plus optional fields (readers that do not know
            // them ignore them): the bound and how far above it the cost is.
            let mut file = serde_json::to_value(sol.to_file(&inst)).map_err(|e| e.to_string())?;
            if let (Some(lb), Some(gap), Some(map)) = (
                sol.lower_bound_usd,
                sol.gap_to_bound_pct(),
                file.as_object_mut(),
            ) {
                map.insert("lower_bound_usd".into(), serde_json::json!(lb));
                map.insert("gap_to_bound_pct".into(), serde_json::json!(gap));
            }
            print_json(&file)?;
        }
        Command::Suite {
            dir,
            runs,
            max_transactions,
            min_transactions,
            family,
            currencies,
            verbose,
            time_budget_ms,
            starts,
            exact_max,
            neighbourhood,
            ruin_work,
            guide,
            bound_iterations,
            neighbourhood_nodes,
            global_repair,
            oscillation_work,
            eject_candidates,
            lns_subproblems,
            lns_free,
            lns_nodes,
            lns_relaxation,
            lns_groups,
        } => {
            let mut opts = SolveOptions {
                time_budget: Duration::from_millis(time_budget_ms),
                ..SolveOptions::default()
            };
            if let Some(v) = starts {
                opts.starts = v;
            }
            if let Some(v) = exact_max {
                opts.exact_transactions_max = v;
            }
            if let Some(v) = neighbourhood {
                opts.neighbourhood_transactions = v;
                opts.neighbourhood_transactions_small = v;
            }
            if let Some(v) = ruin_work {
                opts.ruin_work = v;
            }
            if let Some(v) = guide {
                opts.guide_iterations = v;
            }
            if let Some(v) = bound_iterations {
                opts.bound_iterations = v;
            }
            if let Some(v) = oscillation_work {
                opts.oscillation_work = v;
            }
            if let Some(v) = eject_candidates {
                opts.eject_candidates = v;
            }
            if let Some(v) = lns_subproblems {
                opts.lns_subproblems = v;
            }
            if let Some(v) = lns_free {
                opts.lns_free_transactions = v;
                opts.lns_free_transactions_small = v;
            }
            if let Some(v) = lns_nodes {
                opts.lns_nodes = v;
            }
            if let Some(v) = lns_relaxation {
                opts.lns_relaxation = v;
            }
            if let Some(v) = lns_groups {
                opts.lns_groups = v;
            }
            if let Some(v) = neighbourhood_nodes {
                opts.neighbourhood_nodes = v;
            }
            if let Some(v) = global_repair {
                opts.global_repair = v;
            }
            let keep = |e: &suite::SuiteEntry| {
                max_transactions.is_none_or(|m| e.transactions <= m)
                    && min_transactions.is_none_or(|m| e.transactions >= m)
                    && family.as_ref().is_none_or(|f| &e.family == f)
                    && currencies.is_none_or(|c| e.currencies == c)
            };
            let report = suite::run_suite(&dir, &opts, runs, keep, |e, o| {
                if verbose {
                    println!(
                        "{:<32} {:>8} cost {:>12.4} best {:>12.4} ({}) gap {:>8.4} % {:>8.3} ms{}",
                        e.name,
                        e.transactions,
                        o.cost_usd,
                        e.optimum_usd,
                        e.status,
                        o.gap_pct,
                        o.solve_ms,
                        if o.valid { "" } else { " INVALID" }
                    );
                }
            })?;
            println!(
                "{:>6} {:<14} {:>4} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "tx",
                "family",
                "n",
                "valid",
                "equal",
                "gap %",
                "max %",
                "med ms",
                "max ms",
                "bound %"
            );
            for ((size, family), t) in &report {
                let (med, max) = t.ms_median_max();
                println!(
                    "{size:>6} {family:<14} {:>4} {:>6} {:>6} {:>9.4} {:>9.4} {med:>9.3} {max:>9.3} {:>9.2}",
                    t.count,
                    t.valid,
                    t.equal,
                    t.gap_pct(),
                    t.gap_pct_max,
                    t.bound_gap_pct()
                );
            }
        }
        Command::Naive { instance } => {
            let inst = load_instance(&instance)?;
            print_json(&naive(&inst).to_file(&inst))?;
        }
        Command::Check { instance, solution } => {
            let inst = load_instance(&instance)?;
            let sol: SolutionFile = serde_json::from_str(&read(&solution)?)
                .map_err(|e| format!("{}: malformed solution JSON: {e}", solution.display()))?;
            let report = check(&inst, &sol);
            print_json(&report)?;
            if !report.valid {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Gen {
            seed,
            transactions,
            currencies,
            participants,
            max_batch_size,
        } => {
            if participants.is_some_and(|p| p < 2) {
                return Err("--participants must be at least 2".to_string());
            }
            if max_batch_size == 0 {
                return Err("--max-batch-size must be at least 1".to_string());
            }
            let opts = GenOptions {
                seed,
                transactions,
                currencies,
                participants,
                max_batch_size,
            };
            println!("{}", generate(&opts));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("settle-solver: {message}");
            ExitCode::from(2)
        }
    }
}
