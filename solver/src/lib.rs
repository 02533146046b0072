//! settle-solver: the batching contract of `shared/spec/batching.md`.
//!
//! It owns parsing and validating an instance, the naive baseline, the
//! independent checker and coster of any solution, the optimiser (greedy,
//! repair, local search, gridlock resolution, FX netting) and an exact branch
//! and bound for small instances. It must not know about shards, logs,
//! networks or clocks beyond the solve's own time budget: the node hands it an
//! [`Instance`] and gets a [`Solution`] back, in-process, deterministically.

pub mod decimal;
pub mod fx;
pub mod suite;

mod bound;
mod check;
mod exact;
mod families;
mod gen;
mod model;
mod solution;
mod solve;

pub use check::{check, CheckReport, CHECK_ERRORS_MAX, COST_TOLERANCE_USD};
pub use decimal::Decimal;
pub use exact::{exact, ExactLimits};
pub use families::{generate_family, FAMILIES};
pub use fx::{FxGraph, FxTrade};
pub use gen::{generate, generate_instance, GenOptions};
pub use model::{
    Currency, Instance, InstanceBuilder, InstanceError, Pair, Participant, Transaction, Window,
    INSTANCE_VERSION,
};
pub use solution::{
    evaluate, is_feasible, naive, positions, price, Batch, BatchFile, Cost, FxTradeFile, Solution,
    SolutionFile,
};
pub use solve::{solve, SolveOptions};
