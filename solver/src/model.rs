//! The validated instance: dense numeric indices, derived amounts and USD
//! values, built from JSON ([`Instance::from_json`]) or in-process
//! ([`InstanceBuilder`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::{convert_amount, Decimal};
use crate::fx::{Edge, FxGraph};

/// Largest power of ten used for the fixed-point USD scale: keeps every USD
/// value of an amount below 2^127 for any sane rate.
const USD_SCALE_MAX: i32 = 24;

/// The only instance format version this crate reads.
pub const INSTANCE_VERSION: u32 = 1;

/// A refused instance: the offending field (a JSON path) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstanceError {
    #[error("malformed instance JSON: {0}")]
    Json(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InstanceError {
    InstanceError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Clone, Debug)]
pub struct Currency {
    pub code: String,
    pub minor_units: u32,
    pub usd_per_unit: Decimal,
}

#[derive(Clone, Debug)]
pub struct Participant {
    pub id: String,
    pub counterparty_limit_usd: Decimal,
    /// Starting balance per currency index, in minor units.
    pub balances: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Window {
    pub name: String,
    pub defer_bps: f64,
}

#[derive(Clone, Debug)]
pub struct Pair {
    pub a: u32,
    pub b: u32,
    pub bps: f64,
}

#[derive(Clone, Debug)]
pub struct Transaction {
    pub id: String,
    pub debtor: u32,
    pub creditor: u32,
    /// In the send currency's minor units.
    pub amount: u64,
    pub send: u32,
    pub receive: u32,
    pub window: u32,
    /// `amount` converted exactly (round half to even), receive minor units.
    pub receive_amount: u64,
    /// The transaction's own price of deferral (USD), replacing its
    /// window's `defer_bps` when present (spec: Deferral).
    pub defer_usd: Option<f64>,
}

/// A validated instance. Everything the solver needs per transaction is
/// precomputed here, once.
#[derive(Clone, Debug)]
pub struct Instance {
    pub max_batch_size: u32,
    pub wire_usd: f64,
    pub consolidation_discount: f64,
    pub currencies: Vec<Currency>,
    pub pairs: Vec<Pair>,
    pub windows: Vec<Window>,
    pub participants: Vec<Participant>,
    pub transactions: Vec<Transaction>,
    pub(crate) fx: FxGraph,
    /// USD values are exact integers in units of 10^-usd_scale USD.
    pub(crate) usd_scale: i32,
    /// Exact USD value of `amount` (send side), fixed point.
    pub(crate) send_usd_fixed: Vec<i128>,
    /// Exact USD value of `receive_amount` (creditor side), fixed point.
    pub(crate) receive_usd_fixed: Vec<i128>,
    /// `send_usd_fixed` as f64 USD: the value used for FX and deferral.
    pub(crate) value_usd: Vec<f64>,
    /// Cost of deferring each transaction, USD.
    pub(crate) defer_usd: Vec<f64>,
    /// Counterparty limit per participant, fixed point (floored).
    pub(crate) limit_fixed: Vec<i128>,
    /// (creditor, receive currency) of each group, sorted.
    pub(crate) groups: Vec<(u32, u32)>,
    /// Group index of each transaction.
    pub(crate) group_of: Vec<u32>,
}

impl Instance {
    /// Parses and validates an instance file (spec v1).
    pub fn from_json(text: &str) -> Result<Instance, InstanceError> {
        let raw: RawInstance =
            serde_json::from_str(text).map_err(|e| InstanceError::Json(e.to_string()))?;
        raw.into_instance()
    }

    pub fn fx(&self) -> &FxGraph {
        &self.fx
    }

    /// USD value of transaction `t` (its `amount`), as the spec values it for
    /// FX positions and deferral.
    pub fn value_usd(&self, t: usize) -> f64 {
        self.value_usd[t]
    }

    /// USD cost of deferring transaction `t`.
    pub fn defer_usd(&self, t: usize) -> f64 {
        self.defer_usd[t]
    }

    /// USD value of `receive_amount` of `t` (what counts against the limit).
    pub fn receive_value_usd(&self, t: usize) -> f64 {
        self.receive_usd_fixed[t] as f64 / 10f64.powi(self.usd_scale)
    }

    /// Number of (creditor, receive currency) groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// (creditor, currency) of group `g`.
    pub fn group(&self, g: usize) -> (u32, u32) {
        self.groups[g]
    }

