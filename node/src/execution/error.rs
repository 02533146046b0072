//! Typed errors of the execution engine: bad configuration, refused work.

use settle_codec::Currency;

use super::backoff::BackoffError;
use super::route::RailId;

/// The engine's configuration or routing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("backoff: {0}")]
    Backoff(#[from] BackoffError),
    #[error("a breaker must open after at least one failure")]
    BreakerThreshold,
    #[error("queue capacity {capacity} is outside 1..={max}")]
    QueueCapacity { capacity: usize, max: usize },
    #[error("at most {max} rails")]
    TooManyRails { max: usize },
    #[error("{rail} is not registered")]
    UnknownRail { rail: RailId },
    #[error("a route lists {alternates} alternates, at most {max}")]
    TooManyAlternates { alternates: usize, max: usize },
    #[error("a route lists {rail} twice")]
    DuplicateRail { rail: RailId },
}

/// An instruction the engine would not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// Back-pressure: the caller holds the instruction and tries again
    /// after the engine has drained.
    #[error("execution queue is full ({capacity} instructions)")]
    QueueFull { capacity: usize },
    #[error("instruction {instruction_id} is already pending")]
    Duplicate { instruction_id: u64 },
    #[error("no route for {currency}")]
    NoRoute { currency: Currency },
    #[error("instruction {instruction_id} has amount 0")]
    ZeroAmount { instruction_id: u64 },
    #[error("instruction {instruction_id} allows {max_retries} retries, at most {limit}")]
    TooManyRetries {
        instruction_id: u64,
        max_retries: u32,
        limit: u32,
    },
    #[error(
        "instruction {instruction_id} has made {retry_count} retries of {max_retries} allowed"
    )]
    RetriesAlreadySpent {
        instruction_id: u64,
        retry_count: u32,
        max_retries: u32,
    },
    #[error("instruction {instruction_id} carries {len} transactions, at most {max}")]
    TooManyTransactions {
        instruction_id: u64,
        len: usize,
        max: usize,
    },
}
