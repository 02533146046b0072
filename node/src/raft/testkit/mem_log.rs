//! TEST ONLY: an in-memory Raft log and vote store.
//!
//! Exists so the glommio runtime can be proven end to end before the real log
//! (an adapter over `settle-storage`) exists. Nothing here is durable.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;

use crate::raft::type_config::{Entry, LogId, TypeConfig, Vote};

#[derive(Default)]
struct MemLog {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

/// Shared handle: the store and its readers see the same log (single thread, so `Rc<RefCell>`).
#[derive(Clone, Default)]
pub struct MemLogStore {
    log: Rc<RefCell<MemLog>>,
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let log = self.log.borrow();
        Ok(log
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.log.borrow().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let log = self.log.borrow();
        let last_log_id = log
            .entries
            .values()
            .next_back()
            .map(|entry| entry.log_id())
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.log.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.log.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.log.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut log = self.log.borrow_mut();
            for entry in entries {
                let index = entry.index();
                // No holes: each entry extends the log by exactly one.
                if let Some((&last, _)) = log.entries.iter().next_back() {
                    assert_eq!(index, last + 1, "append would leave a hole in the log");
                }
                log.entries.insert(index, entry);
            }
        }
        // "Durable" as soon as it is in memory: report at once.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first_removed = last_log_id.map_or(0, |log_id| log_id.index + 1);
        self.log.borrow_mut().entries.split_off(&first_removed);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut log = self.log.borrow_mut();
        assert!(log.last_purged.is_none_or(|purged| purged <= log_id));
        log.entries = log.entries.split_off(&(log_id.index + 1));
        log.last_purged = Some(log_id);
        Ok(())
    }
}
