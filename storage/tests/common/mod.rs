//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use glommio::{LocalExecutorBuilder, Placement};
use settle_storage::{Entry, Log, LogOptions, RecoveryReport};

/// Runs `fut` to completion on a fresh glommio executor (one per test).
pub fn run<T: 'static>(fut: impl Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("glommio executor")
        .run(fut)
}

/// Deterministic payload of record `index` (varies length and content).
pub fn payload(index: u64) -> Vec<u8> {
    let len = 1 + (index.wrapping_mul(2654435761) % 300) as usize;
    (0..len)
        .map(|i| (index as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

pub fn term_of(index: u64) -> u64 {
    1 + index / 50
}

/// Appends `count` records continuing the log, in groups of `group`.
pub async fn fill(log: &Log, count: u64, group: u64) {
    let mut left = count;
    while left > 0 {
        let n = left.min(group);
        let start = log.next_index();
        let payloads: Vec<Vec<u8>> = (start..start + n).map(payload).collect();
        log.append((start..start + n).zip(&payloads).map(|(index, p)| Entry {
            index,
            term: term_of(index),
            payload: p,
        }))
        .unwrap();
        log.flush().await.unwrap();
        left -= n;
    }
}

pub async fn open(dir: &Path, segment_bytes_max: u64) -> (Log, RecoveryReport) {
    Log::open(
        dir,
        LogOptions {
            segment_bytes_max,
            ..LogOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Asserts the log holds exactly `range` with the deterministic payloads.
pub async fn check(log: &Log, range: std::ops::Range<u64>) {
    let recs = log.read(range.clone()).await.unwrap();
    assert_eq!(recs.len() as u64, range.end - range.start);
    for (r, index) in recs.iter().zip(range) {
        assert_eq!(r.index, index);
        assert_eq!(r.term, term_of(index), "term of {index}");
        assert_eq!(r.payload, payload(index), "payload of {index}");
    }
}

/// Segment files in `dir`, sorted.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}
