//! `GET /metrics`: the hub's sums in the OpenMetrics text format, encoded
//! by the official client (`prometheus-client`) through a collector, so no
//! exposition is written by hand. Every family's HELP says what it counts;
//! `deploy/prometheus/README.md` has the same as a table.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use settle_storage::stats::DurableWrite;

use super::cells::{durable_kind, Outcome, RailEvent, RailGauge, GROUP_SLOTS};
use super::histogram::LatencyHistogram;
use super::hub::{Hub, Merged};

/// The content type of [`Exposition::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a scrape could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum ExpositionError {
    #[error("encoding the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// The registry a scrape encodes.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(hub: Arc<Hub>) -> Exposition {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(HubCollector { hub }));
        Exposition { registry }
    }

    /// The text a scrape answers.
    pub fn encode(&self) -> Result<String, ExpositionError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Debug)]
struct HubCollector {
    hub: Arc<Hub>,
}

type Labels = Vec<(&'static str, String)>;

/// Writes one family: its descriptor, then a sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &LatencyHistogram,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let mut metric = metric;
    metric.encode_histogram::<NoLabelSet>(h.sum_ms, h.count, &h.buckets(), None)
}

/// A histogram family: one histogram per label set.
fn histograms<'h>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, &'h LatencyHistogram)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in samples {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum_ms, h.count, &h.buckets(), None)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeCounterValue,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    metric.encode_gauge(&value)
}

impl prometheus_client::collector::Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.hub.merged();
        self.throughput(&mut encoder, &m)?;
        self.settlement(&mut encoder, &m)?;
        self.raft(&mut encoder, &m)?;
        self.storage(&mut encoder, &m)?;
        self.rails(&mut encoder, &m)?;
        self.books(&mut encoder, &m)
    }
}

impl HubCollector {
    fn shard_label(&self, slot: usize) -> String {
        match slot {
            0 => "none".to_string(),
            g => self
                .hub
                .group_name(g)
                .map_or_else(|| format!("group-{g}"), str::to_string),
        }
    }

    fn throughput(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        let c = &m.counts;
        let mut samples = Vec::new();
        for slot in 0..GROUP_SLOTS {
            for outcome in Outcome::ALL {
                let n = c.transactions[slot][outcome as usize];
                // Shards that exist are always shown; the "none" row only once used.
                if n > 0 || (slot > 0 && self.hub.group_name(slot).is_some()) {
                    let labels = vec![
                        ("shard", self.shard_label(slot)),
                        ("result", outcome.label().to_string()),
                    ];
                    samples.push((labels, ConstCounter::new(n)));
                }
            }
        }
        family(
            e,
            "settle_transactions",
            "Transactions answered by this node's intake (binary and HTTP), by booking shard (send currency; none: rejected before booking) and result (created, duplicate, conflict, rejected; unavailable: the request failed as a whole).",
            MetricType::Counter,
            samples,
        )?;
        gauge(
            e,
            "settle_transactions_per_second",
            "Transactions answered per second by this node over the last 5 s (rate(settle_transactions_total[...]) is the same from the counter).",
            m.transactions_per_second,
        )?;
        let batches = (1..GROUP_SLOTS)
            .filter(|&g| self.hub.group_name(g).is_some())
            .map(|g| {
                (
                    vec![("shard", self.shard_label(g))],
                    ConstCounter::new(c.batches[g]),
                )
            });
        family(
            e,
            "settle_batches",
            "Submit entries (group-commit batches of transactions) committed by the shard's leader on this node.",
            MetricType::Counter,
            batches,
        )?;
        histogram(
            e,
            "settle_transaction_latency_ms",
            "Milliseconds from a request's arrival at intake to its answer (durable on a majority), one sample per transaction.",
            &c.transaction_latency_ms,
        )
    }

