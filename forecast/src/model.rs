//! Additive Holt-Winters without trend, ETS(A,N,A), in error-correction
//! form. For a flow `y_t` with season `m`:
//!
//! ```text
//! e_t = y_t - (l + s[t mod m])       one-step error
//! l  += alpha * e_t                  level
//! s[t mod m] += gamma * e_t          seasonal of t's phase
//! ```
//!
//! The forecast of step `j` (1 ≤ j ≤ m) after the last observation is
//! `l + s[(n + j - 1) mod m]`. Under the model the error of step `j` is
//! `e_{n+j} + alpha * (e_{n+1} + … + e_{n+j-1})` (the level absorbs every
//! earlier error; the seasonal of a phase is not revisited within one
//! season), so the error of the *sum* of the first `h` steps, which is what
//! a balance accumulates, is `Σ_i e_{n+i} (1 + alpha (h - i))` with variance
//! `sigma² Σ_{k<h} (1 + alpha k)²`. `sigma²` is the mean squared one-step
//! error over the last season of the history (earlier errors are larger
//! than the model's errors from now on: the seasonal states start from two
//! seasons' average and settle over the first days).
//!
//! Intervals: the standard normal quantiles corrected for the residuals'
//! skewness and excess kurtosis (Cornish-Fisher), both carried to the sum
//! of `h` weighted errors (a weighted sum of independent errors has
//! skewness `S Σw³ / (Σw²)^1.5` and excess kurtosis `K Σw⁴ / (Σw²)²`), so
//! skewed or heavy-tailed flows get intervals of their shape, and the
//! correction fades as the horizon grows and the sum turns Gaussian.

use crate::ForecastError;

/// The nominal levels of the prediction intervals.
pub const LEVELS: [f64; 3] = [0.80, 0.90, 0.95];

/// Two-sided standard normal quantiles of [`LEVELS`]: `P(|Z| <= z) = level`.
pub const Z: [f64; 3] = [
    1.281_551_565_544_600_4,
    1.644_853_626_951_472_2,
    1.959_963_984_540_054,
];

/// The smoothing parameters tried (level, seasonal): a grid, not an
/// optimiser, so a fit costs a fixed, known amount of work
/// (`ALPHAS × GAMMAS × n` updates) and is deterministic.
const ALPHAS: [f64; 7] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5];
const GAMMAS: [f64; 5] = [0.01, 0.05, 0.1, 0.2, 0.3];

/// Longest history a fit reads (the node keeps far fewer buckets): bounds a
/// fit's work.
pub const HISTORY_MAX: usize = 1 << 16;

/// Bounds on the residuals' skewness and excess kurtosis used in the
/// Cornish-Fisher correction: estimated from one season of residuals, a
/// few outliers could claim any value (where the corrected quantiles do
/// not increase, [`bounds`] uses the normal ones).
const SKEWNESS_MAX: f64 = 2.0;
const KURTOSIS_MIN: f64 = -1.0;
const KURTOSIS_MAX: f64 = 8.0;

/// A fitted model: its state after the last observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub season: usize,
    pub alpha: f64,
    pub gamma: f64,
    /// Standard deviation of the one-step error.
    pub sigma: f64,
    /// Skewness and excess kurtosis of the one-step errors (clamped).
    pub skewness: f64,
    pub kurtosis: f64,
    /// Observations the model saw.
    pub observations: usize,
    level: f64,
    /// By phase: `seasonal[t % season]`.
    seasonal: Vec<f64>,
}

/// One forecast step: the flow of the step and the sum of the flows up to
/// it, with the standard deviation of that sum's error and the bounds of
/// that error per level of [`LEVELS`] (`lower[i] <= 0 <= upper[i]`, nested).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowStep {
    pub flow: f64,
    pub cumulative: f64,
    pub cumulative_sd: f64,
    pub lower: [f64; 3],
    pub upper: [f64; 3],
}

