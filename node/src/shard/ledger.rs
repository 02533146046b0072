//! Balances of a shard's currency: opening balances, deposits, and the
//! totals that explain every balance (`balance = opening + deposited +
//! credited + refunded - debited`). Money a cycle sends over a payment rail
//! is `incoming` for its creditor until the rail confirms the wire (then
//! `credited`), or refunded to its debtor if the wire fails: nobody can
//! spend money in flight, so a reversal never overdraws anyone.
//!
//! Funding only adds. Openings are keyed by participant (the participants
//! file is read again at every start: its balances open an account once,
//! never twice); deposits by the operator's deposit id, kept for the dedup
//! window like transaction ids.

use settle_codec::{Currency, ParticipantId, TxResult};

use super::state::ShardState;

/// Deposit ids remembered at most (within the 24 h dedup window). Deposits
/// are operator actions; beyond this the shard refuses new ones rather
/// than grow without bound.
pub const DEPOSITS_KEPT_MAX: usize = 1_000_000;

/// Largest balance a participant may hold, in minor units: sums of balances
/// and cycle legs are computed in `i128` but stored in `u64`, and this keeps
/// every credit from overflowing.
pub const BALANCE_MAX: u64 = 1 << 62;

/// One participant's account in the shard's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    pub balance: u64,
    /// Whether the opening balance was set (once, ever).
    pub opened: bool,
    pub opening: u64,
    pub deposited: u64,
    pub credited: u64,
    pub debited: u64,
    /// Debits given back because their wire failed.
    pub refunded: u64,
    /// Credits whose wire is not confirmed yet (not part of `balance`).
    pub incoming: u64,
}

impl Account {
    /// The invariant every change keeps.
    pub fn is_consistent(&self) -> bool {
        let income = self.opening as u128
            + self.deposited as u128
            + self.credited as u128
            + self.refunded as u128;
        income >= self.debited as u128 && income - self.debited as u128 == self.balance as u128
    }
}

/// A deposit, remembered under its id for the dedup window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    pub participant: u32,
    pub amount: u64,
    pub log_index: u64,
    pub at_us: u64,
}

/// What identifies a deposit for its id's reservation in the id's home
/// shard (a deposit of another currency than the home shard's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositKey {
    pub participant: u32,
    pub currency: u16,
    pub amount: u64,
}

/// What a funding entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funding {
    /// The participant's opening balance (from the participants file).
    Opening,
    /// An operator's deposit, idempotent by id.
    Deposit { deposit_id: u128 },
}

impl ShardState {
    /// Applies an opening entry: one result per account, in order (see
    /// [`ShardState::apply_deposit`] for the results).
    pub fn apply_open(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        openings: impl IntoIterator<Item = (ParticipantId, u64)>,
        results: &mut Vec<TxResult>,
    ) {
        self.advance(log_index, leader_ts_us);
        for (participant, amount) in openings {
            results.push(self.fund(log_index, Funding::Opening, participant, amount));
        }
    }

