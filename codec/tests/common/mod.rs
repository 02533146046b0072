//! Helpers shared by the codec's integration tests.
#![allow(dead_code)]

use settle_codec::rkyv::util::AlignedVec;
use settle_codec::{
    padded_len, Currency, FrameHeader, MessageKind, ParticipantId, Transaction, Window,
    HEADER_BYTES,
};

pub fn tx(i: u64) -> Transaction {
    Transaction {
        id: (u128::from(i) << 64) | 0xfeed,
        debtor: ParticipantId((i % 40) as u32),
        creditor: ParticipantId((i % 40 + 1) as u32),
        amount: 100 + i,
        send: Currency::EUR,
        receive: if i % 3 == 0 {
            Currency::USD
        } else {
            Currency::EUR
        },
        window: Window::ALL[(i % 4) as usize],
        client_timestamp_us: 1_700_000_000_000_000 + i,
    }
}

pub fn batch(n: usize) -> Vec<Transaction> {
    (0..n as u64).map(tx).collect()
}

/// Copies bytes into a 16-aligned buffer, as the frame reader holds them.
pub fn aligned(bytes: &[u8]) -> AlignedVec<16> {
    let mut v = AlignedVec::<16>::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

/// Builds a frame around arbitrary body bytes with correct checksums, so a
/// test reaches the checks behind them (archive validation, limits).
pub fn frame_around(kind: MessageKind, request_id: u64, body: &[u8]) -> AlignedVec<16> {
    let mut padded = body.to_vec();
    padded.resize(padded_len(body.len()), 0);
    let header = FrameHeader {
        kind,
        request_id,
        body_len: body.len() as u32,
        body_checksum: crc32c::crc32c(&padded),
    };
    let mut out = aligned(&header.to_bytes());
    out.extend_from_slice(&padded);
    out
}

/// Recomputes both checksums of a frame after a test edited it, keeping
/// whatever the test wrote into the other header fields.
pub fn reseal(frame: &mut [u8]) {
    let body_len = u32::from_le_bytes(frame[16..20].try_into().unwrap()) as usize;
    let end = (HEADER_BYTES + padded_len(body_len)).min(frame.len());
    let body_checksum = crc32c::crc32c(&frame[HEADER_BYTES..end]);
    frame[20..24].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&frame[..28]);
    frame[28..32].copy_from_slice(&header_checksum.to_le_bytes());
}
