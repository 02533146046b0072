//! The two stores behave the same through the interface; RocksDB's own
//! promises (durable at flush, expiry by compaction, damage refused) are
//! checked on real files.

use std::sync::Arc;

use settle_store::{
    Batch, Column, MemStore, RocksOptions, RocksStore, Store, StoreError, META_APPLIED,
};

fn key_value(expires: u64, rest: &[u8]) -> Vec<u8> {
    let mut v = expires.to_le_bytes().to_vec();
    v.extend_from_slice(rest);
    v
}

/// The contract every store meets.
fn contract(store: &dyn Store) {
    assert_eq!(store.applied_index().unwrap(), 0);
    let mut b = Batch::new();
    b.put(Column::Keys, b"id-1", &key_value(100, b"body"))
        .unwrap();
    b.put(Column::Ledger, b"id-1\x00\x01", b"first").unwrap();
    b.put(Column::Ledger, b"id-1\x00\x02", b"second").unwrap();
    b.put(Column::Ledger, b"id-2\x00\x01", b"other").unwrap();
    b.put(Column::Meta, META_APPLIED, &7u64.to_le_bytes())
        .unwrap();
    store.write(&b).unwrap();
    assert_eq!(
        store.get(Column::Keys, b"id-1").unwrap(),
        Some(key_value(100, b"body"))
    );
    // Within one batch, in any key order, the later write of a key wins
    // (a store may reorder a batch by key, never two writes of one key).
    let mut b = Batch::new();
    b.put(Column::Ledger, b"zz-order", b"old").unwrap();
    b.put(Column::Ledger, b"aa-order", b"a-old").unwrap();
    b.put(Column::Ledger, b"zz-order", b"new").unwrap();
    b.delete(Column::Ledger, b"aa-order").unwrap();
    b.put(Column::Ledger, b"mm-order", b"kept").unwrap();
    b.delete(Column::Ledger, b"mm-gone").unwrap();
    store.write(&b).unwrap();
    assert_eq!(
        store.get(Column::Ledger, b"zz-order").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(store.get(Column::Ledger, b"aa-order").unwrap(), None);
    assert_eq!(
        store.get(Column::Ledger, b"mm-order").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    let mut b = Batch::new();
    for key in [b"zz-order", b"aa-order", b"mm-order"] {
        b.delete(Column::Ledger, key).unwrap();
    }
    store.write(&b).unwrap();
    assert_eq!(store.get(Column::Keys, b"id-2").unwrap(), None);
    assert_eq!(
        store.get(Column::Ledger, b"id-1").unwrap(),
        None,
        "columns are apart"
    );
    assert_eq!(
        store.last_with_prefix(Column::Ledger, b"id-1").unwrap(),
        Some((b"id-1\x00\x02".to_vec(), b"second".to_vec()))
    );
    assert_eq!(
        store.last_with_prefix(Column::Ledger, b"id-0").unwrap(),
        None
    );
    assert_eq!(
        store
            .last_at_or_below(Column::Ledger, b"id-1", b"id-1\x00\x01")
            .unwrap()
            .unwrap()
            .1,
        b"first".to_vec(),
        "the newest version as of version 1"
    );
    assert_eq!(
        store
            .last_at_or_below(Column::Ledger, b"id-2", b"id-2\x00\x00")
            .unwrap(),
        None,
        "no version of id-2 at or below 0"
    );
    assert_eq!(
        store.last_with_prefix(Column::Ledger, b"id-3").unwrap(),
        None
    );
    assert_eq!(store.applied_index().unwrap(), 7);
    let mut seen = Vec::new();
    store
        .scan(Column::Ledger, &mut |k, _| {
            seen.push(k.to_vec());
            seen.len() < 2
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![b"id-1\x00\x01".to_vec(), b"id-1\x00\x02".to_vec()]
    );
    let mut from = Vec::new();
    store
        .scan_from(Column::Ledger, b"id-1\x00\x02", &mut |k, _| {
            from.push(k.to_vec());
            true
        })
        .unwrap();
    assert_eq!(
        from,
        vec![b"id-1\x00\x02".to_vec(), b"id-2\x00\x01".to_vec()]
    );
    let mut b = Batch::new();
    b.delete(Column::Ledger, b"id-1\x00\x02").unwrap();
    store.write(&b).unwrap();
    assert_eq!(
        store
            .last_with_prefix(Column::Ledger, b"id-1")
            .unwrap()
            .unwrap()
            .1,
        b"first".to_vec()
    );
    store.flush().unwrap();
    store.clear().unwrap();
    assert_eq!(store.get(Column::Keys, b"id-1").unwrap(), None);
    assert_eq!(store.applied_index().unwrap(), 0);
}

#[test]
fn memory_store_meets_the_contract() {
    contract(&MemStore::new());
}

#[test]
fn rocksdb_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RocksStore::open(dir.path(), RocksOptions::default()).unwrap());
}

#[test]
fn flushed_writes_survive_reopen_and_expired_keys_are_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
        let mut b = Batch::new();
        for i in 0..1_000u32 {
            // Half expire at 50, half at 500.
            let expires = if i % 2 == 0 { 50 } else { 500 };
            b.put(Column::Keys, &i.to_be_bytes(), &key_value(expires, b"x"))
                .unwrap();
        }
        store.write(&b).unwrap();
        store.flush().unwrap();
    }
    let store = Arc::new(RocksStore::open(dir.path(), RocksOptions::default()).unwrap());
    let count = |s: &dyn Store| {
        let mut n = 0;
        s.scan(Column::Keys, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
        n
    };
    assert_eq!(count(&*store), 1_000, "flushed before close");
    store.set_clock(100);
    store.compact_all().unwrap();
    assert_eq!(count(&*store), 500, "the keys expired at 50 are gone");
    assert!(store
        .get(Column::Keys, &1u32.to_be_bytes())
        .unwrap()
        .is_some());
}

#[test]
fn a_damaged_store_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
        let mut b = Batch::new();
        for i in 0..10_000u32 {
            b.put(Column::Ledger, &i.to_be_bytes(), &[7u8; 100])
                .unwrap();
        }
        store.write(&b).unwrap();
        store.flush().unwrap();
    }
    // Flip bytes in the middle of every table file.
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 3;
            for b in &mut bytes[mid..mid + 64] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let refused = match RocksStore::open(dir.path(), RocksOptions::default()) {
        Err(e) => e,
        Ok(store) => {
            // Opened (the damage is in data blocks): every read checks.
            let mut err = None;
            let _ = store
                .scan(Column::Ledger, &mut |_, _| true)
                .map_err(|e| err = Some(e));
            err.expect("a scan over damaged blocks fails")
        }
    };
    match refused {
        StoreError::Corrupt { reason, .. } => assert!(
            reason.contains(".sst") || reason.to_lowercase().contains("checksum"),
            "names the file or the checksum: {reason}"
        ),
        other => panic!("not refused as corrupt: {other}"),
    }
}
