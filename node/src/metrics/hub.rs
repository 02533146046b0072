//! Where threads publish their cells and the scrape reads them.
//!
//! Each counting thread (every glommio core, and the HTTP thread) owns one
//! slot and is its only writer: every [`PUBLISH_INTERVAL`] it stores a copy
//! of its cells and the gauges it samples (Raft, pending, balances). A
//! scrape loads every slot and sums. Why publish rather than ask each core
//! at scrape time: a scrape then never waits on a busy core nor puts a
//! message in a data-plane queue, and the hot path never sees the scraper;
//! the price is that figures are up to one interval old.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::cells::{self, Counts};

/// How often a thread publishes its cells: the staleness of a scrape.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// The window of `settle_transactions_per_second`.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Samples kept for the rate: one per publish over the window, and one more.
const RATE_SAMPLES_MAX: usize =
    (RATE_WINDOW.as_millis() / PUBLISH_INTERVAL.as_millis()) as usize + 1;

/// Participants whose balances one shard exports: bounds the series a
/// scrape carries (beyond it, balances stay readable on `GET /v1/balances`).
pub const BALANCE_PARTICIPANTS_MAX: usize = 1_024;

/// One Raft group's replica on this node, as sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGauges {
    pub group: u16,
    pub name: String,
    pub term: u64,
    /// The leader this replica knows (node id), if any.
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
    /// On the leader: the furthest-behind member's distance from the last
    /// log index, entries.
    pub replication_lag: Option<u64>,
}

/// Transactions waiting in one shard's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGauge {
    pub shard: String,
    pub window: &'static str,
    pub transactions: u64,
}

/// Transactions a shard rolled to a later window (unfunded at their
/// deadline), since its log began: its leader's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledGauge {
    pub shard: String,
    pub transactions: u64,
}

/// One participant's account in one currency, minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceGauge {
    pub participant: String,
    pub currency: String,
    pub balance: u64,
    pub incoming: u64,
}

/// One participant's liquidity forecast in one currency,
/// `GAUGE_HORIZON_HOURS` ahead (minor units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastGauge {
    pub participant: String,
    pub currency: String,
    /// The balance's quantiles of [`FORECAST_QUANTILES`], in that order.
    pub quantiles: [i64; 7],
    /// What to pre-fund so the 95 % lower bound stays at or above zero
    /// over the horizon (0: nothing).
    pub shortfall: u64,
}

/// The quantiles of `settle_liquidity_forecast`, as their labels spell them.
pub const FORECAST_QUANTILES: [&str; 7] = ["0.025", "0.05", "0.1", "0.5", "0.9", "0.95", "0.975"];

/// What a thread samples when it publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub groups: Vec<GroupGauges>,
    pub pending: Vec<PendingGauge>,
    pub rolled: Vec<RolledGauge>,
    pub balances: Vec<BalanceGauge>,
    pub forecasts: Vec<ForecastGauge>,
    pub rails: Vec<cells::RailGauge>,
}

/// One thread's published state.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub counts: Counts,
    pub gauges: Gauges,
    /// Transactions answered per second over [`RATE_WINDOW`].
    pub transactions_per_second: f64,
}

/// A slot on its own cache line(s): a publish never invalidates a
/// neighbour's line.
#[repr(align(128))]
#[derive(Default)]
struct Slot(ArcSwapOption<Published>);

/// Every slot of a node.
pub struct Hub {
    /// Label of each group id (0: control; shards: their currency).
    group_names: Vec<String>,
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// The sum of every slot.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub counts: Counts,
    pub gauges: Gauges,
    pub transactions_per_second: f64,
}

impl Hub {
    /// A hub with `threads` slots; `group_names[g]` labels group `g`.
    pub fn new(threads: usize, group_names: Vec<String>) -> Arc<Hub> {
        assert!(group_names.len() <= cells::GROUP_SLOTS);
        Arc::new(Hub {
            group_names,
            slots: (0..threads).map(|_| Slot::default()).collect(),
        })
    }

