//! Property tests: untrusted bytes never panic the decoder; anything encoded
//! decodes to itself; any corruption is detected.

mod common;

use common::{aligned, frame_around};
use proptest::prelude::*;
use settle_codec::rkyv;
use settle_codec::{
    decode_body, decode_frame, Currency, DecodeError, ErrorCode, ErrorResponse, Field, Frame,
    FrameBuf, FrameReader, LookupItem, LookupRequest, LookupResponse, Message, MessageKind,
    ParticipantId, ReadStatus, RejectReason, SubmitBatch, SubmitRequest, SubmitResponse,
    Transaction, TxEvent, TxEventKind, TxResult, TxStatus, Window, HEADER_BYTES,
};

fn any_window() -> impl Strategy<Value = Window> {
    prop::sample::select(Window::ALL.to_vec())
}

fn any_transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<u128>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u16>(),
        any::<u16>(),
        any_window(),
        any::<u64>(),
    )
        .prop_map(
            |(id, debtor, creditor, amount, send, receive, window, ts)| Transaction {
                id,
                debtor: ParticipantId(debtor),
                creditor: ParticipantId(creditor),
                amount,
                send: Currency(send),
                receive: Currency(receive),
                window,
                client_timestamp_us: ts,
            },
        )
}

fn any_tx_result() -> impl Strategy<Value = TxResult> {
    prop_oneof![
        Just(TxResult::Created),
        Just(TxResult::Duplicate),
        Just(TxResult::Conflict),
        (
            prop::sample::select(RejectReason::ALL.to_vec()),
            prop::sample::select(Field::ALL.to_vec())
        )
            .prop_map(|(reason, field)| TxResult::Rejected { reason, field }),
    ]
}

fn any_lookup_item() -> impl Strategy<Value = LookupItem> {
    let status = prop::sample::select(vec![
        TxStatus::NotFound,
        TxStatus::Pending,
        TxStatus::Settled,
        TxStatus::Deferred,
        TxStatus::Failed,
    ]);
    let kind = prop::sample::select(vec![
        TxEventKind::TransactionSubmitted,
        TxEventKind::BatchCreated,
        TxEventKind::SettlementConfirmed,
        TxEventKind::BatchOptimized,
        TxEventKind::SettlementInitiated,
        TxEventKind::SettlementFailed,
    ]);
    let event = (any::<u64>(), kind, any::<u64>()).prop_map(|(at_us, kind, cycle_id)| TxEvent {
        group: 1,
        entry_index: at_us / 2,
        at_us,
        kind,
        cycle_id,
        batch: 0,
        amount: 5,
        currency: settle_codec::Currency::USD,
        actor: settle_codec::tx::Actor::Shard,
        detail: settle_codec::tx::EventDetail::None,
    });
    (
        any::<u128>(),
        status,
        prop::collection::vec(event, 0..=settle_codec::MAX_TX_EVENTS),
    )
        .prop_map(|(id, status, events)| LookupItem { id, status, events })
}

/// Every way the node or the client may read a frame: each must return a
/// value or a typed error.
fn decode_every_way(frame: &Frame<'_>) {
    fn one<M: Message>(frame: &Frame<'_>) {
        let _ = decode_body::<M>(frame);
    }
    one::<SubmitRequest>(frame);
    one::<SubmitResponse>(frame);
    one::<LookupRequest>(frame);
    one::<LookupResponse>(frame);
    one::<ErrorResponse>(frame);
    if let Ok(archived) = decode_body::<SubmitRequest>(frame) {
        for tx in archived.transactions.iter() {
            let _ = tx.to_native();
        }
    }
    if let Ok(archived) = decode_body::<LookupResponse>(frame) {
        let _ = rkyv::api::low::deserialize::<LookupResponse, rkyv::rancor::Error>(archived);
    }
}

