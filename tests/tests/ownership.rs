//! A node owns its data directory and its ports (issue 17): a second
//! `settle start` on the same directory, or on the same client port, is
//! refused with a clear message and the first node goes on unharmed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use settle_codec::{TxResult, TxStatus};
use settle_tests::{bin_path, client, free_port, submit_one, write_participants, Node};

/// A second `settle start` with these directory and address; it must exit
/// on its own (a refusal), so it gets a deadline.
fn second_start(data_dir: &Path, participants: &Path, listen: &str) -> Output {
    let mut child = Command::new(bin_path("settle"))
        .args(["start", "--insecure", "--cores", "1", "--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--participants")
        .arg(participants)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second node did not refuse: it is still running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_process_gets_neither_the_data_directory_nor_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 4).unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start(&data, Some(&participants), false, 1).unwrap();
    assert_eq!(submit_one(node.listen, 1), TxResult::Created);

    // The same directory, another port: refused, naming the holder.
    let other_port = free_port().to_string();
    let out = second_start(&data, &participants, &other_port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by another settle process")
            && stderr.contains(&format!("pid {}", node.child.id())),
        "{stderr}"
    );

    // Another directory, the same client port: refused, naming the port.
    let out = second_start(
        &dir.path().join("other"),
        &participants,
        &node.listen.to_string(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is already in use by another process",
            node.listen
        )),
        "{stderr}"
    );

    // The first node is unharmed: it still serves, every connection is
    // its own, and what it acknowledged is there.
    assert!(node.is_running());
    for id in 2..=20 {
        assert_eq!(submit_one(node.listen, id), TxResult::Created, "tx {id}");
    }
    let mut c = client(node.listen).unwrap();
    let ids: Vec<u128> = (1..=20).collect();
    for item in c.lookup(&ids).unwrap() {
        assert_ne!(item.status, TxStatus::NotFound, "{item:?}");
    }

    // kill -9 releases the directory: a restart owns it again.
    node.kill9();
    node.restart().unwrap();
    let mut c = client(node.listen).unwrap();
    for item in c.lookup(&ids).unwrap() {
        assert_ne!(item.status, TxStatus::NotFound, "after restart: {item:?}");
    }
}