    fn settlement(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        let c = &m.counts;
        histogram(
            e,
            "settle_settlement_latency_ms",
            "Milliseconds from when a transaction began to wait in its window (its acceptance, or its roll into a later window) to the apply of the cycle that settled it, one sample per settled transaction, on the control group's leader (cycles it closed itself; a cycle finished by recovery after a restart is not measured).",
            &c.settlement_latency_ms,
        )?;
        histogram(
            e,
            "settle_cycle_latency_ms",
            "Milliseconds from a settlement cycle's start entry to its applied entry (close, decide, apply), one sample per applied cycle, on the control group's leader.",
            &c.cycle_latency_ms,
        )?;
        counter(
            e,
            "settle_settlement_failures",
            "Settlement cycles that ended in an error on this node (the cycle is finished later by recovery).",
            c.settlement_failures,
        )?;
        counter(
            e,
            "settle_cycles_settled",
            "Settlement cycles applied that settled at least one transaction.",
            c.cycles_settled,
        )?;
        counter(
            e,
            "settle_settled_transactions",
            "Transactions settled by applied cycles.",
            c.settled_transactions,
        )?;
        counter(
            e,
            "settle_fx_costs",
            "USD: FX cost of the applied cycles that settled something.",
            c.fx_costs_usd,
        )?;
        counter(
            e,
            "settle_settlement_costs",
            "USD: whole cost (FX, wires, deferral) of the applied cycles that settled something.",
            c.settlement_costs_usd,
        )?;
        counter(
            e,
            "settle_cost_savings",
            "USD: the naive baseline's cost minus the cycle's cost, summed over applied cycles that settled something.",
            c.cost_savings_usd,
        )?;
        let per_tx = if c.settled_transactions > 0 {
            c.settlement_costs_usd / c.settled_transactions as f64
        } else {
            0.0
        };
        gauge(
            e,
            "settle_cost_per_transaction",
            "USD: settlement cost per settled transaction since the node started (settle_settlement_costs_total / settle_settled_transactions_total; 0 before the first).",
            per_tx,
        )?;
        counter(
            e,
            "settle_data_loss_events",
            "Reads of a Raft log record, meta file or snapshot that failed its checksum or header check (corruption found on read). Should stay 0.",
            c.data_loss_events,
        )?;
        counter(
            e,
            "settle_log_entries_rejected",
            "Committed log entries that did not apply (a proposer bug or forged bytes) and were rejected as no-ops on this replica. Should stay 0.",
            c.entries_rejected,
        )?;
        counter(
            e,
            "settle_replicas_repaired",
            "Replicas of a group whose data was found damaged at start (a corrupt or missing log segment, meta, snapshot or store file) and was quarantined, the replica rebuilt from its peers. Should stay 0.",
            c.replicas_repaired,
        )?;
        family(
            e,
            "settle_connections_refused",
            "Connections refused at a port's bound (connections, handshakes, per-node connections, buffer or reassembly bytes), by port: binary, http, peer.",
            MetricType::Counter,
            super::cells::Port::ALL.iter().map(|p| {
                (
                    vec![("port", p.label().to_string())],
                    ConstCounter::new(c.connections_refused[*p as usize]),
                )
            }),
        )
    }

    fn raft(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        let groups = &m.gauges.groups;
        let labels = |g: &super::hub::GroupGauges| vec![("group", g.name.clone())];
        family(
            e,
            "settle_consensus_rounds_completed",
            "Raft log entries committed in the group, as this replica knows (its commit index: durable, so it continues across restarts).",
            MetricType::Counter,
            groups.iter().map(|g| (labels(g), ConstCounter::new(g.committed))),
        )?;
        family(
            e,
            "settle_raft_term",
            "The group's current Raft term on this replica (elections raise it).",
            MetricType::Gauge,
            groups
                .iter()
                .map(|g| (labels(g), ConstGauge::new(g.term as i64))),
        )?;
        family(
            e,
            "settle_raft_leader",
            "Node id of the group's leader as this replica knows it (0: none known).",
            MetricType::Gauge,
            groups
                .iter()
                .map(|g| (labels(g), ConstGauge::new(g.leader.unwrap_or(0) as i64))),
        )?;
        family(
            e,
            "settle_raft_is_leader",
            "1 if this node leads the group, else 0.",
            MetricType::Gauge,
            groups
                .iter()
                .map(|g| (labels(g), ConstGauge::new(i64::from(g.is_leader)))),
        )?;
        family(
            e,
            "settle_raft_apply_lag_entries",
            "Entries this replica knows committed but has not applied yet.",
            MetricType::Gauge,
            groups.iter().map(|g| {
                let lag = g.committed.saturating_sub(g.applied);
                (labels(g), ConstGauge::new(lag as i64))
            }),
        )?;
        family(
            e,
            "settle_raft_commit_lag_entries",
            "Entries in this replica's log not yet committed (last log index minus commit index).",
            MetricType::Gauge,
            groups.iter().map(|g| {
                let lag = g.last_log.saturating_sub(g.committed);
                (labels(g), ConstGauge::new(lag as i64))
            }),
        )?;
        family(
            e,
            "settle_raft_replication_lag_entries",
            "On the group's leader: how many entries the furthest-behind member lacks.",
            MetricType::Gauge,
            groups.iter().filter_map(|g| {
                g.replication_lag
                    .map(|lag| (labels(g), ConstGauge::new(lag as i64)))
            }),
        )
    }

