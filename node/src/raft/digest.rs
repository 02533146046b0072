//! Replica digests at agreed log positions, without stalling a core.
//!
//! After every applied entry the state machine records the state's
//! [`GroupState::fingerprint`](super::state_machine::GroupState::fingerprint)
//! (a constant-time summary the state keeps up to date as it applies) with
//! the entry's index in a bounded ring. Asking for a digest reads the ring:
//! no serialisation of the state, nothing proportional to its size, so
//! `settle status --digest` never holds a core long enough to disturb
//! heartbeats. Replicas compare their digests *at the same index* (the
//! status tool picks one every replica has passed), so a busy cluster
//! compares like with like instead of states a few entries apart.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Applied entries whose digest a replica keeps: a replica further behind
/// the chosen index than this cannot be compared until it catches up.
pub const DIGEST_RING_ENTRIES: usize = 4_096;

/// One replica's digest at one applied index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The index the digest was taken at (after applying it).
    pub applied: Option<u64>,
    /// The state's fingerprint there.
    pub fingerprint: u64,
    /// The oldest index this replica still keeps a digest for.
    pub kept_from: u64,
}

/// The newest [`DIGEST_RING_ENTRIES`] (index, fingerprint) pairs, in index
/// order.
#[derive(Debug, Default)]
pub struct DigestRing {
    entries: VecDeque<(u64, u64)>,
}

impl DigestRing {
    /// Records the fingerprint after applying `index` (indexes only grow,
    /// except after a snapshot install, which clears the ring first).
    pub fn push(&mut self, index: u64, fingerprint: u64) {
        if let Some(&(last, _)) = self.entries.back() {
            assert!(
                index > last,
                "digests recorded in log order: {index} after {last}"
            );
        }
        if self.entries.len() == DIGEST_RING_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((index, fingerprint));
        assert!(self.entries.len() <= DIGEST_RING_ENTRIES);
    }

    /// Forgets every digest (the state was replaced by a snapshot).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The digest at `index`, or the newest one when `index` is `None`;
    /// `None` when that index is not kept (not applied yet, or too old).
    pub fn at(&self, index: Option<u64>) -> Option<Digest> {
        let kept_from = self.entries.front()?.0;
        let &(applied, fingerprint) = match index {
            None => self.entries.back()?,
            Some(i) => {
                let slot = self.entries.binary_search_by_key(&i, |&(x, _)| x).ok()?;
                &self.entries[slot]
            }
        };
        Some(Digest {
            applied: Some(applied),
            fingerprint,
            kept_from,
        })
    }
}

/// Folds `words` into `seed`: a 64-bit mix (splitmix64's finaliser per
/// word). Not cryptographic: it tells replicas apart, not attackers.
pub fn fold(seed: u64, words: &[u64]) -> u64 {
    let mut h = seed;
    for &w in words {
        h = mix(h ^ w);
    }
    h
}

/// splitmix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_answers_at_kept_indexes_only_and_stays_bounded() {
        let mut ring = DigestRing::default();
        assert_eq!(ring.at(None), None);
        for i in 1..=(DIGEST_RING_ENTRIES as u64 + 10) {
            ring.push(i * 2, i);
        }
        assert_eq!(ring.entries.len(), DIGEST_RING_ENTRIES);
        let newest = ring.at(None).unwrap();
        assert_eq!(newest.applied, Some((DIGEST_RING_ENTRIES as u64 + 10) * 2));
        assert_eq!(newest.kept_from, 22);
        assert_eq!(ring.at(Some(22)).unwrap().fingerprint, 11);
        assert_eq!(ring.at(Some(20)), None, "pushed out");
        assert_eq!(ring.at(Some(23)), None, "never applied (odd)");
        assert_eq!(ring.at(Some(u64::MAX)), None, "not applied yet");
        ring.clear();
        assert_eq!(ring.at(None), None);
    }

    #[test]
    #[should_panic(expected = "log order")]
    fn digests_out_of_log_order_are_a_bug() {
        let mut ring = DigestRing::default();
        ring.push(5, 1);
        ring.push(5, 2);
    }

    #[test]
    fn the_fold_depends_on_every_word_and_their_order() {
        let base = fold(0, &[1, 2, 3]);
        assert_ne!(base, fold(0, &[1, 2, 4]));
        assert_ne!(base, fold(0, &[2, 1, 3]));
        assert_ne!(base, fold(1, &[1, 2, 3]));
        assert_eq!(base, fold(0, &[1, 2, 3]));
    }
}
