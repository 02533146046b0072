//! Settled net flow per participant per time bucket: the history liquidity
//! forecasts are made from (`settle-forecast`).
//!
//! Every balance change that settlement makes in this shard's currency (a
//! cycle's debits and credits, a refund of a failed wire, a confirmed
//! incoming wire) adds its amount to its participant's bucket of the
//! entry's leader timestamp, so every replica keeps the same history, and
//! the history is part of the shard's snapshot (a restart or a new replica
//! has it back; the log alone would not do, it is purged behind snapshots).
//!
//! Openings and deposits are not flows here: they are funding, what a
//! forecast's shortfall asks for, not a pattern to forecast (one large
//! deposit would read as a daily inflow, or as noise that hides a real
//! shortfall). They are in the balance a forecast starts from.
//!
//! Bounded: [`FLOW_PARTICIPANTS_MAX`] participants × [`FLOW_BUCKETS`]
//! buckets of eight bytes; older buckets are overwritten in place (a ring
//! per participant), so recording a flow never allocates except for a
//! participant's first flow.

use std::collections::BTreeMap;

/// The default width of a bucket: a quarter of an hour.
pub const FLOW_BUCKET_US_DEFAULT: u64 = 15 * 60 * 1_000_000;

/// Buckets of one day at the default width: the forecast's season.
pub const FLOW_SEASON_BUCKETS: usize = 96;

/// Buckets kept per participant: four days of the default width (the
/// forecast needs two whole days to start, and measures its error on the
/// rest).
pub const FLOW_BUCKETS: usize = 4 * FLOW_SEASON_BUCKETS;

/// Participants whose history one shard keeps: 4,096 × 384 buckets × 8
/// bytes = 12 MiB at most per shard. The flows of participants beyond it
/// are counted in [`FlowHistory::untracked`], not kept.
pub const FLOW_PARTICIPANTS_MAX: usize = 4_096;

/// One participant's ring of buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The bucket number (time / width) of its first flow.
    pub(super) first: u64,
    /// The newest bucket number written; slots of older buckets hold
    /// `slots[b % FLOW_BUCKETS]` for `b` in `newest - FLOW_BUCKETS + 1..=newest`.
    pub(super) newest: u64,
    pub(super) slots: Box<[i64]>,
}

impl Ring {
    fn new(bucket: u64) -> Ring {
        Ring {
            first: bucket,
            newest: bucket,
            slots: vec![0; FLOW_BUCKETS].into_boxed_slice(),
        }
    }

    fn add(&mut self, bucket: u64, amount: i64) {
        if bucket > self.newest {
            // Buckets passed without a flow: clear their slots (at most a ring).
            let passed = (bucket - self.newest).min(FLOW_BUCKETS as u64);
            for b in bucket + 1 - passed..=bucket {
                self.slots[(b % FLOW_BUCKETS as u64) as usize] = 0;
            }
            self.newest = bucket;
        }
        if self.newest - bucket < FLOW_BUCKETS as u64 {
            let slot = &mut self.slots[(bucket % FLOW_BUCKETS as u64) as usize];
            *slot = slot.saturating_add(amount);
        }
    }

    /// The flow of `bucket` (0 outside the kept window or after `newest`).
    fn get(&self, bucket: u64) -> i64 {
        if bucket > self.newest || self.newest - bucket >= FLOW_BUCKETS as u64 {
            return 0;
        }
        self.slots[(bucket % FLOW_BUCKETS as u64) as usize]
    }
}

/// Every participant's ring, and the bucket width they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowHistory {
    pub(super) bucket_us: u64,
    pub(super) rings: BTreeMap<u32, Ring>,
    /// Flows of participants beyond [`FLOW_PARTICIPANTS_MAX`], not kept.
    pub(super) untracked: u64,
}

impl Default for FlowHistory {
    fn default() -> Self {
        FlowHistory::with_bucket_us(FLOW_BUCKET_US_DEFAULT)
    }
}

