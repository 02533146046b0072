//! The checker, run on the healed, quiet cluster:
//! 1. replicas converge: every member answers, every group has a leader,
//!    and each group's replicas report the same applied index and the same
//!    state digest (`settle status --digest`; polled until they do, since a
//!    digest is only comparable at equal applied indexes);
//! 2. every acknowledged transaction is found exactly once through every
//!    node, and its audit trail is a legal history for its status
//!    (`settle-loadgen verify`: nothing settled twice, nothing both
//!    settled and pending);
//! 3. money: every balance row explains itself (opening + deposited +
//!    credited + refunded - debited), and per currency the openings are
//!    the participants file's and the deposits are exactly the ones the
//!    nemesis made: a currency's total changes only through deposits and
//!    the cycles' legs;
//! 4. and those legs are the decided ones: every cycle is applied, its
//!    record re-costs (the solver's checker) and its recorded net flows are
//!    its settled legs at its rates (`settle cycle list --flows`), and per
//!    currency the credits minus the debits of every balance row are the
//!    sum of the cycles' net flows, to the minor unit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::cluster::{tool, Cluster};

/// Pause between convergence polls.
const CONVERGE_POLL: Duration = Duration::from_millis(500);

/// Cycles read per `settle cycle list --flows` call.
const CYCLE_PAGE: u64 = 500;

/// A restarted cluster finishes its in-progress cycle within this.
const CYCLES_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Per group, what differs between replicas (empty when converged).
fn divergence(members: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    // group -> [(node, applied, digest)]
    let mut groups: BTreeMap<u64, Vec<(u64, Value, Value, String)>> = BTreeMap::new();
    for m in members.as_array().into_iter().flatten() {
        let node = m["node_id"].as_u64().unwrap_or(0);
        if let Some(e) = m.get("error") {
            problems.push(format!("node {node} unreachable: {e}"));
            continue;
        }
        for g in m["groups"].as_array().into_iter().flatten() {
            groups
                .entry(g["group"].as_u64().unwrap_or(0))
                .or_default()
                .push((
                    node,
                    g["applied"].clone(),
                    // The state's fingerprint at the index the status tool
                    // agreed on (`kept_from` is each replica's own).
                    serde_json::json!([g["digest"]["applied"], g["digest"]["fingerprint"]]),
                    g["state"].as_str().unwrap_or("").to_string(),
                ));
        }
    }
    for (group, replicas) in &groups {
        if !replicas.iter().any(|r| r.3 == "Leader") {
            problems.push(format!("group {group}: no leader"));
        }
        let (_, applied, digest, _) = &replicas[0];
        for (node, a, d, _) in replicas {
            if a != applied || d != digest {
                problems.push(format!(
                    "group {group}: node {node} applied {a} digest {d}, node {} applied {applied} digest {digest}",
                    replicas[0].0
                ));
            }
        }
    }
    problems
}

/// Waits until the replicas converge (see the module doc); the last
/// differences if they do not within `timeout`.
pub fn converged(cluster: &Cluster, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        crate::interrupted_check()?;
        match cluster.status_json(1, true) {
            Ok(members) => {
                let expected = cluster.ids().len();
                last = divergence(&members);
                let count = members.as_array().map_or(0, Vec::len);
                if count != expected {
                    last.push(format!("{count} of {expected} members answered"));
                }
                if last.is_empty() {
                    return Ok(());
                }
            }
            Err(e) => last = vec![format!("{e:#}")],
        }
        std::thread::sleep(CONVERGE_POLL);
    }
    bail!(
        "replicas did not converge within {timeout:?}:\n  {}",
        last.join("\n  ")
    )
}

