//! The control group (group 0): participants and their limits, the cycle
//! parameters (FX rates, spreads, prices), and the record of every
//! settlement cycle: started → decided (with its inputs) → applied.
//!
//! Participant and parameter commands are JSON (rare, easy to read in a log
//! dump). Cycle commands are rkyv behind a 16-byte header, because a
//! decision carries its inputs (up to 10,000 candidates) and must be cheap
//! to write and apply.

pub mod archive;
pub mod proposer;

use std::collections::VecDeque;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};
use settle_codec::messages::{CycleRecord, CycleStatus, CycleSummary};
use settle_codec::{TxResult, Window};

use crate::cycle::fx::FxConfig;
use crate::participants::{Participant, Registry, PARTICIPANTS_MAX};
use crate::raft::{GroupState, ShardReply};

/// Most participants changed by one control command.
pub const UPSERT_PARTICIPANTS_MAX: usize = 4_096;

/// Full cycle records kept in memory (inputs and decision, for `settle
/// audit --cycle`): at most ~1 MiB each, so tens of MiB at worst. Older
/// records are in the control group's store ([`archive`]).
pub const CYCLE_RECORDS_KEPT: usize = 64;

/// Cycle summaries kept (about an hour of 200 ms RTGS cycles); older ones
/// are dropped from memory (their decisions stay in the control log).
pub const CYCLE_SUMMARIES_KEPT: usize = 20_000;

/// First byte of a binary (cycle) command: JSON commands start with `{`.
const BINARY_TAG: u8 = 0xC7;

/// Header of a binary command: the tag, then padding so the rkyv archive
/// that follows starts 16-byte aligned in the (aligned) entry.
const BINARY_HEADER_BYTES: usize = 16;

/// First byte of a version-2 snapshot (a version-1 snapshot is JSON).
const SNAPSHOT_V2: u8 = 0x02;

/// A JSON command in the control group's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Adds participants or replaces them whole (limits, balances).
    UpsertParticipants(Vec<Participant>),
    /// Replaces the cycle parameters (applies from the next cycle).
    SetFx(FxConfig),
}

impl ControlCommand {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("control commands are plain data")
    }
}

/// A settlement cycle command, written only by the coordinator.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum CycleCommand {
    /// Cycle `cycle_id` of `window` begins: shards will freeze at most
    /// `quotas[i]` candidates each (shard order).
    Start {
        leader_ts_us: u64,
        cycle_id: u64,
        window: Window,
        quotas: Vec<u32>,
    },
    /// The decision, with the inputs it was made on.
    Decide {
        leader_ts_us: u64,
        record: Box<CycleRecord>,
    },
    /// Every shard applied its legs.
    Complete { leader_ts_us: u64, cycle_id: u64 },
}

impl CycleCommand {
    pub fn encode(&self) -> Vec<u8> {
        let archive = rkyv::to_bytes::<rancor::Error>(self).expect("plain data");
        let mut out = Vec::with_capacity(BINARY_HEADER_BYTES + archive.len());
        out.push(BINARY_TAG);
        out.resize(BINARY_HEADER_BYTES, 0);
        out.extend_from_slice(&archive);
        out
    }
}

/// The cycle in progress (at most one: the coordinator serialises cycles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentCycle {
    pub cycle_id: u64,
    pub window: Window,
    pub quotas: Vec<u32>,
    pub started_at_us: u64,
    /// Control log index of the decision, once decided.
    pub decision_index: Option<u64>,
}

/// The replicated control state.
#[derive(Debug)]
pub struct ControlState {
    registry: Arc<Registry>,
    fx: FxConfig,
    last_applied_index: u64,
    next_cycle_id: u64,
    current: Option<CurrentCycle>,
    summaries: VecDeque<CycleSummary>,
    records: VecDeque<CycleRecord>,
    /// Where every core reads the current registry from. Not part of the
    /// replicated state: a local view refreshed after each apply.
    published: Option<Arc<ArcSwap<Registry>>>,
    /// Records pushed out of `records` (a local handle on the store).
    archive: archive::Archive,
    /// A checksum of the registry and the FX configuration, taken when
    /// either changes (see `GroupState::fingerprint`).
    config_digest: u64,
}

