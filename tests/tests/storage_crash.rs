//! Crash test: a child process appends with acknowledgements and is killed
//! with SIGKILL mid-way; after reopening, every acknowledged record must be
//! present and intact. Several rounds on the same log, each killing at a
//! different point, and each child recovering what the previous one left.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use glommio::{LocalExecutorBuilder, Placement};
use settle_storage::{Log, LogOptions};

/// Same as the child's (tests/src/bin/storage_crash_child.rs).
fn payload(index: u64) -> Vec<u8> {
    let len = 64 + (index % 97) as usize;
    (0..len)
        .map(|i| (index.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64) >> 3) as u8)
        .collect()
}

fn term_of(index: u64) -> u64 {
    index / 1000 + 1
}

/// Bound on one round, so a hung child fails the test instead of hanging it.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the child until it has acknowledged `acks_before_kill` flushes, then
/// SIGKILLs it. Returns the highest acknowledged index.
fn run_child_and_kill(
    dir: &Path,
    tasks: usize,
    group: u64,
    acks_before_kill: usize,
) -> Option<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage_crash_child"))
        .args([
            dir.to_str().unwrap(),
            &tasks.to_string(),
            &group.to_string(),
            &u64::MAX.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut acked = None;
    let mut acks = 0;
    while acks < acks_before_kill {
        let line = lines
            .next()
            .expect("child exited early")
            .expect("read child stdout");
        let index: u64 = line
            .strip_prefix("ack ")
            .and_then(|s| s.parse().ok())
            .expect("ack line");
        acked = acked.max(Some(index));
        acks += 1;
        assert!(started.elapsed() < ROUND_TIMEOUT, "child too slow");
    }
    child.kill().expect("SIGKILL child"); // std sends SIGKILL on Unix
                                          // Acks written before the kill still count: the child promised them.
    for line in lines.map_while(Result::ok) {
        if let Some(index) = line.strip_prefix("ack ").and_then(|s| s.parse().ok()) {
            acked = acked.max(Some(index));
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child must die by the signal");
    acked
}

fn verify(dir: &Path, acked: u64) -> (u64, u64) {
    let dir = dir.to_path_buf();
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .unwrap()
        .run(async move {
            let (log, report) = Log::open(
                &dir,
                LogOptions {
                    segment_bytes_max: 256 << 10,
                    preallocate: true,
                    cipher: None,
                },
            )
            .await
            .unwrap();
            let last = report.last_index.expect("log not empty");
            assert!(
                last >= acked,
                "acknowledged index {acked} lost: log ends at {last}"
            );
            let records = log.read(0..last + 1).await.unwrap();
            for r in &records {
                assert_eq!(r.term, term_of(r.index), "term of {}", r.index);
                assert_eq!(r.payload, payload(r.index), "payload of {}", r.index);
            }
            assert_eq!(records.len() as u64, last + 1);
            (last, report.truncated_bytes)
        })
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked_max = 0;
    // (tasks, records per group, acks before the kill) per round.
    let rounds = [
        (1, 1, 200),
        (4, 64, 150),
        (3, 1000, 40),
        (2, 7, 300),
        (4, 250, 80),
    ];
    for (round, &(tasks, group, acks)) in rounds.iter().enumerate() {
        let acked = run_child_and_kill(dir.path(), tasks, group, acks).expect("some acks");
        assert!(acked >= acked_max, "acks go forward");
        acked_max = acked;
        let (last, cut) = verify(dir.path(), acked);
        eprintln!("round {round}: acked {acked}, recovered up to {last}, torn bytes cut {cut}");
    }
}
