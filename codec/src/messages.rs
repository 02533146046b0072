//! Message kinds and bodies, with the limits each body obeys.
//!
//! Kind numbers are grouped so later issues have room:
//!
//! | range | use |
//! |---|---|
//! | `0x0000` | never valid (a zeroed header is an error, not a message) |
//! | `0x0001`–`0x00ff` | generic: errors (and pings, if ever needed) |
//! | `0x0100`–`0x01ff` | client data plane: submit and look up transactions |
//! | `0x0200`–`0x02ff` | control plane: participants, limits, FX rates, cycles, audit queries |
//! | `0x0300`–`0x03ff` | Raft RPCs between nodes: append entries, vote, install snapshot |
//! | `0x0400`–`0xffff` | unassigned |
//!
//! Requests take odd numbers and their responses the next even one within
//! a range, so the pairing is visible in a packet dump.

use rkyv::api::low::{LowSerializer, LowValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{DecodeError, EncodeError};
use crate::ids::{Currency, ParticipantId, Window};
use crate::tx::{DeferReason, ErrorCode, LookupItem, Transaction, TxResult};

/// Most transactions in one submit request (and results in its response).
/// Big enough that one frame fills a group commit on a busy shard, small
/// enough that a full batch (384 KiB archived) fits one frame with room.
pub const MAX_BATCH_TRANSACTIONS: usize = 8_192;

/// Most ids in one lookup request. Lookups are a query path, not intake:
/// 512 items with a full trail each (16 events of 72 bytes) keep a response
/// under a frame (checked below).
pub const MAX_LOOKUP_IDS: usize = 512;

/// Most audit events per looked-up transaction: its life has a handful
/// (accepted, candidate, deferred a few times, settled, executed).
pub const MAX_TX_EVENTS: usize = 16;

/// Longest human-readable message in an error response.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1_024;

/// Most candidates one settlement cycle takes: the solver's time budget
/// grows with it, and a cycle's audit record must fit one frame.
pub const MAX_CYCLE_TRANSACTIONS: usize = 10_000;

/// Most participants in one cycle record (two per transaction at most).
pub const MAX_CYCLE_PARTICIPANTS: usize = 2 * MAX_CYCLE_TRANSACTIONS;

/// Most currencies an engine serves (one shard each).
pub const MAX_CURRENCIES: usize = 64;

/// Most balance slots (participant, currency) in one cycle record: each
/// transaction touches two.
pub const MAX_CYCLE_BALANCES: usize = 2 * MAX_CYCLE_TRANSACTIONS;

/// Most FX trades in one decision: one per ordered pair of currencies.
pub const MAX_CYCLE_FX_TRADES: usize = MAX_CURRENCIES * MAX_CURRENCIES;

/// Most cycle summaries in one list response.
pub const MAX_CYCLE_SUMMARIES: usize = 1_024;

/// Most balances in one balances response: a registry of 8,192 banks in
/// four currencies; larger registries are queried per participant.
pub const MAX_BALANCES: usize = 32_768;

/// Most steps (time buckets) of one liquidity forecast.
pub const MAX_FORECAST_STEPS: usize = 1_024;

/// Longest explanation of a fallback decision.
pub const MAX_REASON_BYTES: usize = 1_024;

/// The kind of a frame's body, the `u16` in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    ErrorResponse = 0x0001,
    SubmitRequest = 0x0101,
    SubmitResponse = 0x0102,
    LookupRequest = 0x0103,
    LookupResponse = 0x0104,
    CycleRunRequest = 0x0201,
    CycleRunResponse = 0x0202,
    CycleAuditRequest = 0x0203,
    CycleAuditResponse = 0x0204,
    DepositRequest = 0x0205,
    DepositResponse = 0x0206,
    BalancesRequest = 0x0207,
    BalancesResponse = 0x0208,
    CycleListRequest = 0x0209,
    CycleListResponse = 0x020a,
    ForecastRequest = 0x020b,
    ForecastResponse = 0x020c,
    // Between nodes of a cluster (crate::peer).
    PeerRequest = 0x0301,
    PeerResponse = 0x0302,
    ForwardSubmit = 0x0303,
}

