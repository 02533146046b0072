//! storage: durable append throughput of the log, and plain std::fs +
//! fdatasync on the same disk in the same run for comparison.
//!
//! Each iteration appends one group of 1, 64 or 1,000 records of 128 bytes
//! and makes it durable (one write, one fdatasync). Throughput is in records,
//! so criterion's "elem/s" is records/s. From it:
//!   MB/s      = records/s × 160 / 1e6   (128 B payload + 32 B record header;
//!               the log also writes a 48 B group header and pads each group
//!               to 4 KiB, so for groups of 1 the disk sees 4 KiB per record)
//!   fsyncs/s  = records/s ÷ group size  (one fdatasync per group)
//! The bench also prints these three numbers per case after criterion's
//! report ("summary:" lines): total records over total timed time of all
//! of criterion's calls, warm-up included, so they differ a little from
//! criterion's own estimate.
//!
//! Budget: ≥ 1 M records/s at 1,000 records per group.
//!
//! `log_prealloc` is the same log appending into preallocated (zero-filled)
//! segments: a task per log runs `Log::preallocate_step` beside the
//! appends, as the node's `run_preallocator` does, so no write grows the
//! file and no fdatasync commits file metadata, and the zeroing's disk time
//! is in the figures. `logs12` flushes 12 logs at once, each one group of
//! 64 records per iteration (a 3-node cluster of 4 shards on one disk):
//! elem/s counts all 12 logs' records.
//!
//! Run: `cargo bench -p settle-benches --bench storage`
//! Quick check: `... --bench storage -- --warm-up-time 1 --measurement-time 2`
//! Files go to a temporary directory under $SETTLE_BENCH_DIR (default: the
//! system temp dir); it must be on the disk you want to measure (not tmpfs).

