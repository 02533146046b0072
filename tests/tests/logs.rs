//! Structured logs: a node started `--log-format json` writes only JSON
//! lines on stderr, from its first to its last; a request sent with an
//! `x-request-id` gets it echoed and carried by the lines logged for it;
//! with `--slow-request-ms 0` every request logs its slow-request line with
//! its stages (HTTP and the binary port).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};
use settle_tests::cluster::NO_CYCLES;
use settle_tests::{client, write_participants, Node};

/// Slack for a loaded machine: the lines are written as the requests end.
const LOGGED_MAX: Duration = Duration::from_secs(30);

/// A raw HTTP/1.1 POST with an `x-request-id`: (head, body) of the answer.
fn post_with_id(addr: std::net::SocketAddr, path: &str, body: &str, id: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nx-request-id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}"))
        })
        .collect()
}

/// The slow-request line of the request `request_id`, if among `lines`.
fn slow_line<'a>(lines: &'a [Value], request_id: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["fields"]["message"] == "slow request" && l["span"]["request_id"] == request_id)
}

#[test]
fn json_logs_carry_request_ids_and_slow_requests_list_their_stages() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 4).unwrap();
    let mut flags = vec!["--log-format", "json", "--slow-request-ms", "0"];
    flags.extend(NO_CYCLES);
    let mut node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        2,
        &flags,
    )
    .unwrap();
    let http = node.http.unwrap();

    let body = serde_json::json!({
        "id": format!("{:032x}", 42), "debtor": "bank_01", "creditor": "bank_02",
        "amount": 100, "send": "USD", "receive": "USD", "window": "T1"
    })
    .to_string();
    let (head, answer) = post_with_id(http, "/v1/transactions", &body, "test-req-42");
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{answer}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-request-id: test-req-42"),
        "the id is echoed: {head}"
    );
    let lines = node
        .lines_until(&["slow request", "test-req-42"], LOGGED_MAX)
        .unwrap();
    let lines = json_lines(&lines);
    let slow = slow_line(&lines, "test-req-42").expect("the slow-request line");
    assert_eq!(slow["fields"]["port"], "http");
    let stages = slow["fields"]["stages"].as_str().unwrap();
    for stage in ["authorize=", "validate=", "commit=", "answer=", "respond="] {
        assert!(stages.contains(stage), "{stage} in {stages}");
    }
    assert!(slow["fields"]["total_ms"].as_f64().unwrap() >= 0.0);

    // The binary port: `<core>.<connection>.<frame>` ids, the same line.
    let tx = Transaction {
        id: 43,
        debtor: ParticipantId(1),
        creditor: ParticipantId(2),
        amount: 100,
        send: Currency::USD,
        receive: Currency::USD,
        window: Window::T1,
        client_timestamp_us: 1,
    };
    let results = client(node.listen).unwrap().submit(&[tx]).unwrap();
    assert_eq!(results, vec![TxResult::Created]);
    let lines = node
        .lines_until(&["slow request", "\"port\":\"binary\""], LOGGED_MAX)
        .unwrap();
    let lines = json_lines(&lines);
    let slow = lines
        .iter()
        .find(|l| l["fields"]["message"] == "slow request" && l["fields"]["port"] == "binary")
        .expect("the binary slow-request line");
    let id = slow["span"]["request_id"].as_str().unwrap();
    assert_eq!(id.split('.').count(), 3, "{id}");
    let stages = slow["fields"]["stages"].as_str().unwrap();
    for stage in ["authorize=", "validate=", "commit=", "answer=", "reply="] {
        assert!(stages.contains(stage), "{stage} in {stages}");
    }

    // To the last line.
    assert!(node.terminate().unwrap().success());
    let rest = node.rest_of_lines();
    let rest = json_lines(&rest);
    assert!(
        rest.iter()
            .any(|l| l["fields"]["message"].as_str() == Some("settle: stopping")),
        "{rest:?}"
    );
}