impl MessageKind {
    pub const ALL: [MessageKind; 20] = [
        MessageKind::ErrorResponse,
        MessageKind::SubmitRequest,
        MessageKind::SubmitResponse,
        MessageKind::LookupRequest,
        MessageKind::LookupResponse,
        MessageKind::CycleRunRequest,
        MessageKind::CycleRunResponse,
        MessageKind::CycleAuditRequest,
        MessageKind::CycleAuditResponse,
        MessageKind::DepositRequest,
        MessageKind::DepositResponse,
        MessageKind::BalancesRequest,
        MessageKind::BalancesResponse,
        MessageKind::CycleListRequest,
        MessageKind::CycleListResponse,
        MessageKind::ForecastRequest,
        MessageKind::ForecastResponse,
        MessageKind::PeerRequest,
        MessageKind::PeerResponse,
        MessageKind::ForwardSubmit,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    /// `None` for a number no message has (yet).
    pub fn from_code(code: u16) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// The serializer frames are written with: into the frame buffer, scratch
/// space from the buffer's reusable arena, so steady state does not allocate.
pub type FrameSerializer<'a> =
    LowSerializer<&'a mut AlignedVec<16>, ArenaHandle<'a>, rancor::Error>;

/// A message body that can be read from a frame: its kind and the limits a
/// validated archive must still be checked against.
pub trait Message: Archive<Archived: for<'a> CheckBytes<LowValidator<'a, rancor::Error>>> {
    const KIND: MessageKind;

    /// Limits rkyv validation does not know (batch sizes).
    fn check_archived(archived: &Self::Archived) -> Result<(), DecodeError>;
}

/// A message body that can be written into a frame. Separate from
/// [`Message`] so that borrowed views ([`SubmitBatch`]) encode to the same
/// archive as the owned type without copying into a `Vec` first.
pub trait Encode: for<'a> Serialize<FrameSerializer<'a>> {
    const KIND: MessageKind;

    fn check_limits(&self) -> Result<(), EncodeError>;
}

fn check_decode(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::BatchTooLarge { what, len, max });
    }
    Ok(())
}

fn check_encode(what: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::BatchTooLarge { what, len, max });
    }
    Ok(())
}

/// Submit a batch of transactions; answered by a [`SubmitResponse`] with one
/// result per transaction, in order, or an [`ErrorResponse`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SubmitRequest {
    pub transactions: Vec<Transaction>,
}

/// A borrowed submit request: encodes to the same archive as
/// [`SubmitRequest`], straight from the caller's slice.
#[derive(Clone, Copy, Debug)]
pub struct SubmitBatch<'a> {
    pub transactions: &'a [Transaction],
}

impl Archive for SubmitBatch<'_> {
    type Archived = ArchivedSubmitRequest;
    type Resolver = rkyv::vec::VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedSubmitRequest { transactions } = out);
        rkyv::vec::ArchivedVec::resolve_from_len(self.transactions.len(), resolver, transactions);
    }
}

impl<S> Serialize<S> for SubmitBatch<'_>
where
    S: rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    S::Error: rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::vec::ArchivedVec::serialize_from_slice(self.transactions, serializer)
    }
}

/// One result per submitted transaction, in request order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SubmitResponse {
    pub results: Vec<TxResult>,
}

/// Look transactions up by id; answered by a [`LookupResponse`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LookupRequest {
    pub ids: Vec<u128>,
}

/// One item per requested id, in request order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LookupResponse {
    pub items: Vec<LookupItem>,
}

/// The request as a whole failed; `message` is for people, `code` for code.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ErrorResponse {
    pub code: ErrorCode,
    pub message: String,
}

impl Message for SubmitRequest {
    const KIND: MessageKind = MessageKind::SubmitRequest;
    fn check_archived(archived: &ArchivedSubmitRequest) -> Result<(), DecodeError> {
        check_decode(
            "transactions",
            archived.transactions.len(),
            MAX_BATCH_TRANSACTIONS,
        )
    }
}

impl Encode for SubmitRequest {
    const KIND: MessageKind = MessageKind::SubmitRequest;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode(
            "transactions",
            self.transactions.len(),
            MAX_BATCH_TRANSACTIONS,
        )
    }
}

impl Encode for SubmitBatch<'_> {
    const KIND: MessageKind = MessageKind::SubmitRequest;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode(
            "transactions",
            self.transactions.len(),
            MAX_BATCH_TRANSACTIONS,
        )
    }
}

