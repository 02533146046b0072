//! Driving a node: clients over TCP, closed or open loop.
//!
//! Closed loop (default): each client sends a batch, waits for the answer,
//! sends the next. Open loop (`--rate`): each client sends on a fixed
//! schedule whatever the node's speed, and latency is measured from the
//! scheduled send time, so a stalled node shows up in the percentiles
//! instead of silently slowing the load (coordinated omission).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use hdrhistogram::Histogram;
use settle_codec::{
    decode_body, ErrorResponse, FrameBuf, FrameReader, LookupItem, LookupRequest, LookupResponse,
    MessageKind, ReadStatus, SubmitBatch, SubmitResponse, Transaction, TxResult, MAX_LOOKUP_IDS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{live_line, Percentiles, Recorder, Report, LATENCY_US_MAX};
use crate::timeline::{Sample, Timeline};
use crate::workload::Workload;

/// Options of a load run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub targets: Vec<SocketAddr>,
    pub duration: Duration,
    pub clients: usize,
    pub batch: usize,
    /// Open loop at this many transactions per second (all clients together).
    pub rate_tps: Option<u64>,
    pub participants: u32,
    pub seed: u64,
    /// Distinguishes this run's ids from earlier runs' (high 64 bits of every id).
    pub run_id: u64,
    /// Ids in random order (like random UUIDs), not counting up.
    pub scattered_ids: bool,
    /// Print a live line every second.
    pub live: bool,
    /// Keep every acknowledged (Created or Duplicate) id, for `--acked`.
    pub collect_acked: bool,
    /// Transactions settled since the run began, kept up to date by the
    /// settle mode for the live line and the timeline (`None`: not settling).
    pub settled: Option<Arc<AtomicU64>>,
    /// Deadline of one request (connect, TLS handshake, send, answer): past
    /// it the client closes the connection and re-sends the same batch to
    /// the next target.
    pub request_timeout: Duration,
    /// A client that got no answer for this long stops (a dead cluster ends
    /// the run instead of spinning through it).
    pub give_up_after: Duration,
}

/// Default of [`RunOptions::request_timeout`]: well above a healthy
/// request (milliseconds) and an election (about a second), well below a
/// stall worth going elsewhere for.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Default of [`RunOptions::give_up_after`]: longer than any fault a
/// cluster is expected to ride out (an election, a restart).
pub const GIVE_UP_AFTER_DEFAULT: Duration = Duration::from_secs(60);

/// Most one-second throughput samples a report keeps (a day): the series is
/// bounded whatever `--duration` says.
pub const PER_SECOND_SAMPLES_MAX: usize = 86_400;

/// What a run produced.
pub struct RunOutcome {
    pub report: Report,
    /// Acknowledged ids (empty unless `collect_acked`).
    pub acked: Vec<u128>,
    /// The run second by second (what the live line showed).
    pub timeline: Timeline,
}

/// A connection speaking the frame protocol, with reusable buffers.
pub struct Connection {
    stream: Box<dyn crate::net::Io>,
    out: FrameBuf,
    reader: FrameReader,
    next_request_id: u64,
}

/// A decoded answer to a submit.
pub enum SubmitAnswer {
    Results(Vec<TxResult>),
    Error(String),
}

