//! Secure by default: the README's plain `settle start` makes its own CA,
//! node certificate and admin credentials in its data directory, says where,
//! and serves only TLS; the CLI finds them with `--data-dir`. A cluster
//! member without credentials refuses to start and says what to pass;
//! `--insecure` warns on every start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use settle_tests::{bin_path, free_port};

/// A `settle start` with exactly `args`; its stderr lines until it listens.
fn start(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(bin_path("settle"))
        .arg("start")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end: a closed pipe would fail the node's next log line.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  [node] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let done = line.contains("settle: listening on");
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    (child, lines)
}

fn settle(args: &[&str]) -> Output {
    Command::new(bin_path("settle"))
        .args(args)
        .env_remove("SETTLE_TLS_DIR")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn deposit(target: &str, id: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "deposit",
        "--participant",
        "bank_01",
        "--currency",
        "USD",
        "--amount",
        "100",
        "--id",
        id,
        "--target",
        target,
    ];
    args.extend_from_slice(extra);
    settle(&args)
}

#[test]
fn a_plain_start_bootstraps_its_credentials_and_the_cli_finds_them_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let listen = free_port().to_string();
    let participants = settle_tests::write_participants(dir.path(), 4).unwrap();
    let participants_arg = participants.display().to_string();
    let args = [
        "--data-dir",
        &data_arg,
        "--listen",
        &listen,
        "--cores",
        "1",
        "--participants",
        &participants_arg,
    ];
    let (mut node, lines) = start(&args);
    let log = lines.join("\n");
    assert!(log.contains("settle: listening on"), "{log}");
    assert!(
        log.contains("first start: made a CA") && log.contains(&format!("{data_arg}/tls")),
        "says where its credentials are:\n{log}"
    );
    let ca = std::fs::read(data.join("tls/ca.pem")).unwrap();

    let none = deposit(&listen, "00000000000000000000000000000001", &[]);
    assert!(!none.status.success());
    assert!(text(&none).contains("no credentials"), "{}", text(&none));
    let plain = deposit(&listen, "00000000000000000000000000000001", &["--insecure"]);
    assert!(!plain.status.success());
    assert!(text(&plain).contains("TLS 1.3 only"), "{}", text(&plain));
    let ok = deposit(
        &listen,
        "00000000000000000000000000000001",
        &["--data-dir", &data_arg],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("Created"), "{}", text(&ok));
    let status = settle(&["status", "--target", &listen, "--data-dir", &data_arg]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("group 0 (control): leader 1"),
        "{}",
        text(&status)
    );

    // A restart keeps its credentials.
    let _ = node.kill();
    let _ = node.wait();
    let (mut node, lines) = start(&args);
    let log = lines.join("\n");
    assert!(log.contains("settle: listening on"), "{log}");
    assert!(!log.contains("first start"), "{log}");
    assert_eq!(std::fs::read(data.join("tls/ca.pem")).unwrap(), ca);
    let again = deposit(
        &listen,
        "00000000000000000000000000000001",
        &["--data-dir", &data_arg],
    );
    assert!(text(&again).contains("Duplicate"), "{}", text(&again));
    let _ = node.kill();
    let _ = node.wait();
}

fn exits_with(args: &[&str], dir: &Path) -> String {
    let output = Command::new(bin_path("settle"))
        .arg("start")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    text(&output)
}

#[test]
fn a_member_without_credentials_refuses_to_start_and_insecure_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let peers = format!("1={},2={}", free_port(), free_port());
    let refused = exits_with(
        &["--data-dir", &data, "--node-id", "1", "--peers", &peers],
        dir.path(),
    );
    assert!(refused.contains("settle certs init"), "{refused}");

    let listen = free_port().to_string();
    let (mut node, lines) = start(&[
        "--data-dir",
        &data,
        "--listen",
        &listen,
        "--cores",
        "1",
        "--insecure",
    ]);
    let log = lines.join("\n");
    assert!(log.contains("INSECURE"), "{log}");
    assert!(
        !Path::new(&data).join("tls").exists(),
        "no credentials made"
    );
    let _ = node.kill();
    let _ = node.wait();
}