impl Message for SubmitResponse {
    const KIND: MessageKind = MessageKind::SubmitResponse;
    fn check_archived(archived: &ArchivedSubmitResponse) -> Result<(), DecodeError> {
        check_decode("results", archived.results.len(), MAX_BATCH_TRANSACTIONS)
    }
}

impl Encode for SubmitResponse {
    const KIND: MessageKind = MessageKind::SubmitResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("results", self.results.len(), MAX_BATCH_TRANSACTIONS)
    }
}

impl Message for LookupRequest {
    const KIND: MessageKind = MessageKind::LookupRequest;
    fn check_archived(archived: &ArchivedLookupRequest) -> Result<(), DecodeError> {
        check_decode("ids", archived.ids.len(), MAX_LOOKUP_IDS)
    }
}

impl Encode for LookupRequest {
    const KIND: MessageKind = MessageKind::LookupRequest;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("ids", self.ids.len(), MAX_LOOKUP_IDS)
    }
}

impl Message for LookupResponse {
    const KIND: MessageKind = MessageKind::LookupResponse;
    fn check_archived(archived: &ArchivedLookupResponse) -> Result<(), DecodeError> {
        check_decode("items", archived.items.len(), MAX_LOOKUP_IDS)?;
        archived
            .items
            .iter()
            .try_for_each(|item| check_decode("events", item.events.len(), MAX_TX_EVENTS))
    }
}

impl Encode for LookupResponse {
    const KIND: MessageKind = MessageKind::LookupResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("items", self.items.len(), MAX_LOOKUP_IDS)?;
        self.items
            .iter()
            .try_for_each(|item| check_encode("events", item.events.len(), MAX_TX_EVENTS))
    }
}

impl Message for ErrorResponse {
    const KIND: MessageKind = MessageKind::ErrorResponse;
    fn check_archived(archived: &ArchivedErrorResponse) -> Result<(), DecodeError> {
        check_decode(
            "message bytes",
            archived.message.len(),
            MAX_ERROR_MESSAGE_BYTES,
        )
    }
}

impl Encode for ErrorResponse {
    const KIND: MessageKind = MessageKind::ErrorResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("message bytes", self.message.len(), MAX_ERROR_MESSAGE_BYTES)
    }
}

impl ErrorResponse {
    /// An error response whose message is cut (on a character boundary) to
    /// fit [`MAX_ERROR_MESSAGE_BYTES`], so building one cannot fail a limit.
    pub fn new(code: ErrorCode, message: &str) -> ErrorResponse {
        let mut end = message.len().min(MAX_ERROR_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ErrorResponse {
            code,
            message: message[..end].to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------
// Control plane: settlement cycles, audit, funding, balances (0x02xx).

const _: () = assert!(
    MAX_LOOKUP_IDS * (32 + MAX_TX_EVENTS * core::mem::size_of::<crate::tx::ArchivedTxEvent>())
        <= crate::frame::MAX_BODY_BYTES,
    "a lookup response of full trails must fit one frame"
);

/// Where a cycle is in close → decide → apply.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CycleStatus {
    /// Started: shards are freezing candidates (or have).
    Started = 0,
    /// The decision is durable in the control group; shards are applying it.
    Decided = 1,
    /// Every shard applied its legs.
    Applied = 2,
}

/// How a cycle's decision was made.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DecisionMethod {
    /// The batching optimiser, within its time budget.
    Optimiser = 0,
    /// The simple grouping (naive settlement order, batched by creditor),
    /// because the optimiser failed or ran past its budget.
    Fallback = 1,
}

/// A cost breakdown in USD, as the batching spec prices it.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleCost {
    pub fx: f64,
    pub wire: f64,
    pub deferral: f64,
    pub total: f64,
}

/// One cycle in brief: what it settled, what it cost, how long it took.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleSummary {
    pub cycle_id: u64,
    pub window: Window,
    pub status: CycleStatus,
    pub method: DecisionMethod,
    pub candidates: u32,
    pub settled: u32,
    pub deferred: u32,
    /// Wires the settled transactions travel in.
    pub batches: u32,
    pub cost: CycleCost,
    /// The naive baseline's cost on the same candidates.
    pub naive_cost: CycleCost,
    pub solve_us: u64,
    /// Leader timestamps of the control entries: started, decided, applied
    /// (0 while not yet).
    pub started_at_us: u64,
    pub decided_at_us: u64,
    pub applied_at_us: u64,
    /// Control log index of the decision (0 while undecided).
    pub decision_index: u64,
}

