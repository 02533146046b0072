//! The transaction, its per-transaction result, lookups, and the JSON form
//! used at the edges.

use core::fmt;

use serde::{Deserialize as SerdeDeserialize, Serialize as SerdeSerialize};

use crate::ids::{Currency, ParticipantId, Window};

/// A payment from `debtor` to `creditor`: `amount` minor units of `send`
/// leave the debtor, the creditor receives `receive` (FX when they differ).
///
/// The archive is 48 bytes with 16-byte alignment (the `u128` id), so a
/// batch of 8,192 is 384 KiB of body.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug))]
#[serde(into = "TransactionJson", try_from = "TransactionJson")]
pub struct Transaction {
    /// Client-chosen idempotency key.
    pub id: u128,
    pub debtor: ParticipantId,
    pub creditor: ParticipantId,
    /// In minor units of `send` (cents for EUR).
    pub amount: u64,
    pub send: Currency,
    pub receive: Currency,
    pub window: Window,
    /// The client's clock, microseconds since the Unix epoch; informational
    /// (the engine orders by its own log, never by this).
    pub client_timestamp_us: u64,
}

impl ArchivedTransaction {
    /// The native value, without going through a deserializer: every field
    /// is plain data, and validation already checked the window tag.
    #[inline]
    pub fn to_native(&self) -> Transaction {
        Transaction {
            id: self.id.to_native(),
            debtor: (&self.debtor).into(),
            creditor: (&self.creditor).into(),
            amount: self.amount.to_native(),
            send: (&self.send).into(),
            receive: (&self.receive).into(),
            window: (&self.window).into(),
            client_timestamp_us: self.client_timestamp_us.to_native(),
        }
    }
}

/// A field of a transaction, named in rejections and edge-parsing errors.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Field {
    /// The transaction as a whole (no single field is at fault).
    Transaction = 0,
    Id = 1,
    Debtor = 2,
    Creditor = 3,
    Amount = 4,
    Send = 5,
    Receive = 6,
    Window = 7,
    ClientTimestampUs = 8,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::Transaction,
        Field::Id,
        Field::Debtor,
        Field::Creditor,
        Field::Amount,
        Field::Send,
        Field::Receive,
        Field::Window,
        Field::ClientTimestampUs,
    ];

    /// The JSON field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Transaction => "transaction",
            Field::Id => "id",
            Field::Debtor => "debtor",
            Field::Creditor => "creditor",
            Field::Amount => "amount",
            Field::Send => "send",
            Field::Receive => "receive",
            Field::Window => "window",
            Field::ClientTimestampUs => "client_timestamp_us",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transaction was refused at intake. The numeric codes are stable
/// (they appear in logs and the HTTP API): add new reasons at the end.
/// On the wire the code is one byte, so codes stay below 256.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u16)]
pub enum RejectReason {
    /// A field could not be parsed at the edge (bad id, not a number).
    Malformed = 1,
    UnknownDebtor = 2,
    UnknownCreditor = 3,
    /// Debtor and creditor are the same participant.
    SameParty = 4,
    ZeroAmount = 5,
    /// Above the engine's per-transaction maximum.
    AmountTooLarge = 6,
    UnknownCurrency = 7,
    /// Both currencies are known but the engine does not convert between them.
    UnsupportedCurrencyPair = 8,
    UnsupportedWindow = 9,
    /// The participant exists but may not send or receive now.
    ParticipantSuspended = 10,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::Malformed,
        RejectReason::UnknownDebtor,
        RejectReason::UnknownCreditor,
        RejectReason::SameParty,
        RejectReason::ZeroAmount,
        RejectReason::AmountTooLarge,
        RejectReason::UnknownCurrency,
        RejectReason::UnsupportedCurrencyPair,
        RejectReason::UnsupportedWindow,
        RejectReason::ParticipantSuspended,
    ];

    /// The stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownDebtor => "unknown_debtor",
            RejectReason::UnknownCreditor => "unknown_creditor",
            RejectReason::SameParty => "same_party",
            RejectReason::ZeroAmount => "zero_amount",
            RejectReason::AmountTooLarge => "amount_too_large",
            RejectReason::UnknownCurrency => "unknown_currency",
            RejectReason::UnsupportedCurrencyPair => "unsupported_currency_pair",
            RejectReason::UnsupportedWindow => "unsupported_window",
            RejectReason::ParticipantSuspended => "participant_suspended",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one submitted transaction, in the order of the request.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug))]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TxResult {
    /// Durable on a majority: the engine owns it now.
    Created,
    /// The same id with the same content was already accepted: idempotent retry.
    Duplicate,
    /// The same id was already accepted with different content.
    Conflict,
    Rejected {
        reason: RejectReason,
        field: Field,
    },
}

