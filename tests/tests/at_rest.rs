//! Encryption at rest, whole node: after a run with an at-rest key, no file
//! of the data directory holds a submitted transaction's id or its amount
//! (searched as the bytes the log would store them as); the same run
//! without a key shows them (the search can find what it looks for). The
//! node restarts from its sealed log with the key, and refuses to start
//! without it.
//!
//! The same for the state store, once settled transactions have left
//! memory for it and it was flushed to table files: no id, participant
//! name or amount in any file (table files, MANIFEST, logs of the store
//! included), and a flipped byte of a sealed store value is refused on read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use settle_codec::{Currency, ParticipantId, Transaction, TxResult, TxStatus, Window};
use settle_store::{Batch, Column, RocksOptions, RocksStore, Store};
use settle_tests::cluster::NO_CYCLES;
use settle_tests::{client, http_request, write_participants, Node};

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
            } else {
                let bytes = std::fs::read(&path).unwrap();
                // Preallocated log segments end in zeros: search what was
                // written (and a needle's length of zeros after it).
                let end = bytes
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |last| (last + 1 + needle.len()).min(bytes.len()));
                if bytes[..end].windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
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

/// Settles in RTGS, snapshots (and so flushes the store) every 8 entries.
const STORE_FLAGS: [&str; 6] = [
    "--snapshot-entries",
    "8",
    "--keep-entries",
    "2",
    "--rtgs-cycle-ms",
    "50",
];

/// Transactions settled into the store.
const SETTLED: u128 = 20;
/// Four bytes, none zero, in little-endian as the store encodes amounts:
/// 20 of them fit bank_01's balance and its limit towards bank_02.
const SETTLED_AMOUNT: u64 = 0x0135_79bd;
/// The middle of every settled id: what a search for ids looks for.
const ID_CORE: [u8; 6] = [0x5e, 0x77, 0x13, 0xc0, 0xff, 0xee];

fn settled_id(n: u128) -> u128 {
    0x5e77_13c0_ffee_0000_0000_0000_0000 + n
}

fn settled_path(n: u128) -> String {
    format!("/v1/transactions/{:032x}", settled_id(n))
}

fn post(node: &Node, id: u128, amount: u64) {
    let body = format!(
        r#"{{"id":"{id:032x}","debtor":"bank_01","creditor":"bank_02","amount":{amount},"send":"USD","receive":"USD","window":"RTGS"}}"#
    );
    let (status, text) =
        http_request(node.http.unwrap(), "POST", "/v1/transactions", Some(&body)).unwrap();
    assert_eq!(status, 201, "{text}");
}

