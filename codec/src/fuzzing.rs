//! The decoder's fuzz body, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/decode_frame.rs`) and a property test, so both push
//! untrusted bytes through every decoding path. Not an API.

use rkyv::util::AlignedVec;

use crate::frame::FrameBuf;
use crate::frame::{decode_body, decode_frame, padded_len, Frame, FrameHeader, FRAME_ALIGN};
use crate::messages::{
    BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse, CycleListRequest,
    CycleListResponse, CycleRunRequest, CycleRunResponse, DepositRequest, DepositResponse, Encode,
    ErrorResponse, ForecastRequest, ForecastResponse, LookupRequest, LookupResponse, Message,
    MessageKind, SubmitRequest, SubmitResponse, MAX_BATCH_TRANSACTIONS, MAX_CYCLE_TRANSACTIONS,
};
use crate::peer::{ForwardSubmit, PeerRequest, PeerResponse};
use crate::reader::{FrameReader, ReadStatus};
use crate::tx::TxResult;
use crate::{ids, tx};

/// Feeds `data` to every decoder; returns the kinds whose decoder accepted
/// a body (so tests can show a path was reached), or panics (a bug).
pub fn decode_all(data: &[u8]) -> Vec<MessageKind> {
    let mut accepted = Vec::new();
    let mut bytes = AlignedVec::<FRAME_ALIGN>::with_capacity(data.len());
    bytes.extend_from_slice(data);

    // 1. The bytes as a frame.
    if let Ok(frame) = decode_frame(&bytes) {
        decode_bodies(&frame, &mut accepted);
    }

    // 2. The bytes as a stream, read in chunks sized by the first byte.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut reader = FrameReader::new();
    let mut fed = 0;
    loop {
        match reader.next_frame() {
            Err(_) => break,
            Ok(ReadStatus::Frame(frame)) => decode_bodies(&frame, &mut accepted),
            Ok(ReadStatus::NeedMore(n)) => {
                assert!(n > 0, "NeedMore(0) would stall a reader");
                if fed == data.len() {
                    break;
                }
                let spare = reader.spare();
                let take = chunk.min(spare.len()).min(data.len() - fed);
                assert!(take > 0, "spare() empty while a frame is pending");
                spare[..take].copy_from_slice(&data[fed..fed + take]);
                reader.commit(take);
                fed += take;
            }
        }
    }

    // 3. The bytes (after a kind selector) as a body behind a valid header,
    //    so the fuzzer reaches archive validation without forging CRCs.
    if let Some((&selector, body)) = data.split_first() {
        let kind = MessageKind::ALL[usize::from(selector) % MessageKind::ALL.len()];
        let framed = frame_around(kind, body);
        let frame = decode_frame(&framed).expect("a frame with valid checksums decodes");
        decode_bodies(&frame, &mut accepted);
    }

    // 4. The bytes as edge text.
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = tx::parse_id(text);
        let _ = ids::ParticipantId::from_name(text);
        let _ = ids::Currency::from_code(text);
        let _ = ids::Window::from_name(text);
    }
    accepted.sort_by_key(|k| k.code());
    accepted.dedup();
    accepted
}

fn frame_around(kind: MessageKind, body: &[u8]) -> AlignedVec<FRAME_ALIGN> {
    let body = &body[..body.len().min(crate::frame::MAX_BODY_BYTES)];
    let mut out = AlignedVec::<FRAME_ALIGN>::new();
    out.extend_from_slice(&[0u8; crate::frame::HEADER_BYTES]);
    out.extend_from_slice(body);
    out.resize(crate::frame::HEADER_BYTES + padded_len(body.len()), 0);
    let header = FrameHeader {
        kind,
        request_id: 0,
        body_len: body.len() as u32,
        body_checksum: crc32c::crc32c(&out[crate::frame::HEADER_BYTES..]),
    };
    out[..crate::frame::HEADER_BYTES].copy_from_slice(&header.to_bytes());
    out
}

