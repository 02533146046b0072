//! The counting cells of one thread: plain integers in a thread-local,
//! written only by the thread they live on (a glommio core, or the HTTP
//! thread). Recording is a non-atomic add: no lock, no atomic, no cache
//! line shared with another core. [`super::hub`] publishes copies of them.

use std::cell::RefCell;

use settle_codec::messages::MAX_CURRENCIES;
use settle_codec::TxResult;
use settle_storage::stats::DurableWrite;

use super::histogram::LatencyHistogram;

/// Group ids a cell array covers: the control group (0) and one shard per
/// currency at most. Slot 0 of the per-shard arrays counts transactions
/// that never reached a shard (rejected before booking).
pub const GROUP_SLOTS: usize = MAX_CURRENCIES + 1;

/// How a transaction was answered, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created = 0,
    Duplicate = 1,
    Conflict = 2,
    Rejected = 3,
    /// Its request failed as a whole (shard full, no leader, shutting down).
    Unavailable = 4,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Created,
        Outcome::Duplicate,
        Outcome::Conflict,
        Outcome::Rejected,
        Outcome::Unavailable,
    ];

    pub fn of(result: &TxResult) -> Outcome {
        match result {
            TxResult::Created => Outcome::Created,
            TxResult::Duplicate => Outcome::Duplicate,
            TxResult::Conflict => Outcome::Conflict,
            TxResult::Rejected { .. } => Outcome::Rejected,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Everything a thread counts. Monotonic: only ever added to.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    /// Per booking shard (group id; 0: none) and [`Outcome`].
    pub transactions: [[u64; Outcome::ALL.len()]; GROUP_SLOTS],
    /// Submit entries (group-commit batches) committed, per shard.
    pub batches: [u64; GROUP_SLOTS],
    /// Intake to answer, per transaction.
    pub transaction_latency_ms: LatencyHistogram,
    /// Per settled transaction: from when it began to wait in its window
    /// to its cycle's apply.
    pub settlement_latency_ms: LatencyHistogram,
    /// A cycle's start to its applied entry, per applied cycle.
    pub cycle_latency_ms: LatencyHistogram,
    /// Cycles that ended in an error (retried later by recovery).
    pub settlement_failures: u64,
    /// Cycles applied that settled at least one transaction.
    pub cycles_settled: u64,
    /// Transactions settled by cycles.
    pub settled_transactions: u64,
    /// USD: FX costs of applied cycles, the whole cost, and naive minus cost.
    pub fx_costs_usd: f64,
    pub settlement_costs_usd: f64,
    pub cost_savings_usd: f64,
    /// Corrupt records or files met on a read of the log or a snapshot.
    pub data_loss_events: u64,
    /// Committed log entries rejected as no-ops (they did not apply).
    pub entries_rejected: u64,
    pub replicas_repaired: u64,
    /// Connections refused at a port's bound, by port.
    pub connections_refused: [u64; Port::ALL.len()],
    /// Durable writes by [`DurableWrite`] kind (log group, file): latency and bytes.
    pub fsync_latency_ms: [LatencyHistogram; DURABLE_KINDS],
    pub fsync_bytes: [u64; DURABLE_KINDS],
    /// Execution engine events by [`RailEvent`].
    pub rail_events: [u64; RailEvent::ALL.len()],
}

/// What the execution engine reported about a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RailEvent {
    Initiated = 0,
    Rerouted = 1,
    RetryScheduled = 2,
    Confirmed = 3,
    Failed = 4,
    Reversed = 5,
}

impl RailEvent {
    pub const ALL: [RailEvent; 6] = [
        RailEvent::Initiated,
        RailEvent::Rerouted,
        RailEvent::RetryScheduled,
        RailEvent::Confirmed,
        RailEvent::Failed,
        RailEvent::Reversed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RailEvent::Initiated => "initiated",
            RailEvent::Rerouted => "rerouted",
            RailEvent::RetryScheduled => "retry_scheduled",
            RailEvent::Confirmed => "confirmed",
            RailEvent::Failed => "failed",
            RailEvent::Reversed => "reversed",
        }
    }
}

/// A rail's circuit breaker as last seen by the thread that drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailGauge {
    pub rail: String,
    /// 0 closed, 1 half-open (the next wire is a trial), 2 open.
    pub breaker_state: u8,
    pub times_opened: u64,
}

