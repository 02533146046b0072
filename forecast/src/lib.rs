//! Liquidity forecasts for the settlement engine: from one participant's
//! net flow per time bucket (what settled in and out of its account in one
//! currency), the balance over the next buckets with 80, 90 and 95 %
//! prediction intervals, and the shortfall when the 95 % lower bound of the
//! balance goes below zero.
//!
//! The model is additive Holt-Winters without trend (ETS(A,N,A)) with a
//! daily season, its two smoothing parameters chosen on a small grid by
//! in-sample one-step error; intervals come from the model's residual
//! variance carried over the horizon (the variance of a sum of h forecast
//! errors, see [`model`]). [`backtest`] measures the intervals' empirical
//! coverage on [`synth`]etic history with daily seasonality and several
//! noise shapes.
//!
//! Pure: no I/O, no clock, no knowledge of shards or the wire. The node
//! hands it numbers and renders the answer.

pub mod backtest;
pub mod balance;
pub mod model;
pub mod synth;

pub use balance::{balance_forecast, BalanceForecast, BalanceStep, Shortfall};
pub use model::{fit, Model, LEVELS};

/// Why a forecast could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastError {
    /// The season must be at least 2 buckets.
    #[error("a season of {0} buckets: at least 2 are needed")]
    Season(usize),
    /// Too little history: the model starts from two whole seasons.
    #[error("{have} buckets of history, at least {need} (two seasons) are needed")]
    TooShort { have: usize, need: usize },
    /// A horizon of 0, or beyond one season (the variance formula holds
    /// while no forecast step reuses a seasonal state updated in the horizon).
    #[error("a horizon of {have} buckets: between 1 and {max} (one season)")]
    Horizon { have: usize, max: usize },
    /// A flow that is NaN or infinite.
    #[error("flow {index} is not a finite number")]
    NotFinite { index: usize },
}
