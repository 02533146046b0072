//! Property test: random append / flush / truncate / purge / reopen
//! sequences against an in-memory model of the log.

mod common;

use std::path::Path;

use common::run;
use proptest::prelude::*;
use settle_storage::{Entry, Log, LogOptions};

#[derive(Debug, Clone)]
enum Op {
    /// Stage `count` records with payloads of `len` bytes under `term`.
    Append {
        count: u64,
        len: usize,
        term: u64,
    },
    Flush,
    /// Truncate at a point chosen by `frac` over [first, next].
    Truncate {
        frac: f64,
    },
    /// Purge up to a point chosen by `frac` over [first - 1, next + 20].
    Purge {
        frac: f64,
    },
    /// Close without flushing and open again: staged records are lost.
    Reopen,
    /// Run `steps` steps of preparing a zero-filled spare segment (a
    /// 12 KiB segment takes 3: create, zeros, fdatasync), which the next
    /// rotation renames into place.
    Preallocate {
        steps: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..40, 0usize..400, 1u64..4).prop_map(|(count, len, term)| Op::Append { count, len, term }),
        4 => Just(Op::Flush),
        2 => (0.0f64..=1.0).prop_map(|frac| Op::Truncate { frac }),
        2 => (0.0f64..=1.0).prop_map(|frac| Op::Purge { frac }),
        2 => Just(Op::Reopen),
        3 => (1u32..4).prop_map(|steps| Op::Preallocate { steps }),
    ]
}

/// What the log must hold.
#[derive(Debug, Default)]
struct Model {
    first: u64,
    /// Records from `first` on: (term, payload).
    records: Vec<(u64, Vec<u8>)>,
    durable_next: u64,
    purged: Option<(u64, u64)>,
}

impl Model {
    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }
}

fn payload(index: u64, len: usize, term: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (index as usize * 7 + i + term as usize) as u8)
        .collect()
}

const SEGMENT_BYTES: u64 = 12 << 10;

async fn open(dir: &Path) -> Log {
    Log::open(
        dir,
        LogOptions {
            segment_bytes_max: SEGMENT_BYTES,
            preallocate: true,
            cipher: None,
        },
    )
    .await
    .unwrap()
    .0
}

async fn check(log: &Log, m: &Model) {
    assert_eq!(log.first_index(), m.first, "first index");
    assert_eq!(log.next_index(), m.next(), "next index");
    assert_eq!(
        log.durable_last_index(),
        m.durable_next.checked_sub(1),
        "durable index"
    );
    assert_eq!(
        log.purged().map(|p| (p.index, p.term)),
        m.purged,
        "purge point"
    );
    let got = log.read(m.first..m.next()).await.unwrap();
    assert_eq!(got.len(), m.records.len());
    for (k, (r, (term, p))) in got.iter().zip(&m.records).enumerate() {
        let index = m.first + k as u64;
        assert_eq!(
            (r.index, r.term, &r.payload),
            (index, *term, p),
            "record {index}"
        );
        assert_eq!(log.term_at(index), Some(*term));
    }
}

async fn apply(log: Log, m: &mut Model, op: &Op, dir: &Path) -> Log {
    match *op {
        Op::Append { count, len, term } => {
            let start = m.next();
            let payloads: Vec<Vec<u8>> = (start..start + count)
                .map(|i| payload(i, len, term))
                .collect();
            log.append(payloads.iter().enumerate().map(|(k, p)| Entry {
                index: start + k as u64,
                term,
                payload: p,
            }))
            .unwrap();
            m.records.extend(payloads.into_iter().map(|p| (term, p)));
        }
        Op::Flush => {
            log.flush().await.unwrap();
            m.durable_next = m.next();
        }
        Op::Truncate { frac } => {
            let from = m.first + (frac * m.records.len() as f64) as u64;
            log.truncate_suffix(from).await.unwrap();
            m.records.truncate((from - m.first) as usize);
            m.durable_next = m.durable_next.min(from);
        }
        Op::Purge { frac } => {
            let lo = m.first.saturating_sub(1);
            let up_to = lo + (frac * (m.next() + 20 - lo) as f64) as u64;
            if m.first > 0 && up_to < m.first {
                return log;
            }
            let held = up_to
                .checked_sub(m.first)
                .and_then(|k| m.records.get(k as usize));
            let term = held.map_or(1000 + up_to, |r| r.0);
            log.purge_prefix(up_to, term).await.unwrap();
            if up_to >= m.durable_next {
                m.durable_next = m.next();
            }
            let drop = ((up_to + 1 - m.first) as usize).min(m.records.len());
            m.records.drain(..drop);
            m.first = up_to + 1;
            m.durable_next = m.durable_next.max(m.first);
            m.purged = Some((up_to, term));
        }
        Op::Preallocate { steps } => {
            for _ in 0..steps {
                log.preallocate_step().await.unwrap();
            }
        }
        Op::Reopen => {
            drop(log);
            m.records.truncate((m.durable_next - m.first) as usize);
            return open(dir).await;
        }
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let mut m = Model::default();
            let mut log = open(&path).await;
            for op in &ops {
                log = apply(log, &mut m, op, &path).await;
                check(&log, &m).await;
            }
            drop(log);
            m.records.truncate((m.durable_next - m.first) as usize);
            let log = open(&path).await;
            check(&log, &m).await;
        });
    }
}
