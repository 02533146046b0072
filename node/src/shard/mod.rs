//! Shards: which currency lives where, and the state each shard owns.
//!
//! A transaction belongs to the shard of its send currency (the debit leg,
//! where liquidity is checked), and so do the balances of that currency.
//! Group 0 is the control group (participants, cycles); shard groups are
//! numbered from 1 in currency order.

pub mod cold;
pub mod command;
pub mod cycles;
mod filter;
mod fingerprint;
pub mod flows;
pub mod ledger;
pub mod proposer;
pub mod reservations;
mod snapshot;
pub mod state;
pub mod table;
pub mod visibility;

use settle_codec::Currency;

pub use cycles::{
    BatchOutcome, CycleApply, DecisionFacts, Execution, IncomingBatch, Leg, OpenCycle,
};
pub use ledger::{Account, Funding};
pub use state::{ShardState, TxRecord};

/// Id of a Raft group on this node: 0 is the control group, 1.. are shards.
pub type GroupId = u16;

/// The control group's id.
pub const CONTROL_GROUP: GroupId = 0;

/// Most shards one node serves: every queue and table sized per shard is
/// bounded by this.
pub const SHARDS_MAX: usize = 64;

/// The currencies a default node shards by, one shard each.
pub const DEFAULT_CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];

/// Currency → shard, and shard → core. Configuration, identical on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// `currencies[i]` is served by shard group `i + 1`.
    currencies: Vec<Currency>,
}

impl ShardMap {
    /// One shard per currency, in the order given.
    pub fn new(currencies: Vec<Currency>) -> Self {
        assert!(!currencies.is_empty() && currencies.len() <= SHARDS_MAX);
        for (i, c) in currencies.iter().enumerate() {
            assert!(c.is_known(), "shard currency must be a known ISO code");
            assert!(
                !currencies[..i].contains(c),
                "a currency is served by one shard"
            );
        }
        ShardMap { currencies }
    }

    pub fn default_currencies() -> Self {
        ShardMap::new(
            DEFAULT_CURRENCIES
                .iter()
                .map(|c| Currency::from_code(c).expect("known code"))
                .collect(),
        )
    }

    /// The shard group of a currency, if this engine serves it.
    #[inline]
    pub fn shard_of(&self, currency: Currency) -> Option<GroupId> {
        self.currencies
            .iter()
            .position(|&c| c == currency)
            .map(|i| (i + 1) as GroupId)
    }

    /// The currency of a shard group.
    pub fn currency_of(&self, group: GroupId) -> Option<Currency> {
        (group as usize)
            .checked_sub(1)
            .and_then(|i| self.currencies.get(i))
            .copied()
    }

    pub fn shard_count(&self) -> usize {
        self.currencies.len()
    }

    /// The home shard of an id: the shard whose log orders every claim on
    /// it, whatever currency a claim names (see [`reservations`]). A fixed
    /// function of the id and the shard count (the 64-bit halves folded and
    /// mixed, so sequential ids spread evenly).
    pub fn home_of(&self, id: u128) -> GroupId {
        let folded = (id as u64) ^ ((id >> 64) as u64);
        // splitmix64's finaliser: every input bit moves every output bit.
        let mut x = folded;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (1 + x % self.currencies.len() as u64) as GroupId
    }

    /// Shard groups, in order.
    pub fn shards(&self) -> impl Iterator<Item = GroupId> + '_ {
        (1..=self.currencies.len()).map(|g| g as GroupId)
    }

    pub fn currencies(&self) -> &[Currency] {
        &self.currencies
    }

    /// The core that runs a group: spread round-robin, control group on core 0.
    pub fn core_of(&self, group: GroupId, cores: usize) -> usize {
        assert!(cores > 0);
        group as usize % cores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_map_to_shards_and_back() {
        let map = ShardMap::default_currencies();
        let eur = Currency::from_code("EUR").unwrap();
        assert_eq!(map.shard_of(eur), Some(2));
        assert_eq!(map.currency_of(2), Some(eur));
        assert_eq!(map.currency_of(CONTROL_GROUP), None);
        assert_eq!(map.shard_of(Currency::from_code("CHF").unwrap()), None);
        assert_eq!(map.shards().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(
            (0..5).map(|g| map.core_of(g, 2)).collect::<Vec<_>>(),
            vec![0, 1, 0, 1, 0]
        );
    }

    #[test]
    fn ids_spread_evenly_over_home_shards() {
        let map = ShardMap::default_currencies();
        let mut counts = [0u32; 4];
        for id in 0..40_000u128 {
            let home = map.home_of(id);
            assert!((1..=4).contains(&home));
            assert_eq!(home, map.home_of(id), "a fixed function");
            counts[home as usize - 1] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        // The high half counts too.
        let homes: std::collections::BTreeSet<_> =
            (0..64u128).map(|i| map.home_of(i << 64)).collect();
        assert_eq!(homes.len(), 4);
    }
}
