//! The shard's table of transactions by id: records in a slab, found through
//! a compact index split into many partitions.
//!
//! Why a slab and a compact index: every replica inserts every transaction,
//! and with millions of records a hash map of 176-byte slots costs two cache
//! and TLB misses per insert (the probe, then the slot). Here the index holds
//! 8 bytes per entry (a hash fingerprint and a slab slot; ~16 bytes with its
//! free positions), ~10 times less memory to miss in, and the line a probe
//! reads can be prefetched ([`Table::prefetch`]) a few transactions ahead;
//! records are appended to the slab in order, which the hardware prefetcher
//! follows. Freed slots are reused (a free list).
//!
//! Why partitions: a single index doubles by rehashing everything at once;
//! with `PARTITIONS` indexes each resize moves 1/`PARTITIONS` of the
//! entries, so the pause shrinks by that factor while the average cost stays
//! the same. The slab grows by fixed chunks and never moves a record.
//!
//! Why [`Table::prepare`]: the first write to a fresh page costs a page
//! fault (~1.5 us on these VMs), and every record lands in fresh memory: 40 %
//! of an entry's apply time went to faults in the slab and in index resizes
//! (perf, three replicas at batch 8,192). `prepare`, run between applies,
//! touches the next slab chunk and grows nearly full index partitions ahead
//! of need, so inserts find memory ready.
//!
//! The API mirrors the subset of `HashMap` the shard uses, plus an entry API
//! that finds or inserts with one probe.

use std::hash::{BuildHasher, Hash};
use std::ops::Index;

use rustc_hash::FxBuildHasher;

/// Partitions of the index: a power of two. 256 keeps each partition's
/// resize under a few milliseconds at tens of millions of transactions.
pub const PARTITIONS: usize = 256;

const _: () = assert!(PARTITIONS.is_power_of_two());

/// Where the partition bits start in a key's hash (see [`Hashed`]). The low
/// 32 bits are the fingerprint, which also places the entry in its
/// partition: the two must not share bits.
const PARTITION_SHIFT: u32 = 32;

const _: () = assert!(PARTITION_SHIFT + PARTITIONS.trailing_zeros() <= 64);

/// Slab slots per chunk: chunks are allocated whole and never reallocated,
/// so growing the slab never copies records (no pause) and `&V` stays put.
const CHUNK: usize = 4_096;

const _: () = assert!(CHUNK.is_power_of_two());

/// Slab cells [`Table::prepare`] touches per step: ~90 KB, a few tens of
/// microseconds of page faults.
const PREPARE_CELLS_PER_STEP: usize = 512;

/// [`Table::prepare`] grows a partition's index once it is this full
/// (numerator over 8); inserts grow it at 6/8 (3/4) otherwise.
const PREPARE_INDEX_EIGHTHS: usize = 5;

/// Smallest non-empty index of a partition (slots, a power of two).
const MIN_SLOTS: usize = 16;

/// Most slab slots: a slot number fits in 32 bits (the index stores slot + 1,
/// 0 meaning empty).
const MAX_SLOTS: usize = u32::MAX as usize - 1;

/// A key's hash, computed once: [`Table::prefetch`] then
/// [`Table::entry_hashed`] use it without hashing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed(u64);

impl Hashed {
    /// The partition: bits `PARTITION_SHIFT..` of the hash.
    #[inline]
    fn part(self) -> usize {
        (self.0 >> PARTITION_SHIFT) as usize & (PARTITIONS - 1)
    }

    /// The fingerprint kept in the index: the low 32 bits. Its low bits are
    /// the entry's home position in its partition's index.
    #[inline]
    fn fingerprint(self) -> u32 {
        self.0 as u32
    }
}

/// One index entry: fingerprint in the high half, slab slot + 1 in the low
/// half; 0 is an empty position.
#[inline]
fn index_entry(fingerprint: u32, slot: usize) -> u64 {
    debug_assert!(slot < MAX_SLOTS);
    (u64::from(fingerprint) << 32) | (slot as u64 + 1)
}

#[inline]
fn entry_fingerprint(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline]
fn entry_slot(e: u64) -> usize {
    (e as u32) as usize - 1
}

/// One partition's index: open addressing with linear probing (a miss
/// usually reads one cache line) and backward-shift deletion (no tombstones).
#[derive(Debug, Clone, Default)]
struct Part {
    /// Empty or a power of two long; at most 3/4 full.
    index: Vec<u64>,
    len: usize,
}

impl Part {
    /// The index length needed to hold `len` entries at most 3/4 full.
    fn slots_for(len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        (len * 4).div_ceil(3).next_power_of_two().max(MIN_SLOTS)
    }

