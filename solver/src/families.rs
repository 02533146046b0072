//! A wider instance generator than [`crate::gen`]: named families that
//! together span the contract's space (participants 5–200, currencies
//! 2–10, skewed or uniform senders, tight or loose balances and limits,
//! one or many windows, heavy or light deferral prices, per-transaction
//! `defer_usd`, planted gridlocks and chains, the big-versus-many-small
//! trade-off, tiny to huge amounts). Seeded: the same (family, seed,
//! transactions, currencies) give the same file. The fixed suite under
//! `solver/suite/` is made from it (see `solver/reference`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde_json::{json, Map, Value};

// (window, defer bps, share of transactions when windows are mixed): the
// same windows, prices and shares as the plain generator's.
use crate::gen::WINDOWS;

/// (code, minor units, USD per unit).
const CURRENCIES_10: [(&str, u32, &str); 10] = [
    ("USD", 2, "1.0"),
    ("EUR", 2, "1.08"),
    ("GBP", 2, "1.27"),
    ("JPY", 0, "0.0067"),
    ("CHF", 2, "1.13"),
    ("CAD", 2, "0.73"),
    ("AUD", 2, "0.66"),
    ("SGD", 2, "0.74"),
    ("HKD", 2, "0.128"),
    ("NOK", 2, "0.093"),
];

/// Tradable pairs, bps: USD is the hub, crosses make netting non-trivial.
const PAIRS: [(&str, &str, f64); 14] = [
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
    ("USD", "HKD", 3.0),
    ("USD", "NOK", 5.0),
    ("EUR", "NOK", 3.0),
];

/// The family names, in suite order.
pub const FAMILIES: [&str; 12] = [
    "baseline",
    "uniform_loose",
    "skewed_tight",
    "tight_limits",
    "single_window",
    "heavy_defer",
    "light_defer",
    "aged_defer",
    "gridlock",
    "big_small",
    "tiny_huge",
    "few_banks",
];

/// How one family draws an instance.
#[derive(Clone, Debug)]
struct Params {
    participants: usize,
    /// Zipf exponent of sender/receiver activity (0: uniform).
    skew: f64,
    /// Prefunded share of what a position owes, drawn in this range.
    fund: (f64, f64),
    /// Share of owing positions that start unfunded.
    unfunded: f64,
    /// Counterparty limit as a share of what the bank is owed.
    limit: (f64, f64),
    /// `Some(w)`: every transaction in window `w`.
    single_window: Option<usize>,
    /// Multiplies every window's defer bps.
    defer_scale: f64,
    /// Share of transactions with their own `defer_usd` (aged payments).
    aged: f64,
    amount_median_usd: f64,
    amount_sigma: f64,
    /// Planted gridlock cycles (each 2–6 payments that settle only together).
    gridlocks: usize,
    /// Planted big-versus-small structures (see `plant_big_small`).
    big_small: usize,
    max_batch_size: u32,
}

fn params(family: &str, rng: &mut ChaCha8Rng, n: usize) -> Option<Params> {
    let default_participants = (n / 10).clamp(8, 200);
    let mut p = Params {
        participants: default_participants,
        skew: 0.9,
        fund: (0.15, 0.85),
        unfunded: 0.2,
        limit: (0.6, 1.6),
        single_window: None,
        defer_scale: 1.0,
        aged: 0.0,
        amount_median_usd: 20_000.0,
        amount_sigma: 1.4,
        gridlocks: 0,
        big_small: 0,
        max_batch_size: 100,
    };
    match family {
        "baseline" => {}
        "uniform_loose" => {
            p.skew = 0.0;
            p.fund = (0.7, 1.2);
            p.unfunded = 0.05;
            p.limit = (1.5, 3.0);
            p.participants = rng.gen_range(5..=200usize.min(n.max(5)));
        }
        "skewed_tight" => {
            p.skew = 1.3;
            p.fund = (0.02, 0.3);
            p.unfunded = 0.4;
        }
        "tight_limits" => {
            p.limit = (0.2, 0.6);
            p.fund = (0.5, 1.0);
        }
        "single_window" => {
            p.single_window = Some(rng.gen_range(0..WINDOWS.len()));
        }
        "heavy_defer" => p.defer_scale = 5.0,
        "light_defer" => p.defer_scale = 0.1,
        "aged_defer" => p.aged = 0.4,
        "gridlock" => {
            p.fund = (0.0, 0.1);
            p.unfunded = 0.6;
            p.gridlocks = (n / 8).max(1);
        }
        "big_small" => {
            p.big_small = (n / 40).max(1);
            p.fund = (0.3, 0.8);
        }
        "tiny_huge" => {
            p.amount_median_usd = 5_000.0;
            p.amount_sigma = 2.6;
        }
        "few_banks" => {
            p.participants = rng.gen_range(5..=8);
            p.max_batch_size = rng.gen_range(3..=20);
        }
        _ => return None,
    }
    p.participants = p.participants.clamp(5, 200);
    Some(p)
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

/// One drawn transaction, before it is written out.
struct Tx {
    debtor: usize,
    creditor: usize,
    send: usize,
    receive: usize,
    amount: u64,
    window: usize,
    defer_usd: Option<f64>,
}

struct Draw<'a> {
    rng: ChaCha8Rng,
    p: Params,
    nc: usize,
    rates: Vec<f64>,
    minor: Vec<u32>,
    activity: Vec<f64>,
    home: Vec<usize>,
    window_weights: Vec<f64>,
    txs: Vec<Tx>,
    /// Extra prefunding per (participant, currency) planted structures need.
    extra_balance: Vec<u64>,
    /// Positions whose balance a planted structure fixes (not redrawn).
    fixed_balance: Vec<bool>,
    codes: &'a [&'a str],
}

