//! The bytes of a group's snapshot: the state's own bytes (the hot part,
//! small) and, when the snapshot goes to another replica, the contents of
//! the state's store (its cold part).
//!
//! A snapshot persisted locally carries no cold part: the local store holds
//! it, flushed before the snapshot is written ([`META_SNAPSHOT`] says for
//! which snapshot). One sent to a replica carries the store's pairs, which
//! the replica loads into its emptied store before installing the hot part.
//!
//! Layout: magic `SNF1`, the hot part's length (u64 LE) and bytes, then cold
//! pairs to the end: column (u8), key length (u16 LE), key, value length
//! (u32 LE), value.

use settle_store::{Batch, Column, Store, StoreError, KEY_BYTES_MAX, VALUE_BYTES_MAX};

const MAGIC: &[u8; 4] = b"SNF1";

/// The key under [`Column::Meta`] naming the snapshot index the store was
/// flushed for: a store below the snapshot it opens with lost data.
pub const META_SNAPSHOT: &[u8] = b"snapshot";

/// Pairs written per batch when a store is loaded.
const LOAD_BATCH_PAIRS: usize = 4_096;

/// Snapshot bytes holding `hot` and no cold part.
pub fn frame(hot: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + hot.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(hot.len() as u64).to_le_bytes());
    out.extend_from_slice(hot);
    out
}

/// The hot part and the cold pairs' bytes of a snapshot.
pub fn split(data: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if data.len() < 12 || &data[..4] != MAGIC {
        return Err("not a snapshot of this format (magic SNF1)".into());
    }
    let len = u64::from_le_bytes(data[4..12].try_into().expect("8 bytes"));
    let rest = &data[12..];
    if len > rest.len() as u64 {
        return Err(format!(
            "snapshot's hot part claims {len} bytes, {} follow",
            rest.len()
        ));
    }
    Ok(rest.split_at(len as usize))
}

fn column_tag(c: Column) -> u8 {
    match c {
        Column::Keys => 1,
        Column::Ledger => 2,
        Column::Cycles => 3,
        Column::Meta => 4,
    }
}

fn column_from(tag: u8) -> Option<Column> {
    Column::ALL.into_iter().find(|&c| column_tag(c) == tag)
}

/// Appends every pair of the store's replicated columns to `out`.
pub fn dump_cold(store: &dyn Store, out: &mut Vec<u8>) -> Result<(), StoreError> {
    for column in [Column::Keys, Column::Ledger, Column::Cycles] {
        store.scan(column, &mut |k, v| {
            out.push(column_tag(column));
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
            true
        })?;
    }
    Ok(())
}