impl From<&ArchivedRejectReason> for RejectReason {
    fn from(archived: &ArchivedRejectReason) -> Self {
        match archived {
            ArchivedRejectReason::Malformed => RejectReason::Malformed,
            ArchivedRejectReason::UnknownDebtor => RejectReason::UnknownDebtor,
            ArchivedRejectReason::UnknownCreditor => RejectReason::UnknownCreditor,
            ArchivedRejectReason::SameParty => RejectReason::SameParty,
            ArchivedRejectReason::ZeroAmount => RejectReason::ZeroAmount,
            ArchivedRejectReason::AmountTooLarge => RejectReason::AmountTooLarge,
            ArchivedRejectReason::UnknownCurrency => RejectReason::UnknownCurrency,
            ArchivedRejectReason::UnsupportedCurrencyPair => RejectReason::UnsupportedCurrencyPair,
            ArchivedRejectReason::UnsupportedWindow => RejectReason::UnsupportedWindow,
            ArchivedRejectReason::ParticipantSuspended => RejectReason::ParticipantSuspended,
        }
    }
}

impl From<&ArchivedField> for Field {
    fn from(archived: &ArchivedField) -> Self {
        match archived {
            ArchivedField::Transaction => Field::Transaction,
            ArchivedField::Id => Field::Id,
            ArchivedField::Debtor => Field::Debtor,
            ArchivedField::Creditor => Field::Creditor,
            ArchivedField::Amount => Field::Amount,
            ArchivedField::Send => Field::Send,
            ArchivedField::Receive => Field::Receive,
            ArchivedField::Window => Field::Window,
            ArchivedField::ClientTimestampUs => Field::ClientTimestampUs,
        }
    }
}

impl From<&ArchivedTxResult> for TxResult {
    fn from(archived: &ArchivedTxResult) -> Self {
        match archived {
            ArchivedTxResult::Created => TxResult::Created,
            ArchivedTxResult::Duplicate => TxResult::Duplicate,
            ArchivedTxResult::Conflict => TxResult::Conflict,
            ArchivedTxResult::Rejected { reason, field } => TxResult::Rejected {
                reason: reason.into(),
                field: field.into(),
            },
        }
    }
}

/// Where a transaction is in its life, as a lookup reports it.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TxStatus {
    NotFound = 0,
    /// Accepted, waiting for its window's cycle.
    Pending = 1,
    Settled = 2,
    /// A cycle left it out (liquidity, limits); it waits for the next one.
    Deferred = 3,
    /// Execution gave up on it.
    Failed = 4,
}

/// What happened to a transaction, one entry of its audit trail (the seed
/// design's event names).
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum TxEventKind {
    /// Accepted into a shard's log (durable on a majority).
    TransactionSubmitted = 0,
    /// A retry of an accepted transaction (same id, same content).
    TransactionDeduped = 1,
    /// Taken into a settlement cycle's batch.
    BatchCreated = 2,
    /// The cycle's optimiser decided its batch.
    BatchOptimized = 3,
    /// The cycle decision was proposed to the control group.
    ConsensusSubmitted = 4,
    /// The cycle decision is durable on a majority.
    ConsensusAchieved = 5,
    /// A settlement instruction went to a payment rail.
    SettlementInitiated = 6,
    SettlementConfirmed = 7,
    SettlementFailed = 8,
    /// A failed settlement's legs were reversed through the log.
    SettlementReversed = 9,
    /// Not funded by its window's deadline: moved to the next window.
    TransactionRolled = 10,
}

