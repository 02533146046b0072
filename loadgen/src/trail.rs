//! Is a transaction's audit trail a legal history? `verify` checks every
//! acknowledged id's trail with [`check_trail`]; the nemesis relies on it
//! to prove that nothing was settled twice, or both settled and pending.
//!
//! A trail (see the node's `shard::state::events`) is, leaving retries
//! (`TRANSACTION_DEDUPED`, any time after the submission) aside:
//!
//! ```text
//! SUBMITTED
//!   [ deferral:  BATCH_CREATED [OPTIMIZED CONSENSUS_SUBMITTED ACHIEVED] [ROLLED] ]
//!   [ candidate: BATCH_CREATED ]
//!   [ settled:   BATCH_CREATED OPTIMIZED CONSENSUS_SUBMITTED ACHIEVED INITIATED
//!                [CONFIRMED | FAILED REVERSED] ]
//! ```
//!
//! and its status must agree with it: `Settled` has a settlement that was
//! not reversed, `Failed` one that was, `Pending` and `Deferred` none.

use settle_codec::{LookupItem, TxEventKind, TxStatus};

/// One letter per event kind, so a trail reads as a short word in errors.
fn letter(kind: TxEventKind) -> char {
    match kind {
        TxEventKind::TransactionSubmitted => 'S',
        TxEventKind::TransactionDeduped => 'd',
        TxEventKind::BatchCreated => 'C',
        TxEventKind::BatchOptimized => 'O',
        TxEventKind::ConsensusSubmitted => 'P',
        TxEventKind::ConsensusAchieved => 'A',
        TxEventKind::SettlementInitiated => 'I',
        TxEventKind::SettlementConfirmed => 'K',
        TxEventKind::SettlementFailed => 'F',
        TxEventKind::SettlementReversed => 'V',
        TxEventKind::TransactionRolled => 'R',
    }
}

/// The deferral part of a legal trail.
const DEFERRALS: [&str; 5] = ["", "C", "COPA", "CR", "COPAR"];
/// The candidacy part (frozen in an open cycle).
const CANDIDACIES: [&str; 2] = ["", "C"];
/// The settlement part, by the status it leaves.
const SETTLEMENTS: [(&str, &[TxStatus]); 4] = [
    ("", &[TxStatus::Pending, TxStatus::Deferred]),
    ("COPAI", &[TxStatus::Settled]),
    ("COPAIK", &[TxStatus::Settled]),
    ("COPAIFV", &[TxStatus::Failed]),
];

/// The trail as a word, e.g. `SdCOPAIK` (see [`letter`]).
pub fn trail_word(item: &LookupItem) -> String {
    item.events.iter().map(|e| letter(e.kind)).collect()
}

