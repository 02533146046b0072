//! What the engine reports: one event per step of an instruction's life.
//!
//! Four kinds are audit events (`SETTLEMENT_INITIATED`, `_CONFIRMED`,
//! `_FAILED`, `_REVERSED`); reroutes and scheduled retries are operational
//! detail for metrics and logs.

use settle_codec::TxEventKind;

use super::instruction::SettlementInstruction;
use super::rail::RejectReason;
use super::route::RailId;

/// Why an attempt on a rail did not settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Rejected {
        reason: RejectReason,
        retryable: bool,
    },
    RailUnavailable,
    CounterpartyUnavailable,
    /// Not sent: the rail's circuit breaker is open.
    BreakerOpen,
    /// No route exists for the instruction's currency.
    NoRoute,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Rejected { reason, .. } => reason.as_str(),
            FailureReason::RailUnavailable => "rail_unavailable",
            FailureReason::CounterpartyUnavailable => "counterparty_unavailable",
            FailureReason::BreakerOpen => "breaker_open",
            FailureReason::NoRoute => "no_route",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionEventKind {
    /// The instruction's life began: its first submission to a rail (or,
    /// if every rail was skipped, the end of its first attempt). Always the
    /// first audit event, once.
    Initiated,
    /// `rail` could not take the wire; the next rail of the route is tried
    /// in the same attempt.
    Rerouted { reason: FailureReason },
    /// The attempt failed; the next one is due at `next_attempt_us`.
    RetryScheduled {
        reason: FailureReason,
        next_attempt_us: u64,
    },
    /// The rail confirmed settlement, `latency_us` after submission.
    Confirmed { latency_us: u64 },
    /// No more attempts: a final rejection, or retries exhausted.
    Failed {
        reason: FailureReason,
        retries_exhausted: bool,
    },
    /// Follows `Failed`: the caller appends a log entry that restores the
    /// balances this instruction's batch moved.
    Reversed { instruction: SettlementInstruction },
}

/// One event about one instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionEvent {
    /// When it happened (a confirmation: when the rail confirmed).
    pub at_us: u64,
    pub instruction_id: u64,
    pub batch_id: u64,
    pub cycle_id: u64,
    /// The attempt (from 1) the event belongs to.
    pub attempt: u32,
    /// The rail involved; `None` only when no rail was (no route).
    pub rail: Option<RailId>,
    pub kind: ExecutionEventKind,
}

impl ExecutionEvent {
    /// The audit event this is, if it is one.
    pub fn audit_kind(&self) -> Option<TxEventKind> {
        match self.kind {
            ExecutionEventKind::Initiated => Some(TxEventKind::SettlementInitiated),
            ExecutionEventKind::Confirmed { .. } => Some(TxEventKind::SettlementConfirmed),
            ExecutionEventKind::Failed { .. } => Some(TxEventKind::SettlementFailed),
            ExecutionEventKind::Reversed { .. } => Some(TxEventKind::SettlementReversed),
            ExecutionEventKind::Rerouted { .. } | ExecutionEventKind::RetryScheduled { .. } => None,
        }
    }
}
