//! The fault plan: a deterministic timeline drawn from a seed. The same
//! seed, node count, duration and fault set give the same plan; which node
//! "the leader of group g" is gets resolved when the step runs (and is
//! printed in the timeline), so a replay follows the same plan against
//! whatever leaders the cluster has then.

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Groups a fault may aim at through their leader: 0 is the control group,
/// 1..=4 the default shards (USD, EUR, GBP, JPY).
pub const GROUPS: u16 = 5;

/// No fault starts before the load has run this long (a baseline for the
/// throughput comparison).
pub const FIRST_FAULT_AT: Duration = Duration::from_secs(5);

/// The last fault heals at least this long before the load ends, so the
/// run ends on a healthy cluster.
pub const QUIET_TAIL: Duration = Duration::from_secs(10);

/// A fault holds for this long at least and at most.
pub const HOLD_MIN: Duration = Duration::from_secs(2);
pub const HOLD_MAX: Duration = Duration::from_secs(8);

/// Pause after a fault heals before the next one starts (beyond waiting for
/// every node to serve again).
pub const GAP_MIN: Duration = Duration::from_secs(2);
pub const GAP_MAX: Duration = Duration::from_secs(6);

/// Most steps a plan holds, whatever the duration (a day at the shortest
/// hold and gap): the timeline stays bounded.
pub const STEPS_MAX: usize = 20_000;

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// A node by id (1-based).
    Node(u64),
    /// Whoever leads this group when the step runs.
    LeaderOf(u16),
}

impl fmt::Display for Victim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Victim::Node(id) => write!(f, "node {id}"),
            Victim::LeaderOf(g) => write!(f, "leader of group {g}"),
        }
    }
}

/// How the network splits (nodes in network namespaces only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// The victim loses every peer link.
    Isolate(Victim),
    /// Only the link between the victim and the leader of a group is cut:
    /// both still reach the others (a bridge through them).
    CutFromLeader { node: u64, group: u16 },
    /// Two sides, every link between them cut (a minority and a majority).
    Halves(Vec<u64>),
    /// Five nodes: {a, b} | c | {d, e}, where only c sees both sides.
    Bridge { middle: u64 },
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, then start again after the hold.
    Kill(Victim),
    /// SIGSTOP, SIGCONT after the hold.
    Stop(Victim),
    /// kill -9, delete the data directory, start again after the hold (it
    /// rejoins by snapshot).
    Wipe(Victim),
    /// kill -9, flip one byte in the written part of one shard log's
    /// segment; after the hold the node must refuse to start, naming the
    /// damage; then its data directory is wiped and it rejoins.
    FlipByte(Victim),
    /// Cut peer links (namespaces only).
    Partition(Split),
    /// Delay, loss and reordering on a node's link (`tc netem`; namespaces
    /// and a kernel with netem only).
    Netem(Victim),
    /// Fill the node's file system to the last block (its data directory
    /// is on a small loop-mounted one); free it after the hold.
    DiskFull(Victim),
}

/// Fault kinds, as the command line and the summary name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Kill,
    KillLeader,
    Stop,
    Wipe,
    FlipByte,
    Partition,
    Netem,
    DiskFull,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Kill,
        Kind::KillLeader,
        Kind::Stop,
        Kind::Wipe,
        Kind::FlipByte,
        Kind::Partition,
        Kind::Netem,
        Kind::DiskFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::KillLeader => "kill-leader",
            Kind::Stop => "stop",
            Kind::Wipe => "wipe",
            Kind::FlipByte => "flip-byte",
            Kind::Partition => "partition",
            Kind::Netem => "netem",
            Kind::DiskFull => "disk-full",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == text)
    }

    /// Needs the nodes in network namespaces.
    pub fn needs_namespaces(self) -> bool {
        matches!(self, Kind::Partition | Kind::Netem)
    }

    /// How often it is drawn relative to the others: leaders are killed
    /// more often than any one node (they carry the most state in flight).
    fn weight(self) -> u32 {
        match self {
            Kind::KillLeader => 4,
            Kind::Kill | Kind::Stop | Kind::Partition => 3,
            Kind::Wipe | Kind::FlipByte | Kind::Netem | Kind::DiskFull => 1,
        }
    }
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill(Victim::LeaderOf(_)) => Kind::KillLeader,
            Fault::Kill(Victim::Node(_)) => Kind::Kill,
            Fault::Stop(_) => Kind::Stop,
            Fault::Wipe(_) => Kind::Wipe,
            Fault::FlipByte(_) => Kind::FlipByte,
            Fault::Partition(_) => Kind::Partition,
            Fault::Netem(_) => Kind::Netem,
            Fault::DiskFull(_) => Kind::DiskFull,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(v) => write!(f, "kill -9 {v}, restart"),
            Fault::Stop(v) => write!(f, "SIGSTOP {v}, SIGCONT"),
            Fault::Wipe(v) => write!(f, "wipe {v}'s data directory, restart"),
            Fault::FlipByte(v) => write!(f, "flip a byte in a log segment of {v}"),
            Fault::Partition(Split::Isolate(v)) => write!(f, "partition: isolate {v}"),
            Fault::Partition(Split::CutFromLeader { node, group }) => {
                write!(
                    f,
                    "partition: cut node {node} from the leader of group {group}"
                )
            }
            Fault::Partition(Split::Halves(side)) => {
                write!(f, "partition: {side:?} | the others")
            }
            Fault::Partition(Split::Bridge { middle }) => {
                write!(f, "partition: bridge through node {middle}")
            }
            Fault::Netem(v) => write!(f, "netem delay/loss/reorder on {v}'s link"),
            Fault::DiskFull(v) => write!(f, "fill {v}'s file system, then free it"),
        }
    }
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Earliest start, from the start of the load.
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

