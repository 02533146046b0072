//! Ids reserved for other shards: what makes an id unique engine-wide.
//!
//! A transaction is booked by the shard of its send currency, a deposit by
//! the shard of its currency; each shard dedups what it books. That alone
//! lets one id be booked once per currency. So every id also has a *home*
//! shard ([`super::ShardMap::home_of`], a fixed function of the id): before
//! a shard books an id whose home is another shard, intake reserves the id
//! there, with the whole body. The home shard's log orders every claim on
//! the id, whatever currency it names: the first body wins, a retry of the
//! same body is a duplicate, any other body is a conflict, and a booking of
//! the id by the home shard itself checks the same table.
//!
//! A reservation is kept for the dedup window from when it was made, like a
//! transaction's or deposit's key. If the booking step never happens (the
//! client gave up after the reservation committed), the id stays taken by
//! that body until the window ends: the client was not told "accepted", and
//! a retry of the same body books it.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use settle_codec::TxResult;

use super::state::DEDUP_WINDOW_US;

/// One reserved id: the body that claimed it and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved<B> {
    pub body: B,
    pub log_index: u64,
    pub at_us: u64,
}

/// Reserved ids of one kind (transactions, or deposits), with their expiry.
#[derive(Debug)]
pub struct Reservations<B> {
    by_id: FxHashMap<u128, Reserved<B>>,
    /// Ids in the order they were reserved (so by time): expiry pops the front.
    order: VecDeque<u128>,
}

impl<B> Default for Reservations<B> {
    fn default() -> Self {
        Reservations {
            by_id: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }
}

impl<B: Copy> Reservations<B> {
    /// Claims `id` for `body`: Created (now reserved), Duplicate (reserved
    /// before by an equal body), Conflict (reserved by another body). `same`
    /// says whether two bodies are one request (a retry may re-stamp fields
    /// that do not count). The table's bound is the caller's: the proposer
    /// counts reservations with the records it holds (`SHARD_RECORDS_MAX`),
    /// deposits count against `DEPOSITS_KEPT_MAX`.
    pub fn claim(
        &mut self,
        id: u128,
        body: B,
        log_index: u64,
        at_us: u64,
        same: impl Fn(&B, &B) -> bool,
    ) -> TxResult {
        if let Some(r) = self.by_id.get(&id) {
            return if same(&r.body, &body) {
                TxResult::Duplicate
            } else {
                TxResult::Conflict
            };
        }
        if let Some(last) = self.order.back().and_then(|i| self.by_id.get(i)) {
            assert!(last.at_us <= at_us, "reservations are made in clock order");
        }
        self.by_id.insert(
            id,
            Reserved {
                body,
                log_index,
                at_us,
            },
        );
        self.order.push_back(id);
        TxResult::Created
    }

    pub fn get(&self, id: u128) -> Option<&Reserved<B>> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: u128) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Forgets reservations made longer than the dedup window before `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        while let Some(&id) = self.order.front() {
            let at_us = self.by_id.get(&id).expect("ordered ids are reserved").at_us;
            if at_us.saturating_add(DEDUP_WINDOW_US) > now_us {
                break;
            }
            self.order.pop_front();
            self.by_id.remove(&id);
        }
    }

    /// Every reservation in the order it was made (snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (u128, &Reserved<B>)> {
        self.order
            .iter()
            .map(|id| (*id, self.by_id.get(id).expect("ordered ids are reserved")))
    }

    /// Rebuilds from [`Reservations::iter`]'s order; `Err` names an id given
    /// twice or a time that goes back.
    pub fn restore(
        items: impl IntoIterator<Item = (u128, Reserved<B>)>,
    ) -> Result<Reservations<B>, String> {
        let mut out = Reservations::default();
        let mut last_at = 0;
        for (id, r) in items {
            if r.at_us < last_at {
                return Err(format!("reservation of {id:032x} is out of time order"));
            }
            last_at = r.at_us;
            if out.by_id.insert(id, r).is_some() {
                return Err(format!("id {id:032x} is reserved twice"));
            }
            out.order.push_back(id);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_body_wins_retries_are_duplicates_and_expiry_frees_the_id() {
        let mut r = Reservations::<u64>::default();
        let eq = |a: &u64, b: &u64| a == b;
        assert_eq!(r.claim(7, 100, 1, 10, eq), TxResult::Created);
        assert_eq!(r.claim(7, 100, 2, 11, eq), TxResult::Duplicate);
        assert_eq!(r.claim(7, 101, 3, 12, eq), TxResult::Conflict);
        assert_eq!(r.get(7).unwrap().body, 100, "a conflict never overwrites");
        assert_eq!(r.claim(8, 5, 4, 20, eq), TxResult::Created);
        r.expire(10 + DEDUP_WINDOW_US - 1);
        assert_eq!(r.len(), 2);
        r.expire(10 + DEDUP_WINDOW_US);
        assert!(!r.contains(7) && r.contains(8));
        assert_eq!(r.claim(7, 101, 5, 30, eq), TxResult::Created);
        let back = Reservations::restore(r.iter().map(|(id, x)| (id, *x))).unwrap();
        assert_eq!(
            back.iter().map(|(id, x)| (id, *x)).collect::<Vec<_>>(),
            r.iter().map(|(id, x)| (id, *x)).collect::<Vec<_>>()
        );
        let twice = [(1, *r.get(8).unwrap()), (1, *r.get(8).unwrap())];
        assert!(Reservations::restore(twice).is_err());
    }
}
