//! Roles, deny by default, over HTTP and the binary port: the whole
//! role × request matrix; a submitter paying from another bank's account is
//! refused; a forged or expired token is refused (401), and tokens change
//! without a restart. A submitter's lookups show only the transactions it
//! is party to: any other is answered exactly like an unknown id.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use settle_codec::{
    ClientError, Currency, ErrorCode, ParticipantId, Transaction, TxStatus, Window,
};
use settle_security::blocking::Stream;
use settle_security::rustls::ClientConfig;
use settle_security::Credentials;
use settle_tests::{bin_path, https_request, identity_tls, write_participants, Node};

/// How a test caller presents itself over HTTP.
#[derive(Clone)]
struct Who {
    name: &'static str,
    tls: Arc<ClientConfig>,
    bearer: Option<String>,
}

fn tx_body(id: u128, debtor: &str, creditor: &str) -> String {
    serde_json::json!({
        "id": format!("{id:032x}"), "debtor": debtor, "creditor": creditor,
        "amount": 100, "send": "USD", "receive": "USD", "window": "RTGS"
    })
    .to_string()
}

/// The HTTP requests of the matrix: (label, method, path, body).
fn requests(
    next_id: &mut u128,
    participant: &str,
    fx: &str,
) -> Vec<(String, &'static str, String, Option<String>)> {
    let mut id = || {
        *next_id += 1;
        *next_id
    };
    vec![
        ("submit as bank_01".into(), "POST", "/v1/transactions".into(), Some(tx_body(id(), "bank_01", "bank_02"))),
        ("submit as bank_02".into(), "POST", "/v1/transactions".into(), Some(tx_body(id(), "bank_02", "bank_01"))),
        ("read a transaction".into(), "GET", format!("/v1/transactions/{:032x}", 1), None),
        ("read balances of bank_01".into(), "GET", "/v1/balances?participant=bank_01".into(), None),
        ("read balances of bank_02".into(), "GET", "/v1/balances?participant=bank_02".into(), None),
        ("read all balances".into(), "GET", "/v1/balances".into(), None),
        ("deposit".into(), "POST", "/v1/deposits".into(), Some(serde_json::json!({
            "id": format!("{:032x}", id()), "participant": "bank_01", "currency": "USD", "amount": 1
        }).to_string())),
        ("read participants".into(), "GET", "/v1/participants".into(), None),
        ("write participants".into(), "POST", "/v1/participants".into(), Some(participant.to_string())),
        ("read fx".into(), "GET", "/v1/fx".into(), None),
        ("write fx".into(), "PUT", "/v1/fx".into(), Some(fx.to_string())),
        ("run a cycle".into(), "POST", "/v1/cycles".into(), Some(r#"{"window":"T2"}"#.into())),
        ("read cycles".into(), "GET", "/v1/cycles".into(), None),
        ("scrape metrics".into(), "GET", "/metrics".into(), None),
    ]
}

/// Allowed (1) or not, per request of [`requests`], for each caller.
const MATRIX: [(&str, [u8; 14]); 5] = [
    ("admin", [1; 14]),
    ("operator", [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
    ("auditor", [0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1]),
    ("bank_01", [1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ("anonymous", [0; 14]),
];

fn read_token(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.token"))).unwrap()
}

fn binary(addr: SocketAddr, tls: &Arc<ClientConfig>) -> settle_codec::Client<Stream> {
    let stream = Stream::connect(addr, Duration::from_secs(5), Some(tls)).unwrap();
    stream
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    settle_codec::Client::over(stream)
}

fn tx(id: u128, debtor: u32, creditor: u32) -> Transaction {
    Transaction {
        id,
        debtor: ParticipantId(debtor),
        creditor: ParticipantId(creditor),
        amount: 100,
        send: Currency::from_code("USD").unwrap(),
        receive: Currency::from_code("USD").unwrap(),
        window: Window::Rtgs,
        client_timestamp_us: 1,
    }
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, ClientError>) -> bool {
    matches!(
        result,
        Err(ClientError::Server {
            code: ErrorCode::Forbidden,
            ..
        })
    )
}

#[test]
fn every_role_gets_exactly_its_requests_over_http_and_the_binary_port() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let output = Command::new(bin_path("settle"))
        .args(["certs", "init"])
        .arg(&tls)
        .args(["--submitters", "bank_01"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let participants = write_participants(dir.path(), 4).unwrap();
    let tls_arg = tls.display().to_string();
    let mut node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        1,
        &["--tls-dir", &tls_arg, "--rtgs-cycle-ms", "0"],
    )
    .unwrap();
    let http = node.http.unwrap();
    let anonymous = Credentials::anonymous(&tls.join("ca.pem"))
        .unwrap()
        .client()
        .unwrap();

    // Bodies that an allowed write takes as a no-op-ish change.
    let admin = identity_tls(&tls, "admin").unwrap();
    let (_, participants_json) =
        https_request(http, &admin, "GET", "/v1/participants", None, None).unwrap();
    let participants_json: serde_json::Value = serde_json::from_str(&participants_json).unwrap();
    let participant = participants_json["participants"][0].to_string();
    let (_, fx) = https_request(http, &admin, "GET", "/v1/fx", None, None).unwrap();

    let callers = [
        Who {
            name: "admin",
            tls: admin.clone(),
            bearer: None,
        },
        // The operator by its token, the others by their certificates.
        Who {
            name: "operator",
            tls: anonymous.clone(),
            bearer: Some(read_token(&tls, "operator")),
        },
        Who {
            name: "auditor",
            tls: identity_tls(&tls, "auditor").unwrap(),
            bearer: None,
        },
        Who {
            name: "bank_01",
            tls: identity_tls(&tls, "bank_01").unwrap(),
            bearer: None,
        },
        Who {
            name: "anonymous",
            tls: anonymous.clone(),
            bearer: None,
        },
    ];
    let mut next_id = 1_000u128;
    for (who, (name, row)) in callers.iter().zip(MATRIX) {
        assert_eq!(who.name, name);
        for ((label, method, path, body), allowed) in requests(&mut next_id, &participant, &fx)
            .into_iter()
            .zip(row)
        {
            let (status, answer) = https_request(
                http,
                &who.tls,
                method,
                &path,
                body.as_deref(),
                who.bearer.as_deref(),
            )
            .unwrap();
            if allowed == 1 {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{name} {label}: {status} {answer}"
                );
            } else {
                let expected = if name == "anonymous" { 401 } else { 403 };
                assert_eq!(status, expected, "{name} {label}: {answer}");
                assert!(answer.contains("error"), "{name} {label}: {answer}");
            }
        }
    }

    // A forged token, and an expired one, are refused; a token added to
    // tokens.toml works without a restart.
    let (status, _) = https_request(
        http,
        &anonymous,
        "GET",
        "/v1/cycles",
        None,
        Some("stl_forged"),
    )
    .unwrap();
    assert_eq!(status, 401);
    let fresh = "stl_0123456789abcdef";
    let expired = "stl_expired_token";
    let mut tokens = std::fs::read_to_string(tls.join("tokens.toml")).unwrap();
    tokens.push_str(&format!(
        "\n[[token]]\nname = \"late\"\nrole = \"auditor\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"old\"\nrole = \"admin\"\nsha256 = \"{}\"\nexpires_unix = \"1000\"\n",
        settle_security::tokens::hash(fresh),
        settle_security::tokens::hash(expired),
    ));
    std::fs::write(tls.join("tokens.toml"), tokens).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) =
            https_request(http, &anonymous, "GET", "/v1/cycles", None, Some(fresh)).unwrap();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new token never worked: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) =
        https_request(http, &anonymous, "GET", "/v1/cycles", None, Some(expired)).unwrap();
    assert_eq!(status, 401, "an expired token");

    // The binary port: identity by client certificate.
    let mut bank = binary(node.listen, &identity_tls(&tls, "bank_01").unwrap());
    assert!(
        bank.submit(&[tx(1, 1, 2)]).is_ok(),
        "bank_01 pays from its own account"
    );
    assert!(
        forbidden(bank.submit(&[tx(2, 2, 1)])),
        "bank_01 pays from bank_02's"
    );
    assert!(
        forbidden(bank.submit(&[tx(3, 1, 2), tx(4, 2, 1)])),
        "one foreign debtor refuses the batch"
    );
    assert!(bank.lookup(&[1]).is_ok());
    let mut auditor = binary(node.listen, &identity_tls(&tls, "auditor").unwrap());
    assert!(forbidden(auditor.submit(&[tx(5, 1, 2)])));
    assert!(auditor.lookup(&[1]).is_ok());
    let mut admin_client = binary(node.listen, &admin);
    assert!(admin_client.submit(&[tx(6, 2, 3)]).is_ok());
    let mut nobody = binary(node.listen, &anonymous);
    assert!(forbidden(nobody.lookup(&[1])));
    assert!(forbidden(nobody.submit(&[tx(7, 1, 2)])));

    ownership_filters_a_submitters_lookups(&mut node, &tls);

    // Control requests over the binary port, through the CLI.
    let cli = |identity: &str, args: &[&str]| {
        Command::new(bin_path("settle"))
            .args(args)
            .args([
                "--target",
                &node.listen.to_string(),
                "--tls-dir",
                &tls_arg,
                "--identity",
                identity,
            ])
            .output()
            .unwrap()
    };
    let deposit = [
        "deposit",
        "--participant",
        "bank_01",
        "--currency",
        "USD",
        "--amount",
        "5",
    ];
    for (identity, args, allowed) in [
        ("operator", &deposit[..], true),
        ("auditor", &deposit[..], false),
        ("bank_01", &deposit[..], false),
        ("auditor", &["cycle", "list"][..], true),
        ("bank_01", &["cycle", "list"][..], false),
        ("bank_01", &["cycle", "run", "--window", "T2"][..], false),
        ("operator", &["cycle", "run", "--window", "T2"][..], true),
        (
            "bank_01",
            &["balances", "--participant", "bank_01"][..],
            true,
        ),
        ("bank_01", &["balances"][..], false),
        ("auditor", &["balances"][..], true),
        ("auditor", &["status"][..], true),
        ("bank_01", &["status"][..], false),
    ] {
        let output = cli(identity, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if allowed {
            assert!(output.status.success(), "{identity} {args:?}: {text}");
        } else {
            assert!(!output.status.success(), "{identity} {args:?}: {text}");
            assert!(
                text.contains("Forbidden") || text.contains("may not"),
                "{identity} {args:?}: {text}"
            );
        }
    }
}

/// bank_01 sees what it pays and what it is paid, over HTTP (status, audit
/// trail) and the binary port; another bank's payment is answered exactly
/// like an id nobody used (404 with the same body, status NotFound with no
/// events), a conflict on its id shows no original, and the refusal is
/// logged. The auditor sees all of them.
fn ownership_filters_a_submitters_lookups(node: &mut Node, tls: &Path) {
    let http = node.http.unwrap();
    let admin = identity_tls(tls, "admin").unwrap();
    let bank = identity_tls(tls, "bank_01").unwrap();
    let auditor = identity_tls(tls, "auditor").unwrap();
    let (foreign, own, incoming, missing) = (0x7001u128, 0x7002u128, 0x7003u128, 0x7004u128);
    for (who, id, debtor, creditor) in [
        (&admin, foreign, "bank_02", "bank_03"),
        (&bank, own, "bank_01", "bank_02"),
        (&admin, incoming, "bank_02", "bank_01"),
    ] {
        let body = tx_body(id, debtor, creditor);
        let (status, answer) =
            https_request(http, who, "POST", "/v1/transactions", Some(&body), None).unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    let get = |who: &Arc<ClientConfig>, path: String| {
        https_request(http, who, "GET", &path, None, None).unwrap()
    };
    for suffix in ["", "/events"] {
        let path = |id: u128| format!("/v1/transactions/{id:032x}{suffix}");
        let (status, unknown) = get(&bank, path(missing));
        assert_eq!(status, 404, "{unknown}");
        assert_eq!(
            get(&bank, path(foreign)),
            (404, unknown.clone()),
            "another bank's payment looks unknown"
        );
        for id in [own, incoming] {
            let (status, answer) = get(&bank, path(id));
            assert_eq!(status, 200, "bank_01 reads {id:x}{suffix}: {answer}");
        }
        for id in [foreign, own, incoming] {
            let (status, answer) = get(&auditor, path(id));
            assert_eq!(status, 200, "the auditor reads {id:x}{suffix}: {answer}");
        }
    }
    node.wait_for_line("no party to", Duration::from_secs(10))
        .expect("the hidden lookup is logged");
    // A conflict on another bank's id says the id is taken, and no more.
    let body = tx_body(foreign, "bank_01", "bank_02");
    let (status, answer) =
        https_request(http, &bank, "POST", "/v1/transactions", Some(&body), None).unwrap();
    assert_eq!(status, 409, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["original"]["events"],
        serde_json::json!([]),
        "{answer}"
    );
    // The binary port: the same answers.
    let mut client = binary(node.listen, &bank);
    let items = client.lookup(&[foreign, own, incoming, missing]).unwrap();
    let found: Vec<bool> = items
        .iter()
        .map(|i| i.status != TxStatus::NotFound)
        .collect();
    assert_eq!(found, [false, true, true, false]);
    assert!(items[0].events.is_empty() && items[3].events.is_empty());
    let mut auditor_client = binary(node.listen, &auditor);
    let items = auditor_client.lookup(&[foreign, own, incoming]).unwrap();
    assert!(
        items.iter().all(|i| i.status != TxStatus::NotFound),
        "{items:?}"
    );
}
