//! The shard state on disk (`node/src/shard/cold.rs`): finished transactions
//! leave memory for the state store and keep answering for their ids and
//! audit trails across kill -9, restarts and snapshots; a damaged store file
//! is refused at start with an error that names it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settle_tests::{bin_path, free_port, http_request, write_participants, Node};

/// Snapshot often, so that the store is flushed and the log purged many
/// times during a short test.
const FLAGS: &[&str] = &[
    "--snapshot-entries",
    "8",
    "--keep-entries",
    "2",
    "--rtgs-cycle-ms",
    "50",
    // The small payments here cost more to wire than to wait, so an
    // optimiser that answers in time defers them until their deadline (a
    // debug build that misses its budget gets the fallback, which settles at
    // once): a short deadline settles them soon either way.
    "--rtgs-max-wait",
    "2s",
];

fn body(n: u32, amount: u64) -> String {
    format!(
        r#"{{"id":"{:032x}","debtor":"bank_01","creditor":"bank_02","amount":{amount},"send":"USD","receive":"USD","window":"RTGS"}}"#,
        0x5700 + n
    )
}

fn path_of(n: u32) -> String {
    format!("/v1/transactions/{:032x}", 0x5700 + n)
}

/// Posts transaction `n` with `amount`; its HTTP status and body.
fn post(http: std::net::SocketAddr, n: u32, amount: u64) -> (u16, String) {
    http_request(http, "POST", "/v1/transactions", Some(&body(n, amount))).unwrap()
}

/// Posts transactions `ns`, each with `amount(n)`; every one must be created.
fn post_all(http: std::net::SocketAddr, ns: std::ops::Range<u32>, amount: impl Fn(u32) -> u64) {
    for n in ns {
        let (status, text) = post(http, n, amount(n));
        assert_eq!(status, 201, "transaction {n}: {text}");
    }
}

/// Waits until every transaction's trail shows it settled and confirmed.
fn wait_settled(node: &Node, count: u32) {
    let http = node.http.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..count {
        loop {
            let (status, text) = http_request(http, "GET", &path_of(n), None).unwrap();
            if status == 200
                && text.contains("\"settled\"")
                && text.contains("SETTLEMENT_CONFIRMED")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "transaction {n} not settled: {status} {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn finished_transactions_keep_answering_from_the_store_across_kill9_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 8).unwrap();
    let mut node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        1,
        FLAGS,
    )
    .unwrap();
    let http = node.http.unwrap();
    let count = 40;
    post_all(http, 0..count, |n| 100 + u64::from(n));
    wait_settled(&node, count);
    // More entries after they settled: snapshots (store flushed), log purged.
    post_all(http, count..count + 40, |_| 1);
    node.kill9();
    node.restart().unwrap();
    let http = node.http.unwrap();
    for n in 0..count {
        // The id is still taken: the same body is a duplicate, another a conflict.
        let (status, text) = post(http, n, 100 + u64::from(n));
        assert_eq!(status, 200, "transaction {n} after restart: {text}");
        let (status, text) = post(http, n, 7);
        assert_eq!(status, 409, "transaction {n} after restart: {text}");
        // Its whole trail, from the store.
        let (status, text) = http_request(http, "GET", &path_of(n), None).unwrap();
        assert_eq!(status, 200, "{text}");
        for event in [
            "TRANSACTION_SUBMITTED",
            "BATCH_OPTIMIZED",
            "CONSENSUS_ACHIEVED",
            "SETTLEMENT_CONFIRMED",
        ] {
            assert!(text.contains(event), "transaction {n} lost {event}: {text}");
        }
    }
    wait_settled(&node, count + 40);
}

/// Table files of every state store under `data`.
fn table_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![data.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sst") {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_damaged_store_file_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let participants = write_participants(dir.path(), 8).unwrap();
    let mut node = Node::start_with(&data, Some(&participants), true, 1, FLAGS).unwrap();
    let http = node.http.unwrap();
    post_all(http, 0..30, |_| 5);
    wait_settled(&node, 30);
    post_all(http, 30..60, |_| 5);
    node.terminate().unwrap();
    let files = table_files(&data);
    assert!(!files.is_empty(), "the stores were flushed");
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        // Inside the first data block: every read of it fails its checksum.
        let at = bytes.len().min(200) / 2;
        for b in &mut bytes[at..at + 16] {
            *b ^= 0xa5;
        }
        std::fs::write(file, bytes).unwrap();
    }
    let output = Command::new(bin_path("settle"))
        .args(["start", "--data-dir"])
        .arg(&data)
        .args(["--listen", &free_port().to_string(), "--cores", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a damaged store is not served: {stderr}"
    );
    assert!(stderr.contains("corrupt"), "says what is wrong: {stderr}");
    assert!(stderr.contains(".sst"), "names the file: {stderr}");
}