/// Kinds of durable write counted apart: the log's group writes, and
/// meta or snapshot files.
pub const DURABLE_KINDS: usize = 2;

/// The `kind` label of a durable write and its slot.
pub fn durable_kind(kind: DurableWrite) -> (usize, &'static str) {
    match kind {
        DurableWrite::LogGroup => (0, "log"),
        DurableWrite::File => (1, "file"),
    }
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            transactions: [[0; Outcome::ALL.len()]; GROUP_SLOTS],
            batches: [0; GROUP_SLOTS],
            transaction_latency_ms: LatencyHistogram::default(),
            settlement_latency_ms: LatencyHistogram::default(),
            cycle_latency_ms: LatencyHistogram::default(),
            settlement_failures: 0,
            cycles_settled: 0,
            settled_transactions: 0,
            fx_costs_usd: 0.0,
            settlement_costs_usd: 0.0,
            cost_savings_usd: 0.0,
            data_loss_events: 0,
            entries_rejected: 0,
            replicas_repaired: 0,
            connections_refused: [0; Port::ALL.len()],
            fsync_latency_ms: [LatencyHistogram::default(), LatencyHistogram::default()],
            fsync_bytes: [0; DURABLE_KINDS],
            rail_events: [0; RailEvent::ALL.len()],
        }
    }
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        for (mine, theirs) in self.transactions.iter_mut().zip(&other.transactions) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        for (m, t) in self.batches.iter_mut().zip(&other.batches) {
            *m += t;
        }
        self.transaction_latency_ms
            .add(&other.transaction_latency_ms);
        self.settlement_latency_ms.add(&other.settlement_latency_ms);
        self.cycle_latency_ms.add(&other.cycle_latency_ms);
        self.settlement_failures += other.settlement_failures;
        self.cycles_settled += other.cycles_settled;
        self.settled_transactions += other.settled_transactions;
        self.fx_costs_usd += other.fx_costs_usd;
        self.settlement_costs_usd += other.settlement_costs_usd;
        self.cost_savings_usd += other.cost_savings_usd;
        self.data_loss_events += other.data_loss_events;
        self.entries_rejected += other.entries_rejected;
        self.replicas_repaired += other.replicas_repaired;
        for (m, t) in self
            .connections_refused
            .iter_mut()
            .zip(&other.connections_refused)
        {
            *m += t;
        }
        for (m, t) in self
            .fsync_latency_ms
            .iter_mut()
            .zip(&other.fsync_latency_ms)
        {
            m.add(t);
        }
        for (m, t) in self.fsync_bytes.iter_mut().zip(&other.fsync_bytes) {
            *m += t;
        }
        for (m, t) in self.rail_events.iter_mut().zip(&other.rail_events) {
            *m += t;
        }
    }

    /// Transactions answered (any outcome), all shards.
    pub fn transactions_total(&self) -> u64 {
        self.transactions.iter().flatten().sum()
    }
}

thread_local! {
    static COUNTS: RefCell<Counts> = RefCell::new(Counts::default());
    /// The rails this thread drives (empty on threads that drive none).
    static RAILS: RefCell<Vec<RailGauge>> = const { RefCell::new(Vec::new()) };
}

/// The rails' breakers as this thread last set them.
pub fn rails() -> Vec<RailGauge> {
    RAILS.with(|r| r.borrow().clone())
}

/// Sets rail `at`'s breaker as seen now (the rails are registered once, so
/// names are copied only the first time).
pub fn set_rail(at: usize, rail: &str, breaker_state: u8, times_opened: u64) {
    RAILS.with(|r| {
        let mut rails = r.borrow_mut();
        if rails.len() <= at {
            rails.resize_with(at + 1, || RailGauge {
                rail: String::new(),
                breaker_state: 0,
                times_opened: 0,
            });
        }
        let g = &mut rails[at];
        if g.rail != rail {
            g.rail = rail.to_string();
        }
        g.breaker_state = breaker_state;
        g.times_opened = times_opened;
    });
}

pub fn rail_event(event: RailEvent) {
    with(|c| c.rail_events[event as usize] += 1);
}

/// Runs `f` on this thread's cells.
fn with(f: impl FnOnce(&mut Counts)) {
    COUNTS.with(|c| f(&mut c.borrow_mut()));
}