impl CycleSummary {
    /// `100 * (naive - cost) / naive`; 0 when the naive cost is 0, and 0
    /// when the cycle settled nothing: its cost is then only the price of
    /// waiting, which is no saving on a naive run that wired payments.
    pub fn savings_pct(&self) -> f64 {
        if self.settled > 0 && self.naive_cost.total > 0.0 {
            100.0 * (self.naive_cost.total - self.cost.total) / self.naive_cost.total
        } else {
            0.0
        }
    }

    /// Started → applied, the cycle's latency (None until applied).
    pub fn latency_us(&self) -> Option<u64> {
        (self.status == CycleStatus::Applied)
            .then(|| self.applied_at_us.saturating_sub(self.started_at_us))
    }
}

/// A currency of a cycle's instance: its minor units and mid rate, the rate
/// as the exact decimal text the solver reads.
#[derive(
    Archive, Serialize, Deserialize, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleCurrency {
    pub currency: Currency,
    pub minor_units: u8,
    pub usd_per_unit: String,
}

/// A directly tradable pair and its spread.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleSpread {
    pub a: Currency,
    pub b: Currency,
    pub bps: f64,
}

/// A participant of a cycle and its counterparty limit at the time.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleParticipant {
    pub id: ParticipantId,
    pub counterparty_limit_usd: f64,
}

/// A balance at the cycle's close.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleBalance {
    pub participant: ParticipantId,
    pub currency: Currency,
    pub balance: u64,
}

/// What the decision does with one transaction.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CycleOutcome {
    /// Settles in batch `batch` (from 1) of this cycle.
    Settled {
        batch: u32,
    },
    Deferred {
        reason: DeferReason,
    },
    /// Deferred at or past its window's deadline (it could not be funded
    /// in time): it waits in window `to` from now on.
    Rolled {
        reason: DeferReason,
        to: Window,
    },
}

impl CycleOutcome {
    /// Whether the cycle settles it.
    pub fn is_settled(&self) -> bool {
        matches!(self, CycleOutcome::Settled { .. })
    }
}

/// One FX trade of a decision, in USD value.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleFxTrade {
    pub from: Currency,
    pub to: Currency,
    pub usd: f64,
}

/// The engine's net flow in a currency: credits paid minus debits taken,
/// in minor units. The sum of every balance in that currency moves by
/// exactly this, and the FX trades cover it.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleNetFlow {
    pub currency: Currency,
    pub minor: i64,
}

/// A settlement cycle as the control group recorded it: the solver's
/// inputs (configuration, balances at close, limits, candidates in the
/// order the solver saw them) and its decision, so that anyone can rebuild
/// the batching instance, re-cost the decision with the checker and
/// recompute the naive baseline.
#[derive(
    Archive, Serialize, Deserialize, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CycleRecord {
    pub summary: CycleSummary,
    /// Why the fallback was used (empty for the optimiser).
    pub fallback_reason: String,
    pub max_batch_size: u32,
    pub wire_usd: f64,
    pub consolidation_discount: f64,
    /// Deferral price per window, bps: RTGS, T0, T1, T2.
    pub defer_bps: [f64; 4],
    pub currencies: Vec<CycleCurrency>,
    pub spreads: Vec<CycleSpread>,
    pub participants: Vec<CycleParticipant>,
    pub balances: Vec<CycleBalance>,
    pub transactions: Vec<Transaction>,
    /// What deferring each transaction costs in this cycle, USD (the
    /// instance's per-transaction `defer_usd`: dearer the longer it has
    /// waited, prohibitive at its deadline); same order. Empty: the
    /// window's `defer_bps` price for every transaction.
    pub defer_usd: Vec<f64>,
    /// One per transaction, same order.
    pub outcomes: Vec<CycleOutcome>,
    pub fx_trades: Vec<CycleFxTrade>,
    pub net_flows: Vec<CycleNetFlow>,
}

