//! Sealing at the store boundary: [`SealedStore`] wraps any [`Store`] so
//! that nothing it writes is in clear, and every read is checked. The one
//! place that knows a store is sealed; what is above it reads and writes
//! plain keys and values, what is below it holds only ciphertext.
//!
//! - **Values** are sealed with AES-256-GCM under the node's at-rest keys
//!   (the Raft log's [`Cipher`]: the same key source, the same envelope
//!   with its key id, so keys rotate), bound to their column and stored key:
//!   a value moved to another key or column fails to open. A
//!   [`Column::Keys`] value keeps its first [`EXPIRY_BYTES`] (the leader time
//!   it may be forgotten at, not payment data) in clear, so that RocksDB's
//!   compaction filter drops expired keys without holding a key; the tag
//!   covers them all the same.
//! - **Keys** that begin with a transaction id (the columns named at open)
//!   have the id replaced by its AES-256 encryption under the store's own id
//!   key: a keyed permutation of the 16 bytes. Equal ids give equal hidden
//!   ids, so lookups by id work, and the big-endian log index after the id
//!   still orders one id's versions. A permutation can be undone with the
//!   key: scans give back the real keys (a snapshot sent to a replica
//!   carries real keys, which the replica hides under its own id key), and
//!   no two ids collide. Across ids the order is that of the hidden ids, so
//!   a scan *from* a key of such a column is refused
//!   ([`StoreError::UnorderedScan`]); whole-column scans (rebuilding the key
//!   filter, dumping a snapshot) do not depend on the order.
//! - The **id key** is random per store, kept sealed under [`META_SEAL`] in
//!   [`Column::Meta`], so rotating the at-rest key moves no stored key (the
//!   record is sealed again under the new key at open). It never leaves the
//!   store: snapshots carry real keys, not hidden ones.
//!
//! Values sealed under a key stay readable only while that key is given:
//! keep a retired key in the key file until the retention has passed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use settle_storage::seal::{random_key, sealed_key_id, SEAL_OVERHEAD_BYTES};
use settle_storage::{Cipher, SealError};

use crate::{
    key_expiry, Batch, Column, Op, Pair, RocksOptions, RocksStore, Store, StoreError, StoreStats,
};

/// Bytes of a transaction id at the start of a key.
pub const ID_BYTES: usize = 16;

// A hidden id keeps a key's length: an id and its version still fit.
const _: () = assert!(ID_BYTES + 8 <= crate::KEY_BYTES_MAX);

/// Bytes at the start of a [`Column::Keys`] value left in clear: the expiry
/// compaction reads (see the crate docs).
pub const EXPIRY_BYTES: usize = 8;

/// The key under [`Column::Meta`] holding the store's id key, sealed. Its
/// presence says the store is sealed.
pub const META_SEAL: &[u8] = b"seal";

/// Bytes of the id key.
const ID_KEY_BYTES: usize = 32;

/// What every sealed value's associated data starts with: a store value can
/// never be taken for a log record's payload (whose associated data is 16
/// bytes of index and term), nor the other way round.
const AAD_DOMAIN: &[u8] = b"settle-store/1";

/// A store whose keys hide their ids and whose values are sealed.
pub struct SealedStore<S: Store> {
    inner: S,
    path: PathBuf,
    cipher: Arc<Cipher>,
    ids: Aes256,
    /// Per column ([`Column::slot`]): whether its keys begin with an id.
    hidden: [bool; 4],
}

impl<S: Store> std::fmt::Debug for SealedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("path", &self.path)
            .field("cipher", &self.cipher)
            .field("hidden", &self.hidden)
            .finish()
    }
}

/// The associated data of a value: its column and stored key, and for a
/// [`Column::Keys`] value the expiry left in clear.
fn aad(column: Column, stored_key: &[u8], clear: &[u8]) -> Vec<u8> {
    let name = column.name().as_bytes();
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + name.len() + 1 + stored_key.len() + 8);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(name);
    aad.push(0);
    aad.extend_from_slice(stored_key);
    aad.extend_from_slice(clear);
    aad
}