impl Draw<'_> {
    fn amount_for_usd(&self, usd: f64, c: usize) -> u64 {
        ((usd / self.rates[c]) * 10f64.powi(self.minor[c] as i32))
            .round()
            .max(1.0) as u64
    }

    fn usd_of(&self, amount: u64, c: usize) -> f64 {
        amount as f64 / 10f64.powi(self.minor[c] as i32) * self.rates[c]
    }

    fn window(&mut self) -> usize {
        match self.p.single_window {
            Some(w) => w,
            None => pick(&mut self.rng, &self.window_weights),
        }
    }

    fn random_tx(&mut self) -> Tx {
        let np = self.p.participants;
        let debtor = pick(&mut self.rng, &self.activity);
        let mut creditor = pick(&mut self.rng, &self.activity);
        if creditor == debtor {
            creditor = (debtor + 1 + self.rng.gen_range(0..np - 1)) % np;
        }
        let send = if self.rng.gen_bool(0.8) {
            self.home[debtor]
        } else {
            self.rng.gen_range(0..self.nc)
        };
        let receive = if self.rng.gen_bool(0.8) {
            self.home[creditor]
        } else {
            self.rng.gen_range(0..self.nc)
        };
        let dist = LogNormal::new(self.p.amount_median_usd.ln(), self.p.amount_sigma)
            .expect("valid log-normal");
        let usd: f64 = dist.sample(&mut self.rng).clamp(0.05, 2e8);
        let amount = self.amount_for_usd(usd, send);
        let window = self.window();
        Tx {
            debtor,
            creditor,
            send,
            receive,
            amount,
            window,
            defer_usd: None,
        }
    }

    /// A cycle of 2–6 payments of similar size in one currency among
    /// participants with nothing to spare there: each can settle only if
    /// the one before it does.
    fn plant_gridlock(&mut self) {
        let np = self.p.participants;
        let len = self.rng.gen_range(2..=6usize.min(np));
        let c = self.rng.gen_range(0..self.nc);
        let mut members: Vec<usize> = Vec::with_capacity(len);
        while members.len() < len {
            let m = self.rng.gen_range(0..np);
            if !members.contains(&m) {
                members.push(m);
            }
        }
        let usd = LogNormal::new(self.p.amount_median_usd.ln(), 0.8)
            .expect("valid log-normal")
            .sample(&mut self.rng);
        for i in 0..len {
            let (d, r) = (members[i], members[(i + 1) % len]);
            let jitter = self.rng.gen_range(0.9..1.1);
            let amount = self.amount_for_usd(usd * jitter, c);
            let window = self.window();
            // Each member holds a sliver of what it pays: the cycle must
            // settle together (or, with the smallest member's slack, partly).
            self.extra_balance[d * self.nc + c] += amount / 20;
            self.fixed_balance[d * self.nc + c] = true;
            self.txs.push(Tx {
                debtor: d,
                creditor: r,
                send: c,
                receive: c,
                amount,
                window,
                defer_usd: None,
            });
        }
    }

    /// The failure shape of issue 15: a debtor whose balance in one
    /// currency covers either one large RTGS payment (dear to defer) or a
    /// few dozen smaller later-window payments listed before it, not both.
    fn plant_big_small(&mut self) {
        let np = self.p.participants;
        let d = self.rng.gen_range(0..np);
        let c = self.home[d];
        let big_usd = self.p.amount_median_usd * self.rng.gen_range(20.0..80.0);
        let smalls = self.rng.gen_range(8..=30usize);
        let mut small_total = 0u64;
        for _ in 0..smalls {
            let mut r = self.rng.gen_range(0..np);
            if r == d {
                r = (r + 1) % np;
            }
            let usd = big_usd / smalls as f64 * self.rng.gen_range(0.5..1.5);
            let amount = self.amount_for_usd(usd, c);
            small_total += amount;
            let window = if self.p.single_window.is_some() {
                self.window()
            } else {
                self.rng.gen_range(1..WINDOWS.len())
            };
            let receive = if self.rng.gen_bool(0.7) {
                c
            } else {
                self.home[r]
            };
            self.txs.push(Tx {
                debtor: d,
                creditor: r,
                send: c,
                receive,
                amount,
                window,
                defer_usd: None,
            });
        }
        let mut r = self.rng.gen_range(0..np);
        if r == d {
            r = (r + 1) % np;
        }
        let big = self.amount_for_usd(big_usd, c);
        let window = self.p.single_window.unwrap_or(0);
        self.txs.push(Tx {
            debtor: d,
            creditor: r,
            send: c,
            receive: c,
            amount: big,
            window,
            defer_usd: None,
        });
        // Enough for the big one or most of the small ones, not both.
        let room = big.max(small_total) + big.min(small_total) / 4;
        self.extra_balance[d * self.nc + c] += room;
        self.fixed_balance[d * self.nc + c] = true;
    }
}

