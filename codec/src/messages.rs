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
use crate::tx::{ErrorCode, LookupItem, Transaction, TxResult};

/// Most transactions in one submit request (and results in its response).
/// Big enough that one frame fills a group commit on a busy shard, small
/// enough that a full batch (384 KiB archived) fits one frame with room.
pub const MAX_BATCH_TRANSACTIONS: usize = 8_192;

/// Most ids in one lookup request. Lookups are a query path, not intake:
/// 1,024 items with their events keep a response well under a frame.
pub const MAX_LOOKUP_IDS: usize = 1_024;

/// Most audit events per looked-up transaction: its life has a handful
/// (accepted, candidate, deferred a few times, settled, executed).
pub const MAX_TX_EVENTS: usize = 16;

/// Longest human-readable message in an error response.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1_024;

/// The kind of a frame's body, the `u16` in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    ErrorResponse = 0x0001,
    SubmitRequest = 0x0101,
    SubmitResponse = 0x0102,
    LookupRequest = 0x0103,
    LookupResponse = 0x0104,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::ErrorResponse,
        MessageKind::SubmitRequest,
        MessageKind::SubmitResponse,
        MessageKind::LookupRequest,
        MessageKind::LookupResponse,
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