/// The JSON part of a snapshot.
#[derive(Serialize, Deserialize)]
struct ControlSnapshot {
    participants: Vec<Participant>,
    last_applied_index: u64,
    #[serde(default)]
    fx: Option<FxConfig>,
    #[serde(default)]
    next_cycle_id: Option<u64>,
    #[serde(default)]
    current: Option<CurrentCycle>,
}

/// The binary part of a snapshot.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct CycleHistory {
    summaries: Vec<CycleSummary>,
    records: Vec<CycleRecord>,
}

impl ControlState {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub fn fx(&self) -> &FxConfig {
        &self.fx
    }

    /// The id the next cycle takes.
    pub fn next_cycle_id(&self) -> u64 {
        self.next_cycle_id
    }

    /// The cycle started and not yet completed, if any.
    pub fn current(&self) -> Option<&CurrentCycle> {
        self.current.as_ref()
    }

    /// A kept cycle record.
    pub fn record(&self, cycle_id: u64) -> Option<&CycleRecord> {
        // Kept records are in id order: search from the newest.
        self.records
            .iter()
            .rev()
            .find(|r| r.summary.cycle_id == cycle_id)
    }

    /// The store holding cycle records older than those kept in memory
    /// (read it off the core: [`archive::read_record`]).
    pub fn archive_store(&self) -> Arc<dyn settle_store::Store> {
        self.archive.store().clone()
    }

    /// The oldest cycle whose summary is in memory (`None`: none is).
    pub fn first_kept_summary(&self) -> Option<u64> {
        self.summaries.front().map(|s| s.cycle_id)
    }

    /// A kept cycle summary.
    pub fn summary(&self, cycle_id: u64) -> Option<&CycleSummary> {
        let first = self.summaries.front()?.cycle_id;
        let at = cycle_id.checked_sub(first)? as usize;
        self.summaries.get(at).filter(|s| s.cycle_id == cycle_id)
    }

    /// Summaries of cycles after `after_cycle`, oldest first, at most `max`.
    pub fn summaries_after(&self, after_cycle: u64, max: usize) -> Vec<CycleSummary> {
        let skip = self
            .summaries
            .partition_point(|s| s.cycle_id <= after_cycle);
        self.summaries
            .iter()
            .skip(skip)
            .take(max)
            .copied()
            .collect()
    }

    /// Makes every later change visible to intake through `view`.
    pub fn publish_to(&mut self, view: Arc<ArcSwap<Registry>>) {
        view.store(self.registry.clone());
        self.published = Some(view);
    }

    fn upsert(&mut self, participants: Vec<Participant>) -> Result<(), String> {
        if participants.len() > UPSERT_PARTICIPANTS_MAX {
            return Err(format!(
                "{} participants in one command, more than {UPSERT_PARTICIPANTS_MAX}",
                participants.len()
            ));
        }
        let mut next = (*self.registry).clone();
        for p in participants {
            if next.len() >= PARTICIPANTS_MAX && next.get(p.id).is_none() {
                return Err(format!("registry full ({PARTICIPANTS_MAX} participants)"));
            }
            // Opening balances are booked once (see `OpeningFixed`): an
            // update keeps the funded ones, so the registry and the shards'
            // balances agree.
            let p = match next.get(p.id) {
                None => p,
                Some(old) => {
                    let (updated, refused) = old.updated_by(&p);
                    for r in refused {
                        tracing::warn!(%r, "participant update: opening balance kept");
                    }
                    updated
                }
            };
            next = (*next.with(p)).clone();
        }
        self.registry = Arc::new(next);
        self.config_digest = self.config_checksum();
        if let Some(view) = &self.published {
            view.store(self.registry.clone());
        }
        Ok(())
    }

