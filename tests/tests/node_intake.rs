//! A real `settle` process: submit, restart, idempotency, bad input.

use std::time::Duration;

use settle_codec::{
    Client, ClientError, Currency, FrameHeader, MessageKind, ParticipantId, RejectReason,
    SubmitRequest, Transaction, TxEventKind, TxResult, TxStatus, Window, HEADER_BYTES,
};
use settle_tests::{http_request, raw_exchange, write_participants, Node};

fn tx(id: u128, debtor: u32, creditor: u32, amount: u64, send: &str, receive: &str) -> Transaction {
    Transaction {
        id,
        debtor: ParticipantId(debtor),
        creditor: ParticipantId(creditor),
        amount,
        send: Currency::from_code(send).unwrap(),
        receive: Currency::from_code(receive).unwrap(),
        window: Window::T1,
        client_timestamp_us: 1,
    }
}

fn batch(first_id: u128, count: usize) -> Vec<Transaction> {
    let currencies = ["USD", "EUR", "GBP", "JPY"];
    (0..count)
        .map(|i| {
            let c = currencies[i % 4];
            tx(
                first_id + i as u128,
                (i % 8) as u32,
                ((i + 3) % 8) as u32,
                100 + i as u64,
                c,
                currencies[(i / 4) % 4],
            )
        })
        .collect()
}

fn started(dir: &std::path::Path, http: bool) -> Node {
    let participants = write_participants(dir, 8).unwrap();
    Node::start(&dir.join("data"), Some(&participants), http, 2).unwrap()
}

#[test]
fn transactions_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), false);
    let txs = batch(1_000, 200);
    let mut client = Client::connect(node.listen).unwrap();
    let results = client.submit(&txs).unwrap();
    assert!(
        results.iter().all(|r| *r == TxResult::Created),
        "{results:?}"
    );
    drop(client);

    assert!(
        node.terminate().unwrap().success(),
        "SIGTERM stops the node cleanly"
    );
    node.restart().unwrap();

    let mut client = Client::connect(node.listen).unwrap();
    let ids: Vec<u128> = txs.iter().map(|t| t.id).collect();
    let items = client.lookup(&ids).unwrap();
    for (item, id) in items.iter().zip(&ids) {
        assert_eq!(item.id, *id);
        assert_eq!(item.status, TxStatus::Pending, "{id} after restart");
        assert_eq!(item.events.len(), 1);
        assert_eq!(item.events[0].kind, TxEventKind::TransactionSubmitted);
        assert!(item.events[0].entry_index > 0);
    }
    let unknown = client.lookup(&[7]).unwrap();
    assert_eq!(unknown[0].status, TxStatus::NotFound);
}

#[test]
fn same_batch_twice_is_duplicate_and_reused_id_is_conflict_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), false);
    let txs = batch(5_000, 64);
    let mut client = Client::connect(node.listen).unwrap();
    assert!(client
        .submit(&txs)
        .unwrap()
        .iter()
        .all(|r| *r == TxResult::Created));
    assert!(client
        .submit(&txs)
        .unwrap()
        .iter()
        .all(|r| *r == TxResult::Duplicate));
    let mut changed = txs[3];
    changed.amount += 1;
    assert_eq!(client.submit(&[changed]).unwrap(), vec![TxResult::Conflict]);
    drop(client);

    node.kill9();
    node.restart().unwrap();
    let mut client = Client::connect(node.listen).unwrap();
    assert!(client
        .submit(&txs)
        .unwrap()
        .iter()
        .all(|r| *r == TxResult::Duplicate));
    assert_eq!(client.submit(&[changed]).unwrap(), vec![TxResult::Conflict]);
    let item = &client.lookup(&[txs[0].id]).unwrap()[0];
    let kinds: Vec<_> = item.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            TxEventKind::TransactionSubmitted,
            TxEventKind::TransactionDeduped,
            TxEventKind::TransactionDeduped
        ]
    );
}

#[test]
fn invalid_transactions_are_rejected_per_field_and_the_rest_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path(), false);
    let mut client = Client::connect(node.listen).unwrap();
    let good = tx(9_000, 1, 2, 50, "EUR", "USD");
    let cases = vec![
        good,
        Transaction {
            id: 9_001,
            debtor: ParticipantId(77),
            ..good
        },
        Transaction {
            id: 9_002,
            creditor: ParticipantId(1),
            ..good
        },
        Transaction {
            id: 9_003,
            amount: 0,
            ..good
        },
        Transaction {
            id: 9_004,
            send: Currency::from_code("CHF").unwrap(),
            ..good
        },
        Transaction {
            id: 9_005,
            receive: Currency(1),
            ..good
        },
    ];
    let results = client.submit(&cases).unwrap();
    use settle_codec::Field;
    assert_eq!(
        results,
        vec![
            TxResult::Created,
            TxResult::Rejected {
                reason: RejectReason::UnknownDebtor,
                field: Field::Debtor
            },
            TxResult::Rejected {
                reason: RejectReason::SameParty,
                field: Field::Creditor
            },
            TxResult::Rejected {
                reason: RejectReason::ZeroAmount,
                field: Field::Amount
            },
            TxResult::Rejected {
                reason: RejectReason::UnknownCurrency,
                field: Field::Send
            },
            TxResult::Rejected {
                reason: RejectReason::UnknownCurrency,
                field: Field::Receive
            },
        ]
    );
    let items = client.lookup(&[9_001, 9_003]).unwrap();
    assert!(
        items.iter().all(|i| i.status == TxStatus::NotFound),
        "nothing rejected is logged"
    );
}

