//! A compact filter of the idempotency keys that left memory for the state
//! store: a new id (the common case) is answered "never seen" from memory,
//! and only ids the filter may hold are looked up in the store.
//!
//! Why generations of blocked Bloom filters: a Bloom filter cannot forget a
//! key, and keys leave the dedup window continuously. Keys go into the
//! newest generation until it holds `GENERATION_KEYS`; a generation is
//! dropped whole once every key in it has expired (by leader time). One
//! probe per generation reads one cache line (the key's 512-bit block), and
//! the probes of all generations are independent loads, so a lookup costs
//! about one memory latency whatever the number of generations.
//!
//! Bounded: at most `bytes_max` of filters. Past it, the oldest generation
//! is dropped before its keys expired; until they have, a "no" from the
//! filter is not trusted and the caller asks the store (slower, never
//! wrong). The filter only ever makes lookups cheaper: it is not part of
//! the replicated state, and a missing or stale filter changes no answer.

use std::collections::VecDeque;

/// Keys per generation: 16 M keys, 20 MiB of filter.
pub const GENERATION_KEYS: usize = 16 << 20;

/// Filter bits per key: ~1 % false positives with 512-bit blocks.
const BITS_PER_KEY: usize = 10;

/// Bits set (and tested) per key, all within one 512-bit block.
const PROBES: u32 = 7;

/// One cache line of bits.
type Block = [u64; 8];

#[derive(Debug)]
struct Generation {
    blocks: Vec<Block>,
    keys: usize,
    capacity: usize,
    /// The latest expiry of a key in it: the generation goes after that.
    expires_max: u64,
}

impl Generation {
    fn new(capacity: usize) -> Generation {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512).max(1);
        Generation {
            blocks: vec![[0; 8]; blocks],
            keys: 0,
            capacity,
            expires_max: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }

    #[inline]
    fn block_of(&self, h: u64) -> usize {
        // Multiply-shift: the high bits of h pick the block without a division.
        ((u128::from(h >> 32) * self.blocks.len() as u128) >> 32) as usize
    }

    #[inline]
    fn bits(h: u64) -> impl Iterator<Item = (usize, u64)> {
        // Successive 9-bit slices of a second mix of the hash.
        let mut g = h.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        (0..PROBES).map(move |_| {
            let bit = (g & 511) as usize;
            g >>= 9;
            (bit / 64, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, h: u64, expires_at: u64) {
        let b = self.block_of(h);
        let block = &mut self.blocks[b];
        for (word, mask) in Self::bits(h) {
            block[word] |= mask;
        }
        self.keys += 1;
        self.expires_max = self.expires_max.max(expires_at);
    }

    #[inline]
    fn may_contain(&self, h: u64) -> bool {
        let block = &self.blocks[self.block_of(h)];
        Self::bits(h).all(|(word, mask)| block[word] & mask != 0)
    }
}

/// The filter of keys in the store (see the module docs).
#[derive(Debug)]
pub struct KeyFilter {
    generations: VecDeque<Generation>,
    generation_keys: usize,
    bytes_max: usize,
    /// A generation was dropped before its keys expired: until the clock
    /// passes this, a "no" must be checked in the store.
    untrusted_until: u64,
}

impl KeyFilter {
    /// A filter of at most `bytes_max` bytes (at least one generation).
    pub fn new(bytes_max: usize) -> KeyFilter {
        KeyFilter::with_generation_keys(bytes_max, GENERATION_KEYS)
    }

    pub fn with_generation_keys(bytes_max: usize, generation_keys: usize) -> KeyFilter {
        assert!(generation_keys > 0);
        KeyFilter {
            generations: VecDeque::new(),
            generation_keys,
            bytes_max,
            untrusted_until: 0,
        }
    }

    fn hash(id: u128) -> u64 {
        // Ids are client-chosen: mix both halves (a fixed, keyless mix; the
        // filter's answers are checked, so a crafted collision only costs a
        // store read).
        let x = (id as u64) ^ ((id >> 64) as u64).rotate_left(32);
        let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    /// Adds `id`, forgettable at `expires_at` (leader time).
    pub fn insert(&mut self, id: u128, expires_at: u64) {
        if self.generations.back().is_none_or(|g| g.keys >= g.capacity) {
            let fresh = Generation::new(self.generation_keys);
            while !self.generations.is_empty() && self.bytes() + fresh.bytes() > self.bytes_max {
                let dropped = self.generations.pop_front().expect("not empty");
                self.untrusted_until = self.untrusted_until.max(dropped.expires_max);
            }
            self.generations.push_back(fresh);
        }
        let h = Self::hash(id);
        self.generations
            .back_mut()
            .expect("a generation")
            .insert(h, expires_at);
    }

    /// Whether the store may hold `id`: `false` means it does not (or its
    /// key expired) at leader time `now_us`.
    pub fn may_contain(&self, id: u128, now_us: u64) -> bool {
        if now_us < self.untrusted_until {
            return true;
        }
        let h = Self::hash(id);
        self.generations.iter().any(|g| g.may_contain(h))
    }

    /// Drops generations whose keys have all expired at `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        while self
            .generations
            .front()
            .is_some_and(|g| g.expires_max <= now_us && g.keys > 0)
        {
            // The newest generation is kept while it takes keys.
            if self.generations.len() == 1
                && self.generations[0].keys < self.generations[0].capacity
            {
                self.generations[0] = Generation::new(self.generation_keys);
                break;
            }
            self.generations.pop_front();
        }
    }

    /// From now on every lookup is sent to the store.
    pub fn distrust(&mut self) {
        self.untrusted_until = u64::MAX;
    }

    /// Bytes of filter held.
    pub fn bytes(&self) -> usize {
        self.generations.iter().map(Generation::bytes).sum()
    }

    /// Keys added and not dropped with their generation.
    pub fn keys(&self) -> usize {
        self.generations.iter().map(|g| g.keys).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forgets_a_live_key_and_rarely_claims_an_absent_one() {
        let mut f = KeyFilter::with_generation_keys(1 << 30, 10_000);
        for i in 0..50_000u128 {
            f.insert(i * 7_919, 1_000);
        }
        assert_eq!(f.keys(), 50_000);
        assert!((0..50_000u128).all(|i| f.may_contain(i * 7_919, 0)));
        let false_hits = (0..100_000u128)
            .filter(|i| f.may_contain((i + 1) << 70, 0))
            .count();
        // Five generations, ~1 % each.
        assert!(
            false_hits < 8_000,
            "{false_hits} false positives of 100,000"
        );
    }

    #[test]
    fn generations_go_when_their_keys_expired() {
        let mut f = KeyFilter::with_generation_keys(1 << 30, 100);
        for i in 0..100u128 {
            f.insert(i, 10);
        }
        for i in 100..150u128 {
            f.insert(i, 20);
        }
        f.expire(15);
        assert_eq!(f.keys(), 50, "the first generation expired whole");
        assert!(f.may_contain(120, 15));
        f.expire(25);
        assert_eq!(f.keys(), 0);
    }

    #[test]
    fn over_its_budget_it_sends_every_lookup_to_the_store_until_safe() {
        let one = Generation::new(100).bytes();
        let mut f = KeyFilter::with_generation_keys(2 * one, 100);
        for i in 0..300u128 {
            f.insert(i, 50);
        }
        assert!(f.bytes() <= 2 * one);
        // Keys 0..100 were dropped early: every "no" is untrusted until 50.
        assert!(f.may_contain(1 << 100, 49));
        assert!(f.may_contain(5, 49));
        assert!(!(0..1_000u128).all(|i| f.may_contain((i + 1) << 80, 50)));
    }
}
