//! Each thread's metrics publisher: a core samples the gauges of the groups
//! it owns (Raft term, leader, indexes; a shard leader's pending windows and
//! balances) and publishes them with its counting cells every
//! [`PUBLISH_INTERVAL`]. Lives beside `server`, which knows the groups, so
//! that `metrics` imports nothing above it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use settle_codec::Window;

use crate::cluster::handle::{group_status, GroupHandle};
use crate::metrics::hub::BALANCE_PARTICIPANTS_MAX;
use crate::metrics::{
    BalanceGauge, Gauges, GroupGauges, PendingGauge, Publisher, PUBLISH_INTERVAL,
};
use crate::shard::{GroupId, ShardState};

/// The groups and shard states of one core.
#[derive(Default)]
pub struct CoreSampler {
    groups: Vec<(GroupId, String, Rc<dyn GroupHandle>)>,
    shards: Vec<(GroupId, String, Rc<RefCell<ShardState>>)>,
}

impl CoreSampler {
    pub fn add_group(&mut self, group: GroupId, name: &str, handle: Rc<dyn GroupHandle>) {
        self.groups.push((group, name.to_string(), handle));
    }

    pub fn add_shard(&mut self, group: GroupId, currency: &str, state: Rc<RefCell<ShardState>>) {
        self.shards.push((group, currency.to_string(), state));
    }

    /// What this core's groups look like now.
    pub fn sample(&self) -> Gauges {
        let mut gauges = Gauges::default();
        for (group, name, handle) in &self.groups {
            let s = group_status(*group, name, handle);
            let last_log = s.last_log.unwrap_or(0);
            let id = handle.metrics().id;
            let is_leader = s.leader == Some(id);
            let replication_lag = is_leader.then(|| {
                s.replication
                    .values()
                    .map(|matched| last_log.saturating_sub(matched.unwrap_or(0)))
                    .max()
                    .unwrap_or(0)
            });
            gauges.groups.push(GroupGauges {
                group: *group,
                name: name.clone(),
                term: s.term,
                leader: s.leader,
                is_leader,
                last_log,
                committed: s.committed.unwrap_or(0),
                applied: s.applied.unwrap_or(0),
                replication_lag,
            });
        }
        for (group, currency, state) in &self.shards {
            // A shard's books are the same on every replica: its leader
            // alone exports them, so a cluster shows each series once.
            let leads = gauges
                .groups
                .iter()
                .any(|g| g.group == *group && g.is_leader);
            if !leads {
                continue;
            }
            let state = state.borrow();
            gauges.rolled.push(crate::metrics::hub::RolledGauge {
                shard: currency.clone(),
                transactions: state.rolled_total(),
            });
            for window in Window::ALL {
                gauges.pending.push(PendingGauge {
                    shard: currency.clone(),
                    window: window.as_str(),
                    transactions: state.waiting_count(window) as u64,
                });
            }
            for (participant, account) in state.accounts().take(BALANCE_PARTICIPANTS_MAX) {
                gauges.balances.push(BalanceGauge {
                    participant: participant.to_string(),
                    currency: currency.clone(),
                    balance: account.balance,
                    incoming: account.incoming,
                });
            }
        }
        gauges
    }
}

/// Publishes this core's metrics until `stop`.
pub async fn run(mut publisher: Publisher, sampler: CoreSampler, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        publisher.publish(sampler.sample());
        glommio::timer::sleep(PUBLISH_INTERVAL).await;
    }
}