/// Fits the model to `flows` (oldest first) with a season of `season` buckets.
pub fn fit(flows: &[f64], season: usize) -> Result<Model, ForecastError> {
    if season < 2 {
        return Err(ForecastError::Season(season));
    }
    let need = 2 * season;
    if flows.len() < need {
        return Err(ForecastError::TooShort {
            have: flows.len(),
            need,
        });
    }
    if let Some(index) = flows.iter().position(|y| !y.is_finite()) {
        return Err(ForecastError::NotFinite { index });
    }
    // The newest part of a longer input: bounded work.
    let flows = &flows[flows.len().saturating_sub(HISTORY_MAX)..];
    let mut best: Option<(f64, Model)> = None;
    for &alpha in &ALPHAS {
        for &gamma in &GAMMAS {
            let (sse, model) = run(flows, season, alpha, gamma);
            if best.as_ref().is_none_or(|(b, _)| sse < *b) {
                best = Some((sse, model));
            }
        }
    }
    let (_, model) = best.expect("the grid is not empty");
    assert!(model.sigma.is_finite() && model.sigma >= 0.0);
    Ok(model)
}

/// The first observation whose error counts towards `sigma` (and the
/// choice of parameters): the last season's. Earlier errors carry the
/// start values' larger error (measured: with them, the 80 % interval
/// covered ~85 % out of sample).
fn warm_up(n: usize, season: usize) -> usize {
    season.max(n - season)
}

/// Runs the filter over `flows`; the sum of squared errors after the
/// warm-up and the model at the end.
fn run(flows: &[f64], season: usize, alpha: f64, gamma: f64) -> (f64, Model) {
    let n = flows.len();
    debug_assert!(n >= 2 * season);
    let mut level = flows[..2 * season].iter().sum::<f64>() / (2 * season) as f64;
    let mut seasonal: Vec<f64> = (0..season)
        .map(|p| (flows[p] + flows[p + season]) / 2.0 - level)
        .collect();
    let warm = warm_up(n, season);
    // Sums of the counted errors' powers: 2 (the variance), 3, 4.
    let (mut sse, mut cubes, mut fourths) = (0.0, 0.0, 0.0);
    for (t, &y) in flows.iter().enumerate() {
        let phase = t % season;
        let e = y - (level + seasonal[phase]);
        if t >= warm {
            let e2 = e * e;
            sse += e2;
            cubes += e2 * e;
            fourths += e2 * e2;
        }
        level += alpha * e;
        seasonal[phase] += gamma * e;
    }
    let counted = (n - warm) as f64;
    let variance = sse / counted;
    let (skewness, kurtosis) = if variance > 0.0 {
        (
            (cubes / counted / variance.powf(1.5)).clamp(-SKEWNESS_MAX, SKEWNESS_MAX),
            (fourths / counted / (variance * variance) - 3.0).clamp(KURTOSIS_MIN, KURTOSIS_MAX),
        )
    } else {
        (0.0, 0.0)
    };
    let model = Model {
        season,
        alpha,
        gamma,
        sigma: variance.sqrt(),
        skewness,
        kurtosis,
        observations: n,
        level,
        seasonal,
    };
    (sse, model)
}

impl Model {
    /// The next `horizon` steps (1 ≤ horizon ≤ season).
    pub fn forecast(&self, horizon: usize) -> Result<Vec<FlowStep>, ForecastError> {
        if horizon == 0 || horizon > self.season {
            return Err(ForecastError::Horizon {
                have: horizon,
                max: self.season,
            });
        }
        let mut steps = Vec::with_capacity(horizon);
        let mut cumulative = 0.0;
        // Σw², Σw³, Σw⁴ of the weights 1 + alpha k of the errors summed.
        let (mut w2, mut w3, mut w4) = (0.0, 0.0, 0.0);
        for k in 0..horizon {
            let flow = self.level + self.seasonal[(self.observations + k) % self.season];
            cumulative += flow;
            let w = 1.0 + self.alpha * k as f64;
            w2 += w * w;
            w3 += w * w * w;
            w4 += w * w * w * w;
            let sd = self.sigma * w2.sqrt();
            let skewness = self.skewness * w3 / w2.powf(1.5);
            let kurtosis = self.kurtosis * w4 / (w2 * w2);
            let (lower, upper) = bounds(sd, skewness, kurtosis);
            steps.push(FlowStep {
                flow,
                cumulative,
                cumulative_sd: sd,
                lower,
                upper,
            });
        }
        debug_assert!(steps
            .windows(2)
            .all(|p| p[0].cumulative_sd <= p[1].cumulative_sd));
        Ok(steps)
    }
}

/// The Cornish-Fisher quantile for the standard normal quantile `z` of a
/// distribution with mean 0, variance 1, skewness `s` and excess kurtosis `k`.
fn cornish_fisher(z: f64, s: f64, k: f64) -> f64 {
    let z2 = z * z;
    z + (z2 - 1.0) * s / 6.0 + (z2 * z - 3.0 * z) * k / 24.0
        - (2.0 * z2 * z - 5.0 * z) * s * s / 36.0
}