    /// Group of transaction `t`.
    pub fn group_of(&self, t: usize) -> usize {
        self.group_of[t] as usize
    }

    /// Balance slot of (participant, currency): the index into per-slot arrays.
    pub fn slot(&self, participant: u32, currency: u32) -> usize {
        participant as usize * self.currencies.len() + currency as usize
    }

    pub fn slot_count(&self) -> usize {
        self.participants.len() * self.currencies.len()
    }

    /// Wire cost of a group of `n` settled transactions split into the fewest
    /// batches of at most `max_batch_size`, as evenly as possible (so every
    /// batch carries two or more whenever that is possible).
    pub fn group_wire_usd(&self, n: usize) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let b = self.max_batch_size as usize;
        let k = n.div_ceil(b);
        let singles = (2 * k).saturating_sub(n).min(k);
        let w = self.wire_usd;
        singles as f64 * w + (k - singles) as f64 * w * (1.0 - self.consolidation_discount)
    }

    /// Looks up a transaction index by id (linear; the node maps by index).
    pub fn transaction_index(&self, id: &str) -> Option<usize> {
        self.transactions.iter().position(|t| t.id == id)
    }
}

/// Builds an [`Instance`] in-process, with indices chosen by the caller's
/// insertion order; `build` validates like `from_json`.
#[derive(Clone, Debug, Default)]
pub struct InstanceBuilder {
    max_batch_size: u32,
    wire_usd: f64,
    consolidation_discount: f64,
    currencies: Vec<Currency>,
    pairs: Vec<Pair>,
    windows: Vec<Window>,
    participants: Vec<Participant>,
    transactions: Vec<Transaction>,
}

impl InstanceBuilder {
    pub fn new(max_batch_size: u32, wire_usd: f64, consolidation_discount: f64) -> Self {
        InstanceBuilder {
            max_batch_size,
            wire_usd,
            consolidation_discount,
            ..Default::default()
        }
    }

    pub fn currency(&mut self, code: &str, minor_units: u32, usd_per_unit: Decimal) -> u32 {
        self.currencies.push(Currency {
            code: code.to_string(),
            minor_units,
            usd_per_unit,
        });
        (self.currencies.len() - 1) as u32
    }

    pub fn pair(&mut self, a: u32, b: u32, bps: f64) -> &mut Self {
        self.pairs.push(Pair { a, b, bps });
        self
    }

    pub fn window(&mut self, name: &str, defer_bps: f64) -> u32 {
        self.windows.push(Window {
            name: name.to_string(),
            defer_bps,
        });
        (self.windows.len() - 1) as u32
    }

    /// `balances`: (currency index, minor units); missing currencies are zero.
    pub fn participant(&mut self, id: &str, limit_usd: Decimal, balances: &[(u32, u64)]) -> u32 {
        let mut b = vec![0u64; self.currencies.len()];
        for &(c, v) in balances {
            if let Some(slot) = b.get_mut(c as usize) {
                *slot = v;
            }
        }
        self.participants.push(Participant {
            id: id.to_string(),
            counterparty_limit_usd: limit_usd,
            balances: b,
        });
        (self.participants.len() - 1) as u32
    }

    #[allow(clippy::too_many_arguments)]
    pub fn transaction(
        &mut self,
        id: &str,
        debtor: u32,
        creditor: u32,
        amount: u64,
        send: u32,
        receive: u32,
        window: u32,
    ) -> &mut Self {
        self.transactions.push(Transaction {
            id: id.to_string(),
            debtor,
            creditor,
            amount,
            send,
            receive,
            window,
            receive_amount: 0,
            defer_usd: None,
        });
        self
    }

    /// Gives the last added transaction its own deferral cost (USD, >= 0),
    /// which replaces its window's `defer_bps` (spec: Deferral). `build`
    /// refuses a negative or non-finite one.
    pub fn defer_usd(&mut self, usd: f64) -> &mut Self {
        if let Some(t) = self.transactions.last_mut() {
            t.defer_usd = Some(usd);
        }
        self
    }

