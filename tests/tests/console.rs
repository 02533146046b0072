//! The live console (`GET /` on the HTTP port) in a real browser: Debian's
//! `chromium`, headless (`.ci/run` installs it; this test fails without
//! it). A secure node (TLS, roles) is loaded by `settle-loadgen --settle`,
//! its cycles settle and its wires confirm; then Chromium opens
//! `https://127.0.0.1:PORT/#token=<auditor's token>` (trusting exactly the
//! node's key), the page polls, and:
//!
//! - the DOM's figures equal `/metrics` scraped right after: transactions
//!   created, cycles and transactions settled, savings, every balance,
//!   every group's leader, and the since-start latency quantiles (the same
//!   histogram_quantile over the same buckets). Tolerance: none for counts
//!   and balances (the node is quiet: no load, no scheduled cycle, every
//!   wire confirmed), 1e-9 relative for the floating-point figures;
//! - a screenshot is taken (kept in the test's directory; its path is
//!   printed, and copied to `$SETTLE_CONSOLE_SCREENSHOT` if set);
//! - a bank's token gets the error banner (403), not figures;
//! - the page itself is served without credentials, `/metrics` is not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settle_security::files;
use settle_security::Credentials;
use settle_tests::{bin_path, https_request, identity_tls, write_participants, Node};

/// Banks in the workload.
const PARTICIPANTS: u32 = 16;
/// The load: enough for several cycles, short enough for CI.
const LOAD_DURATION: &str = "3s";
/// How long the node may take to publish its last counts and confirm its
/// last wires (the simulated SWIFT rail confirms within 5 s).
const QUIET_MAX: Duration = Duration::from_secs(60);
/// One Chromium run, start to exit, on a loaded machine.
const CHROMIUM_MAX: Duration = Duration::from_secs(120);
/// Page time Chromium lets pass before dumping (virtual: timers run
/// ahead while the network is idle; fetches are waited for): the page
/// polls every 1.5 s, so at least three polls.
const VIRTUAL_TIME_BUDGET_MS: u32 = 6_000;

/// Debian's `chromium`, found on PATH.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium not found on PATH: `apt-get install -y --no-install-recommends chromium` (.ci/run does)")
        })
}