impl CycleRecord {
    fn limits(&self) -> [(&'static str, usize, usize); 10] {
        [
            (
                "transactions",
                self.transactions.len(),
                MAX_CYCLE_TRANSACTIONS,
            ),
            ("defer prices", self.defer_usd.len(), MAX_CYCLE_TRANSACTIONS),
            ("outcomes", self.outcomes.len(), MAX_CYCLE_TRANSACTIONS),
            (
                "participants",
                self.participants.len(),
                MAX_CYCLE_PARTICIPANTS,
            ),
            ("balances", self.balances.len(), MAX_CYCLE_BALANCES),
            ("currencies", self.currencies.len(), MAX_CURRENCIES),
            (
                "spreads",
                self.spreads.len(),
                MAX_CURRENCIES * MAX_CURRENCIES,
            ),
            ("fx trades", self.fx_trades.len(), MAX_CYCLE_FX_TRADES),
            ("net flows", self.net_flows.len(), MAX_CURRENCIES),
            ("reason bytes", self.fallback_reason.len(), MAX_REASON_BYTES),
        ]
    }
}

impl ArchivedCycleRecord {
    fn limits(&self) -> [(&'static str, usize, usize); 10] {
        [
            (
                "transactions",
                self.transactions.len(),
                MAX_CYCLE_TRANSACTIONS,
            ),
            ("defer prices", self.defer_usd.len(), MAX_CYCLE_TRANSACTIONS),
            ("outcomes", self.outcomes.len(), MAX_CYCLE_TRANSACTIONS),
            (
                "participants",
                self.participants.len(),
                MAX_CYCLE_PARTICIPANTS,
            ),
            ("balances", self.balances.len(), MAX_CYCLE_BALANCES),
            ("currencies", self.currencies.len(), MAX_CURRENCIES),
            (
                "spreads",
                self.spreads.len(),
                MAX_CURRENCIES * MAX_CURRENCIES,
            ),
            ("fx trades", self.fx_trades.len(), MAX_CYCLE_FX_TRADES),
            ("net flows", self.net_flows.len(), MAX_CURRENCIES),
            ("reason bytes", self.fallback_reason.len(), MAX_REASON_BYTES),
        ]
    }
}

/// Run a cycle of `window` now (an operator request); answered once it is
/// applied, or at once with cycle id 0 when nothing of the window is pending.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CycleRunRequest {
    pub window: Window,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[rkyv(derive(Debug))]
pub struct CycleRunResponse {
    pub summary: CycleSummary,
}

/// The recorded inputs and decision of one cycle.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CycleAuditRequest {
    pub cycle_id: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[rkyv(derive(Debug))]
pub struct CycleAuditResponse {
    pub record: CycleRecord,
}

/// Adds `amount` to a participant's balance in `currency`. `deposit_id` is
/// the idempotency key: the same id again is a duplicate, never a second
/// deposit.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DepositRequest {
    pub deposit_id: u128,
    pub participant: ParticipantId,
    pub currency: Currency,
    pub amount: u64,
}

/// `result`: Created (applied), Duplicate (this id was applied before with
/// the same content) or Conflict (this id was used for another deposit);
/// `balance` is the balance after the log entry applied.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DepositResponse {
    pub result: TxResult,
    pub balance: u64,
}

/// Balances of one participant, or of every participant when `participant`
/// is `None`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BalancesRequest {
    pub participant: Option<ParticipantId>,
}

/// A participant's balance in one currency and the totals that explain it:
/// `balance = opening + deposited + credited + refunded - debited`.
/// `incoming` is credit whose wire is not confirmed yet (not spendable).
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Balance {
    pub participant: ParticipantId,
    pub currency: Currency,
    pub balance: u64,
    pub opening: u64,
    pub deposited: u64,
    pub credited: u64,
    pub debited: u64,
    pub refunded: u64,
    pub incoming: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BalancesResponse {
    pub balances: Vec<Balance>,
}

/// Summaries of cycles with ids above `after_cycle`, oldest first, at most `max`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CycleListRequest {
    pub after_cycle: u64,
    pub max: u32,
}

/// `next_cycle_id`: the id the next cycle will take.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[rkyv(derive(Debug))]
pub struct CycleListResponse {
    pub cycles: Vec<CycleSummary>,
    pub next_cycle_id: u64,
}

/// A liquidity forecast of one participant's balance in one currency over
/// the next `steps` time buckets, or if 0 the next `hours` (if 0 too: the
/// node's default horizon).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ForecastRequest {
    pub participant: ParticipantId,
    pub currency: Currency,
    pub hours: u32,
    pub steps: u32,
}

