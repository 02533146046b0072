//! A streaming frame reader that does no I/O itself, so blocking sockets and
//! async executors drive it the same way:
//!
//! ```text
//! loop {
//!     match reader.next_frame()? {
//!         ReadStatus::Frame(frame) => handle(frame),
//!         ReadStatus::NeedMore(_) => {
//!             let n = socket.read(reader.spare())?;   // or an async read
//!             if n == 0 { break }                      // EOF
//!             reader.commit(n);
//!         }
//!     }
//! }
//! ```

use std::io;

use rkyv::util::AlignedVec;

use crate::error::DecodeError;
use crate::frame::{decode_frame, Frame, FrameHeader, FRAME_ALIGN, HEADER_BYTES, MAX_FRAME_BYTES};

/// Bytes offered to one read when no frame is pending: large enough that a
/// 1,000-transaction batch arrives in one or two reads.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The reader's buffer never grows past this: one whole frame plus one read.
/// A frame larger than `MAX_FRAME_BYTES` is refused from its header, before
/// its body is buffered.
pub const READER_BUFFER_BYTES_MAX: usize = MAX_FRAME_BYTES + READ_CHUNK_BYTES;

/// What [`FrameReader::next_frame`] found.
#[derive(Debug)]
pub enum ReadStatus<'a> {
    /// A complete, checksum-verified frame (its body 16-byte aligned).
    Frame(Frame<'a>),
    /// At least this many more bytes are needed for the next frame.
    NeedMore(usize),
}

/// Splits a byte stream into frames, in a 16-aligned buffer so bodies can be
/// validated in place.
pub struct FrameReader {
    /// `buf[start..end]` is received and not yet returned; bytes past `end`
    /// are initialised space for the next read.
    buf: AlignedVec<FRAME_ALIGN>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buf: AlignedVec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes received but not yet returned as frames. Non-zero at EOF means
    /// the peer stopped mid-frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes the reader holds allocated (what a connection costs in memory).
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the buffer when nothing is pending in it (an idle connection
    /// then costs nothing until its next read). Returns the bytes freed.
    pub fn release_if_empty(&mut self) -> usize {
        if self.buffered() > 0 {
            return 0;
        }
        let freed = self.buf.capacity();
        self.buf = AlignedVec::new();
        self.start = 0;
        self.end = 0;
        freed
    }

    /// The next complete frame, or how many more bytes it needs. An error
    /// leaves the stream out of step: close the connection.
    pub fn next_frame(&mut self) -> Result<ReadStatus<'_>, DecodeError> {
        let available = &self.buf[self.start..self.end];
        let Some(head) = available.first_chunk::<HEADER_BYTES>() else {
            return Ok(ReadStatus::NeedMore(HEADER_BYTES - available.len()));
        };
        // Checks the header (and refuses an oversize frame) before waiting
        // for its body.
        let frame_len = FrameHeader::parse(head)?.frame_len();
        if available.len() < frame_len {
            return Ok(ReadStatus::NeedMore(frame_len - available.len()));
        }
        let frame_start = self.start;
        self.start += frame_len;
        assert!(
            self.start % FRAME_ALIGN == 0,
            "frames are padded to FRAME_ALIGN"
        );
        let frame = decode_frame(&self.buf[frame_start..frame_start + frame_len])?;
        Ok(ReadStatus::Frame(frame))
    }

    /// Space to read into: never empty while the last `next_frame` said
    /// `NeedMore`. Moves a partial frame to the front first, so the buffer
    /// stays bounded by `READER_BUFFER_BYTES_MAX`.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.as_mut_slice().copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // After `NeedMore` less than one frame (at most MAX_FRAME_BYTES) is
        // buffered, so there is always room for at least one chunk.
        assert!(
            self.end < READER_BUFFER_BYTES_MAX,
            "spare() called with whole frames still buffered: call next_frame() until NeedMore"
        );
        let want = (self.end + READ_CHUNK_BYTES).min(READER_BUFFER_BYTES_MAX);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf.as_mut_slice()[self.end..]
    }

    /// Records that `n` bytes were read into the front of [`FrameReader::spare`].
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "commit past the spare space"
        );
        self.end += n;
    }

    /// Blocking convenience: one read from `source` into the buffer.
    /// `Ok(0)` is EOF.
    pub fn read_from<R: io::Read + ?Sized>(&mut self, source: &mut R) -> io::Result<usize> {
        let n = source.read(self.spare())?;
        self.commit(n);
        Ok(n)
    }
}
