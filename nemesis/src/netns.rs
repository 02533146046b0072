//! Network namespaces for partitions and `tc netem`: one namespace per
//! node, a veth pair from each to a bridge in the root namespace (the
//! nemesis, the load generator and the tools reach every node through it).
//!
//! A partition is a pair of blackhole routes (`ip route add blackhole`):
//! packets from one node to the other are dropped in the sender's
//! namespace, no firewall needed. Open connections stall (as on a real
//! cut cable) instead of being reset. Everything is removed on drop, which
//! also runs on Ctrl-C (the main loop returns) and on a panic (unwinding).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::bail;

use crate::exec::run;

/// The netem settings of a `Fault::Netem`: enough delay, jitter, loss and
/// reordering to stretch heartbeats and force retransmits, not to cut.
pub const NETEM_ARGS: [&str; 8] = [
    "delay", "40ms", "20ms", "loss", "5%", "reorder", "25%", "50%",
];

/// Without netem (a kernel built without `CONFIG_NET_SCH_NETEM`), the same
/// fault as what the kernel has: random loss of this share of the node's
/// outgoing packets (nftables, `numgen random`)...
pub const LOSSY_DROP_PERCENT: u32 = 5;

/// ...and a token bucket on its link (`tbf`): a bandwidth cap whose queue
/// delays bursts by up to its latency and drops beyond it. No jitter on
/// quiet links and no reordering: those need netem.
pub const LOSSY_TBF_ARGS: [&str; 6] = ["rate", "20mbit", "burst", "64kb", "latency", "50ms"];

/// The nftables table the lossy fault adds in a node's namespace.
const LOSSY_TABLE: &str = "nemesis_loss";

/// How a `Fault::Netem` is made on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFaults {
    /// `tc netem`: delay, jitter, loss, reordering.
    Netem,
    /// nftables random loss and a `tbf` queue: loss and queueing delay.
    LossAndQueue,
    /// Neither.
    None,
}