    pub fn build(self) -> Result<Instance, InstanceError> {
        let InstanceBuilder {
            max_batch_size,
            wire_usd,
            consolidation_discount,
            currencies,
            pairs,
            windows,
            mut participants,
            mut transactions,
        } = self;
        if max_batch_size == 0 {
            return Err(invalid("max_batch_size", "must be at least 1, got 0"));
        }
        if !(wire_usd.is_finite() && wire_usd >= 0.0) {
            return Err(invalid("wire_usd", format!("must be >= 0, got {wire_usd}")));
        }
        if !(0.0..=1.0).contains(&consolidation_discount) {
            return Err(invalid(
                "consolidation_discount",
                format!("must be within [0, 1], got {consolidation_discount}"),
            ));
        }
        let nc = currencies.len();
        let mut seen = BTreeSet::new();
        for c in &currencies {
            let field = format!("currencies.{}", c.code);
            if !seen.insert(c.code.as_str()) {
                return Err(invalid(field, "duplicate currency"));
            }
            if c.minor_units > 18 {
                return Err(invalid(
                    format!("{field}.minor_units"),
                    format!("must be at most 18, got {}", c.minor_units),
                ));
            }
            if c.usd_per_unit.is_zero() {
                return Err(invalid(
                    format!("{field}.usd_per_unit"),
                    "must be positive, got 0",
                ));
            }
        }
        let mut seen_pairs = BTreeSet::new();
        for (i, p) in pairs.iter().enumerate() {
            let field = format!("spread_bps[{i}]");
            if p.a as usize >= nc || p.b as usize >= nc {
                return Err(invalid(format!("{field}.pair"), "unknown currency"));
            }
            if p.a == p.b {
                return Err(invalid(
                    format!("{field}.pair"),
                    format!(
                        "a pair needs two currencies, got {0}/{0}",
                        currencies[p.a as usize].code
                    ),
                ));
            }
            if !(p.bps.is_finite() && p.bps >= 0.0) {
                return Err(invalid(
                    format!("{field}.bps"),
                    format!("must be >= 0, got {}", p.bps),
                ));
            }
            if !seen_pairs.insert((p.a.min(p.b), p.a.max(p.b))) {
                return Err(invalid(
                    format!("{field}.pair"),
                    format!(
                        "duplicate pair {}/{}",
                        currencies[p.a as usize].code, currencies[p.b as usize].code
                    ),
                ));
            }
        }
        for w in &windows {
            if !(w.defer_bps.is_finite() && w.defer_bps >= 0.0) {
                return Err(invalid(
                    format!("defer_bps.{}", w.name),
                    format!("must be >= 0, got {}", w.defer_bps),
                ));
            }
        }
        let edges: Vec<Edge> = pairs
            .iter()
            .map(|p| Edge {
                a: p.a,
                b: p.b,
                cost: p.bps / 10_000.0,
            })
            .collect();
        let fx = FxGraph::new(nc, edges).map_err(|c| {
            invalid(
                format!("currencies.{}", currencies[c as usize].code),
                format!(
                    "no tradable path reaches {} from {} (spread_bps)",
                    currencies[c as usize].code, currencies[0].code
                ),
            )
        })?;
        let mut seen = BTreeSet::new();
        for (i, p) in participants.iter_mut().enumerate() {
            if !seen.insert(p.id.clone()) {
                return Err(invalid(
                    format!("participants[{i}].id"),
                    format!("duplicate participant {:?}", p.id),
                ));
            }
            p.balances.resize(nc, 0);
        }
        // Fixed-point USD scale: every amount's USD value is an integer there.
        let usd_scale = currencies
            .iter()
            .map(|c| c.minor_units as i32 - c.usd_per_unit.exponent())
            .max()
            .unwrap_or(0)
            .max(0);
        if usd_scale > USD_SCALE_MAX {
            return Err(invalid(
                "currencies",
                format!(
                    "rates with too many decimals (scale 10^-{usd_scale} > 10^-{USD_SCALE_MAX})"
                ),
            ));
        }
        let usd_fixed = |amount: u64, c: &Currency| -> Option<i128> {
            let e = c.usd_per_unit.exponent() - c.minor_units as i32 + usd_scale;
            debug_assert!(e >= 0);
            let p = 10i128.checked_pow(e as u32)?;
            (amount as i128)
                .checked_mul(c.usd_per_unit.mantissa() as i128)?
                .checked_mul(p)
        };
        let np = participants.len();
        let nw = windows.len();
        let mut seen = BTreeSet::new();
        let mut send_usd_fixed = Vec::with_capacity(transactions.len());
        let mut receive_usd_fixed = Vec::with_capacity(transactions.len());
        for (i, t) in transactions.iter_mut().enumerate() {
            let field = |f: &str| format!("transactions[{i}].{f}");
            if !seen.insert(t.id.clone()) {
                return Err(invalid(
                    field("id"),
                    format!("duplicate transaction id {:?}", t.id),
                ));
            }
            if t.debtor as usize >= np {
                return Err(invalid(field("debtor"), "unknown participant"));
            }
            if t.creditor as usize >= np {
                return Err(invalid(field("creditor"), "unknown participant"));
            }
            if t.send as usize >= nc {
                return Err(invalid(field("send"), "unknown currency"));
            }
            if t.receive as usize >= nc {
                return Err(invalid(field("receive"), "unknown currency"));
            }
            if t.window as usize >= nw {
                return Err(invalid(field("window"), "unknown window"));
            }
            if t.amount == 0 {
                return Err(invalid(field("amount"), "must be positive, got 0"));
            }
            if let Some(d) = t.defer_usd {
                if !(d.is_finite() && d >= 0.0) {
                    return Err(invalid(
                        field("defer_usd"),
                        format!("must be >= 0, got {d}"),
                    ));
                }
            }
            let (cs, cr) = (
                &currencies[t.send as usize],
                &currencies[t.receive as usize],
            );
            t.receive_amount = convert_amount(
                t.amount,
                cs.minor_units,
                cs.usd_per_unit,
                cr.minor_units,
                cr.usd_per_unit,
            )
            .map_err(|e| invalid(field("amount"), format!("{}: {e}", t.amount)))?;
            let s = usd_fixed(t.amount, cs)
                .ok_or_else(|| invalid(field("amount"), format!("{} is too large", t.amount)))?;
            let r = usd_fixed(t.receive_amount, cr)
                .ok_or_else(|| invalid(field("amount"), format!("{} is too large", t.amount)))?;
            send_usd_fixed.push(s);
            receive_usd_fixed.push(r);
        }
        // Sums over all transactions must not overflow either.
        let total: Option<i128> = send_usd_fixed
            .iter()
            .chain(receive_usd_fixed.iter())
            .try_fold(0i128, |acc, v| acc.checked_add(*v));
        if total.is_none_or(|t| t > i128::MAX / 4) {
            return Err(invalid("transactions", "total USD value out of range"));
        }
        let unit = 10f64.powi(usd_scale);
        let value_usd: Vec<f64> = send_usd_fixed.iter().map(|&v| v as f64 / unit).collect();
        let defer_usd: Vec<f64> = transactions
            .iter()
            .zip(&value_usd)
            .map(|(t, v)| {
                t.defer_usd
                    .unwrap_or(v * windows[t.window as usize].defer_bps / 10_000.0)
            })
            .collect();
        let limit_fixed = participants
            .iter()
            .map(|p| {
                p.counterparty_limit_usd
                    .to_fixed_floor(usd_scale)
                    .unwrap_or(i128::MAX / 4)
                    .min(i128::MAX / 4)
            })
            .collect();
        let mut group_ids: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for t in &transactions {
            group_ids.insert((t.creditor, t.receive), 0);
        }
        for (i, v) in group_ids.values_mut().enumerate() {
            *v = i as u32;
        }
        let groups: Vec<(u32, u32)> = group_ids.keys().copied().collect();
        let group_of = transactions
            .iter()
            .map(|t| group_ids[&(t.creditor, t.receive)])
            .collect();
        Ok(Instance {
            max_batch_size,
            wire_usd,
            consolidation_discount,
            currencies,
            pairs,
            windows,
            participants,
            transactions,
            fx,
            usd_scale,
            send_usd_fixed,
            receive_usd_fixed,
            value_usd,
            defer_usd,
            limit_fixed,
            groups,
            group_of,
        })
    }
}

