//! Snapshot files: each snapshot is written whole and atomically under the
//! next sequence number; the newest valid one is the current snapshot and
//! older ones are deleted once a newer one is durable.

use std::path::{Path, PathBuf};

use crate::{
    error::{Error, IoContext, Result},
    format::CorruptReason,
    io,
    seal::{Cipher, SealError},
};

/// Largest snapshot metadata (the caller's last log id, membership, ...).
pub const SNAPSHOT_META_BYTES_MAX: usize = 1 << 20;

/// Largest snapshot body. Snapshots are read whole into memory (the state
/// machine they describe lives in memory too); the bound keeps a damaged
/// length field from asking for more than a shard can hold.
pub const SNAPSHOT_DATA_BYTES_MAX: u64 = 4 << 30;

const SNAP_MAGIC: [u8; 4] = *b"SSN1";
const SNAP_HEADER_BYTES: usize = 24;
const SNAP_PREFIX: &str = "snap-";
const SNAP_SUFFIX: &str = ".snap";

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequence number assigned by the store (increasing).
    pub seq: u64,
    /// Caller metadata (e.g. last included log id and membership).
    pub meta: Vec<u8>,
    /// The snapshot body.
    pub data: Vec<u8>,
}

/// A directory of snapshot files.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Seals what [`SnapshotStore::write`] writes (and opens sealed files).
    cipher: Option<std::sync::Arc<Cipher>>,
}

/// Header flag (byte 20): meta and data are sealed (see [`crate::seal`]),
/// with the snapshot's sequence number as associated data.
const SNAP_FLAG_SEALED: u8 = 1;

impl SnapshotStore {
    /// Opens (creating if needed) the store in `dir` and removes leftovers of
    /// interrupted writes.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_sealed(dir, None).await
    }

    /// [`SnapshotStore::open`], sealing every snapshot written with
    /// `cipher` (AES-256-GCM); snapshots written without one stay readable.
    pub async fn open_sealed(
        dir: impl Into<PathBuf>,
        cipher: Option<std::sync::Arc<Cipher>>,
    ) -> Result<Self> {
        let dir = dir.into();
        io::create_dir_all(&dir).at(&dir)?;
        for name in io::list_dir(&dir).at(&dir)? {
            if name.starts_with(SNAP_PREFIX) && name.ends_with(".tmp") {
                let path = dir.join(&name);
                io::remove_file(&path).await.at(&path)?;
            }
        }
        Ok(Self { dir, cipher })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.dir
            .join(format!("{SNAP_PREFIX}{seq:020}{SNAP_SUFFIX}"))
    }

    /// Sequence numbers of the stored snapshots, ascending.
    fn list(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = io::list_dir(&self.dir)
            .at(&self.dir)?
            .iter()
            .filter_map(|n| {
                n.strip_prefix(SNAP_PREFIX)?
                    .strip_suffix(SNAP_SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Durably writes a new snapshot, then deletes the older ones.
    /// Returns the new snapshot's sequence number.
    pub async fn write(&self, meta: &[u8], data: &[u8]) -> Result<u64> {
        if meta.len() > SNAPSHOT_META_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "snapshot meta",
                bytes: meta.len(),
                max_bytes: SNAPSHOT_META_BYTES_MAX,
            });
        }
        if data.len() as u64 > SNAPSHOT_DATA_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "snapshot data",
                bytes: data.len(),
                max_bytes: SNAPSHOT_DATA_BYTES_MAX as usize,
            });
        }
        let older = self.list()?;
        let seq = older.last().map_or(1, |s| s + 1);
        let path = self.path_of(seq);
        let sealed = self
            .cipher
            .as_ref()
            .map(|c| (c.seal(seq, 0, meta), c.seal(seq, 1, data)));
        let (flags, meta, data) = match &sealed {
            Some((meta, data)) => (SNAP_FLAG_SEALED, meta.as_slice(), data.as_slice()),
            None => (0, meta, data),
        };
        let header = encode_header(flags, meta, data);
        io::write_file_atomic(&path, &[&header, meta, data])
            .await
            .at(&path)?;
        for old in older {
            let p = self.path_of(old);
            io::remove_file(&p).await.at(&p)?;
        }
        Ok(seq)
    }

    /// The newest snapshot, or `None` if there is none. A damaged newest
    /// snapshot is an error: it was durable once, so damage is real loss.
    pub async fn read_latest(&self) -> Result<Option<Snapshot>> {
        let Some(&seq) = self.list()?.last() else {
            return Ok(None);
        };
        let path = self.path_of(seq);
        let Some(bytes) = io::read_file(&path).await.at(&path)? else {
            return Ok(None);
        };
        let (flags, meta, data) = decode(&bytes).ok_or(Error::CorruptFile {
            path: path.clone(),
            reason: CorruptReason::BadFile,
        })?;
        if flags & SNAP_FLAG_SEALED == 0 {
            return Ok(Some(Snapshot {
                seq,
                meta: meta.to_vec(),
                data: data.to_vec(),
            }));
        }
        let sealed = |reason| Error::CorruptFile {
            path: path.clone(),
            reason: CorruptReason::Sealed(reason),
        };
        let cipher = self.cipher.as_ref().ok_or(sealed(SealError::NoKey))?;
        Ok(Some(Snapshot {
            seq,
            meta: cipher.open(seq, 0, meta).map_err(sealed)?,
            data: cipher.open(seq, 1, data).map_err(sealed)?,
        }))
    }
}

