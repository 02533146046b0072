//! The workload model: who pays whom, how much, in which currency and window.
//!
//! Realistic rather than uniform, because uniform load hides the contention
//! and netting effects the engine exists for:
//! - participants are Zipf/Pareto-skewed (a few large banks send most payments),
//! - amounts are log-normal in USD (many small payments, a long tail of large ones),
//! - 70 % of payments are in the debtor's home currency, the rest cross-border,
//! - windows are spread over RTGS, T0, T1 and T2.
//!
//! Deterministic for a seed, so that a run can be replayed.

use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::LogNormal;

use settle_codec::{Currency, ParticipantId, Transaction, Window};

/// The currencies the default node shards by, with their mid rates (USD per
/// major unit) and minor units: used to size amounts and balances.
pub const CURRENCIES: [(&str, f64); 4] =
    [("USD", 1.0), ("EUR", 1.08), ("GBP", 1.27), ("JPY", 0.0067)];

/// Share of payments whose send and receive currency are the debtor's home currency.
const HOME_CURRENCY_SHARE: f64 = 0.70;

/// Zipf exponent of participant activity: 1.1 gives the top 10 % of banks
/// roughly two thirds of the traffic, as in real payment systems.
const PARTICIPANT_SKEW: f64 = 1.1;

/// Window mix: RTGS, T0, T1, T2.
const WINDOW_WEIGHTS: [u32; 4] = [20, 30, 30, 20];

/// Median payment of USD 5,000 with a long right tail.
const AMOUNT_USD_MEDIAN: f64 = 5_000.0;
const AMOUNT_LOG_SIGMA: f64 = 1.2;
/// Clamp of the log-normal tail: no single payment above USD 50 M.
const AMOUNT_USD_MAX: f64 = 50_000_000.0;

/// A participant's home currency: spread evenly over the configured currencies.
pub fn home_currency_index(participant: u32) -> usize {
    participant as usize % CURRENCIES.len()
}

/// The `Currency` for an index of [`CURRENCIES`].
pub fn currency(index: usize) -> Currency {
    Currency::from_code(CURRENCIES[index].0).expect("CURRENCIES holds only known ISO codes")
}

/// Converts a USD value to minor units of the currency at `index`.
pub fn usd_to_minor(usd: f64, index: usize) -> u64 {
    let c = currency(index);
    let major = usd / CURRENCIES[index].1;
    let minor = major
        * 10f64.powi(i32::from(
            c.minor_units().expect("CURRENCIES are known codes"),
        ));
    (minor.round() as u64).max(1)
}

/// Generates the transactions of one client. Each client owns a disjoint id
/// space, so ids never collide across clients of one run.
pub struct Workload {
    rng: ChaCha8Rng,
    participants: WeightedIndex<f64>,
    participant_count: u32,
    windows: WeightedIndex<u32>,
    amounts: LogNormal<f64>,
    id_prefix: u128,
    sequence: u64,
    /// Scatter ids over the whole id space (like random UUIDs) instead of
    /// counting up (like a sequence or a time-ordered id).
    scattered: bool,
}

/// A bijection of the 128-bit id space (odd multipliers and xor-shifts are
/// invertible), so scattered ids stay as distinct as the sequence they come
/// from while their order is that of random ids.
pub fn scatter_id(mut x: u128) -> u128 {
    const K1: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
    const K2: u128 = 0xd6e8_feb8_6659_fd93_a5b5_45c6_4a8e_3c3b;
    x ^= x >> 67;
    x = x.wrapping_mul(K1 | 1);
    x ^= x >> 61;
    x = x.wrapping_mul(K2 | 1);
    x ^ (x >> 64)
}

impl Workload {
    /// `run_id` distinguishes runs (64 bits), `client` the client within the run.
    pub fn new(seed: u64, run_id: u64, client: u32, participant_count: u32) -> Self {
        assert!(participant_count >= 2, "a payment needs two participants");
        let weights: Vec<f64> = (0..participant_count)
            .map(|rank| 1.0 / f64::from(rank + 1).powf(PARTICIPANT_SKEW))
            .collect();
        Workload {
            rng: ChaCha8Rng::seed_from_u64(seed ^ (u64::from(client) << 32) ^ 0x5e77_1e00),
            participants: WeightedIndex::new(weights).expect("weights are positive"),
            participant_count,
            windows: WeightedIndex::new(WINDOW_WEIGHTS).expect("weights are positive"),
            amounts: LogNormal::new(AMOUNT_USD_MEDIAN.ln(), AMOUNT_LOG_SIGMA)
                .expect("valid log-normal"),
            id_prefix: (u128::from(run_id) << 64) | (u128::from(client) << 40),
            sequence: 0,
            scattered: false,
        }
    }

