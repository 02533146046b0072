//! The shard's table of transactions by id: a hash map split into many
//! partitions.
//!
//! Why not one map: a shard holds millions of transactions, and a single
//! hash table doubles by rehashing everything at once: with millions of
//! entries that is hundreds of milliseconds (page faults included) during
//! which the shard's core serves nobody, which is exactly the tail latency
//! clients see. With `PARTITIONS` tables each resize moves 1/`PARTITIONS` of
//! the entries, so the pause shrinks by that factor while the average cost
//! stays the same. The API mirrors the subset of `HashMap` the shard uses.

use std::hash::{BuildHasher, Hash};
use std::ops::Index;

use rustc_hash::{FxBuildHasher, FxHashMap};

/// Partitions of the table: a power of two. 256 keeps each partition's
/// resize under a few milliseconds at tens of millions of transactions.
pub const PARTITIONS: usize = 256;

const _: () = assert!(PARTITIONS.is_power_of_two());

/// Where the partition bits start in a key's hash (see [`Table::part`]).
const PARTITION_SHIFT: u32 = 32;

const _: () = assert!(PARTITION_SHIFT + PARTITIONS.trailing_zeros() <= 57);

/// Transactions by id, partitioned (see the module doc).
#[derive(Debug, Clone)]
pub struct Table<K, V> {
    parts: Vec<FxHashMap<K, V>>,
    len: usize,
}

impl<K: Hash + Eq, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            parts: (0..PARTITIONS).map(|_| FxHashMap::default()).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// The partition of a key: bits 32.. of its hash. Not the low bits (the
    /// inner maps place entries by those) and not the top 7 (hashbrown tags
    /// each slot with them: if every key of a partition shared its tag, each
    /// probe would compare the key of every full slot in its group, one cache
    /// miss each; that was most of the shard's apply time).
    #[inline]
    fn part(&self, key: &K) -> usize {
        (FxBuildHasher.hash_one(key) >> PARTITION_SHIFT) as usize & (PARTITIONS - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.parts[self.part(key)].get(key)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let p = self.part(key);
        self.parts[p].get_mut(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let p = self.part(&key);
        let old = self.parts[p].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let p = self.part(key);
        let old = self.parts[p].remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Room for `additional` more entries, spread over the partitions.
    pub fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(PARTITIONS);
        for part in &mut self.parts {
            part.reserve(each);
        }
    }

    /// Every value, in no particular order (sort for anything deterministic).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.parts.iter().flat_map(|p| p.values())
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(|p| p.iter())
    }
}

impl<K: Hash + Eq, V> Index<&K> for Table<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("key present in table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_hash_map() {
        let mut table: Table<u128, u64> = Table::default();
        let mut model: HashMap<u128, u64> = HashMap::new();
        // Ids sharing their low bits must still spread over partitions.
        for i in 0..20_000u128 {
            let id = i << 64;
            assert_eq!(table.insert(id, i as u64), model.insert(id, i as u64));
        }
        for i in (0..20_000u128).step_by(3) {
            assert_eq!(table.remove(&(i << 64)), model.remove(&(i << 64)));
        }
        assert_eq!(table.insert(5 << 64, 99), model.insert(5 << 64, 99));
        assert_eq!(table.len(), model.len());
        for (k, v) in &model {
            assert_eq!(table.get(k), Some(v));
            assert_eq!(table[k], *v);
        }
        let mut values: Vec<u64> = table.values().copied().collect();
        let mut expected: Vec<u64> = model.values().copied().collect();
        values.sort_unstable();
        expected.sort_unstable();
        assert_eq!(values, expected);
        *table.get_mut(&(5 << 64)).unwrap() = 7;
        assert_eq!(table.get(&(5 << 64)), Some(&7));
        // Within a partition the keys' hashbrown tags (top 7 hash bits) vary.
        let tags: std::collections::HashSet<u64> = table.parts[0]
            .keys()
            .map(|k| FxBuildHasher.hash_one(k) >> 57)
            .collect();
        assert!(tags.len() > 32, "tags in one partition: {}", tags.len());
        let busiest = table.parts.iter().map(|p| p.len()).max().unwrap();
        assert!(
            busiest < 3 * table.len() / PARTITIONS,
            "partitions stay balanced: {busiest}"
        );
    }
}
