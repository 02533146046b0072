//! Cycle records that left memory: the control group keeps the newest
//! [`super::CYCLE_RECORDS_KEPT`] records in memory and every older one in its
//! state store, for the retention, so that any cycle ever run can be
//! audited (`settle audit --cycle 1` after months).
//!
//! A record leaves memory when a newer decision pushes it out; by then it is
//! complete (cycles run one at a time, and a cycle is pushed out 64 cycles
//! after its own). Writes of one entry are staged and written with the
//! entry's index at its end; nothing the control group decides depends on
//! what is in the archive, so a store ahead of a snapshot is harmless (the
//! replay writes the same records again).

use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use settle_codec::messages::{CycleRecord, CycleSummary};
use settle_store::{Batch, Column, MemStore, Store, META_APPLIED};

/// The control group's handle on its store.
pub struct Archive {
    store: Arc<dyn Store>,
    batch: Batch,
    error: Option<String>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("staged", &self.batch.len())
            .finish()
    }
}

impl Default for Archive {
    /// A store in memory (unit tests).
    fn default() -> Self {
        Archive::new(Arc::new(MemStore::new()))
    }
}

fn key(cycle_id: u64) -> [u8; 8] {
    cycle_id.to_be_bytes()
}

impl Archive {
    pub fn new(store: Arc<dyn Store>) -> Archive {
        Archive {
            store,
            batch: Batch::new(),
            error: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stages `record` for the store.
    pub fn put(&mut self, record: &CycleRecord) {
        let bytes = rkyv::to_bytes::<rancor::Error>(record).expect("plain data");
        if let Err(e) = self
            .batch
            .put(Column::Ledger, &key(record.summary.cycle_id), &bytes)
        {
            self.error.get_or_insert(e.to_string());
        }
    }

    /// Writes what the entry at `log_index` staged; `Err` if the store
    /// failed (the group must stop rather than forget a cycle).
    pub fn commit(&mut self, log_index: u64) -> Result<(), String> {
        if !self.batch.is_empty() {
            let written = self
                .batch
                .put(Column::Meta, META_APPLIED, &log_index.to_le_bytes())
                .map_err(|e| e.to_string())
                .and_then(|()| self.store.write(&self.batch).map_err(|e| e.to_string()));
            self.batch.clear();
            if let Err(e) = written {
                self.error.get_or_insert(e);
            }
        }
        match self.error.take() {
            Some(e) => Err(format!("cycle archive: {e}")),
            None => Ok(()),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<CycleRecord, String> {
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<CycleRecord, rancor::Error>(&aligned)
        .map_err(|e| format!("an archived cycle record does not decode: {e}"))
}

/// The archived record of `cycle_id`. Blocking: run it off the core.
pub fn read_record(store: &dyn Store, cycle_id: u64) -> Result<Option<CycleRecord>, String> {
    match store
        .get(Column::Ledger, &key(cycle_id))
        .map_err(|e| e.to_string())?
    {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some),
    }
}

/// Summaries of archived cycles after `after_cycle`, oldest first, at most
/// `max`. Blocking: run it off the core.
pub fn read_summaries(
    store: &dyn Store,
    after_cycle: u64,
    max: usize,
) -> Result<Vec<CycleSummary>, String> {
    let mut out = Vec::new();
    let mut failed = None;
    store
        .scan_from(
            Column::Ledger,
            &key(after_cycle.saturating_add(1)),
            &mut |_, v| {
                match decode(v) {
                    Ok(r) => out.push(r.summary),
                    Err(e) => failed = Some(e),
                }
                failed.is_none() && out.len() < max
            },
        )
        .map_err(|e| e.to_string())?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
