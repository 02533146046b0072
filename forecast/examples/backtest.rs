//! Prints the coverage table of BENCHMARKS.md:
//! `cargo run --release -p settle-forecast --example backtest`.

use settle_forecast::backtest::{table, within_tolerance, STANDARD_WALK};
use settle_forecast::LEVELS;

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
}
