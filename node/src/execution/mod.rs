//! Execution: turning a decided cycle's batches into wires on payment rails.
//!
//! Each batch becomes a [`SettlementInstruction`]; the [`ExecutionEngine`]
//! sends it over its currency's route of [`PaymentRail`]s, retries on the
//! [`BackoffSchedule`], skips rails whose [`CircuitBreaker`] is open or that
//! cannot reach the counterparty, and when everything fails reports
//! `Failed` then `Reversed` so the caller restores balances through the log.
//!
//! Deterministic and runtime-free: time comes in as `now_us` (from a
//! [`Clock`]), rails are simulated in-process with seeded randomness
//! ([`SimulatedRail`]) and faults are injected by tests. This module must
//! not know about shards, Raft or the log: it returns events, the caller
//! makes them durable.

pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod engine;
pub mod error;
pub mod event;
pub mod instruction;
pub mod rail;
pub mod route;

#[cfg(test)]
mod tests;

pub use backoff::{BackoffError, BackoffSchedule, BACKOFF_RETRIES_MAX, DEFAULT_RETRY_DELAYS_US};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    ExecutionConfig, ExecutionEngine, SimulatedRails, ATTEMPTS_PER_POLL_MAX,
    PENDING_INSTRUCTIONS_MAX, RAILS_MAX,
};
pub use error::{ConfigError, EnqueueError};
pub use event::{ExecutionEvent, ExecutionEventKind, FailureReason};
pub use instruction::{
    SettlementInstruction, DEFAULT_MAX_RETRIES, INSTRUCTION_TRANSACTIONS_MAX, MAX_RETRIES_LIMIT,
};
pub use rail::{
    PaymentRail, RailConfigError, RailOutcome, RailProfile, RailStats, RejectReason, SimulatedRail,
    TimeWindow, Unavailability,
};
pub use route::{RailId, Route, ROUTE_ALTERNATES_MAX};
