//! Clusters of 5 and 7 members form, serve through every member, and every
//! replica ends with the same state.

use std::sync::Mutex;
use std::time::Duration;

use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};
use settle_tests::cluster::{append_acked, Cluster, ClusterOptions};

/// One cluster at a time: they share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn batch(first_id: u128, count: usize) -> Vec<Transaction> {
    let currencies = ["USD", "EUR", "GBP", "JPY"];
    (0..count)
        .map(|i| Transaction {
            id: first_id + i as u128,
            debtor: ParticipantId(i as u32 % 8),
            creditor: ParticipantId((i as u32 + 1) % 8),
            amount: 10 + i as u64,
            send: Currency::from_code(currencies[i % 4]).unwrap(),
            receive: Currency::from_code(currencies[(i + 1) % 4]).unwrap(),
            window: Window::T2,
            client_timestamp_us: 1,
        })
        .collect()
}

fn serve_through_every_member(nodes: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        nodes,
        cores: 1,
        participants: 8,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(dir.path(), options).unwrap();
    let acked = dir.path().join("acked.txt");
    for (n, id) in cluster.ids().into_iter().enumerate() {
        let txs = batch(1_000 * (n as u128 + 1), 200);
        let mut client = settle_tests::client(cluster.listen(id)).unwrap();
        let results = client.submit(&txs).unwrap();
        // Fresh ids: Created, or Duplicate when the forwarder resent a
        // sub-batch whose first answer was late (a busy box) and found it
        // committed: an acknowledgement too (see node/src/cluster/forward.rs).
        // Exactly-once is checked below, through every member.
        assert!(
            results
                .iter()
                .all(|r| matches!(r, TxResult::Created | TxResult::Duplicate)),
            "through node {id}: {results:?}"
        );
        append_acked(&acked, &txs.iter().map(|t| t.id).collect::<Vec<_>>()).unwrap();
    }
    let status = cluster.wait_converged(1, Duration::from_secs(60)).unwrap();
    eprintln!("{status}");
    assert_eq!(
        status.matches("  node ").count(),
        nodes * 5,
        "every member reports every group (control + 4 shards)"
    );
    cluster.verify_everywhere(&acked).unwrap();
}

#[test]
fn five_members() {
    serve_through_every_member(5);
}

#[test]
fn seven_members() {
    serve_through_every_member(7);
}