/// The frame reader fed `bytes` in `chunk`-sized reads: frames or typed
/// errors, never a panic, and it never asks for nothing.
fn read_stream(bytes: &[u8], chunk: usize) -> Result<Vec<(MessageKind, u64)>, DecodeError> {
    let mut reader = FrameReader::new();
    let mut fed = 0;
    let mut frames = Vec::new();
    loop {
        match reader.next_frame()? {
            ReadStatus::Frame(frame) => {
                decode_every_way(&frame);
                frames.push((frame.kind(), frame.request_id()));
            }
            ReadStatus::NeedMore(n) => {
                assert!(n > 0);
                if fed == bytes.len() {
                    return Ok(frames);
                }
                let spare = reader.spare();
                let take = chunk.min(spare.len()).min(bytes.len() - fed);
                assert!(take > 0);
                spare[..take].copy_from_slice(&bytes[fed..fed + take]);
                reader.commit(take);
                fed += take;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let bytes = aligned(&bytes);
        if let Ok(frame) = decode_frame(&bytes) {
            decode_every_way(&frame);
        }
        let _ = read_stream(&bytes, 7);
    }

    /// The cargo-fuzz target's body, run on proptest's inputs in every
    /// `cargo test`.
    #[test]
    fn fuzz_body_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        settle_codec::fuzzing::decode_all(&bytes);
    }

    #[test]
    fn fuzz_body_never_panics_on_near_valid_frames(
        txs in prop::collection::vec(any_transaction(), 0..8),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        selector in any::<u8>(),
    ) {
        let mut buf = FrameBuf::new();
        buf.push(1, &SubmitBatch { transactions: &txs }).unwrap();
        let mut bytes = buf.as_slice().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = value;
        settle_codec::fuzzing::decode_all(&bytes);
        // And the body alone, behind the fuzz body's own valid header.
        let mut selected = vec![selector];
        selected.extend_from_slice(&bytes[HEADER_BYTES..]);
        settle_codec::fuzzing::decode_all(&selected);
    }

    /// Random bytes almost never pass the checksums; these do, so they reach
    /// rkyv's validation and the limit checks.
    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        kind in prop::sample::select(MessageKind::ALL.to_vec()),
    ) {
        let f = frame_around(kind, 5, &body);
        let frame = decode_frame(&f).unwrap();
        prop_assert_eq!(frame.body(), &body[..]);
        decode_every_way(&frame);
    }

    /// Valid frames with a few bytes overwritten and resealed: structurally
    /// plausible archives that are still wrong.
    #[test]
    fn corrupted_archives_behind_valid_headers_never_panic(
        txs in prop::collection::vec(any_transaction(), 0..8),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut buf = FrameBuf::new();
        buf.push(1, &SubmitBatch { transactions: &txs }).unwrap();
        let body = buf.as_slice()[HEADER_BYTES..].to_vec();
        let body_len = u32::from_le_bytes(buf.as_slice()[16..20].try_into().unwrap()) as usize;
        let mut body = body[..body_len].to_vec();
        for (at, value) in edits {
            let i = at.index(body.len());
            body[i] = value;
        }
        for kind in MessageKind::ALL {
            let f = frame_around(kind, 1, &body);
            let frame = decode_frame(&f).unwrap();
            decode_every_way(&frame);
        }
    }

    #[test]
    fn batches_round_trip(
        txs in prop::collection::vec(any_transaction(), 0..300),
        request_id in any::<u64>(),
    ) {
        let mut buf = FrameBuf::new();
        let bytes = settle_codec::encode_frame(request_id, &SubmitBatch { transactions: &txs }, &mut buf).unwrap();
        let frame = decode_frame(bytes).unwrap();
        prop_assert_eq!(frame.request_id(), request_id);
        prop_assert_eq!(frame.frame_len(), bytes.len());
        let archived = decode_body::<SubmitRequest>(&frame).unwrap();
        let back: Vec<Transaction> = archived.transactions.iter().map(|t| t.to_native()).collect();
        prop_assert_eq!(&back, &txs);
        // The rkyv deserializer agrees with the hand-written conversion.
        let via_rkyv = rkyv::api::low::deserialize::<SubmitRequest, rkyv::rancor::Error>(archived).unwrap();
        prop_assert_eq!(via_rkyv.transactions, txs);
    }

    #[test]
    fn responses_round_trip(
        results in prop::collection::vec(any_tx_result(), 0..300),
        items in prop::collection::vec(any_lookup_item(), 0..20),
        ids in prop::collection::vec(any::<u128>(), 0..100),
        message in ".{0,100}",
        code in prop::sample::select(vec![ErrorCode::BadRequest, ErrorCode::Overloaded, ErrorCode::NotLeader, ErrorCode::ShuttingDown, ErrorCode::UnsupportedKind, ErrorCode::Internal, ErrorCode::Forbidden]),
    ) {
        let mut buf = FrameBuf::new();
        buf.push(1, &SubmitResponse { results: results.clone() }).unwrap();
        buf.push(2, &LookupResponse { items: items.clone() }).unwrap();
        buf.push(3, &LookupRequest { ids: ids.clone() }).unwrap();
        buf.push(4, &ErrorResponse::new(code, &message)).unwrap();
        let mut rest = buf.as_slice();

        let frame = decode_frame(rest).unwrap();
        let back: Vec<TxResult> = decode_body::<SubmitResponse>(&frame).unwrap().results.iter().map(TxResult::from).collect();
        prop_assert_eq!(back, results);
        rest = &rest[frame.frame_len()..];

        let frame = decode_frame(rest).unwrap();
        let archived = decode_body::<LookupResponse>(&frame).unwrap();
        let back = rkyv::api::low::deserialize::<LookupResponse, rkyv::rancor::Error>(archived).unwrap();
        prop_assert_eq!(back.items, items);
        rest = &rest[frame.frame_len()..];

        let frame = decode_frame(rest).unwrap();
        let back: Vec<u128> = decode_body::<LookupRequest>(&frame).unwrap().ids.iter().map(|i| i.to_native()).collect();
        prop_assert_eq!(back, ids);
        rest = &rest[frame.frame_len()..];

        let frame = decode_frame(rest).unwrap();
        let archived = decode_body::<ErrorResponse>(&frame).unwrap();
        let back = rkyv::api::low::deserialize::<ErrorResponse, rkyv::rancor::Error>(archived).unwrap();
        prop_assert_eq!(back, ErrorResponse::new(code, &message));
        prop_assert_eq!(rest.len(), frame.frame_len());
    }

    /// CRC-32C catches every single-bit error, and the header and body each
    /// have one, so no flipped bit anywhere in a frame goes unnoticed.
    #[test]
    fn every_single_bit_flip_is_detected(
        txs in prop::collection::vec(any_transaction(), 0..20),
        at in any::<prop::sample::Index>(),
        bit in 0..8u8,
    ) {
        let mut buf = FrameBuf::new();
        let mut bytes = aligned(settle_codec::encode_frame(9, &SubmitBatch { transactions: &txs }, &mut buf).unwrap());
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(decode_frame(&bytes).is_err(), "flip of bit {} of byte {} went unnoticed", bit, i);
    }

    #[test]
    fn streams_split_anywhere_yield_the_same_frames(
        batches in prop::collection::vec(prop::collection::vec(any_transaction(), 0..40), 1..6),
        chunk in 1usize..5000,
    ) {
        let mut buf = FrameBuf::new();
        let mut expected = Vec::new();
        for (i, txs) in batches.iter().enumerate() {
            buf.push(i as u64 * 3, &SubmitBatch { transactions: txs }).unwrap();
            expected.push((MessageKind::SubmitRequest, i as u64 * 3));
        }
        let frames = read_stream(buf.as_slice(), chunk).unwrap();
        prop_assert_eq!(frames, expected);
    }

    #[test]
    fn json_form_round_trips(tx in any_transaction(),
        send in prop::sample::select(Currency::all().collect::<Vec<_>>()),
        receive in prop::sample::select(Currency::all().collect::<Vec<_>>()),
    ) {
        let tx = Transaction { send, receive, ..tx };
        let json = serde_json::to_string(&tx).unwrap();
        let back: Transaction = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, tx);
    }

    #[test]
    fn participant_names_round_trip(id in any::<u32>()) {
        let p = ParticipantId(id);
        prop_assert_eq!(ParticipantId::from_name(&p.name()), Some(p));
    }

    #[test]
    fn ids_have_one_spelling(id in any::<u128>(), other in any::<u128>()) {
        let text = settle_codec::format_id(id);
        prop_assert_eq!(settle_codec::parse_id(&text), Some(id));
        // Two different ids never share a key; the decimal form is not an id.
        if id != other {
            prop_assert_ne!(settle_codec::parse_id(&settle_codec::format_id(other)), Some(id));
        }
        let decimal = id.to_string();
        if decimal.len() != 32 {
            prop_assert_eq!(settle_codec::parse_id(&decimal), None);
        }
    }
}
