//! Frames: round trips of every message kind and every decode error.

mod common;

use common::{aligned, batch, frame_around, reseal, tx};
use settle_codec::rkyv;
use settle_codec::{
    decode_body, decode_frame, encode_frame, DecodeError, EncodeError, ErrorCode, ErrorResponse,
    Field, FrameBuf, FrameHeader, FramePart, FrameReader, LookupItem, LookupRequest,
    LookupResponse, MessageKind, ReadStatus, RejectReason, SubmitBatch, SubmitRequest,
    SubmitResponse, TxEvent, TxEventKind, TxResult, TxStatus, HEADER_BYTES, MAGIC,
    MAX_BATCH_TRANSACTIONS, MAX_BODY_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_LOOKUP_IDS, MAX_TX_EVENTS,
    VERSION,
};

fn submit_frame(n: usize, request_id: u64) -> Vec<u8> {
    let txs = batch(n);
    let mut buf = FrameBuf::new();
    encode_frame(request_id, &SubmitBatch { transactions: &txs }, &mut buf)
        .unwrap()
        .to_vec()
}

#[test]
fn submit_request_round_trips_through_a_frame() {
    let txs = batch(1000);
    let mut buf = FrameBuf::new();
    let bytes = encode_frame(42, &SubmitBatch { transactions: &txs }, &mut buf).unwrap();
    assert_eq!(bytes.len() % 16, 0);
    assert_eq!(&bytes[..4], b"SETL");

    let frame = decode_frame(bytes).unwrap();
    assert_eq!(frame.kind(), MessageKind::SubmitRequest);
    assert_eq!(frame.request_id(), 42);
    assert_eq!(frame.frame_len(), bytes.len());
    let archived = decode_body::<SubmitRequest>(&frame).unwrap();
    let back: Vec<_> = archived
        .transactions
        .iter()
        .map(|t| t.to_native())
        .collect();
    assert_eq!(back, txs);
    // A 1,000-transaction body is the 48-byte archives plus the vec header.
    assert!(
        frame.body().len() <= 1000 * 48 + 16,
        "{}",
        frame.body().len()
    );
}

#[test]
fn borrowed_batch_encodes_exactly_like_the_owned_request() {
    let txs = batch(37);
    let mut a = FrameBuf::new();
    let mut b = FrameBuf::new();
    let owned = encode_frame(
        7,
        &SubmitRequest {
            transactions: txs.clone(),
        },
        &mut a,
    )
    .unwrap();
    let borrowed = encode_frame(7, &SubmitBatch { transactions: &txs }, &mut b).unwrap();
    assert_eq!(owned, borrowed);
}

#[test]
fn responses_and_lookups_round_trip() {
    let results = vec![
        TxResult::Created,
        TxResult::Duplicate,
        TxResult::Conflict,
        TxResult::Rejected {
            reason: RejectReason::SameParty,
            field: Field::Creditor,
        },
    ];
    let mut buf = FrameBuf::new();
    let bytes = encode_frame(
        1,
        &SubmitResponse {
            results: results.clone(),
        },
        &mut buf,
    )
    .unwrap()
    .to_vec();
    let bytes = aligned(&bytes);
    let frame = decode_frame(&bytes).unwrap();
    let archived = decode_body::<SubmitResponse>(&frame).unwrap();
    let back: Vec<TxResult> = archived.results.iter().map(TxResult::from).collect();
    assert_eq!(back, results);

    let lookup = LookupRequest {
        ids: vec![1, u128::MAX, 99],
    };
    let bytes = aligned(encode_frame(2, &lookup, &mut buf).unwrap());
    let frame = decode_frame(&bytes).unwrap();
    let archived = decode_body::<LookupRequest>(&frame).unwrap();
    let ids: Vec<u128> = archived.ids.iter().map(|id| id.to_native()).collect();
    assert_eq!(ids, lookup.ids);

    let response = LookupResponse {
        items: vec![
            LookupItem {
                id: 1,
                status: TxStatus::Settled,
                events: vec![
                    TxEvent {
                        group: 1,
                        entry_index: 7,
                        at_us: 10,
                        kind: TxEventKind::TransactionSubmitted,
                        cycle_id: 0,
                        batch: 0,
                        amount: 5,
                        currency: settle_codec::Currency::USD,
                        actor: settle_codec::tx::Actor::Shard,
                        detail: settle_codec::tx::EventDetail::None,
                    },
                    TxEvent {
                        group: 1,
                        entry_index: 7,
                        at_us: 20,
                        kind: TxEventKind::SettlementConfirmed,
                        cycle_id: 3,
                        batch: 0,
                        amount: 5,
                        currency: settle_codec::Currency::USD,
                        actor: settle_codec::tx::Actor::Shard,
                        detail: settle_codec::tx::EventDetail::None,
                    },
                ],
            },
            LookupItem {
                id: 99,
                status: TxStatus::NotFound,
                events: vec![],
            },
        ],
    };
    let bytes = aligned(encode_frame(3, &response, &mut buf).unwrap());
    let frame = decode_frame(&bytes).unwrap();
    let archived = decode_body::<LookupResponse>(&frame).unwrap();
    let back: LookupResponse =
        rkyv::api::low::deserialize::<_, rkyv::rancor::Error>(archived).unwrap();
    assert_eq!(back, response);

    let error = ErrorResponse::new(ErrorCode::NotLeader, "ask node 2");
    let bytes = aligned(encode_frame(4, &error, &mut buf).unwrap());
    let frame = decode_frame(&bytes).unwrap();
    let archived = decode_body::<ErrorResponse>(&frame).unwrap();
    assert_eq!(archived.message.as_str(), "ask node 2");
    assert_eq!(
        archived.code,
        settle_codec::archived::ArchivedErrorCode::NotLeader
    );
}

