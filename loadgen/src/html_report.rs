//! `--report PATH`: one self-contained HTML file with the run's figures and
//! SVG plots drawn by `plotters` (SVG backend only): throughput and latency
//! over time, and with `--settle` the cost breakdown and the cumulative
//! cost against the naive baseline. The plotted data is embedded too, as
//! JSON (`<script type="application/json" id="report-data">`), so a script
//! or a test can read exactly what was drawn.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::report::Report;
use crate::settle::SettleReport;
use crate::timeline::Timeline;

/// Size of each plot, pixels.
const PLOT_WIDTH: u32 = 900;
const PLOT_HEIGHT: u32 = 340;

const BLUE: RGBColor = RGBColor(36, 88, 198);
const ORANGE: RGBColor = RGBColor(214, 110, 0);
const GREY: RGBColor = RGBColor(140, 146, 156);

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing the {plot} plot: {message}")]
    Draw { plot: &'static str, message: String },
    #[error("encoding the report's data: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the report shows.
pub struct ReportInput<'a> {
    /// What ran, e.g. "settle-loadgen" or "settle demo".
    pub title: &'a str,
    pub load: &'a Report,
    pub timeline: &'a Timeline,
    pub settle: Option<&'a SettleReport>,
}

/// The data behind the plots, embedded in the page.
#[derive(Serialize)]
struct Data<'a> {
    load: &'a Report,
    timeline: &'a Timeline,
    settle: Option<&'a SettleReport>,
    cycles: Option<&'a [crate::settle::CyclePoint]>,
}

/// Writes the report to `path`.
pub fn write(path: &Path, input: &ReportInput<'_>) -> Result<(), ReportError> {
    let html = render(input)?;
    std::fs::write(path, html).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The report's HTML.
pub fn render(input: &ReportInput<'_>) -> Result<String, ReportError> {
    let samples = &input.timeline.samples;
    let throughput: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, s.tx_per_s)).collect();
    let p50: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, s.p50_ms)).collect();
    let p99: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, s.p99_ms)).collect();
    let mut figures = String::new();
    figure(
        &mut figures,
        "throughput",
        "Transactions answered per second",
        &line_plot(
            "throughput",
            "tx/s",
            &[("answered tx/s", BLUE, &throughput)],
        )?,
        &[("points", throughput.len().to_string())],
    );
    figure(
        &mut figures,
        "latency",
        "Request latency per second (client round trip)",
        &line_plot(
            "latency",
            "ms",
            &[("p50", BLUE, &p50), ("p99", ORANGE, &p99)],
        )?,
        &[("points", p99.len().to_string())],
    );
    match input.settle {
        Some(settle) => settle_figures(&mut figures, settle)?,
        None => figures.push_str(
            "<p class=\"note\" id=\"no-settlement\">No settlement in this run: run with \
             <code>--settle</code> for the cost breakdown and the savings against naive.</p>\n",
        ),
    }
    let data = serde_json::to_string(&Data {
        load: input.load,
        timeline: input.timeline,
        settle: input.settle,
        cycles: input.settle.map(|s| s.cycle_points.as_slice()),
    })?
    // Inside <script>: no "</" may end it early.
    .replace("</", "<\\/");
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title} report</h1>\n{summary}{figures}\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n</body>\n</html>\n",
        title = escape(input.title),
        summary = summary(input),
    ))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:960px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{padding:2px 12px 2px 0;text-align:left}\