impl Connection {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = crate::net::connect(addr).await?;
        Ok(Connection {
            stream,
            out: FrameBuf::new(),
            reader: FrameReader::new(),
            next_request_id: 1,
        })
    }

    async fn send<M: settle_codec::Encode>(&mut self, msg: &M) -> anyhow::Result<u64> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.out.clear();
        self.out
            .push(request_id, msg)
            .map_err(|e| anyhow!("encoding request: {e}"))?;
        self.stream.write_all(self.out.as_slice()).await?;
        Ok(request_id)
    }

    /// Reads one frame and hands it to `f`.
    async fn recv<R>(
        &mut self,
        f: impl FnOnce(&settle_codec::Frame<'_>) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        loop {
            match self
                .reader
                .next_frame()
                .map_err(|e| anyhow!("bad frame from node: {e}"))?
            {
                ReadStatus::Frame(frame) => return f(&frame),
                ReadStatus::NeedMore(_) => {}
            }
            let n = self.stream.read(self.reader.spare()).await?;
            if n == 0 {
                bail!("node closed the connection");
            }
            self.reader.commit(n);
        }
    }

    /// Submits a batch and waits for its answer.
    pub async fn submit(&mut self, transactions: &[Transaction]) -> anyhow::Result<SubmitAnswer> {
        let request_id = self.send(&SubmitBatch { transactions }).await?;
        self.recv(|frame| {
            if frame.request_id() != request_id {
                bail!(
                    "answer to request {} while waiting for {request_id}",
                    frame.request_id()
                );
            }
            match frame.kind() {
                MessageKind::SubmitResponse => {
                    let body = decode_body::<SubmitResponse>(frame)?;
                    Ok(SubmitAnswer::Results(
                        body.results.iter().map(TxResult::from).collect(),
                    ))
                }
                MessageKind::ErrorResponse => {
                    let body = decode_body::<ErrorResponse>(frame)?;
                    Ok(SubmitAnswer::Error(format!(
                        "{:?}: {}",
                        body.code, body.message
                    )))
                }
                other => bail!("unexpected {other:?} answer to a submit"),
            }
        })
        .await
    }

    /// Looks ids up (at most `MAX_LOOKUP_IDS`).
    pub async fn lookup(&mut self, ids: &[u128]) -> anyhow::Result<Vec<LookupItem>> {
        assert!(ids.len() <= MAX_LOOKUP_IDS);
        let request_id = self.send(&LookupRequest { ids: ids.to_vec() }).await?;
        self.recv(|frame| {
            if frame.request_id() != request_id {
                bail!(
                    "answer to request {} while waiting for {request_id}",
                    frame.request_id()
                );
            }
            match frame.kind() {
                MessageKind::LookupResponse => {
                    let body = decode_body::<LookupResponse>(frame)?;
                    Ok(rkyv_items(body))
                }
                MessageKind::ErrorResponse => {
                    let body = decode_body::<ErrorResponse>(frame)?;
                    bail!("lookup failed: {:?}: {}", body.code, body.message)
                }
                other => bail!("unexpected {other:?} answer to a lookup"),
            }
        })
        .await
    }
}

fn rkyv_items(body: &settle_codec::archived::ArchivedLookupResponse) -> Vec<LookupItem> {
    settle_codec::rkyv::deserialize::<Vec<LookupItem>, settle_codec::rkyv::rancor::Error>(
        &body.items,
    )
    .expect("a validated archive deserialises")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Shared counters for the live line and the timeline (relaxed atomics: a
/// progress display). The clients run on one runtime thread, so the
/// interval's histogram lock is never contended.
struct Progress {
    answered: AtomicU64,
    /// Created or Duplicate: what the per-second series counts.
    acked: AtomicU64,
    errors: AtomicU64,
    /// Latencies (µs) of the requests answered since the last sample.
    interval_latency_us: Mutex<Histogram<u64>>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            answered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"),
            ),
        }
    }

    fn record(&self, latency: Duration, expected_interval_us: Option<u64>) {
        let mut h = self
            .interval_latency_us
            .lock()
            .expect("no panic while held");
        crate::report::record_us(&mut h, latency, expected_interval_us);
    }

    /// The interval's latencies, leaving an empty histogram for the next.
    fn take_interval(&self) -> Histogram<u64> {
        let mut h = self
            .interval_latency_us
            .lock()
            .expect("no panic while held");
        let empty = Histogram::new_from(&*h);
        std::mem::replace(&mut *h, empty)
    }
}

/// Where the timeline stands: what its samples counted so far.
struct Sampler {
    start: Instant,
    last_at: Duration,
    answered: u64,
    errors: u64,
    timeline: Timeline,
    /// Acknowledged (Created or Duplicate) per sample, at most
    /// [`PER_SECOND_SAMPLES_MAX`]: a stall or an outage shows as zeros (the
    /// nemesis reads its unavailability from this series).
    acked: u64,
    acked_per_second: Vec<u64>,
}

impl Sampler {
    /// Samples the interval since the last sample.
    fn sample(&mut self, progress: &Progress, settled: Option<&AtomicU64>) -> Sample {
        let now = self.start.elapsed();
        let answered = progress.answered.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let sample = Sample::new(
            now,
            now.saturating_sub(self.last_at),
            answered - self.answered,
            errors - self.errors,
            &progress.take_interval(),
            settled.map(|s| s.load(Ordering::Relaxed)),
        );
        let acked = progress.acked.load(Ordering::Relaxed);
        if self.acked_per_second.len() < PER_SECOND_SAMPLES_MAX {
            self.acked_per_second.push(acked - self.acked);
        }
        self.acked = acked;
        self.last_at = now;
        self.answered = answered;
        self.errors = errors;
        self.timeline.push(sample);
        sample
    }
}

