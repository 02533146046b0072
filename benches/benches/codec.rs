//! codec: encode and decode+validate of a 1,000-transaction submit batch.
//!
//! Throughput is in transactions, so criterion's "elem/s" inverts to ns per
//! transaction. Budget: the round trip (encode, then frame check + rkyv
//! validation + reading every transaction) under 50 ns per transaction.
//!
//! Run: `cargo bench -p settle-benches --bench codec`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use settle_codec::{
    decode_body, decode_frame, encode_frame, Currency, FrameBuf, ParticipantId, SubmitBatch,
    SubmitRequest, Transaction, Window,
};

/// The batch size the budget is stated for.
const BATCH: usize = 1_000;

fn batch(n: usize) -> Vec<Transaction> {
    (0..n as u64)
        .map(|i| Transaction {
            id: (u128::from(i) << 64) | u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            debtor: ParticipantId((i % 40) as u32),
            creditor: ParticipantId(((i + 7) % 40) as u32),
            amount: 1_000 + i * 13,
            send: Currency::EUR,
            receive: if i % 4 == 0 {
                Currency::USD
            } else {
                Currency::EUR
            },
            window: Window::ALL[(i % 4) as usize],
            client_timestamp_us: 1_700_000_000_000_000 + i,
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let txs = batch(BATCH);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut buf = FrameBuf::new();
    group.bench_function(BenchmarkId::new("encode", BATCH), |b| {
        b.iter(|| {
            let frame = encode_frame(1, &SubmitBatch { transactions: &txs }, &mut buf).unwrap();
            black_box(frame.len())
        })
    });

    let mut buf = FrameBuf::new();
    let frame_bytes = encode_frame(1, &SubmitBatch { transactions: &txs }, &mut buf)
        .unwrap()
        .to_vec();
    // A 16-aligned copy, as the frame reader holds received bytes.
    let mut aligned = settle_codec::rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&frame_bytes);
    group.bench_function(BenchmarkId::new("decode_validate", BATCH), |b| {
        b.iter(|| {
            let frame = decode_frame(black_box(&aligned)).unwrap();
            let archived = decode_body::<SubmitRequest>(&frame).unwrap();
            black_box(archived.transactions.len())
        })
    });

    let mut buf = FrameBuf::new();
    group.bench_function(BenchmarkId::new("round_trip", BATCH), |b| {
        b.iter(|| {
            let bytes = encode_frame(1, &SubmitBatch { transactions: &txs }, &mut buf).unwrap();
            let frame = decode_frame(bytes).unwrap();
            let archived = decode_body::<SubmitRequest>(&frame).unwrap();
            let mut amount_sum = 0u64;
            for tx in archived.transactions.iter() {
                amount_sum = amount_sum.wrapping_add(tx.to_native().amount);
            }
            black_box(amount_sum)
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
