//! Intake validation: is this transaction something the engine can own?
//!
//! Runs on the core that received the request, before anything is logged,
//! against the node's current participant snapshot and shard map. A
//! rejection names the reason and the field at fault; nothing rejected is
//! ever written to a log.

use settle_codec::{Field, RejectReason, Transaction};

use crate::participants::Registry;
use crate::shard::ShardMap;

/// Largest amount accepted in one transaction, in minor units. Keeps every
/// USD valuation and balance sum far from u64 overflow (2^63 / 10^6).
pub const AMOUNT_MAX: u64 = 1_000_000_000_000_000; // 10^15 minor units

/// A rejection: why, and which field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Field,
}

impl Rejection {
    const fn new(reason: RejectReason, field: Field) -> Self {
        Rejection { reason, field }
    }
}

/// Checks one transaction. Fields are checked in wire order so the first
/// fault reported is the first a reader would see.
pub fn validate(
    tx: &Transaction,
    participants: &Registry,
    shards: &ShardMap,
) -> Result<(), Rejection> {
    if !participants.contains(tx.debtor) {
        return Err(Rejection::new(RejectReason::UnknownDebtor, Field::Debtor));
    }
    if !participants.contains(tx.creditor) {
        return Err(Rejection::new(
            RejectReason::UnknownCreditor,
            Field::Creditor,
        ));
    }
    if tx.debtor == tx.creditor {
        return Err(Rejection::new(RejectReason::SameParty, Field::Creditor));
    }
    if tx.amount == 0 {
        return Err(Rejection::new(RejectReason::ZeroAmount, Field::Amount));
    }
    if tx.amount > AMOUNT_MAX {
        return Err(Rejection::new(RejectReason::AmountTooLarge, Field::Amount));
    }
    // The send currency picks the shard: it must be one this engine shards.
    if shards.shard_of(tx.send).is_none() {
        return Err(Rejection::new(RejectReason::UnknownCurrency, Field::Send));
    }
    // The receive currency is credited in its own shard: it must be served too.
    if shards.shard_of(tx.receive).is_none() {
        return Err(Rejection::new(
            RejectReason::UnknownCurrency,
            Field::Receive,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participants::Participant;
    use settle_codec::{Currency, ParticipantId, Window};
    use std::collections::BTreeMap;

    fn registry() -> Registry {
        Registry::new((0..3).map(|i| Participant {
            id: ParticipantId(i),
            counterparty_limit_usd: 1e9,
            balances: BTreeMap::new(),
        }))
    }

    fn good() -> Transaction {
        Transaction {
            id: 1,
            debtor: ParticipantId(0),
            creditor: ParticipantId(1),
            amount: 100,
            send: Currency::from_code("USD").unwrap(),
            receive: Currency::from_code("EUR").unwrap(),
            window: Window::Rtgs,
            client_timestamp_us: 0,
        }
    }

    #[test]
    fn each_fault_names_its_reason_and_field() {
        let (reg, map) = (registry(), ShardMap::default_currencies());
        assert_eq!(validate(&good(), &reg, &map), Ok(()));
        let chf = Currency::from_code("CHF").unwrap();
        let cases: Vec<(Transaction, RejectReason, Field)> = vec![
            (
                Transaction {
                    debtor: ParticipantId(9),
                    ..good()
                },
                RejectReason::UnknownDebtor,
                Field::Debtor,
            ),
            (
                Transaction {
                    creditor: ParticipantId(9),
                    ..good()
                },
                RejectReason::UnknownCreditor,
                Field::Creditor,
            ),
            (
                Transaction {
                    creditor: ParticipantId(0),
                    ..good()
                },
                RejectReason::SameParty,
                Field::Creditor,
            ),
            (
                Transaction {
                    amount: 0,
                    ..good()
                },
                RejectReason::ZeroAmount,
                Field::Amount,
            ),
            (
                Transaction {
                    amount: AMOUNT_MAX + 1,
                    ..good()
                },
                RejectReason::AmountTooLarge,
                Field::Amount,
            ),
            (
                Transaction {
                    send: chf,
                    ..good()
                },
                RejectReason::UnknownCurrency,
                Field::Send,
            ),
            (
                Transaction {
                    receive: chf,
                    ..good()
                },
                RejectReason::UnknownCurrency,
                Field::Receive,
            ),
            (
                Transaction {
                    send: Currency(1),
                    ..good()
                },
                RejectReason::UnknownCurrency,
                Field::Send,
            ),
        ];
        for (tx, reason, field) in cases {
            assert_eq!(
                validate(&tx, &reg, &map),
                Err(Rejection { reason, field }),
                "{tx:?}"
            );
        }
    }
}