/// Builds a frame whose header and checksum are right but whose body breaks
/// a limit the encoder would refuse (more than 8,192 transactions).
fn oversize_batch_frame() -> Vec<u8> {
    let txs = batch(1, settle_codec::MAX_BATCH_TRANSACTIONS + 1);
    let body = settle_codec::rkyv::to_bytes::<settle_codec::rkyv::rancor::Error>(&SubmitRequest {
        transactions: txs,
    })
    .unwrap();
    let mut padded = body.to_vec();
    padded.resize(settle_codec::padded_len(body.len()), 0);
    let header = FrameHeader {
        kind: MessageKind::SubmitRequest,
        request_id: 42,
        body_len: body.len() as u32,
        body_checksum: crc32c::crc32c(&padded),
    };
    let mut frame = header.to_bytes().to_vec();
    frame.extend_from_slice(&padded);
    frame
}

#[test]
fn malformed_and_oversize_frames_get_clear_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path(), false);

    // Garbage: not a settle frame. The node answers with an error frame, then closes.
    let answer = raw_exchange(
        node.listen,
        b"GET / HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(answer.len() >= HEADER_BYTES, "an error frame comes back");
    let header = FrameHeader::parse(answer[..HEADER_BYTES].try_into().unwrap()).unwrap();
    assert_eq!(header.kind, MessageKind::ErrorResponse);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("bad magic"), "{text}");

    // Oversize batch: a well-formed frame over the limit: error, connection stays usable.
    let frame = oversize_batch_frame();
    assert!(frame.len() <= settle_codec::MAX_FRAME_BYTES);
    let answer = raw_exchange(node.listen, &frame, Duration::from_secs(2)).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("too many transactions"), "{text}");

    // A truncated frame followed by EOF: nothing accepted, nothing crashes.
    let _ = raw_exchange(node.listen, &frame[..100], Duration::from_millis(500)).unwrap();

    // Still serving.
    let mut client = Client::connect(node.listen).unwrap();
    assert_eq!(
        client.submit(&[tx(77, 1, 2, 5, "USD", "USD")]).unwrap(),
        vec![TxResult::Created]
    );
    match client.submit(&batch(100, settle_codec::MAX_BATCH_TRANSACTIONS + 1)) {
        Err(ClientError::Encode(_)) => {}
        other => panic!("the client refuses to send an oversize batch: {other:?}"),
    }
}

#[test]
fn http_json_created_duplicate_conflict_and_field_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = started(dir.path(), true);
    let http = node.http.unwrap();
    let body = r#"{"id":"0000000000000000000000000000007b","debtor":"bank_01","creditor":"bank_02","amount":2500,"send":"EUR","receive":"GBP","window":"RTGS"}"#;
    let (status, text) = http_request(http, "POST", "/v1/transactions", Some(body)).unwrap();
    assert_eq!(status, 201, "{text}");
    let (status, _) = http_request(http, "POST", "/v1/transactions", Some(body)).unwrap();
    assert_eq!(status, 200, "an identical retry is not an error");
    let conflicting = body.replace("2500", "2600");
    let (status, text) =
        http_request(http, "POST", "/v1/transactions", Some(&conflicting)).unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("original"), "{text}");

    let (status, text) = http_request(
        http,
        "GET",
        "/v1/transactions/0000000000000000000000000000007b",
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("TRANSACTION_SUBMITTED") && text.contains("TRANSACTION_DEDUPED"),
        "{text}"
    );
    let (status, _) = http_request(
        http,
        "GET",
        "/v1/transactions/000000000000000000000000000003e7",
        None,
    )
    .unwrap();
    assert_eq!(status, 404);

    for (broken, field) in [
        (body.replace("2500", "-5"), "amount"),
        (body.replace("2500", "0"), "amount"),
        (body.replace("\"EUR\"", "\"XXX\""), "send"),
        (body.replace("bank_01", "acme"), "debtor"),
        (body.replace("RTGS", "T9"), "window"),
        // One spelling per id: decimal, upper case, hyphenated are not ids.
        (
            body.replace("0000000000000000000000000000007b", "123"),
            "id",
        ),
        (
            body.replace(
                "0000000000000000000000000000007b",
                "0000000000000000000000000000007B",
            ),
            "id",
        ),
        ("{not json".to_string(), "transaction"),
        ("[]".to_string(), "transaction"),
    ] {
        let (status, text) = http_request(http, "POST", "/v1/transactions", Some(&broken)).unwrap();
        assert_eq!(status, 422, "{broken} -> {text}");
        assert!(
            text.contains(&format!("\"field\":\"{field}\"")),
            "{broken} -> {text}"
        );
    }
    // The node still serves.
    let (status, _) = http_request(
        http,
        "POST",
        "/v1/transactions",
        Some(&body.replace("7b\"", "7c\"")),
    )
    .unwrap();
    assert_eq!(status, 201);

    // Participants: add one, then it can pay.
    let (status, text) = http_request(
        http,
        "POST",
        "/v1/participants",
        Some(r#"{"id":"bank_40","counterparty_limit_usd":1000000,"balances":{"USD":500}}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let new_payer = body.replace("7b\"", "7d\"").replace("bank_01", "bank_40");
    let (status, text) = http_request(http, "POST", "/v1/transactions", Some(&new_payer)).unwrap();
    assert_eq!(status, 201, "{text}");
    let (status, text) = http_request(http, "GET", "/v1/participants", None).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("bank_40"), "{text}");
}