    /// Applies a cycle command; `Err` is a refusal (the state is unchanged).
    fn apply_cycle(&mut self, log_index: u64, command: CycleCommand) -> Result<(), String> {
        match command {
            CycleCommand::Start {
                leader_ts_us,
                cycle_id,
                window,
                quotas,
            } => {
                if let Some(current) = &self.current {
                    return Err(format!(
                        "cycle {cycle_id} cannot start: cycle {} is in progress",
                        current.cycle_id
                    ));
                }
                if cycle_id != self.next_cycle_id {
                    return Err(format!(
                        "cycle {cycle_id} cannot start: the next cycle is {}",
                        self.next_cycle_id
                    ));
                }
                self.next_cycle_id += 1;
                self.current = Some(CurrentCycle {
                    cycle_id,
                    window,
                    quotas,
                    started_at_us: leader_ts_us,
                    decision_index: None,
                });
                if self.summaries.len() >= CYCLE_SUMMARIES_KEPT {
                    self.summaries.pop_front();
                }
                self.summaries.push_back(CycleSummary {
                    cycle_id,
                    window,
                    status: CycleStatus::Started,
                    method: settle_codec::messages::DecisionMethod::Optimiser,
                    candidates: 0,
                    settled: 0,
                    deferred: 0,
                    batches: 0,
                    cost: Default::default(),
                    naive_cost: Default::default(),
                    solve_us: 0,
                    started_at_us: leader_ts_us,
                    decided_at_us: 0,
                    applied_at_us: 0,
                    decision_index: 0,
                });
                Ok(())
            }
            CycleCommand::Decide {
                leader_ts_us,
                record,
            } => {
                let mut record = *record;
                let cycle_id = record.summary.cycle_id;
                let current = match &mut self.current {
                    Some(c) if c.cycle_id == cycle_id && c.decision_index.is_none() => c,
                    _ => return Err(format!("cycle {cycle_id} is not started and undecided")),
                };
                if record.outcomes.len() != record.transactions.len() {
                    return Err(format!(
                        "cycle {cycle_id}: {} outcomes for {} transactions",
                        record.outcomes.len(),
                        record.transactions.len()
                    ));
                }
                current.decision_index = Some(log_index);
                record.summary.status = CycleStatus::Decided;
                record.summary.started_at_us = current.started_at_us;
                record.summary.decided_at_us = leader_ts_us;
                record.summary.decision_index = log_index;
                if let Some(s) = self.summaries.back_mut().filter(|s| s.cycle_id == cycle_id) {
                    *s = record.summary;
                }
                if self.records.len() >= CYCLE_RECORDS_KEPT {
                    let old = self.records.pop_front().expect("not empty");
                    self.archive.put(&old);
                }
                self.records.push_back(record);
                Ok(())
            }
            CycleCommand::Complete {
                leader_ts_us,
                cycle_id,
            } => {
                match &self.current {
                    Some(c) if c.cycle_id == cycle_id && c.decision_index.is_some() => {}
                    _ => return Err(format!("cycle {cycle_id} is not decided and open")),
                }
                self.current = None;
                for s in self
                    .summaries
                    .back_mut()
                    .into_iter()
                    .chain(self.records.back_mut().map(|r| &mut r.summary))
                {
                    if s.cycle_id == cycle_id {
                        s.status = CycleStatus::Applied;
                        s.applied_at_us = leader_ts_us;
                    }
                }
                Ok(())
            }
        }
    }
}

