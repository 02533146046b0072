//! `GET /metrics` on a real node started `--insecure`: plain HTTP, open to
//! anyone (as every route of such a node); each transaction is counted once
//! under its shard and result; the families exported are exactly those
//! `deploy/prometheus/README.md` documents; the Grafana dashboard asks for
//! no other. (A secure node's `/metrics`, by role, is in `roles.rs`;
//! scraped over TLS with a token in `prometheus.rs`, which also runs every
//! panel's query against a real Prometheus.)

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

/// The metric families a PromQL expression names (`settle_…`, the
/// histogram and counter suffixes taken off).
fn families_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("settle_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let mut family = name.as_str();
        for suffix in ["_bucket", "_sum", "_count"] {
            family = family.strip_suffix(suffix).unwrap_or(family);
        }
        out.push(family.strip_suffix("_total").unwrap_or(family).to_string());
    }
    out
}

#[test]
fn every_grafana_panel_queries_only_metrics_the_node_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/settle.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = documented();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let families = families_in(expr);
            assert!(
                !families.is_empty(),
                "{title:?}: {expr} names no settle metric"
            );
            for family in families {
                assert!(
                    exported.contains(&family),
                    "{title:?}: {expr} asks for {family}, which the node does not export"
                );
            }
        }
    }
}
