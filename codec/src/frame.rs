//! The frame: a fixed 32-byte header, then an rkyv body padded to 16 bytes.
//!
//! ```text
//! offset size field
//!      0    4 magic            "SETL" (0x4c544553 little-endian)
//!      4    2 version          VERSION
//!      6    2 kind             MessageKind
//!      8    8 request_id       chosen by the requester, echoed by the reply
//!     16    4 body_len         exact archive length in bytes
//!     20    4 body_checksum    crc32c of the padded body (body_len rounded up to 16)
//!     24    4 reserved         zero
//!     28    4 header_checksum  crc32c of bytes 0..28
//!     32    … body, then zero padding to a multiple of 16
//! ```
//!
//! All integers are little-endian. Frames are a multiple of 16 bytes, so
//! back-to-back frames in a 16-aligned buffer all have 16-aligned bodies
//! and can be validated in place. The header has its own checksum so a
//! corrupted length is caught before a reader waits for bytes that will
//! never come.

use core::ops::Range;

use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use crate::error::{DecodeError, EncodeError, FramePart};
use crate::messages::{Encode, Message, MessageKind, MAX_BATCH_TRANSACTIONS};
use crate::tx::ArchivedTransaction;

/// `"SETL"` as the first four bytes of every frame.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SETL");

/// Protocol version; a peer speaking another version is refused.
pub const VERSION: u16 = 2;

/// Size of the fixed header.
pub const HEADER_BYTES: usize = 32;

/// Frames and bodies are padded to this, the alignment of the widest archived
/// field (the `u128` transaction id).
pub const FRAME_ALIGN: usize = 16;

/// Largest frame, header included: a full batch of
/// `MAX_BATCH_TRANSACTIONS` archived transactions is 384 KiB, and 1 MiB
/// leaves room for responses and the larger control and Raft messages
/// later issues add, while bounding what one connection can make a reader
/// buffer.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Largest body: the frame less its header.
pub const MAX_BODY_BYTES: usize = MAX_FRAME_BYTES - HEADER_BYTES;

const _: () = assert!(
    MAX_BATCH_TRANSACTIONS * core::mem::size_of::<ArchivedTransaction>() + 1024 <= MAX_BODY_BYTES,
    "a full batch must fit one frame"
);
const _: () = assert!(HEADER_BYTES % FRAME_ALIGN == 0);
const _: () = assert!(MAX_FRAME_BYTES % FRAME_ALIGN == 0);

/// Rounds a body length up to the frame alignment.
#[inline]
pub const fn padded_len(body_len: usize) -> usize {
    (body_len + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// A parsed and checked header (magic, version, reserved and the header
/// checksum are implied by its existence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: MessageKind,
    pub request_id: u64,
    /// Exact archive length; at most `MAX_BODY_BYTES`.
    pub body_len: u32,
    pub body_checksum: u32,
}

fn u16_at(bytes: &[u8; HEADER_BYTES], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8; HEADER_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl FrameHeader {
    /// Parses and checks a header, in the order that gives the most useful
    /// error: a foreign protocol is `BadMagic`, a newer peer is
    /// `UnsupportedVersion` (the version sits at a fixed offset across
    /// versions), and only then are the checksummed fields trusted.
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<FrameHeader, DecodeError> {
        let magic = u32_at(bytes, 0);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let header_checksum = u32_at(bytes, 28);
        let actual = crc32c::crc32c(&bytes[..28]);
        if header_checksum != actual {
            return Err(DecodeError::BadChecksum {
                part: FramePart::Header,
                expected: header_checksum,
                actual,
            });
        }
        let reserved = u32_at(bytes, 24);
        if reserved != 0 {
            return Err(DecodeError::ReservedNotZero { found: reserved });
        }
        let kind_code = u16_at(bytes, 6);
        let kind = MessageKind::from_code(kind_code)
            .ok_or(DecodeError::UnknownKind { found: kind_code })?;
        let body_len = u32_at(bytes, 16);
        if body_len as usize > MAX_BODY_BYTES {
            return Err(DecodeError::Oversize {
                body_len: body_len as usize,
                max: MAX_BODY_BYTES,
            });
        }
        Ok(FrameHeader {
            kind,
            request_id: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            body_len,
            body_checksum: u32_at(bytes, 20),
        })
    }

    /// The 32 header bytes, header checksum included.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        assert!(self.body_len as usize <= MAX_BODY_BYTES);
        let mut out = [0u8; HEADER_BYTES];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.kind.code().to_le_bytes());
        out[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.body_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.body_checksum.to_le_bytes());
        // 24..28 reserved, zero.
        let header_checksum = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&header_checksum.to_le_bytes());
        out
    }

    /// Bytes the whole frame occupies on the wire, padding included.
    #[inline]
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + padded_len(self.body_len as usize)
    }
}

/// A frame whose header and body checksum have been verified. Only
/// [`decode_frame`] (and the reader built on it) makes one, so holding a
/// `Frame` means the bytes are the ones the sender wrote.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    header: FrameHeader,
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    pub fn kind(&self) -> MessageKind {
        self.header.kind
    }

    pub fn request_id(&self) -> u64 {
        self.header.request_id
    }

    /// The archive, exactly `body_len` bytes (padding excluded).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Bytes this frame occupied on the wire.
    pub fn frame_len(&self) -> usize {
        self.header.frame_len()
    }
}