/// Ok if `item`'s trail is a legal history that agrees with its status;
/// otherwise what is wrong with it.
pub fn check_trail(item: &LookupItem) -> Result<(), String> {
    let word = trail_word(item);
    let core: String = word.chars().filter(|&c| c != 'd').collect();
    if !word.starts_with('S') {
        return Err(format!("trail {word} does not start with its submission"));
    }
    let rest = &core[1..];
    let status_ok = DEFERRALS.iter().any(|deferral| {
        CANDIDACIES.iter().any(|candidacy| {
            SETTLEMENTS.iter().any(|(settlement, statuses)| {
                rest.len() == deferral.len() + candidacy.len() + settlement.len()
                    && rest.starts_with(deferral)
                    && rest[deferral.len()..].starts_with(candidacy)
                    && rest.ends_with(settlement)
                    && statuses.contains(&item.status)
            })
        })
    });
    if !status_ok {
        return Err(format!(
            "trail {word} is not a legal history for status {:?}",
            item.status
        ));
    }
    let first = &item.events[0];
    if let Some(e) = item
        .events
        .iter()
        .find(|e| e.amount != first.amount || e.currency != first.currency)
    {
        return Err(format!(
            "trail {word}: a {} event names {} {:?}, the submission {} {:?}",
            e.kind.as_str(),
            e.amount,
            e.currency,
            first.amount,
            first.currency
        ));
    }
    // The cycle that settled it is a later one than any that deferred it.
    let settled_in = item
        .events
        .iter()
        .find(|e| e.kind == TxEventKind::SettlementInitiated)
        .map(|e| e.cycle_id);
    let deferred_in = item
        .events
        .iter()
        .filter(|e| e.kind == TxEventKind::ConsensusAchieved)
        .map(|e| e.cycle_id)
        .find(|&c| Some(c) != settled_in);
    if let (Some(settled), Some(deferred)) = (settled_in, deferred_in) {
        if settled <= deferred {
            return Err(format!(
                "trail {word}: settled in cycle {settled}, not after the cycle {deferred} that deferred it"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::tx::{Actor, EventDetail};
    use settle_codec::{Currency, TxEvent};

    fn item(status: TxStatus, kinds: &[(TxEventKind, u64)]) -> LookupItem {
        LookupItem {
            id: 7,
            status,
            events: kinds
                .iter()
                .map(|&(kind, cycle_id)| TxEvent {
                    group: 1,
                    entry_index: 1,
                    at_us: 1,
                    kind,
                    cycle_id,
                    batch: 0,
                    amount: 100,
                    currency: Currency::USD,
                    actor: Actor::Shard,
                    detail: EventDetail::None,
                })
                .collect(),
        }
    }

    use TxEventKind::*;

    const SETTLED: [TxEventKind; 7] = [
        TransactionSubmitted,
        BatchCreated,
        BatchOptimized,
        ConsensusSubmitted,
        ConsensusAchieved,
        SettlementInitiated,
        SettlementConfirmed,
    ];

    #[test]
    fn a_settled_deferred_and_pending_trail_are_legal() {
        let settled: Vec<_> = SETTLED.iter().map(|&k| (k, 2)).collect();
        assert_eq!(check_trail(&item(TxStatus::Settled, &settled)), Ok(()));
        let mut deferred_then_settled = vec![
            (TransactionSubmitted, 0),
            (TransactionDeduped, 0),
            (BatchCreated, 1),
            (BatchOptimized, 1),
            (ConsensusSubmitted, 1),
            (ConsensusAchieved, 1),
        ];
        deferred_then_settled.extend(SETTLED[1..].iter().map(|&k| (k, 2)));
        assert_eq!(
            check_trail(&item(TxStatus::Settled, &deferred_then_settled)),
            Ok(())
        );
        let pending = [(TransactionSubmitted, 0), (BatchCreated, 3)];
        assert_eq!(check_trail(&item(TxStatus::Pending, &pending)), Ok(()));
    }

    #[test]
    fn settled_and_pending_at_once_is_illegal() {
        let settled: Vec<_> = SETTLED.iter().map(|&k| (k, 2)).collect();
        let e = check_trail(&item(TxStatus::Pending, &settled)).unwrap_err();
        assert!(e.contains("SCOPAIK"), "{e}");
    }

    #[test]
    fn settled_twice_is_illegal() {
        let mut twice: Vec<_> = SETTLED.iter().map(|&k| (k, 2)).collect();
        twice.extend(SETTLED[1..].iter().map(|&k| (k, 3)));
        assert!(check_trail(&item(TxStatus::Settled, &twice)).is_err());
    }

    #[test]
    fn a_settlement_in_the_cycle_that_deferred_it_is_illegal() {
        let mut trail = vec![
            (TransactionSubmitted, 0),
            (BatchCreated, 4),
            (BatchOptimized, 4),
            (ConsensusSubmitted, 4),
            (ConsensusAchieved, 4),
        ];
        trail.extend(SETTLED[1..].iter().map(|&k| (k, 3)));
        assert!(check_trail(&item(TxStatus::Settled, &trail)).is_err());
    }

    #[test]
    fn a_failed_status_needs_a_reversal() {
        let mut trail: Vec<_> = SETTLED[..6].iter().map(|&k| (k, 2)).collect();
        assert!(check_trail(&item(TxStatus::Failed, &trail)).is_err());
        trail.push((SettlementFailed, 2));
        trail.push((SettlementReversed, 2));
        assert_eq!(check_trail(&item(TxStatus::Failed, &trail)), Ok(()));
    }
}
