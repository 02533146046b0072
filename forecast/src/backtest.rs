//! Empirical coverage of the prediction intervals: fit on a trailing window
//! of history, forecast the balance over the horizon, and count how often
//! the real balance path lands inside each interval.

use crate::model::fit;
use crate::synth::{Noise, Synth};
use crate::{ForecastError, LEVELS};

/// Hits and trials of one interval level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    pub hits: u64,
    pub total: u64,
}

impl Coverage {
    /// Hits per hundred trials.
    pub fn percent(&self) -> f64 {
        assert!(self.total > 0, "coverage of no trials");
        100.0 * self.hits as f64 / self.total as f64
    }

    fn add(&mut self, other: Coverage) {
        self.hits += other.hits;
        self.total += other.total;
    }
}

/// How to walk a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub season: usize,
    /// Buckets each fit reads (the node's kept history).
    pub history: usize,
    /// Buckets forecast from each origin.
    pub horizon: usize,
    /// Buckets between origins.
    pub stride: usize,
}

/// Coverage per level of [`LEVELS`] over every (origin, step) of `flows`:
/// is the real balance change from the origin to the step's end inside
/// the interval?
pub fn coverage(flows: &[f64], walk: Walk) -> Result<[Coverage; 3], ForecastError> {
    assert!(walk.stride > 0);
    let mut out = [Coverage::default(); 3];
    let mut origin = walk.history;
    while origin + walk.horizon <= flows.len() {
        let model = fit(&flows[origin - walk.history..origin], walk.season)?;
        let steps = model.forecast(walk.horizon)?;
        let mut actual = 0.0;
        for (j, s) in steps.iter().enumerate() {
            actual += flows[origin + j];
            let miss = actual - s.cumulative;
            for (i, c) in out.iter_mut().enumerate() {
                c.total += 1;
                c.hits += u64::from(s.lower[i] <= miss && miss <= s.upper[i]);
            }
        }
        origin += walk.stride;
    }
    Ok(out)
}

/// One row of the backtest table: a noise shape over every seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub noise: Noise,
    pub coverage: [Coverage; 3],
}

/// The backtest the unit test asserts and `examples/backtest.rs` prints:
/// for each noise shape, `seeds` histories of `days` days (96 buckets a
/// day), walked with `walk`.
pub fn table(
    seeds: std::ops::Range<u64>,
    days: usize,
    walk: Walk,
) -> Result<Vec<Row>, ForecastError> {
    Noise::ALL
        .iter()
        .map(|&noise| -> Result<Row, ForecastError> {
            let mut total = [Coverage::default(); 3];
            for seed in seeds.clone() {
                let flows = Synth::standard(seed, noise, days).flows();
                for (t, c) in total.iter_mut().zip(coverage(&flows, walk)?) {
                    t.add(c);
                }
            }
            Ok(Row {
                noise,
                coverage: total,
            })
        })
        .collect()
}

/// The walk of the recorded backtest: four days of history (what the node
/// keeps), eight hours ahead, an origin every three hours.
pub const STANDARD_WALK: Walk = Walk {
    season: 96,
    history: 4 * 96,
    horizon: 32,
    stride: 12,
};

/// The tolerance the issue sets: within ±5 points of the nominal level.
pub const TOLERANCE_POINTS: f64 = 5.0;

/// Whether every level of every row is within [`TOLERANCE_POINTS`].
pub fn within_tolerance(rows: &[Row]) -> bool {
    rows.iter().all(|r| {
        r.coverage
            .iter()
            .zip(LEVELS)
            .all(|(c, level)| (c.percent() - 100.0 * level).abs() <= TOLERANCE_POINTS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empirical_coverage_of_every_interval_is_within_five_points_of_nominal() {
        // Five seeds x four noise shapes, 14 days each: 10 days of origins
        // per history, every (origin, step) of 8 hours counted.
        let rows = table(1..6, 14, STANDARD_WALK).unwrap();
        for r in &rows {
            let pct: Vec<String> = r
                .coverage
                .iter()
                .map(|c| format!("{:.1}", c.percent()))
                .collect();
            eprintln!("{:<18} {}", r.noise.name(), pct.join(" "));
        }
        assert!(within_tolerance(&rows), "{rows:?}");
    }

    #[test]
    fn coverage_counts_every_origin_and_step() {
        let flows = Synth::standard(1, Noise::Gaussian, 3).flows();
        let walk = Walk {
            season: 96,
            history: 192,
            horizon: 4,
            stride: 48,
        };
        let c = coverage(&flows, walk).unwrap();
        // Origins 192, 240 (240 + 4 <= 288); 4 steps each.
        assert_eq!(c[0].total, 8);
        assert!(c[0].hits <= c[1].hits && c[1].hits <= c[2].hits);
    }
}