/// A participant's history as a forecast reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSeries {
    /// The bucket width.
    pub bucket_us: u64,
    /// The bucket number of `flows[0]`.
    pub first_bucket: u64,
    /// Flows of whole buckets, oldest first, up to the bucket before `now`.
    pub flows: Vec<i64>,
    /// The flow so far of the bucket `now` is in (already in the balance).
    pub current: i64,
}

impl FlowSeries {
    /// Start of the bucket after the last whole one: the first forecast step.
    pub fn next_bucket_start_us(&self) -> u64 {
        (self.first_bucket + self.flows.len() as u64).saturating_mul(self.bucket_us)
    }
}

impl FlowHistory {
    pub fn with_bucket_us(bucket_us: u64) -> FlowHistory {
        assert!(bucket_us > 0, "a bucket has a width");
        FlowHistory {
            bucket_us,
            rings: BTreeMap::new(),
            untracked: 0,
        }
    }

    pub fn bucket_us(&self) -> u64 {
        self.bucket_us
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Participants with a history.
    pub fn participants(&self) -> impl Iterator<Item = u32> + '_ {
        self.rings.keys().copied()
    }

    /// Adds a balance change of `amount` (signed, minor units) at `at_us`.
    /// Balances stay below `BALANCE_MAX` (2^62), so a change fits an i64.
    #[inline]
    pub fn add(&mut self, participant: u32, at_us: u64, amount: i128) {
        if amount == 0 {
            return;
        }
        let amount = i64::try_from(amount).expect("balance changes stay below 2^62");
        let bucket = at_us / self.bucket_us;
        let full = self.rings.len() >= FLOW_PARTICIPANTS_MAX;
        match self.rings.get_mut(&participant) {
            Some(ring) => ring.add(bucket, amount),
            None if full => self.untracked += 1,
            None => {
                let mut ring = Ring::new(bucket);
                ring.add(bucket, amount);
                self.rings.insert(participant, ring);
            }
        }
    }

    /// `participant`'s whole buckets before the one `now_us` is in (at most
    /// [`FLOW_BUCKETS`], never before its first flow), and the current one's
    /// flow so far. `None` when it never had a flow here.
    pub fn series(&self, participant: u32, now_us: u64) -> Option<FlowSeries> {
        let ring = self.rings.get(&participant)?;
        let now = (now_us / self.bucket_us).max(ring.newest);
        let oldest = ring
            .first
            .max(now.saturating_add(1).saturating_sub(FLOW_BUCKETS as u64));
        let flows: Vec<i64> = (oldest..now).map(|b| ring.get(b)).collect();
        assert!(flows.len() < FLOW_BUCKETS);
        Some(FlowSeries {
            bucket_us: self.bucket_us,
            first_bucket: oldest,
            flows,
            current: ring.get(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = FLOW_BUCKET_US_DEFAULT;

    #[test]
    fn flows_add_up_per_bucket_and_old_buckets_roll_off() {
        let mut h = FlowHistory::default();
        h.add(1, 10, 100);
        h.add(1, W - 1, -30);
        h.add(1, 2 * W + 5, 7);
        let s = h.series(1, 2 * W + 6).unwrap();
        assert_eq!(
            (s.first_bucket, s.flows.clone(), s.current),
            (0, vec![70, 0], 7)
        );
        assert_eq!(s.next_bucket_start_us(), 2 * W);
        // Far later: only the kept window, the passed buckets zero.
        let later = (FLOW_BUCKETS as u64 + 10) * W;
        h.add(1, later, -5);
        let s = h.series(1, later).unwrap();
        assert_eq!(s.flows.len(), FLOW_BUCKETS - 1);
        assert!(s.flows.iter().all(|&f| f == 0));
        assert_eq!(s.current, -5);
        assert_eq!(h.series(2, later), None);
    }

    #[test]
    fn participants_beyond_the_bound_are_counted_not_kept() {
        let mut h = FlowHistory::default();
        for p in 0..FLOW_PARTICIPANTS_MAX as u32 + 3 {
            h.add(p, 1, 1);
        }
        assert_eq!(h.rings.len(), FLOW_PARTICIPANTS_MAX);
        assert_eq!(h.untracked, 3);
    }
}
