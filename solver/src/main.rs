//! `settle-solver`: solve, cost, check and generate batching instances.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use settle_solver::{
    check, generate, naive, solve, GenOptions, Instance, SolutionFile, SolveOptions,
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
            print_json(&solve(&inst, &opts).to_file(&inst))?;
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