impl TxEventKind {
    /// The audit name (the seed design's event names).
    pub fn as_str(self) -> &'static str {
        match self {
            TxEventKind::TransactionSubmitted => "TRANSACTION_SUBMITTED",
            TxEventKind::TransactionDeduped => "TRANSACTION_DEDUPED",
            TxEventKind::BatchCreated => "BATCH_CREATED",
            TxEventKind::BatchOptimized => "BATCH_OPTIMIZED",
            TxEventKind::ConsensusSubmitted => "CONSENSUS_SUBMITTED",
            TxEventKind::ConsensusAchieved => "CONSENSUS_ACHIEVED",
            TxEventKind::SettlementInitiated => "SETTLEMENT_INITIATED",
            TxEventKind::SettlementConfirmed => "SETTLEMENT_CONFIRMED",
            TxEventKind::SettlementFailed => "SETTLEMENT_FAILED",
            TxEventKind::SettlementReversed => "SETTLEMENT_REVERSED",
            TxEventKind::TransactionRolled => "TRANSACTION_ROLLED",
        }
    }
}

/// Who caused an audit event.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Actor {
    /// The client that submitted (or retried) the transaction.
    Client = 0,
    /// The shard that owns the transaction, applying its own log.
    Shard = 1,
    /// The settlement cycle coordinator (the control group leader).
    Coordinator = 2,
    /// The batching optimiser (or its fallback).
    Solver = 3,
    /// A person, through an operator request.
    Operator = 4,
    /// A payment rail, through execution.
    Rail = 5,
}

/// Why a cycle deferred a transaction, with the number that decided it.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeferReason {
    /// Settling it too would leave the debtor's balance in the send currency
    /// `short` minor units below zero.
    Liquidity { short: u64 },
    /// Settling it too would pay the creditor `over_usd_cents` more than its
    /// counterparty limit allows in this cycle.
    CounterpartyLimit { over_usd_cents: u64 },
    /// Feasible, but deferring was cheaper for the cycle as a whole: waiting
    /// costs `defer_cost_usd_micros` (its window's deferral price).
    Cost { defer_cost_usd_micros: u64 },
    /// The cycle could not be optimised (invalid configuration); nothing settled.
    Unsolvable,
    /// Kept out of the cycle's instance: this candidate cannot be priced or
    /// settled as it stands (the cycle went on with the others).
    SetAside { problem: CandidateProblem },
}

/// What made a cycle set a candidate aside.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CandidateProblem {
    /// Another candidate of the same cycle has its id (the first is kept).
    DuplicateId = 1,
    /// Its send or receive currency has no rate or no shard in the cycle.
    UnpricedCurrency = 2,
    /// Zero, or too large to value.
    BadAmount = 3,
}

impl CandidateProblem {
    pub const ALL: [CandidateProblem; 3] = [
        CandidateProblem::DuplicateId,
        CandidateProblem::UnpricedCurrency,
        CandidateProblem::BadAmount,
    ];
}

/// The structured detail of an audit event (what a person reads as its
/// explanation). Fixed-size so events stay plain data.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventDetail {
    None,
    /// Frozen as a candidate of a cycle of `window`.
    Candidate {
        window: Window,
    },
    /// The cycle settles it: `receive_amount` of `receive` to the creditor.
    /// `fallback`: decided by the simple grouping, not the optimiser.
    Settle {
        receive_amount: u64,
        receive: Currency,
        fallback: bool,
    },
    /// The cycle defers it; `deferrals` counts every cycle that did so far.
    Defer {
        reason: DeferReason,
        deferrals: u32,
    },
    /// A rail's answer or a reversal; `attempts` made so far.
    Execution {
        attempts: u32,
    },
    /// Its window's deadline passed unfunded: it now waits in window `to`
    /// (from `from`), for the reason the last cycle deferred it.
    Rolled {
        from: Window,
        to: Window,
        reason: DeferReason,
    },
}