use std::{
    cell::Cell,
    fs::File,
    io::Write,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use settle_storage::{Entry, Log, LogOptions};

const PAYLOAD_BYTES: usize = 128;
const RECORD_BYTES: usize = PAYLOAD_BYTES + settle_storage::HEADER_BYTES;
const GROUP_SIZES: [u64; 3] = [1, 64, 1_000];

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SETTLE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("temp dir in SETTLE_BENCH_DIR"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// Records timed by criterion, to print records/s, MB/s and fsyncs/s.
#[derive(Default)]
struct Tally {
    records: u64,
    groups: u64,
    elapsed: Duration,
}

impl Tally {
    fn add(&mut self, records: u64, iters: u64, elapsed: Duration) {
        self.records += records * iters;
        self.groups += iters;
        self.elapsed += elapsed;
    }

    fn print(&self, name: &str) {
        if self.records == 0 {
            return; // filtered out on the command line
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let records_per_s = self.records as f64 / secs;
        println!(
            "summary: {name:<28} {:>12.0} records/s {:>8.1} MB/s {:>8.0} fsyncs/s",
            records_per_s,
            records_per_s * RECORD_BYTES as f64 / 1e6,
            self.groups as f64 / secs,
        );
    }
}

/// Logs on one glommio executor, reused across criterion's calls.
struct LogBench {
    ex: LocalExecutor,
    logs: Vec<Rc<Log>>,
    preallocate: bool,
    _dir: tempfile::TempDir,
}

/// Stages one group of `group` records of the bench's payload.
fn append_group(log: &Log, group: u64) {
    let payload = [0x5au8; PAYLOAD_BYTES];
    let first = log.next_index();
    log.append((first..first + group).map(|index| Entry {
        index,
        term: 1,
        payload: &payload,
    }))
    .expect("append");
}

/// Untimed, between measurements: the disk footprint kept flat by dropping
/// everything written, and (when `preallocate`) a zero-filled spare ready
/// for the next rotation.
async fn reset(log: &Log, preallocate: bool) {
    if let Some(last) = log.last_index() {
        log.purge_prefix(last, 1).await.expect("purge");
    }
    while preallocate && log.preallocate_step().await.expect("preallocate") {}
}

impl LogBench {
    /// `logs` logs in one temporary directory, on one executor.
    fn new(logs: usize, preallocate: bool) -> Self {
        let dir = bench_dir();
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("glommio executor");
        let path = dir.path().to_path_buf();
        let opened = ex.run(async move {
            let mut opened = Vec::with_capacity(logs);
            for i in 0..logs {
                let options = LogOptions {
                    preallocate,
                    ..LogOptions::default()
                };
                let log = Log::open(path.join(format!("log-{i}")), options)
                    .await
                    .expect("open log")
                    .0;
                // One group first: the first group that would grow the file
                // after it rotates into the spare.
                append_group(&log, 1);
                log.flush().await.expect("flush");
                reset(&log, preallocate).await;
                opened.push(Rc::new(log));
            }
            opened
        });
        Self {
            ex,
            logs: opened,
            preallocate,
            _dir: dir,
        }
    }

    /// Appends `iters` durable groups of `group` records to every log, the
    /// logs flushing concurrently; returns the time.
    fn run(&self, group: u64, iters: u64) -> Duration {
        let logs = self.logs.clone();
        let preallocate = self.preallocate;
        self.ex.run(async move {
            // As in the node: each log's next segment is zero-filled in the
            // background while the appends run (timed: it shares the disk).
            let running = Rc::new(Cell::new(true));
            let preallocators: Vec<_> = logs
                .iter()
                .filter(|_| preallocate)
                .map(|log| {
                    let (log, running) = (log.clone(), running.clone());
                    glommio::spawn_local(async move {
                        while running.get() {
                            if !log.preallocate_step().await.expect("preallocate") {
                                glommio::timer::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    })
                })
                .collect();
            let start = Instant::now();
            for _ in 0..iters {
                let flushes: Vec<_> = logs
                    .iter()
                    .map(|log| {
                        let log = log.clone();
                        append_group(&log, group);
                        glommio::spawn_local(async move { log.flush().await.expect("flush") })
                    })
                    .collect();
                for flush in flushes {
                    flush.await;
                }
            }
            let elapsed = start.elapsed();
            running.set(false);
            for p in preallocators {
                p.await;
            }
            for log in &logs {
                reset(log, preallocate).await;
            }
            elapsed
        })
    }
}

/// Plain std::fs: one write of the group's bytes, then fdatasync.
struct StdBench {
    file: File,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StdBench {
    fn new() -> Self {
        let dir = bench_dir();
        let path = dir.path().join("std.log");
        let file = File::create(&path).expect("create");
        Self {
            file,
            path,
            _dir: dir,
        }
    }

    fn run(&mut self, group: u64, iters: u64) -> Duration {
        let buf = vec![0x5au8; group as usize * RECORD_BYTES];
        let start = Instant::now();
        for _ in 0..iters {
            self.file.write_all(&buf).expect("write");
            self.file.sync_data().expect("fdatasync");
        }
        let elapsed = start.elapsed();
        // Untimed: start over with an empty file.
        self.file = File::create(&self.path).expect("recreate");
        elapsed
    }
}

/// One case: criterion's measurement of `run(iters)`, plus a tally of
/// `records` per iteration for the summary lines.
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    tallies: &mut Vec<(String, Tally)>,
    name: &str,
    group: u64,
    records: u64,
    mut run: impl FnMut(u64) -> Duration,
) {
    let mut tally = Tally::default();
    g.bench_with_input(BenchmarkId::new(name, group), &group, |b, _| {
        b.iter_custom(|iters| {
            let t = run(iters);
            tally.add(records, iters, t);
            t
        })
    });
    tallies.push((format!("{name}/{group}"), tally));
}

fn storage(c: &mut Criterion) {
    let log = LogBench::new(1, false);
    let prealloc = LogBench::new(1, true);
    let mut plain = StdBench::new();
    let mut tallies = Vec::new();
    let mut g = c.benchmark_group("storage_durable_append");
    for group in GROUP_SIZES {
        g.throughput(Throughput::Elements(group));
        measure(&mut g, &mut tallies, "log", group, group, |iters| {
            log.run(group, iters)
        });
        measure(
            &mut g,
            &mut tallies,
            "log_prealloc",
            group,
            group,
            |iters| prealloc.run(group, iters),
        );
        measure(
            &mut g,
            &mut tallies,
            "std_fs_fdatasync",
            group,
            group,
            |iters| plain.run(group, iters),
        );
    }
    // Twelve logs flushing at once: one group of 64 records each.
    const LOGS: usize = 12;
    const GROUP: u64 = 64;
    let records = GROUP * LOGS as u64;
    g.throughput(Throughput::Elements(records));
    for (name, preallocate) in [("logs12", false), ("logs12_prealloc", true)] {
        let logs = LogBench::new(LOGS, preallocate);
        measure(&mut g, &mut tallies, name, GROUP, records, |iters| {
            logs.run(GROUP, iters)
        });
    }
    g.finish();
    for (name, tally) in &tallies {
        tally.print(name);
    }
}

criterion_group!(benches, storage);
criterion_main!(benches);
