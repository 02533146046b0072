//! Liquidity forecasts as the node serves them: `GET /v1/forecast`, the
//! binary `ForecastRequest` (`settle forecast`) and the
//! `settle_liquidity_forecast` gauges (see [`crate::core_metrics`]).
//!
//! A shard's core hands out a copy of a participant's flow history (at most
//! [`FLOW_BUCKETS`] numbers, see [`crate::shard::flows`]); the model
//! (`settle-forecast`) runs on the store threads, off every core.
//!
//! The balance path starts from the balance at the start of the current
//! bucket (the balance now minus the current bucket's flow so far): the
//! model forecasts whole buckets, the current one being the first step.

use settle_codec::messages::{ForecastResponse, ForecastShortfall, ForecastStep};
use settle_codec::{Currency, ParticipantId};
use settle_forecast::{balance_forecast, fit, ForecastError};

use crate::intake::router::ParticipantFlows;
use crate::intake::{Intake, ShardError};
use crate::shard::flows::{FlowSeries, FLOW_BUCKETS, FLOW_SEASON_BUCKETS};

/// Hours ahead a forecast covers unless asked otherwise.
pub const FORECAST_HOURS_DEFAULT: u64 = 8;

/// Hours ahead of the `settle_liquidity_forecast` gauges and of the
/// shortfall the `SettleLiquidityShortfall` alert fires on.
pub const GAUGE_HORIZON_HOURS: u64 = 4;

/// Most steps of one forecast: one season (a day of buckets). The model's
/// interval formula holds within a season.
pub const FORECAST_STEPS_MAX: usize = FLOW_SEASON_BUCKETS;

const _: () = assert!(FORECAST_STEPS_MAX <= settle_codec::messages::MAX_FORECAST_STEPS);
const _: () = assert!(2 * FLOW_SEASON_BUCKETS < FLOW_BUCKETS);

/// Why a forecast was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastFailure {
    #[error("currency: {0} is not served by this engine")]
    Currency(Currency),
    #[error("participant: {0} is not registered")]
    Participant(ParticipantId),
    #[error("{participant} has no settlement history in {currency} yet")]
    NoHistory {
        participant: ParticipantId,
        currency: Currency,
    },
    #[error("{participant} in {currency}: {source}")]
    Model {
        participant: ParticipantId,
        currency: Currency,
        source: ForecastError,
    },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("forecast not computed: {0}")]
    Pool(#[from] crate::store_io::StoreIoError),
}

/// The buckets `hours` span at a width of `bucket_us`, rounded up, between
/// 1 and [`FORECAST_STEPS_MAX`].
pub fn steps_for_hours(hours: u64, bucket_us: u64) -> usize {
    let us = hours.saturating_mul(3_600_000_000);
    let steps = us.div_ceil(bucket_us.max(1));
    (steps as usize).clamp(1, FORECAST_STEPS_MAX)
}

/// How far ahead a forecast looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Buckets (at most [`FORECAST_STEPS_MAX`]).
    Steps(usize),
    /// Hours, in buckets of the shard's width (rounded up, at most
    /// [`FORECAST_STEPS_MAX`]).
    Hours(u64),
}