/// base64(SHA-256(the node certificate's SubjectPublicKeyInfo)), for
/// Chromium's --ignore-certificate-errors-spki-list: it trusts that key
/// and no other (computed with Debian's openssl, as the TLS tests use).
fn node_spki_sha256(tls: &Path) -> String {
    let cert = tls.join(files::node_cert(1));
    let output = Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64")
        .arg("sh")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(output.status.success(), "openssl: {output:?}");
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_eq!(hash.len(), 44, "a base64 SHA-256: {hash:?}");
    hash
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=…`) in a fresh profile; its stdout.
fn chromium_run(dir: &Path, spki: &str, url: &str, mode: &str) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = dir.join(format!("chromium-profile-{run}"));
    std::fs::create_dir_all(&profile).unwrap();
    let stdout_path = dir.join(format!("chromium-{run}.out"));
    let stderr_path = dir.join(format!("chromium-{run}.err"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .arg(mode)
        .arg(url)
        .env("HOME", &profile)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHROMIUM_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_MAX:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium {mode}: {status}; stderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// The page's DOM once Chromium has loaded it (`--dump-dom`). A load that
/// did not reach the page within the virtual time budget (a busy box: the
/// TLS handshake and the page come in real time) dumps an empty document;
/// that is tried again, up to three times, saying so.
fn rendered_dom(dir: &Path, spki: &str, url: &str) -> String {
    let mut dom = String::new();
    for attempt in 1..=3 {
        dom = chromium_run(dir, spki, url, "--dump-dom");
        if dom.contains("id=\"error-banner\"") {
            return dom;
        }
        eprintln!("chromium attempt {attempt}: the page did not load; its DOM:\n{dom}");
    }
    panic!("chromium never loaded the page: {dom}");
}

/// The opening tag of the element whose tag contains `needle`.
fn tag_with<'a>(dom: &'a str, needle: &str) -> Option<&'a str> {
    let at = dom.find(needle)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(tag[at..at + len].replace("&amp;", "&"))
}

/// The `data-value` of the element with `id`, as a number.
fn shown(dom: &str, id: &str) -> f64 {
    let tag = tag_with(dom, &format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the page"));
    let value = attribute(tag, "data-value").unwrap_or_else(|| panic!("#{id} has no value: {tag}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("#{id} shows {value:?}, not a number: {tag}"))
}

/// Samples of `/metrics`: (name, labels) → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse_metrics(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    samples
}

/// Sum of `name`'s samples whose labels include `filter`.
fn total(samples: &Samples, name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Prometheus' histogram_quantile over `name`'s cumulative buckets.
fn histogram_quantile(samples: &Samples, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((n, _), _)| n == &format!("{name}_bucket"))
        .map(|((_, labels), v)| (labels["le"].parse::<f64>().unwrap_or(f64::INFINITY), *v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last()?.1;
    if count <= 0.0 {
        return None;
    }
    let rank = q * count;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, cumulative) in buckets {
        if cumulative >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            if cumulative == below {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / (cumulative - below));
        }
        (lower, below) = (le, cumulative);
    }
    Some(lower)
}

fn close(what: &str, page: f64, metrics: f64) {
    let scale = page.abs().max(metrics.abs()).max(1.0);
    assert!(
        (page - metrics).abs() <= 1e-9 * scale,
        "{what}: the page shows {page}, /metrics says {metrics}"
    );
}

fn read_token(tls: &Path, name: &str) -> String {
    std::fs::read_to_string(tls.join(files::client_token(name)))
        .unwrap()
        .trim()
        .to_string()
}

/// Every cycle's `settled`, summed over the applied ones, from `/v1/cycles`.
fn settled_by_cycles(http: SocketAddr, tls: &Path) -> u64 {
    let admin = identity_tls(tls, "admin").unwrap();
    let mut after = 0u64;
    let mut settled = 0;
    loop {
        let path = format!("/v1/cycles?after={after}&max=64");
        let (status, body) = https_request(http, &admin, "GET", &path, None, None).unwrap();
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let cycles = page["cycles"].as_array().unwrap();
        let Some(last) = cycles.last() else {
            return settled;
        };
        after = last["cycle_id"].as_u64().unwrap();
        settled += cycles
            .iter()
            .filter(|c| c["status"] == "applied")
            .map(|c| c["settled"].as_u64().unwrap())
            .sum::<u64>();
    }
}

#[test]
fn the_console_in_headless_chromium_shows_the_figures_of_metrics() {
    // Fail first, and clearly, without a browser.
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let output = Command::new(bin_path("settle"))
        .args(["certs", "init"])
        .arg(&tls)
        .args(["--submitters", "bank_01"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let participants = write_participants(dir.path(), PARTICIPANTS).unwrap();
    let tls_arg = tls.display().to_string();
    // Cycles only on request (no timer may change the figures between the
    // page and the scrape); wires over the simulated rails, none failing.
    let node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        2,
        &[
            "--tls-dir",
            &tls_arg,
            "--rtgs-cycle-ms",
            "0",
            "--window-schedule",
            "T0=off",
            "--window-schedule",
            "T1=off",
            "--window-schedule",
            "T2=off",
            "--execution",
            "simulated",
            "--execution-failure-ppm",
            "0",
        ],
    )
    .unwrap();
    let http = node.http.unwrap();
    let admin = identity_tls(&tls, "admin").unwrap();
    let anonymous = Credentials::anonymous(&tls.join(files::CA_CERT))
        .unwrap()
        .client()
        .unwrap();

    // The page is served to anyone; the data is not.
    let (status, page) = https_request(http, &anonymous, "GET", "/", None, None).unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<title>settle console</title>"), "{page}");
    let (status, _) = https_request(http, &anonymous, "GET", "/console.js", None, None).unwrap();
    assert_eq!(status, 200);
    let (status, _) = https_request(http, &anonymous, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 401);

    // Load with T0/T1/T2 cycles, then one RTGS cycle for what waits there.
    let load_json = dir.path().join("load.json");
    let load = Command::new(bin_path("settle-loadgen"))
        .args(["--tls-dir", &tls_arg, "--target", &node.listen.to_string()])
        .args([
            "--duration",
            LOAD_DURATION,
            "--clients",
            "4",
            "--batch",
            "200",
        ])
        .args([
            "--participants",
            &PARTICIPANTS.to_string(),
            "--settle",
            "--json",
        ])
        .arg(&load_json)
        .output()
        .unwrap();
    assert!(load.status.success(), "{load:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&load_json).unwrap()).unwrap();
    let created = report["load"]["results"]["created"].as_f64().unwrap();
    assert!(created > 0.0, "{report}");
    let (status, body) = https_request(
        http,
        &admin,
        "POST",
        "/v1/cycles",
        Some(r#"{"window":"RTGS"}"#),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Quiet: every count published, every settled wire confirmed.
    let deadline = Instant::now() + QUIET_MAX;
    let settled = loop {
        // Read again each time: a cycle may still be applying.
        let settled = settled_by_cycles(http, &tls) as f64;
        let (status, text) = https_request(http, &admin, "GET", "/metrics", None, None).unwrap();
        assert_eq!(status, 200);
        let m = parse_metrics(&text);
        if total(&m, "settle_transactions_total", &[("result", "created")]) == created
            && total(&m, "settle_settled_transactions_total", &[]) == settled
            && total(&m, "settle_incoming_minor", &[]) == 0.0
        {
            break settled;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not settle down within {QUIET_MAX:?}: created {created}, settled {settled}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(settled > 0.0, "the cycles settled nothing");

    // The auditor's view, as a browser renders it.
    let spki = node_spki_sha256(&tls);
    let base = format!("https://127.0.0.1:{}/", http.port());
    let auditor_url = format!("{base}#token={}", read_token(&tls, "auditor"));
    let dom = rendered_dom(dir.path(), &spki, &auditor_url);
    let (status, text) = https_request(http, &admin, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    let m = parse_metrics(&text);
    std::fs::write(dir.path().join("console.html"), &dom).unwrap();

    let banner = tag_with(&dom, "id=\"error-banner\"").expect("the error banner");
    assert!(banner.contains("hidden"), "an error is shown: {dom}");
    let updated = tag_with(&dom, "id=\"last-update\"").unwrap();
    let polls: u32 = attribute(updated, "data-poll-count")
        .unwrap()
        .parse()
        .unwrap();
    assert!(polls >= 2, "the page polled {polls} times: {updated}");

    for result in ["created", "duplicate", "conflict", "rejected"] {
        close(
            &format!("transactions {result}"),
            shown(&dom, &format!("tx-{result}-total")),
            total(&m, "settle_transactions_total", &[("result", result)]),
        );
    }
    assert_eq!(shown(&dom, "tx-created-total"), created);
    for (id, metric) in [
        ("cycles-settled-total", "settle_cycles_settled_total"),
        (
            "settled-transactions-total",
            "settle_settled_transactions_total",
        ),
        ("settlement-costs-usd", "settle_settlement_costs_total"),
        ("cost-savings-usd", "settle_cost_savings_total"),
        ("data-loss-events-total", "settle_data_loss_events_total"),
        (
            "transactions-rolled-total",
            "settle_transactions_rolled_total",
        ),
    ] {
        close(id, shown(&dom, id), total(&m, metric, &[]));
    }
    assert_eq!(shown(&dom, "settled-transactions-total"), settled);
    for (suffix, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        let id = format!("latency-all-{suffix}");
        let expected = histogram_quantile(&m, "settle_transaction_latency_ms", q).unwrap();
        close(&id, shown(&dom, &id), expected);
    }

    // Every balance, and every group's leader.
    let mut balances = 0;
    for ((name, labels), value) in &m {
        if name == "settle_balance_minor" {
            let needle = format!(
                "data-participant=\"{}\" data-currency=\"{}\"",
                labels["participant"], labels["currency"]
            );
            let tag = tag_with(&dom, &needle).unwrap_or_else(|| panic!("no balance {needle}"));
            let page: f64 = attribute(tag, "data-value").unwrap().parse().unwrap();
            assert_eq!(page, *value, "{needle}");
            balances += 1;
        }
        if name == "settle_raft_leader" {
            let tag = tag_with(&dom, &format!("data-group=\"{}\"", labels["group"]))
                .unwrap_or_else(|| panic!("no row for group {}", labels["group"]));
            assert_eq!(attribute(tag, "data-leader").unwrap(), format!("{value}"));
        }
    }
    assert!(balances >= PARTICIPANTS as usize, "{balances} balances");
    let forecast = tag_with(&dom, "id=\"forecast\"").unwrap();
    let state = attribute(forecast, "data-state").unwrap();
    assert!(state == "none" || state == "ok", "{forecast}");
    eprintln!(
        "console: {polls} polls; created {created}, settled {settled}, {balances} balances, as /metrics says"
    );

    // A picture for people.
    let screenshot = dir.path().join("console.png");
    chromium_run(
        dir.path(),
        &spki,
        &auditor_url,
        &format!("--screenshot={}", screenshot.display()),
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("console screenshot: {}", screenshot.display());
    if let Some(copy) = std::env::var_os("SETTLE_CONSOLE_SCREENSHOT") {
        std::fs::copy(&screenshot, copy).unwrap();
    }

    // A bank may not read the metrics: the page says so instead of figures.
    let bank_url = format!("{base}#token={}", read_token(&tls, "bank_01"));
    let dom = rendered_dom(dir.path(), &spki, &bank_url);
    let banner = tag_with(&dom, "id=\"error-banner\"").unwrap();
    assert!(
        !banner.contains("hidden"),
        "no error shown to a bank: {dom}"
    );
    assert!(dom.contains("/metrics: 403"), "{dom}");
    let updated = tag_with(&dom, "id=\"last-update\"").unwrap();
    assert_eq!(attribute(updated, "data-poll-count").unwrap(), "0");
}