impl GroupState for ControlState {
    fn apply(
        &mut self,
        log_index: u64,
        command: &[u8],
        reply: &mut ShardReply,
    ) -> Result<(), String> {
        assert!(
            log_index > self.last_applied_index,
            "control entries apply in log order"
        );
        if command.first() == Some(&BINARY_TAG) {
            let archive = command
                .get(BINARY_HEADER_BYTES..)
                .ok_or_else(|| format!("cycle command at index {log_index} is truncated"))?;
            let cycle = rkyv::from_bytes::<CycleCommand, rancor::Error>(archive)
                .map_err(|e| format!("cycle command at index {log_index}: {e}"))?;
            self.last_applied_index = log_index;
            // A refused cycle command changes nothing; the coordinator reads
            // the refusal in the reply.
            match self.apply_cycle(log_index, cycle) {
                Ok(()) => reply.results.push(TxResult::Created),
                Err(e) => {
                    tracing::warn!(log_index, error = %e, "cycle command refused");
                    reply.results.push(TxResult::Conflict);
                }
            }
            return self.archive.commit(log_index);
        }
        let command: ControlCommand = serde_json::from_slice(command)
            .map_err(|e| format!("control command at index {log_index}: {e}"))?;
        self.last_applied_index = log_index;
        match command {
            // A refused upsert changes nothing; it is not a fault of the log.
            ControlCommand::UpsertParticipants(list) => {
                if let Err(e) = self.upsert(list) {
                    tracing::warn!(log_index, error = %e, "participant upsert refused");
                    reply.results.push(TxResult::Conflict);
                } else {
                    reply.results.push(TxResult::Created);
                }
            }
            ControlCommand::SetFx(fx) => match fx.validate() {
                Ok(()) => {
                    self.fx = fx;
                    self.config_digest = self.config_checksum();
                    reply.results.push(TxResult::Created);
                }
                Err(e) => {
                    tracing::warn!(log_index, error = %e, "fx configuration refused");
                    reply.results.push(TxResult::Conflict);
                }
            },
        }
        Ok(())
    }

    fn apply_noop(&mut self, log_index: u64) {
        assert!(log_index > self.last_applied_index);
        self.last_applied_index = log_index;
    }

    fn snapshot(&self) -> Vec<u8> {
        let json = serde_json::to_vec(&ControlSnapshot {
            participants: self.registry.iter().cloned().collect(),
            last_applied_index: self.last_applied_index,
            fx: Some(self.fx.clone()),
            next_cycle_id: Some(self.next_cycle_id),
            current: self.current.clone(),
        })
        .expect("plain data");
        let history = rkyv::to_bytes::<rancor::Error>(&CycleHistory {
            summaries: self.summaries.iter().copied().collect(),
            records: self.records.iter().cloned().collect(),
        })
        .expect("plain data");
        let mut out = Vec::with_capacity(1 + 16 + json.len() + history.len());
        out.push(SNAPSHOT_V2);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(history.len() as u64).to_le_bytes());
        out.extend_from_slice(&history);
        out
    }

    fn attach_store(
        &mut self,
        dir: &std::path::Path,
        config: &crate::raft::StateStoreConfig,
        at_rest: Option<&Arc<settle_storage::Cipher>>,
        snapshot_index: u64,
    ) -> Result<(), String> {
        // Cycle records are few and read rarely: a small cache will do.
        let sizes = settle_store::RocksOptions {
            cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            background_jobs: config.rocks.background_jobs,
        };
        // Keys are cycle ids (a count, not payment data): they stay in clear
        // and in order, for the range scans of `archive::read_summaries`.
        let store = settle_store::open_rocks(dir, sizes, at_rest.cloned(), &[])
            .map_err(|e| e.to_string())?;
        let flushed = crate::raft::snapshot_data::flushed_for(store.as_ref())?;
        if flushed < snapshot_index {
            return Err(format!(
                "the control group's store in {} holds the state up to snapshot {flushed}, \
                 older than the snapshot {snapshot_index} it restarts from: the store lost data",
                dir.display()
            ));
        }
        self.archive = archive::Archive::new(store);
        Ok(())
    }

    fn store(&mut self) -> Option<Arc<dyn settle_store::Store>> {
        Some(self.archive.store().clone())
    }

    /// A snapshot from the leader replaces the replicated state; the local
    /// view intake reads keeps being refreshed, the store stays.
    fn install(&mut self, restored: Self) {
        let published = self.published.take();
        let archive = std::mem::take(&mut self.archive);
        *self = restored;
        self.archive = archive;
        if let Some(view) = published {
            self.publish_to(view);
        }
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let (json, history) = if bytes.first() == Some(&SNAPSHOT_V2) {
            let mut at = 1;
            let mut part = || -> Result<&[u8], String> {
                let len = bytes
                    .get(at..at + 8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .ok_or("control snapshot truncated")?;
                let len = usize::try_from(len).map_err(|_| "control snapshot: bad length")?;
                let body = bytes
                    .get(at + 8..at + 8 + len.min(bytes.len()))
                    .filter(|b| b.len() == len)
                    .ok_or("control snapshot truncated")?;
                at += 8 + len;
                Ok(body)
            };
            let json = part()?;
            let history = part()?;
            if at != bytes.len() {
                return Err("control snapshot has trailing bytes".into());
            }
            let mut aligned = AlignedVec::<16>::with_capacity(history.len());
            aligned.extend_from_slice(history);
            let history = rkyv::from_bytes::<CycleHistory, rancor::Error>(&aligned)
                .map_err(|e| format!("control snapshot history: {e}"))?;
            (json, Some(history))
        } else {
            (bytes, None)
        };
        let snapshot: ControlSnapshot =
            serde_json::from_slice(json).map_err(|e| format!("control snapshot: {e}"))?;
        let history = history.unwrap_or(CycleHistory {
            summaries: Vec::new(),
            records: Vec::new(),
        });
        let mut state = ControlState {
            registry: Arc::new(Registry::new(snapshot.participants)),
            fx: snapshot.fx.unwrap_or_default(),
            last_applied_index: snapshot.last_applied_index,
            next_cycle_id: snapshot.next_cycle_id.unwrap_or(1),
            current: snapshot.current,
            summaries: history.summaries.into(),
            records: history.records.into(),
            published: None,
            archive: archive::Archive::default(),
            config_digest: 0,
        };
        state.config_digest = state.config_checksum();
        Ok(state)
    }

    fn fingerprint(&self) -> u64 {
        let current = self.current.as_ref();
        let newest = self.summaries.back();
        crate::raft::digest::fold(
            self.config_digest,
            &[
                self.last_applied_index,
                self.next_cycle_id,
                current.map_or(0, |c| c.cycle_id),
                current.and_then(|c| c.decision_index).unwrap_or(0),
                self.summaries.len() as u64,
                self.records.len() as u64,
                newest.map_or(0, |s| s.cycle_id),
                newest.map_or(0, |s| s.applied_at_us),
            ],
        )
    }
}