#[test]
fn header_round_trips_and_checks_in_order() {
    let header = FrameHeader {
        kind: MessageKind::LookupResponse,
        request_id: u64::MAX,
        body_len: MAX_BODY_BYTES as u32,
        body_checksum: 0xdead_beef,
    };
    let bytes = header.to_bytes();
    assert_eq!(FrameHeader::parse(&bytes).unwrap(), header);
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), MAGIC);
    assert_eq!(u16::from_le_bytes(bytes[4..6].try_into().unwrap()), VERSION);

    // A foreign protocol is reported as such even though its "checksum" is
    // also wrong.
    let http = *b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\0\0\0\0\0";
    assert!(matches!(
        FrameHeader::parse(&http),
        Err(DecodeError::BadMagic { found }) if found == u32::from_le_bytes(*b"GET ")
    ));
}

#[test]
fn bad_magic() {
    let mut f = submit_frame(3, 1);
    f[0] ^= 0x20;
    assert!(matches!(
        decode_frame(&f),
        Err(DecodeError::BadMagic { .. })
    ));
}

#[test]
fn unsupported_version() {
    let mut f = submit_frame(3, 1);
    f[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
    reseal(&mut f);
    assert!(matches!(
        decode_frame(&f),
        Err(DecodeError::UnsupportedVersion { found }) if found == VERSION + 1
    ));
}

#[test]
fn unknown_kind() {
    for code in [0x0000u16, 0x0100, 0x0105, 0x0200, 0x02ff, 0x03ff, 0xffff] {
        let mut f = submit_frame(3, 1);
        f[6..8].copy_from_slice(&code.to_le_bytes());
        reseal(&mut f);
        assert!(
            matches!(decode_frame(&f), Err(DecodeError::UnknownKind { found }) if found == code),
            "{code:#x}"
        );
    }
}

#[test]
fn reserved_must_be_zero() {
    let mut f = submit_frame(3, 1);
    f[24] = 1;
    reseal(&mut f);
    assert!(matches!(
        decode_frame(&f),
        Err(DecodeError::ReservedNotZero { found: 1 })
    ));
}

#[test]
fn truncated_header_and_body() {
    let f = submit_frame(3, 1);
    assert!(matches!(
        decode_frame(&f[..HEADER_BYTES - 1]),
        Err(DecodeError::Truncated {
            needed: HEADER_BYTES,
            available: 31
        })
    ));
    assert!(matches!(
        decode_frame(&[]),
        Err(DecodeError::Truncated {
            needed: HEADER_BYTES,
            available: 0
        })
    ));
    let cut = f.len() - 1;
    match decode_frame(&f[..cut]) {
        Err(DecodeError::Truncated { needed, available }) => {
            assert_eq!(needed, f.len());
            assert_eq!(available, cut);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn oversize_frame_is_refused_from_its_header() {
    let mut f = submit_frame(3, 1);
    f[16..20].copy_from_slice(&(MAX_BODY_BYTES as u32 + 1).to_le_bytes());
    let header_checksum = crc32c::crc32c(&f[..28]);
    f[28..32].copy_from_slice(&header_checksum.to_le_bytes());
    let head: &[u8; 32] = f[..32].try_into().unwrap();
    assert!(matches!(
        FrameHeader::parse(head),
        Err(DecodeError::Oversize { body_len, max: MAX_BODY_BYTES }) if body_len == MAX_BODY_BYTES + 1
    ));
    assert!(matches!(
        decode_frame(&f),
        Err(DecodeError::Oversize { .. })
    ));
}

#[test]
fn bad_header_checksum() {
    let mut f = submit_frame(3, 1);
    f[8] ^= 1; // request id
    assert!(matches!(
        decode_frame(&f),
        Err(DecodeError::BadChecksum {
            part: FramePart::Header,
            ..
        })
    ));
}

#[test]
fn bad_body_checksum_including_padding() {
    let f = submit_frame(3, 1);
    let body_len = u32::from_le_bytes(f[16..20].try_into().unwrap()) as usize;
    // A byte inside the archive, and a byte of padding after it.
    for at in [HEADER_BYTES + 5, f.len() - 1] {
        let mut g = f.clone();
        g[at] ^= 0x80;
        assert!(
            matches!(
                decode_frame(&g),
                Err(DecodeError::BadChecksum {
                    part: FramePart::Body,
                    ..
                })
            ),
            "byte {at}"
        );
    }
    assert!(HEADER_BYTES + body_len < f.len(), "this frame has padding");
}

#[test]
fn unexpected_kind() {
    let f = aligned(&submit_frame(3, 1));
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<LookupRequest>(&frame),
        Err(DecodeError::UnexpectedKind {
            expected: MessageKind::LookupRequest,
            found: MessageKind::SubmitRequest
        })
    ));
}

#[test]
fn misaligned_body_is_an_error_not_undefined_behaviour() {
    let f = submit_frame(3, 1);
    let mut shifted = aligned(&[0u8]);
    shifted.extend_from_slice(&f);
    let frame = decode_frame(&shifted[1..]).unwrap();
    assert!(matches!(
        decode_body::<SubmitRequest>(&frame),
        Err(DecodeError::Misaligned)
    ));
}

#[test]
fn invalid_archive_with_valid_checksums() {
    // Window tag of the first transaction (offset 36 of its 48 bytes, the
    // elements come first in the body) set to a variant that does not exist.
    let mut f = submit_frame(3, 1);
    assert_eq!(f[HEADER_BYTES + 36], 0, "tx(0) has window RTGS");
    f[HEADER_BYTES + 36] = 9;
    reseal(&mut f);
    let f = aligned(&f);
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<SubmitRequest>(&frame),
        Err(DecodeError::InvalidArchive(_))
    ));

    // A vec claiming more elements than the body holds.
    let mut f = submit_frame(3, 1);
    let body_len = u32::from_le_bytes(f[16..20].try_into().unwrap()) as usize;
    let len_at = HEADER_BYTES + body_len - 4; // ArchivedVec = offset i32, len u32
    assert_eq!(
        u32::from_le_bytes(f[len_at..len_at + 4].try_into().unwrap()),
        3
    );
    f[len_at..len_at + 4].copy_from_slice(&1_000u32.to_le_bytes());
    reseal(&mut f);
    let f = aligned(&f);
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<SubmitRequest>(&frame),
        Err(DecodeError::InvalidArchive(_))
    ));

    // An empty body cannot hold any root.
    let f = frame_around(MessageKind::SubmitRequest, 1, &[]);
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<SubmitRequest>(&frame),
        Err(DecodeError::InvalidArchive(_))
    ));

    // Invalid UTF-8 in an error message (long enough to be stored out of
    // line; rkyv keeps strings of up to 8 bytes inside the root).
    let mut buf = FrameBuf::new();
    let message = "a message of some length";
    let mut f = encode_frame(
        1,
        &ErrorResponse::new(ErrorCode::Internal, message),
        &mut buf,
    )
    .unwrap()
    .to_vec();
    let at = f[HEADER_BYTES..]
        .windows(message.len())
        .position(|w| w == message.as_bytes())
        .unwrap()
        + HEADER_BYTES;
    f[at + 3] = 0xff;
    reseal(&mut f);
    let f = aligned(&f);
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<ErrorResponse>(&frame),
        Err(DecodeError::InvalidArchive(_))
    ));
}

