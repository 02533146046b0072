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
use crate::forecast::{Horizon, GAUGE_HORIZON_HOURS};
use crate::intake::router::ParticipantFlows;
use crate::metrics::hub::ForecastGauge;
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
    /// Per shard (same order): its latest liquidity forecasts.
    forecasts: Vec<Rc<RefCell<ForecastCache>>>,
}

/// A shard's liquidity forecast gauges, refreshed once per flow bucket: a
/// forecast starts from the balance at the current bucket's start and reads
/// whole buckets only, so within a bucket it cannot change.
#[derive(Default)]
struct ForecastCache {
    /// The bucket (time / width) the gauges were computed in.
    bucket: Option<u64>,
    /// A refresh is running on the store threads.
    running: bool,
    gauges: Vec<ForecastGauge>,
}

impl CoreSampler {
    pub fn add_group(&mut self, group: GroupId, name: &str, handle: Rc<dyn GroupHandle>) {
        self.groups.push((group, name.to_string(), handle));
    }

    pub fn add_shard(&mut self, group: GroupId, currency: &str, state: Rc<RefCell<ShardState>>) {
        self.shards.push((group, currency.to_string(), state));
        self.forecasts.push(Rc::default());
    }

    /// Groups of this core whose replica leads.
    fn leads(&self, group: GroupId) -> bool {
        self.groups
            .iter()
            .any(|(g, _, h)| *g == group && h.metrics().current_leader == Some(h.metrics().id))
    }

    /// Starts a refresh of the forecast gauges of every shard this core
    /// leads whose bucket changed since the last one: copies of at most
    /// [`BALANCE_PARTICIPANTS_MAX`] histories leave the core, the models
    /// run on the store threads.
    fn refresh_forecasts(&self) {
        let now = now_us();
        for ((group, currency, state), cache) in self.shards.iter().zip(&self.forecasts) {
            if !self.leads(*group) {
                continue;
            }
            let bucket = now / state.borrow().flow_bucket_us();
            {
                let c = cache.borrow();
                if c.running || c.bucket == Some(bucket) {
                    continue;
                }
            }
            let Some(code) = settle_codec::Currency::from_code(currency) else {
                continue;
            };
            let inputs: Vec<ParticipantFlows> = {
                let state = state.borrow();
                state
                    .flow_participants()
                    .take(BALANCE_PARTICIPANTS_MAX)
                    .map(|p| ParticipantFlows {
                        participant: p,
                        balance: state.account(p).balance,
                        series: state.flow_series(p, now),
                    })
                    .collect()
            };
            cache.borrow_mut().running = true;
            let cache = cache.clone();
            let currency = currency.clone();
            glommio::spawn_local(async move {
                let computed =
                    crate::store_io::run(move || forecast_gauges(code, &currency, &inputs, now))
                        .await;
                let mut c = cache.borrow_mut();
                c.running = false;
                match computed {
                    Ok(gauges) => {
                        c.gauges = gauges;
                        c.bucket = Some(bucket);
                    }
                    Err(e) => tracing::warn!(error = %e, "liquidity forecasts not refreshed"),
                }
            })
            .detach();
        }
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
            if let Some(i) = self.shards.iter().position(|(g, _, _)| g == group) {
                gauges
                    .forecasts
                    .extend(self.forecasts[i].borrow().gauges.iter().cloned());
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

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The gauges of one shard's participants, [`GAUGE_HORIZON_HOURS`] ahead;
/// participants whose history is too short for the model have none.
fn forecast_gauges(
    code: settle_codec::Currency,
    currency: &str,
    inputs: &[ParticipantFlows],
    now: u64,
) -> Vec<ForecastGauge> {
    let horizon = Horizon::Hours(GAUGE_HORIZON_HOURS);
    inputs
        .iter()
        .filter_map(|flows| {
            let f = crate::forecast::compute(code, flows, now, horizon).ok()?;
            let last = f.steps.last()?;
            Some(ForecastGauge {
                participant: flows.participant.to_string(),
                currency: currency.to_string(),
                quantiles: [
                    last.lower[2],
                    last.lower[1],
                    last.lower[0],
                    last.point,
                    last.upper[0],
                    last.upper[1],
                    last.upper[2],
                ],
                shortfall: f.shortfall.map_or(0, |s| s.amount),
            })
        })
        .collect()
}

/// Publishes this core's metrics until `stop`.
pub async fn run(mut publisher: Publisher, sampler: CoreSampler, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        sampler.refresh_forecasts();
        publisher.publish(sampler.sample());
        glommio::timer::sleep(PUBLISH_INTERVAL).await;
    }
}
