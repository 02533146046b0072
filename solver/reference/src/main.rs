//! `settle-solver-reference`: the exact yardstick of the optimiser. It
//! writes the batching contract (`shared/spec/batching.md`) as a
//! mixed-integer program and solves it with CBC, and makes the fixed suite
//! of `solver/suite/` (instances with their proven optima).
//!
//! For tests and benchmarks only, never a dependency of the node: it is its
//! own workspace, so the main build and CI never compile it or need CBC.
//! Building it needs Debian's `coinor-libcbc-dev`.

mod mip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use settle_solver::{exact, generate_family, solve, ExactLimits, Instance, SolveOptions, FAMILIES};

use mip::{solve_mip, MipStatus};

#[derive(Parser)]
#[command(name = "settle-solver-reference", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Solve INSTANCE's MIP with CBC; print the status, the optimum (priced by
    /// settle-solver's own coster) and CBC's bound as JSON.
    Solve {
        instance: PathBuf,
        /// CBC time limit, seconds.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
    /// Print the LP relaxation of INSTANCE's balance and limit rows (wire
    /// and FX dropped): the best bound the solver's liquidity prices can reach.
    Lp { instance: PathBuf },
    /// Generate the fixed suite into DIR (instances/NAME.json and
    /// optima.json) and solve each instance with CBC. Entries already in
    /// optima.json are kept (rerun to fill in a tier that was stopped).
    Suite {
        /// Output directory [default: solver/suite].
        #[arg(long, default_value = "solver/suite")]
        out: PathBuf,
        /// Sizes to generate (transactions per instance).
        #[arg(long, value_delimiter = ',', default_value = "10,30,100,1000")]
        sizes: Vec<usize>,
        /// CBC time limit per instance up to 100 transactions, seconds.
        #[arg(long, default_value_t = 60.0)]
        seconds_small: f64,
        /// CBC time limit per larger instance, seconds.
        #[arg(long, default_value_t = 90.0)]
        seconds_large: f64,
    },
}

/// One suite instance and what CBC proved about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    family: String,
    seed: u64,
    transactions: usize,
    currencies: usize,
    /// "optimal": `optimum_usd` is proven (CBC's gap closed, to within
    /// `GAP_ABS_USD`); "feasible": the time limit stopped CBC, so
    /// `optimum_usd` is the best known and `bound_usd` the MIP lower bound.
    status: String,
    /// Cost of CBC's best settled set, priced by settle-solver's coster
    /// (and checked feasible by exact integer arithmetic).
    optimum_usd: f64,
    /// CBC's lower bound.
    bound_usd: f64,
    cbc_seconds: f64,
}

/// Seeds per (family, size) tier, and the currencies each seed uses.
fn tier(size: usize) -> Vec<(u64, usize)> {
    match size {
        0..=30 => vec![(0, 2), (1, 4), (2, 8), (3, 10), (4, 3), (5, 4)],
        31..=300 => vec![(0, 4), (1, 8), (2, 2), (3, 10), (4, 6), (5, 4)],
        _ => vec![(0, 4), (1, 8)],
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn heuristic_incumbent(inst: &Instance) -> Vec<bool> {
    let opts = SolveOptions {
        time_budget: Duration::from_secs(10),
        starts: 4,
        ..SolveOptions::default()
    };
    solve(inst, &opts).settled
}

fn run_suite(out: &Path, sizes: &[usize], small: f64, large: f64) -> Result<(), String> {
    let dir = out.join("instances");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let manifest = out.join("optima.json");
    let mut entries: BTreeMap<String, Entry> = match std::fs::read_to_string(&manifest) {
        Ok(text) => serde_json::from_str::<Vec<Entry>>(&text)
            .map_err(|e| format!("{}: {e}", manifest.display()))?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    for &size in sizes {
        for family in FAMILIES {
            for (seed, currencies) in tier(size) {
                let name = format!("{family}-{size}-{currencies}c-s{seed}");
                if entries.contains_key(&name) {
                    continue;
                }
                let text =
                    generate_family(family, seed, size, currencies).expect("a family of FAMILIES");
                let inst = Instance::from_json(&text).map_err(|e| format!("{name}: {e}"))?;
                let seconds = if size <= 100 { small } else { large };
                let incumbent = heuristic_incumbent(&inst);
                let r = solve_mip(&inst, seconds, Some(&incumbent))?;
                // Two independent exact methods must agree where both can run.
                if size <= 30 {
                    let limits = ExactLimits {
                        transactions_max: 30,
                        nodes_max: 20_000_000,
                    };
                    if let Some(bb) = exact(&inst, &limits) {
                        if (bb.cost.total - r.cost).abs() >= 0.02 {
                            return Err(format!(
                                "{name}: CBC {} but settle-solver's exact branch and bound {}",
                                r.cost, bb.cost.total
                            ));
                        }
                    }
                }
                let status = match r.status {
                    MipStatus::Optimal => "optimal",
                    MipStatus::Feasible => "feasible",
                };
                eprintln!(
                    "{name}: {status} {:.4} bound {:.4} in {:.1} s",
                    r.cost, r.bound, r.seconds
                );
                std::fs::write(dir.join(format!("{name}.json")), &text)
                    .map_err(|e| format!("{name}: {e}"))?;
                entries.insert(
                    name.clone(),
                    Entry {
                        name,
                        family: family.to_string(),
                        seed,
                        transactions: size,
                        currencies,
                        status: status.to_string(),
                        optimum_usd: r.cost,
                        bound_usd: r.bound,
                        cbc_seconds: (r.seconds * 10.0).round() / 10.0,
                    },
                );
                // After every instance: a stopped run keeps what it proved.
                let list: Vec<&Entry> = entries.values().collect();
                let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
                std::fs::write(&manifest, text + "\n")
                    .map_err(|e| format!("{}: {e}", manifest.display()))?;
            }
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Solve { instance, seconds } => {
            let inst = Instance::from_json(&read(&instance)?)
                .map_err(|e| format!("{}: {e}", instance.display()))?;
            let incumbent = heuristic_incumbent(&inst);
            let r = solve_mip(&inst, seconds, Some(&incumbent))?;
            let out = serde_json::json!({
                "status": match r.status { MipStatus::Optimal => "optimal", MipStatus::Feasible => "feasible" },
                "optimum_usd": r.cost,
                "bound_usd": r.bound,
                "settled": r.settled.iter().filter(|&&s| s).count(),
                "settled_ids": inst.transactions.iter().zip(&r.settled).filter(|(_, &s)| s).map(|(t, _)| t.id.clone()).collect::<Vec<_>>(),
                "cbc_seconds": r.seconds,
            });
            println!("{out}");
        }
        Command::Lp { instance } => {
            let inst = Instance::from_json(&read(&instance)?)
                .map_err(|e| format!("{}: {e}", instance.display()))?;
            println!("{}", mip::liquidity_lp_bound(&inst));
        }
        Command::Suite {
            out,
            sizes,
            seconds_small,
            seconds_large,
        } => run_suite(&out, &sizes, seconds_small, seconds_large)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("settle-solver-reference: {message}");
            ExitCode::from(2)
        }
    }
}