/// The balance at the end of one forecast bucket, minor units: the point
/// forecast and the 80, 90 and 95 % prediction intervals (`lower[i]`,
/// `upper[i]` for the levels in that order).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct ForecastStep {
    /// Start and end of the bucket, microseconds since the Unix epoch.
    pub start_us: u64,
    pub end_us: u64,
    /// The bucket's forecast net flow alone.
    pub flow: i64,
    pub point: i64,
    pub lower: [i64; 3],
    pub upper: [i64; 3],
}

/// The 95 % lower bound of the balance goes below zero: pre-fund `amount`
/// before `before_us`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct ForecastShortfall {
    pub amount: u64,
    pub before_us: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ForecastResponse {
    pub participant: ParticipantId,
    pub currency: Currency,
    /// The balance now, and when "now" was (microseconds since the epoch).
    pub balance: u64,
    pub now_us: u64,
    /// Width of a bucket, and the whole buckets of history the model read.
    pub bucket_us: u64,
    pub history_buckets: u32,
    pub steps: Vec<ForecastStep>,
    pub shortfall: Option<ForecastShortfall>,
}

/// Messages whose bodies have no variable-length parts: no limits to check.
macro_rules! fixed_size_message {
    ($($ty:ident => $kind:ident),* $(,)?) => {$(
        impl Message for $ty {
            const KIND: MessageKind = MessageKind::$kind;
            fn check_archived(_: &<$ty as Archive>::Archived) -> Result<(), DecodeError> {
                Ok(())
            }
        }
        impl Encode for $ty {
            const KIND: MessageKind = MessageKind::$kind;
            fn check_limits(&self) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    )*};
}

fixed_size_message!(
    CycleRunRequest => CycleRunRequest,
    CycleRunResponse => CycleRunResponse,
    CycleAuditRequest => CycleAuditRequest,
    DepositRequest => DepositRequest,
    DepositResponse => DepositResponse,
    BalancesRequest => BalancesRequest,
    CycleListRequest => CycleListRequest,
    ForecastRequest => ForecastRequest,
);

impl Message for ForecastResponse {
    const KIND: MessageKind = MessageKind::ForecastResponse;
    fn check_archived(archived: &ArchivedForecastResponse) -> Result<(), DecodeError> {
        check_decode("forecast steps", archived.steps.len(), MAX_FORECAST_STEPS)
    }
}

impl Encode for ForecastResponse {
    const KIND: MessageKind = MessageKind::ForecastResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("forecast steps", self.steps.len(), MAX_FORECAST_STEPS)
    }
}

impl Message for CycleAuditResponse {
    const KIND: MessageKind = MessageKind::CycleAuditResponse;
    fn check_archived(archived: &ArchivedCycleAuditResponse) -> Result<(), DecodeError> {
        archived
            .record
            .limits()
            .into_iter()
            .try_for_each(|(what, len, max)| check_decode(what, len, max))?;
        if archived.record.outcomes.len() != archived.record.transactions.len() {
            return Err(DecodeError::BatchTooLarge {
                what: "outcomes (one per transaction)",
                len: archived.record.outcomes.len(),
                max: archived.record.transactions.len(),
            });
        }
        Ok(())
    }
}

impl Encode for CycleAuditResponse {
    const KIND: MessageKind = MessageKind::CycleAuditResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        self.record
            .limits()
            .into_iter()
            .try_for_each(|(what, len, max)| check_encode(what, len, max))
    }
}

impl Message for BalancesResponse {
    const KIND: MessageKind = MessageKind::BalancesResponse;
    fn check_archived(archived: &ArchivedBalancesResponse) -> Result<(), DecodeError> {
        check_decode("balances", archived.balances.len(), MAX_BALANCES)
    }
}

impl Encode for BalancesResponse {
    const KIND: MessageKind = MessageKind::BalancesResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("balances", self.balances.len(), MAX_BALANCES)
    }
}

impl Message for CycleListResponse {
    const KIND: MessageKind = MessageKind::CycleListResponse;
    fn check_archived(archived: &ArchivedCycleListResponse) -> Result<(), DecodeError> {
        check_decode("cycles", archived.cycles.len(), MAX_CYCLE_SUMMARIES)
    }
}

