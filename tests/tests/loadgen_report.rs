//! `settle-loadgen --settle --report PATH` against a secure node: the live
//! line on stderr every second (elapsed, tx/s, p99, settled), and an HTML
//! report whose SVG plots (plotters) draw the run: one throughput and two
//! latency points per second, the cost breakdown and the cumulative cost
//! against naive, with the data behind them embedded as JSON; the plotted
//! series add up exactly to the run's own totals (`--json`).

use std::process::Command;

use settle_tests::{bin_path, certs_init, write_participants, Node};

/// Banks in the workload.
const PARTICIPANTS: u32 = 16;

/// The `<figure id="plot-ID" …>…</figure>` of the report.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"plot-{id}\""))
        .unwrap_or_else(|| panic!("no plot {id}"));
    let end = start + html[start..].find("</figure>").unwrap();
    &html[start..end]
}

/// The number of points of each `<polyline>` in `svg`.
fn polylines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|rest| {
            let at = rest.find("points=\"").unwrap() + "points=\"".len();
            let len = rest[at..].find('"').unwrap();
            rest[at..at + len].split_whitespace().count()
        })
        .collect()
}

fn attribute(html: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let at = html.find(&key).unwrap() + key.len();
    let len = html[at..].find('"').unwrap();
    html[at..at + len].parse().unwrap()
}

#[test]
fn a_settle_run_with_report_writes_svg_plots_that_add_up_to_its_totals() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    certs_init(&tls, 1).unwrap();
    let tls_arg = tls.display().to_string();
    let participants = write_participants(dir.path(), PARTICIPANTS).unwrap();
    let node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        false,
        2,
        &["--tls-dir", &tls_arg],
    )
    .unwrap();
    let report_path = dir.path().join("report.html");
    let json_path = dir.path().join("report.json");
    let run = Command::new(bin_path("settle-loadgen"))
        .args(["--tls-dir", &tls_arg, "--target", &node.listen.to_string()])
        .args(["--duration", "3s", "--clients", "4", "--batch", "200"])
        .args(["--participants", &PARTICIPANTS.to_string(), "--settle"])
        .arg("--report")
        .arg(&report_path)
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{run:?}");

    // The live line, once a second of the 3 s run at least twice.
    let live: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" tx/s ") && l.contains(" p99 ") && l.contains(" settled "))
        .collect();
    assert!(live.len() >= 2, "live lines:\n{stderr}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let html = std::fs::read_to_string(&report_path).unwrap();
    let data_at = html
        .find("<script type=\"application/json\" id=\"report-data\">")
        .unwrap();
    let data_text = &html[data_at..];
    let data_text =
        &data_text[data_text.find('>').unwrap() + 1..data_text.find("</script>").unwrap()];
    let data: serde_json::Value = serde_json::from_str(&data_text.replace("<\\/", "</")).unwrap();

    // Throughput and latency: one point per sample, the samples adding up
    // to every transaction the run had answered.
    let samples = data["timeline"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{} samples", samples.len());
    let answered: u64 = samples
        .iter()
        .map(|s| s["answered"].as_u64().unwrap())
        .sum();
    let results = &json["load"]["results"];
    let run_answered: u64 = ["created", "duplicate", "conflict", "rejected"]
        .iter()
        .map(|r| results[r].as_u64().unwrap())
        .sum();
    assert!(run_answered > 0);
    assert_eq!(
        answered, run_answered,
        "the timeline against the run's total"
    );
    let throughput = figure(&html, "throughput");
    assert_eq!(attribute(throughput, "data-points") as usize, samples.len());
    assert!(
        polylines(throughput).contains(&samples.len()),
        "a throughput line of {} points: {:?}",
        samples.len(),
        polylines(throughput)
    );
    let latency = figure(&html, "latency");
    let lines = polylines(latency);
    assert!(
        lines.iter().filter(|&&n| n == samples.len()).count() >= 2,
        "p50 and p99 lines of {} points: {lines:?}",
        samples.len()
    );
    assert!(samples.iter().any(|s| s["p99_ms"].as_f64().unwrap() > 0.0));

    // Costs: the bars are the run's totals; the cumulative lines end at them.
    let settle = &json["settle"];
    let cost = settle["cost_usd"].as_f64().unwrap();
    let naive = settle["naive_cost_usd"].as_f64().unwrap();
    assert!(settle["settled"].as_u64().unwrap() > 0, "{settle}");
    let costs = figure(&html, "costs");
    assert!(costs.contains("<svg") && costs.contains("<rect"));
    assert!((attribute(costs, "data-cost") - cost).abs() <= 1e-9 * cost.max(1.0));
    assert!((attribute(costs, "data-naive") - naive).abs() <= 1e-9 * naive.max(1.0));
    let breakdown = &settle["cost_breakdown"];
    let parts: f64 = ["fx", "wire", "deferral"]
        .iter()
        .map(|p| breakdown[p].as_f64().unwrap())
        .sum();
    assert!(
        (parts - cost).abs() <= 1e-6 * cost.max(1.0),
        "{breakdown} against {cost}"
    );
    let cycles = data["cycles"].as_array().unwrap();
    assert_eq!(cycles.len() as u64, settle["cycles"].as_u64().unwrap());
    let sum = |key: &str| cycles.iter().map(|c| c[key].as_f64().unwrap()).sum::<f64>();
    assert!((sum("cost_usd") - cost).abs() <= 1e-6 * cost.max(1.0));
    assert!((sum("naive_cost_usd") - naive).abs() <= 1e-6 * naive.max(1.0));
    let savings = figure(&html, "savings");
    assert!(
        polylines(savings)
            .iter()
            .filter(|&&n| n == cycles.len() + 1)
            .count()
            >= 2,
        "naive and cycle lines of {} points: {:?}",
        cycles.len() + 1,
        polylines(savings)
    );
}

/// `settle demo --report` writes the same report for its own run: every
/// plot there, with points, and the figures the demo printed.
#[test]
fn the_demo_writes_its_report_with_every_plot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.html");
    let output = Command::new(bin_path("settle"))
        .args([
            "demo",
            "--duration",
            "3s",
            "--clients",
            "4",
            "--batch",
            "200",
            "--cores",
            "1",
            "--report",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("report written to"), "{stdout}");
    let html = std::fs::read_to_string(&path).unwrap();
    for id in ["throughput", "latency", "costs", "savings"] {
        let plot = figure(&html, id);
        assert!(plot.contains("<svg"), "plot {id} is an SVG");
    }
    let points: usize = polylines(figure(&html, "throughput")).iter().sum();
    assert!(points >= 2, "a throughput point a second: {points}");
}
