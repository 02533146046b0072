//! The shard's fingerprint: a constant-time summary of its whole state, for
//! replica digests at agreed log positions (`crate::raft::digest`).
//!
//! It folds the shard's counters, the running checksum of every write to
//! the store (`cold_crc`: finished records, keys, reservations, cycle
//! facts) and two running multiset hashes kept up to date as the state
//! changes: one over the accounts (every field of every balance) and one
//! over the unfinished records' transactions (what was accepted, where).
//! A multiset hash is a wrapping sum of per-item hashes: a change subtracts
//! the item's old hash and adds its new one, so the sum never needs a walk
//! over the table (which would stall the core as the state grows).

use std::collections::BTreeMap;

use super::ledger::Account;
use super::state::{ShardState, TxRecord};
use crate::raft::digest::{fold, mix};

/// One account's term in the accounts' multiset hash.
pub(super) fn account_term(participant: u32, a: &Account) -> u64 {
    fold(
        mix(u64::from(participant)),
        &[
            a.balance,
            u64::from(a.opened),
            a.opening,
            a.deposited,
            a.credited,
            a.debited,
            a.refunded,
            a.incoming,
        ],
    )
}

/// One unfinished record's term in the records' multiset hash: the
/// transaction as accepted (its id, parties, amount, currencies, window)
/// and the entry that accepted it.
pub(super) fn record_term(r: &TxRecord) -> u64 {
    let tx = &r.tx;
    fold(
        0x5eed,
        &[
            tx.id as u64,
            (tx.id >> 64) as u64,
            u64::from(tx.debtor.0) << 32 | u64::from(tx.creditor.0),
            tx.amount,
            u64::from(tx.send.0) << 16 | u64::from(tx.receive.0),
            tx.window as u64,
            r.accepted_index,
        ],
    )
}

/// The accounts' multiset hash, from scratch (restores, and the assertion
/// pairing the running one).
pub(super) fn accounts_digest(accounts: &BTreeMap<u32, Account>) -> u64 {
    accounts
        .iter()
        .fold(0u64, |sum, (&p, a)| sum.wrapping_add(account_term(p, a)))
}

impl ShardState {
    /// See [`crate::raft::state_machine::GroupState::fingerprint`].
    pub fn fingerprint(&self) -> u64 {
        // The pair of the running sum kept by `account_changing`: cheap
        // while accounts are few (debug builds only).
        debug_assert_eq!(
            self.accounts_digest,
            accounts_digest(&self.accounts),
            "the running accounts digest matches the accounts"
        );
        fold(
            fold(0, &self.counters()),
            &[
                self.records.len() as u64,
                self.deposits.len() as u64,
                self.open_cycles.len() as u64,
                self.in_flight.len() as u64,
                self.out_flight.len() as u64,
                self.accounts.len() as u64,
                self.accounts_digest,
                self.records_digest,
            ],
        )
    }

    /// Runs `change` on the state, keeping the accounts' running digest in
    /// step with what it did to `participant`'s account (the only account
    /// it may touch).
    pub(super) fn account_changing<R>(
        &mut self,
        participant: u32,
        change: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let term = |s: &Self| {
            s.accounts
                .get(&participant)
                .map_or(0, |a| account_term(participant, a))
        };
        let before = term(self);
        let result = change(self);
        let after = term(self);
        self.accounts_digest = self
            .accounts_digest
            .wrapping_sub(before)
            .wrapping_add(after);
        result
    }
}