    /// Rebuilds the index with `slots` positions. Only fingerprints are
    /// read, never the slab (no record misses while resizing).
    fn resize(&mut self, slots: usize) {
        assert!(slots.is_power_of_two() && slots <= 1 << 32 && slots * 3 >= self.len * 4);
        let old = std::mem::replace(&mut self.index, vec![0; slots]);
        let mask = slots - 1;
        for e in old.into_iter().filter(|&e| e != 0) {
            let mut i = entry_fingerprint(e) as usize & mask;
            while self.index[i] != 0 {
                i = (i + 1) & mask;
            }
            self.index[i] = e;
        }
    }

    /// Room for one more entry.
    #[inline]
    fn reserve_one(&mut self) {
        if (self.len + 1) * 4 > self.index.len() * 3 {
            self.resize(Part::slots_for(self.len + 1).max(self.index.len() * 2));
        }
    }

    /// Removes the entry at `pos`, shifting back the entries after it that
    /// probed past it so that every probe still finds its key.
    fn remove_at(&mut self, mut pos: usize) {
        let mask = self.index.len() - 1;
        let mut next = (pos + 1) & mask;
        loop {
            let e = self.index[next];
            if e == 0 {
                break;
            }
            let home = entry_fingerprint(e) as usize & mask;
            // `e` may move into the hole when its home is not in (pos, next].
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(pos) & mask {
                self.index[pos] = e;
                pos = next;
            }
            next = (next + 1) & mask;
        }
        self.index[pos] = 0;
        self.len -= 1;
    }
}

/// Where a probe ended: at the key's index position, or at the empty
/// position where it would go.
enum Probe {
    Found { pos: usize, slot: usize },
    Vacant { pos: usize },
}

/// Values by key (see the module doc).
#[derive(Debug, Clone)]
pub struct Table<K, V> {
    parts: Vec<Part>,
    /// Records by slot: slot `s` is `chunks[s / CHUNK][s % CHUNK]`. Every
    /// chunk but the last is full; `None` marks a freed slot.
    chunks: Vec<Vec<Option<(K, V)>>>,
    /// The next chunk, allocated and touched by [`Table::prepare`], and how
    /// many of its cells have been touched so far.
    spare: Option<Vec<Option<(K, V)>>>,
    spare_touched: usize,
    /// Where [`Table::prepare`] looks for a partition to grow next.
    prepare_cursor: usize,
    /// Freed slots, reused last-freed first.
    free: Vec<u32>,
    len: usize,
}

