//! Messages between nodes of a cluster (kinds `0x0301`–`0x0303`).
//!
//! The peer protocol is deliberately thin: a [`PeerRequest`] names a Raft
//! group and an operation and carries opaque bytes that the node encodes
//! (Raft RPCs, status queries); a [`PeerResponse`] answers it under the same
//! request id. A payload larger than one frame is split into chunks that
//! share the request id, `more` set on all but the last, so a multi-megabyte
//! AppendEntries or a snapshot still travels in bounded frames.
//!
//! [`ForwardSubmit`] is a client submit relayed by a node that does not lead
//! the shard to the node that does; it is answered by the ordinary
//! `SubmitResponse` or `ErrorResponse`.

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{DecodeError, EncodeError};
use crate::frame::MAX_BODY_BYTES;
use crate::messages::{Encode, Message, MessageKind, MAX_BATCH_TRANSACTIONS};
use crate::tx::Transaction;

/// Most payload bytes in one peer frame: the body less room for the
/// archive's fixed fields, so a full chunk always fits a frame.
pub const MAX_PEER_CHUNK_BYTES: usize = MAX_BODY_BYTES - 256;

/// A request (or one chunk of one) from one node to another.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PeerRequest {
    /// The Raft group the request is for (0 = control; ignored by node-wide ops).
    pub group: u16,
    /// What to do; the node defines the numbers.
    pub op: u8,
    /// More chunks of this request follow under the same request id.
    pub more: bool,
    pub payload: Vec<u8>,
}

/// The answer to a [`PeerRequest`], under its request id.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PeerResponse {
    /// 0 = ok (payload is the answer); otherwise an error code of the node's,
    /// the payload a UTF-8 message.
    pub status: u8,
    pub payload: Vec<u8>,
}

/// Transactions of one shard relayed to the node that leads it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ForwardSubmit {
    pub group: u16,
    pub transactions: Vec<Transaction>,
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

impl Message for PeerRequest {
    const KIND: MessageKind = MessageKind::PeerRequest;
    fn check_archived(archived: &ArchivedPeerRequest) -> Result<(), DecodeError> {
        check_decode(
            "peer payload bytes",
            archived.payload.len(),
            MAX_PEER_CHUNK_BYTES,
        )
    }
}

impl Encode for PeerRequest {
    const KIND: MessageKind = MessageKind::PeerRequest;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode(
            "peer payload bytes",
            self.payload.len(),
            MAX_PEER_CHUNK_BYTES,
        )
    }
}

impl Message for PeerResponse {
    const KIND: MessageKind = MessageKind::PeerResponse;
    fn check_archived(archived: &ArchivedPeerResponse) -> Result<(), DecodeError> {
        check_decode(
            "peer payload bytes",
            archived.payload.len(),
            MAX_PEER_CHUNK_BYTES,
        )
    }
}

impl Encode for PeerResponse {
    const KIND: MessageKind = MessageKind::PeerResponse;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode(
            "peer payload bytes",
            self.payload.len(),
            MAX_PEER_CHUNK_BYTES,
        )
    }
}

impl Message for ForwardSubmit {
    const KIND: MessageKind = MessageKind::ForwardSubmit;
    fn check_archived(archived: &ArchivedForwardSubmit) -> Result<(), DecodeError> {
        check_decode(
            "transactions",
            archived.transactions.len(),
            MAX_BATCH_TRANSACTIONS,
        )
    }
}

impl Encode for ForwardSubmit {
    const KIND: MessageKind = MessageKind::ForwardSubmit;
    fn check_limits(&self) -> Result<(), EncodeError> {
        check_encode(
            "transactions",
            self.transactions.len(),
            MAX_BATCH_TRANSACTIONS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_body, decode_frame, FrameBuf};
    use crate::ids::{Currency, ParticipantId, Window};

    #[test]
    fn peer_messages_round_trip_and_limits_hold_both_ways() {
        let mut buf = FrameBuf::new();
        let request = PeerRequest {
            group: 3,
            op: 2,
            more: true,
            payload: vec![7; 1000],
        };
        let range = buf.push(41, &request).unwrap();
        let frame = decode_frame(&buf.as_slice()[range]).unwrap();
        assert_eq!(frame.kind(), MessageKind::PeerRequest);
        let archived = decode_body::<PeerRequest>(&frame).unwrap();
        assert_eq!(
            (archived.group.to_native(), archived.op, archived.more),
            (3, 2, true)
        );
        assert_eq!(archived.payload.as_slice(), &[7u8; 1000][..]);
        assert!(
            decode_body::<PeerResponse>(&frame).is_err(),
            "kind is checked"
        );

        let too_big = PeerRequest {
            payload: vec![0; MAX_PEER_CHUNK_BYTES + 1],
            ..request.clone()
        };
        assert!(matches!(
            buf.push(42, &too_big),
            Err(EncodeError::BatchTooLarge { .. })
        ));
        let full = PeerResponse {
            status: 0,
            payload: vec![1; MAX_PEER_CHUNK_BYTES],
        };
        buf.clear();
        let range = buf.push(43, &full).expect("a full chunk fits one frame");
        let frame = decode_frame(&buf.as_slice()[range]).unwrap();
        assert_eq!(
            decode_body::<PeerResponse>(&frame).unwrap().payload.len(),
            MAX_PEER_CHUNK_BYTES
        );

        let tx = Transaction {
            id: 9,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: 5,
            send: Currency::from_code("EUR").unwrap(),
            receive: Currency::from_code("USD").unwrap(),
            window: Window::T0,
            client_timestamp_us: 1,
        };
        buf.clear();
        let range = buf
            .push(
                44,
                &ForwardSubmit {
                    group: 2,
                    transactions: vec![tx; 3],
                },
            )
            .unwrap();
        let frame = decode_frame(&buf.as_slice()[range]).unwrap();
        let archived = decode_body::<ForwardSubmit>(&frame).unwrap();
        assert_eq!(archived.transactions.len(), 3);
        assert_eq!(archived.transactions[2].to_native(), tx);
        assert!(buf
            .push(
                45,
                &ForwardSubmit {
                    group: 2,
                    transactions: vec![tx; MAX_BATCH_TRANSACTIONS + 1],
                },
            )
            .is_err());
    }
}