/// The namespaces of one run.
pub struct Netns {
    prefix: String,
    subnet: u8,
    nodes: u64,
    bridge: String,
    /// Pairs (from, to) with a blackhole route in `from`'s namespace.
    cut: BTreeSet<(u64, u64)>,
    /// Nodes with a netem (or lossy) fault on their link.
    netem: BTreeSet<u64>,
    /// How this machine makes a bad link.
    pub link_faults: LinkFaults,
    created: Vec<String>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// `nft ARGS` inside namespace `ns`.
fn nft(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    ip(&[&["netns", "exec", ns, "nft"][..], args].concat())
}

/// A root qdisc `kind ARGS` on `dev` in namespace `ns`.
fn qdisc_add(ns: &str, dev: &str, kind: &str, args: &[&str]) -> anyhow::Result<()> {
    let head = ["-n", ns, "qdisc", "add", "dev", dev, "root", kind];
    run("tc", &[&head[..], args].concat())
}

/// Removes the root qdisc of `dev` in namespace `ns`.
fn qdisc_del(ns: &str, dev: &str) -> anyhow::Result<()> {
    run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"])
}

impl Netns {
    /// Creates a namespace per node (1..=nodes), their veth pairs and the
    /// bridge. Fails (and removes what it made) if the machine does not
    /// allow it (not root, no `ip`).
    pub fn create(nodes: u64) -> anyhow::Result<Netns> {
        let pid = std::process::id();
        // Names are at most 15 bytes (IFNAMSIZ - 1).
        let tag = pid % 100_000;
        let mut ns = Netns {
            prefix: format!("snm{tag}"),
            subnet: (pid % 200 + 20) as u8,
            nodes,
            bridge: format!("snm{tag}br"),
            cut: BTreeSet::new(),
            netem: BTreeSet::new(),
            link_faults: LinkFaults::None,
            created: Vec::new(),
        };
        ns.build()?;
        ns.link_faults = if ns.probe_netem() {
            LinkFaults::Netem
        } else if ns.probe_lossy() {
            LinkFaults::LossAndQueue
        } else {
            LinkFaults::None
        };
        Ok(ns)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let bridge = self.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.created.push(format!("link:{bridge}"));
        let gateway = format!("{}/24", self.gateway());
        ip(&["addr", "add", &gateway, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for id in 1..=self.nodes {
            let name = self.name(id);
            ip(&["netns", "add", &name])?;
            self.created.push(format!("netns:{name}"));
            let host = format!("{}h{id}", self.prefix);
            let inner = format!("{}n{id}", self.prefix);
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            self.created.push(format!("link:{host}"));
            ip(&["link", "set", &inner, "netns", &name])?;
            ip(&["link", "set", &host, "master", &bridge])?;
            ip(&["link", "set", &host, "up"])?;
            let addr = format!("{}/24", self.addr(id));
            ip(&["-n", &name, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &name, "link", "set", &inner, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Tries a netem qdisc on the first namespace's loopback (harmless).
    fn probe_netem(&self) -> bool {
        let name = self.name(1);
        let ok = ip(&["netns", "exec", &name, "true"]).is_ok()
            && qdisc_add(&name, "lo", "netem", &["delay", "1ms"]).is_ok();
        if ok {
            let _ = qdisc_del(&name, "lo");
        }
        ok
    }

    /// Tries the lossy fault's parts on the first namespace's loopback
    /// (an nftables table and a tbf qdisc), and removes them.
    fn probe_lossy(&self) -> bool {
        let name = self.name(1);
        let table = nft(&name, &["add", "table", "inet", LOSSY_TABLE]).is_ok();
        if table {
            let _ = nft(&name, &["delete", "table", "inet", LOSSY_TABLE]);
        }
        let tbf = table && qdisc_add(&name, "lo", "tbf", &LOSSY_TBF_ARGS).is_ok();
        if tbf {
            let _ = qdisc_del(&name, "lo");
        }
        tbf
    }

    /// The namespace of node `id`.
    pub fn name(&self, id: u64) -> String {
        format!("{}-{id}", self.prefix)
    }

    /// The address of node `id` (in its namespace, reachable from the root
    /// namespace through the bridge).
    pub fn addr(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 10 + id as u8)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 1)
    }

    fn inner_link(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn cut(&mut self, a: u64, b: u64) -> anyhow::Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            if self.cut.insert((from, to)) {
                let route = format!("{}/32", self.addr(to));
                ip(&["-n", &self.name(from), "route", "add", "blackhole", &route])?;
            }
        }
        Ok(())
    }

    /// Delay, loss and reordering on node `id`'s link (netem), or loss and
    /// queueing delay without netem ([`LinkFaults::LossAndQueue`]).
    pub fn netem(&mut self, id: u64) -> anyhow::Result<()> {
        let name = self.name(id);
        let link = self.inner_link(id);
        match self.link_faults {
            LinkFaults::None => bail!("this kernel has neither netem nor nftables and tbf"),
            LinkFaults::Netem => qdisc_add(&name, &link, "netem", &NETEM_ARGS)?,
            LinkFaults::LossAndQueue => {
                nft(&name, &["add", "table", "inet", LOSSY_TABLE])?;
                // From here on `heal` has a table to remove, even if a
                // later step fails.
                self.netem.insert(id);
                nft(
                    &name,
                    &[
                        "add",
                        "chain",
                        "inet",
                        LOSSY_TABLE,
                        "out",
                        "{ type filter hook output priority 0; }",
                    ],
                )?;
                let share = LOSSY_DROP_PERCENT.to_string();
                nft(
                    &name,
                    &[
                        "add",
                        "rule",
                        "inet",
                        LOSSY_TABLE,
                        "out",
                        "numgen",
                        "random",
                        "mod",
                        "100",
                        "<",
                        &share,
                        "drop",
                    ],
                )?;
                qdisc_add(&name, &link, "tbf", &LOSSY_TBF_ARGS)?;
            }
        }
        self.netem.insert(id);
        Ok(())
    }

    /// Removes every cut and every netem qdisc.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for (from, to) in std::mem::take(&mut self.cut) {
            let route = format!("{}/32", self.addr(to));
            if let Err(e) = ip(&["-n", &self.name(from), "route", "del", "blackhole", &route]) {
                first_error.get_or_insert(e);
            }
        }
        for id in std::mem::take(&mut self.netem) {
            let (name, link) = (self.name(id), self.inner_link(id));
            // The qdisc may not be there (the lossy fault failed half-way).
            let qdisc = qdisc_del(&name, &link);
            let removed = if self.link_faults == LinkFaults::Netem {
                qdisc
            } else {
                nft(&name, &["delete", "table", "inet", LOSSY_TABLE])
            };
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it
        // the pair; the bridge goes last.
        for item in self.created.iter().rev() {
            let result = match item.split_once(':') {
                Some(("netns", name)) => ip(&["netns", "del", name]),
                Some(("link", name)) => {
                    // Gone already with its namespace's end: fine.
                    if ip(&["link", "show", name]).is_ok() {
                        ip(&["link", "del", name])
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                eprintln!("nemesis: cleaning up {item}: {e:#}");
            }
        }
    }
}