/// Serialises a body without the encoder's limit checks, as a hostile peer
/// would, and frames it with valid checksums.
fn hostile_frame<T>(kind: MessageKind, value: &T) -> rkyv::util::AlignedVec<16>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(value).unwrap();
    frame_around(kind, 1, &body)
}

#[test]
fn batch_limits_are_enforced_on_decode() {
    let f = hostile_frame(
        MessageKind::SubmitRequest,
        &SubmitRequest {
            transactions: batch(MAX_BATCH_TRANSACTIONS + 1),
        },
    );
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<SubmitRequest>(&frame),
        Err(DecodeError::BatchTooLarge { what: "transactions", len, max: MAX_BATCH_TRANSACTIONS })
            if len == MAX_BATCH_TRANSACTIONS + 1
    ));

    let f = hostile_frame(
        MessageKind::LookupRequest,
        &LookupRequest {
            ids: vec![7; MAX_LOOKUP_IDS + 1],
        },
    );
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<LookupRequest>(&frame),
        Err(DecodeError::BatchTooLarge { what: "ids", .. })
    ));

    let event = TxEvent {
        group: 1,
        entry_index: 1,
        at_us: 1,
        kind: TxEventKind::BatchOptimized,
        cycle_id: 1,
        batch: 0,
        amount: 5,
        currency: settle_codec::Currency::USD,
        actor: settle_codec::tx::Actor::Shard,
        detail: settle_codec::tx::EventDetail::None,
    };
    let f = hostile_frame(
        MessageKind::LookupResponse,
        &LookupResponse {
            items: vec![LookupItem {
                id: 1,
                status: TxStatus::Deferred,
                events: vec![event; MAX_TX_EVENTS + 1],
            }],
        },
    );
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<LookupResponse>(&frame),
        Err(DecodeError::BatchTooLarge { what: "events", .. })
    ));

    let f = hostile_frame(
        MessageKind::ErrorResponse,
        &ErrorResponse {
            code: ErrorCode::Internal,
            message: "x".repeat(MAX_ERROR_MESSAGE_BYTES + 1),
        },
    );
    let frame = decode_frame(&f).unwrap();
    assert!(matches!(
        decode_body::<ErrorResponse>(&frame),
        Err(DecodeError::BatchTooLarge {
            what: "message bytes",
            ..
        })
    ));
}