/// `settle-loadgen verify` through every node; the verification line of
/// each, or an error naming what failed.
pub fn verified_everywhere(
    cluster: &Cluster,
    acked: &Path,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    // Every node at once: each lookup waits on its node, not on the CPU.
    let mut running = Vec::new();
    for id in cluster.ids() {
        let json = dir.join(format!("verify-{id}.json"));
        let mut args = vec![
            "verify".to_string(),
            "--target".into(),
            cluster.node(id).listen.to_string(),
            "--acked".into(),
            acked.display().to_string(),
            "--json".into(),
            json.display().to_string(),
        ];
        args.extend(cluster.security());
        let child = std::process::Command::new(cluster.loadgen())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running settle-loadgen verify")?;
        running.push((id, child));
    }
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (id, child) in running {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        lines.push(format!("node {id}: {}", text.replace('\n', "\n    ")));
        if !out.status.success() {
            failures.push(format!(
                "verify through node {id}: {text} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(lines)
}

/// Per currency sums of the balance rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub balance: u128,
    pub opening: u128,
    pub deposited: u128,
    pub credited: u128,
    pub refunded: u128,
    pub debited: u128,
    pub incoming: u128,
}

fn field(row: &Value, name: &str) -> anyhow::Result<u128> {
    row[name]
        .as_u64()
        .map(u128::from)
        .ok_or_else(|| anyhow!("balance row without {name}: {row}"))
}

/// Checks every row's identity and sums the rows per currency.
pub fn totals(balances: &Value) -> anyhow::Result<BTreeMap<String, Totals>> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for row in balances["balances"]
        .as_array()
        .ok_or_else(|| anyhow!("no balances in {balances}"))?
    {
        let currency = row["currency"].as_str().unwrap_or("?").to_string();
        let r = Totals {
            balance: field(row, "balance")?,
            opening: field(row, "opening")?,
            deposited: field(row, "deposited")?,
            credited: field(row, "credited")?,
            refunded: field(row, "refunded")?,
            debited: field(row, "debited")?,
            incoming: field(row, "incoming")?,
        };
        if r.balance + r.debited != r.opening + r.deposited + r.credited + r.refunded {
            bail!("balance row does not explain itself (balance + debited != opening + deposited + credited + refunded): {row}");
        }
        let t = out.entry(currency).or_default();
        t.balance += r.balance;
        t.opening += r.opening;
        t.deposited += r.deposited;
        t.credited += r.credited;
        t.refunded += r.refunded;
        t.debited += r.debited;
        t.incoming += r.incoming;
    }
    Ok(out)
}

/// Opening balances per currency in a participants file.
pub fn openings(participants: &Value) -> BTreeMap<String, u128> {
    let mut out: BTreeMap<String, u128> = BTreeMap::new();
    for p in participants["participants"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (currency, amount) in p["balances"].as_object().into_iter().flatten() {
            *out.entry(currency.clone()).or_default() += u128::from(amount.as_u64().unwrap_or(0));
        }
    }
    out
}

/// The money check through every node: the per-currency totals (the same
/// through every node), the openings of the participants file and the
/// nemesis's own deposits (`deposits`: per currency, acknowledged;
/// `in_doubt`: sent, never acknowledged, so possibly booked).
pub fn money(
    cluster: &Cluster,
    deposits: &BTreeMap<String, u128>,
    in_doubt: &BTreeMap<String, u128>,
) -> anyhow::Result<BTreeMap<String, Totals>> {
    let file: Value = serde_json::from_slice(&std::fs::read(&cluster.participants)?)?;
    let openings = openings(&file);
    let mut first: Option<BTreeMap<String, Totals>> = None;
    for id in cluster.ids() {
        let mut args = vec![
            "balances".to_string(),
            "--json".into(),
            "--target".into(),
            cluster.node(id).listen.to_string(),
        ];
        args.extend(cluster.security());
        let text = tool(&cluster.settle(), &args)?;
        let totals = totals(&serde_json::from_str(&text)?)?;
        for (currency, t) in &totals {
            let opening = openings.get(currency).copied().unwrap_or(0);
            if t.opening != opening {
                bail!("{currency}: node {id} holds {} of opening balances, the participants file {opening}", t.opening);
            }
            let made = deposits.get(currency).copied().unwrap_or(0);
            let doubt = in_doubt.get(currency).copied().unwrap_or(0);
            if t.deposited < made || t.deposited > made + doubt {
                bail!("{currency}: node {id} holds {} deposited, the nemesis made {made} (and {doubt} in doubt)", t.deposited);
            }
        }
        match &first {
            None => first = Some(totals),
            Some(f) if *f != totals => {
                bail!("node {id}'s balances differ from node 1's: {totals:?} vs {f:?}")
            }
            Some(_) => {}
        }
    }
    first.ok_or_else(|| anyhow!("no node"))
}

/// What the decided cycles moved, read through one node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flows {
    /// Per currency, the sum of every applied cycle's net flow (minor units).
    pub net: BTreeMap<String, i128>,
    /// Cycles read, and how many of them settled something.
    pub cycles: u64,
    pub settling: u64,
}

/// Adds one `cycle list --flows` page to `flows`; the last cycle id read,
/// or an error naming a cycle that is not applied, does not re-cost, or
/// whose net flows are not its settled legs. `Ok(None)`: a cycle is still
/// between its decision and its legs (ask again).
fn add_page(page: &Value, flows: &mut Flows) -> anyhow::Result<Option<u64>> {
    let mut last = 0;
    for c in page["cycles"]
        .as_array()
        .ok_or_else(|| anyhow!("no cycles in {page}"))?
    {
        let id = c["cycle_id"].as_u64().unwrap_or(0);
        match c["status"].as_str() {
            Some("applied") => {}
            Some("decided") => return Ok(None),
            // Started and never decided: it moved no money (a restart
            // decides it again, or it stays undecided with no legs).
            Some("started") => {
                last = id;
                continue;
            }
            other => bail!("cycle {id}: unknown status {other:?}"),
        }
        if c["verified"] != Value::Bool(true) {
            bail!("cycle {id}: its record does not re-cost (the solver's checker disagrees with the recorded decision): {c}");
        }
        if c["flows_agree"] != Value::Bool(true) {
            bail!("cycle {id}: its recorded net flows are not its settled legs: {c}");
        }
        for n in c["net_flows"].as_array().into_iter().flatten() {
            let currency = n["currency"]
                .as_str()
                .ok_or_else(|| anyhow!("cycle {id}: a net flow without a currency: {n}"))?;
            let minor = n["minor"]
                .as_i64()
                .ok_or_else(|| anyhow!("cycle {id}: a net flow without an amount: {n}"))?;
            *flows.net.entry(currency.to_string()).or_default() += i128::from(minor);
        }
        flows.cycles += 1;
        if c["settled"].as_u64().unwrap_or(0) > 0 {
            flows.settling += 1;
        }
        last = id;
    }
    Ok(Some(last))
}

/// Every cycle's record through node `id`, paged (see [`add_page`]).
fn read_flows(cluster: &Cluster, id: u64) -> anyhow::Result<Option<Flows>> {
    let mut flows = Flows::default();
    let mut after = 0;
    loop {
        let mut args = vec![
            "cycle".to_string(),
            "list".into(),
            "--json".into(),
            "--flows".into(),
            "--oldest-first".into(),
            "--after".into(),
            after.to_string(),
            "--max".into(),
            CYCLE_PAGE.to_string(),
            "--target".into(),
            cluster.node(id).listen.to_string(),
        ];
        args.extend(cluster.security());
        let page: Value = serde_json::from_str(&tool(&cluster.settle(), &args)?)?;
        let next = page["next_cycle_id"].as_u64().unwrap_or(0);
        match add_page(&page, &mut flows)? {
            None => return Ok(None),
            Some(last) if last == 0 || last + 1 >= next => return Ok(Some(flows)),
            Some(last) => after = last,
        }
    }
}

/// The decided cycles' net flows (see [`add_page`]), once none is between
/// its decision and its legs.
pub fn flows(cluster: &Cluster) -> anyhow::Result<Flows> {
    let deadline = Instant::now() + CYCLES_SETTLE_TIMEOUT;
    let id = cluster.ids()[0];
    loop {
        crate::interrupted_check()?;
        if let Some(flows) = read_flows(cluster, id)? {
            return Ok(flows);
        }
        if Instant::now() > deadline {
            bail!("a cycle was still decided and not applied after {CYCLES_SETTLE_TIMEOUT:?}");
        }
        std::thread::sleep(CONVERGE_POLL);
    }
}

/// Per currency, the rows' credits minus debits must be the cycles' net
/// flows (wires are off in the nemesis: nothing is refunded or in flight).
pub fn legs_match(totals: &BTreeMap<String, Totals>, flows: &Flows) -> anyhow::Result<()> {
    for (currency, t) in totals {
        if t.refunded != 0 || t.incoming != 0 {
            bail!(
                "{currency}: {} refunded and {} incoming, but the nemesis runs without wires",
                t.refunded,
                t.incoming
            );
        }
        let moved = t.credited as i128 - t.debited as i128;
        let decided = flows.net.get(currency).copied().unwrap_or(0);
        if moved != decided {
            bail!("{currency}: the balances moved {moved} (credited {} - debited {}), the decided cycles' net flows sum to {decided}", t.credited, t.debited);
        }
    }
    for (currency, net) in &flows.net {
        if *net != 0 && !totals.contains_key(currency) {
            bail!("{currency}: the cycles moved {net}, but no balance row holds it");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replicas_at_different_positions_or_digests_diverge() {
        let same = json!([
            {"node_id": 1, "groups": [{"group": 1, "state": "Leader", "applied": 9, "digest": {"applied": 9, "fingerprint": 1, "kept_from": 1}}]},
            {"node_id": 2, "groups": [{"group": 1, "state": "Follower", "applied": 9, "digest": {"applied": 9, "fingerprint": 1, "kept_from": 5}}]},
        ]);
        assert!(
            divergence(&same).is_empty(),
            "how much of its ring a replica keeps is its own"
        );
        let behind = json!([
            {"node_id": 1, "groups": [{"group": 1, "state": "Leader", "applied": 9, "digest": {"applied": 9, "fingerprint": 1, "kept_from": 1}}]},
            {"node_id": 2, "groups": [{"group": 1, "state": "Follower", "applied": 8, "digest": {"applied": 9, "fingerprint": 1, "kept_from": 1}}]},
        ]);
        assert_eq!(divergence(&behind).len(), 1);
        let leaderless = json!([
            {"node_id": 1, "groups": [{"group": 1, "state": "Follower", "applied": 9, "digest": {"applied": 9, "fingerprint": 1, "kept_from": 1}}]},
            {"node_id": 2, "error": "timed out"},
        ]);
        assert_eq!(divergence(&leaderless).len(), 2);
    }

    #[test]
    fn a_row_that_does_not_explain_its_balance_is_refused() {
        let ok = json!({"balances": [
            {"currency": "USD", "balance": 90, "opening": 100, "deposited": 5, "credited": 0, "refunded": 0, "debited": 15, "incoming": 0},
            {"currency": "USD", "balance": 115, "opening": 100, "deposited": 0, "credited": 15, "refunded": 0, "debited": 0, "incoming": 0},
        ]});
        let t = totals(&ok).unwrap();
        assert_eq!(t["USD"].balance, 205);
        assert_eq!(t["USD"].deposited, 5);
        let bad = json!({"balances": [
            {"currency": "USD", "balance": 91, "opening": 100, "deposited": 5, "credited": 0, "refunded": 0, "debited": 15, "incoming": 0},
        ]});
        assert!(totals(&bad).is_err());
    }

    #[test]
    fn balances_must_move_by_exactly_the_decided_net_flows() {
        let page = json!({"next_cycle_id": 4, "cycles": [
            {"cycle_id": 1, "status": "applied", "settled": 2, "verified": true, "flows_agree": true,
             "net_flows": [{"currency": "USD", "minor": -300}, {"currency": "EUR", "minor": 270}]},
            {"cycle_id": 2, "status": "started", "settled": 0},
            {"cycle_id": 3, "status": "applied", "settled": 1, "verified": true, "flows_agree": true,
             "net_flows": [{"currency": "USD", "minor": 100}, {"currency": "EUR", "minor": -90}]},
        ]});
        let mut flows = Flows::default();
        assert_eq!(add_page(&page, &mut flows).unwrap(), Some(3));
        assert_eq!(flows.net["USD"], -200);
        assert_eq!(flows.net["EUR"], 180);
        assert_eq!((flows.cycles, flows.settling), (2, 2));
        let rows = |usd_credited: u64| {
            json!({"balances": [
                {"currency": "USD", "balance": 1000 + usd_credited - 300, "opening": 1000, "deposited": 0, "credited": usd_credited, "refunded": 0, "debited": 300, "incoming": 0},
                {"currency": "EUR", "balance": 1180, "opening": 1000, "deposited": 0, "credited": 270, "refunded": 0, "debited": 90, "incoming": 0},
            ]})
        };
        assert!(legs_match(&totals(&rows(100)).unwrap(), &flows).is_ok());
        // One minor unit credited that no decision explains.
        let err = legs_match(&totals(&rows(101)).unwrap(), &flows).unwrap_err();
        assert!(err.to_string().contains("USD"), "{err}");
        // A cycle whose record does not check out, or is still being applied.
        let mut bad = page.clone();
        bad["cycles"][0]["flows_agree"] = json!(false);
        assert!(add_page(&bad, &mut Flows::default()).is_err());
        bad["cycles"][0]["status"] = json!("decided");
        assert_eq!(add_page(&bad, &mut Flows::default()).unwrap(), None);
    }
}