// ---- JSON form ---------------------------------------------------------

#[derive(Deserialize)]
struct RawInstance {
    version: u32,
    max_batch_size: u64,
    wire_usd: f64,
    consolidation_discount: f64,
    spread_bps: Vec<RawPair>,
    defer_bps: BTreeMap<String, f64>,
    currencies: BTreeMap<String, RawCurrency>,
    participants: Vec<RawParticipant>,
    transactions: Vec<RawTransaction>,
}

#[derive(Deserialize)]
struct RawPair {
    pair: Vec<String>,
    bps: f64,
}

#[derive(Deserialize)]
struct RawCurrency {
    minor_units: u32,
    usd_per_unit: Box<RawValue>,
}

#[derive(Deserialize)]
struct RawParticipant {
    id: String,
    counterparty_limit_usd: Box<RawValue>,
    #[serde(default)]
    balances: BTreeMap<String, serde_json::Number>,
}

#[derive(Deserialize)]
struct RawTransaction {
    id: String,
    debtor: String,
    creditor: String,
    amount: serde_json::Number,
    send: String,
    receive: String,
    window: String,
    #[serde(default)]
    defer_usd: Option<f64>,
}

fn parse_decimal(field: String, raw: &RawValue) -> Result<Decimal, InstanceError> {
    let text = raw.get();
    text.parse::<Decimal>()
        .map_err(|e| invalid(field, format!("{e}, got {text}")))
}