/// One audit event of a transaction: what happened, where it is recorded
/// (the log entry), when (the leader timestamp of that entry), who did it,
/// and the amounts involved.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug))]
pub struct TxEvent {
    /// Raft group whose log recorded the event: 0 is the control group
    /// (cycle decisions), 1.. the shards. With `entry_index` it is the
    /// event's entry id.
    pub group: u16,
    /// Index of the log entry that recorded the event.
    pub entry_index: u64,
    /// Leader timestamp of the log entry that recorded the event.
    pub at_us: u64,
    pub kind: TxEventKind,
    /// The settlement cycle involved, 0 when none.
    pub cycle_id: u64,
    /// The batch (one wire) within the cycle, from 1; 0 when none.
    pub batch: u32,
    /// The amount concerned, in minor units of `currency`.
    pub amount: u64,
    pub currency: Currency,
    pub actor: Actor,
    pub detail: EventDetail,
}

impl TxEvent {
    /// The batch id as people read it, `cycle.batch`, when there is one.
    pub fn batch_id(&self) -> Option<String> {
        (self.batch != 0).then(|| format!("{}.{}", self.cycle_id, self.batch))
    }
}

/// The answer for one looked-up id.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug))]
pub struct LookupItem {
    #[serde(with = "id_json")]
    pub id: u128,
    pub status: TxStatus,
    pub events: Vec<TxEvent>,
}

/// A whole-request failure (as opposed to a per-transaction rejection).
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ErrorCode {
    /// The request could not be decoded or broke a limit.
    BadRequest = 1,
    /// Back-pressure: queues are full, retry later.
    Overloaded = 2,
    /// This node does not lead the group that owns the request.
    NotLeader = 3,
    ShuttingDown = 4,
    /// The node does not serve this message kind.
    UnsupportedKind = 5,
    Internal = 6,
    /// The caller's identity (its client certificate; none presented) may
    /// not make this request: nothing was done.
    Forbidden = 7,
}

// ---------------------------------------------------------------------------
// Ids as strings at the edges.

/// Length of the one spelling of an id: a `u128` in hexadecimal.
pub const ID_HEX_DIGITS: usize = 32;

/// Parses an id (transaction or deposit) from its one edge spelling:
/// exactly 32 lower-case hex digits, the 128-bit number written out in full
/// (a UUID without its hyphens).
///
/// One spelling only, so that the same text always names the same key and
/// two different texts never do: no decimal form (`"66"` and
/// `"00000000000000000000000000000042"` were once the same key), no
/// hyphenated or upper-case variant of the same number, no short form.
/// [`format_id`] is its inverse: `parse_id(&format_id(id)) == Some(id)`, and
/// `format_id(parse_id(t)?) == t` for every accepted `t`.
pub fn parse_id(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != ID_HEX_DIGITS || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    // 32 lower-case hex digits: valid UTF-8, and cannot overflow a u128.
    u128::from_str_radix(text, 16).ok()
}

/// What an id must look like, for error messages.
pub const ID_FORMAT: &str = "32 lower-case hex digits";

/// The canonical edge spelling of an id: 32 lower-case hex digits.
pub fn format_id(id: u128) -> String {
    format!("{id:032x}")
}

/// `#[serde(with = "id_json")]`: a `u128` id as a string (see [`parse_id`]).
pub mod id_json {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{id:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_id(&text).ok_or_else(|| {
            D::Error::custom(format_args!(
                "invalid id {text:?}: expected {}",
                super::ID_FORMAT
            ))
        })
    }
}

// ---------------------------------------------------------------------------
// The JSON form of a transaction.

/// A transaction as JSON carries it: names for participants, currencies and
/// windows, the id as a string. Parsing is two steps so that a bad field in
/// one transaction of a batch rejects that transaction, naming the field,
/// instead of failing the whole document.
#[derive(Clone, Debug, PartialEq, Eq, SerdeSerialize, SerdeDeserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionJson {
    pub id: String,
    pub debtor: String,
    pub creditor: String,
    pub amount: u64,
    pub send: String,
    pub receive: String,
    pub window: String,
    pub client_timestamp_us: u64,
}

