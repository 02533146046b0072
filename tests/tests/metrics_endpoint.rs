//! `GET /metrics` on a real node started `--insecure`: plain HTTP, open to
//! anyone (as every route of such a node); each transaction is counted once
//! under its shard and result; the families exported are exactly those
//! `deploy/prometheus/README.md` documents. (A secure node's `/metrics`, by
//! role, is in `roles.rs`; scraped over TLS with a token in `prometheus.rs`.)

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};
use settle_tests::{client, http_request, write_participants, Node};

/// A node publishes its counts every 250 ms; slack for a loaded machine.
const PUBLISHED_MAX: Duration = Duration::from_secs(10);

fn tx(id: u128, debtor: u32, send: &str) -> Transaction {
    Transaction {
        id,
        debtor: ParticipantId(debtor),
        creditor: ParticipantId(debtor + 1),
        amount: 100,
        send: Currency::from_code(send).unwrap(),
        receive: Currency::from_code(send).unwrap(),
        window: Window::T1,
        client_timestamp_us: 1,
    }
}

/// The metric names of the README's table, as their `# TYPE` lines name
/// them (a counter's family has no `_total`).
fn documented() -> BTreeSet<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/README.md");
    std::fs::read_to_string(readme)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `settle_"))
        .map(|l| {
            let name = format!("settle_{}", l.split('`').next().unwrap());
            name.strip_suffix("_total").unwrap_or(&name).to_string()
        })
        .collect()
}

#[test]
fn an_insecure_node_serves_metrics_over_plain_http_counting_each_transaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 8).unwrap();
    let node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        2,
        &["--insecure", "--execution", "simulated"],
    )
    .unwrap();
    let http = node.http.unwrap();

    // 12 created in each of USD and EUR, and 2 refused in USD (an unknown debtor).
    let mut batch: Vec<Transaction> = (0..24)
        .map(|i| tx(1 + i, (i % 4) as u32, ["USD", "EUR"][i as usize % 2]))
        .collect();
    batch.push(tx(100, 9_999, "USD"));
    batch.push(tx(101, 9_999, "USD"));
    let results = client(node.listen).unwrap().submit(&batch).unwrap();
    let created = results.iter().filter(|r| **r == TxResult::Created).count();
    assert_eq!(created, 24, "{results:?}");

    let expected = [
        r#"settle_transactions_total{shard="USD",result="created"} 12"#,
        r#"settle_transactions_total{shard="EUR",result="created"} 12"#,
        r#"settle_transactions_total{shard="USD",result="rejected"} 2"#,
        r#"settle_transaction_latency_ms_count 26"#,
    ];
    let deadline = Instant::now() + PUBLISHED_MAX;
    let text = loop {
        let (status, text) = http_request(http, "GET", "/metrics", None).unwrap();
        assert_eq!(status, 200, "{text}");
        if expected.iter().all(|e| text.lines().any(|l| l == *e)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "counts not published within {PUBLISHED_MAX:?}: want {expected:?} in\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");

    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        exported,
        documented(),
        "exported families (left) and deploy/prometheus/README.md's table (right) differ"
    );
}
