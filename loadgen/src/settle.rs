//! `--settle`: the load, and the settlement cycles that follow it, end to
//! end. While the clients submit, the node's RTGS cycles run on its timer
//! and this mode asks for T0/T1/T2 cycles on a period (a node's own
//! cut-offs may be hours away); after the load it keeps asking until the
//! cycles stop settling (what is left waits for liquidity). The report:
//! settled transactions per second from the first submit to the last
//! settlement, and the cycle latency (started → applied) percentiles, read
//! from the node's own cycle records (timestamps from its log).
//!
//! It counts every cycle of the node from the run's start: run it against
//! a node no other load is settling on.
//!
//! Against a cluster (several `--target`s) the cycles run on the control
//! group's leader, wherever that is: cycle requests go to the targets in
//! turn (a node forwards them to the leader), and every node's replica of
//! the cycle list is read and merged by cycle id, so a cycle counts once
//! however many replicas report it, and the report waits until the
//! replicas show every cycle the drain saw applied (a follower's list may
//! lag its leader's).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use serde::Serialize;
use settle_codec::messages::{
    CycleCost, CycleListRequest, CycleListResponse, CycleRunRequest, CycleRunResponse, CycleStatus,
    CycleSummary, DecisionMethod, MAX_CYCLE_SUMMARIES,
};
use settle_codec::rkyv::{self, rancor};
use settle_codec::{
    decode_body, ErrorResponse, FrameBuf, FrameReader, MessageKind, ReadStatus, Window,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::run::{run, RunOptions, RunOutcome};

/// Cycles with at least this many candidates are reported on their own
/// (the latency budget is stated for 1,000-candidate cycles).
pub const LARGE_CYCLE_CANDIDATES: u32 = 1_000;

/// How long the report waits for the replicas' cycle lists to show every
/// cycle the drain saw applied (a follower applies the control log a
/// moment after its leader).
pub const REPLICA_CATCH_UP_MAX: Duration = Duration::from_secs(10);

/// How the settle mode drives cycles.
#[derive(Debug, Clone)]
pub struct SettleOptions {
    /// Ask for T0, T1 and T2 cycles this often while the load runs
    /// (`None`: the node's schedules run them).
    pub trigger_every: Option<Duration>,
    /// After the load, stop once no cycle settled anything for this long.
    pub quiet_for: Duration,
    /// ...or at the latest after this long.
    pub drain_max: Duration,
    /// Print a progress line this often while draining (`None`: quiet).
    pub progress_every: Option<Duration>,
}

impl Default for SettleOptions {
    fn default() -> Self {
        SettleOptions {
            trigger_every: Some(Duration::from_secs(1)),
            quiet_for: Duration::from_millis(1_500),
            drain_max: Duration::from_secs(60),
            progress_every: None,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: usize,
}

impl LatencyMs {
    fn of(mut us: Vec<u64>) -> LatencyMs {
        if us.is_empty() {
            return LatencyMs::default();
        }
        us.sort_unstable();
        let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        LatencyMs {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
            count: us.len(),
        }
    }
}

/// What the cycles of a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SettleReport {
    pub cycles: usize,
    pub cycles_by_window: [usize; 4],
    pub fallbacks: usize,
    pub settled: u64,
    pub deferred_decisions: u64,
    /// First submit → last cycle that settled something, seconds.
    pub elapsed_s: f64,
    pub settled_per_s: f64,
    pub cycle_latency_ms: LatencyMs,
    /// The same, for cycles of at least `LARGE_CYCLE_CANDIDATES` candidates.
    pub large_cycle_latency_ms: LatencyMs,
    pub candidates_mean: f64,
    pub candidates_max: u32,
    pub cost_usd: f64,
    pub naive_cost_usd: f64,
    pub savings_pct: f64,
    /// `cost_usd` and `naive_cost_usd` by part (FX, wires, deferral).
    pub cost_breakdown: CycleCost,
    pub naive_breakdown: CycleCost,
    /// Every applied cycle in the order it applied, for the report's plots.
    #[serde(skip)]
    pub cycle_points: Vec<CyclePoint>,
}

/// One applied cycle as the report plots it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CyclePoint {
    pub cycle_id: u64,
    /// Seconds from the run's start to the cycle's apply.
    pub t_s: f64,
    pub settled: u32,
    pub cost_usd: f64,
    pub naive_cost_usd: f64,
}

fn add_cost(sum: &mut CycleCost, c: &CycleCost) {
    sum.fx += c.fx;
    sum.wire += c.wire;
    sum.deferral += c.deferral;
    sum.total += c.total;
}

impl SettleReport {
    pub fn text(&self) -> String {
        let l = &self.cycle_latency_ms;
        let big = &self.large_cycle_latency_ms;
        format!(
            "settled: {} transactions in {:.2} s = {:.0} settled tx/s end to end\n\
             cycles: {} (RTGS {}, T0 {}, T1 {}, T2 {}), {} by the fallback; candidates mean {:.0}, max {}\n\
             cycle latency (started → applied, ms): p50={:.2} p90={:.2} p99={:.2} max={:.2}\n\
             cycles of ≥{} candidates: {} with p50={:.2} p99={:.2} ms\n\
             cost: {:.2} USD against a naive {:.2} USD: savings {:.2} %",
            self.settled,
            self.elapsed_s,
            self.settled_per_s,
            self.cycles,
            self.cycles_by_window[0],
            self.cycles_by_window[1],
            self.cycles_by_window[2],
            self.cycles_by_window[3],
            self.fallbacks,
            self.candidates_mean,
            self.candidates_max,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            LARGE_CYCLE_CANDIDATES,
            big.count,
            big.p50,
            big.p99,
            self.cost_usd,
            self.naive_cost_usd,
            self.savings_pct
        )
    }

    /// The report of a list of cycle summaries, `start_us` the load's start.
    pub fn of(cycles: &[CycleSummary], start_us: u64) -> SettleReport {
        let applied: Vec<&CycleSummary> = cycles
            .iter()
            .filter(|c| c.status == CycleStatus::Applied)
            .collect();
        let mut by_window = [0; 4];
        for c in &applied {
            by_window[Window::ALL
                .iter()
                .position(|&w| w == c.window)
                .expect("a window")] += 1;
        }
        let settled: u64 = applied.iter().map(|c| u64::from(c.settled)).sum();
        let last = applied
            .iter()
            .filter(|c| c.settled > 0)
            .map(|c| c.applied_at_us)
            .max()
            .unwrap_or(start_us);
        let elapsed_s = last.saturating_sub(start_us) as f64 / 1e6;
        let cost: f64 = applied.iter().map(|c| c.cost.total).sum();
        let naive: f64 = applied.iter().map(|c| c.naive_cost.total).sum();
        let mut cost_breakdown = CycleCost::default();
        let mut naive_breakdown = CycleCost::default();
        for c in &applied {
            add_cost(&mut cost_breakdown, &c.cost);
            add_cost(&mut naive_breakdown, &c.naive_cost);
        }
        let mut cycle_points: Vec<CyclePoint> = applied
            .iter()
            .map(|c| CyclePoint {
                cycle_id: c.cycle_id,
                t_s: c.applied_at_us.saturating_sub(start_us) as f64 / 1e6,
                settled: c.settled,
                cost_usd: c.cost.total,
                naive_cost_usd: c.naive_cost.total,
            })
            .collect();
        cycle_points.sort_by(|a, b| a.t_s.total_cmp(&b.t_s).then(a.cycle_id.cmp(&b.cycle_id)));
        SettleReport {
            cost_breakdown,
            naive_breakdown,
            cycle_points,
            cycles: applied.len(),
            cycles_by_window: by_window,
            fallbacks: applied
                .iter()
                .filter(|c| c.method == DecisionMethod::Fallback)
                .count(),
            settled,
            deferred_decisions: applied.iter().map(|c| u64::from(c.deferred)).sum(),
            elapsed_s,
            settled_per_s: if elapsed_s > 0.0 {
                settled as f64 / elapsed_s
            } else {
                0.0
            },
            cycle_latency_ms: LatencyMs::of(
                applied.iter().filter_map(|c| c.latency_us()).collect(),
            ),
            large_cycle_latency_ms: LatencyMs::of(
                applied
                    .iter()
                    .filter(|c| c.candidates >= LARGE_CYCLE_CANDIDATES)
                    .filter_map(|c| c.latency_us())
                    .collect(),
            ),
            candidates_mean: if applied.is_empty() {
                0.0
            } else {
                applied.iter().map(|c| f64::from(c.candidates)).sum::<f64>() / applied.len() as f64
            },
            candidates_max: applied.iter().map(|c| c.candidates).max().unwrap_or(0),
            cost_usd: cost,
            naive_cost_usd: naive,
            savings_pct: if naive > 0.0 {
                100.0 * (naive - cost) / naive
            } else {
                0.0
            },
        }
    }
}

/// A connection for control requests, one at a time.
pub struct ControlConnection {
    stream: Box<dyn crate::net::Io>,
    out: FrameBuf,
    reader: FrameReader,
    next_request_id: u64,
}

impl ControlConnection {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<ControlConnection> {
        let stream = crate::net::connect(addr).await?;
        Ok(ControlConnection {
            stream,
            out: FrameBuf::new(),
            reader: FrameReader::new(),
            next_request_id: 1,
        })
    }

    async fn call<M: settle_codec::Encode, R>(
        &mut self,
        request: &M,
        expect: MessageKind,
        read: impl FnOnce(&settle_codec::Frame<'_>) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.out.clear();
        self.out
            .push(request_id, request)
            .map_err(|e| anyhow!("encoding: {e}"))?;
        self.stream.write_all(self.out.as_slice()).await?;
        loop {
            match self
                .reader
                .next_frame()
                .map_err(|e| anyhow!("bad frame from node: {e}"))?
            {
                ReadStatus::Frame(frame) => {
                    if frame.request_id() != request_id {
                        bail!(
                            "answer to request {} while waiting for {request_id}",
                            frame.request_id()
                        );
                    }
                    if frame.kind() == MessageKind::ErrorResponse {
                        let e = decode_body::<ErrorResponse>(&frame)?;
                        bail!("{:?}: {}", e.code, e.message);
                    }
                    if frame.kind() != expect {
                        bail!("unexpected {:?} answer", frame.kind());
                    }
                    return read(&frame);
                }
                ReadStatus::NeedMore(_) => {}
            }
            let n = self.stream.read(self.reader.spare()).await?;
            if n == 0 {
                bail!("node closed the connection");
            }
            self.reader.commit(n);
        }
    }

    /// Runs a cycle of `window` and waits until it is applied.
    pub async fn run_cycle(&mut self, window: Window) -> anyhow::Result<CycleSummary> {
        self.call(
            &CycleRunRequest { window },
            MessageKind::CycleRunResponse,
            |f| {
                let a = decode_body::<CycleRunResponse>(f)?;
                Ok(rkyv::deserialize::<CycleRunResponse, rancor::Error>(a)?.summary)
            },
        )
        .await
    }

    /// Every cycle after `after_cycle`, and the next cycle id.
    pub async fn cycles_after(
        &mut self,
        after_cycle: u64,
    ) -> anyhow::Result<(Vec<CycleSummary>, u64)> {
        let mut all = Vec::new();
        let mut after = after_cycle;
        loop {
            let request = CycleListRequest {
                after_cycle: after,
                max: MAX_CYCLE_SUMMARIES as u32,
            };
            let (page, next) = self
                .call(&request, MessageKind::CycleListResponse, |f| {
                    let a = decode_body::<CycleListResponse>(f)?;
                    let r = rkyv::deserialize::<CycleListResponse, rancor::Error>(a)?;
                    Ok((r.cycles, r.next_cycle_id))
                })
                .await?;
            match page.last() {
                None => return Ok((all, next)),
                Some(last) => after = last.cycle_id,
            }
            all.extend(page);
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Merges the cycle lists of several replicas of the control group: one
/// summary per cycle id, the applied one where any replica has it applied.
/// Two replicas with different applied summaries of one cycle are an error
/// (they would have diverged).
pub fn merge_replicas(
    lists: impl IntoIterator<Item = Vec<CycleSummary>>,
) -> anyhow::Result<BTreeMap<u64, CycleSummary>> {
    let mut merged: BTreeMap<u64, CycleSummary> = BTreeMap::new();
    for list in lists {
        for c in list {
            match merged.get_mut(&c.cycle_id) {
                None => {
                    merged.insert(c.cycle_id, c);
                }
                Some(known) => match (known.status, c.status) {
                    (CycleStatus::Applied, CycleStatus::Applied) if *known != c => {
                        bail!(
                            "replicas disagree on applied cycle {}: {known:?} and {c:?}",
                            c.cycle_id
                        );
                    }
                    (CycleStatus::Applied, _) => {}
                    (_, CycleStatus::Applied) => *known = c,
                    // Neither applied: keep the later stage (decided over started).
                    _ if c.decided_at_us > known.decided_at_us => *known = c,
                    _ => {}
                },
            }
        }
    }
    Ok(merged)
}

/// Whether `merged` holds every cycle of `first..=last`, each applied.
fn all_applied(merged: &BTreeMap<u64, CycleSummary>, first: u64, last: u64) -> bool {
    (first..=last).all(|id| {
        merged
            .get(&id)
            .is_some_and(|c| c.status == CycleStatus::Applied)
    })
}

/// Every cycle after `after` on every replica, merged.
async fn cycles_everywhere(
    replicas: &mut [ControlConnection],
    after: u64,
) -> anyhow::Result<BTreeMap<u64, CycleSummary>> {
    let mut lists = Vec::with_capacity(replicas.len());
    for replica in replicas.iter_mut() {
        lists.push(replica.cycles_after(after).await?.0);
    }
    merge_replicas(lists)
}

/// What the drain's cycles did so far (for its progress lines).
#[derive(Debug, Default)]
struct Drained {
    cycles: u64,
    settled: u64,
    /// The last cycle's deferred count: what still waits.
    waiting: u32,
}

impl Drained {
    fn count(&mut self, cycles: &[CycleSummary]) {
        for c in cycles {
            self.cycles += 1;
            self.settled += u64::from(c.settled);
            self.waiting = c.deferred;
        }
    }

    fn progress(&self, elapsed: Duration) -> String {
        format!(
            "settling after the load: {:.0} s, {} cycles, {} transactions settled, {} deferred by the last cycle",
            elapsed.as_secs_f64(),
            self.cycles,
            self.settled,
            self.waiting
        )
    }
}

/// How often the live line's settled count is refreshed.
const SETTLED_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Adds the transactions settled by every cycle from `first_cycle` on, as
/// each applies, to `settled`, until `stop` (a progress display: a failed
/// read leaves the count as it is and tries again).
async fn watch_settled(
    target: SocketAddr,
    first_cycle: u64,
    settled: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut after = first_cycle.saturating_sub(1);
    let mut connection = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(SETTLED_POLL_INTERVAL).await;
        if connection.is_none() {
            connection = ControlConnection::connect(target).await.ok();
        }
        let Some(control) = connection.as_mut() else {
            continue;
        };
        match control.cycles_after(after).await {
            Ok((cycles, _)) => {
                // Up to the first cycle still in flight: it is read again.
                for c in cycles
                    .iter()
                    .take_while(|c| c.status == CycleStatus::Applied)
                {
                    settled.fetch_add(u64::from(c.settled), Ordering::Relaxed);
                    after = c.cycle_id;
                }
            }
            Err(_) => connection = None,
        }
    }
}

/// Runs the load, then drains the cycles; the load's report and the
/// settlement report.
pub async fn run_settle(
    options: RunOptions,
    settle: SettleOptions,
) -> anyhow::Result<(RunOutcome, SettleReport)> {
    let targets = options.targets.clone();
    if targets.is_empty() {
        bail!("a --target is needed");
    }
    let mut replicas = Vec::with_capacity(targets.len());
    for &target in &targets {
        replicas.push(ControlConnection::connect(target).await?);
    }
    // The most advanced replica's next cycle id: a lagging one would count
    // cycles from before the run.
    let mut first_cycle = 0;
    for replica in &mut replicas {
        first_cycle = first_cycle.max(replica.cycles_after(u64::MAX - 1).await?.1);
    }
    let start_us = now_us();

    let stop = Arc::new(AtomicBool::new(false));
    let trigger = settle.trigger_every.map(|every| {
        let stop = stop.clone();
        let targets = targets.clone();
        tokio::spawn(async move {
            // One connection per node; rounds go to the nodes in turn.
            let mut nodes = Vec::with_capacity(targets.len());
            for target in targets {
                nodes.push(ControlConnection::connect(target).await?);
            }
            let mut round_no = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let round = Instant::now();
                let count = nodes.len();
                let control = &mut nodes[round_no % count];
                round_no += 1;
                for window in [Window::T0, Window::T1, Window::T2] {
                    control.run_cycle(window).await?;
                }
                if let Some(rest) = every.checked_sub(round.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            anyhow::Ok(())
        })
    });
    // The live line's "settled": applied cycles since the run began, from
    // the first target's replica of the cycle list.
    let settled = options
        .settled
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
    let mut options = options;
    options.settled = Some(settled.clone());
    let watcher = {
        let stop = stop.clone();
        let target = targets[0];
        tokio::spawn(watch_settled(target, first_cycle, settled, stop))
    };
    let outcome = run(options).await;
    stop.store(true, Ordering::Relaxed);
    watcher.abort();
    if let Some(trigger) = trigger {
        trigger
            .await
            .map_err(|e| anyhow!("cycle trigger failed: {e}"))??;
    }
    let outcome = outcome?;

    // Drain: ask for every window's cycles until nothing settles for a while.
    let drain_start = Instant::now();
    let mut last_settling = Instant::now();
    let mut seen = first_cycle.saturating_sub(1);
    // The newest cycle known applied (by a run's answer, from the leader).
    let mut last_applied = seen;
    let mut drained = Drained::default();
    let mut next_progress = settle.progress_every.map(|every| Instant::now() + every);
    while drain_start.elapsed() < settle.drain_max && last_settling.elapsed() < settle.quiet_for {
        for window in [Window::T0, Window::T1, Window::T2] {
            let summary = replicas[0].run_cycle(window).await?;
            if summary.settled > 0 {
                last_settling = Instant::now();
            }
            last_applied = last_applied.max(summary.cycle_id);
        }
        let (recent, _) = replicas[0].cycles_after(seen).await?;
        if let Some(last) = recent.last() {
            seen = last.cycle_id;
        }
        if recent.iter().any(|c| c.settled > 0) {
            last_settling = Instant::now();
        }
        drained.count(&recent);
        if let (Some(at), Some(every)) = (next_progress, settle.progress_every) {
            if Instant::now() >= at {
                println!("{}", drained.progress(drain_start.elapsed()));
                next_progress = Some(at + every);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = Instant::now();
    let cycles = loop {
        let merged = cycles_everywhere(&mut replicas, first_cycle.saturating_sub(1)).await?;
        if all_applied(&merged, first_cycle, last_applied) {
            break merged;
        }
        if caught_up.elapsed() > REPLICA_CATCH_UP_MAX {
            bail!(
                "after {REPLICA_CATCH_UP_MAX:?} the replicas still miss cycles of {first_cycle}..={last_applied} applied"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cycles: Vec<CycleSummary> = cycles.into_values().collect();
    Ok((outcome, SettleReport::of(&cycles, start_us)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::messages::CycleCost;

    fn summary(
        id: u64,
        window: Window,
        candidates: u32,
        settled: u32,
        started: u64,
        applied: u64,
    ) -> CycleSummary {
        CycleSummary {
            cycle_id: id,
            window,
            status: CycleStatus::Applied,
            method: DecisionMethod::Optimiser,
            candidates,
            settled,
            deferred: candidates - settled,
            batches: 1,
            cost: CycleCost {
                total: 1.0,
                ..Default::default()
            },
            naive_cost: CycleCost {
                total: 4.0,
                ..Default::default()
            },
            solve_us: 1,
            started_at_us: started,
            decided_at_us: started + 1,
            applied_at_us: applied,
            decision_index: id,
        }
    }

    #[test]
    fn report_counts_settled_per_second_to_the_last_settlement_and_percentiles() {
        let cycles = vec![
            summary(1, Window::Rtgs, 10, 10, 1_000_000, 1_010_000),
            summary(2, Window::T0, 2_000, 1_990, 1_500_000, 1_540_000),
            summary(3, Window::Rtgs, 5, 0, 2_900_000, 3_000_000),
        ];
        let r = SettleReport::of(&cycles, 1_000_000);
        assert_eq!(r.settled, 2_000);
        assert!(
            (r.elapsed_s - 0.54).abs() < 1e-9,
            "to the last cycle that settled"
        );
        assert!((r.settled_per_s - 2_000.0 / 0.54).abs() < 1e-6);
        assert_eq!(r.cycles_by_window, [2, 1, 0, 0]);
        assert_eq!(r.large_cycle_latency_ms.count, 1);
        assert_eq!(r.large_cycle_latency_ms.p99, 40.0);
        assert_eq!(r.cycle_latency_ms.max, 100.0);
        assert_eq!(r.cycle_latency_ms.p50, 40.0);
        assert!((r.savings_pct - 75.0).abs() < 1e-9);
    }
    #[test]
    fn replicas_merge_to_one_summary_per_cycle_preferring_applied() {
        let applied = summary(7, Window::Rtgs, 10, 10, 1_000, 2_000);
        let mut started = applied;
        started.status = CycleStatus::Started;
        started.settled = 0;
        started.applied_at_us = 0;
        let other = summary(8, Window::T0, 5, 5, 3_000, 4_000);
        let merged =
            merge_replicas([vec![started], vec![applied, other], vec![applied, other]]).unwrap();
        assert_eq!(merged.len(), 2, "each cycle once, however many replicas");
        assert_eq!(
            merged[&7], applied,
            "the applied summary wins over a lagging one"
        );
        let r = SettleReport::of(&merged.into_values().collect::<Vec<_>>(), 1_000);
        assert_eq!(r.settled, 15, "no double counting across replicas");
    }

    #[test]
    fn replicas_that_disagree_on_an_applied_cycle_are_an_error() {
        let a = summary(7, Window::Rtgs, 10, 10, 1_000, 2_000);
        let mut b = a;
        b.settled = 9;
        assert!(merge_replicas([vec![a], vec![b]]).is_err());
    }

    #[test]
    fn all_applied_needs_every_cycle_of_the_range_applied() {
        let mut started = summary(2, Window::T1, 1, 0, 1, 0);
        started.status = CycleStatus::Started;
        let merged = merge_replicas([vec![
            summary(1, Window::T0, 1, 1, 1, 2),
            started,
            summary(4, Window::T2, 1, 1, 1, 2),
        ]])
        .unwrap();
        assert!(all_applied(&merged, 1, 1));
        assert!(!all_applied(&merged, 1, 2), "cycle 2 is only started");
        assert!(!all_applied(&merged, 4, 5), "cycle 5 is missing");
        assert!(all_applied(&merged, 3, 2), "an empty range");
    }
}