/// Reads the frame at the start of `bytes` (which may hold more after it).
/// `Truncated` says how many bytes the frame needs in all.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let Some(head) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Err(DecodeError::Truncated {
            needed: HEADER_BYTES,
            available: bytes.len(),
        });
    };
    let header = FrameHeader::parse(head)?;
    let frame_len = header.frame_len();
    if bytes.len() < frame_len {
        return Err(DecodeError::Truncated {
            needed: frame_len,
            available: bytes.len(),
        });
    }
    let padded = &bytes[HEADER_BYTES..frame_len];
    let actual = crc32c::crc32c(padded);
    if actual != header.body_checksum {
        return Err(DecodeError::BadChecksum {
            part: FramePart::Body,
            expected: header.body_checksum,
            actual,
        });
    }
    Ok(Frame {
        header,
        body: &padded[..header.body_len as usize],
    })
}

/// Validates a frame's body as message `M` and returns it in place (zero
/// copy). The body must be 16-byte aligned in memory, which frames read by
/// [`crate::FrameReader`] or built by [`FrameBuf`] always are.
pub fn decode_body<'a, M: Message>(frame: &Frame<'a>) -> Result<&'a M::Archived, DecodeError> {
    if frame.header.kind != M::KIND {
        return Err(DecodeError::UnexpectedKind {
            expected: M::KIND,
            found: frame.header.kind,
        });
    }
    if frame.body.as_ptr() as usize % FRAME_ALIGN != 0 {
        return Err(DecodeError::Misaligned);
    }
    let archived = rkyv::api::low::access::<M::Archived, rancor::Error>(frame.body)
        .map_err(DecodeError::InvalidArchive)?;
    M::check_archived(archived)?;
    Ok(archived)
}

/// Initial capacity of a frame buffer: a 1,000-transaction batch fits
/// without growing. It grows to the largest frame written, at most a few
/// frames' worth when frames are appended (see the client's flush bound).
const FRAME_BUF_INITIAL_BYTES: usize = 64 * 1024;

/// A reusable, 16-aligned buffer that frames are written into: after the
/// first few frames neither the bytes nor rkyv's scratch space allocate.
pub struct FrameBuf {
    bytes: AlignedVec<FRAME_ALIGN>,
    arena: Arena,
}

impl Default for FrameBuf {
    fn default() -> Self {
        FrameBuf::new()
    }
}

impl FrameBuf {
    pub fn new() -> FrameBuf {
        FrameBuf {
            bytes: AlignedVec::with_capacity(FRAME_BUF_INITIAL_BYTES),
            arena: Arena::new(),
        }
    }

    /// Forgets the frames written; keeps the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// All frames written since the last `clear`, back to back.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends one frame and returns where it lies in [`FrameBuf::as_slice`].
    /// On error the buffer is as it was, frames already in it intact.
    pub fn push<M: Encode>(
        &mut self,
        request_id: u64,
        msg: &M,
    ) -> Result<Range<usize>, EncodeError> {
        msg.check_limits()?;
        let start = self.bytes.len();
        assert!(start % FRAME_ALIGN == 0, "frames are padded to FRAME_ALIGN");
        self.bytes.extend_from_slice(&[0u8; HEADER_BYTES]);
        let body_start = start + HEADER_BYTES;
        // rkyv aligns relative to the writer's position; the buffer is
        // 16-aligned and the body starts at a multiple of 16, so the body's
        // internal alignment is also its alignment in memory.
        let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            msg,
            &mut self.bytes,
            self.arena.acquire(),
        );
        if let Err(e) = written {
            self.bytes.resize(start, 0);
            return Err(EncodeError::Serialize(e));
        }
        let body_len = self.bytes.len() - body_start;
        if body_len > MAX_BODY_BYTES {
            self.bytes.resize(start, 0);
            return Err(EncodeError::Oversize {
                body_len,
                max: MAX_BODY_BYTES,
            });
        }
        let frame_end = body_start + padded_len(body_len);
        self.bytes.resize(frame_end, 0);
        let body_checksum = crc32c::crc32c(&self.bytes[body_start..frame_end]);
        let header = FrameHeader {
            kind: M::KIND,
            request_id,
            body_len: body_len as u32,
            body_checksum,
        };
        self.bytes[start..body_start].copy_from_slice(&header.to_bytes());
        debug_assert!(decode_frame(&self.bytes[start..frame_end]).is_ok());
        Ok(start..frame_end)
    }
}

/// Clears `buf`, writes one frame of `msg` into it and returns the frame.
pub fn encode_frame<'b, M: Encode>(
    request_id: u64,
    msg: &M,
    buf: &'b mut FrameBuf,
) -> Result<&'b [u8], EncodeError> {
    buf.clear();
    let range = buf.push(request_id, msg)?;
    Ok(&buf.as_slice()[range])
}