#[test]
fn batch_limits_are_enforced_on_encode_and_the_buffer_survives() {
    let mut buf = FrameBuf::new();
    let first = buf
        .push(
            1,
            &SubmitBatch {
                transactions: &batch(2),
            },
        )
        .unwrap();
    let too_many = batch(MAX_BATCH_TRANSACTIONS + 1);
    assert!(matches!(
        buf.push(
            2,
            &SubmitBatch {
                transactions: &too_many
            }
        ),
        Err(EncodeError::BatchTooLarge {
            what: "transactions",
            ..
        })
    ));
    assert!(matches!(
        buf.push(
            3,
            &LookupRequest {
                ids: vec![1; MAX_LOOKUP_IDS + 1]
            }
        ),
        Err(EncodeError::BatchTooLarge { what: "ids", .. })
    ));
    assert_eq!(
        buf.len(),
        first.end,
        "a refused frame leaves no bytes behind"
    );
    assert!(decode_frame(buf.as_slice()).is_ok());

    // The largest batch fits one frame.
    let full = batch(MAX_BATCH_TRANSACTIONS);
    let bytes = encode_frame(
        4,
        &SubmitBatch {
            transactions: &full,
        },
        &mut buf,
    )
    .unwrap();
    let frame = decode_frame(bytes).unwrap();
    let archived = decode_body::<SubmitRequest>(&frame).unwrap();
    assert_eq!(archived.transactions.len(), MAX_BATCH_TRANSACTIONS);
    assert_eq!(archived.transactions[8191].to_native(), tx(8191));
}

#[test]
fn error_messages_are_cut_on_a_char_boundary() {
    let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES); // 2 bytes each
    let e = ErrorResponse::new(ErrorCode::BadRequest, &long);
    assert_eq!(e.message.len(), MAX_ERROR_MESSAGE_BYTES);
    let odd = format!("a{long}");
    let e = ErrorResponse::new(ErrorCode::BadRequest, &odd);
    assert_eq!(e.message.len(), MAX_ERROR_MESSAGE_BYTES - 1);
}

