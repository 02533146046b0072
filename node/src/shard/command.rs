//! What a shard's log entries say: the commands its state machine applies.
//!
//! Encoded with rkyv into the opaque payload of a Raft entry, so the log
//! store moves bytes without knowing transactions, and applying reads the
//! transactions zero-copy after validation. Every command carries the
//! leader's timestamp: the shard's clock (dedup window, audit times) moves
//! only by what its log says.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use settle_codec::messages::MAX_CYCLE_TRANSACTIONS;
use settle_codec::{Currency, ParticipantId, Transaction, Window};

use super::cycles::{BatchOutcome, CycleApply};

/// Most transactions in one log entry: everything that reached a shard
/// leader while the previous append was in flight, up to this bound, which
/// keeps an entry (~48 B per transaction) within a few MiB.
pub const ENTRY_TRANSACTIONS_MAX: usize = 65_536;

/// Most credits in one cycle apply: one per creditor of the cycle.
pub const APPLY_CREDITS_MAX: usize = 2 * MAX_CYCLE_TRANSACTIONS;

/// Most accounts opened by one entry (a registry is opened in chunks).
pub const OPENINGS_MAX: usize = 4_096;

/// Most wire outcomes in one entry: the execution engine's pending bound.
pub const EXECUTION_OUTCOMES_MAX: usize = 4_096;

/// A command in a shard's log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ShardCommand {
    /// Accept transactions: the leader's clock stamps the entry so the 24 h
    /// dedup window is the same on every replica.
    /// `books` is the shard's own currency: transactions that send another
    /// currency only reserve their id here, their home shard.
    Submit {
        leader_ts_us: u64,
        books: Currency,
        transactions: Vec<Transaction>,
    },
    /// Set opening balances in this shard's currency (once per participant).
    Open {
        leader_ts_us: u64,
        openings: Vec<(ParticipantId, u64)>,
    },
    /// An operator's deposit, idempotent by `deposit_id`. A deposit of
    /// another `currency` than `books` (the shard's own) only reserves its
    /// id here, its home shard.
    Deposit {
        leader_ts_us: u64,
        books: Currency,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    },
    /// Freeze up to `candidates_max` waiting transactions of `window` as
    /// cycle `cycle_id`'s candidates.
    CycleClose {
        leader_ts_us: u64,
        cycle_id: u64,
        window: Window,
        candidates_max: u32,
    },
    /// Apply this shard's legs of a decided cycle.
    CycleApply {
        leader_ts_us: u64,
        apply: CycleApply,
    },
    /// Payment rails' final answers for batches in flight.
    Execution {
        leader_ts_us: u64,
        outcomes: Vec<BatchOutcome>,
    },
}

/// A payload that failed validation: only a bug or a corrupt replica can
/// produce one, since the log checksums every record.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("shard command does not validate: {0}")]
    Invalid(String),
    #[error("shard command holds {0} items, more than its bound")]
    TooLarge(usize),
}

/// Encodes a submit command from borrowed transactions.
pub fn encode_submit(
    leader_ts_us: u64,
    books: Currency,
    transactions: &[Transaction],
) -> AlignedVec<16> {
    assert!(
        transactions.len() <= ENTRY_TRANSACTIONS_MAX,
        "the batcher bounds entries"
    );
    let command = ShardCommand::Submit {
        leader_ts_us,
        books,
        transactions: transactions.to_vec(),
    };
    encode(&command)
}

/// Encodes any command (the bounds are the caller's invariants).
pub fn encode(command: &ShardCommand) -> AlignedVec<16> {
    match command {
        ShardCommand::CycleApply { apply, .. } => {
            assert!(apply.legs.len() <= MAX_CYCLE_TRANSACTIONS);
            assert!(apply.credits.len() <= APPLY_CREDITS_MAX);
        }
        ShardCommand::Open { openings, .. } => assert!(openings.len() <= OPENINGS_MAX),
        ShardCommand::Execution { outcomes, .. } => {
            assert!(outcomes.len() <= EXECUTION_OUTCOMES_MAX)
        }
        _ => {}
    }
    rkyv::to_bytes::<rancor::Error>(command)
        .expect("serializing plain data into memory cannot fail")
}

/// Validates an encoded command. `bytes` must be 16-byte aligned: copy into
/// an [`AlignedVec`] first when it comes from an unaligned buffer.
pub fn access(bytes: &[u8]) -> Result<&ArchivedShardCommand, CommandError> {
    let archived = rkyv::access::<ArchivedShardCommand, rancor::Error>(bytes)
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    match archived {
        ArchivedShardCommand::Submit { transactions, .. }
            if transactions.len() > ENTRY_TRANSACTIONS_MAX =>
        {
            Err(CommandError::TooLarge(transactions.len()))
        }
        ArchivedShardCommand::Open { openings, .. } if openings.len() > OPENINGS_MAX => {
            Err(CommandError::TooLarge(openings.len()))
        }
        ArchivedShardCommand::Execution { outcomes, .. }
            if outcomes.len() > EXECUTION_OUTCOMES_MAX =>
        {
            Err(CommandError::TooLarge(outcomes.len()))
        }
        ArchivedShardCommand::CycleApply { apply, .. }
            if apply.legs.len() > MAX_CYCLE_TRANSACTIONS
                || apply.credits.len() > APPLY_CREDITS_MAX =>
        {
            Err(CommandError::TooLarge(
                apply.legs.len().max(apply.credits.len()),
            ))
        }
        _ => Ok(archived),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::cycles::{DecisionFacts, Leg};
    use settle_codec::{ParticipantId, Window};

    #[test]
    fn submit_round_trips_and_garbage_is_an_error() {
        let tx = Transaction {
            id: 42,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: 7,
            send: Currency::from_code("GBP").unwrap(),
            receive: Currency::from_code("GBP").unwrap(),
            window: Window::T2,
            client_timestamp_us: 3,
        };
        let bytes = encode_submit(99, Currency::GBP, &[tx, tx]);
        match access(&bytes).unwrap() {
            ArchivedShardCommand::Submit {
                leader_ts_us,
                books,
                transactions,
            } => {
                assert_eq!(leader_ts_us.to_native(), 99);
                assert_eq!(Currency::from(books), Currency::GBP);
                assert_eq!(transactions.len(), 2);
                assert_eq!(transactions[1].to_native(), tx);
            }
            other => panic!("not a submit: {other:?}"),
        }
        let mut garbage = AlignedVec::<16>::new();
        garbage.extend_from_slice(&[0xff; 64]);
        assert!(access(&garbage).is_err());
    }

    #[test]
    fn cycle_commands_round_trip() {
        let apply = CycleApply {
            cycle_id: 4,
            decision: DecisionFacts {
                decision_index: 10,
                optimized_at_us: 1,
                decided_at_us: 2,
                achieved_at_us: 3,
                fallback: true,
            },
            confirm: true,
            legs: vec![Leg::Settled {
                batch: 2,
                receive_amount: 5,
            }],
            credits: vec![(ParticipantId(9), 5)],
            incoming: vec![(2, ParticipantId(9), 5)],
        };
        let command = ShardCommand::CycleApply {
            leader_ts_us: 8,
            apply,
        };
        let bytes = encode(&command);
        let archived = access(&bytes).unwrap();
        let back: ShardCommand =
            rkyv::deserialize::<ShardCommand, rancor::Error>(archived).unwrap();
        assert_eq!(back, command);
    }
}
