//! Fuzzes every decoding path of settle-codec with untrusted bytes: frame
//! header and checksums, the streaming reader, rkyv validation of every
//! message kind (behind a valid header, so CRCs do not hide it), limits,
//! and the edge-name parsers. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    settle_codec::fuzzing::decode_all(data);
});