/// Every message decoder, and reading every value a valid archive holds;
/// pushes the kind of each decoder that accepted the body to `accepted`.
fn decode_bodies(frame: &Frame<'_>, accepted: &mut Vec<MessageKind>) {
    // Hand-written readers first: they are what the node runs on the hot path.
    if let Ok(archived) = decode_body::<SubmitRequest>(frame) {
        assert!(archived.transactions.len() <= MAX_BATCH_TRANSACTIONS);
        for t in archived.transactions.iter() {
            let _ = t.to_native();
        }
    }
    if let Ok(archived) = decode_body::<ForwardSubmit>(frame) {
        assert!(archived.transactions.len() <= MAX_BATCH_TRANSACTIONS);
        for t in archived.transactions.iter() {
            let _ = t.to_native();
        }
    }
    if let Ok(archived) = decode_body::<SubmitResponse>(frame) {
        for r in archived.results.iter() {
            let _ = TxResult::from(r);
        }
    }
    if let Ok(archived) = decode_body::<CycleAuditResponse>(frame) {
        let record = &archived.record;
        assert!(record.transactions.len() <= MAX_CYCLE_TRANSACTIONS);
        assert_eq!(record.outcomes.len(), record.transactions.len());
        for t in record.transactions.iter() {
            let _ = t.to_native();
        }
    }

    // Then every kind through rkyv's deserializer and back onto the wire.
    read_all::<SubmitRequest>(frame, accepted);
    read_all::<SubmitResponse>(frame, accepted);
    read_all::<LookupRequest>(frame, accepted);
    read_all::<LookupResponse>(frame, accepted);
    read_all::<ErrorResponse>(frame, accepted);
    read_all::<CycleRunRequest>(frame, accepted);
    read_all::<CycleRunResponse>(frame, accepted);
    read_all::<CycleAuditRequest>(frame, accepted);
    read_all::<CycleAuditResponse>(frame, accepted);
    read_all::<DepositRequest>(frame, accepted);
    read_all::<DepositResponse>(frame, accepted);
    read_all::<BalancesRequest>(frame, accepted);
    read_all::<BalancesResponse>(frame, accepted);
    read_all::<CycleListRequest>(frame, accepted);
    read_all::<CycleListResponse>(frame, accepted);
    read_all::<ForecastRequest>(frame, accepted);
    read_all::<ForecastResponse>(frame, accepted);
    read_all::<PeerRequest>(frame, accepted);
    read_all::<PeerResponse>(frame, accepted);
    read_all::<ForwardSubmit>(frame, accepted);
}

/// Decodes `frame` as an `M`, deserializes every value of it, and checks
/// that what the decoder accepts the encoder accepts too (the limits agree)
/// and survives a second trip through the wire unchanged. `Debug` is the
/// comparison because NaN floats are not equal to themselves.
fn read_all<M>(frame: &Frame<'_>, accepted: &mut Vec<MessageKind>)
where
    M: Message + Encode + core::fmt::Debug,
    M::Archived: rkyv::Deserialize<M, rkyv::rancor::Strategy<(), rkyv::rancor::Error>>,
{
    let Ok(archived) = decode_body::<M>(frame) else {
        return;
    };
    accepted.push(<M as Message>::KIND);
    let value: M = rkyv::api::low::deserialize::<M, rkyv::rancor::Error>(archived)
        .expect("a validated archive deserializes");
    value
        .check_limits()
        .expect("a body the decoder accepts is within the encoder's limits");
    let mut out = FrameBuf::new();
    // An archive may share data between fields, so its re-encoding can be
    // larger than a frame; that is the only refusal allowed here.
    if let Err(e) = out.push(frame.request_id(), &value) {
        assert!(
            matches!(e, crate::error::EncodeError::Oversize { .. }),
            "re-encoding a decoded {:?} failed: {e}",
            <M as Message>::KIND
        );
        return;
    }
    let again = decode_frame(out.as_slice()).expect("an encoded frame decodes");
    let archived = decode_body::<M>(&again).expect("an encoded body decodes");
    let back: M = rkyv::api::low::deserialize::<M, rkyv::rancor::Error>(archived)
        .expect("a validated archive deserializes");
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
}
