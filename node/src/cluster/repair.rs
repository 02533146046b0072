//! Self-repair of a replica whose group data is damaged.
//!
//! A replica that finds its group's files damaged at start (a corrupt or
//! truncated log segment, a log that ends below its committed index, a
//! damaged `raft.meta`, snapshot or state-store file: see
//! [`GroupError::is_damage`]) and has peers does not stop the node: it
//! moves the group's whole directory aside to `<data-dir>/quarantine/`
//! (nothing is deleted: an operator can still look at it), opens the group
//! empty and lets the group's leader rebuild it from a snapshot and the log,
//! as for a wiped node. Until it has caught up the replica refuses to vote
//! (it no longer knows what it voted for), so it cannot help elect a leader
//! that lacks committed entries. It says so in its log and counts it
//! (`settle_replicas_repaired_total`). A node without peers has nobody to
//! rebuild from and refuses to start, naming the damage.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::raft::GroupError;

/// Where a node keeps the group directories it quarantined.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Why a damaged group could not be quarantined.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("quarantining {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a group that failed to open with `error` should be rebuilt from
/// its peers (damage, and a cluster to rebuild from).
pub fn repairable(error: &GroupError, members: usize) -> bool {
    members > 1 && error.is_damage()
}

/// Moves `group_dir` to `<its parent>/quarantine/<its name>-<unix seconds>`
/// (a suffix `-2`, `-3`… if that exists) and leaves an empty `group_dir`.
/// Returns where the damaged files now are.
pub fn quarantine(group_dir: &Path) -> Result<PathBuf, RepairError> {
    let parent = group_dir.parent().unwrap_or(Path::new("."));
    let name = group_dir
        .file_name()
        .map_or_else(|| "group".into(), |n| n.to_string_lossy().into_owned());
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = parent.join(QUARANTINE_DIR);
    let mut to = dir.join(format!("{name}-{seconds}"));
    let mut n = 2;
    while to.exists() {
        to = dir.join(format!("{name}-{seconds}-{n}"));
        n += 1;
    }
    let moved = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::rename(group_dir, &to))
        .and_then(|()| std::fs::create_dir_all(group_dir));
    moved.map_err(|source| RepairError::Move {
        from: group_dir.to_path_buf(),
        to: to.clone(),
        source,
    })?;
    assert!(to.exists() && group_dir.exists());
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_moves_everything_aside_and_leaves_an_empty_group_dir() {
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("group-1-usd");
        std::fs::create_dir_all(group.join("log")).unwrap();
        std::fs::write(group.join("log/00000000000000000001.seg"), b"damaged").unwrap();
        std::fs::write(group.join("raft.meta"), b"meta").unwrap();

        let first = quarantine(&group).unwrap();
        assert!(first.starts_with(root.path().join(QUARANTINE_DIR)));
        assert_eq!(
            std::fs::read(first.join("log/00000000000000000001.seg")).unwrap(),
            b"damaged",
            "nothing deleted"
        );
        assert!(std::fs::read_dir(&group).unwrap().next().is_none(), "empty");

        std::fs::write(group.join("raft.meta"), b"again").unwrap();
        let second = quarantine(&group).unwrap();
        assert_ne!(first, second, "a second quarantine keeps the first");
        assert_eq!(std::fs::read(second.join("raft.meta")).unwrap(), b"again");
    }
}