    fn storage(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        let c = &m.counts;
        let kinds = [DurableWrite::LogGroup, DurableWrite::File].map(durable_kind);
        histograms(
            e,
            "settle_storage_fsync_latency_ms",
            "Milliseconds per durable write: kind=log, one O_DSYNC write of a group of Raft log records (the log's fsync); kind=file, a meta or snapshot file replaced atomically (write, fdatasync, rename, directory fsync).",
            kinds
                .iter()
                .map(|&(slot, kind)| (vec![("kind", kind.to_string())], &c.fsync_latency_ms[slot])),
        )?;
        family(
            e,
            "settle_storage_written_bytes",
            "Bytes made durable by those writes, by kind (log: whole blocks, padding included).",
            MetricType::Counter,
            kinds.iter().map(|&(slot, kind)| {
                (
                    vec![("kind", kind.to_string())],
                    ConstCounter::new(c.fsync_bytes[slot]),
                )
            }),
        )
    }

    fn rails(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        let rails = &m.gauges.rails;
        let labels = |r: &RailGauge| vec![("rail", r.rail.clone())];
        family(
            e,
            "settle_rail_breaker_state",
            "A payment rail's circuit breaker on the node that drives the wires (the control group's leader, with --execution): 0 closed, 1 half-open (the next wire is a trial), 2 open.",
            MetricType::Gauge,
            rails
                .iter()
                .map(|r| (labels(r), ConstGauge::new(i64::from(r.breaker_state)))),
        )?;
        family(
            e,
            "settle_rail_breaker_opened",
            "Times a rail's breaker opened since the wires started on this node.",
            MetricType::Counter,
            rails
                .iter()
                .map(|r| (labels(r), ConstCounter::new(r.times_opened))),
        )?;
        counter(
            e,
            "settle_rail_retries",
            "Wire attempts that failed and were scheduled again (execution engine retries).",
            m.counts.rail_events[RailEvent::RetryScheduled as usize],
        )?;
        family(
            e,
            "settle_rail_wire_events",
            "Execution engine events: initiated, rerouted (a rail skipped within an attempt), retry_scheduled, confirmed, failed (no more attempts), reversed.",
            MetricType::Counter,
            RailEvent::ALL.iter().map(|&ev| {
                (
                    vec![("event", ev.label().to_string())],
                    ConstCounter::new(m.counts.rail_events[ev as usize]),
                )
            }),
        )
    }

