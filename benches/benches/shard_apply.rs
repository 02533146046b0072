//! shard_apply: a shard applying submit entries of 2,048 fresh transactions
//! while it already holds ~2M records (the table's cache and TLB misses are
//! what this measures; with a small table everything would sit in cache).
//!
//! Throughput is in transactions, so criterion's "elem/s" inverts to ns per
//! transaction.
//!
//! Run: `cargo bench -p settle-benches --bench shard_apply -- --warm-up-time 1 --measurement-time 3`

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use settle_codec::{Currency, ParticipantId, Transaction, Window};
use settle_node::shard::ShardState;

/// Transactions per submit entry.
const ENTRY: usize = 2_048;
/// Records held before measuring.
const HELD: usize = 2_000_000;
/// Refill from scratch once the state grows past this (keeps memory and
/// the table size near `HELD` however many iterations criterion runs).
const HELD_MAX: usize = 3_000_000;
/// Concurrent clients whose id sequences interleave, as loadgen makes them.
const CLIENTS: u64 = 64;

/// Hands out transactions with loadgen's id layout: run, client, sequence.
struct Source {
    next: u64,
}

impl Source {
    fn entry(&mut self) -> Vec<Transaction> {
        (0..ENTRY)
            .map(|_| {
                let i = self.next;
                self.next += 1;
                let (client, seq) = (i % CLIENTS, i / CLIENTS);
                Transaction {
                    id: (7u128 << 64) | (u128::from(client) << 40) | u128::from(seq),
                    debtor: ParticipantId((i % 40) as u32),
                    creditor: ParticipantId(((i + 7) % 40) as u32),
                    amount: 1_000 + i % 977,
                    send: Currency::EUR,
                    receive: Currency::USD,
                    window: Window::ALL[(i % 4) as usize],
                    client_timestamp_us: 1_700_000_000_000_000 + i,
                }
            })
            .collect()
    }
}

struct Shard {
    state: ShardState,
    source: Source,
    index: u64,
    results: Vec<settle_codec::TxResult>,
}

impl Shard {
    fn filled() -> Shard {
        let mut s = Shard {
            state: ShardState::new(),
            source: Source { next: 0 },
            index: 0,
            results: Vec::with_capacity(ENTRY),
        };
        while s.state.len() < HELD {
            let entry = s.source.entry();
            s.apply(&entry);
        }
        s
    }

    /// Applies `entry`, read in place as the node reads a decoded entry.
    fn apply(&mut self, entry: &[Transaction]) {
        self.index += 1;
        self.results.clear();
        self.state.apply_submit(
            self.index,
            self.index * 1_000,
            Currency::EUR,
            entry.iter().copied(),
            &mut self.results,
        );
    }
}

fn shard_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_apply");
    group.throughput(Throughput::Elements(ENTRY as u64));
    let mut shard = Shard::filled();
    group.bench_function(BenchmarkId::new("fresh_entry_at_2M", ENTRY), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                if shard.state.len() > HELD_MAX {
                    shard = Shard::filled();
                }
                let entry = shard.source.entry();
                let start = Instant::now();
                shard.apply(&entry);
                spent += start.elapsed();
                black_box(shard.results.len());
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, shard_apply);
criterion_main!(benches);
