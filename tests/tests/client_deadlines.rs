//! Client-side request deadlines (issue 17): a node that stops answering
//! (a real process SIGSTOPped, so its kernel still accepts connections)
//! costs the load generator and the CLI one deadline, not the whole stall.
//! The stall lasts far longer than any deadline, and each client must
//! return on its own while the node is still stopped: no timing is
//! asserted beyond "before the stall ends".

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settle_tests::{bin_path, write_participants, Node};

/// How long the node stays stopped at most: far longer than the deadlines
/// (1-2 s here), so a client that returns while it is stopped gave up by
/// its deadline, not because the stall ended.
const STALL_MAX: Duration = Duration::from_secs(60);

/// Stops a process for as long as it lives; SIGCONT on drop.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

/// Waits for `child` to exit while the stall lasts; its output, or a panic
/// if it is still running when the stall would end.
fn exits_during_stall(mut child: std::process::Child, stalled_at: Instant) -> std::process::Output {
    while child.try_wait().unwrap().is_none() {
        if stalled_at.elapsed() > STALL_MAX {
            let _ = child.kill();
            panic!("the client was still waiting when the stall ended");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_cli_and_the_load_generator_give_up_on_a_stopped_node_by_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 8).unwrap();
    let data = dir.path().join("data");
    let node = Node::start_with(&data, Some(&participants), false, 1, &[]).unwrap();
    let target = node.listen.to_string();

    let stalled_at = Instant::now();
    let _stopped = Stopped::new(node.child.id());

    // The CLI: one clear error naming the deadline.
    let cli = Command::new(bin_path("settle"))
        .args([
            "balances",
            "--insecure",
            "--timeout",
            "1s",
            "--target",
            &target,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = exits_during_stall(cli, stalled_at);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("deadline") && stderr.contains("--timeout") && stderr.contains(&target),
        "the error names the deadline and the node: {stderr}"
    );

    // The load generator: every request it sends times out; it gives up
    // (--give-up-after) and reports the timeouts.
    let report = dir.path().join("report.json");
    let loadgen = Command::new(bin_path("settle-loadgen"))
        .args(["--insecure", "--target", &target, "--duration", "120s"])
        .args(["--clients", "2", "--batch", "10", "--participants", "8"])
        .args(["--request-timeout", "1s", "--give-up-after", "3s", "--json"])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = exits_during_stall(loadgen, stalled_at);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let timeouts = json["timeouts"].as_u64().unwrap();
    assert!(timeouts >= 2, "each client timed out at least once: {json}");
    assert_eq!(json["results"]["created"], 0, "{json}");
    assert!(stdout.contains("timeouts="), "{stdout}");
}

#[test]
fn the_load_generator_resends_a_timed_out_batch_to_another_target() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 8).unwrap();
    let stalled = Node::start(&dir.path().join("a"), Some(&participants), false, 1).unwrap();
    let healthy = Node::start(&dir.path().join("b"), Some(&participants), false, 1).unwrap();
    let _stopped = Stopped::new(stalled.child.id());
    let stalled_at = Instant::now();

    // Two one-node engines: a batch that times out on the stopped one is
    // sent again to the healthy one and acknowledged there.
    let acked = dir.path().join("acked.txt");
    let report = dir.path().join("report.json");
    let loadgen = Command::new(bin_path("settle-loadgen"))
        .args([
            "--insecure",
            "--duration",
            "6s",
            "--clients",
            "2",
            "--batch",
            "10",
        ])
        .args(["--participants", "8", "--request-timeout", "1s"])
        .args(["--target", &stalled.listen.to_string()])
        .args(["--target", &healthy.listen.to_string()])
        .arg("--acked")
        .arg(&acked)
        .arg("--json")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = exits_during_stall(loadgen, stalled_at);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json["timeouts"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["resent"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["results"]["created"].as_u64().unwrap() > 0, "{json}");
    // Everything acknowledged is on the healthy node.
    let verify = Command::new(bin_path("settle-loadgen"))
        .args([
            "verify",
            "--insecure",
            "--target",
            &healthy.listen.to_string(),
        ])
        .arg("--acked")
        .arg(&acked)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(
        text.contains("missing=0 duplicates=0 illegal_trails=0"),
        "{text}"
    );
}