td{font-variant-numeric:tabular-nums}figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}\
.note{color:#6b7280}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn summary(input: &ReportInput<'_>) -> String {
    let l = input.load;
    let p = &l.latency_us;
    let r = &l.results;
    let mut rows = vec![
        (
            "mode",
            format!(
                "{}, {} clients x {} per request",
                l.mode, l.clients, l.batch
            ),
        ),
        ("targets", l.targets.join(", ")),
        ("duration", format!("{:.1} s", l.duration_s)),
        (
            "throughput",
            format!(
                "{:.0} tx/s answered, {:.0} tx/s created, {:.0} requests/s",
                l.transactions_per_s, l.created_per_s, l.requests_per_s
            ),
        ),
        (
            "latency (request, ms)",
            format!(
                "p50 {:.3}, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                p.p50 as f64 / 1e3,
                p.p90 as f64 / 1e3,
                p.p99 as f64 / 1e3,
                p.p999 as f64 / 1e3,
                p.max as f64 / 1e3
            ),
        ),
        (
            "results",
            format!(
                "created {}, duplicate {}, conflict {}, rejected {}, errors {}",
                r.created, r.duplicate, r.conflict, r.rejected, r.errors
            ),
        ),
    ];
    if let Some(s) = input.settle {
        rows.push((
            "settlement",
            format!(
                "{} transactions in {} cycles, {:.0} settled tx/s end to end",
                s.settled, s.cycles, s.settled_per_s
            ),
        ));
        rows.push((
            "cost",
            format!(
                "{:.2} USD against a naive {:.2} USD: {:.2} % saved",
                s.cost_usd, s.naive_cost_usd, s.savings_pct
            ),
        ));
    }
    let mut out = String::from("<table id=\"summary\">\n");
    for (name, value) in rows {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
    }
    out.push_str("</table>\n");
    out
}

fn figure(out: &mut String, id: &str, caption: &str, svg: &str, data: &[(&str, String)]) {
    let attrs: String = data
        .iter()
        .map(|(k, v)| format!(" data-{k}=\"{}\"", escape(v)))
        .collect();
    let _ = write!(
        out,
        "<figure id=\"plot-{id}\"{attrs}>\n<figcaption>{}</figcaption>\n{svg}\n</figure>\n",
        escape(caption)
    );
}

fn settle_figures(out: &mut String, settle: &SettleReport) -> Result<(), ReportError> {
    let c = &settle.cost_breakdown;
    let n = &settle.naive_breakdown;
    let parts = [
        ("FX", c.fx, n.fx),
        ("wires", c.wire, n.wire),
        ("deferral", c.deferral, n.deferral),
        ("total", c.total, n.total),
    ];
    figure(
        out,
        "costs",
        "Cost breakdown: settlement cycles against paying each transaction on its own (naive), USD",
        &bar_plot(&parts)?,
        &[
            ("cost", format!("{}", c.total)),
            ("naive", format!("{}", n.total)),
        ],
    );
    let mut cost = 0.0;
    let mut naive = 0.0;
    let mut cumulative_cost = vec![(0.0, 0.0)];
    let mut cumulative_naive = vec![(0.0, 0.0)];
    for p in &settle.cycle_points {
        cost += p.cost_usd;
        naive += p.naive_cost_usd;
        cumulative_cost.push((p.t_s, cost));
        cumulative_naive.push((p.t_s, naive));
    }
    figure(
        out,
        "savings",
        &format!(
            "Cumulative cost against naive, USD: {:.2} saved ({:.2} %)",
            settle.naive_cost_usd - settle.cost_usd,
            settle.savings_pct
        ),
        &line_plot(
            "savings",
            "USD",
            &[
                ("naive", GREY, &cumulative_naive),
                ("settle cycles", BLUE, &cumulative_cost),
            ],
        )?,
        &[("points", cumulative_cost.len().to_string())],
    );
    Ok(())
}

/// An axis value with as many decimals as its size needs.
fn axis_label(value: &f64) -> String {
    match value.abs() {
        v if v >= 100.0 || v == 0.0 => format!("{value:.0}"),
        v if v >= 1.0 => format!("{value:.1}"),
        _ => format!("{value:.3}"),
    }
}

fn draw_error(plot: &'static str) -> impl Fn(Box<dyn std::error::Error>) -> ReportError {
    move |e| ReportError::Draw {
        plot,
        message: e.to_string(),
    }
}