impl Default for ControlState {
    fn default() -> Self {
        let mut state = ControlState {
            registry: Arc::new(Registry::default()),
            fx: FxConfig::default(),
            last_applied_index: 0,
            next_cycle_id: 1,
            current: None,
            summaries: VecDeque::new(),
            records: VecDeque::new(),
            published: None,
            archive: archive::Archive::default(),
            config_digest: 0,
        };
        state.config_digest = state.config_checksum();
        state
    }
}

impl ControlState {
    /// A checksum of the registry and the FX configuration: computed only
    /// when they change (a registry change already copies the registry).
    fn config_checksum(&self) -> u64 {
        let mut crc = 0u32;
        for p in self.registry.iter() {
            crc = crc32c::crc32c_append(crc, &serde_json::to_vec(p).expect("plain data"));
        }
        let fx = crc32c::crc32c(&serde_json::to_vec(&self.fx).expect("plain data"));
        crate::raft::digest::fold(u64::from(crc), &[u64::from(fx), self.registry.len() as u64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::messages::{CycleCost, DecisionMethod};
    use settle_codec::ParticipantId;
    use std::collections::BTreeMap;

    fn p(id: u32, limit: f64) -> Participant {
        Participant {
            id: ParticipantId(id),
            counterparty_limit_usd: limit,
            balances: BTreeMap::new(),
        }
    }

    /// `bytes` copied to a 16-aligned buffer, as the state machine hands them.
    fn aligned(bytes: &[u8]) -> AlignedVec<16> {
        let mut v = AlignedVec::new();
        v.extend_from_slice(bytes);
        v
    }

    fn record(cycle_id: u64) -> CycleRecord {
        CycleRecord {
            summary: CycleSummary {
                cycle_id,
                window: Window::Rtgs,
                status: CycleStatus::Started,
                method: DecisionMethod::Optimiser,
                candidates: 0,
                settled: 0,
                deferred: 0,
                batches: 0,
                cost: CycleCost::default(),
                naive_cost: CycleCost::default(),
                solve_us: 5,
                started_at_us: 0,
                decided_at_us: 0,
                applied_at_us: 0,
                decision_index: 0,
            },
            fallback_reason: String::new(),
            max_batch_size: 10,
            wire_usd: 5.0,
            consolidation_discount: 0.15,
            defer_bps: [50.0, 10.0, 2.0, 1.0],
            currencies: Vec::new(),
            spreads: Vec::new(),
            participants: Vec::new(),
            balances: Vec::new(),
            defer_usd: Vec::new(),
            transactions: Vec::new(),
            outcomes: Vec::new(),
            fx_trades: Vec::new(),
            net_flows: Vec::new(),
        }
    }

    fn apply(state: &mut ControlState, index: u64, bytes: &[u8]) -> TxResult {
        let mut reply = ShardReply::default();
        state.apply(index, &aligned(bytes), &mut reply).unwrap();
        reply.results[0]
    }

    #[test]
    fn upserts_apply_publish_and_survive_a_snapshot() {
        let mut state = ControlState::default();
        let view = Arc::new(ArcSwap::from_pointee(Registry::default()));
        state.publish_to(view.clone());
        let mut reply = ShardReply::default();
        state
            .apply(
                1,
                &ControlCommand::UpsertParticipants(vec![p(1, 5.0), p(2, 6.0)]).encode(),
                &mut reply,
            )
            .unwrap();
        state
            .apply(
                2,
                &ControlCommand::UpsertParticipants(vec![p(1, 9.0)]).encode(),
                &mut reply,
            )
            .unwrap();
        assert_eq!(view.load().len(), 2);
        assert_eq!(
            view.load()
                .get(ParticipantId(1))
                .unwrap()
                .counterparty_limit_usd,
            9.0
        );
        let restored = ControlState::restore(&state.snapshot()).unwrap();
        assert_eq!(restored.snapshot(), state.snapshot());
        // Installing a snapshot keeps publishing to the same view.
        let mut follower = ControlState::default();
        let follower_view = Arc::new(ArcSwap::from_pointee(Registry::default()));
        follower.publish_to(follower_view.clone());
        follower.install(restored);
        assert_eq!(follower_view.load().len(), 2);
        assert!(state.apply(3, b"{not json", &mut reply).is_err());
    }

    #[test]
    fn an_upsert_keeps_a_booked_opening_balance() {
        let mut state = ControlState::default();
        let view = Arc::new(ArcSwap::from_pointee(Registry::default()));
        state.publish_to(view.clone());
        let funded = |usd: u64, limit: f64| Participant {
            balances: BTreeMap::from([(settle_codec::Currency::USD.0, usd)]),
            ..p(1, limit)
        };
        let mut reply = ShardReply::default();
        for (index, update) in [(1, funded(500, 1.0)), (2, funded(900, 2.0))] {
            state
                .apply(
                    index,
                    &ControlCommand::UpsertParticipants(vec![update]).encode(),
                    &mut reply,
                )
                .unwrap();
        }
        let registry = view.load();
        let stored = registry.get(ParticipantId(1)).unwrap();
        assert_eq!(
            stored,
            &funded(500, 2.0),
            "the limit changes, the opening does not"
        );
    }

    #[test]
    fn a_version_1_snapshot_still_restores() {
        let v1 = br#"{"participants":[],"last_applied_index":7}"#;
        let restored = ControlState::restore(v1).unwrap();
        assert_eq!(restored.last_applied_index, 7);
        assert_eq!(restored.next_cycle_id(), 1);
        assert_eq!(restored.fx(), &FxConfig::default());
    }

    #[test]
    fn cycles_go_start_decide_complete_in_order_and_survive_a_snapshot() {
        let mut s = ControlState::default();
        let start = |id| {
            CycleCommand::Start {
                leader_ts_us: 100 * id,
                cycle_id: id,
                window: Window::Rtgs,
                quotas: vec![5, 5],
            }
            .encode()
        };
        let decide = |id| {
            CycleCommand::Decide {
                leader_ts_us: 100 * id + 10,
                record: Box::new(record(id)),
            }
            .encode()
        };
        let complete = |id| {
            CycleCommand::Complete {
                leader_ts_us: 100 * id + 20,
                cycle_id: id,
            }
            .encode()
        };
        assert_eq!(
            apply(&mut s, 1, &decide(1)),
            TxResult::Conflict,
            "not started"
        );
        assert_eq!(
            apply(&mut s, 2, &start(2)),
            TxResult::Conflict,
            "ids in order"
        );
        assert_eq!(apply(&mut s, 3, &start(1)), TxResult::Created);
        assert_eq!(
            apply(&mut s, 4, &start(2)),
            TxResult::Conflict,
            "one at a time"
        );
        assert_eq!(
            apply(&mut s, 5, &complete(1)),
            TxResult::Conflict,
            "undecided"
        );
        assert_eq!(apply(&mut s, 6, &decide(1)), TxResult::Created);
        assert_eq!(
            apply(&mut s, 7, &decide(1)),
            TxResult::Conflict,
            "decided once"
        );
        let snapshot = s.snapshot();
        let mid = ControlState::restore(&snapshot).unwrap();
        assert_eq!(mid.snapshot(), snapshot);
        assert_eq!(mid.current().unwrap().decision_index, Some(6));
        assert_eq!(mid.record(1).unwrap().summary.status, CycleStatus::Decided);
        assert_eq!(apply(&mut s, 8, &complete(1)), TxResult::Created);
        let summary = *s.summary(1).unwrap();
        assert_eq!(summary.status, CycleStatus::Applied);
        assert_eq!(
            (
                summary.started_at_us,
                summary.decided_at_us,
                summary.applied_at_us
            ),
            (100, 110, 120)
        );
        assert_eq!(summary.latency_us(), Some(20));
        assert_eq!(summary.decision_index, 6);
        assert_eq!(s.record(1).unwrap().summary, summary);
        assert_eq!(s.next_cycle_id(), 2);
        assert!(s.current().is_none());
        assert_eq!(s.summaries_after(0, 10).len(), 1);
        assert!(s.summaries_after(1, 10).is_empty());
    }

    #[test]
    fn memory_is_bounded_and_every_cycle_stays_auditable() {
        let mut s = ControlState::default();
        let mut index = 0;
        let cycles = 200u64;
        for id in 1..=cycles {
            for command in [
                CycleCommand::Start {
                    leader_ts_us: 1,
                    cycle_id: id,
                    window: Window::T0,
                    quotas: vec![],
                },
                CycleCommand::Decide {
                    leader_ts_us: 2,
                    record: Box::new(record(id)),
                },
                CycleCommand::Complete {
                    leader_ts_us: 3,
                    cycle_id: id,
                },
            ] {
                index += 1;
                assert_eq!(apply(&mut s, index, &command.encode()), TxResult::Created);
            }
        }
        assert_eq!(s.records.len(), CYCLE_RECORDS_KEPT);
        assert!(s.record(1).is_none(), "the oldest record left memory");
        assert!(s.summary(1).is_some(), "its summary stays");
        assert!(s.record(cycles).is_some());
        // Cycle 1, 200 cycles later: its full record is in the store, final.
        let store = s.archive_store();
        let first = archive::read_record(&*store, 1).unwrap().expect("archived");
        assert_eq!(first.summary.cycle_id, 1);
        assert_eq!(first.summary.status, CycleStatus::Applied);
        assert_eq!(first.transactions, record(1).transactions);
        let archived = cycles - CYCLE_RECORDS_KEPT as u64;
        assert!(archive::read_record(&*store, archived).unwrap().is_some());
        assert!(
            archive::read_record(&*store, archived + 1)
                .unwrap()
                .is_none(),
            "in memory"
        );
        let listed = archive::read_summaries(&*store, 10, 5).unwrap();
        let ids: Vec<_> = listed.iter().map(|s| s.cycle_id).collect();
        assert_eq!(ids, vec![11, 12, 13, 14, 15]);
    }
}