impl<K: Hash + Eq, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            parts: vec![Part::default(); PARTITIONS],
            chunks: Vec::new(),
            spare: None,
            spare_touched: 0,
            prepare_cursor: 0,
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// The hash of a key, for [`Table::prefetch`] and [`Table::entry_hashed`].
    #[inline]
    pub fn hash(key: &K) -> Hashed {
        Hashed(FxBuildHasher.hash_one(key))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn cell(&self, slot: usize) -> &Option<(K, V)> {
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    #[inline]
    fn cell_mut(&mut self, slot: usize) -> &mut Option<(K, V)> {
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// Probes `key`'s partition (which must have a non-empty index).
    #[inline]
    fn probe(&self, key: &K, h: Hashed) -> Probe {
        let index = &self.parts[h.part()].index;
        debug_assert!(!index.is_empty());
        let mask = index.len() - 1;
        let fp = h.fingerprint();
        let mut pos = fp as usize & mask;
        loop {
            let e = index[pos];
            if e == 0 {
                return Probe::Vacant { pos };
            }
            if entry_fingerprint(e) == fp {
                let slot = entry_slot(e);
                let (k, _) = self.cell(slot).as_ref().expect("indexed slots are full");
                if k == key {
                    return Probe::Found { pos, slot };
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// The slot of `key`, if present.
    #[inline]
    fn find(&self, key: &K) -> Option<(Hashed, usize, usize)> {
        let h = Self::hash(key);
        if self.parts[h.part()].index.is_empty() {
            return None;
        }
        match self.probe(key, h) {
            Probe::Found { pos, slot } => Some((h, pos, slot)),
            Probe::Vacant { .. } => None,
        }
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let (_, _, slot) = self.find(key)?;
        self.cell(slot).as_ref().map(|(_, v)| v)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (_, _, slot) = self.find(key)?;
        self.cell_mut(slot).as_mut().map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// Starts loading the index line a probe for `h` reads first, so that a
    /// probe a few keys later finds it in cache. Only a hint: no effect on
    /// the table's contents, and none at all off x86-64.
    #[inline]
    pub fn prefetch(&self, h: Hashed) {
        let index = &self.parts[h.part()].index;
        if index.is_empty() {
            return;
        }
        let at = &index[h.fingerprint() as usize & (index.len() - 1)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching is a hint that never faults, and `at` is a
        // valid reference anyway.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>((at as *const u64).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// The entry of `key`: present, or where it would go. One probe for
    /// both the lookup and the insert.
    #[inline]
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let h = Self::hash(&key);
        self.entry_hashed(key, h)
    }

    /// As [`Table::entry`], with the key's hash computed by [`Table::hash`].
    #[inline]
    pub fn entry_hashed(&mut self, key: K, h: Hashed) -> Entry<'_, K, V> {
        debug_assert_eq!(h, Self::hash(&key), "hash of another key");
        // Grow first, so that a vacant position stays valid for the insert.
        self.parts[h.part()].reserve_one();
        match self.probe(&key, h) {
            Probe::Found { slot, .. } => Entry::Occupied(
                self.cell_mut(slot)
                    .as_mut()
                    .map(|(_, v)| v)
                    .expect("indexed slots are full"),
            ),
            Probe::Vacant { pos } => Entry::Vacant(VacantEntry {
                table: self,
                key,
                h,
                pos,
            }),
        }
    }

    /// Inserts or replaces; returns the value replaced.
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entry(key) {
            Entry::Occupied(v) => Some(std::mem::replace(v, value)),
            Entry::Vacant(e) => {
                e.insert(value);
                None
            }
        }
    }

    /// Stores a new record in a free slot or at the slab's end.
    fn alloc(&mut self, key: K, value: V) -> usize {
        if let Some(slot) = self.free.pop() {
            let slot = slot as usize;
            let cell = self.cell_mut(slot);
            assert!(cell.is_none(), "free slots are empty");
            *cell = Some((key, value));
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            assert!(
                self.chunks.len() * CHUNK < MAX_SLOTS,
                "table slots exhausted"
            );
            let chunk = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(CHUNK));
            assert!(chunk.is_empty() && chunk.capacity() >= CHUNK);
            self.chunks.push(chunk);
        }
        let chunk_no = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_no];
        chunk.push(Some((key, value)));
        chunk_no * CHUNK + chunk.len() - 1
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (h, pos, slot) = self.find(key)?;
        self.parts[h.part()].remove_at(pos);
        let (_, value) = self.cell_mut(slot).take().expect("indexed slots are full");
        self.free.push(slot as u32);
        self.len -= 1;
        Some(value)
    }

    /// One bounded step of memory work ahead of inserts (see the module
    /// doc): readies the next slab chunk once the last one is half full, or
    /// else grows one index partition past 5/8 full. Returns whether it did
    /// anything; call again until it returns `false`. Changes no content
    /// and no slot numbering (replicas stay identical whenever it runs).
    pub fn prepare(&mut self) -> bool {
        if let Some(spare) = &mut self.spare {
            if self.spare_touched < CHUNK {
                // Writing every cell once faults its pages in now, a slice
                // per step so that no step holds the core for long.
                let end = (self.spare_touched + PREPARE_CELLS_PER_STEP).min(CHUNK);
                for cell in &mut spare.spare_capacity_mut()[self.spare_touched..end] {
                    cell.write(None);
                }
                self.spare_touched = end;
                return true;
            }
        }
        let half_full = self.chunks.last().is_none_or(|c| c.len() >= CHUNK / 2);
        if self.spare.is_none() && self.free.is_empty() && half_full {
            self.spare = Some(Vec::with_capacity(CHUNK));
            self.spare_touched = 0;
            return true;
        }
        for _ in 0..PARTITIONS {
            let at = self.prepare_cursor;
            self.prepare_cursor = (at + 1) % PARTITIONS;
            let part = &mut self.parts[at];
            if part.len > 0 && part.len * 8 >= part.index.len() * PREPARE_INDEX_EIGHTHS {
                part.resize(part.index.len() * 2);
                return true;
            }
        }
        false
    }

    /// Room for `additional` more entries, spread over the partitions.
    pub fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(PARTITIONS);
        for part in &mut self.parts {
            let slots = Part::slots_for(part.len + each);
            if slots > part.index.len() {
                part.resize(slots);
            }
        }
    }

    /// Every entry, in no particular order (sort for anything deterministic).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.chunks
            .iter()
            .flatten()
            .filter_map(|c| c.as_ref().map(|(k, v)| (k, v)))
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq, V> Index<&K> for Table<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("key present in table")
    }
}

/// A key's place in the table (see [`Table::entry`]).
pub enum Entry<'a, K, V> {
    Occupied(&'a mut V),
    Vacant(VacantEntry<'a, K, V>),
}

/// An absent key and the index position it goes to.
pub struct VacantEntry<'a, K, V> {
    table: &'a mut Table<K, V>,
    key: K,
    h: Hashed,
    pos: usize,
}

impl<'a, K: Hash + Eq, V> VacantEntry<'a, K, V> {
    /// Inserts the value; returns it in place.
    #[inline]
    pub fn insert(self, value: V) -> &'a mut V {
        let VacantEntry { table, key, h, pos } = self;
        let slot = table.alloc(key, value);
        let part = &mut table.parts[h.part()];
        debug_assert_eq!(part.index[pos], 0);
        part.index[pos] = index_entry(h.fingerprint(), slot);
        part.len += 1;
        table.len += 1;
        table
            .cell_mut(slot)
            .as_mut()
            .map(|(_, v)| v)
            .expect("just stored")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every lookup, value and count agrees with the model.
    fn agrees(table: &Table<u128, u64>, model: &HashMap<u128, u64>) {
        assert_eq!(table.len(), model.len());
        for (k, v) in model {
            assert_eq!(table.get(k), Some(v));
            assert_eq!(table[k], *v);
            assert!(table.contains_key(k));
        }
        let mut values: Vec<u64> = table.values().copied().collect();
        let mut expected: Vec<u64> = model.values().copied().collect();
        values.sort_unstable();
        expected.sort_unstable();
        assert_eq!(values, expected);
        let mut entries: Vec<(u128, u64)> = table.iter().map(|(k, v)| (*k, *v)).collect();
        let mut expected: Vec<(u128, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        entries.sort_unstable();
        expected.sort_unstable();
        assert_eq!(entries, expected);
        let indexed: usize = table.parts.iter().map(|p| p.len).sum();
        assert_eq!(indexed, table.len());
        for p in &table.parts {
            assert_eq!(p.index.iter().filter(|&&e| e != 0).count(), p.len);
        }
    }

    #[test]
    fn behaves_like_a_hash_map() {
        let mut table: Table<u128, u64> = Table::default();
        let mut model: HashMap<u128, u64> = HashMap::new();
        assert_eq!(table.get(&1), None);
        assert_eq!(table.remove(&1), None);
        // Ids sharing their low bits must still spread over partitions.
        for i in 0..20_000u128 {
            let id = i << 64;
            assert_eq!(table.insert(id, i as u64), model.insert(id, i as u64));
        }
        for i in (0..20_000u128).step_by(3) {
            assert_eq!(table.remove(&(i << 64)), model.remove(&(i << 64)));
            assert_eq!(table.remove(&(i << 64)), None);
        }
        assert_eq!(table.insert(5 << 64, 99), model.insert(5 << 64, 99));
        agrees(&table, &model);
        *table.get_mut(&(5 << 64)).unwrap() = 7;
        assert_eq!(table.get(&(5 << 64)), Some(&7));
        // Partition and fingerprint bits are independent: the keys of one
        // partition spread over its index (few long probes).
        let part = &table.parts[0];
        let mask = part.index.len() - 1;
        let homes: std::collections::HashSet<usize> = part
            .index
            .iter()
            .filter(|&&e| e != 0)
            .map(|&e| entry_fingerprint(e) as usize & mask)
            .collect();
        assert!(
            homes.len() * 2 > part.len,
            "{} homes for {} entries",
            homes.len(),
            part.len
        );
        let busiest = table.parts.iter().map(|p| p.len).max().unwrap();
        assert!(
            busiest < 3 * table.len() / PARTITIONS,
            "partitions stay balanced: {busiest}"
        );
    }

    #[test]
    fn removed_slots_are_reused_and_probes_survive_removal() {
        let mut table: Table<u128, u64> = Table::default();
        let mut model: HashMap<u128, u64> = HashMap::new();
        // A deterministic mix of inserts, replaces, removes and entry calls
        // over a small key space, so removals hit probe chains often.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (u128::from(x % 5_000) << 64) | u128::from(x % 7);
            match x % 5 {
                0 | 1 => assert_eq!(table.insert(key, step), model.insert(key, step)),
                2 => assert_eq!(table.remove(&key), model.remove(&key)),
                3 => match table.entry(key) {
                    Entry::Occupied(v) => {
                        let m = model.get_mut(&key).expect("occupied in the model");
                        *v += 1;
                        *m += 1;
                    }
                    Entry::Vacant(e) => {
                        assert!(!model.contains_key(&key));
                        assert_eq!(*e.insert(step), step);
                        model.insert(key, step);
                    }
                },
                _ => assert_eq!(table.get(&key), model.get(&key)),
            }
            if step % 20_000 == 0 {
                agrees(&table, &model);
            }
        }
        agrees(&table, &model);
        // Slots freed by removals were reused: the slab never held more
        // slots than the most keys present at once (5,000 × 7 possible).
        let slots: usize = table.chunks.iter().map(|c| c.len()).sum();
        assert_eq!(slots, table.len() + table.free.len());
        assert!(slots <= 35_000, "slab slots: {slots}");
        // Empty it entirely, then refill: every slot is reused.
        let keys: Vec<u128> = model.keys().copied().collect();
        for k in &keys {
            assert_eq!(table.remove(k), model.remove(k));
        }
        agrees(&table, &model);
        assert!(table.is_empty());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.insert(*k, i as u64), None);
            model.insert(*k, i as u64);
        }
        agrees(&table, &model);
        let after: usize = table.chunks.iter().map(|c| c.len()).sum();
        assert_eq!(after, slots, "refill used only freed slots");
    }

    #[test]
    fn prehashed_entry_and_reserve_keep_contents() {
        let mut table: Table<u128, u64> = Table::default();
        table.reserve(100_000);
        let reserved: Vec<usize> = table.parts.iter().map(|p| p.index.len()).collect();
        for i in 0..100_000u128 {
            let key = (7 << 64) | ((i % 64) << 40) | (i / 64);
            let h = Table::<u128, u64>::hash(&key);
            table.prefetch(h);
            match table.entry_hashed(key, h) {
                Entry::Vacant(e) => {
                    e.insert(i as u64);
                }
                Entry::Occupied(_) => panic!("fresh key {key} found"),
            }
        }
        let after: Vec<usize> = table.parts.iter().map(|p| p.index.len()).collect();
        // Partitions fill unevenly, so a few may still grow once.
        let grown = reserved.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(grown < PARTITIONS / 8, "{grown} partitions grew");
        for i in 0..100_000u128 {
            let key = (7 << 64) | ((i % 64) << 40) | (i / 64);
            assert_eq!(table.get(&key), Some(&(i as u64)));
        }
    }

    #[test]
    fn prepared_memory_is_what_inserts_then_use() {
        let mut table: Table<u128, u64> = Table::default();
        let mut model: HashMap<u128, u64> = HashMap::new();
        // Empty: the first chunk is readied, and the first insert takes it.
        assert!(table.prepare());
        let spare = table.spare.as_ref().unwrap().as_ptr();
        // Its pages are touched a bounded slice per step.
        let mut steps = 0;
        while table.spare_touched < CHUNK {
            assert!(table.prepare());
            steps += 1;
        }
        assert_eq!(steps, CHUNK / PREPARE_CELLS_PER_STEP);
        table.insert(1, 1);
        model.insert(1, 1);
        assert_eq!(
            table.chunks[0].as_ptr(),
            spare,
            "the spare became the chunk"
        );
        assert!(table.spare.is_none());
        // Less than half a chunk used: nothing to ready (one partition
        // holding a single entry is not 5/8 full of its 16 slots).
        assert!(!table.prepare());
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut grown_ahead = 0;
        for step in 0..3 * CHUNK as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = u128::from(x) << 32 | u128::from(step);
            // Preparing between inserts: every new chunk is the spare, and
            // no insert grows a partition that prepare would have grown.
            while table.prepare() {
                grown_ahead += 1;
            }
            let full_part = table.parts[Table::<u128, u64>::hash(&key).part()]
                .index
                .len();
            let chunks = table.chunks.len();
            let spare = table.spare.as_ref().map(|c| c.as_ptr());
            assert_eq!(table.insert(key, step), model.insert(key, step));
            let part = &table.parts[Table::<u128, u64>::hash(&key).part()];
            if full_part > 0 {
                // (An empty partition's first insert sizes it: 128 bytes.)
                assert_eq!(part.index.len(), full_part, "the insert did not resize");
            }
            if table.chunks.len() > chunks {
                assert_eq!(Some(table.chunks.last().unwrap().as_ptr()), spare);
            }
        }
        assert!(
            grown_ahead > PARTITIONS,
            "prepare grew partitions ({grown_ahead})"
        );
        agrees(&table, &model);
        // Removals leave free slots: no chunk is readied while they last.
        let keys: Vec<u128> = model.keys().copied().take(10).collect();
        for k in &keys {
            assert_eq!(table.remove(k), model.remove(k));
        }
        table.spare = None;
        while table.prepare() {}
        assert!(table.spare.is_none());
        agrees(&table, &model);
    }
}
