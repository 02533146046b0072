//! What a shard's log entries say: the commands its state machine applies.
//!
//! Encoded with rkyv into the opaque payload of a Raft entry, so the log
//! store moves bytes without knowing transactions, and applying reads the
//! transactions zero-copy after validation.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use settle_codec::Transaction;

/// Most transactions in one log entry: everything that reached a shard
/// leader while the previous append was in flight, up to this bound, which
/// keeps an entry (~48 B per transaction) within a few MiB.
pub const ENTRY_TRANSACTIONS_MAX: usize = 65_536;

/// A command in a shard's log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ShardCommand {
    /// Accept transactions: the leader's clock stamps the entry so the 24 h
    /// dedup window is the same on every replica.
    Submit {
        leader_ts_us: u64,
        transactions: Vec<Transaction>,
    },
}

/// A payload that failed validation: only a bug or a corrupt replica can
/// produce one, since the log checksums every record.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("shard command does not validate: {0}")]
    Invalid(String),
    #[error("shard command holds {0} transactions, more than {ENTRY_TRANSACTIONS_MAX}")]
    TooLarge(usize),
}

/// Encodes a submit command from borrowed transactions.
pub fn encode_submit(leader_ts_us: u64, transactions: &[Transaction]) -> AlignedVec<16> {
    assert!(
        transactions.len() <= ENTRY_TRANSACTIONS_MAX,
        "the batcher bounds entries"
    );
    let command = ShardCommand::Submit {
        leader_ts_us,
        transactions: transactions.to_vec(),
    };
    rkyv::to_bytes::<rancor::Error>(&command)
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
        _ => Ok(archived),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::{Currency, ParticipantId, Window};

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
        let bytes = encode_submit(99, &[tx, tx]);
        match access(&bytes).unwrap() {
            ArchivedShardCommand::Submit {
                leader_ts_us,
                transactions,
            } => {
                assert_eq!(leader_ts_us.to_native(), 99);
                assert_eq!(transactions.len(), 2);
                assert_eq!(transactions[1].to_native(), tx);
            }
        }
        let mut garbage = AlignedVec::<16>::new();
        garbage.extend_from_slice(&[0xff; 64]);
        assert!(access(&garbage).is_err());
    }
}