fn parse_amount(
    field: String,
    n: &serde_json::Number,
    allow_zero: bool,
) -> Result<u64, InstanceError> {
    if let Some(v) = n.as_u64() {
        if v == 0 && !allow_zero {
            return Err(invalid(field, "must be positive, got 0"));
        }
        return Ok(v);
    }
    if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
        let what = if allow_zero {
            "must be >= 0"
        } else {
            "must be positive"
        };
        return Err(invalid(field, format!("{what}, got {n}")));
    }
    Err(invalid(
        field,
        format!("must be an integer in minor units, got {n}"),
    ))
}

impl RawInstance {
    fn into_instance(self) -> Result<Instance, InstanceError> {
        if self.version != INSTANCE_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "unsupported version {}, expected {INSTANCE_VERSION}",
                    self.version
                ),
            ));
        }
        let max_batch_size = u32::try_from(self.max_batch_size).map_err(|_| {
            invalid(
                "max_batch_size",
                format!("too large: {}", self.max_batch_size),
            )
        })?;
        let mut b =
            InstanceBuilder::new(max_batch_size, self.wire_usd, self.consolidation_discount);
        let mut currency_ix: BTreeMap<&str, u32> = BTreeMap::new();
        for (code, c) in &self.currencies {
            let rate = parse_decimal(format!("currencies.{code}.usd_per_unit"), &c.usd_per_unit)?;
            currency_ix.insert(code, b.currency(code, c.minor_units, rate));
        }
        let cur = |field: String, code: &str| -> Result<u32, InstanceError> {
            currency_ix
                .get(code)
                .copied()
                .ok_or_else(|| invalid(field, format!("unknown currency {code:?}")))
        };
        for (i, p) in self.spread_bps.iter().enumerate() {
            if p.pair.len() != 2 {
                return Err(invalid(
                    format!("spread_bps[{i}].pair"),
                    format!("must name two currencies, got {}", p.pair.len()),
                ));
            }
            let a = cur(format!("spread_bps[{i}].pair[0]"), &p.pair[0])?;
            let c = cur(format!("spread_bps[{i}].pair[1]"), &p.pair[1])?;
            b.pair(a, c, p.bps);
        }
        let mut window_ix: BTreeMap<&str, u32> = BTreeMap::new();
        for (name, bps) in &self.defer_bps {
            window_ix.insert(name, b.window(name, *bps));
        }
        let mut participant_ix: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, p) in self.participants.iter().enumerate() {
            let limit = parse_decimal(
                format!("participants[{i}].counterparty_limit_usd"),
                &p.counterparty_limit_usd,
            )?;
            let mut balances = Vec::with_capacity(p.balances.len());
            for (code, v) in &p.balances {
                let c = cur(format!("participants[{i}].balances.{code}"), code)?;
                balances.push((
                    c,
                    parse_amount(format!("participants[{i}].balances.{code}"), v, true)?,
                ));
            }
            let ix = b.participant(&p.id, limit, &balances);
            if participant_ix.insert(&p.id, ix).is_some() {
                return Err(invalid(
                    format!("participants[{i}].id"),
                    format!("duplicate participant {:?}", p.id),
                ));
            }
        }
        let part = |field: String, id: &str| -> Result<u32, InstanceError> {
            participant_ix
                .get(id)
                .copied()
                .ok_or_else(|| invalid(field, format!("unknown participant {id:?}")))
        };
        for (i, t) in self.transactions.iter().enumerate() {
            let f = |name: &str| format!("transactions[{i}].{name}");
            let debtor = part(f("debtor"), &t.debtor)?;
            let creditor = part(f("creditor"), &t.creditor)?;
            let send = cur(f("send"), &t.send)?;
            let receive = cur(f("receive"), &t.receive)?;
            let window = window_ix
                .get(t.window.as_str())
                .copied()
                .ok_or_else(|| invalid(f("window"), format!("unknown window {:?}", t.window)))?;
            let amount = parse_amount(f("amount"), &t.amount, false)?;
            b.transaction(&t.id, debtor, creditor, amount, send, receive, window);
            if let Some(d) = t.defer_usd {
                b.defer_usd(d);
            }
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SPEC_EXAMPLE: &str = r#"{
      "version": 1, "max_batch_size": 1000, "wire_usd": 5.0, "consolidation_discount": 0.15,
      "spread_bps": [
        {"pair": ["USD", "EUR"], "bps": 2.5}, {"pair": ["USD", "GBP"], "bps": 3.0},
        {"pair": ["USD", "JPY"], "bps": 2.0}, {"pair": ["EUR", "GBP"], "bps": 2.0}],
      "defer_bps": {"RTGS": 50.0, "T0": 10.0, "T1": 2.0, "T2": 1.0},
      "currencies": {
        "USD": {"minor_units": 2, "usd_per_unit": 1.0}, "EUR": {"minor_units": 2, "usd_per_unit": 1.08},
        "GBP": {"minor_units": 2, "usd_per_unit": 1.27}, "JPY": {"minor_units": 0, "usd_per_unit": 0.0067}},
      "participants": [
        {"id": "bank_a", "counterparty_limit_usd": 2.0e7,
         "balances": {"USD": 150000000, "EUR": 0, "GBP": 2500000, "JPY": 0}},
        {"id": "bank_b", "counterparty_limit_usd": 5.0e6, "balances": {"USD": 0, "EUR": 4000000}}],
      "transactions": [
        {"id": "t1", "debtor": "bank_a", "creditor": "bank_b",
         "amount": 1250000, "send": "USD", "receive": "EUR", "window": "RTGS"}]
    }"#;

    fn with(from: &str, to: &str) -> Result<Instance, InstanceError> {
        assert!(SPEC_EXAMPLE.contains(from), "test edits must apply: {from}");
        Instance::from_json(&SPEC_EXAMPLE.replacen(from, to, 1))
    }

    fn err_field(r: Result<Instance, InstanceError>) -> String {
        match r {
            Err(InstanceError::Invalid { field, message }) => format!("{field}: {message}"),
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn spec_example_parses_with_exact_receive_amount() {
        let inst = Instance::from_json(SPEC_EXAMPLE).unwrap();
        assert_eq!(inst.currencies.len(), 4);
        let t = &inst.transactions[0];
        assert_eq!(t.receive_amount, 1_157_407);
        assert!((inst.value_usd(0) - 12_500.0).abs() < 1e-9);
        assert!((inst.defer_usd(0) - 62.5).abs() < 1e-9);
        // Missing balance is zero; limit parsed from exponent notation.
        let b = &inst.participants[1];
        assert_eq!(b.counterparty_limit_usd, "5000000".parse().unwrap());
        assert_eq!(inst.group_count(), 1);
    }

    #[test]
    fn errors_name_field_and_value() {
        let e = err_field(with(r#""send": "USD""#, r#""send": "XYZ""#));
        assert!(
            e.contains("transactions[0].send") && e.contains("XYZ"),
            "{e}"
        );
        let e = err_field(with(r#""creditor": "bank_b""#, r#""creditor": "bank_z""#));
        assert!(
            e.contains("transactions[0].creditor") && e.contains("bank_z"),
            "{e}"
        );
        let e = err_field(with(r#""window": "RTGS""#, r#""window": "T9""#));
        assert!(
            e.contains("transactions[0].window") && e.contains("T9"),
            "{e}"
        );
        let e = err_field(with("\"amount\": 1250000", "\"amount\": -5"));
        assert!(
            e.contains("transactions[0].amount") && e.contains("-5"),
            "{e}"
        );
        let e = err_field(with("\"amount\": 1250000", "\"amount\": 0"));
        assert!(
            e.contains("transactions[0].amount") && e.contains('0'),
            "{e}"
        );
        let e = err_field(with("\"amount\": 1250000", "\"amount\": 12.5"));
        assert!(
            e.contains("transactions[0].amount") && e.contains("12.5"),
            "{e}"
        );
        let e = err_field(with(
            r#""pair": ["USD", "JPY"]"#,
            r#""pair": ["USD", "XAU"]"#,
        ));
        assert!(
            e.contains("spread_bps[2].pair[1]") && e.contains("XAU"),
            "{e}"
        );
        let e = err_field(with(r#"{"pair": ["USD", "JPY"], "bps": 2.0}, "#, ""));
        assert!(
            e.contains("currencies.JPY") && e.contains("no tradable path"),
            "{e}"
        );
        let e = err_field(with(r#""EUR": 0,"#, r#""EUR": -3,"#));
        assert!(
            e.contains("participants[0].balances.EUR") && e.contains("-3"),
            "{e}"
        );
        let e = err_field(with(r#""version": 1"#, r#""version": 2"#));
        assert!(e.contains("version"), "{e}");
        let e = err_field(with(r#""usd_per_unit": 1.08"#, r#""usd_per_unit": "x""#));
        assert!(e.contains("currencies.EUR.usd_per_unit"), "{e}");
        let e = err_field(with("\"max_batch_size\": 1000", "\"max_batch_size\": 0"));
        assert!(e.contains("max_batch_size"), "{e}");
        let e = err_field(with(r#""id": "bank_b""#, r#""id": "bank_a""#));
        assert!(
            e.contains("participants[1].id") && e.contains("bank_a"),
            "{e}"
        );
        let e = err_field(with("\"bps\": 2.5", "\"bps\": -1"));
        assert!(e.contains("spread_bps[0].bps"), "{e}");
        let e = err_field(Instance::from_json("{not json"));
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn defer_usd_replaces_the_window_price() {
        let inst = with(
            r#""window": "RTGS""#,
            r#""window": "RTGS", "defer_usd": 12.5"#,
        )
        .unwrap();
        assert!((inst.defer_usd(0) - 12.5).abs() < 1e-12);
        let inst = with(r#""window": "RTGS""#, r#""window": "RTGS", "defer_usd": 0"#).unwrap();
        assert_eq!(inst.defer_usd(0), 0.0);
        let e = err_field(with(
            r#""window": "RTGS""#,
            r#""window": "RTGS", "defer_usd": -1"#,
        ));
        assert!(
            e.contains("transactions[0].defer_usd") && e.contains("-1"),
            "{e}"
        );
        let e = err_field(with(
            r#""window": "RTGS""#,
            r#""window": "RTGS", "defer_usd": "x""#,
        ));
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn duplicate_transaction_id_is_refused() {
        let dup = r#"{"id": "t1", "debtor": "bank_a", "creditor": "bank_b",
         "amount": 1250000, "send": "USD", "receive": "EUR", "window": "RTGS"}"#;
        let text = SPEC_EXAMPLE.replacen(
            r#""transactions": ["#,
            &format!(r#""transactions": [{dup},"#),
            1,
        );
        let e = err_field(Instance::from_json(&text));
        assert!(e.contains("transactions[1].id") && e.contains("t1"), "{e}");
    }

    #[test]
    fn wire_cost_splits_and_discounts() {
        let inst = Instance::from_json(SPEC_EXAMPLE).unwrap();
        assert_eq!(inst.group_wire_usd(0), 0.0);
        assert_eq!(inst.group_wire_usd(1), 5.0);
        assert!((inst.group_wire_usd(2) - 4.25).abs() < 1e-12);
        assert!((inst.group_wire_usd(1000) - 4.25).abs() < 1e-12);
        assert!((inst.group_wire_usd(1001) - 8.5).abs() < 1e-12);
        let mut small = inst.clone();
        small.max_batch_size = 2;
        assert!((small.group_wire_usd(3) - 9.25).abs() < 1e-12);
        small.max_batch_size = 1;
        assert!((small.group_wire_usd(3) - 15.0).abs() < 1e-12);
    }
}