    pub fn group_name(&self, group: usize) -> Option<&str> {
        self.group_names.get(group).map(String::as_str)
    }

    /// The publisher of slot `slot`: give it to the one thread that owns it.
    pub fn publisher(self: &Arc<Self>, slot: usize) -> Publisher {
        assert!(
            slot < self.slots.len(),
            "slot {slot} of {}",
            self.slots.len()
        );
        Publisher {
            hub: self.clone(),
            slot,
            history: VecDeque::with_capacity(RATE_SAMPLES_MAX),
        }
    }

    /// Sums every slot published so far.
    pub fn merged(&self) -> Merged {
        let mut out = Merged::default();
        for slot in self.slots.iter() {
            if let Some(p) = slot.0.load_full() {
                out.counts.add(&p.counts);
                out.transactions_per_second += p.transactions_per_second;
                out.gauges.groups.extend(p.gauges.groups.iter().cloned());
                out.gauges.pending.extend(p.gauges.pending.iter().cloned());
                out.gauges.rolled.extend(p.gauges.rolled.iter().cloned());
                out.gauges
                    .balances
                    .extend(p.gauges.balances.iter().cloned());
                out.gauges.rails.extend(p.gauges.rails.iter().cloned());
                out.gauges
                    .forecasts
                    .extend(p.gauges.forecasts.iter().cloned());
            }
        }
        out.gauges.groups.sort_by_key(|g| g.group);
        out
    }
}

/// Publishes one thread's cells into its slot; owned by that thread.
pub struct Publisher {
    hub: Arc<Hub>,
    slot: usize,
    /// (when, transactions answered so far) per publish, oldest first.
    history: VecDeque<(Instant, u64)>,
}

impl Publisher {
    /// The hub this publisher writes to.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Copies this thread's cells and `gauges` into the slot.
    pub fn publish(&mut self, mut gauges: Gauges) {
        let counts = cells::snapshot();
        gauges.rails = cells::rails();
        let now = Instant::now();
        let total = counts.transactions_total();
        let transactions_per_second = self.rate(now, total);
        self.hub.slots[self.slot].0.store(Some(Arc::new(Published {
            counts,
            gauges,
            transactions_per_second,
        })));
    }

    /// The rate over the last [`RATE_WINDOW`] (or since the first publish).
    fn rate(&mut self, now: Instant, total: u64) -> f64 {
        if self.history.len() == RATE_SAMPLES_MAX {
            self.history.pop_front();
        }
        self.history.push_back((now, total));
        let (then, before) = self.history[0];
        let seconds = now.duration_since(then).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        (total - before) as f64 / seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::cells::{transactions_answered, Outcome};

    #[test]
    fn a_scrape_sums_what_each_thread_published() {
        let hub = Hub::new(2, vec!["control".into(), "USD".into()]);
        let threads: Vec<_> = (0..2)
            .map(|slot| {
                let mut publisher = hub.publisher(slot);
                std::thread::spawn(move || {
                    transactions_answered(
                        std::iter::repeat_n((Some(1), Outcome::Created), slot + 1),
                        1.0,
                    );
                    publisher.publish(Gauges::default());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let merged = hub.merged();
        assert_eq!(merged.counts.transactions[1][Outcome::Created as usize], 3);
        assert_eq!(merged.counts.transaction_latency_ms.count, 3);
    }

    #[test]
    fn the_rate_is_taken_over_the_window() {
        let hub = Hub::new(1, vec![]);
        let mut p = hub.publisher(0);
        let t0 = Instant::now();
        assert_eq!(p.rate(t0, 0), 0.0);
        assert_eq!(p.rate(t0 + Duration::from_secs(1), 100), 100.0);
        for i in 2..=40u64 {
            p.rate(t0 + PUBLISH_INTERVAL * i as u32, 1_000 * i);
        }
        // 4,000 per 250 ms tick: 4,000 per second over a full window.
        let r = p.rate(t0 + PUBLISH_INTERVAL * 41, 41_000);
        assert!((r - 4_000.0).abs() < 1e-6, "{r}");
    }
}
