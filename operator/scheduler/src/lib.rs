//! Scheduling for the local engine: which node each instance runs on.
//!
//! [`schedule`] is a pure function of the nodes, what each service asks for, and where
//! instances run now. It follows Docker Swarm's rules (domain notes §6): a new instance
//! goes only to an `active`, reachable node that matches the service's constraints and
//! has unreserved capacity for its request; instances on `drain` nodes, on nodes that
//! are down, or on nodes that no longer match move elsewhere; instances on `pause`
//! nodes stay; making a node active again moves nothing back. Among eligible nodes it
//! spreads a service's instances (fewest of that service first, then least reserved).
//! What cannot be placed is reported with the reason, e.g.
//! `insufficient memory: 2 nodes have < 512Mi free`.

use std::collections::{BTreeMap, BTreeSet};

use drover_model::cluster::{Availability, NodeRole};
use drover_model::placement::Constraint;
use drover_model::service::Mode;
use drover_model::{Cpu, Memory};
use serde::Serialize;

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub name: String,
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Its agent's heartbeats arrive; a node that is down runs nothing.
    pub up: bool,
}

/// What one service asks for.
#[derive(Debug, Clone)]
pub struct Demand {
    pub service: String,
    pub mode: Mode,
    /// Instances for `replicated` mode.
    pub replicas: u32,
    /// Reserved per instance.
    pub cpu: Cpu,
    pub memory: Memory,
    pub constraints: Vec<Constraint>,
    /// Node labels its instances spread over, in order (placement preferences).
    pub spread: Vec<String>,
}

/// One instance: which service, which slot (replica number, or node name for global
/// services) and which node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Placement {
    pub service: String,
    pub slot: String,
    pub node: String,
}

/// A slot no node can take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unschedulable {
    pub service: String,
    pub slot: String,
    pub reason: String,
}

/// The outcome: what stays, what starts where, what stops, what cannot run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Schedule {
    pub keep: Vec<Placement>,
    pub start: Vec<Placement>,
    pub stop: Vec<Placement>,
    pub unschedulable: Vec<Unschedulable>,
}

/// Reservations per node while scheduling.
struct Ledger<'n> {
    nodes: &'n [NodeState],
    cpu: Vec<u64>,
    memory: Vec<u64>,
    /// Instances per (node index, service).
    count: BTreeMap<(usize, String), u32>,
}

impl<'n> Ledger<'n> {
    fn new(nodes: &'n [NodeState]) -> Self {
        Ledger {
            nodes,
            cpu: vec![0; nodes.len()],
            memory: vec![0; nodes.len()],
            count: BTreeMap::new(),
        }
    }

    fn reserve(&mut self, node: usize, demand: &Demand) {
        self.cpu[node] += demand.cpu.millis();
        self.memory[node] += demand.memory.bytes();
        *self
            .count
            .entry((node, demand.service.clone()))
            .or_default() += 1;
    }

    fn fits(&self, node: usize, demand: &Demand) -> (bool, bool) {
        let n = &self.nodes[node];
        (
            self.cpu[node] + demand.cpu.millis() <= n.cpu.millis(),
            self.memory[node] + demand.memory.bytes() <= n.memory.bytes(),
        )
    }

    fn matches(&self, node: usize, demand: &Demand) -> bool {
        let n = &self.nodes[node];
        demand
            .constraints
            .iter()
            .all(|c| c.matches(&n.name, n.role, &n.labels))
    }

    /// May an existing instance stay on this node?
    fn can_stay(&self, node: usize, demand: &Demand) -> bool {
        let n = &self.nodes[node];
        n.up && n.availability != Availability::Drain && self.matches(node, demand)
    }

    /// The best node for a new instance, or why there is none.
    fn pick(&self, demand: &Demand, exclude: &BTreeSet<usize>) -> Result<usize, String> {
        let mut candidates = Vec::new();
        let (mut unavailable, mut unmatched, mut short_cpu, mut short_memory) = (0, 0, 0, 0);
        for (i, n) in self.nodes.iter().enumerate() {
            if exclude.contains(&i) {
                continue;
            }
            if !n.up || n.availability != Availability::Active {
                unavailable += 1;
                continue;
            }
            if !self.matches(i, demand) {
                unmatched += 1;
                continue;
            }
            match self.fits(i, demand) {
                (true, true) => candidates.push(i),
                (cpu_ok, memory_ok) => {
                    short_cpu += usize::from(!cpu_ok);
                    short_memory += usize::from(!memory_ok);
                }
            }
        }
        // Spread: fewest instances of this service under each preferred label's value
        // (Swarm's placement preferences), then on the node, then the least reserved
        // memory share, then the name — so the choice never depends on anything else.
        let count = |i: usize| {
            self.count
                .get(&(i, demand.service.clone()))
                .copied()
                .unwrap_or(0)
        };
        let grouped = |i: usize| -> Vec<u32> {
            demand
                .spread
                .iter()
                .map(|key| {
                    let value = self.nodes[i].labels.get(key);
                    (0..self.nodes.len())
                        .filter(|&j| self.nodes[j].labels.get(key) == value)
                        .map(count)
                        .sum()
                })
                .collect()
        };
        candidates
            .into_iter()
            .min_by(|&a, &b| {
                let share =
                    |i: usize| self.memory[i] as f64 / self.nodes[i].memory.bytes().max(1) as f64;
                grouped(a)
                    .cmp(&grouped(b))
                    .then(count(a).cmp(&count(b)))
                    .then(share(a).total_cmp(&share(b)))
                    .then(self.nodes[a].name.cmp(&self.nodes[b].name))
            })
            .ok_or_else(|| {
                let plural = |n: usize| {
                    if n == 1 {
                        "1 node has".to_owned()
                    } else {
                        format!("{n} nodes have")
                    }
                };
                if short_memory > 0 && short_memory >= short_cpu {
                    format!(
                        "insufficient memory: {} < {} free",
                        plural(short_memory),
                        demand.memory
                    )
                } else if short_cpu > 0 {
                    format!(
                        "insufficient cpu: {} < {} free",
                        plural(short_cpu),
                        demand.cpu
                    )
                } else if unmatched > 0 {
                    let wanted: Vec<String> = demand.constraints.iter().map(describe).collect();
                    format!("no node matches {}", wanted.join(" and "))
                } else if unavailable > 0 {
                    format!("no active node: {unavailable} paused, drained or down")
                } else {
                    "the cluster has no nodes".to_owned()
                }
            })
    }
}