/// A field of an edge-form transaction that does not parse, with the
/// rejection it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EdgeError {
    pub field: Field,
    pub reason: RejectReason,
}

impl EdgeError {
    /// The result to report for the transaction that carried this field.
    pub fn to_result(self) -> TxResult {
        TxResult::Rejected {
            reason: self.reason,
            field: self.field,
        }
    }
}

impl TryFrom<&TransactionJson> for Transaction {
    type Error = EdgeError;

    fn try_from(json: &TransactionJson) -> Result<Self, EdgeError> {
        let fail = |field, reason| EdgeError { field, reason };
        let id = parse_id(&json.id).ok_or(fail(Field::Id, RejectReason::Malformed))?;
        let debtor = ParticipantId::from_name(&json.debtor)
            .ok_or(fail(Field::Debtor, RejectReason::UnknownDebtor))?;
        let creditor = ParticipantId::from_name(&json.creditor)
            .ok_or(fail(Field::Creditor, RejectReason::UnknownCreditor))?;
        let send = Currency::from_code(&json.send)
            .ok_or(fail(Field::Send, RejectReason::UnknownCurrency))?;
        let receive = Currency::from_code(&json.receive)
            .ok_or(fail(Field::Receive, RejectReason::UnknownCurrency))?;
        let window = Window::from_name(&json.window)
            .ok_or(fail(Field::Window, RejectReason::UnsupportedWindow))?;
        Ok(Transaction {
            id,
            debtor,
            creditor,
            amount: json.amount,
            send,
            receive,
            window,
            client_timestamp_us: json.client_timestamp_us,
        })
    }
}

impl TryFrom<TransactionJson> for Transaction {
    type Error = EdgeError;

    fn try_from(json: TransactionJson) -> Result<Self, EdgeError> {
        Transaction::try_from(&json)
    }
}