    /// Ids in random order over the id space ([`scatter_id`]), still unique.
    pub fn scattered(mut self) -> Self {
        self.scattered = true;
        self
    }

    /// The next transaction; `client_timestamp_us` is stamped by the caller at send time.
    pub fn next_transaction(&mut self) -> Transaction {
        let debtor = self.participants.sample(&mut self.rng) as u32;
        let mut creditor = self.participants.sample(&mut self.rng) as u32;
        if creditor == debtor {
            creditor = (debtor + 1 + self.rng.gen_range(0..self.participant_count - 1))
                % self.participant_count;
        }
        let send = home_currency_index(debtor);
        let receive = if self.rng.gen_bool(HOME_CURRENCY_SHARE) {
            send
        } else {
            let other = home_currency_index(creditor);
            if other != send {
                other
            } else {
                (send + 1 + self.rng.gen_range(0..CURRENCIES.len() - 1)) % CURRENCIES.len()
            }
        };
        let usd = self.amounts.sample(&mut self.rng).min(AMOUNT_USD_MAX);
        let window = match self.windows.sample(&mut self.rng) {
            0 => Window::Rtgs,
            1 => Window::T0,
            2 => Window::T1,
            _ => Window::T2,
        };
        self.sequence += 1;
        assert!(self.sequence < (1 << 40), "client id space exhausted");
        let id = self.id_prefix | u128::from(self.sequence);
        Transaction {
            id: if self.scattered { scatter_id(id) } else { id },
            debtor: ParticipantId(debtor),
            creditor: ParticipantId(creditor),
            amount: usd_to_minor(usd, send),
            send: currency(send),
            receive: currency(receive),
            window,
            client_timestamp_us: 0,
        }
    }

    /// Fills `batch` with `count` fresh transactions, reusing its allocation.
    pub fn fill_batch(&mut self, batch: &mut Vec<Transaction>, count: usize) {
        batch.clear();
        batch.extend((0..count).map(|_| self.next_transaction()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_transactions_and_ids_are_unique() {
        let mut a = Workload::new(7, 1, 0, 32);
        let mut b = Workload::new(7, 1, 0, 32);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let (x, y) = (a.next_transaction(), b.next_transaction());
            assert_eq!(x, y);
            assert_ne!(x.debtor, x.creditor);
            assert!(x.amount > 0);
            assert!(seen.insert(x.id), "duplicate id");
        }
    }

    #[test]
    fn mix_is_skewed_and_mostly_home_currency() {
        let mut w = Workload::new(1, 1, 0, 50);
        let n = 50_000;
        let mut home = 0;
        let mut top5 = 0;
        for _ in 0..n {
            let t = w.next_transaction();
            if t.send == t.receive {
                home += 1;
            }
            if t.debtor.0 < 5 {
                top5 += 1;
            }
        }
        let home_share = f64::from(home) / f64::from(n);
        assert!(
            (0.67..0.73).contains(&home_share),
            "home share {home_share}"
        );
        // Uniform would give 10 %; the skew must concentrate traffic.
        assert!(
            f64::from(top5) / f64::from(n) > 0.4,
            "top-5 share too low: {top5}"
        );
    }

    #[test]
    fn scattered_ids_are_distinct_and_out_of_order() {
        let mut w = Workload::new(1, 1, 0, 32).scattered();
        let ids: Vec<u128> = (0..10_000).map(|_| w.next_transaction().id).collect();
        let distinct: std::collections::HashSet<u128> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), ids.len());
        let rising = ids.windows(2).filter(|p| p[0] < p[1]).count();
        assert!(
            (4_000..6_000).contains(&rising),
            "about half the neighbours rise, as in random order: {rising}"
        );
        assert_ne!(scatter_id(1), 1);
    }
}
