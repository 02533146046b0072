//! Encryption at rest: record payloads sealed with AES-256-GCM.
//!
//! A sealed payload is `key id (u32 LE) | nonce (12 bytes) | ciphertext |
//! tag (16 bytes)`, its record flagged [`crate::format::FLAG_SEALED`]. The
//! record's index and term are the associated data, so a sealed payload
//! moved to another record fails to open. The key id (recorded per record,
//! so keys can rotate: the first key seals, every key opens) is a check
//! value of the key: the first 4 bytes of the GCM tag of an empty message
//! under an all-zero nonce, which says nothing about the key itself.
//!
//! Nonces are 96 random bits from the OS per record: with at most 2^32
//! records per key the collision probability stays under 2^-32 (NIST SP
//! 800-38D); a shard writes one record per batch of up to 8,192
//! transactions, far fewer than that in a key's life. Rotate keys sooner.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
const KEY_ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Bytes sealing adds to a payload.
pub const SEAL_OVERHEAD_BYTES: usize = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;

/// Why keys could not be read, or a payload not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no key: give at least one 256-bit key (64 hex digits)")]
    NoKey,
    #[error("key {0}: not 64 hex digits (a 256-bit key)")]
    BadKey(usize),
    #[error("sealed with key {0:08x}, which is not among the keys given")]
    UnknownKey(u32),
    #[error("sealed payload shorter than its envelope")]
    Short,
    #[error("authentication failed: the ciphertext or its place was altered")]
    Forged,
}

/// The keys of a log: the first seals, all open.
#[derive(Clone)]
pub struct Cipher {
    seal_id: u32,
    keys: HashMap<u32, Aes256Gcm>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cipher(seals with key {:08x}, {} keys)",
            self.seal_id,
            self.keys.len()
        )
    }
}

fn key_id(aead: &Aes256Gcm) -> u32 {
    let tag = aead
        .encrypt(Nonce::from_slice(&[0u8; NONCE_BYTES]), &[][..])
        .expect("an empty message seals");
    u32::from_le_bytes(tag[..KEY_ID_BYTES].try_into().expect("4 bytes"))
}

fn aad(index: u64, term: u64) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..8].copy_from_slice(&index.to_le_bytes());
    aad[8..].copy_from_slice(&term.to_le_bytes());
    aad
}

impl Cipher {
    /// From raw keys; the first seals.
    pub fn new(keys: &[[u8; KEY_BYTES]]) -> Result<Cipher, SealError> {
        let first = keys.first().ok_or(SealError::NoKey)?;
        let seal = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(first));
        let mut map = HashMap::new();
        for key in keys {
            let aead = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
            map.insert(key_id(&aead), aead);
        }
        Ok(Cipher {
            seal_id: key_id(&seal),
            keys: map,
        })
    }

    /// From text: keys of 64 hex digits separated by whitespace or commas
    /// (a key file, or an environment variable); the first seals.
    pub fn from_hex(text: &str) -> Result<Cipher, SealError> {
        let mut keys = Vec::new();
        for (i, word) in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty() && !w.starts_with('#'))
            .enumerate()
        {
            if word.len() != KEY_BYTES * 2 {
                return Err(SealError::BadKey(i));
            }
            let mut key = [0u8; KEY_BYTES];
            for (j, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&word[j * 2..j * 2 + 2], 16)
                    .map_err(|_| SealError::BadKey(i))?;
            }
            keys.push(key);
        }
        Cipher::new(&keys)
    }

    /// The id recorded with everything this cipher seals.
    pub fn seal_key_id(&self) -> u32 {
        self.seal_id
    }

    /// Seals `plaintext` as the payload of record (`index`, `term`).
    pub fn seal(&self, index: u64, term: u64, plaintext: &[u8]) -> Vec<u8> {
        let aead = &self.keys[&self.seal_id];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(index, term);
        let sealed = aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM seals any payload under 64 GiB");
        let mut out = Vec::with_capacity(SEAL_OVERHEAD_BYTES + plaintext.len());
        out.extend_from_slice(&self.seal_id.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        debug_assert_eq!(out.len(), plaintext.len() + SEAL_OVERHEAD_BYTES);
        out
    }

    /// Opens a payload sealed for record (`index`, `term`).
    pub fn open(&self, index: u64, term: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_bound(&aad(index, term), sealed)
    }

    /// Seals `plaintext` bound to `aad` (its place: opening it with any
    /// other `aad` fails), in the same envelope as [`Cipher::seal`].
    ///
    /// For many small values (the state store seals each one): the nonce
    /// comes from a user-space CSPRNG (ChaCha, seeded and reseeded from the
    /// OS), not one system call per value. The collision bound is the same
    /// as for [`Cipher::seal`]: 96 random bits per value.
    pub fn seal_bound(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let aead = &self.keys[&self.seal_id];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        let sealed = aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM seals any payload under 64 GiB");
        let mut out = Vec::with_capacity(SEAL_OVERHEAD_BYTES + plaintext.len());
        out.extend_from_slice(&self.seal_id.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        debug_assert_eq!(out.len(), plaintext.len() + SEAL_OVERHEAD_BYTES);
        out
    }

    /// Opens what [`Cipher::seal_bound`] sealed with the same `aad`.
    pub fn open_bound(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let id = sealed_key_id(sealed)?;
        let aead = self.keys.get(&id).ok_or(SealError::UnknownKey(id))?;
        let nonce = Nonce::from_slice(&sealed[KEY_ID_BYTES..KEY_ID_BYTES + NONCE_BYTES]);
        let opened = aead
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[KEY_ID_BYTES + NONCE_BYTES..],
                    aad,
                },
            )
            .map_err(|_| SealError::Forged)?;
        debug_assert_eq!(opened.len() + SEAL_OVERHEAD_BYTES, sealed.len());
        Ok(opened)
    }
}