impl Encode for CycleListResponse {
    const KIND: MessageKind = MessageKind::CycleListResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode("cycles", self.cycles.len(), MAX_CYCLE_SUMMARIES)
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;
    use crate::frame::{decode_body, decode_frame, FrameBuf};

    #[test]
    fn a_cycle_that_settled_nothing_saved_nothing() {
        let cost = |total| CycleCost {
            total,
            ..CycleCost::default()
        };
        // The T0 cycle: everything deferred, the waiting priced at a
        // fifth of the naive run's wires.
        let mut summary = record(5).summary;
        summary.naive_cost = cost(25.0);
        summary.cost = cost(5.0);
        assert_eq!(summary.settled, 0);
        assert_eq!(summary.savings_pct(), 0.0);
        summary.settled = 5;
        summary.deferred = 0;
        assert!((summary.savings_pct() - 80.0).abs() < 1e-9);
        summary.naive_cost = cost(0.0);
        assert_eq!(summary.savings_pct(), 0.0);
    }

    fn record(transactions: usize) -> CycleRecord {
        let tx = Transaction {
            id: 7,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: 100,
            send: Currency::USD,
            receive: Currency::EUR,
            window: Window::Rtgs,
            client_timestamp_us: 0,
        };
        CycleRecord {
            summary: CycleSummary {
                cycle_id: 3,
                window: Window::Rtgs,
                status: CycleStatus::Decided,
                method: DecisionMethod::Optimiser,
                candidates: transactions as u32,
                settled: 0,
                deferred: transactions as u32,
                batches: 0,
                cost: CycleCost::default(),
                naive_cost: CycleCost::default(),
                solve_us: 1,
                started_at_us: 1,
                decided_at_us: 2,
                applied_at_us: 0,
                decision_index: 9,
            },
            fallback_reason: String::new(),
            max_batch_size: 1000,
            wire_usd: 5.0,
            consolidation_discount: 0.15,
            defer_bps: [50.0, 10.0, 2.0, 1.0],
            currencies: vec![CycleCurrency {
                currency: Currency::USD,
                minor_units: 2,
                usd_per_unit: "1.0".into(),
            }],
            spreads: Vec::new(),
            participants: Vec::new(),
            balances: Vec::new(),
            transactions: vec![tx; transactions],
            defer_usd: vec![0.5; transactions],
            outcomes: vec![
                CycleOutcome::Deferred {
                    reason: DeferReason::Liquidity { short: 5 }
                };
                transactions
            ],
            fx_trades: Vec::new(),
            net_flows: Vec::new(),
        }
    }

    #[test]
    fn a_full_cycle_record_fits_a_frame_and_round_trips() {
        let response = CycleAuditResponse {
            record: record(MAX_CYCLE_TRANSACTIONS),
        };
        let mut out = FrameBuf::new();
        out.push(1, &response)
            .expect("a full record fits one frame");
        let frame = decode_frame(out.as_slice()).unwrap();
        let archived = decode_body::<CycleAuditResponse>(&frame).unwrap();
        let back: CycleAuditResponse =
            rkyv::api::low::deserialize::<CycleAuditResponse, rancor::Error>(archived).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn cycle_record_limits_are_enforced_both_ways() {
        let too_many = CycleAuditResponse {
            record: record(MAX_CYCLE_TRANSACTIONS + 1),
        };
        assert!(matches!(
            too_many.check_limits(),
            Err(EncodeError::BatchTooLarge {
                what: "transactions",
                ..
            })
        ));
        let mut uneven = record(2);
        uneven.outcomes.pop();
        let bytes =
            rkyv::to_bytes::<rancor::Error>(&CycleAuditResponse { record: uneven }).unwrap();
        let archived = rkyv::access::<ArchivedCycleAuditResponse, rancor::Error>(&bytes).unwrap();
        assert!(CycleAuditResponse::check_archived(archived).is_err());
    }

    #[test]
    fn control_kinds_pair_requests_with_responses() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_code(kind.code()), Some(kind));
            if (0x0200..0x0300).contains(&kind.code()) && kind.code() % 2 == 1 {
                assert!(
                    MessageKind::from_code(kind.code() + 1).is_some(),
                    "{kind:?}"
                );
            }
        }
    }
}
