//! The decoder's fuzz body, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/decode_frame.rs`) and a property test, so both push
//! untrusted bytes through every decoding path. Not an API.

use rkyv::util::AlignedVec;

use crate::frame::{decode_body, decode_frame, padded_len, Frame, FrameHeader, FRAME_ALIGN};
use crate::messages::{
    ErrorResponse, LookupRequest, LookupResponse, Message, MessageKind, SubmitRequest,
    SubmitResponse, MAX_BATCH_TRANSACTIONS,
};
use crate::reader::{FrameReader, ReadStatus};
use crate::tx::TxResult;
use crate::{ids, tx};

/// Feeds `data` to every decoder; returns normally or panics (a bug).
pub fn decode_all(data: &[u8]) {
    let mut bytes = AlignedVec::<FRAME_ALIGN>::with_capacity(data.len());
    bytes.extend_from_slice(data);

    // 1. The bytes as a frame.
    if let Ok(frame) = decode_frame(&bytes) {
        decode_bodies(&frame);
    }

    // 2. The bytes as a stream, read in chunks sized by the first byte.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut reader = FrameReader::new();
    let mut fed = 0;
    loop {
        match reader.next_frame() {
            Err(_) => break,
            Ok(ReadStatus::Frame(frame)) => decode_bodies(&frame),
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
        decode_bodies(&frame);
    }

    // 4. The bytes as edge text.
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = tx::parse_id(text);
        let _ = ids::ParticipantId::from_name(text);
        let _ = ids::Currency::from_code(text);
        let _ = ids::Window::from_name(text);
    }
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

/// Every message decoder, and reading every value a valid archive holds.
fn decode_bodies(frame: &Frame<'_>) {
    fn validate<M: Message>(frame: &Frame<'_>) {
        let _ = decode_body::<M>(frame);
    }
    validate::<SubmitResponse>(frame);
    validate::<LookupRequest>(frame);
    validate::<ErrorResponse>(frame);
    validate::<crate::peer::PeerRequest>(frame);
    validate::<crate::peer::PeerResponse>(frame);
    if let Ok(archived) = decode_body::<crate::peer::ForwardSubmit>(frame) {
        for t in archived.transactions.iter() {
            let _ = t.to_native();
        }
    }
    if let Ok(archived) = decode_body::<SubmitRequest>(frame) {
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
    if let Ok(archived) = decode_body::<LookupResponse>(frame) {
        let _ = rkyv::api::low::deserialize::<LookupResponse, rkyv::rancor::Error>(archived);
    }
    if let Ok(archived) = decode_body::<ErrorResponse>(frame) {
        let _ = rkyv::api::low::deserialize::<ErrorResponse, rkyv::rancor::Error>(archived);
    }
}