/// The id of the key that sealed `sealed` (its envelope's first bytes).
pub fn sealed_key_id(sealed: &[u8]) -> Result<u32, SealError> {
    if sealed.len() < SEAL_OVERHEAD_BYTES {
        return Err(SealError::Short);
    }
    Ok(u32::from_le_bytes(
        sealed[..KEY_ID_BYTES].try_into().expect("4 bytes"),
    ))
}

/// A fresh random 256-bit key from the OS (keys a store derives its own
/// secrets from are made with it).
pub fn random_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    rand::RngCore::fill_bytes(&mut OsRng, &mut key);
    key
}

impl Cipher {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_open_only_in_their_place_and_with_a_known_key() {
        let old = Cipher::new(&[[1; 32]]).unwrap();
        let sealed = old.seal(7, 3, b"bank_07 pays bank_09 250000");
        assert!(!sealed.windows(7).any(|w| w == b"bank_07"));
        assert_eq!(
            old.open(7, 3, &sealed).unwrap(),
            b"bank_07 pays bank_09 250000"
        );
        assert_eq!(old.open(8, 3, &sealed), Err(SealError::Forged), "moved");
        assert_eq!(
            old.open(7, 4, &sealed),
            Err(SealError::Forged),
            "other term"
        );
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            assert!(old.open(7, 3, &bad).is_err(), "flip at {at} undetected");
        }
        // Rotation: a new first key seals, the old one still opens.
        let rotated = Cipher::new(&[[2; 32], [1; 32]]).unwrap();
        assert_ne!(rotated.seal_key_id(), old.seal_key_id());
        assert_eq!(
            rotated.open(7, 3, &sealed).unwrap(),
            b"bank_07 pays bank_09 250000"
        );
        let newer = rotated.seal(9, 1, b"x");
        assert_eq!(
            old.open(9, 1, &newer),
            Err(SealError::UnknownKey(rotated.seal_key_id()))
        );
        let hex = "0101010101010101010101010101010101010101010101010101010101010101";
        assert_eq!(
            Cipher::from_hex(hex).unwrap().seal_key_id(),
            old.seal_key_id()
        );
        assert_eq!(Cipher::from_hex("abc").unwrap_err(), SealError::BadKey(0));
        // Bound to arbitrary associated data, the same envelope.
        let value = old.seal_bound(b"ledger|key-1", b"bank_07 250000");
        assert_eq!(sealed_key_id(&value), Ok(old.seal_key_id()));
        assert_eq!(
            old.open_bound(b"ledger|key-1", &value).unwrap(),
            b"bank_07 250000"
        );
        assert_eq!(
            old.open_bound(b"ledger|key-2", &value),
            Err(SealError::Forged)
        );
        assert_eq!(old.open_bound(b"", &value[..10]), Err(SealError::Short));
        assert_ne!(random_key(), random_key());
        assert_eq!(Cipher::from_hex(" ").unwrap_err(), SealError::NoKey);
    }
}