#[test]
fn one_id_books_once_whatever_currency_it_names_even_racing_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), true);
    let http = node.http.unwrap();
    // Issue 13: id 7777 in EUR, then USD, then GBP, were each 201.
    let body = |send: &str| {
        format!(
            r#"{{"id":"00000000000000000000000000001e61","debtor":"bank_01","creditor":"bank_02","amount":100,"send":"{send}","receive":"EUR","window":"RTGS"}}"#
        )
    };
    let post = |b: &str| http_request(http, "POST", "/v1/transactions", Some(b)).unwrap();
    assert_eq!(post(&body("EUR")).0, 201);
    for other in ["USD", "GBP", "JPY"] {
        let (status, text) = post(&body(other));
        assert_eq!(status, 409, "{other}: {text}");
    }
    assert_eq!(post(&body("EUR")).0, 200, "the first body's retry");

    // Four clients race the same 500 ids, each in its own currency: every
    // id is created exactly once, whichever currency won it.
    let currencies = ["USD", "EUR", "GBP", "JPY"];
    let listen = node.listen;
    let racers: Vec<_> = currencies
        .iter()
        .map(|&c| {
            std::thread::spawn(move || {
                let txs: Vec<Transaction> = (0..500u128)
                    .map(|i| tx(50_000 + i, 1, 2, 10 + i as u64, c, "USD"))
                    .collect();
                let mut client = Client::connect(listen).unwrap();
                client.submit(&txs).unwrap()
            })
        })
        .collect();
    let answers: Vec<Vec<TxResult>> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    for i in 0..500 {
        let created = answers.iter().filter(|a| a[i] == TxResult::Created).count();
        let conflicts = answers
            .iter()
            .filter(|a| a[i] == TxResult::Conflict)
            .count();
        assert_eq!((created, conflicts), (1, 3), "id {}", 50_000 + i);
    }

    // Deposit ids too: the same id in USD, then in EUR.
    let deposit = |currency: &str| {
        format!(
            r#"{{"deposit_id":"000000000000000000000000000000d1","participant":"bank_01","currency":"{currency}","amount":5}}"#
        )
    };
    let fund = |b: &str| http_request(http, "POST", "/v1/deposits", Some(b)).unwrap();
    assert_eq!(fund(&deposit("USD")).0, 201);
    assert_eq!(fund(&deposit("EUR")).0, 409, "credited twice before");
    assert_eq!(fund(&deposit("USD")).0, 200);

    // The claims are durable: after a restart every id is still taken.
    assert!(node.terminate().unwrap().success());
    node.restart().unwrap();
    let http = node.http.unwrap();
    let (status, text) =
        http_request(http, "POST", "/v1/transactions", Some(&body("USD"))).unwrap();
    assert_eq!(status, 409, "{text}");
    let mut client = Client::connect(node.listen).unwrap();
    for c in currencies {
        let txs: Vec<Transaction> = (0..500u128)
            .map(|i| tx(50_000 + i, 1, 2, 10 + i as u64, c, "USD"))
            .collect();
        let results = client.submit(&txs).unwrap();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, TxResult::Duplicate | TxResult::Conflict)),
            "{c}: {results:?}"
        );
    }
    let items = client
        .lookup(&(0..500u128).map(|i| 50_000 + i).collect::<Vec<_>>())
        .unwrap();
    for item in items {
        let submitted = item
            .events
            .iter()
            .filter(|e| e.kind == TxEventKind::TransactionSubmitted)
            .count();
        assert_eq!(submitted, 1, "{:032x} is booked once", item.id);
    }
    let (status, text) = http_request(http, "POST", "/v1/deposits", Some(&deposit("GBP"))).unwrap();
    assert_eq!(status, 409, "{text}");
}