impl Horizon {
    fn steps(self, bucket_us: u64) -> usize {
        match self {
            Horizon::Steps(n) => n.clamp(1, FORECAST_STEPS_MAX),
            Horizon::Hours(h) => steps_for_hours(h, bucket_us),
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The forecast of one participant's history: pure, for the store threads.
pub fn compute(
    currency: Currency,
    flows: &ParticipantFlows,
    now_us: u64,
    horizon: Horizon,
) -> Result<ForecastResponse, ForecastFailure> {
    let participant = flows.participant;
    let Some(series) = &flows.series else {
        return Err(ForecastFailure::NoHistory {
            participant,
            currency,
        });
    };
    let steps = horizon.steps(series.bucket_us);
    let model_error = |source| ForecastFailure::Model {
        participant,
        currency,
        source,
    };
    let history: Vec<f64> = series.flows.iter().map(|&f| f as f64).collect();
    let model = fit(&history, FLOW_SEASON_BUCKETS).map_err(model_error)?;
    let start = flows.balance as f64 - series.current as f64;
    let forecast = balance_forecast(&model, start, steps).map_err(model_error)?;
    Ok(response(currency, flows, series, now_us, &forecast))
}

fn response(
    currency: Currency,
    flows: &ParticipantFlows,
    series: &FlowSeries,
    now_us: u64,
    forecast: &settle_forecast::BalanceForecast,
) -> ForecastResponse {
    let w = series.bucket_us;
    let first = series.next_bucket_start_us();
    let minor = |x: f64| x.round() as i64;
    let steps = forecast
        .steps
        .iter()
        .map(|s| ForecastStep {
            start_us: first + (s.step as u64 - 1) * w,
            end_us: first + s.step as u64 * w,
            flow: minor(s.flow),
            point: minor(s.point),
            lower: s.lower.map(minor),
            upper: s.upper.map(minor),
        })
        .collect::<Vec<_>>();
    let shortfall = forecast.shortfall.map(|s| ForecastShortfall {
        amount: s.amount.ceil() as u64,
        before_us: (first + (s.step as u64 - 1) * w).max(now_us),
    });
    ForecastResponse {
        participant: flows.participant,
        currency,
        balance: flows.balance,
        now_us,
        bucket_us: w,
        history_buckets: series.flows.len() as u32,
        steps,
        shortfall,
    }
}

/// One participant's forecast in one currency, read on this node's
/// replica of the currency's shard.
pub async fn forecast(
    intake: &Intake,
    participant: ParticipantId,
    currency: Currency,
    horizon: Horizon,
) -> Result<ForecastResponse, ForecastFailure> {
    let group = intake
        .shards
        .shard_of(currency)
        .ok_or(ForecastFailure::Currency(currency))?;
    if !intake.participants.load().contains(participant) {
        return Err(ForecastFailure::Participant(participant));
    }
    let now = now_us();
    let mut flows = intake
        .router
        .flows(group, Some(participant), 1, now)
        .await?;
    let Some(flows) = flows.pop() else {
        return Err(ForecastFailure::NoHistory {
            participant,
            currency,
        });
    };
    crate::store_io::run(move || compute(currency, &flows, now, horizon)).await?
}

/// The JSON of `GET /v1/forecast` (README.md documents it).
pub fn to_json(f: &ForecastResponse) -> serde_json::Value {
    let level = |s: &ForecastStep, i: usize| serde_json::json!({ "lower": s.lower[i], "upper": s.upper[i] });
    serde_json::json!({
        "participant": f.participant.name(),
        "currency": f.currency.as_str(),
        "balance": f.balance,
        "now": rfc3339(f.now_us),
        "bucket_seconds": f.bucket_us as f64 / 1e6,
        "history_buckets": f.history_buckets,
        "steps": f.steps.iter().map(|s| serde_json::json!({
            "start": rfc3339(s.start_us),
            "end": rfc3339(s.end_us),
            "flow": s.flow,
            "point": s.point,
            "80": level(s, 0),
            "90": level(s, 1),
            "95": level(s, 2),
        })).collect::<Vec<_>>(),
        "shortfall": f.shortfall.map(|s| serde_json::json!({
            "amount": s.amount,
            "before": rfc3339(s.before_us),
            "message": shortfall_message(f, &s),
        })),
    })
}

/// "pre-fund 1234.56 USD before 14:00:00 UTC".
pub fn shortfall_message(f: &ForecastResponse, s: &ForecastShortfall) -> String {
    format!(
        "pre-fund {} before {}",
        crate::cycle::audit::money(s.amount, f.currency),
        rfc3339(s.before_us)
    )
}

/// A timestamp (microseconds since the epoch) as RFC 3339, to the second.
pub fn rfc3339(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(history: Vec<i64>, current: i64, balance: u64) -> ParticipantFlows {
        ParticipantFlows {
            participant: ParticipantId(3),
            balance,
            series: Some(FlowSeries {
                bucket_us: 1_000,
                first_bucket: 10,
                flows: history,
                current,
            }),
        }
    }

    #[test]
    fn a_participant_paying_out_steadily_is_told_to_pre_fund_before_the_crossing() {
        let history: Vec<i64> = (0..3 * FLOW_SEASON_BUCKETS as i64)
            .map(|t| -1_000 + (t * 37 % 11 - 5) * 10)
            .collect();
        let n = history.len() as u64;
        let f = compute(
            Currency::USD,
            &flows(history, -400, 5_400),
            0,
            Horizon::Steps(12),
        )
        .unwrap();
        assert_eq!(f.steps.len(), 12);
        assert_eq!(f.steps[0].start_us, (10 + n) * 1_000);
        for s in &f.steps {
            assert!(s.lower[2] <= s.lower[1] && s.lower[1] <= s.lower[0]);
            assert!(s.lower[0] <= s.point && s.point <= s.upper[0]);
            assert!(s.upper[0] <= s.upper[1] && s.upper[1] <= s.upper[2]);
        }
        // From 5,800 at the bucket's start, ~1,000 out per bucket: the
        // 95 % lower bound crosses zero in the fifth or sixth bucket.
        let s = f.shortfall.expect("a shortfall");
        let crossing = (s.before_us / 1_000) - (10 + n);
        assert!((4..=5).contains(&crossing), "{crossing}");
        assert!(s.amount > 6_000, "{s:?}");
        let json = to_json(&f);
        assert!(json["shortfall"]["message"]
            .as_str()
            .unwrap()
            .starts_with("pre-fund "));
    }

    #[test]
    fn no_history_and_short_history_are_errors() {
        let none = ParticipantFlows {
            participant: ParticipantId(1),
            balance: 5,
            series: None,
        };
        assert!(matches!(
            compute(Currency::USD, &none, 0, Horizon::Steps(4)),
            Err(ForecastFailure::NoHistory { .. })
        ));
        assert!(matches!(
            compute(
                Currency::USD,
                &flows(vec![1; 10], 0, 5),
                0,
                Horizon::Hours(1)
            ),
            Err(ForecastFailure::Model {
                source: ForecastError::TooShort { .. },
                ..
            })
        ));
        assert_eq!(steps_for_hours(8, 15 * 60 * 1_000_000), 32);
        assert_eq!(
            steps_for_hours(100, 15 * 60 * 1_000_000),
            FORECAST_STEPS_MAX
        );
        assert_eq!(steps_for_hours(0, 1), 1);
    }
}
