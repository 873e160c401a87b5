//! Instance placement for the example repo, one behaviour per test.

use std::path::Path;

use super::*;
use drover_model::cluster::{Availability, NodeRole};

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
    let i = instances(&live, &nodes(&live, &[]), &[], Path::new("/bin/drover"));
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
    let drover = Path::new("/bin/drover");
    let before = instances(&live, &nodes(&live, &[]), &[], drover);
    let after = instances(
        &live,
        &nodes(&live, &["staging-2"]),
        &records(&before),
        drover,
    );
    assert_eq!(
        placed(&after, "staging", "web"),
        [("1", "staging-1"), ("2", "staging-1")]
    );
    assert!(after.wanted.iter().all(|w| w.record.node != "staging-2"));
}

#[test]
fn a_changed_service_keeps_its_slots_under_a_new_hash() {
    let mut live = example();
    let drover = Path::new("/bin/drover");
    let before = instances(&live, &nodes(&live, &[]), &[], drover);
    let web = live
        .services
        .get_mut(&("staging".to_owned(), "web".to_owned()))
        .unwrap();
    web.version = Some("v9".into());
    let after = instances(&live, &nodes(&live, &[]), &records(&before), drover);
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
    let drover = Path::new("/bin/drover");
    let mut n = nodes(&live, &[]);
    for node in n.get_mut("local-staging").unwrap() {
        node.availability = Availability::Drain;
        node.role = NodeRole::Worker;
    }
    let i = instances(&live, &n, &[], drover);
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
