//! Prints the coverage table of BENCHMARKS.md:
//! `cargo run --release -p settle-forecast --example backtest`.

use std::time::Instant;

use settle_forecast::backtest::{table, within_tolerance, STANDARD_WALK};
use settle_forecast::synth::{Noise, Synth};
use settle_forecast::{balance_forecast, fit, LEVELS};

fn main() {
    let (seeds, days) = (1..11, 14);
    let walk = STANDARD_WALK;
    println!(
        "{} seeds x {days} days per noise shape; fit on {} buckets, {} buckets ahead, an origin every {}",
        seeds.end - seeds.start,
        walk.history,
        walk.horizon,
        walk.stride
    );
    let rows = table(seeds, days, walk).expect("the synthetic histories are long enough");
    let header: Vec<String> = LEVELS
        .iter()
        .map(|l| format!("{:.0} %", 100.0 * l))
        .collect();
    println!("| noise | {} | trials per level |", header.join(" | "));
    println!("|---|---|---|---|---|");
    for r in &rows {
        let cells: Vec<String> = r
            .coverage
            .iter()
            .map(|c| format!("{:.1}", c.percent()))
            .collect();
        println!(
            "| {} | {} | {} |",
            r.noise.name(),
            cells.join(" | "),
            r.coverage[0].total
        );
    }
    println!("within ±5 points: {}", within_tolerance(&rows));

    // What one participant's forecast costs (the node's work per
    // participant and bucket): fit on the kept history, 32 steps ahead.
    let flows = Synth::standard(1, Noise::Gaussian, 4).flows();
    let history = &flows[1..];
    let rounds = 2_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let model = fit(std::hint::black_box(history), 96).expect("four days");
        std::hint::black_box(balance_forecast(&model, 0.0, 32).expect("32 steps"));
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "one forecast (fit on {} buckets, 35 parameter pairs; 32 steps): {us:.0} µs",
        history.len()
    );
}
