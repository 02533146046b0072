//! What an operator meets on a one-node start (the README's): the `settle`
//! commands' exit codes and order, and the HTTP API's error bodies and
//! participant views.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use settle_codec::{Client, Currency, ParticipantId, Transaction, TxResult, Window};
use settle_tests::cluster::NO_CYCLES;
use settle_tests::{bin_path, http_request, write_participants, Node};

/// The `settle` CLI against the tests' nodes, which run --insecure.
fn settle(args: &[&str]) -> Output {
    Command::new(bin_path("settle"))
        .args(args)
        .arg("--insecure")
        .output()
        .expect("settle runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn node(dir: &Path, http: bool) -> Node {
    let participants = write_participants(dir, 8).unwrap();
    Node::start_with(&dir.join("data"), Some(&participants), http, 1, &NO_CYCLES).unwrap()
}

#[test]
fn deposit_exits_non_zero_when_the_node_does_not_book_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), false);
    let target = node.listen.to_string();
    let deposit = |amount: &str, extra: &[&str]| {
        let mut args = vec![
            "deposit",
            "--participant",
            "bank_01",
            "--currency",
            "USD",
            "--amount",
            amount,
            "--id",
            "00000000000000000000000000000007",
            "--target",
            &target,
        ];
        args.extend_from_slice(extra);
        settle(&args)
    };
    let first = deposit("100", &[]);
    assert!(first.status.success(), "{}", text(&first));
    let retry = deposit("100", &[]);
    assert!(
        retry.status.success(),
        "a duplicate is booked: {}",
        text(&retry)
    );
    let conflict = deposit("200", &[]);
    assert!(!conflict.status.success(), "{}", text(&conflict));
    assert!(
        text(&conflict).contains("already booked"),
        "{}",
        text(&conflict)
    );
    let json = deposit("300", &["--json"]);
    assert!(!json.status.success(), "--json too: {}", text(&json));
}

fn cycle_ids(output: &Output) -> Vec<u64> {
    assert!(output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cycle ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn cycle_list_shows_the_newest_cycle_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), false);
    let target = node.listen.to_string();
    let mut client = Client::connect(node.listen).unwrap();
    for id in 1..=3u128 {
        let tx = Transaction {
            id,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: 100,
            send: Currency::USD,
            receive: Currency::USD,
            window: Window::T0,
            client_timestamp_us: 1,
        };
        assert_eq!(client.submit(&[tx]).unwrap(), vec![TxResult::Created]);
        let run = settle(&["cycle", "run", "--window", "T0", "--target", &target]);
        assert!(run.status.success(), "{}", text(&run));
    }
    let list = |extra: &[&str]| {
        let mut args = vec!["cycle", "list", "--target", &target];
        args.extend_from_slice(extra);
        cycle_ids(&settle(&args))
    };
    assert_eq!(list(&[]), vec![3, 2, 1]);
    assert_eq!(list(&["--max", "2"]), vec![3, 2], "the newest two");
    assert_eq!(list(&["--oldest-first"]), vec![1, 2, 3]);
    assert_eq!(list(&["--after", "1", "--oldest-first"]), vec![2, 3]);
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[test]
fn every_http_error_body_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), true);
    let http = node.http.unwrap();
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = http_request(http, "POST", "/v1/transactions", Some(&huge)).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(json(&body)["error"].is_string(), "{body}");
    let (status, body) = http_request(http, "GET", "/v1/no-such-thing", None).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].is_string(), "{body}");
    let (status, body) = http_request(http, "DELETE", "/v1/participants", None).unwrap();
    assert_eq!(status, 405, "{body}");
    assert!(json(&body)["error"].is_string(), "{body}");
}

/// bank_01's opening balances as the registry shows them, and as the
/// balances show them.
fn both_views(http: std::net::SocketAddr) -> (Value, Value) {
    let (status, body) = http_request(http, "GET", "/v1/participants", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let registry = json(&body)["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "bank_01")
        .expect("bank_01 is registered")["balances"]
        .clone();
    let (status, body) =
        http_request(http, "GET", "/v1/balances?participant=bank_01", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let mut openings = serde_json::Map::new();
    for b in json(&body)["balances"].as_array().unwrap() {
        if b["opening"].as_u64() != Some(0) {
            openings.insert(b["currency"].as_str().unwrap().into(), b["opening"].clone());
        }
    }
    let registry = Value::Object(
        registry
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    (registry, Value::Object(openings))
}

/// Waits until the two views agree (accounts open shortly after the
/// registry changes); returns them.
fn agreeing_views(http: std::net::SocketAddr) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (registry, balances) = both_views(http);
        if registry == balances {
            return registry;
        }
        assert!(
            Instant::now() < deadline,
            "the views disagree: participants {registry} balances {balances}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn participant_and_balance_views_agree_after_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), true);
    let http = node.http.unwrap();
    let before = agreeing_views(http);
    let usd = before["USD"].as_u64().expect("bank_01 is funded in USD");

    let update = format!(
        r#"{{"id":"bank_01","counterparty_limit_usd":123.0,"balances":{{"USD":{}}}}}"#,
        usd + 1_000
    );
    let (status, body) = http_request(http, "POST", "/v1/participants", Some(&update)).unwrap();
    assert_eq!(
        status, 409,
        "a booked opening balance cannot change: {body}"
    );
    assert_eq!(json(&body)["field"], "balances.USD", "{body}");
    assert!(
        json(&body)["error"].as_str().unwrap().contains("deposit"),
        "{body}"
    );
    assert_eq!(agreeing_views(http), before);

    // The limit alone may change; the balances stay as booked.
    let update = r#"{"id":"bank_01","counterparty_limit_usd":123.0}"#;
    let (status, body) = http_request(http, "POST", "/v1/participants", Some(update)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["participant"]["counterparty_limit_usd"], 123.0);
    assert_eq!(agreeing_views(http), before);
}

#[test]
fn status_works_on_a_node_started_without_peers() {
    let dir = tempfile::tempdir().unwrap();
    // Two cores: the tool must hear from each through the client port.
    let participants = write_participants(dir.path(), 8).unwrap();
    let node =
        Node::start_with(&dir.path().join("data"), Some(&participants), false, 2, &[]).unwrap();
    let target = node.listen.to_string();
    let status = settle(&["status", "--target", &target, "--digest"]);
    assert!(status.status.success(), "{}", text(&status));
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains(&format!("members: 1={target} (1 reachable)")),
        "{table}"
    );
    for group in [
        "group 0 (control): leader 1",
        "group 1 (USD): leader 1",
        "group 4 (JPY): leader 1",
    ] {
        assert!(table.contains(group), "{group:?} in {table}");
    }
    assert!(table.contains("converged: yes"), "{table}");
}