/// Table files of the USD shard's store.
fn shard_tables(data: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(data.join("group-1-usd/store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect()
}

/// Runs a node (with `extra` flags), settles [`SETTLED`] transactions
/// until they are finished (in the store), then submits more until the
/// store has written a table file since: every finished record is then in
/// a table file (flushes are atomic across columns). Stops it.
fn settle_into_store(data: &Path, participants: &Path, extra: &[&str]) -> Node {
    let mut args = STORE_FLAGS.to_vec();
    args.extend_from_slice(extra);
    let mut node = Node::start_with(data, Some(participants), true, 1, &args).unwrap();
    let http = node.http.unwrap();
    for n in 0..SETTLED {
        post(&node, settled_id(n), SETTLED_AMOUNT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..SETTLED {
        loop {
            let (status, text) = http_request(http, "GET", &settled_path(n), None).unwrap();
            if status == 200 && text.contains("SETTLEMENT_CONFIRMED") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{n} not settled: {status} {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let finished = shard_tables(data);
    let mut filler = 0xf111_0000_0000_0000_0000u128;
    while shard_tables(data).is_subset(&finished) {
        assert!(Instant::now() < deadline, "the store never flushed");
        filler += 1;
        post(&node, filler, 1);
    }
    node.terminate().unwrap();
    node
}

fn reversed<const N: usize>(bytes: [u8; N]) -> [u8; N] {
    let mut r = bytes;
    r.reverse();
    r
}

#[test]
fn a_sealed_state_store_holds_no_id_participant_or_amount_and_refuses_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 4).unwrap();
    let key_file = dir.path().join("at-rest.keys");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.display().to_string();
    let sealing = ["--encryption-key-file", key_arg.as_str()];

    let plain = dir.path().join("plain");
    settle_into_store(&plain, &participants, &[]);
    let sealed = dir.path().join("sealed");
    let node = settle_into_store(&sealed, &participants, &sealing);

    let amount = SETTLED_AMOUNT.to_le_bytes();
    let needles: [(&str, &[u8]); 6] = [
        ("an id (big-endian, as store keys had it)", &ID_CORE),
        (
            "an id (little-endian, as records have it)",
            &reversed(ID_CORE),
        ),
        ("an id in hex", b"5e7713c0ffee"),
        ("an amount", &amount[..4]),
        ("a participant name", b"bank_01"),
        ("a participant name", b"bank_02"),
    ];
    // The search finds them in the plain store's table files.
    let plain_tables: Vec<_> = shard_tables(&plain).into_iter().collect();
    let in_tables = |needle: &[u8]| {
        plain_tables.iter().any(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
    };
    assert!(
        in_tables(&ID_CORE),
        "the plain store's table files show ids"
    );
    assert!(in_tables(&reversed(ID_CORE)), "and records' ids");
    // LZ4 cuts literals where a 4-byte match starts ("01 00 00 00" is
    // everywhere), so the amount's low three bytes are what shows.
    assert!(in_tables(&amount[..3]), "and amounts");
    // And the plain log holds them whole (hex ids and names are guards:
    // nothing plain writes them).
    for (what, needle) in [needles[0], needles[1], needles[3]] {
        assert!(!files_contain(&plain, needle).is_empty(), "plain: {what}");
    }
    // Sealed: nowhere in the data directory.
    assert!(!shard_tables(&sealed).is_empty());
    for (what, needle) in needles {
        assert_eq!(
            files_contain(&sealed, needle),
            Vec::<String>::new(),
            "{what} in clear"
        );
    }

    // Flip a byte of every sealed ledger value (through RocksDB, so its
    // own block checksums hold and only the seal can tell).
    let store_dir = sealed.join("group-1-usd/store");
    {
        let raw = RocksStore::open(&store_dir, RocksOptions::default()).unwrap();
        let mut batch = Batch::new();
        raw.scan(Column::Ledger, &mut |k, v| {
            let mut flipped = v.to_vec();
            *flipped.last_mut().expect("a sealed value is never empty") ^= 0x01;
            batch.put(Column::Ledger, k, &flipped).unwrap();
            true
        })
        .unwrap();
        assert!(
            batch.len() >= SETTLED as usize,
            "{} ledger values",
            batch.len()
        );
        raw.write(&batch).unwrap();
        raw.flush().unwrap();
    }
    // At start the node reads its whole store (the snapshot it would send a
    // replica): the flipped value is refused there, naming the store.
    drop(node);
    let refusal = start_refused(&sealed, &participants, &sealing, &dir.path().join("stderr"));
    assert!(
        refusal.contains(&format!(
            "state store {}: a sealed value in column ledger was refused: authentication failed",
            store_dir.display()
        )),
        "{refusal}"
    );
    assert!(!refusal.contains("panicked"), "{refusal}");
}

/// Starts a node that must refuse to start; its standard error.
fn start_refused(data: &Path, participants: &Path, extra: &[&str], stderr: &Path) -> String {
    let mut child = std::process::Command::new(settle_tests::bin_path("settle"))
        .arg("start")
        .arg("--data-dir")
        .arg(data)
        .arg("--participants")
        .arg(participants)
        .args([
            "--listen",
            &settle_tests::free_port().to_string(),
            "--insecure",
        ])
        .args(STORE_FLAGS)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started over a tampered store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    std::fs::read_to_string(stderr).unwrap()
}