/// Runs the load and returns the report.
pub async fn run(options: RunOptions) -> anyhow::Result<RunOutcome> {
    if options.targets.is_empty() {
        bail!("at least one --target is needed");
    }
    if options.clients == 0 || options.batch == 0 {
        bail!("--clients and --batch must be at least 1");
    }
    if options.batch > settle_codec::MAX_BATCH_TRANSACTIONS {
        bail!(
            "--batch {} is above the protocol's maximum of {}",
            options.batch,
            settle_codec::MAX_BATCH_TRANSACTIONS
        );
    }
    let progress = Arc::new(Progress::new());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + options.duration;
    let acked = Arc::new(Mutex::new(Vec::new()));

    let mut tasks = Vec::with_capacity(options.clients);
    for client in 0..options.clients {
        let options = options.clone();
        let progress = progress.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(client as u32, options, deadline, progress, acked).await
        }));
    }

    // Every second: a timeline sample, and the live line on stderr.
    let sampler = Arc::new(Mutex::new(Sampler {
        start,
        last_at: Duration::ZERO,
        answered: 0,
        errors: 0,
        timeline: Timeline::default(),
        acked: 0,
        acked_per_second: Vec::new(),
    }));
    let live = {
        let progress = progress.clone();
        let stop = stop.clone();
        let sampler = sampler.clone();
        let settled = options.settled.clone();
        let print = options.live;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let sample = sampler
                    .lock()
                    .expect("no panic while held")
                    .sample(&progress, settled.as_deref());
                if print {
                    let line = live_line(&sample, progress.errors.load(Ordering::Relaxed));
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                }
            }
        })
    };

    let mut total = Recorder::default();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(recorder)) => total.merge(&recorder),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("client task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    live.abort();
    let _ = live.await;
    // The last part-second: the timeline's samples add up to the run.
    let timeline = {
        let mut sampler = sampler.lock().expect("no panic while held");
        let answered = progress.answered.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        if answered > sampler.answered
            || errors > sampler.errors
            || sampler.timeline.samples.is_empty()
        {
            sampler.sample(&progress, options.settled.as_deref());
        }
        std::mem::take(&mut sampler.timeline)
    };
    let per_second = std::mem::take(
        &mut sampler
            .lock()
            .expect("no panic while held")
            .acked_per_second,
    );
    if total.requests == 0 {
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let seconds = elapsed.as_secs_f64();
    let report = Report {
        mode: if options.rate_tps.is_some() {
            "open-loop".into()
        } else {
            "closed-loop".into()
        },
        targets: options.targets.iter().map(ToString::to_string).collect(),
        clients: options.clients,
        batch: options.batch,
        rate_tps: options.rate_tps,
        duration_s: seconds,
        transactions_per_s: total.counts.answered() as f64 / seconds,
        created_per_s: total.counts.created as f64 / seconds,
        requests_per_s: total.requests as f64 / seconds,
        latency_us: Percentiles::of(&total.latency_us),
        results: total.counts,
        requests: total.requests,
        timeouts: total.timeouts,
        resent: total.resent,
        acked_per_second: per_second,
    };
    let acked = std::mem::take(&mut *acked.lock().expect("no client panicked holding the lock"));
    Ok(RunOutcome {
        report,
        acked,
        timeline,
    })
}

/// Pause after a failed connect before the next target is tried.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Pause after a failed request before its batch is re-sent.
const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// Why one request got no answer.
enum Failure {
    /// The deadline passed (a stalled node, a lost link).
    Timeout,
    /// A connection error or a whole-request error answer.
    Error,
}

/// Connects to `target` within `timeout` (TCP and the TLS handshake: a
/// stopped node accepts the TCP connection in its kernel, then never
/// answers the handshake).
async fn connect_within(target: SocketAddr, timeout: Duration) -> Result<Connection, Failure> {
    match tokio::time::timeout(timeout, Connection::connect(target)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(_)) => Err(Failure::Error),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Submits `batch` on `conn` within `timeout`.
async fn submit_within(
    conn: &mut Connection,
    batch: &[Transaction],
    timeout: Duration,
) -> Result<Vec<TxResult>, Failure> {
    match tokio::time::timeout(timeout, conn.submit(batch)).await {
        Ok(Ok(SubmitAnswer::Results(results))) => Ok(results),
        Ok(Ok(SubmitAnswer::Error(_)) | Err(_)) => Err(Failure::Error),
        Err(_) => Err(Failure::Timeout),
    }
}

async fn client_loop(
    client: u32,
    options: RunOptions,
    deadline: Instant,
    progress: Arc<Progress>,
    acked: Arc<Mutex<Vec<u128>>>,
) -> anyhow::Result<Recorder> {
    let mut workload = Workload::new(options.seed, options.run_id, client, options.participants);
    if options.scattered_ids {
        workload = workload.scattered();
    }
    let mut recorder = Recorder::default();
    let mut batch = Vec::with_capacity(options.batch);
    let mut my_acked = Vec::new();
    // Open loop: this client's share of the rate, as an interval between sends.
    let interval = options.rate_tps.map(|rate| {
        let per_client_requests = rate as f64 / options.batch as f64 / options.clients as f64;
        Duration::from_secs_f64(1.0 / per_client_requests.max(1e-3))
    });
    let interval_us = interval.map(|i| i.as_micros() as u64);
    // Clients are spread over the targets; a failed request moves its
    // client to the next one.
    let mut target_index = client as usize % options.targets.len();
    let mut connection = None;
    // The batch in `batch` is not acknowledged yet: send it again (same ids,
    // so whatever the node did with the first try, it books it once).
    let mut unacknowledged = false;
    let mut last_answer = Instant::now();
    // Clients start out of phase, spread over one interval: in step they
    // would send in bursts, and the node would see a burstier load than the
    // rate says.
    let mut next_send = Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(f64::from(client) / options.clients as f64)
        });
    while Instant::now() < deadline {
        if last_answer.elapsed() > options.give_up_after {
            break;
        }
        if interval.is_some() && !unacknowledged {
            let now = Instant::now();
            if next_send > now {
                tokio::time::sleep(next_send - now).await;
            }
        }
        let intended = if interval.is_some() {
            next_send
        } else {
            Instant::now()
        };
        if unacknowledged {
            recorder.resent += 1;
        } else {
            workload.fill_batch(&mut batch, options.batch);
        }
        let stamp = now_us();
        for tx in &mut batch {
            tx.client_timestamp_us = stamp;
        }
        let target = options.targets[target_index];
        let outcome = match connection.as_mut() {
            Some(conn) => submit_within(conn, &batch, options.request_timeout).await,
            None => match connect_within(target, options.request_timeout).await {
                Ok(conn) => {
                    let conn = connection.insert(conn);
                    submit_within(conn, &batch, options.request_timeout).await
                }
                Err(failure) => {
                    connection = None;
                    count_failure(&mut recorder, &progress, &failure, batch.len());
                    target_index = (target_index + 1) % options.targets.len();
                    unacknowledged = true;
                    tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        match outcome {
            Ok(results) => {
                unacknowledged = false;
                last_answer = Instant::now();
                let latency = intended.elapsed();
                recorder.record_latency(latency, interval_us);
                progress.record(latency, interval_us);
                let mut acked_now = 0;
                for (tx, result) in batch.iter().zip(&results) {
                    match result {
                        TxResult::Created => {
                            recorder.counts.created += 1;
                            acked_now += 1;
                            if options.collect_acked {
                                my_acked.push(tx.id);
                            }
                        }
                        TxResult::Duplicate => {
                            recorder.counts.duplicate += 1;
                            acked_now += 1;
                            if options.collect_acked {
                                my_acked.push(tx.id);
                            }
                        }
                        TxResult::Conflict => recorder.counts.conflict += 1,
                        TxResult::Rejected { .. } => recorder.counts.rejected += 1,
                    }
                }
                progress
                    .answered
                    .fetch_add(results.len() as u64, Ordering::Relaxed);
                progress.acked.fetch_add(acked_now, Ordering::Relaxed);
                if let Some(interval) = interval {
                    next_send += interval;
                }
            }
            Err(failure) => {
                // The connection may still carry the late answer: close it,
                // and try the next target.
                connection = None;
                count_failure(&mut recorder, &progress, &failure, batch.len());
                target_index = (target_index + 1) % options.targets.len();
                unacknowledged = true;
                tokio::time::sleep(RESEND_PAUSE).await;
            }
        }
    }
    if options.collect_acked {
        acked
            .lock()
            .expect("no client panicked holding the lock")
            .extend(my_acked);
    }
    Ok(recorder)
}

fn count_failure(recorder: &mut Recorder, progress: &Progress, failure: &Failure, txs: usize) {
    recorder.counts.errors += txs as u64;
    progress.errors.fetch_add(txs as u64, Ordering::Relaxed);
    if matches!(failure, Failure::Timeout) {
        recorder.timeouts += 1;
    }
}

/// Lookups tried before `verify` gives up on a chunk: a lookup can fail
/// while a shard's leadership moves (an election, a hand-over to its
/// preferred member), which says nothing about the data.
const LOOKUP_ATTEMPTS: u32 = 50;

/// Pause between lookup attempts: 50 of them cover several elections.
const LOOKUP_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// `lookup`, retried on a fresh connection while it fails or passes its
/// deadline (up to `LOOKUP_ATTEMPTS`); the last error if it never succeeds.
async fn lookup_retrying(
    connection: &mut Connection,
    target: SocketAddr,
    ids: &[u128],
    timeout: Duration,
) -> anyhow::Result<Vec<LookupItem>> {
    let mut attempt = 1;
    loop {
        let answer = match tokio::time::timeout(timeout, connection.lookup(ids)).await {
            Ok(answer) => answer,
            Err(_) => Err(anyhow!(
                "no answer from {target} within the {timeout:?} request deadline"
            )),
        };
        match answer {
            Ok(items) => return Ok(items),
            Err(e) if attempt >= LOOKUP_ATTEMPTS => {
                return Err(e.context(format!("lookup failed {attempt} times")))
            }
            Err(e) => {
                eprintln!("lookup attempt {attempt} failed, retrying: {e:#}");
                attempt += 1;
                tokio::time::sleep(LOOKUP_RETRY_PAUSE).await;
                if let Ok(Ok(fresh)) =
                    tokio::time::timeout(timeout, Connection::connect(target)).await
                {
                    *connection = fresh;
                }
            }
        }
    }
}

/// Illegal trails `verify` quotes in full (the count has them all).
const ILLEGAL_TRAIL_EXAMPLES_MAX: usize = 5;

/// Result of `verify`: every acknowledged id looked up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub acked: u64,
    pub found: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Found ids whose audit trail is not a legal history for their status
    /// (see [`crate::trail`]).
    pub illegal_trails: u64,
    /// Found ids by status.
    pub pending: u64,
    pub settled: u64,
    pub failed: u64,
    /// The first illegal trails, `id: what is wrong`.
    pub examples: Vec<String>,
}

impl Verification {
    /// Every acknowledged id found once, with a legal trail.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.illegal_trails == 0
    }

    /// One line; `found=N missing=0 duplicates=0` is what scripts look for.
    pub fn line(&self) -> String {
        format!(
            "acked={} found={} missing={} duplicates={} illegal_trails={} pending={} settled={} failed={}",
            self.acked,
            self.found,
            self.missing,
            self.duplicates,
            self.illegal_trails,
            self.pending,
            self.settled,
            self.failed
        )
    }
}

/// Looks every acked id up and checks its audit trail. `duplicates` counts
/// ids the node booked twice (two acceptance events); an id acknowledged
/// more than once in the file but held once is fine.
pub async fn verify(
    target: SocketAddr,
    acked: &[u128],
    timeout: Duration,
) -> anyhow::Result<Verification> {
    let mut connection = match tokio::time::timeout(timeout, Connection::connect(target)).await {
        Ok(c) => c?,
        Err(_) => bail!("no connection to {target} within the {timeout:?} request deadline"),
    };
    let mut unique = acked.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut v = Verification {
        acked: unique.len() as u64,
        found: 0,
        missing: 0,
        duplicates: 0,
        illegal_trails: 0,
        pending: 0,
        settled: 0,
        failed: 0,
        examples: Vec::new(),
    };
    for chunk in unique.chunks(MAX_LOOKUP_IDS) {
        let items = lookup_retrying(&mut connection, target, chunk, timeout).await?;
        if items.len() != chunk.len() {
            bail!(
                "lookup answered {} items for {} ids",
                items.len(),
                chunk.len()
            );
        }
        for (id, item) in chunk.iter().zip(&items) {
            if item.id != *id {
                bail!("lookup answered id {} for {}", item.id, id);
            }
            match item.status {
                settle_codec::TxStatus::NotFound => continue,
                settle_codec::TxStatus::Pending | settle_codec::TxStatus::Deferred => {
                    v.pending += 1
                }
                settle_codec::TxStatus::Settled => v.settled += 1,
                settle_codec::TxStatus::Failed => v.failed += 1,
            }
            v.found += 1;
            // More than one acceptance event means the id was booked twice.
            let accepted = item
                .events
                .iter()
                .filter(|e| e.kind == settle_codec::TxEventKind::TransactionSubmitted)
                .count();
            if accepted > 1 {
                v.duplicates += 1;
            }
            if let Err(why) = crate::trail::check_trail(item) {
                v.illegal_trails += 1;
                if v.examples.len() < ILLEGAL_TRAIL_EXAMPLES_MAX {
                    v.examples
                        .push(format!("{}: {why}", settle_codec::format_id(*id)));
                }
            }
        }
    }
    v.missing = v.acked - v.found;
    Ok(v)
}