/// A copy of this thread's cells.
pub fn snapshot() -> Counts {
    COUNTS.with(|c| c.borrow().clone())
}

fn slot(group: Option<u16>) -> usize {
    let slot = group.map_or(0, usize::from);
    assert!(slot < GROUP_SLOTS, "group {slot} beyond the cell arrays");
    slot
}

/// One request's answers: `outcomes` yields (booking shard, outcome) per
/// transaction; every transaction saw `latency_ms`.
pub fn transactions_answered(
    outcomes: impl Iterator<Item = (Option<u16>, Outcome)>,
    latency_ms: f64,
) {
    with(|c| {
        let mut n = 0;
        for (group, outcome) in outcomes {
            c.transactions[slot(group)][outcome as usize] += 1;
            n += 1;
        }
        if n > 0 {
            c.transaction_latency_ms.observe_n(latency_ms, n);
        }
    });
}

/// A shard committed one submit entry.
pub fn batch_committed(group: u16) {
    with(|c| c.batches[slot(Some(group))] += 1);
}

/// What an applied cycle settled and cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleFigures {
    pub settled: u64,
    pub latency_ms: f64,
    pub fx_usd: f64,
    pub cost_usd: f64,
    pub naive_cost_usd: f64,
}

pub fn cycle_applied(cycle: CycleFigures) {
    with(|c| {
        c.cycle_latency_ms.observe_n(cycle.latency_ms, 1);
        if cycle.settled > 0 {
            c.cycles_settled += 1;
            c.settled_transactions += cycle.settled;
            c.fx_costs_usd += cycle.fx_usd;
            c.settlement_costs_usd += cycle.cost_usd;
            c.cost_savings_usd += cycle.naive_cost_usd - cycle.cost_usd;
        }
    });
}

/// The waits of the transactions a cycle settled, ms each.
pub fn settled_after(waits_ms: impl Iterator<Item = f64>) {
    with(|c| {
        for ms in waits_ms {
            c.settlement_latency_ms.observe_n(ms, 1);
        }
    });
}

pub fn cycle_failed() {
    with(|c| c.settlement_failures += 1);
}

/// A committed log entry did not apply and was rejected as a no-op.
pub fn entry_rejected() {
    with(|c| c.entries_rejected += 1);
}

/// A group's damaged data was quarantined and the replica rebuilt from
/// its peers.
pub fn replica_repaired() {
    with(|c| c.replicas_repaired += 1);
}

/// The node's listening ports, for refusals at their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Binary = 0,
    Http = 1,
    Peer = 2,
}

impl Port {
    pub const ALL: [Port; 3] = [Port::Binary, Port::Http, Port::Peer];

    pub fn label(self) -> &'static str {
        match self {
            Port::Binary => "binary",
            Port::Http => "http",
            Port::Peer => "peer",
        }
    }
}

/// A connection (or a peer's chunked request) was refused at a bound.
pub fn connection_refused(port: Port) {
    with(|c| c.connections_refused[port as usize] += 1);
}

/// A read met a record or file that failed its checksum or header check.
pub fn data_loss_event() {
    with(|c| c.data_loss_events += 1);
}

/// A durable write finished on this thread: set as the storage crate's
/// observer on every core (`settle_storage::stats::observe`).
pub fn durable_write(kind: DurableWrite, elapsed: std::time::Duration, bytes: u64) {
    let (slot, _) = durable_kind(kind);
    with(|c| {
        c.fsync_latency_ms[slot].observe_n(elapsed.as_secs_f64() * 1e3, 1);
        c.fsync_bytes[slot] += bytes;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_count_per_shard_and_outcome_and_feed_the_latency() {
        std::thread::spawn(|| {
            transactions_answered(
                [
                    (Some(1), Outcome::Created),
                    (Some(1), Outcome::Created),
                    (None, Outcome::Rejected),
                ]
                .into_iter(),
                3.0,
            );
            batch_committed(1);
            let c = snapshot();
            assert_eq!(c.transactions[1][Outcome::Created as usize], 2);
            assert_eq!(c.transactions[0][Outcome::Rejected as usize], 1);
            assert_eq!(c.transactions_total(), 3);
            assert_eq!(c.transaction_latency_ms.count, 3);
            assert_eq!(c.batches[1], 1);
        })
        .join()
        .unwrap();
    }
}
