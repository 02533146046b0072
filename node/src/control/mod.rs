//! The control group (group 0): participants and their limits now; FX rates
//! and settlement cycle decisions in later issues.
//!
//! Control-plane traffic is small and rare, so its commands are JSON: easy
//! to read in a log dump, and deterministic (same command, same bytes).

pub mod proposer;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::participants::{Participant, Registry, PARTICIPANTS_MAX};
use crate::raft::{GroupState, ShardReply};

/// Most participants changed by one control command.
pub const UPSERT_PARTICIPANTS_MAX: usize = 4_096;

/// A command in the control group's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Adds participants or replaces them whole (limits, balances).
    UpsertParticipants(Vec<Participant>),
}

impl ControlCommand {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("control commands are plain data")
    }
}

/// The replicated control state.
#[derive(Debug)]
pub struct ControlState {
    registry: Arc<Registry>,
    last_applied_index: u64,
    /// Where every core reads the current registry from. Not part of the
    /// replicated state: a local view refreshed after each apply.
    published: Option<Arc<ArcSwap<Registry>>>,
}

#[derive(Serialize, Deserialize)]
struct ControlSnapshot {
    participants: Vec<Participant>,
    last_applied_index: u64,
}

impl ControlState {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
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
            next = (*next.with(p)).clone();
        }
        self.registry = Arc::new(next);
        if let Some(view) = &self.published {
            view.store(self.registry.clone());
        }
        Ok(())
    }
}

impl GroupState for ControlState {
    fn apply(
        &mut self,
        log_index: u64,
        command: &[u8],
        _reply: &mut ShardReply,
    ) -> Result<(), String> {
        assert!(
            log_index > self.last_applied_index,
            "control entries apply in log order"
        );
        self.last_applied_index = log_index;
        let command: ControlCommand = serde_json::from_slice(command)
            .map_err(|e| format!("control command at index {log_index}: {e}"))?;
        match command {
            // A refused upsert changes nothing; it is not a fault of the log.
            ControlCommand::UpsertParticipants(list) => {
                if let Err(e) = self.upsert(list) {
                    tracing::warn!(log_index, error = %e, "participant upsert refused");
                }
            }
        }
        Ok(())
    }

    fn apply_noop(&mut self, log_index: u64) {
        assert!(log_index > self.last_applied_index);
        self.last_applied_index = log_index;
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = ControlSnapshot {
            participants: self.registry.iter().cloned().collect(),
            last_applied_index: self.last_applied_index,
        };
        serde_json::to_vec(&snapshot).expect("plain data")
    }

    /// A snapshot from the leader replaces the replicated state; the local
    /// view intake reads keeps being refreshed.
    fn install(&mut self, restored: Self) {
        let published = self.published.take();
        *self = restored;
        if let Some(view) = published {
            self.publish_to(view);
        }
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let snapshot: ControlSnapshot =
            serde_json::from_slice(bytes).map_err(|e| format!("control snapshot: {e}"))?;
        Ok(ControlState {
            registry: Arc::new(Registry::new(snapshot.participants)),
            last_applied_index: snapshot.last_applied_index,
            published: None,
        })
    }
}

impl Default for ControlState {
    fn default() -> Self {
        ControlState {
            registry: Arc::new(Registry::default()),
            last_applied_index: 0,
            published: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::ParticipantId;
    use std::collections::BTreeMap;

    fn p(id: u32, limit: f64) -> Participant {
        Participant {
            id: ParticipantId(id),
            counterparty_limit_usd: limit,
            balances: BTreeMap::new(),
        }
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
}
