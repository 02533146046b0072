//! The `settle-solver` binary as a user runs it: real files, exit statuses.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle-solver"))
        .args(args)
        .output()
        .expect("run settle-solver")
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("settle-solver-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_spec_example_solution() {
    let inst = data("spec_example.json");
    let sol = data("spec_solution.json");
    let out = run(&["check", inst.to_str().unwrap(), sol.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["valid"], true);
    assert!((report["cost"]["total"].as_f64().unwrap() - 8.125).abs() < 1e-9);
}

#[test]
fn check_rejects_a_wrong_cost_with_status_1() {
    let text = std::fs::read_to_string(data("spec_solution.json")).unwrap();
    let bad = write_temp(
        "bad_cost.json",
        &text.replace("\"total\": 8.125}", "\"total\": 7.0}"),
    );
    let inst = data("spec_example.json");
    let out = run(&["check", inst.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(
        report["errors"][0].as_str().unwrap().contains("cost.total"),
        "{report}"
    );
}

#[test]
fn solve_and_naive_outputs_pass_check() {
    let inst = data("spec_example.json");
    for cmd in ["solve", "naive"] {
        let out = run(&[cmd, inst.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        let path = write_temp(
            &format!("{cmd}.json"),
            std::str::from_utf8(&out.stdout).unwrap(),
        );
        let checked = run(&["check", inst.to_str().unwrap(), path.to_str().unwrap()]);
        assert_eq!(
            checked.status.code(),
            Some(0),
            "{cmd}: {}",
            String::from_utf8_lossy(&checked.stdout)
        );
    }
}

#[test]
fn solve_records_its_lower_bound_and_a_proven_optimum_closes_it() {
    let inst = data("spec_example.json");
    let out = run(&["solve", inst.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["cost"]["total"].as_f64().unwrap();
    // One transaction: the exact finish proves the optimum.
    assert!(
        (v["lower_bound_usd"].as_f64().unwrap() - total).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["gap_to_bound_pct"].as_f64(), Some(0.0), "{v}");
}

#[test]
fn bad_files_exit_2_with_a_clear_message() {
    let missing = run(&["solve", "/nonexistent/instance.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/instance.json"));

    let text = std::fs::read_to_string(data("spec_example.json")).unwrap();
    let bad = write_temp(
        "bad_currency.json",
        &text.replace("\"receive\": \"EUR\"", "\"receive\": \"XYZ\""),
    );
    let out = run(&["naive", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transactions[0].receive") && err.contains("XYZ"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let garbage = write_temp("garbage.json", "{\"settled\": 5}");
    let inst = data("spec_example.json");
    let out = run(&["check", inst.to_str().unwrap(), garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}