/// Replaces the store's contents with the pairs of `cold`, marks it flushed
/// for snapshot `index` and flushes. Blocks: call it off the core.
pub fn load_cold(store: &dyn Store, cold: &[u8], index: u64) -> Result<(), String> {
    store.clear().map_err(|e| e.to_string())?;
    let mut batch = Batch::new();
    let mut at = 0;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let bytes = cold
            .get(*at..*at + n)
            .ok_or_else(|| format!("snapshot's cold part ends inside a pair at byte {at}"))?;
        *at += n;
        Ok(bytes)
    };
    while at < cold.len() {
        let tag = take(&mut at, 1)?[0];
        let column = column_from(tag)
            .filter(|&c| c != Column::Meta)
            .ok_or_else(|| format!("snapshot's cold part names column {tag}"))?;
        let klen = u16::from_le_bytes(take(&mut at, 2)?.try_into().expect("2")) as usize;
        if klen > KEY_BYTES_MAX {
            return Err(format!("snapshot's cold part has a key of {klen} bytes"));
        }
        let key = take(&mut at, klen)?;
        let vlen = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4")) as usize;
        if vlen > VALUE_BYTES_MAX {
            return Err(format!("snapshot's cold part has a value of {vlen} bytes"));
        }
        let value = take(&mut at, vlen)?;
        batch.put(column, key, value).map_err(|e| e.to_string())?;
        if batch.len() >= LOAD_BATCH_PAIRS {
            store.write(&batch).map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    mark_flushed(store, &mut batch, index)
}

/// Records that the store holds everything up to snapshot `index`, durably.
pub fn mark_flushed(store: &dyn Store, batch: &mut Batch, index: u64) -> Result<(), String> {
    batch
        .put(Column::Meta, META_SNAPSHOT, &index.to_le_bytes())
        .map_err(|e| e.to_string())?;
    store.write(batch).map_err(|e| e.to_string())?;
    batch.clear();
    store.flush().map_err(|e| e.to_string())
}

/// The snapshot index the store was last flushed for (0: none).
pub fn flushed_for(store: &dyn Store) -> Result<u64, String> {
    match store
        .get(Column::Meta, META_SNAPSHOT)
        .map_err(|e| e.to_string())?
    {
        None => Ok(0),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| format!("the store's snapshot mark is {} bytes, not 8", v.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_store::MemStore;

    #[test]
    fn a_snapshot_carries_the_store_to_another_replica() {
        let a = MemStore::new();
        let mut b = Batch::new();
        b.put(Column::Keys, b"k1", b"v1").unwrap();
        b.put(Column::Ledger, b"l1", &[9; 300]).unwrap();
        b.put(Column::Cycles, b"c1", b"").unwrap();
        b.put(Column::Meta, b"local", b"not sent").unwrap();
        a.write(&b).unwrap();
        let mut data = frame(b"hot state");
        dump_cold(&a, &mut data).unwrap();
        let (hot, cold) = split(&data).unwrap();
        assert_eq!(hot, b"hot state");
        let other = MemStore::new();
        let mut stale = Batch::new();
        stale.put(Column::Keys, b"old", b"gone").unwrap();
        other.write(&stale).unwrap();
        load_cold(&other, cold, 42).unwrap();
        assert_eq!(other.get(Column::Keys, b"old").unwrap(), None, "replaced");
        assert_eq!(
            other.get(Column::Keys, b"k1").unwrap(),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            other.get(Column::Ledger, b"l1").unwrap(),
            Some(vec![9; 300])
        );
        assert_eq!(other.get(Column::Meta, b"local").unwrap(), None);
        assert_eq!(flushed_for(&other).unwrap(), 42);
        // Damage is an error, never a panic.
        for cut in 0..cold.len() {
            let _ = load_cold(&MemStore::new(), &cold[..cut], 1);
        }
        assert!(load_cold(&MemStore::new(), &cold[..cold.len() - 1], 1).is_err());
        assert!(split(b"SNF1").is_err());
        assert!(split(&[b"SNF1".as_slice(), &[200, 0, 0, 0, 0, 0, 0, 0]].concat()).is_err());
    }

    /// Sealed stores hide ids under an id key of their own: a snapshot
    /// carries the real keys and values (the snapshot itself is sealed on
    /// disk and sent over mutual TLS), and the replica hides them under its
    /// own id key; both answer the same, neither holds the ids in clear.
    #[test]
    fn a_snapshot_carries_a_sealed_store_to_a_replica_with_another_id_key() {
        use settle_store::SealedStore;
        use std::sync::Arc;

        let cipher = Arc::new(settle_storage::Cipher::new(&[[5; 32]]).unwrap());
        let ids = crate::shard::cold::ID_COLUMNS;
        let a = SealedStore::open(MemStore::new(), "a", cipher.clone(), &ids).unwrap();
        let id = 0x5e77_13c0_ffee_u128.to_be_bytes();
        let mut b = Batch::new();
        for index in [1u64, 2] {
            let key = [&id[..], &index.to_be_bytes()].concat();
            b.put(
                Column::Keys,
                &key,
                &[&7u64.to_le_bytes()[..], b"bank_07"].concat(),
            )
            .unwrap();
            b.put(Column::Ledger, &key, b"bank_07 pays").unwrap();
        }
        b.put(Column::Cycles, &3u64.to_be_bytes(), b"cycle 3")
            .unwrap();
        a.write(&b).unwrap();
        let mut data = frame(b"hot");
        dump_cold(&a, &mut data).unwrap();
        let (_, cold) = split(&data).unwrap();
        let replica = SealedStore::open(MemStore::new(), "b", cipher, &ids).unwrap();
        load_cold(&replica, cold, 9).unwrap();
        assert_eq!(flushed_for(&replica).unwrap(), 9);
        let newest = |s: &dyn Store| s.last_with_prefix(Column::Ledger, &id).unwrap();
        assert_eq!(newest(&replica), newest(&a));
        assert!(newest(&a).unwrap().0.ends_with(&2u64.to_be_bytes()));
        for store in [a.inner(), replica.inner()] {
            store
                .scan(Column::Ledger, &mut |k, v| {
                    assert!(!k.starts_with(&id[..8]) && !v.windows(7).any(|w| w == b"bank_07"));
                    true
                })
                .unwrap();
        }
        let stored_key = |s: &MemStore| {
            let mut first = None;
            s.scan(Column::Ledger, &mut |k, _| {
                first = Some(k.to_vec());
                false
            })
            .unwrap();
            first
        };
        assert_ne!(
            stored_key(a.inner()),
            stored_key(replica.inner()),
            "each store hides ids under its own key"
        );
    }
}
