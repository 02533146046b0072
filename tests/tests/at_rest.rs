//! Encryption at rest, whole node: after a run with an at-rest key, no file
//! of the data directory holds a submitted transaction's id or its amount
//! (searched as the bytes the log would store them as); the same run
//! without a key shows them (the search can find what it looks for). The
//! node restarts from its sealed log with the key, and refuses to start
//! without it.

use std::path::Path;

use settle_codec::{Currency, ParticipantId, Transaction, TxResult, TxStatus, Window};
use settle_tests::cluster::NO_CYCLES;
use settle_tests::{client, write_participants, Node};

const AMOUNT: u64 = 0x0123_4567_89ab;
const KEY: &str = "6b1e9c4f0a2d7e35b8c1f4a6d9e2b7c05a3f8e1d6c4b9a2e7f0d3c6b1a4e8f2d";

fn ids() -> Vec<u128> {
    (0..50u128)
        .map(|i| 0x5e77_13c0_ffee_0000_0000_0000_0000 + i)
        .collect()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Runs a node (with `extra` flags), submits [`ids`], stops it.
fn run(data: &Path, participants: &Path, extra: &[&str]) -> Node {
    let mut args = NO_CYCLES.to_vec();
    args.extend_from_slice(extra);
    let mut node = Node::start_with(data, Some(participants), false, 1, &args).unwrap();
    let usd = Currency::from_code("USD").unwrap();
    let batch: Vec<Transaction> = ids()
        .into_iter()
        .map(|id| Transaction {
            id,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: AMOUNT,
            send: usd,
            receive: usd,
            window: Window::T2,
            client_timestamp_us: 1,
        })
        .collect();
    let results = client(node.listen).unwrap().submit(&batch).unwrap();
    assert!(
        results.iter().all(|r| *r == TxResult::Created),
        "{results:?}"
    );
    // kill -9: what was acknowledged is on disk, sealed or not.
    node.kill9();
    node
}

#[test]
fn a_sealed_data_directory_holds_no_transaction_id_or_amount_and_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 4).unwrap();
    let key_file = dir.path().join("at-rest.keys");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.display().to_string();

    let plain = dir.path().join("plain");
    run(&plain, &participants, &[]);
    let sealed = dir.path().join("sealed");
    run(&sealed, &participants, &["--encryption-key-file", &key_arg]);

    let id = ids()[7].to_le_bytes();
    let amount = AMOUNT.to_le_bytes();
    assert!(
        !files_contain(&plain, &id).is_empty(),
        "the search finds a plaintext id"
    );
    assert!(
        !files_contain(&plain, &amount).is_empty(),
        "the search finds a plaintext amount"
    );
    assert_eq!(
        files_contain(&sealed, &id),
        Vec::<String>::new(),
        "an id in clear"
    );
    assert_eq!(
        files_contain(&sealed, &amount),
        Vec::<String>::new(),
        "an amount in clear"
    );

    // Without its key the node does not start; with it, everything is there.
    let without_key = Node::start_with(&sealed, Some(&participants), false, 1, &NO_CYCLES);
    assert!(without_key.is_err(), "started without the key it needs");
    let mut args = NO_CYCLES.to_vec();
    args.extend_from_slice(&["--encryption-key-file", &key_arg]);
    let node = Node::start_with(&sealed, Some(&participants), false, 1, &args).unwrap();
    let found = client(node.listen).unwrap().lookup(&ids()).unwrap();
    assert!(
        found.iter().all(|item| item.status != TxStatus::NotFound),
        "{found:?}"
    );
}
