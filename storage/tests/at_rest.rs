//! Encryption at rest: with a cipher, segment files hold no plaintext of
//! the payloads; a byte of ciphertext altered (even with its record's crc
//! recomputed, as an attacker would) is refused on read like any
//! corruption; keys rotate (the first seals, all open); sealed records
//! without a key are refused, never returned as garbage.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::run;
use settle_storage::{Cipher, CorruptReason, Entry, Error, Log, LogOptions, SealError};

const FIRST_RECORD: u64 = 48;
const HEADER: usize = 32;

fn payload(i: u64) -> Vec<u8> {
    format!("{{\"debtor\":\"bank_07\",\"creditor\":\"bank_09\",\"amount\":250000,\"n\":{i}}}")
        .into_bytes()
}

async fn open(dir: &Path, cipher: Option<Cipher>) -> Log {
    Log::open(
        dir,
        LogOptions {
            cipher: cipher.map(Arc::new),
            ..LogOptions::default()
        },
    )
    .await
    .unwrap()
    .0
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn segment(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "seg") || p.to_string_lossy().ends_with(".log")
        })
        .or_else(|| {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        })
        .unwrap()
}

#[test]
fn sealed_logs_hold_no_plaintext_and_refuse_altered_ciphertext() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let key = Cipher::new(&[[7; 32]]).unwrap();
        let log = open(dir.path(), Some(key.clone())).await;
        let payloads: Vec<Vec<u8>> = (0..20).map(payload).collect();
        log.append(payloads.iter().enumerate().map(|(i, p)| Entry {
            index: i as u64,
            term: 1,
            payload: p,
        }))
        .unwrap();
        log.flush().await.unwrap();
        // Readable before and after a reopen, from memory and from disk.
        let read = log.read(0..20).await.unwrap();
        assert!(read.iter().zip(&payloads).all(|(r, p)| &r.payload == p));
        log.close().await.unwrap();
        let bytes = all_bytes(dir.path());
        for pattern in [&b"bank_07"[..], b"bank_09", b"250000", b"debtor"] {
            assert!(
                !contains(&bytes, pattern),
                "{:?} in clear",
                String::from_utf8_lossy(pattern)
            );
        }
        let log = open(dir.path(), Some(key.clone())).await;
        let read = log.read(0..20).await.unwrap();
        assert!(read.iter().zip(&payloads).all(|(r, p)| &r.payload == p));
        log.close().await.unwrap();

        // No key: refused, not returned.
        let log = open(dir.path(), None).await;
        match log.read(0..1).await {
            Err(Error::Corrupt {
                reason: CorruptReason::Sealed(SealError::NoKey),
                ..
            }) => {}
            other => panic!("read without a key: {other:?}"),
        }
        log.close().await.unwrap();

        // Rotation: a new key seals, the old one still opens what it sealed.
        let rotated = Cipher::new(&[[8; 32], [7; 32]]).unwrap();
        let log = open(dir.path(), Some(rotated)).await;
        let extra = payload(20);
        log.append([Entry {
            index: 20,
            term: 2,
            payload: &extra,
        }])
        .unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.read(0..21).await.unwrap().len(), 21);
        log.close().await.unwrap();
        let log = open(dir.path(), Some(key)).await;
        match log.read(20..21).await {
            Err(Error::Corrupt {
                reason: CorruptReason::Sealed(SealError::UnknownKey(_)),
                ..
            }) => {}
            other => panic!("a record of a key not given: {other:?}"),
        }
        log.close().await.unwrap();

        // An attacker flips a byte of the first record's ciphertext and
        // fixes its crc32c: the checksum passes, the seal does not.
        let seg = segment(dir.path());
        let mut file = std::fs::read(&seg).unwrap();
        let at = FIRST_RECORD as usize;
        let len = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        file[at + HEADER + 40] ^= 0x01;
        let crc = crc32c::crc32c(&file[at..at + 12]);
        let crc = crc32c::crc32c_append(crc, &file[at + 16..at + HEADER]);
        let crc = crc32c::crc32c_append(crc, &file[at + HEADER..at + HEADER + len]);
        file[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &file).unwrap();
        let log = open(dir.path(), Some(Cipher::new(&[[8; 32], [7; 32]]).unwrap())).await;
        match log.read(0..1).await {
            Err(Error::Corrupt {
                reason: CorruptReason::Sealed(SealError::Forged),
                ..
            }) => {}
            other => panic!("altered ciphertext: {other:?}"),
        }
        assert_eq!(log.read(1..2).await.unwrap()[0].payload, payloads[1]);
        log.close().await.unwrap();
    });
}

#[test]
fn sealed_snapshots_hold_no_plaintext_and_refuse_altered_ciphertext() {
    use settle_storage::SnapshotStore;
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Arc::new(Cipher::new(&[[9; 32]]).unwrap());
        let store = SnapshotStore::open_sealed(dir.path(), Some(cipher.clone()))
            .await
            .unwrap();
        let data = payload(1);
        let seq = store.write(b"last=42 members=1,2,3", &data).await.unwrap();
        let snap = store.read_latest().await.unwrap().unwrap();
        assert_eq!(
            (snap.seq, snap.meta.as_slice(), &snap.data),
            (seq, &b"last=42 members=1,2,3"[..], &data)
        );
        let bytes = all_bytes(dir.path());
        for pattern in [&b"bank_07"[..], b"250000", b"members"] {
            assert!(
                !contains(&bytes, pattern),
                "{:?} in clear",
                String::from_utf8_lossy(pattern)
            );
        }
        // Without the key: refused. A plain store's snapshots stay readable.
        let keyless = SnapshotStore::open(dir.path()).await.unwrap();
        assert!(matches!(
            keyless.read_latest().await,
            Err(Error::CorruptFile {
                reason: CorruptReason::Sealed(SealError::NoKey),
                ..
            })
        ));
        // A flipped ciphertext byte with the file's crc fixed: the seal fails.
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 5;
        file[last] ^= 0x20;
        let meta_len = u32::from_le_bytes(file[4..8].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c(&file[4..16]);
        let crc = crc32c::crc32c_append(crc, &file[24..24 + meta_len]);
        let crc = crc32c::crc32c_append(crc, &file[24 + meta_len..]);
        let crc = crc32c::crc32c_append(crc, &[file[20]]);
        file[16..20].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &file).unwrap();
        assert!(matches!(
            store.read_latest().await,
            Err(Error::CorruptFile {
                reason: CorruptReason::Sealed(SealError::Forged),
                ..
            })
        ));
    });
}