/// The error bounds of one step per level: nested, around 0. Where the
/// Cornish-Fisher quantiles are not increasing over the levels' quantiles
/// (its expansion fails for strong skew with light tails, e.g. at the
/// first step of exponential noise), the normal quantiles.
fn bounds(sd: f64, skewness: f64, kurtosis: f64) -> ([f64; 3], [f64; 3]) {
    let corrected = |z: f64| cornish_fisher(z, skewness, kurtosis);
    let points = [-Z[2], -Z[1], -Z[0], Z[0], Z[1], Z[2]].map(corrected);
    let monotone = points.windows(2).all(|p| p[0] < p[1]) && points[2] < 0.0 && points[3] > 0.0;
    let q = |z: f64| if monotone { corrected(z) } else { z };
    let lower = Z.map(|z| sd * q(-z));
    let upper = Z.map(|z| sd * q(z));
    debug_assert!(lower[2] <= lower[1] && lower[1] <= lower[0] && lower[0] <= 0.0);
    debug_assert!(0.0 <= upper[0] && upper[0] <= upper[1] && upper[1] <= upper[2]);
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noiseless_season_is_forecast_exactly_with_zero_width() {
        let season = 8;
        let profile = [5.0, -3.0, 2.0, 0.0, -7.0, 1.0, 4.0, -2.0];
        let flows: Vec<f64> = (0..4 * season).map(|t| profile[t % season]).collect();
        let model = fit(&flows, season).unwrap();
        let steps = model.forecast(season).unwrap();
        for (j, s) in steps.iter().enumerate() {
            assert!((s.flow - profile[j]).abs() < 1e-9, "step {j}: {}", s.flow);
            assert!(s.cumulative_sd < 1e-9);
        }
    }

    #[test]
    fn refuses_short_history_bad_horizons_and_non_finite_flows() {
        assert_eq!(
            fit(&[1.0; 15], 8),
            Err(ForecastError::TooShort { have: 15, need: 16 })
        );
        assert_eq!(fit(&[1.0; 16], 1), Err(ForecastError::Season(1)));
        let mut flows = vec![1.0; 16];
        flows[3] = f64::NAN;
        assert_eq!(fit(&flows, 8), Err(ForecastError::NotFinite { index: 3 }));
        let model = fit(&[1.0; 16], 8).unwrap();
        assert!(matches!(
            model.forecast(0),
            Err(ForecastError::Horizon { .. })
        ));
        assert!(matches!(
            model.forecast(9),
            Err(ForecastError::Horizon { .. })
        ));
    }

    #[test]
    fn cornish_fisher_is_the_normal_quantile_for_normal_errors_and_follows_skew() {
        for z in Z {
            assert_eq!(cornish_fisher(z, 0.0, 0.0), z);
        }
        // Right-skewed: both bounds move up (a short left tail).
        let (lower, upper) = bounds(1.0, 1.0, 1.5);
        assert!(
            lower[0] > -Z[0] && upper[0] > Z[0] - 0.1,
            "{lower:?} {upper:?}"
        );
        // Heavy tails: the 80 % interval narrows, the 95 % one does not.
        let (lower, upper) = bounds(1.0, 0.0, 3.0);
        assert!(upper[0] < Z[0] && upper[2] >= Z[2] - 0.01, "{upper:?}");
        assert!(lower[2] <= lower[1] && lower[1] <= lower[0] && lower[0] <= 0.0);
        // Strong skew with light tails: the expansion is not monotone,
        // the normal quantiles stand in.
        assert_eq!(bounds(1.0, 2.0, 2.0), bounds(1.0, 0.0, 0.0));
        assert_eq!(bounds(2.0, 0.0, 0.0).1, Z.map(|z| 2.0 * z));
    }

    #[test]
    fn interval_widths_grow_with_the_horizon() {
        let flows: Vec<f64> = (0..64)
            .map(|t| ((t * 7919) % 13) as f64 - 6.0 + (t % 8) as f64)
            .collect();
        let model = fit(&flows, 8).unwrap();
        assert!(model.sigma > 0.0);
        let steps = model.forecast(8).unwrap();
        assert!(steps
            .windows(2)
            .all(|p| p[0].cumulative_sd < p[1].cumulative_sd));
        assert!((steps[0].cumulative_sd - model.sigma).abs() < 1e-12);
    }
}