impl From<Transaction> for TransactionJson {
    fn from(tx: Transaction) -> Self {
        TransactionJson {
            id: format_id(tx.id),
            debtor: tx.debtor.name(),
            creditor: tx.creditor.name(),
            amount: tx.amount,
            send: tx.send.to_string(),
            receive: tx.receive.to_string(),
            window: tx.window.as_str().to_owned(),
            client_timestamp_us: tx.client_timestamp_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        Transaction {
            id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            debtor: ParticipantId(7),
            creditor: ParticipantId(12),
            amount: 12_345,
            send: Currency::EUR,
            receive: Currency::USD,
            window: Window::T1,
            client_timestamp_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn archived_transaction_is_48_bytes_aligned_16() {
        assert_eq!(core::mem::size_of::<ArchivedTransaction>(), 48);
        assert_eq!(core::mem::align_of::<ArchivedTransaction>(), 16);
    }

    #[test]
    fn ids_have_exactly_one_spelling() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
        assert_eq!(parse_id("0123456789abcdef0011223344556677"), Some(id));
        assert_eq!(format_id(id), "0123456789abcdef0011223344556677");
        assert_eq!(parse_id("00000000000000000000000000000042"), Some(0x42));
        assert_eq!(parse_id(&format_id(u128::MAX)), Some(u128::MAX));
        assert_eq!(parse_id(&format_id(0)), Some(0));
        for bad in [
            "",
            "42",
            "66",
            "-1",
            "+1",
            "0x10",
            "340282366920938463463374607431768211455", // u128::MAX in decimal
            "0123456789ABCDEF0011223344556677",        // upper case: another text, same number
            "0123456789abcdef001122334455667",         // 31 digits
            "0123456789abcdef00112233445566778",       // 33 digits
            "0123456789abcdef001122334455667g",
            "01234567-89ab-cdef-0011-223344556677", // a hyphenated UUID: strip the hyphens
            " 0123456789abcdef001122334455667",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_decimal_id_and_its_hex_lookalike_are_not_one_key() {
        // Issue 13: "66" was read as decimal and the 32-digit text as hex,
        // so two different payments shared one key. Now only the second is an id.
        assert_eq!(parse_id("66"), None);
        assert_eq!(parse_id("00000000000000000000000000000042"), Some(66));
        let json = TransactionJson {
            id: "66".into(),
            ..TransactionJson::from(sample())
        };
        assert_eq!(Transaction::try_from(&json).unwrap_err().field, Field::Id);
    }

    #[test]
    fn json_form_round_trips_with_names() {
        let tx = sample();
        let json = serde_json::to_string(&tx).unwrap();
        assert_eq!(
            json,
            r#"{"id":"0123456789abcdef0011223344556677","debtor":"bank_07","creditor":"bank_12","amount":12345,"send":"EUR","receive":"USD","window":"T1","client_timestamp_us":1700000000000000}"#
        );
        let back: Transaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx);
    }

    #[test]
    fn edge_errors_name_the_field() {
        let good = TransactionJson::from(sample());
        type Breaker = fn(&mut TransactionJson);
        let cases: [(Breaker, Field, RejectReason); 6] = [
            (|j| j.id = "zz".into(), Field::Id, RejectReason::Malformed),
            (
                |j| j.debtor = "bank7".into(),
                Field::Debtor,
                RejectReason::UnknownDebtor,
            ),
            (
                |j| j.creditor = "".into(),
                Field::Creditor,
                RejectReason::UnknownCreditor,
            ),
            (
                |j| j.send = "EURO".into(),
                Field::Send,
                RejectReason::UnknownCurrency,
            ),
            (
                |j| j.receive = "usd".into(),
                Field::Receive,
                RejectReason::UnknownCurrency,
            ),
            (
                |j| j.window = "T9".into(),
                Field::Window,
                RejectReason::UnsupportedWindow,
            ),
        ];
        for (break_it, field, reason) in cases {
            let mut json = good.clone();
            break_it(&mut json);
            let err = Transaction::try_from(&json).unwrap_err();
            assert_eq!(err, EdgeError { field, reason });
            assert_eq!(err.to_result(), TxResult::Rejected { reason, field });
            assert!(err.to_string().starts_with(field.as_str()));
        }
        let unknown_field = r#"{"id":"1","debtor":"bank_01","creditor":"bank_02","amount":1,"send":"EUR","receive":"EUR","window":"T0","client_timestamp_us":0,"memo":"x"}"#;
        assert!(serde_json::from_str::<TransactionJson>(unknown_field).is_err());
    }

    #[test]
    fn results_serialise_as_tagged_json() {
        let rejected = TxResult::Rejected {
            reason: RejectReason::UnknownDebtor,
            field: Field::Debtor,
        };
        assert_eq!(
            serde_json::to_string(&rejected).unwrap(),
            r#"{"result":"rejected","reason":"unknown_debtor","field":"debtor"}"#
        );
        assert_eq!(
            serde_json::to_string(&TxResult::Created).unwrap(),
            r#"{"result":"created"}"#
        );
        for r in RejectReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
            assert!(r.code() < 256, "reason codes are one byte on the wire");
        }
        for f in Field::ALL {
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        }
        assert_eq!(RejectReason::from_code(0), None);
    }

    #[test]
    fn lookup_items_carry_ids_as_hex_strings() {
        let item = LookupItem {
            id: 255,
            status: TxStatus::Pending,
            events: vec![TxEvent {
                group: 1,
                entry_index: 2,
                at_us: 5,
                kind: TxEventKind::TransactionSubmitted,
                cycle_id: 0,
                batch: 0,
                amount: 700,
                currency: Currency::EUR,
                actor: Actor::Client,
                detail: EventDetail::None,
            }],
        };
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"id":"000000000000000000000000000000ff","status":"pending","events":[{"group":1,"entry_index":2,"at_us":5,"kind":"TRANSACTION_SUBMITTED","cycle_id":0,"batch":0,"amount":700,"currency":"EUR","actor":"client","detail":{"type":"none"}}]}"#
        );
        assert_eq!(serde_json::from_str::<LookupItem>(&json).unwrap(), item);
    }
}