/// The instance file text of `family` (one of [`FAMILIES`]), or `None`
/// for an unknown family. `currencies` is clamped to 2..=10.
pub fn generate_family(
    family: &str,
    seed: u64,
    transactions: usize,
    currencies: usize,
) -> Option<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fxhash(family));
    let p = params(family, &mut rng, transactions)?;
    let nc = currencies.clamp(2, 10);
    let cur = &CURRENCIES_10[..nc];
    let codes: Vec<&str> = cur.iter().map(|c| c.0).collect();
    let np = p.participants;
    let activity: Vec<f64> = (0..np)
        .map(|i| 1.0 / ((i + 1) as f64).powf(p.skew))
        .collect();
    // Home currencies: USD and EUR more common, the rest even.
    let home_weights: Vec<f64> = (0..nc).map(|c| if c < 2 { 3.0 } else { 1.0 }).collect();
    let home: Vec<usize> = (0..np).map(|_| pick(&mut rng, &home_weights)).collect();
    let window_weights: Vec<f64> = WINDOWS.iter().map(|w| w.2).collect();
    let mut d = Draw {
        rng,
        nc,
        rates: cur
            .iter()
            .map(|c| c.2.parse::<f64>().expect("rate"))
            .collect(),
        minor: cur.iter().map(|c| c.1).collect(),
        activity,
        home,
        window_weights,
        txs: Vec::with_capacity(transactions),
        extra_balance: vec![0; np * nc],
        fixed_balance: vec![false; np * nc],
        codes: &codes,
        p,
    };
    let planted_budget = transactions / 2;
    for _ in 0..d.p.big_small {
        if d.txs.len() >= planted_budget {
            break;
        }
        d.plant_big_small();
    }
    for _ in 0..d.p.gridlocks {
        if d.txs.len() >= planted_budget {
            break;
        }
        d.plant_gridlock();
    }
    while d.txs.len() < transactions {
        let t = d.random_tx();
        d.txs.push(t);
    }
    d.txs.truncate(transactions);
    // Interleave planted and random payments (order matters to naive).
    for i in (1..d.txs.len()).rev() {
        // Planted structures keep their small-before-big order often.
        if d.rng.gen_bool(0.5) {
            let j = d.rng.gen_range(0..=i);
            d.txs.swap(i, j);
        }
    }
    if d.p.aged > 0.0 {
        for i in 0..d.txs.len() {
            if !d.rng.gen_bool(d.p.aged) {
                continue;
            }
            let t = &d.txs[i];
            let usd = d.usd_of(t.amount, t.send);
            let bps = WINDOWS[t.window].1 * d.p.defer_scale;
            let age = d.rng.gen_range(1..=6) as f64;
            // Dearer the longer it waited; a few past their deadline.
            let cost = if d.rng.gen_bool(0.05) {
                10_000.0
            } else {
                usd * bps * age / 10_000.0
            };
            d.txs[i].defer_usd = Some((cost * 100.0).round() / 100.0);
        }
    }
    Some(write(&mut d))
}

