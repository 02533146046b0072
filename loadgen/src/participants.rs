//! `settle-loadgen participants`: a participants file matching the workload,
//! in the participants format of `shared/spec/batching.md`, for
//! `settle start --participants FILE`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::workload::{home_currency_index, usd_to_minor, CURRENCIES};

/// Prefunding of the largest bank in its home currency, in USD. Smaller banks
/// get less (the same skew as their traffic), so that liquidity binds in
/// cycles without stopping the flow.
const HOME_BALANCE_USD_TOP: f64 = 500_000_000.0;
/// Prefunding in each foreign currency, as a share of the home balance.
const FOREIGN_BALANCE_SHARE: f64 = 0.1;
/// Counterparty limit of the largest bank, in USD.
const COUNTERPARTY_LIMIT_USD_TOP: f64 = 2_000_000_000.0;

/// Names are `bank_00` … `bank_{N-1}`, two digits at least.
pub fn participant_name(index: u32) -> String {
    format!("bank_{index:02}")
}

/// The participants file as JSON: `{"participants": [...]}`.
pub fn participants_file(count: u32, seed: u64) -> Value {
    participants_file_with_liquidity(count, seed, 1.0)
}

/// The participants file with every balance multiplied by `liquidity`.
///
/// The workload sends 30 % of payments across currencies, so each bank's
/// home currency drains by about that share of its payments: at the default
/// prefunding a run of hundreds of thousands of payments per second
/// exhausts it in seconds and settlement becomes liquidity-bound (payments
/// wait for funds). A settlement throughput test prefunds more.
pub fn participants_file_with_liquidity(count: u32, seed: u64, liquidity: f64) -> Value {
    assert!(liquidity.is_finite() && liquidity > 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0ba1_a9ce);
    let participants: Vec<Value> = (0..count)
        .map(|i| {
            // Same Zipf-like rank scale as the workload, with some noise.
            let scale = 1.0 / f64::from(i + 1).powf(0.8) * rng.gen_range(0.8..1.2);
            let home = home_currency_index(i);
            let mut balances = Map::new();
            for (c, (code, _)) in CURRENCIES.iter().enumerate() {
                let usd = HOME_BALANCE_USD_TOP
                    * scale
                    * if c == home {
                        1.0
                    } else {
                        FOREIGN_BALANCE_SHARE
                    };
                balances.insert((*code).to_string(), json!(usd_to_minor(usd * liquidity, c)));
            }
            json!({
                "id": participant_name(i),
                "counterparty_limit_usd": (COUNTERPARTY_LIMIT_USD_TOP * scale).round(),
                "balances": balances,
            })
        })
        .collect();
    json!({ "participants": participants })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_zero_padded_and_every_currency_is_funded() {
        let file = participants_file(12, 3);
        let list = file["participants"].as_array().unwrap();
        assert_eq!(list.len(), 12);
        assert_eq!(list[0]["id"], "bank_00");
        assert_eq!(list[11]["id"], "bank_11");
        for p in list {
            let balances = p["balances"].as_object().unwrap();
            assert_eq!(balances.len(), CURRENCIES.len());
            assert!(balances.values().all(|b| b.as_u64().unwrap() > 0));
            assert!(p["counterparty_limit_usd"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(participants_file(12, 3), file, "deterministic for a seed");
    }
}
