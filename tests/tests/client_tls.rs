//! The client ports (binary frames and HTTP) speak TLS 1.3 only: a real TLS
//! client (Debian's `openssl s_client`) completes a TLS 1.3 handshake with
//! each and verifies the node's certificate against the cluster CA; TLS 1.2
//! and plaintext are refused, plaintext with an error that says why; SIGHUP
//! swaps in a new certificate without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use settle_codec::{FrameReader, MessageKind, ReadStatus};
use settle_tests::{certs_init, http_request, raw_exchange, Node};

/// `openssl s_client` against `addr` with `version` (`-tls1_3`, `-tls1_2`):
/// its exit status and everything it printed.
fn s_client(addr: SocketAddr, version: &str, ca: &Path) -> (bool, String) {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            version,
            "-CAfile",
        ])
        .arg(ca)
        .args(["-verify_return_error", "-servername", "settle-node"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (.ci/run installs it: apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn client_ports_speak_tls_1_3_only_and_tell_plaintext_clients_why_they_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    certs_init(&tls, 1).unwrap();
    let tls_arg = tls.display().to_string();
    let node = Node::start_with(
        &dir.path().join("data"),
        None,
        true,
        1,
        &["--tls-dir", &tls_arg],
    )
    .unwrap();
    let ca = tls.join("ca.pem");
    let http = node.http.unwrap();
    for (port, addr) in [("binary", node.listen), ("http", http)] {
        let (ok, text) = s_client(addr, "-tls1_3", &ca);
        assert!(ok, "{port}: TLS 1.3 handshake failed:\n{text}");
        assert!(
            text.contains("TLSv1.3") && text.contains("Verify return code: 0 (ok)"),
            "{port}: {text}"
        );
        let (ok, text) = s_client(addr, "-tls1_2", &ca);
        assert!(!ok, "{port}: a TLS 1.2 handshake succeeded:\n{text}");
        assert!(
            text.contains("alert protocol version"),
            "{port}: TLS 1.2 refused without a protocol-version alert:\n{text}"
        );
    }

    // Plaintext HTTP: 400 with a JSON body naming TLS.
    let (status, body) = http_request(http, "GET", "/v1/participants", None).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TLS 1.3 only"), "{body}");

    // A plaintext binary frame: one error frame naming TLS, then closed.
    let mut buf = settle_codec::FrameBuf::new();
    buf.push(1, &settle_codec::LookupRequest { ids: vec![1] })
        .unwrap();
    let answer = raw_exchange(node.listen, buf.as_slice(), Duration::from_secs(5)).unwrap();
    let mut reader = FrameReader::new();
    reader.spare()[..answer.len()].copy_from_slice(&answer);
    reader.commit(answer.len());
    match reader.next_frame().unwrap() {
        ReadStatus::Frame(frame) => {
            assert_eq!(frame.kind(), MessageKind::ErrorResponse);
            let text = String::from_utf8_lossy(frame.body()).into_owned();
            assert!(text.contains("TLS 1.3 only"), "{text}");
        }
        ReadStatus::NeedMore(_) => panic!("no whole error frame: {answer:?}"),
    }

    // SIGHUP reloads the node's certificate: put another one in place (of
    // another CA, so the switch shows) and every port presents it.
    let other = dir.path().join("other");
    certs_init(&other, 1).unwrap();
    for file in ["node-1.pem", "node-1.key"] {
        std::fs::copy(other.join(file), tls.join(file)).unwrap();
    }
    // SAFETY: a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(node.child.id() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let other_ca = other.join("ca.pem");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (port, addr) in [("binary", node.listen), ("http", http)] {
        loop {
            let (ok, text) = s_client(addr, "-tls1_3", &other_ca);
            if ok && text.contains("Verify return code: 0 (ok)") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{port}: the reloaded certificate is not served:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (ok, _) = s_client(addr, "-tls1_3", &ca);
        assert!(!ok, "{port}: still the old certificate");
    }
}