fn write(d: &mut Draw) -> String {
    let (np, nc) = (d.p.participants, d.nc);
    let mut owed = vec![0u128; np * nc];
    let mut incoming_usd = vec![0f64; np];
    let mut txs = Vec::with_capacity(d.txs.len());
    for (i, t) in d.txs.iter().enumerate() {
        owed[t.debtor * nc + t.send] += u128::from(t.amount);
        incoming_usd[t.creditor] += d.usd_of(t.amount, t.send);
        let mut v = json!({
            "id": format!("t{i}"),
            "debtor": format!("bank_{}", t.debtor),
            "creditor": format!("bank_{}", t.creditor),
            "amount": t.amount,
            "send": d.codes[t.send],
            "receive": d.codes[t.receive],
            "window": WINDOWS[t.window].0,
        });
        if let Some(usd) = t.defer_usd {
            v["defer_usd"] = json!(usd);
        }
        txs.push(v);
    }
    let mut participants = Vec::with_capacity(np);
    for (p, &incoming) in incoming_usd.iter().enumerate() {
        let mut balances = Map::new();
        for c in 0..nc {
            let slot = p * nc + c;
            let o = owed[slot] as f64;
            let b = if d.fixed_balance[slot] {
                d.extra_balance[slot] as f64
            } else if o == 0.0 || d.rng.gen_bool(d.p.unfunded) {
                0.0
            } else {
                (o * d.rng.gen_range(d.p.fund.0..d.p.fund.1)).floor()
            };
            balances.insert(d.codes[c].to_string(), json!(b as u64));
        }
        let limit = if incoming == 0.0 {
            1_000_000.0
        } else {
            (incoming * d.rng.gen_range(d.p.limit.0..d.p.limit.1))
                .round()
                .max(100.0)
        };
        participants.push(json!({
            "id": format!("bank_{p}"),
            "counterparty_limit_usd": limit,
            "balances": balances,
        }));
    }
    let spread: Vec<Value> = PAIRS
        .iter()
        .filter(|(a, b, _)| d.codes.contains(a) && d.codes.contains(b))
        .map(|(a, b, bps)| json!({"pair": [a, b], "bps": bps}))
        .collect();
    let mut currencies = Map::new();
    for &(code, mu, rate) in CURRENCIES_10.iter().take(nc) {
        let rate: Value = serde_json::from_str(rate).expect("a rate is a JSON number");
        currencies.insert(
            code.to_string(),
            json!({"minor_units": mu, "usd_per_unit": rate}),
        );
    }
    let mut defer = Map::new();
    for (w, bps, _) in WINDOWS {
        defer.insert(w.to_string(), json!(bps * d.p.defer_scale));
    }
    let doc = json!({
        "version": 1,
        "max_batch_size": d.p.max_batch_size,
        "wire_usd": 5.0,
        "consolidation_discount": 0.15,
        "spread_bps": spread,
        "defer_bps": defer,
        "currencies": currencies,
        "participants": participants,
        "transactions": txs,
    });
    serde_json::to_string(&doc).expect("a JSON value always serialises")
}

/// A stable hash of a family name (FNV-1a): seeds differ per family.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instance;

    #[test]
    fn every_family_generates_valid_instances_deterministically() {
        for family in FAMILIES {
            for (n, nc) in [(10, 2), (60, 4), (200, 10)] {
                let a = generate_family(family, 3, n, nc).expect("known family");
                let b = generate_family(family, 3, n, nc).expect("known family");
                assert_eq!(a, b, "{family}: same seed, same file");
                let inst =
                    Instance::from_json(&a).unwrap_or_else(|e| panic!("{family} {n} {nc}: {e}"));
                assert_eq!(inst.transactions.len(), n, "{family}");
                assert_eq!(inst.currencies.len(), nc, "{family}");
            }
        }
        assert!(generate_family("nope", 1, 10, 4).is_none());
    }
}