    /// Applies a deposit entry. `books` is the currency this shard books: a
    /// deposit of another `currency` only reserves its id here (this shard is
    /// the id's home, see [`super::reservations`]).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_deposit(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        books: Currency,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    ) -> TxResult {
        self.advance(log_index, leader_ts_us);
        if currency != books {
            if self.deposits.contains_key(&deposit_id) {
                return TxResult::Conflict;
            }
            if self.reserved_deposits.len() + self.deposits.len() >= DEPOSITS_KEPT_MAX {
                return TxResult::Rejected {
                    reason: settle_codec::RejectReason::AmountTooLarge,
                    field: settle_codec::Field::Amount,
                };
            }
            let key = DepositKey {
                participant: participant.0,
                currency: currency.0,
                amount,
            };
            let at_us = self.clock_us;
            return self
                .reserved_deposits
                .claim(deposit_id, key, log_index, at_us, |a, b| a == b);
        }
        if self.reserved_deposits.contains(deposit_id) {
            return TxResult::Conflict;
        }
        self.fund(
            log_index,
            Funding::Deposit { deposit_id },
            participant,
            amount,
        )
    }

    /// Created: the balance grew; Duplicate: the same opening or deposit was
    /// applied before; Conflict: the account was opened with another amount,
    /// or the deposit id was used for another deposit; Rejected: the balance
    /// would exceed [`BALANCE_MAX`] or the deposit table is full.
    fn fund(
        &mut self,
        log_index: u64,
        funding: Funding,
        participant: ParticipantId,
        amount: u64,
    ) -> TxResult {
        self.account_changing(participant.0, |s| {
            s.fund_account(log_index, funding, participant, amount)
        })
    }

    /// [`Self::fund`], touching no account but `participant`'s.
    fn fund_account(
        &mut self,
        log_index: u64,
        funding: Funding,
        participant: ParticipantId,
        amount: u64,
    ) -> TxResult {
        let at_us = self.clock_us;
        let too_large = TxResult::Rejected {
            reason: settle_codec::RejectReason::AmountTooLarge,
            field: settle_codec::Field::Amount,
        };
        let account = self.accounts.entry(participant.0).or_default();
        let Some(balance) = account
            .balance
            .checked_add(amount)
            .filter(|&b| b <= BALANCE_MAX)
        else {
            return too_large;
        };
        match funding {
            Funding::Opening if account.opened => {
                if account.opening == amount {
                    TxResult::Duplicate
                } else {
                    TxResult::Conflict
                }
            }
            Funding::Opening => {
                account.opened = true;
                account.opening = amount;
                account.balance = balance;
                debug_assert!(account.is_consistent());
                TxResult::Created
            }
            Funding::Deposit { deposit_id } => {
                if let Some(d) = self.deposits.get(&deposit_id) {
                    return if d.participant == participant.0 && d.amount == amount {
                        TxResult::Duplicate
                    } else {
                        TxResult::Conflict
                    };
                }
                if self.deposits.len() + self.reserved_deposits.len() >= DEPOSITS_KEPT_MAX {
                    return too_large;
                }
                account.deposited += amount;
                account.balance = balance;
                debug_assert!(account.is_consistent());
                self.deposits.insert(
                    deposit_id,
                    Deposit {
                        participant: participant.0,
                        amount,
                        log_index,
                        at_us,
                    },
                );
                self.deposit_expiry.push_back((at_us, deposit_id));
                TxResult::Created
            }
        }
    }

    /// A participant's account (zero when it never had one).
    pub fn account(&self, participant: ParticipantId) -> Account {
        self.accounts
            .get(&participant.0)
            .copied()
            .unwrap_or_default()
    }

    /// Every account, by participant id.
    pub fn accounts(&self) -> impl Iterator<Item = (ParticipantId, &Account)> {
        self.accounts.iter().map(|(&p, a)| (ParticipantId(p), a))
    }

    /// The sum of every balance of this shard's currency.
    pub fn balance_total(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deposit_id_is_reserved_at_its_home_whatever_its_currency() {
        // This shard books USD and is the home of deposit id 9.
        let mut s = ShardState::new();
        let p = ParticipantId(3);
        let eur = Currency::EUR;
        let usd = Currency::USD;
        assert_eq!(s.apply_deposit(1, 1, usd, 9, p, eur, 25), TxResult::Created);
        assert_eq!(
            s.apply_deposit(2, 2, usd, 9, p, eur, 25),
            TxResult::Duplicate
        );
        assert_eq!(
            s.apply_deposit(3, 3, usd, 9, p, eur, 26),
            TxResult::Conflict
        );
        assert_eq!(
            s.apply_deposit(4, 4, usd, 9, p, usd, 25),
            TxResult::Conflict,
            "the same id in this shard's own currency is taken"
        );
        assert_eq!(s.account(p).balance, 0, "a reservation credits nothing");
        assert_eq!(s.apply_deposit(5, 5, usd, 10, p, usd, 7), TxResult::Created);
        assert_eq!(
            s.apply_deposit(6, 6, usd, 10, p, eur, 7),
            TxResult::Conflict,
            "deposited here first: no other currency may claim the id"
        );
        assert_eq!(s.account(p).balance, 7);
    }

    #[test]
    fn opening_once_deposits_idempotent_by_id() {
        let mut s = ShardState::new();
        let p = ParticipantId(3);
        let mut r = Vec::new();
        s.apply_open(1, 10, [(p, 500)], &mut r);
        s.apply_open(2, 11, [(p, 500), (p, 900)], &mut r);
        assert_eq!(
            r,
            vec![TxResult::Created, TxResult::Duplicate, TxResult::Conflict],
            "a restart reading the same participants file funds nothing"
        );
        assert_eq!(
            s.apply_deposit(4, 13, Currency::USD, 77, p, Currency::USD, 25),
            TxResult::Created
        );
        assert_eq!(
            s.apply_deposit(5, 14, Currency::USD, 77, p, Currency::USD, 25),
            TxResult::Duplicate
        );
        assert_eq!(
            s.apply_deposit(
                6,
                15,
                Currency::USD,
                77,
                ParticipantId(4),
                Currency::USD,
                25
            ),
            TxResult::Conflict
        );
        let a = s.account(p);
        assert_eq!((a.balance, a.opening, a.deposited), (525, 500, 25));
        assert!(a.is_consistent());
        assert_eq!(s.account(ParticipantId(4)).balance, 0);
        assert_eq!(s.balance_total(), 525);
        assert_eq!(
            s.flow_participants().count(),
            0,
            "funding is not a settlement flow"
        );
    }

    #[test]
    fn funding_beyond_the_balance_bound_is_refused_and_changes_nothing() {
        let mut s = ShardState::new();
        let p = ParticipantId(1);
        s.apply_open(1, 1, [(p, BALANCE_MAX - 1)], &mut Vec::new());
        let r = s.apply_deposit(2, 2, Currency::USD, 1, p, Currency::USD, 2);
        assert!(matches!(r, TxResult::Rejected { .. }));
        assert_eq!(s.account(p).balance, BALANCE_MAX - 1);
        assert_eq!(
            s.apply_deposit(3, 3, Currency::USD, 1, p, Currency::USD, 1),
            TxResult::Created,
            "a refused id is not remembered"
        );
    }

    #[test]
    fn deposit_ids_expire_after_the_dedup_window() {
        let mut s = ShardState::new();
        let p = ParticipantId(1);
        s.apply_deposit(1, 1_000, Currency::USD, 5, p, Currency::USD, 10);
        let later = 1_000 + super::super::state::DEDUP_WINDOW_US;
        assert_eq!(
            s.apply_deposit(2, later, Currency::USD, 5, p, Currency::USD, 10),
            TxResult::Created
        );
        assert_eq!(s.account(p).deposited, 20);
    }
}
