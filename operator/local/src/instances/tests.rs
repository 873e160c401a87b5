//! Instance placement for the example repo, one behaviour per test.

use std::path::Path;

use std::collections::BTreeSet;

use super::*;
use drover_model::cluster::{Availability, NodeRole};

fn paths() -> Paths<'static> {
    Paths {
        drover: Path::new("/bin/drover"),
        volumes: Path::new("/state/volumes"),
    }
}

fn example() -> Live {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
    let loaded = drover_load::load_dir(&root).expect("examples/repo reads");
    Live::from_state(&drover_diff::normalize(&loaded.repo))
}

fn nodes(live: &Live, down: &[&str]) -> BTreeMap<String, Vec<NodeState>> {
    live.local_clusters()
        .map(|(name, cluster)| {
            let nodes = cluster
                .local
                .as_ref()
                .unwrap()
                .nodes
                .iter()
                .map(|n| NodeState {
                    name: n.name.clone(),
                    role: n.role,
                    availability: n.availability,
                    labels: n.labels.clone(),
                    cpu: n.capacity.cpu,
                    memory: n.capacity.memory,
                    up: !down.contains(&n.name.as_str()),
                });
            (name.clone(), nodes.collect())
        })
        .collect()
}

const RANGE: PortRange = PortRange {
    first: 20000,
    last: 20999,
    start: 20000,
};

fn place(
    live: &Live,
    nodes: &BTreeMap<String, Vec<NodeState>>,
    current: &[InstanceRecord],
) -> Instances {
    instances(live, nodes, current, &paths(), RANGE, &|_| true)
}

fn records(i: &Instances) -> Vec<InstanceRecord> {
    i.wanted.iter().map(|w| w.record.clone()).collect()
}

fn placed<'a>(i: &'a Instances, env: &str, service: &str) -> Vec<(&'a str, &'a str)> {
    i.wanted
        .iter()
        .filter(|w| w.record.environment == env && w.record.service == service)
        .map(|w| (w.record.slot.as_str(), w.record.node.as_str()))
        .collect()
}

#[test]
fn every_example_service_is_placed_and_replicas_spread() {
    let live = example();
    let i = place(&live, &nodes(&live, &[]), &[]);
    assert!(i.blocked.is_empty(), "{:?}", i.blocked);
    assert_eq!(
        placed(&i, "staging", "web"),
        [("1", "staging-1"), ("2", "staging-2")]
    );
    assert!(i.wanted.iter().any(|w| w.record.id == "production.api.1"));
    assert!(i.wanted.iter().all(|w| w.spec.argv[0] == "/bin/drover"));
}

#[test]
fn instances_of_a_down_node_move_and_keep_their_ids() {
    let live = example();
    let before = place(&live, &nodes(&live, &[]), &[]);
    let after = place(&live, &nodes(&live, &["staging-2"]), &records(&before));
    assert_eq!(
        placed(&after, "staging", "web"),
        [("1", "staging-1"), ("2", "staging-1")]
    );
    assert!(after.wanted.iter().all(|w| w.record.node != "staging-2"));
}

#[test]
fn a_changed_service_keeps_its_slots_under_a_new_hash() {
    let mut live = example();
    let before = place(&live, &nodes(&live, &[]), &[]);
    let web = live
        .services
        .get_mut(&("staging".to_owned(), "web".to_owned()))
        .unwrap();
    web.version = Some("v9".into());
    let after = place(&live, &nodes(&live, &[]), &records(&before));
    let hash = |i: &Instances, id: &str| {
        i.wanted
            .iter()
            .find(|w| w.record.id == id)
            .map(|w| w.record.spec_hash.clone())
    };
    assert_ne!(
        hash(&before, "staging.web.1"),
        hash(&after, "staging.web.1")
    );
    assert_eq!(
        hash(&before, "staging.api.1"),
        hash(&after, "staging.api.1")
    );
    assert_eq!(
        placed(&after, "staging", "web"),
        placed(&before, "staging", "web")
    );
}

#[test]
fn a_drained_node_empties_and_the_reason_is_given_when_nothing_fits() {
    let live = example();
    let mut n = nodes(&live, &[]);
    for node in n.get_mut("local-staging").unwrap() {
        node.availability = Availability::Drain;
        node.role = NodeRole::Worker;
    }
    let i = place(&live, &n, &[]);
    assert!(placed(&i, "staging", "web").is_empty());
    let reasons: Vec<&str> = i
        .blocked
        .iter()
        .filter(|b| b.environment == "staging")
        .map(|b| b.reason.as_str())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("no active node")),
        "{reasons:?}"
    );
}

#[test]
fn every_instance_gets_its_own_ports_and_keeps_them_until_its_spec_changes() {
    let mut live = example();
    let n = nodes(&live, &[]);
    let busy = |port: u16| port != 20001;
    let before = instances(&live, &n, &[], &paths(), RANGE, &busy);
    let all: Vec<u16> = before
        .wanted
        .iter()
        .flat_map(|w| w.record.ports.values().copied())
        .collect();
    let unique: BTreeSet<u16> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no port twice");
    assert!(
        !unique.contains(&20001),
        "a port something else holds is skipped"
    );
    live.services
        .get_mut(&("staging".to_owned(), "web".to_owned()))
        .unwrap()
        .version = Some("v9".into());
    let after = place(&live, &n, &records(&before));
    let ports = |i: &Instances, id: &str| {
        i.wanted
            .iter()
            .find(|w| w.record.id == id)
            .map(|w| w.record.ports.clone())
            .unwrap()
    };
    assert_eq!(
        ports(&before, "staging.api.1"),
        ports(&after, "staging.api.1")
    );
    let (old, new) = (
        ports(&before, "staging.web.1"),
        ports(&after, "staging.web.1"),
    );
    assert!(
        old.values().all(|p| !new.values().any(|q| q == p)),
        "a replacement gets new ports"
    );
}