#[test]
fn reader_splits_a_stream_fed_one_byte_at_a_time() {
    let mut buf = FrameBuf::new();
    for i in 0..5u64 {
        buf.push(
            i,
            &SubmitBatch {
                transactions: &batch(i as usize * 7),
            },
        )
        .unwrap();
    }
    buf.push(9, &ErrorResponse::new(ErrorCode::Overloaded, "slow down"))
        .unwrap();
    let stream = buf.as_slice().to_vec();

    let mut reader = FrameReader::new();
    let mut seen = Vec::new();
    let mut fed = 0;
    loop {
        match reader.next_frame().unwrap() {
            ReadStatus::Frame(frame) => {
                let id = frame.request_id();
                if frame.kind() == MessageKind::SubmitRequest {
                    let archived = decode_body::<SubmitRequest>(&frame).unwrap();
                    assert_eq!(archived.transactions.len(), id as usize * 7);
                } else {
                    let archived = decode_body::<ErrorResponse>(&frame).unwrap();
                    assert_eq!(archived.message.as_str(), "slow down");
                }
                seen.push(id);
            }
            ReadStatus::NeedMore(n) => {
                assert!(n > 0);
                if fed == stream.len() {
                    break;
                }
                let spare = reader.spare();
                assert!(!spare.is_empty());
                spare[0] = stream[fed];
                reader.commit(1);
                fed += 1;
            }
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4, 9]);
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn reader_reports_exactly_what_it_needs_and_refuses_oversize_early() {
    let f = submit_frame(5, 1);
    let mut reader = FrameReader::new();
    assert!(matches!(reader.next_frame(), Ok(ReadStatus::NeedMore(32))));
    reader.spare()[..10].copy_from_slice(&f[..10]);
    reader.commit(10);
    assert!(matches!(reader.next_frame(), Ok(ReadStatus::NeedMore(22))));
    reader.spare()[..22].copy_from_slice(&f[10..32]);
    reader.commit(22);
    let rest = f.len() - 32;
    assert!(matches!(reader.next_frame(), Ok(ReadStatus::NeedMore(n)) if n == rest));

    // A header announcing an oversize body fails before any body arrives.
    let mut g = f.clone();
    g[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let header_checksum = crc32c::crc32c(&g[..28]);
    g[28..32].copy_from_slice(&header_checksum.to_le_bytes());
    let mut reader = FrameReader::new();
    reader.spare()[..32].copy_from_slice(&g[..32]);
    reader.commit(32);
    assert!(matches!(
        reader.next_frame(),
        Err(DecodeError::Oversize { .. })
    ));

    // A corrupted body fails when its frame completes.
    let mut h = f.clone();
    h[40] ^= 1;
    let mut reader = FrameReader::new();
    reader.spare()[..h.len()].copy_from_slice(&h);
    reader.commit(h.len());
    assert!(matches!(
        reader.next_frame(),
        Err(DecodeError::BadChecksum {
            part: FramePart::Body,
            ..
        })
    ));
}

#[test]
fn reader_handles_a_maximum_frame_in_large_reads() {
    let full = batch(MAX_BATCH_TRANSACTIONS);
    let mut buf = FrameBuf::new();
    buf.push(
        1,
        &SubmitBatch {
            transactions: &full,
        },
    )
    .unwrap();
    buf.push(
        2,
        &SubmitBatch {
            transactions: &full[..3],
        },
    )
    .unwrap();
    let stream = buf.as_slice().to_vec();
    let mut source = std::io::Cursor::new(stream);
    let mut reader = FrameReader::new();
    let mut ids = Vec::new();
    loop {
        match reader.next_frame().unwrap() {
            ReadStatus::Frame(frame) => {
                let archived = decode_body::<SubmitRequest>(&frame).unwrap();
                ids.push((frame.request_id(), archived.transactions.len()));
            }
            ReadStatus::NeedMore(_) => {
                if reader.read_from(&mut source).unwrap() == 0 {
                    break;
                }
            }
        }
    }
    assert_eq!(ids, vec![(1, MAX_BATCH_TRANSACTIONS), (2, 3)]);
}
