//! The cycle parameters the control group holds: mid rates, spreads,
//! wire price, deferral prices. The defaults are the batching spec's
//! example, extended with illustrative mid rates for every currency the
//! codec knows (an operator replaces them with `PUT /v1/fx`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use settle_codec::{Currency, Window};

/// Spread of a currency pair no configured spread connects (bps): a cycle
/// needs a tradable path between every pair of shard currencies, so an
/// unconnected currency is traded against the first shard currency at this.
pub const FALLBACK_SPREAD_BPS: f64 = 10.0;

/// Mid rates (USD per major unit) used when the configuration has none.
/// Illustrative, not market data.
const DEFAULT_RATES: &[(&str, &str)] = &[
    ("USD", "1.0"),
    ("EUR", "1.08"),
    ("GBP", "1.27"),
    ("JPY", "0.0067"),
    ("CHF", "1.13"),
    ("CAD", "0.73"),
    ("AUD", "0.66"),
    ("CNY", "0.138"),
    ("DKK", "0.145"),
    ("HKD", "0.128"),
    ("INR", "0.012"),
    ("KRW", "0.00073"),
    ("MXN", "0.058"),
    ("NZD", "0.6"),
    ("NOK", "0.093"),
    ("SGD", "0.74"),
    ("ZAR", "0.054"),
    ("SEK", "0.095"),
    ("PLN", "0.25"),
    ("BRL", "0.18"),
];

/// A tradable pair and its spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpreadSpec {
    pub pair: [Currency; 2],
    pub bps: f64,
}

/// Deferral price per window, bps of the transaction's USD value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeferBps {
    #[serde(rename = "RTGS")]
    pub rtgs: f64,
    #[serde(rename = "T0")]
    pub t0: f64,
    #[serde(rename = "T1")]
    pub t1: f64,
    #[serde(rename = "T2")]
    pub t2: f64,
}

impl DeferBps {
    pub fn as_array(&self) -> [f64; 4] {
        [self.rtgs, self.t0, self.t1, self.t2]
    }

    pub fn of(&self, window: Window) -> f64 {
        match window {
            Window::Rtgs => self.rtgs,
            Window::T0 => self.t0,
            Window::T1 => self.t1,
            Window::T2 => self.t2,
        }
    }
}

/// Everything a cycle prices with, besides balances, limits and candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxConfig {
    pub max_batch_size: u32,
    pub wire_usd: f64,
    pub consolidation_discount: f64,
    pub defer_bps: DeferBps,
    /// USD per major unit, as the exact decimal text (`"1.08"`).
    pub usd_per_unit: BTreeMap<Currency, String>,
    pub spreads: Vec<SpreadSpec>,
}

impl Default for FxConfig {
    fn default() -> Self {
        let c = |code| Currency::from_code(code).expect("a known code");
        FxConfig {
            max_batch_size: 1_000,
            wire_usd: 5.0,
            consolidation_discount: 0.15,
            defer_bps: DeferBps {
                rtgs: 50.0,
                t0: 10.0,
                t1: 2.0,
                t2: 1.0,
            },
            usd_per_unit: DEFAULT_RATES
                .iter()
                .map(|&(code, rate)| (c(code), rate.to_string()))
                .collect(),
            spreads: [
                ("USD", "EUR", 2.5),
                ("USD", "GBP", 3.0),
                ("USD", "JPY", 2.0),
                ("EUR", "GBP", 2.0),
            ]
            .into_iter()
            .map(|(a, b, bps)| SpreadSpec {
                pair: [c(a), c(b)],
                bps,
            })
            .chain(
                DEFAULT_RATES
                    .iter()
                    .map(|&(code, _)| c(code))
                    .filter(|&x| !["USD", "EUR", "GBP", "JPY"].contains(&x.as_str()))
                    .map(|x| SpreadSpec {
                        pair: [c("USD"), x],
                        bps: 5.0,
                    }),
            )
            .collect(),
        }
    }
}