fn checksum(meta: &[u8], data: &[u8], lens: &[u8]) -> u32 {
    let crc = crc32c::crc32c(lens);
    crc32c::crc32c_append(crc32c::crc32c_append(crc, meta), data)
}

fn encode_header(flags: u8, meta: &[u8], data: &[u8]) -> [u8; SNAP_HEADER_BYTES] {
    let mut h = [0u8; SNAP_HEADER_BYTES];
    h[20] = flags;
    h[0..4].copy_from_slice(&SNAP_MAGIC);
    h[4..8].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = checksum_flagged(flags, meta, data, &h[4..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The file checksum; a sealed file's also covers its flags (a plaintext
/// file's is the original format's, so old files still read).
fn checksum_flagged(flags: u8, meta: &[u8], data: &[u8], lens: &[u8]) -> u32 {
    let crc = checksum(meta, data, lens);
    if flags == 0 {
        crc
    } else {
        crc32c::crc32c_append(crc, &[flags])
    }
}

/// A snapshot file's flags, meta and data (sealed if the flags say so).
fn decode(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if bytes.len() < SNAP_HEADER_BYTES
        || bytes[0..4] != SNAP_MAGIC
        || bytes[20] & !SNAP_FLAG_SEALED != 0
        || bytes[21..24] != [0; 3]
    {
        return None;
    }
    let meta_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let data_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    if meta_len > SNAPSHOT_META_BYTES_MAX || data_len > SNAPSHOT_DATA_BYTES_MAX {
        return None;
    }
    let total = SNAP_HEADER_BYTES as u64 + meta_len as u64 + data_len;
    if bytes.len() as u64 != total {
        return None;
    }
    let meta = &bytes[SNAP_HEADER_BYTES..SNAP_HEADER_BYTES + meta_len];
    let data = &bytes[SNAP_HEADER_BYTES + meta_len..];
    let crc = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    // The flags byte is covered too: clearing it cannot pass ciphertext off
    // as plaintext.
    let crc_ok = checksum_flagged(bytes[20], meta, data, &bytes[4..16]) == crc;
    crc_ok.then_some((bytes[20], meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_every_flipped_byte_and_truncation() {
        let (meta, data) = (b"last=42".as_slice(), b"balances...".as_slice());
        let mut file = encode_header(0, meta, data).to_vec();
        file.extend_from_slice(meta);
        file.extend_from_slice(data);
        assert_eq!(decode(&file), Some((0, meta, data)));
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode(&bad), None, "flip at {i} undetected");
        }
        assert_eq!(decode(&file[..file.len() - 3]), None);
    }
}
