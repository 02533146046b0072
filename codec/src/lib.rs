//! settle-codec: the wire format of settle.
//!
//! Owns the rkyv wire types (transactions, submit/lookup requests and their
//! results, error responses), the frame header (magic, version, kind,
//! request id, length, checksums), the limits every frame and batch obeys,
//! the names used at the edges (`bank_07`, `EUR`, `T1`), a streaming frame
//! reader and a blocking client.
//!
//! It must not know about shards, Raft, storage or I/O policy: it turns
//! messages into bytes and untrusted bytes into validated messages or typed
//! errors, never a panic. Validating a transaction's *content* (does the
//! debtor exist?) is the node's job; this crate only defines the
//! vocabulary for rejecting it.

pub mod client;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod messages;
pub mod peer;
pub mod reader;
pub mod tx;

pub use client::{Client, ClientError, Reply, MAX_IN_FLIGHT_REQUESTS};
pub use error::{DecodeError, EncodeError, FramePart};
pub use frame::{
    decode_body, decode_frame, encode_frame, padded_len, Frame, FrameBuf, FrameHeader, FRAME_ALIGN,
    HEADER_BYTES, MAGIC, MAX_BODY_BYTES, MAX_FRAME_BYTES, VERSION,
};
pub use ids::{Currency, ParticipantId, Window};
pub use messages::{
    Encode, ErrorResponse, LookupRequest, LookupResponse, Message, MessageKind, SubmitBatch,
    SubmitRequest, SubmitResponse, MAX_BATCH_TRANSACTIONS, MAX_ERROR_MESSAGE_BYTES, MAX_LOOKUP_IDS,
    MAX_TX_EVENTS,
};
pub use peer::{ForwardSubmit, PeerRequest, PeerResponse, MAX_PEER_CHUNK_BYTES};
pub use reader::{FrameReader, ReadStatus};
pub use tx::{
    format_id, parse_id, EdgeError, ErrorCode, Field, LookupItem, RejectReason, Transaction,
    TransactionJson, TxEvent, TxEventKind, TxResult, TxStatus, ID_FORMAT,
};

/// The archived (wire) forms, for zero-copy readers.
pub mod archived {
    pub use crate::ids::{ArchivedCurrency, ArchivedParticipantId, ArchivedWindow};
    pub use crate::messages::{
        ArchivedErrorResponse, ArchivedLookupRequest, ArchivedLookupResponse,
        ArchivedSubmitRequest, ArchivedSubmitResponse,
    };
    pub use crate::tx::{
        ArchivedErrorCode, ArchivedField, ArchivedLookupItem, ArchivedRejectReason,
        ArchivedTransaction, ArchivedTxEvent, ArchivedTxEventKind, ArchivedTxResult,
        ArchivedTxStatus,
    };
}

/// rkyv itself, so dependants name the same version.
pub use rkyv;