impl FxConfig {
    /// Checks what a cycle relies on, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch_size == 0 {
            return Err("max_batch_size: must be at least 1".into());
        }
        if !(self.wire_usd.is_finite() && self.wire_usd >= 0.0) {
            return Err(format!("wire_usd: {} must be >= 0", self.wire_usd));
        }
        if !(0.0..=1.0).contains(&self.consolidation_discount) {
            return Err(format!(
                "consolidation_discount: {} must be within [0, 1]",
                self.consolidation_discount
            ));
        }
        for (w, bps) in Window::ALL.iter().zip(self.defer_bps.as_array()) {
            if !(bps.is_finite() && bps >= 0.0) {
                return Err(format!("defer_bps.{w}: {bps} must be >= 0"));
            }
        }
        for (c, rate) in &self.usd_per_unit {
            let parsed: Result<settle_solver::Decimal, _> = rate.parse();
            match parsed {
                Ok(d) if !d.is_zero() => {}
                _ => {
                    return Err(format!(
                        "usd_per_unit.{c}: {rate:?} is not a positive decimal"
                    ))
                }
            }
        }
        for (i, s) in self.spreads.iter().enumerate() {
            if s.pair[0] == s.pair[1] {
                return Err(format!("spreads[{i}].pair: a pair needs two currencies"));
            }
            if !(s.bps.is_finite() && s.bps >= 0.0) {
                return Err(format!("spreads[{i}].bps: {} must be >= 0", s.bps));
            }
        }
        Ok(())
    }

    /// The spreads among `currencies`, plus a [`FALLBACK_SPREAD_BPS`] pair to
    /// the first currency for every currency no configured pair reaches.
    pub fn spreads_among(&self, currencies: &[Currency]) -> Vec<(Currency, Currency, f64)> {
        let mut pairs: Vec<(Currency, Currency, f64)> = Vec::new();
        for s in &self.spreads {
            let [a, b] = s.pair;
            let known = currencies.contains(&a) && currencies.contains(&b);
            let seen = pairs
                .iter()
                .any(|&(x, y, _)| (x, y) == (a, b) || (x, y) == (b, a));
            if known && !seen {
                pairs.push((a, b, s.bps));
            }
        }
        let Some(&first) = currencies.first() else {
            return pairs;
        };
        // Reachability from the first currency, growing as pairs are added.
        let mut reached = vec![first];
        loop {
            let before = reached.len();
            for &(a, b, _) in &pairs {
                if reached.contains(&a) && !reached.contains(&b) {
                    reached.push(b);
                } else if reached.contains(&b) && !reached.contains(&a) {
                    reached.push(a);
                }
            }
            if reached.len() == before {
                match currencies.iter().find(|c| !reached.contains(c)) {
                    Some(&alone) => {
                        pairs.push((first, alone, FALLBACK_SPREAD_BPS));
                        reached.push(alone);
                    }
                    None => return pairs,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_spec_example() {
        let fx = FxConfig::default();
        fx.validate().unwrap();
        assert_eq!(fx.usd_per_unit[&Currency::EUR], "1.08");
        assert_eq!(fx.defer_bps.of(Window::Rtgs), 50.0);
        let json = serde_json::to_string(&fx).unwrap();
        assert_eq!(serde_json::from_str::<FxConfig>(&json).unwrap(), fx);
        assert!(json.contains(r#""RTGS":50.0"#), "{json}");
    }

    #[test]
    fn unconnected_currencies_get_a_fallback_pair() {
        let fx = FxConfig::default();
        let chf = Currency::CHF;
        let pairs = fx.spreads_among(&[Currency::EUR, chf]);
        assert_eq!(pairs, vec![(Currency::EUR, chf, FALLBACK_SPREAD_BPS)]);
        let four = [Currency::USD, Currency::EUR, Currency::GBP, Currency::JPY];
        assert_eq!(fx.spreads_among(&four).len(), 4, "the spec's four pairs");
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let mut fx = FxConfig::default();
        fx.usd_per_unit.insert(Currency::EUR, "-1".into());
        assert!(fx.validate().unwrap_err().contains("usd_per_unit.EUR"));
        let mut fx = FxConfig::default();
        fx.defer_bps.t1 = f64::NAN;
        assert!(fx.validate().unwrap_err().contains("defer_bps.T1"));
    }
}