/// What a plan is drawn from.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub seed: u64,
    pub nodes: u64,
    pub duration: Duration,
    pub kinds: Vec<Kind>,
}

fn between(rng: &mut ChaCha8Rng, min: Duration, max: Duration) -> Duration {
    let ms = rng.gen_range(min.as_millis() as u64..=max.as_millis() as u64);
    Duration::from_millis(ms)
}

fn victim(rng: &mut ChaCha8Rng, nodes: u64) -> Victim {
    // Half of the faults aimed at "a node" hit a leader.
    if rng.gen_bool(0.5) {
        Victim::LeaderOf(rng.gen_range(0..GROUPS))
    } else {
        Victim::Node(rng.gen_range(1..=nodes))
    }
}

fn split(rng: &mut ChaCha8Rng, nodes: u64) -> Split {
    let ids: Vec<u64> = (1..=nodes).collect();
    let choices = if nodes >= 5 { 4 } else { 3 };
    match rng.gen_range(0..choices) {
        0 => Split::Isolate(victim(rng, nodes)),
        1 => Split::CutFromLeader {
            node: rng.gen_range(1..=nodes),
            group: rng.gen_range(0..GROUPS),
        },
        2 => {
            let minority = ((nodes - 1) / 2) as usize;
            let mut side: Vec<u64> = ids.choose_multiple(rng, minority).copied().collect();
            side.sort_unstable();
            Split::Halves(side)
        }
        _ => Split::Bridge {
            middle: rng.gen_range(1..=nodes),
        },
    }
}

/// The plan for `input`: deterministic for its values.
pub fn plan(input: &PlanInput) -> Vec<Step> {
    assert!(!input.kinds.is_empty(), "at least one fault kind");
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed ^ 0x6e65_6d65_7369_7321);
    let weights: Vec<(Kind, u32)> = input.kinds.iter().map(|&k| (k, k.weight())).collect();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let mut steps = Vec::new();
    let mut at = FIRST_FAULT_AT;
    while steps.len() < STEPS_MAX {
        let hold = between(&mut rng, HOLD_MIN, HOLD_MAX);
        if at + hold + QUIET_TAIL > input.duration {
            break;
        }
        let mut pick = rng.gen_range(0..total);
        let kind = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(k, _)| *k)
            .expect("pick < total");
        let node = Victim::Node(rng.gen_range(1..=input.nodes));
        let fault = match kind {
            Kind::Kill => Fault::Kill(node),
            Kind::KillLeader => Fault::Kill(Victim::LeaderOf(rng.gen_range(0..GROUPS))),
            Kind::Stop => Fault::Stop(victim(&mut rng, input.nodes)),
            Kind::Wipe => Fault::Wipe(node),
            Kind::FlipByte => Fault::FlipByte(node),
            Kind::Partition => Fault::Partition(split(&mut rng, input.nodes)),
            Kind::Netem => Fault::Netem(victim(&mut rng, input.nodes)),
            Kind::DiskFull => Fault::DiskFull(node),
        };
        steps.push(Step { at, hold, fault });
        at += hold + between(&mut rng, GAP_MIN, GAP_MAX);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(seed: u64, kinds: Vec<Kind>) -> PlanInput {
        PlanInput {
            seed,
            nodes: 3,
            duration: Duration::from_secs(120),
            kinds,
        }
    }

    #[test]
    fn a_seed_gives_one_plan_and_another_seed_another() {
        let all = Kind::ALL.to_vec();
        assert_eq!(plan(&input(7, all.clone())), plan(&input(7, all.clone())));
        assert_ne!(plan(&input(7, all.clone())), plan(&input(8, all)));
    }

    #[test]
    fn steps_stay_inside_the_run_in_order_and_of_the_asked_kinds() {
        let kinds = vec![Kind::Kill, Kind::Stop, Kind::Wipe];
        for seed in 0..50 {
            let steps = plan(&input(seed, kinds.clone()));
            assert!(!steps.is_empty());
            let mut last_end = Duration::ZERO;
            for s in &steps {
                assert!(s.at >= FIRST_FAULT_AT && s.at >= last_end);
                assert!(s.hold >= HOLD_MIN && s.hold <= HOLD_MAX);
                assert!(s.at + s.hold + QUIET_TAIL <= Duration::from_secs(120));
                assert!(kinds.contains(&s.fault.kind()));
                last_end = s.at + s.hold;
            }
        }
    }

    #[test]
    fn a_minority_side_never_holds_a_majority() {
        for seed in 0..200 {
            let mut i = input(seed, vec![Kind::Partition]);
            i.nodes = 5;
            for s in plan(&i) {
                if let Fault::Partition(Split::Halves(side)) = s.fault {
                    assert_eq!(side.len(), 2);
                }
            }
        }
    }
}
