//! Prometheus against the node, with Debian's `prometheus` package (which
//! `.ci/run` installs; these tests fail without it):
//!
//! - the alert rules pass `promtool check rules` and their unit tests;
//! - a real Prometheus, configured from `deploy/prometheus/prometheus.yml`
//!   (HTTPS, an auditor's bearer token, the cluster's CA) and loading
//!   `alerts.yml`, scrapes a three-node cluster every second while the load
//!   generator runs; its answers are compared with the generator's report,
//!   and every query of the Grafana dashboard (`deploy/grafana/settle.json`)
//!   runs on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use settle_tests::cluster::{Cluster, ClusterOptions, Load};
use settle_tests::{free_port, http_request};

/// Groups of the default cluster: the control group and four currencies.
const GROUPS: u16 = 5;
/// How long leaders may take to settle on their preferred members.
const BALANCE_MAX: Duration = Duration::from_secs(60);
/// How long Prometheus may take to start and see every target up.
const PROMETHEUS_READY_MAX: Duration = Duration::from_secs(60);
/// How long the last counts may take to reach Prometheus: a node publishes
/// every 250 ms and is scraped every second; slack for a loaded machine.
const SAMPLES_SETTLE_MAX: Duration = Duration::from_secs(30);
/// The load: long enough for a steady middle part well inside the edges.
const LOAD_DURATION: Duration = Duration::from_secs(20);
/// Seconds cut at each end of the load before comparing rates: start-up of
/// the generator's connections and the last requests' tail.
const EDGE_S: f64 = 3.0;
/// The node's rate over the middle of the load against the generator's
/// mean over all of it: within this share.
const RATE_TOLERANCE: f64 = 0.35;
/// The node's latency quantile (intake to answer, from buckets about
/// 25 % wide, over the middle of the load) against the generator's (the
/// client's whole round trip, over all of it): within these factors.
const LATENCY_RATIO_MIN: f64 = 0.4;
const LATENCY_RATIO_MAX: f64 = 1.5;
/// Raft entries not counted as submit batches: leader changes' blank
/// entries while leaders balance, at most a few per group.
const ROUNDS_NOT_BATCHES_MAX: f64 = 64.0;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// A program of Debian's `prometheus` package, found on PATH.
fn prometheus_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH: install Debian's prometheus package (.ci/run does)")
        })
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = prometheus_tool("promtool");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(deploy_dir())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A `prometheus` child process on loopback; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deploy configuration with this test's credentials, targets and a
/// one-second interval; everything else (https, authorization, tls_config,
/// the rules) as shipped.
fn prometheus_config(tls: &Path, targets: &[SocketAddr]) -> String {
    let shipped = std::fs::read_to_string(deploy_dir().join("prometheus.yml")).unwrap();
    let mut config = String::new();
    for line in shipped.lines() {
        if line.trim_start().starts_with("- settle-") {
            continue;
        }
        config.push_str(line);
        config.push('\n');
        if line.trim() == "- targets:" {
            for t in targets {
                config.push_str(&format!("          - {t}\n"));
            }
        }
    }
    let replaced = config
        .replace("/etc/prometheus/settle/", &format!("{}/", tls.display()))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    assert!(
        replaced.contains(&format!("{}/auditor.token", tls.display()))
            && replaced.contains("scrape_interval: 1s")
            && replaced.contains(&targets[0].to_string()),
        "the shipped prometheus.yml changed shape:\n{replaced}"
    );
    replaced
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        std::fs::copy(deploy_dir().join("alerts.yml"), dir.join("alerts.yml")).unwrap();
        // The shipped file names credentials under /etc; with this test's,
        // it must pass promtool's configuration check (rules included).
        let checked = Command::new(prometheus_tool("promtool"))
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml"))
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "promtool check config:\n{}\n{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let addr = free_port();
        let child = Command::new(prometheus_tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Prometheus { child, addr }
    }

    /// An instant query's samples (labels, value) at `time` (Unix seconds).
    fn query(&self, promql: &str, time: f64) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!(
            "/api/v1/query?query={}&time={time:.3}",
            percent_encode(promql)
        );
        let (status, body) = match http_request(self.addr, "GET", &path, None) {
            Ok(answer) => answer,
            Err(_) => return Vec::new(),
        };
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// Whether Prometheus accepts `promql` (parses and evaluates it).
    fn accepts(&self, promql: &str) -> Result<(), String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        match http_request(self.addr, "GET", &path, None) {
            Ok((200, body)) if body.contains(r#""status":"success""#) => Ok(()),
            Ok((status, body)) => Err(format!("{status} {body}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The single value of `promql` at `time`, once Prometheus has one.
    fn value(&self, promql: &str, time: f64) -> Option<f64> {
        match self.query(promql, time).as_slice() {
            [(_, v)] if v.is_finite() => Some(*v),
            _ => None,
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls `probe` until it returns `Some`, or fails saying `what`.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn within(what: &str, got: f64, expected: f64, min_ratio: f64, max_ratio: f64) {
    let ratio = got / expected;
    assert!(
        (min_ratio..=max_ratio).contains(&ratio),
        "{what}: Prometheus says {got:.3}, the load generator {expected:.3} (ratio {ratio:.2}, allowed {min_ratio}..{max_ratio})"
    );
    eprintln!("{what}: Prometheus {got:.3}, load generator {expected:.3} (ratio {ratio:.2})");
}

#[test]
fn a_real_prometheus_scrapes_a_three_node_cluster_under_load_and_agrees_with_the_load_generator() {
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        http: true,
        ..ClusterOptions::default()
    };
    let participants = options.participants;
    let cluster = Cluster::start(dir.path(), options).unwrap();
    cluster.wait_balanced(1, GROUPS, BALANCE_MAX).unwrap();
    let https: Vec<SocketAddr> = cluster.members.iter().map(|m| m.http.unwrap()).collect();
    let tls = cluster.tls_dir.clone().unwrap();
    let prometheus = Prometheus::start(
        &dir.path().join("prometheus"),
        &prometheus_config(&tls, &https),
    );
    // Every member scraped over TLS with the auditor's token.
    wait_for(
        "Prometheus scraping all three members",
        PROMETHEUS_READY_MAX,
        || {
            let up = prometheus.query(r#"up{job="settle"}"#, unix_now());
            (up.len() == 3 && up.iter().all(|(_, v)| *v == 1.0)).then_some(())
        },
    );
    let rounds =
        r#"sum(max by (group) (settle_consensus_rounds_completed_total{group!="control"}))"#;
    let t0 = unix_now();
    let rounds_before = wait_for(
        "consensus rounds before the load",
        SAMPLES_SETTLE_MAX,
        || prometheus.value(rounds, t0),
    );

    let report_path = dir.path().join("load.json");
    let targets: Vec<SocketAddr> = cluster.members.iter().map(|m| m.listen).collect();
    let load = Load::start_with(
        &targets,
        LOAD_DURATION,
        6,
        100,
        participants,
        dir.path().join("acked"),
        &["--json", report_path.to_str().unwrap()],
    )
    .unwrap();
    load.finish().unwrap();
    let t1 = unix_now();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let created = report["results"]["created"].as_u64().unwrap() as f64;
    assert!(created > 0.0, "the load created nothing: {report}");

    // Counters are exact: once the last scrape is in, the cluster's
    // created transactions are the generator's.
    let created_total = r#"sum(settle_transactions_total{result="created"})"#;
    wait_for(
        "settle_transactions_total{result=created} summed over the cluster reaching the generator's count",
        SAMPLES_SETTLE_MAX,
        || (prometheus.value(created_total, unix_now())? == created).then_some(()),
    );

    // Rates and quantiles over the middle of the load.
    let window_s = (t1 - t0 - 2.0 * EDGE_S).floor();
    assert!(window_s >= 10.0, "the load ran {:.1} s", t1 - t0);
    let at = t1 - EDGE_S;
    let rate = prometheus
        .value(
            &format!(r#"sum(rate(settle_transactions_total{{result="created"}}[{window_s}s]))"#),
            at,
        )
        .expect("a rate over the load");
    let generator_rate = report["created_per_s"].as_f64().unwrap();
    within(
        "created tx/s",
        rate,
        generator_rate,
        1.0 - RATE_TOLERANCE,
        1.0 + RATE_TOLERANCE,
    );
    for (q, field) in [(0.5, "p50"), (0.99, "p99")] {
        let node_ms = prometheus
            .value(
                &format!("histogram_quantile({q}, sum by (le) (rate(settle_transaction_latency_ms_bucket[{window_s}s])))"),
                at,
            )
            .expect("a latency quantile over the load");
        let generator_ms = report["latency_us"][field].as_f64().unwrap() / 1e3;
        within(
            &format!("latency {field} ms"),
            node_ms,
            generator_ms,
            LATENCY_RATIO_MIN,
            LATENCY_RATIO_MAX,
        );
    }

    // Consensus: every submit batch a leader counted is a committed Raft
    // entry, and the entries committed during the load are those batches
    // (plus a few leader-change entries at most).
    let now = unix_now();
    let rounds_after = prometheus.value(rounds, now).expect("consensus rounds");
    let batches = prometheus
        .value("sum(settle_batches_total)", now)
        .expect("batches");
    let rounds_during = rounds_after - rounds_before;
    eprintln!(
        "consensus rounds during the load {rounds_during}, submit batches {batches}, requests {}",
        report["requests"]
    );
    assert!(batches >= 1.0, "no batch counted");
    assert!(
        rounds_during >= batches && rounds_during <= batches + ROUNDS_NOT_BATCHES_MAX,
        "{rounds_during} Raft entries committed during the load, {batches} batches counted"
    );
    // The Grafana dashboard's queries run as they are on real data.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("../grafana/settle.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            if let Err(e) = prometheus.accepts(expr) {
                panic!("panel {}: {expr}: {e}", panel["title"]);
            }
        }
    }

    // Group commit: never more entries than (request, shard) pairs; each
    // request is split over at most 4 booking shards and 4 id claims.
    let requests = report["requests"].as_f64().unwrap();
    assert!(
        batches <= requests * 8.0,
        "{batches} batches for {requests} requests"
    );
}
