//! Durability: kill -9 the node under load, restart it, and every
//! acknowledged transaction is there exactly once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settle_tests::{bin_path, write_participants, Node};

#[test]
fn kill9_under_load_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 16).unwrap();
    let mut node = Node::start(&dir.path().join("data"), Some(&participants), false, 2).unwrap();
    let acked = dir.path().join("acked.txt");

    // The load runs across the crash: clients reconnect after the restart.
    let loadgen = Command::new(bin_path("settle-loadgen"))
        .args([
            "--target",
            &node.listen.to_string(),
            "--duration",
            "8s",
            "--clients",
            "8",
            "--batch",
            "200",
        ])
        .args(["--insecure", "--participants", "16", "--acked"])
        .arg(&acked)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_secs(3));
    node.kill9();
    let killed_at = Instant::now();
    node.restart().unwrap();
    eprintln!("restarted in {:?}", killed_at.elapsed());

    let output = loadgen.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    assert!(output.status.success(), "loadgen failed");
    let ids = std::fs::read_to_string(&acked).unwrap();
    let count = ids.lines().count();
    assert!(
        count > 1_000,
        "the load acknowledged transactions before and after the crash: {count}"
    );

    let verify = Command::new(bin_path("settle-loadgen"))
        .args([
            "verify",
            "--insecure",
            "--target",
            &node.listen.to_string(),
            "--acked",
        ])
        .arg(&acked)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    eprintln!("{text}");
    assert!(verify.status.success(), "verify: {text}");
    assert!(
        text.contains(&format!(
            "acked={count} found={count} missing=0 duplicates=0"
        )),
        "{text}"
    );
}