/// Whether `store` holds any pair at all.
fn is_empty(store: &dyn Store) -> Result<bool, StoreError> {
    let mut empty = true;
    for column in Column::ALL {
        store.scan(column, &mut |_, _| {
            empty = false;
            false
        })?;
    }
    Ok(empty)
}

/// Refuses a sealed store opened without a key (`path` names it).
pub fn refuse_if_sealed(store: &dyn Store, path: &Path) -> Result<(), StoreError> {
    match store.get(Column::Meta, META_SEAL)? {
        Some(_) => Err(StoreError::NeedsKey {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Opens the RocksDB store in `path`: sealed with `at_rest` when the node
/// has at-rest keys (the keys of `id_columns` begin with an id), as it is
/// otherwise. Either way, a store written the other way is refused.
pub fn open_rocks(
    path: &Path,
    sizes: RocksOptions,
    at_rest: Option<Arc<Cipher>>,
    id_columns: &[Column],
) -> Result<Arc<dyn Store>, StoreError> {
    let rocks = RocksStore::open(path, sizes)?;
    match at_rest {
        None => {
            refuse_if_sealed(&rocks, path)?;
            Ok(Arc::new(rocks))
        }
        Some(cipher) => Ok(Arc::new(SealedStore::open(
            rocks, path, cipher, id_columns,
        )?)),
    }
}

impl<S: Store> SealedStore<S> {
    /// Seals `inner` with `cipher`; the keys of `id_columns` begin with an
    /// id ([`ID_BYTES`]) that is hidden. A new store gets a random id key; a
    /// store that holds pairs but no id key was written in clear and is
    /// refused ([`StoreError::NotSealed`]). `path` names the store in errors.
    pub fn open(
        inner: S,
        path: impl Into<PathBuf>,
        cipher: Arc<Cipher>,
        id_columns: &[Column],
    ) -> Result<SealedStore<S>, StoreError> {
        let path = path.into();
        let meta_aad = aad(Column::Meta, META_SEAL, &[]);
        let id_key = match inner.get(Column::Meta, META_SEAL)? {
            Some(sealed) => {
                let opened =
                    cipher
                        .open_bound(&meta_aad, &sealed)
                        .map_err(|source| StoreError::Sealed {
                            path: path.clone(),
                            column: Column::Meta.name(),
                            source,
                        })?;
                let key: [u8; ID_KEY_BYTES] =
                    opened
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            path: path.clone(),
                            reason: format!(
                                "the id key is {} bytes, not {ID_KEY_BYTES}",
                                opened.len()
                            ),
                        })?;
                if sealed_key_id(&sealed) != Ok(cipher.seal_key_id()) {
                    // Rotated: seal it under the key that seals now, so the
                    // old key is needed only for values written under it.
                    Self::put_id_key(&inner, &cipher, &key)?;
                }
                key
            }
            None => {
                if !is_empty(&inner)? {
                    return Err(StoreError::NotSealed { path });
                }
                let key = random_key();
                Self::put_id_key(&inner, &cipher, &key)?;
                key
            }
        };
        let mut hidden = [false; 4];
        for column in id_columns {
            assert_ne!(*column, Column::Meta, "the meta column holds no ids");
            hidden[column.slot()] = true;
        }
        Ok(SealedStore {
            inner,
            path,
            cipher,
            ids: Aes256::new(GenericArray::from_slice(&id_key)),
            hidden,
        })
    }

    /// Writes the id key, sealed, and makes it durable.
    fn put_id_key(inner: &S, cipher: &Cipher, key: &[u8; ID_KEY_BYTES]) -> Result<(), StoreError> {
        let sealed = cipher.seal_bound(&aad(Column::Meta, META_SEAL, &[]), key);
        let mut batch = Batch::new();
        batch.put(Column::Meta, META_SEAL, &sealed)?;
        inner.write(&batch)?;
        inner.flush()
    }

    /// The store underneath, holding only ciphertext (tests, compaction).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn hides(&self, column: Column) -> bool {
        self.hidden[column.slot()]
    }

    /// `key` as stored: its id (if its column has one) hidden.
    fn hide(&self, column: Column, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut stored = key.to_vec();
        if self.hides(column) {
            let id = stored.get_mut(..ID_BYTES).ok_or(StoreError::KeyWithoutId {
                column: column.name(),
                len: key.len(),
            })?;
            self.ids.encrypt_block(GenericArray::from_mut_slice(id));
        }
        Ok(stored)
    }

    /// A stored key as written: its id (if its column has one) revealed.
    fn reveal(&self, column: Column, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut key = stored.to_vec();
        if self.hides(column) {
            let id = key.get_mut(..ID_BYTES).ok_or(StoreError::KeyWithoutId {
                column: column.name(),
                len: stored.len(),
            })?;
            self.ids.decrypt_block(GenericArray::from_mut_slice(id));
        }
        Ok(key)
    }

    fn seal_value(
        &self,
        column: Column,
        stored_key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let sealed = if column == Column::Keys {
            let (expiry, rest) = value
                .split_at_checked(EXPIRY_BYTES)
                .ok_or(StoreError::KeyValueShort { len: value.len() })?;
            let mut out = Vec::with_capacity(value.len() + SEAL_OVERHEAD_BYTES);
            out.extend_from_slice(expiry);
            out.extend(
                self.cipher
                    .seal_bound(&aad(column, stored_key, expiry), rest),
            );
            // Compaction reads the same expiry from the sealed value.
            assert_eq!(key_expiry(&out), key_expiry(value));
            out
        } else {
            self.cipher.seal_bound(&aad(column, stored_key, &[]), value)
        };
        assert_eq!(sealed.len(), value.len() + SEAL_OVERHEAD_BYTES);
        Ok(sealed)
    }

    fn open_value(
        &self,
        column: Column,
        stored_key: &[u8],
        stored: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let refused = |source| StoreError::Sealed {
            path: self.path.clone(),
            column: column.name(),
            source,
        };
        let value = if column == Column::Keys {
            let (expiry, rest) = stored
                .split_at_checked(EXPIRY_BYTES)
                .ok_or(refused(SealError::Short))?;
            let body = self
                .cipher
                .open_bound(&aad(column, stored_key, expiry), rest)
                .map_err(refused)?;
            let mut value = Vec::with_capacity(EXPIRY_BYTES + body.len());
            value.extend_from_slice(expiry);
            value.extend_from_slice(&body);
            value
        } else {
            self.cipher
                .open_bound(&aad(column, stored_key, &[]), stored)
                .map_err(refused)?
        };
        // The pair of the assertion in `seal_value`.
        assert_eq!(value.len() + SEAL_OVERHEAD_BYTES, stored.len());
        Ok(value)
    }

    /// The plain pair of a stored one.
    fn open_pair(
        &self,
        column: Column,
        stored_key: &[u8],
        stored: &[u8],
    ) -> Result<Pair, StoreError> {
        let value = self.open_value(column, stored_key, stored)?;
        Ok((self.reveal(column, stored_key)?, value))
    }
}

impl<S: Store> Store for SealedStore<S> {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if column == Column::Meta && key == META_SEAL {
            // The id key is the sealed store's own: above it, it is not there.
            return Ok(None);
        }
        let stored_key = self.hide(column, key)?;
        match self.inner.get(column, &stored_key)? {
            None => Ok(None),
            Some(stored) => self.open_value(column, &stored_key, &stored).map(Some),
        }
    }

    fn last_at_or_below(
        &self,
        column: Column,
        prefix: &[u8],
        at_most: &[u8],
    ) -> Result<Option<Pair>, StoreError> {
        // Hidden ids keep the order within one id only: the bound must be
        // of the prefix's id.
        if self.hides(column)
            && (prefix.len() < ID_BYTES || !at_most.starts_with(&prefix[..ID_BYTES]))
        {
            return Err(StoreError::UnorderedScan {
                column: column.name(),
            });
        }
        let found = self.inner.last_at_or_below(
            column,
            &self.hide(column, prefix)?,
            &self.hide(column, at_most)?,
        )?;
        let Some((stored_key, stored)) = found else {
            return Ok(None);
        };
        let (key, value) = self.open_pair(column, &stored_key, &stored)?;
        assert!(key.starts_with(prefix) && key.as_slice() <= at_most);
        Ok(Some((key, value)))
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut sealed = Batch::new();
        for op in batch.ops() {
            match op {
                Op::Put { column, key, value } => {
                    assert!(
                        !(column == Column::Meta && key == META_SEAL),
                        "the id key is the sealed store's own"
                    );
                    let stored_key = self.hide(column, key)?;
                    let stored = self.seal_value(column, &stored_key, value)?;
                    debug_assert_eq!(
                        self.open_pair(column, &stored_key, &stored).ok(),
                        Some((key.to_vec(), value.to_vec())),
                        "what is written opens to what was given"
                    );
                    sealed.put(column, &stored_key, &stored)?;
                }
                Op::Delete { column, key } => {
                    sealed.delete(column, &self.hide(column, key)?)?;
                }
            }
        }
        assert_eq!(sealed.len(), batch.len());
        self.inner.write(&sealed)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn scan_from(
        &self,
        column: Column,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if self.hides(column) && !from.is_empty() {
            return Err(StoreError::UnorderedScan {
                column: column.name(),
            });
        }
        let mut failed = None;
        self.inner.scan_from(column, from, &mut |k, v| {
            if column == Column::Meta && k == META_SEAL {
                return true;
            }
            match self.open_pair(column, k, v) {
                Ok((key, value)) => visit(&key, &value),
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn clear(&self) -> Result<(), StoreError> {
        // The id key outlives a wipe: its sealed record is put back as it was.
        let record =
            self.inner
                .get(Column::Meta, META_SEAL)?
                .ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: "the sealed store's id key is gone".into(),
                })?;
        self.inner.clear()?;
        let mut batch = Batch::new();
        batch.put(Column::Meta, META_SEAL, &record)?;
        self.inner.write(&batch)?;
        self.inner.flush()
    }

    fn set_clock(&self, now_us: u64) {
        self.inner.set_clock(now_us);
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    const OLD: [u8; 32] = [7; 32];
    const NEW: [u8; 32] = [9; 32];
    const ID: u128 = 0x5e77_13c0_ffee_0000_0000_0000_0000_0042;
    const PAYMENT: &[u8] = b"bank_07 pays bank_09 0123456789ab";

    fn cipher(keys: &[[u8; 32]]) -> Arc<Cipher> {
        Arc::new(Cipher::new(keys).unwrap())
    }

    fn versioned(id: u128, index: u64) -> Vec<u8> {
        let mut k = id.to_be_bytes().to_vec();
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    fn key_value(expires: u64, body: &[u8]) -> Vec<u8> {
        let mut v = expires.to_le_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn sealed_mem(keys: &[[u8; 32]]) -> SealedStore<MemStore> {
        SealedStore::open(
            MemStore::new(),
            "memory",
            cipher(keys),
            &[Column::Keys, Column::Ledger],
        )
        .unwrap()
    }

    fn put(store: &dyn Store, column: Column, key: &[u8], value: &[u8]) {
        let mut batch = Batch::new();
        batch.put(column, key, value).unwrap();
        store.write(&batch).unwrap();
    }

    /// Every raw pair of a column (what is on disk).
    fn raw(store: &dyn Store, column: Column) -> Vec<Pair> {
        let mut pairs = Vec::new();
        store
            .scan(column, &mut |k, v| {
                pairs.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        pairs
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Writes versions 3 and 5 of [`ID`] and of a neighbour to the ledger,
    /// a key, a cycle note and the applied index.
    fn fill(store: &dyn Store) {
        for id in [ID, ID + 1] {
            for index in [3, 5] {
                let mut value = PAYMENT.to_vec();
                value.push(index as u8);
                put(store, Column::Ledger, &versioned(id, index), &value);
            }
        }
        put(
            store,
            Column::Keys,
            &versioned(ID, 5),
            &key_value(99, PAYMENT),
        );
        put(store, Column::Cycles, &7u64.to_be_bytes(), PAYMENT);
        put(
            store,
            Column::Meta,
            crate::META_APPLIED,
            &12u64.to_le_bytes(),
        );
    }

    #[test]
    fn values_and_ids_round_trip_and_nothing_is_stored_in_clear() {
        let store = sealed_mem(&[OLD]);
        fill(&store);
        assert_eq!(
            store
                .get(Column::Ledger, &versioned(ID, 3))
                .unwrap()
                .unwrap(),
            [PAYMENT, &[3]].concat()
        );
        assert_eq!(
            store.get(Column::Keys, &versioned(ID, 5)).unwrap(),
            Some(key_value(99, PAYMENT))
        );
        assert_eq!(store.applied_index().unwrap(), 12);
        // The newest version at or below an index, and the newest of an id.
        let (k, v) = store
            .last_at_or_below(Column::Ledger, &ID.to_be_bytes(), &versioned(ID, 4))
            .unwrap()
            .unwrap();
        assert_eq!((k, v), (versioned(ID, 3), [PAYMENT, &[3]].concat()));
        let (k, _) = store
            .last_with_prefix(Column::Ledger, &ID.to_be_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(k, versioned(ID, 5));
        assert_eq!(
            store
                .last_at_or_below(Column::Ledger, &ID.to_be_bytes(), &versioned(ID, 2))
                .unwrap(),
            None,
            "no version at or below 2 (the neighbour's do not count)"
        );
        assert_eq!(
            store
                .last_with_prefix(Column::Ledger, &(ID + 2).to_be_bytes())
                .unwrap(),
            None
        );
        // Scans give back the real keys, and skip the id key.
        let mut keys: Vec<_> = raw(&store, Column::Ledger)
            .into_iter()
            .map(|p| p.0)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                versioned(ID, 3),
                versioned(ID, 5),
                versioned(ID + 1, 3),
                versioned(ID + 1, 5)
            ]
        );
        assert_eq!(raw(&store, Column::Meta).len(), 1, "the applied index only");
        assert_eq!(store.get(Column::Meta, META_SEAL).unwrap(), None);
        // Below: no id (either byte order), no payment, the expiry in clear.
        for column in Column::ALL {
            for (k, v) in raw(store.inner(), column) {
                for bytes in [&k, &v] {
                    assert!(!contains(bytes, &ID.to_be_bytes()[..12]), "{column:?}");
                    assert!(!contains(bytes, &ID.to_le_bytes()[4..]), "{column:?}");
                    assert!(!contains(bytes, b"bank_07"), "{column:?}");
                }
            }
        }
        let stored_keys = raw(store.inner(), Column::Keys);
        assert_eq!(crate::key_expiry(&stored_keys[0].1), Some(99));
        // Deletes reach the hidden key.
        let mut batch = Batch::new();
        batch.delete(Column::Ledger, &versioned(ID, 5)).unwrap();
        store.write(&batch).unwrap();
        assert_eq!(store.get(Column::Ledger, &versioned(ID, 5)).unwrap(), None);
    }

    #[test]
    fn tampered_moved_or_truncated_ciphertext_is_refused_without_a_panic() {
        let store = sealed_mem(&[OLD]);
        fill(&store);
        for column in [Column::Ledger, Column::Keys, Column::Cycles] {
            let (k, v) = raw(store.inner(), column).remove(0);
            let plain = store.reveal(column, &k).unwrap();
            for at in 0..v.len() {
                let mut bad = v.clone();
                bad[at] ^= 0x01;
                put(store.inner(), column, &k, &bad);
                let refused = store.get(column, &plain).unwrap_err();
                assert!(
                    matches!(refused, StoreError::Sealed { column: c, .. } if c == column.name()),
                    "{column:?} flip at {at}: {refused:?}"
                );
                let mut visited = 0;
                assert!(store
                    .scan(column, &mut |_, _| {
                        visited += 1;
                        true
                    })
                    .is_err());
            }
            put(store.inner(), column, &k, &v[..v.len().min(20)]);
            assert!(matches!(
                store.get(column, &plain),
                Err(StoreError::Sealed { .. })
            ));
            put(store.inner(), column, &k, &v);
            assert!(store.get(column, &plain).is_ok(), "restored");
        }
        // A value moved to another id's key does not open there.
        let k3 = store.hide(Column::Ledger, &versioned(ID, 3)).unwrap();
        let moved = store.inner().get(Column::Ledger, &k3).unwrap().unwrap();
        let other = store.hide(Column::Ledger, &versioned(ID + 1, 3)).unwrap();
        put(store.inner(), Column::Ledger, &other, &moved);
        let refused = store
            .get(Column::Ledger, &versioned(ID + 1, 3))
            .unwrap_err();
        assert!(
            refused.to_string().contains("authentication failed"),
            "{refused}"
        );
        // A changed clear expiry is caught too (it is covered by the tag).
        let (k, mut v) = raw(store.inner(), Column::Keys).remove(0);
        v[0] ^= 0x01;
        put(store.inner(), Column::Keys, &k, &v);
        assert!(store.get(Column::Keys, &versioned(ID, 5)).is_err());
    }

    #[test]
    fn keys_rotate_and_a_missing_key_is_named_by_its_id() {
        let old = sealed_mem(&[OLD]);
        fill(&old);
        let inner = MemStore::new();
        for column in Column::ALL {
            for (k, v) in raw(old.inner(), column) {
                put(&inner, column, &k, &v);
            }
        }
        let ids = [Column::Keys, Column::Ledger];
        // Without the key that sealed it, the store does not open.
        let unknown = SealedStore::open(inner, "memory", cipher(&[NEW]), &ids).unwrap_err();
        let old_id = cipher(&[OLD]).seal_key_id();
        assert!(
            matches!(
                unknown,
                StoreError::Sealed { source: SealError::UnknownKey(id), .. } if id == old_id
            ),
            "{unknown:?}"
        );
        // Rotated (the new key first, the old one kept): old values read,
        // new ones sealed under the new key, the id key moved to it.
        let inner = MemStore::new();
        for column in Column::ALL {
            for (k, v) in raw(old.inner(), column) {
                put(&inner, column, &k, &v);
            }
        }
        let rotated = SealedStore::open(inner, "memory", cipher(&[NEW, OLD]), &ids).unwrap();
        assert_eq!(rotated.applied_index().unwrap(), 12);
        assert!(rotated
            .get(Column::Ledger, &versioned(ID, 3))
            .unwrap()
            .is_some());
        let new_id = cipher(&[NEW]).seal_key_id();
        let seal_record = rotated
            .inner()
            .get(Column::Meta, META_SEAL)
            .unwrap()
            .unwrap();
        assert_eq!(sealed_key_id(&seal_record), Ok(new_id));
        put(&rotated, Column::Cycles, &8u64.to_be_bytes(), PAYMENT);
        let stored = rotated
            .inner()
            .get(Column::Cycles, &8u64.to_be_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(sealed_key_id(&stored), Ok(new_id));
        // The new key alone: the store opens, old values name the key missing.
        let SealedStore { inner, .. } = rotated;
        let only_new = SealedStore::open(inner, "memory", cipher(&[NEW]), &ids).unwrap();
        assert!(only_new
            .get(Column::Cycles, &8u64.to_be_bytes())
            .unwrap()
            .is_some());
        let refused = only_new
            .get(Column::Cycles, &7u64.to_be_bytes())
            .unwrap_err();
        assert!(
            refused.to_string().contains(&format!("{old_id:08x}")),
            "{refused}"
        );
    }

    #[test]
    fn scans_that_need_order_across_ids_are_refused_and_clear_keeps_the_id_key() {
        let store = sealed_mem(&[OLD]);
        fill(&store);
        assert!(matches!(
            store.scan_from(Column::Ledger, &ID.to_be_bytes(), &mut |_, _| true),
            Err(StoreError::UnorderedScan { column: "ledger" })
        ));
        assert!(matches!(
            store.last_at_or_below(Column::Ledger, &ID.to_be_bytes(), &versioned(ID + 1, 0)),
            Err(StoreError::UnorderedScan { .. })
        ));
        assert!(matches!(
            store.get(Column::Ledger, b"short"),
            Err(StoreError::KeyWithoutId { len: 5, .. })
        ));
        // Columns without ids keep their order (cycle range scans).
        put(&store, Column::Cycles, &9u64.to_be_bytes(), b"nine");
        let mut cycles = Vec::new();
        store
            .scan_from(Column::Cycles, &8u64.to_be_bytes(), &mut |k, v| {
                cycles.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(
            cycles,
            vec![(9u64.to_be_bytes().to_vec(), b"nine".to_vec())]
        );
        // A wiped store (a snapshot replaces it) keeps its id key.
        let before = store.hide(Column::Ledger, &versioned(ID, 3)).unwrap();
        store.clear().unwrap();
        assert_eq!(store.applied_index().unwrap(), 0);
        assert_eq!(
            store.hide(Column::Ledger, &versioned(ID, 3)).unwrap(),
            before
        );
        assert!(store
            .inner()
            .get(Column::Meta, META_SEAL)
            .unwrap()
            .is_some());
        fill(&store);
        assert!(store
            .get(Column::Ledger, &versioned(ID, 3))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_store_sealed_one_way_is_refused_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        {
            let store = open_rocks(&plain, RocksOptions::default(), None, &[]).unwrap();
            fill(store.as_ref());
            store.flush().unwrap();
        }
        let refused = open_rocks(&plain, RocksOptions::default(), Some(cipher(&[OLD])), &[])
            .err()
            .expect("refused");
        assert!(
            matches!(refused, StoreError::NotSealed { .. }),
            "{refused:?}"
        );
        let sealed = dir.path().join("sealed");
        {
            let store =
                open_rocks(&sealed, RocksOptions::default(), Some(cipher(&[OLD])), &[]).unwrap();
            fill(store.as_ref());
            store.flush().unwrap();
        }
        let refused = open_rocks(&sealed, RocksOptions::default(), None, &[])
            .err()
            .expect("refused");
        assert!(
            matches!(refused, StoreError::NeedsKey { .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("--encryption-key-file"));
        let reopened =
            open_rocks(&sealed, RocksOptions::default(), Some(cipher(&[OLD])), &[]).unwrap();
        assert_eq!(reopened.applied_index().unwrap(), 12);
    }

    /// RocksDB's compaction filter reads the expiry left in clear: expired
    /// keys are dropped from a sealed store, live ones still open; the table
    /// files hold no id and no payment.
    #[test]
    fn compaction_drops_expired_keys_of_a_sealed_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SealedStore::open(
            RocksStore::open(dir.path(), RocksOptions::default()).unwrap(),
            dir.path(),
            cipher(&[OLD]),
            &[Column::Keys, Column::Ledger],
        )
        .unwrap();
        let mut batch = Batch::new();
        for i in 0..100u128 {
            let expires = if i % 2 == 0 { 1_000 } else { 5_000 };
            batch
                .put(
                    Column::Keys,
                    &versioned(ID + i, 1),
                    &key_value(expires, PAYMENT),
                )
                .unwrap();
        }
        store.write(&batch).unwrap();
        store.flush().unwrap();
        store.set_clock(2_000);
        store.inner().compact_all().unwrap();
        for i in 0..100u128 {
            let found = store.get(Column::Keys, &versioned(ID + i, 1)).unwrap();
            if i % 2 == 0 {
                assert_eq!(found, None, "expired key {i} kept");
            } else {
                assert_eq!(found, Some(key_value(5_000, PAYMENT)), "live key {i}");
            }
        }
        let mut live = 0;
        store
            .scan(Column::Keys, &mut |_, _| {
                live += 1;
                true
            })
            .unwrap();
        assert_eq!(live, 50);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!contains(&bytes, b"bank_07"));
            assert!(!contains(&bytes, &ID.to_be_bytes()[..12]));
            assert!(!contains(&bytes, &ID.to_le_bytes()[4..]));
        }
    }
}
