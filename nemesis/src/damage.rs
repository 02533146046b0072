//! A flipped byte in a node's Raft log: the disk fault a checksum must
//! catch. The byte is chosen in the middle of the written part of a
//! segment, so valid groups follow it and recovery cannot mistake it for a
//! torn last write: the node must notice it (a cluster replica quarantines
//! the group and rebuilds it from its peers; a lone node refuses, naming
//! the segment).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A segment with less written than this is not worth damaging (a torn
/// tail is all a flip near its end could look like).
const WRITTEN_BYTES_MIN: u64 = 64 * 1024;

/// Directory depth searched for segments under a data directory.
const DEPTH_MAX: usize = 6;

/// Where a byte was flipped.
#[derive(Debug, Clone)]
pub struct Flip {
    pub segment: PathBuf,
    pub offset: u64,
    pub written: u64,
}

fn segments(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth < DEPTH_MAX {
            segments(&path, depth + 1, out);
        } else if path.extension().is_some_and(|e| e == "log")
            && path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "log")
        {
            out.push(path);
        }
    }
}

/// Bytes up to the last non-zero byte (segments are preallocated with zeros).
fn written_bytes(path: &Path) -> anyhow::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut written) = (0u64, 0u64);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(written);
        }
        if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
            written = offset + last as u64 + 1;
        }
        offset += n as u64;
    }
}

/// Flips one byte of one of the data directory's log segments (the
/// `choice`-th of those with enough written, in path order); `None` if no
/// segment has enough written yet.
pub fn flip_byte(data_dir: &Path, choice: u64) -> anyhow::Result<Option<Flip>> {
    let mut all = Vec::new();
    segments(data_dir, 0, &mut all);
    all.sort();
    let mut candidates = Vec::new();
    for path in all {
        let written = written_bytes(&path)?;
        if written >= WRITTEN_BYTES_MIN {
            candidates.push((path, written));
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let (segment, written) = candidates.swap_remove((choice % candidates.len() as u64) as usize);
    let offset = written / 2;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .with_context(|| format!("opening {}", segment.display()))?;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut byte)?;
    byte[0] ^= 0x5a;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&byte)?;
    file.sync_all()?;
    Ok(Some(Flip {
        segment,
        offset,
        written,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_one_byte_in_the_middle_of_the_written_part_of_a_log_segment() {
        let dir = std::env::temp_dir().join(format!("nemesis-damage-{}", std::process::id()));
        let log = dir.join("shard-1").join("log");
        std::fs::create_dir_all(&log).unwrap();
        let mut content = vec![7u8; 100_000];
        content.extend(vec![0u8; 50_000]);
        std::fs::write(log.join("00000000000000000001.log"), &content).unwrap();
        std::fs::write(log.join("00000000000000000009.log"), vec![0u8; 10]).unwrap();
        std::fs::write(dir.join("other.log"), &content).unwrap();
        let flip = flip_byte(&dir, 3).unwrap().unwrap();
        assert!(flip.segment.ends_with("00000000000000000001.log"));
        assert_eq!((flip.written, flip.offset), (100_000, 50_000));
        let after = std::fs::read(&flip.segment).unwrap();
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != content[i])
            .collect();
        assert_eq!(changed, vec![50_000]);
        assert!(flip_byte(&dir.join("missing"), 0).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
