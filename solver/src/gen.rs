//! Realistic instance generator (`settle-solver gen`): skewed participants,
//! log-normal amounts, home currencies, prefunded balances below what is
//! owed (so liquidity binds) and counterparty limits that sometimes bind.
//! Seeded: the same options give the same file.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde_json::{json, Map, Value};

use crate::{Instance, InstanceError};

/// (code, minor units, USD per unit, share of participants at home there).
const CURRENCIES_8: [(&str, u32, f64, f64); 8] = [
    ("USD", 2, 1.0, 0.30),
    ("EUR", 2, 1.08, 0.22),
    ("GBP", 2, 1.27, 0.12),
    ("JPY", 0, 0.0067, 0.10),
    ("CHF", 2, 1.13, 0.08),
    ("CAD", 2, 0.73, 0.07),
    ("AUD", 2, 0.66, 0.06),
    ("SGD", 2, 0.74, 0.05),
];

/// Tradable pairs (USD is the hub; a few cheaper crosses make netting
/// non-trivial), in bps.
const PAIRS: [(&str, &str, f64); 11] = [
    ("USD", "EUR", 2.5),
    ("USD", "GBP", 3.0),
    ("USD", "JPY", 2.0),
    ("EUR", "GBP", 2.0),
    ("USD", "CHF", 3.0),
    ("USD", "CAD", 2.5),
    ("USD", "AUD", 3.5),
    ("USD", "SGD", 4.0),
    ("EUR", "CHF", 2.0),
    ("EUR", "JPY", 3.5),
    ("AUD", "SGD", 3.0),
];

/// (window, defer bps, share of transactions).
pub(crate) const WINDOWS: [(&str, f64, f64); 4] = [
    ("RTGS", 50.0, 0.15),
    ("T0", 10.0, 0.35),
    ("T1", 2.0, 0.30),
    ("T2", 1.0, 0.20),
];

/// Options of [`generate`].
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub seed: u64,
    pub transactions: usize,
    /// 4 (USD, EUR, GBP, JPY) or 8 (adds CHF, CAD, AUD, SGD).
    pub currencies: usize,
    /// Default: between 8 and 200, about one per ten transactions.
    pub participants: Option<usize>,
    pub max_batch_size: u32,
}

impl GenOptions {
    pub fn new(seed: u64, transactions: usize) -> GenOptions {
        GenOptions {
            seed,
            transactions,
            currencies: 4,
            participants: None,
            max_batch_size: 100,
        }
    }
}

fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// The instance file text.
pub fn generate(opts: &GenOptions) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let nc = if opts.currencies <= 4 { 4 } else { 8 };
    let cur = &CURRENCIES_8[..nc];
    let np = opts
        .participants
        .unwrap_or((opts.transactions / 10).clamp(8, 200))
        .max(2);
    let codes: Vec<&str> = cur.iter().map(|c| c.0).collect();

    // Skewed activity: a few large banks do most of the traffic.
    let activity: Vec<f64> = (0..np).map(|i| 1.0 / ((i + 1) as f64).powf(0.9)).collect();
    let home_weights: Vec<f64> = cur.iter().map(|c| c.3).collect();
    let home: Vec<usize> = (0..np).map(|_| pick(&mut rng, &home_weights)).collect();
    let window_weights: Vec<f64> = WINDOWS.iter().map(|w| w.2).collect();
    let amount_usd = LogNormal::new((20_000f64).ln(), 1.4).expect("valid log-normal");

    let mut owed = vec![0u128; np * nc];
    let mut incoming_usd = vec![0f64; np];
    let mut txs = Vec::with_capacity(opts.transactions);
    for i in 0..opts.transactions {
        let debtor = pick(&mut rng, &activity);
        let mut creditor = pick(&mut rng, &activity);
        if creditor == debtor {
            creditor = (debtor + 1 + rng.gen_range(0..np - 1)) % np;
        }
        let send = if rng.gen_bool(0.8) {
            home[debtor]
        } else {
            rng.gen_range(0..nc)
        };
        let receive = if rng.gen_bool(0.8) {
            home[creditor]
        } else {
            rng.gen_range(0..nc)
        };
        let usd: f64 = amount_usd.sample(&mut rng).clamp(10.0, 5e7);
        let (_, mu, rate, _) = cur[send];
        let amount = ((usd / rate) * 10f64.powi(mu as i32)).round().max(1.0) as u64;
        owed[debtor * nc + send] += u128::from(amount);
        incoming_usd[creditor] += usd;
        let window = WINDOWS[pick(&mut rng, &window_weights)].0;
        txs.push(json!({
            "id": format!("t{i}"),
            "debtor": format!("bank_{debtor}"),
            "creditor": format!("bank_{creditor}"),
            "amount": amount,
            "send": codes[send],
            "receive": codes[receive],
            "window": window,
        }));
    }

    let mut participants = Vec::with_capacity(np);
    for p in 0..np {
        let mut balances = Map::new();
        for (c, code) in codes.iter().enumerate() {
            let o = owed[p * nc + c] as f64;
            // Prefunded below what is owed: liquidity binds, incoming
            // credits (gridlock resolution) make up the rest.
            // A fifth of the owing positions start unfunded.
            let unfunded = rng.gen_bool(0.2);
            let b = if o == 0.0 || unfunded {
                0.0
            } else {
                (o * rng.gen_range(0.15..0.85)).floor()
            };
            balances.insert(code.to_string(), json!(b as u64));
        }
        // Limits around what the bank is owed: sometimes binding.
        let limit = if incoming_usd[p] == 0.0 {
            1_000_000.0
        } else {
            (incoming_usd[p] * rng.gen_range(0.6..1.6))
                .round()
                .max(1000.0)
        };
        participants.push(json!({
            "id": format!("bank_{p}"),
            "counterparty_limit_usd": limit,
            "balances": balances,
        }));
    }
    let spread: Vec<Value> = PAIRS
        .iter()
        .filter(|(a, b, _)| codes.contains(a) && codes.contains(b))
        .map(|(a, b, bps)| json!({"pair": [a, b], "bps": bps}))
        .collect();
    let mut currencies = Map::new();
    for (code, mu, rate, _) in cur {
        currencies.insert(
            code.to_string(),
            json!({"minor_units": mu, "usd_per_unit": rate}),
        );
    }
    let mut defer = Map::new();
    for (w, bps, _) in WINDOWS {
        defer.insert(w.to_string(), json!(bps));
    }
    let doc = json!({
        "version": 1,
        "max_batch_size": opts.max_batch_size,
        "wire_usd": 5.0,
        "consolidation_discount": 0.15,
        "spread_bps": spread,
        "defer_bps": defer,
        "currencies": currencies,
        "participants": participants,
        "transactions": txs,
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
}

/// A generated instance, parsed.
pub fn generate_instance(opts: &GenOptions) -> Result<Instance, InstanceError> {
    Instance::from_json(&generate(opts))
}