    fn books(&self, e: &mut DescriptorEncoder, m: &Merged) -> Result<(), std::fmt::Error> {
        family(
            e,
            "settle_pending_transactions",
            "Transactions waiting for a settlement cycle, per shard and window, on the shard's leader.",
            MetricType::Gauge,
            m.gauges.pending.iter().map(|p| {
                (
                    vec![("shard", p.shard.clone()), ("window", p.window.to_string())],
                    ConstGauge::new(p.transactions as i64),
                )
            }),
        )?;
        family(
            e,
            "settle_transactions_rolled",
            "Transactions a shard rolled to a later window because they could not be funded by their deadline (each with a TRANSACTION_ROLLED event), since its log began, on the shard's leader.",
            MetricType::Counter,
            m.gauges.rolled.iter().map(|r| {
                (
                    vec![("shard", r.shard.clone())],
                    ConstCounter::new(r.transactions),
                )
            }),
        )?;
        let account = |b: &super::hub::BalanceGauge| {
            vec![
                ("participant", b.participant.clone()),
                ("currency", b.currency.clone()),
            ]
        };
        family(
            e,
            "settle_balance_minor",
            "A participant's balance in a currency, minor units, on the currency shard's leader (at most 1,024 participants per shard).",
            MetricType::Gauge,
            m.gauges
                .balances
                .iter()
                .map(|b| (account(b), ConstGauge::new(b.balance as i64))),
        )?;
        let forecast = |f: &super::hub::ForecastGauge| {
            vec![
                ("participant", f.participant.clone()),
                ("currency", f.currency.clone()),
            ]
        };
        family(
            e,
            "settle_liquidity_forecast",
            "A participant's balance in a currency forecast 4 hours ahead (the end of the flow bucket 4 hours from the current one's start), minor units, by quantile: 0.5 is the point forecast, 0.1/0.9, 0.05/0.95 and 0.025/0.975 bound the 80, 90 and 95 % prediction intervals. On the currency shard's leader, refreshed once per bucket; only participants with two days of history.",
            MetricType::Gauge,
            m.gauges.forecasts.iter().flat_map(|f| {
                super::hub::FORECAST_QUANTILES
                    .iter()
                    .zip(f.quantiles)
                    .map(move |(q, v)| {
                        let mut labels = forecast(f);
                        labels.push(("quantile", q.to_string()));
                        (labels, ConstGauge::new(v))
                    })
            }),
        )?;
        family(
            e,
            "settle_liquidity_shortfall_minor",
            "What a participant must pre-fund in a currency so that the 95 % lower bound of its forecast balance stays at or above zero over the next 4 hours, minor units (0: nothing); GET /v1/forecast says before when.",
            MetricType::Gauge,
            m.gauges
                .forecasts
                .iter()
                .map(|f| (forecast(f), ConstGauge::new(f.shortfall as i64))),
        )?;
        family(
            e,
            "settle_incoming_minor",
            "A participant's credits in a currency whose wire is not confirmed yet (not part of its balance), minor units, on the currency shard's leader.",
            MetricType::Gauge,
            m.gauges
                .balances
                .iter()
                .map(|b| (account(b), ConstGauge::new(b.incoming as i64))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::cells::{transactions_answered, Outcome};

    #[test]
    fn histograms_are_cumulative_with_an_inf_bucket_and_counters_end_in_total() {
        let hub = Hub::new(1, vec!["control".into(), "USD".into()]);
        let mut publisher = hub.publisher(0);
        std::thread::spawn(move || {
            transactions_answered([(Some(1), Outcome::Created)].into_iter(), 0.3);
            transactions_answered([(Some(1), Outcome::Created)].into_iter(), 7.0);
            publisher.publish(Default::default());
        })
        .join()
        .unwrap();
        let text = Exposition::new(hub).encode().unwrap();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_string()
        };
        assert_eq!(
            line("settle_transaction_latency_ms_bucket{le=\"0.2\"}"),
            "settle_transaction_latency_ms_bucket{le=\"0.2\"} 0"
        );
        assert_eq!(
            line("settle_transaction_latency_ms_bucket{le=\"0.3\"}"),
            "settle_transaction_latency_ms_bucket{le=\"0.3\"} 1"
        );
        assert_eq!(
            line("settle_transaction_latency_ms_bucket{le=\"8.0\"}"),
            "settle_transaction_latency_ms_bucket{le=\"8.0\"} 2"
        );
        assert_eq!(
            line("settle_transaction_latency_ms_bucket{le=\"+Inf\"}"),
            "settle_transaction_latency_ms_bucket{le=\"+Inf\"} 2"
        );
        assert_eq!(
            line("settle_transaction_latency_ms_count"),
            "settle_transaction_latency_ms_count 2"
        );
        assert_eq!(
            line("settle_transactions_total{shard=\"USD\",result=\"created\"}"),
            "settle_transactions_total{shard=\"USD\",result=\"created\"} 2"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