/// One line of a plot: its legend, colour and (x, y) points.
type Line<'a> = (&'a str, RGBColor, &'a Vec<(f64, f64)>);

/// A line per series over time (seconds from the run's start).
fn line_plot(plot: &'static str, y_unit: &str, series: &[Line<'_>]) -> Result<String, ReportError> {
    let points = || series.iter().flat_map(|(_, _, p)| p.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut svg = String::new();
    (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(y_unit)
            .y_label_formatter(&axis_label)
            .light_line_style(WHITE)
            .draw()?;
        for (name, color, line) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .map_err(draw_error(plot))?;
    Ok(svg)
}

/// Two bars per part: the cycles' cost and the naive cost.
fn bar_plot(parts: &[(&str, f64, f64)]) -> Result<String, ReportError> {
    let y_max = parts
        .iter()
        .map(|p| p.1.max(p.2))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let names: Vec<String> = parts.iter().map(|p| p.0.to_string()).collect();
    let count = parts.len() as f64;
    let mut svg = String::new();
    (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..count, 0.0..y_max)?;
        // Part i spans [i, i+1]; its name is written at i + 0.5.
        let label = |x: &f64| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(parts.len() * 2 + 1)
            .x_label_formatter(&label)
            .y_desc("USD")
            .y_label_formatter(&axis_label)
            .light_line_style(WHITE)
            .draw()?;
        // Bar `which` (0: the cycles, 1: naive) of every part.
        let bars = |which: usize, color: RGBColor| {
            parts
                .iter()
                .enumerate()
                .map(move |(i, p)| {
                    let x = i as f64 + 0.15 + 0.35 * which as f64;
                    let height = [p.1, p.2][which];
                    Rectangle::new([(x, 0.0), (x + 0.35, height)], color.filled())
                })
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(bars(0, BLUE))?
            .label("settle cycles")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BLUE.filled()));
        chart
            .draw_series(bars(1, GREY))?
            .label("naive")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], GREY.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .map_err(draw_error("costs"))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Percentiles, ResultCounts};
    use crate::timeline::Sample;

    fn load() -> Report {
        Report {
            mode: "closed-loop".into(),
            targets: vec!["127.0.0.1:7000".into()],
            clients: 2,
            batch: 10,
            rate_tps: None,
            duration_s: 2.0,
            transactions_per_s: 15.0,
            created_per_s: 15.0,
            requests_per_s: 1.5,
            latency_us: Percentiles {
                p50: 1_000,
                p90: 2_000,
                p99: 3_000,
                p999: 3_000,
                max: 3_000,
                mean: 1_200.0,
            },
            results: ResultCounts {
                created: 30,
                ..Default::default()
            },
            requests: 3,
            timeouts: 0,
            resent: 0,
            acked_per_second: vec![15, 15],
        }
    }

    #[test]
    fn a_report_without_settlement_has_two_plots_with_one_point_per_sample() {
        let mut timeline = Timeline::default();
        for (t, answered) in [(1.0, 10), (2.0, 20)] {
            timeline.push(Sample {
                t_s: t,
                interval_s: 1.0,
                answered,
                tx_per_s: answered as f64,
                p50_ms: 1.0,
                p99_ms: 3.0,
                max_ms: 3.0,
                errors: 0,
                settled: None,
            });
        }
        let html = render(&ReportInput {
            title: "settle-loadgen <test>",
            load: &load(),
            timeline: &timeline,
            settle: None,
        })
        .unwrap();
        assert!(html.contains("settle-loadgen &lt;test&gt; report"));
        for id in ["plot-throughput", "plot-latency"] {
            assert!(
                html.contains(&format!("<figure id=\"{id}\" data-points=\"2\"")),
                "{id}"
            );
        }
        assert!(!html.contains("plot-costs") && html.contains("id=\"no-settlement\""));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(
            html.matches("<polyline").count() >= 3,
            "one line per series"
        );
    }
}
