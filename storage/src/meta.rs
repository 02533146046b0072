//! A small checksummed file replaced atomically: the Raft vote and committed
//! index live in one (the caller chooses the bytes), and the log keeps its
//! purge point in another.

use std::path::{Path, PathBuf};

use crate::{
    error::{Error, IoContext, Result},
    format::CorruptReason,
    io,
};

/// Largest content of a meta file. Votes and indexes are tens of bytes; the
/// bound keeps a damaged length field from asking for gigabytes.
pub const META_BYTES_MAX: usize = 64 << 10;

const META_MAGIC: [u8; 4] = *b"SMF1";
const META_HEADER_BYTES: usize = 12;

/// A file whose whole content is replaced atomically on every store
/// (write tmp, fdatasync, rename, fsync dir).
#[derive(Debug, Clone)]
pub struct MetaFile {
    path: PathBuf,
}

impl MetaFile {
    /// A handle on `path`; nothing is read or created yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last stored content, or `None` if nothing was ever stored.
    /// A damaged file is an error, not `None`: losing a vote is unsafe.
    pub async fn load(&self) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = io::read_file(&self.path).await.at(&self.path)? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| Error::CorruptFile {
                path: self.path.clone(),
                reason: CorruptReason::BadFile,
            })
    }

    /// Durably replaces the content with `bytes`.
    pub async fn store(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > META_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "meta file",
                bytes: bytes.len(),
                max_bytes: META_BYTES_MAX,
            });
        }
        let header = encode_header(bytes);
        io::write_file_atomic(&self.path, &[&header, bytes])
            .await
            .at(&self.path)
    }
}

fn encode_header(bytes: &[u8]) -> [u8; META_HEADER_BYTES] {
    let len = (bytes.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), bytes);
    let mut h = [0u8; META_HEADER_BYTES];
    h[0..4].copy_from_slice(&META_MAGIC);
    h[4..8].copy_from_slice(&len);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < META_HEADER_BYTES || bytes[0..4] != META_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    if len > META_BYTES_MAX || bytes.len() != META_HEADER_BYTES + len {
        return None;
    }
    let body = &bytes[META_HEADER_BYTES..];
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    (crc32c::crc32c_append(crc32c::crc32c(&bytes[4..8]), body) == crc).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_every_flipped_byte() {
        let body = b"vote:3:node-1";
        let mut file = encode_header(body).to_vec();
        file.extend_from_slice(body);
        assert_eq!(decode(&file), Some(&body[..]));
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), None, "flip at {i} undetected");
        }
        assert_eq!(decode(&file[..file.len() - 1]), None);
    }
}
