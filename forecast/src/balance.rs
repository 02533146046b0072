//! The balance path: a starting balance plus the forecast flows, with the
//! intervals of [`crate::model`], and the shortfall when the 95 % lower
//! bound goes below zero.

use crate::model::{FlowStep, Model};
use crate::ForecastError;

/// One step of the balance forecast: the balance at the step's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceStep {
    /// 1 for the first bucket forecast.
    pub step: usize,
    /// The forecast flow of this step alone.
    pub flow: f64,
    pub point: f64,
    /// Per level of [`crate::LEVELS`] (80, 90, 95 %): lower and upper bounds.
    pub lower: [f64; 3],
    pub upper: [f64; 3],
}

impl BalanceStep {
    /// The quantile `q` of the balance for the quantiles the intervals give
    /// (0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975); `None` for any other.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let close = |a: f64| (q - a).abs() < 1e-9;
        Some(match () {
            _ if close(0.025) => self.lower[2],
            _ if close(0.05) => self.lower[1],
            _ if close(0.1) => self.lower[0],
            _ if close(0.5) => self.point,
            _ if close(0.9) => self.upper[0],
            _ if close(0.95) => self.upper[1],
            _ if close(0.975) => self.upper[2],
            _ => return None,
        })
    }
}

/// The quantiles [`BalanceStep::quantile`] answers, lowest first.
pub const QUANTILES: [f64; 7] = [0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975];

/// The 95 % lower bound of the balance goes below zero within the horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shortfall {
    /// The first step whose 95 % lower bound is below zero: pre-fund before it.
    pub step: usize,
    /// What to pre-fund so that the 95 % lower bound stays at or above zero
    /// over the whole horizon (its lowest point, negated).
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BalanceForecast {
    pub steps: Vec<BalanceStep>,
    pub shortfall: Option<Shortfall>,
}

/// The balance over the next `horizon` steps from `start` (the balance at
/// the start of the first step).
pub fn balance_forecast(
    model: &Model,
    start: f64,
    horizon: usize,
) -> Result<BalanceForecast, ForecastError> {
    let flows = model.forecast(horizon)?;
    let steps: Vec<BalanceStep> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| step(i + 1, start, f))
        .collect();
    let lowest = steps
        .iter()
        .map(|s| s.lower[2])
        .fold(f64::INFINITY, f64::min);
    let shortfall = steps.iter().find(|s| s.lower[2] < 0.0).map(|s| Shortfall {
        step: s.step,
        amount: -lowest,
    });
    Ok(BalanceForecast { steps, shortfall })
}

fn step(step: usize, start: f64, f: &FlowStep) -> BalanceStep {
    let point = start + f.cumulative;
    let lower = f.lower.map(|e| point + e);
    let upper = f.upper.map(|e| point + e);
    // Nested intervals: 80 % inside 90 % inside 95 %, around the point.
    assert!(lower[2] <= lower[1] && lower[1] <= lower[0] && lower[0] <= point);
    assert!(point <= upper[0] && upper[0] <= upper[1] && upper[1] <= upper[2]);
    BalanceStep {
        step,
        flow: f.flow,
        point,
        lower,
        upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit;

    #[test]
    fn a_steady_outflow_runs_short_and_says_how_much_from_when() {
        // Every bucket pays out about 10 with a little noise.
        let flows: Vec<f64> = (0..64).map(|t| -10.0 + ((t % 3) as f64 - 1.0)).collect();
        let model = fit(&flows, 8).unwrap();
        let forecast = balance_forecast(&model, 45.0, 8).unwrap();
        let s = forecast.shortfall.expect("45 lasts about four buckets");
        assert!((3..=5).contains(&s.step), "{s:?}");
        let lowest = forecast.steps.last().unwrap().lower[2];
        assert!((s.amount + lowest).abs() < 1e-9);
        assert!(s.amount > 30.0);
        assert_eq!(
            forecast.steps[0].quantile(0.5),
            Some(forecast.steps[0].point)
        );
        assert_eq!(forecast.steps[0].quantile(0.3), None);
        let rich = balance_forecast(&model, 1_000.0, 8).unwrap();
        assert_eq!(rich.shortfall, None);
    }
}