fn describe(c: &Constraint) -> String {
    use drover_model::placement::Subject;
    let subject = match &c.subject {
        Subject::Name => "node.name".to_owned(),
        Subject::Role => "node.role".to_owned(),
        Subject::Label(k) => format!("node.labels.{k}"),
    };
    format!(
        "{subject} {} {}",
        if c.equals { "==" } else { "!=" },
        c.value
    )
}

/// Where every instance should run, given where they run now.
pub fn schedule(nodes: &[NodeState], demands: &[Demand], current: &[Placement]) -> Schedule {
    let mut ledger = Ledger::new(nodes);
    let mut out = Schedule::default();
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let wanted: BTreeSet<&str> = demands.iter().map(|d| d.service.as_str()).collect();
    // Instances of services no longer asked for stop.
    out.stop.extend(
        current
            .iter()
            .filter(|p| !wanted.contains(p.service.as_str()))
            .cloned(),
    );

    for demand in demands {
        let mine: Vec<&Placement> = current
            .iter()
            .filter(|p| p.service == demand.service)
            .collect();
        match demand.mode {
            Mode::Replicated => {
                let slots: BTreeSet<String> =
                    (1..=demand.replicas).map(|i| i.to_string()).collect();
                let mut filled = BTreeSet::new();
                // Keep valid instances of wanted slots first, so capacity goes to them.
                for p in &mine {
                    let node = index.get(p.node.as_str()).copied();
                    match node {
                        Some(i)
                            if slots.contains(&p.slot)
                                && !filled.contains(&p.slot)
                                && ledger.can_stay(i, demand) =>
                        {
                            ledger.reserve(i, demand);
                            filled.insert(p.slot.clone());
                            out.keep.push((*p).clone());
                        }
                        _ => out.stop.push((*p).clone()),
                    }
                }
                for slot in slots.difference(&filled) {
                    place(
                        &mut ledger,
                        &mut out,
                        demand,
                        slot.clone(),
                        &BTreeSet::new(),
                    );
                }
            }
            Mode::Global => {
                // One instance on every node that may hold it: existing ones stay where
                // they may (a paused node keeps its instance); active nodes get one.
                let mut covered = BTreeSet::new();
                for p in &mine {
                    match index.get(p.node.as_str()).copied() {
                        Some(i) if !covered.contains(&i) && ledger.can_stay(i, demand) => {
                            ledger.reserve(i, demand);
                            covered.insert(i);
                            out.keep.push((*p).clone());
                        }
                        _ => out.stop.push((*p).clone()),
                    }
                }
                for (i, n) in nodes.iter().enumerate() {
                    if covered.contains(&i)
                        || !n.up
                        || n.availability != Availability::Active
                        || !ledger.matches(i, demand)
                    {
                        continue;
                    }
                    // Only this node will do: exclude every other.
                    let others: BTreeSet<usize> = (0..nodes.len()).filter(|&j| j != i).collect();
                    place(&mut ledger, &mut out, demand, n.name.clone(), &others);
                }
            }
        }
    }
    out.keep.sort();
    out.start.sort();
    out.stop.sort();
    out
}

fn place(
    ledger: &mut Ledger<'_>,
    out: &mut Schedule,
    demand: &Demand,
    slot: String,
    exclude: &BTreeSet<usize>,
) {
    match ledger.pick(demand, exclude) {
        Ok(i) => {
            ledger.reserve(i, demand);
            out.start.push(Placement {
                service: demand.service.clone(),
                slot,
                node: ledger.nodes[i].name.clone(),
            });
        }
        Err(reason) => out.unschedulable.push(Unschedulable {
            service: demand.service.clone(),
            slot,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests;
