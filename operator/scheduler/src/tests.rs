//! Scheduler rules, one test each.

use super::*;

fn node(name: &str, cpu: u64, memory_mib: u64) -> NodeState {
    NodeState {
        name: name.to_owned(),
        role: NodeRole::Worker,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        cpu: Cpu::cores(cpu),
        memory: Memory::mib(memory_mib),
        up: true,
    }
}

fn replicated(service: &str, replicas: u32, cpu_millis: u64, memory_mib: u64) -> Demand {
    Demand {
        service: service.to_owned(),
        mode: Mode::Replicated,
        replicas,
        cpu: Cpu(cpu_millis),
        memory: Memory::mib(memory_mib),
        constraints: Vec::new(),
        spread: Vec::new(),
    }
}

fn at(service: &str, slot: &str, node: &str) -> Placement {
    Placement {
        service: service.to_owned(),
        slot: slot.to_owned(),
        node: node.to_owned(),
    }
}

fn nodes_of(placements: &[Placement]) -> Vec<&str> {
    placements.iter().map(|p| p.node.as_str()).collect()
}

#[test]
fn replicas_spread_across_nodes() {
    let nodes = [
        node("n1", 4, 4096),
        node("n2", 4, 4096),
        node("n3", 4, 4096),
    ];
    let s = schedule(&nodes, &[replicated("web", 3, 100, 128)], &[]);
    assert_eq!(nodes_of(&s.start), ["n1", "n2", "n3"]);
    assert!(s.unschedulable.is_empty());
}

#[test]
fn an_instance_that_fits_nowhere_says_why() {
    let nodes = [node("n1", 4, 256), node("n2", 4, 384)];
    let s = schedule(&nodes, &[replicated("db", 1, 100, 512)], &[]);
    assert!(s.start.is_empty());
    assert_eq!(
        s.unschedulable[0].reason,
        "insufficient memory: 2 nodes have < 512Mi free"
    );
    let s = schedule(&nodes, &[replicated("cruncher", 1, 8000, 64)], &[]);
    assert_eq!(
        s.unschedulable[0].reason,
        "insufficient cpu: 2 nodes have < 8 free"
    );
}

#[test]
fn requests_are_reserved_so_a_full_node_takes_no_more() {
    let nodes = [node("n1", 1, 1024)];
    let s = schedule(&nodes, &[replicated("web", 3, 400, 128)], &[]);
    assert_eq!(s.start.len(), 2, "two of 400m fit in one core");
    assert_eq!(s.unschedulable.len(), 1);
}

#[test]
fn draining_a_node_moves_its_instances_and_pausing_keeps_them() {
    let mut nodes = [node("n1", 4, 4096), node("n2", 4, 4096)];
    let running = [at("web", "1", "n1"), at("web", "2", "n2")];
    nodes[0].availability = Availability::Drain;
    let s = schedule(&nodes, &[replicated("web", 2, 100, 128)], &running);
    assert_eq!(s.stop, [at("web", "1", "n1")]);
    assert_eq!(s.start, [at("web", "1", "n2")]);

    nodes[0].availability = Availability::Pause;
    let s = schedule(&nodes, &[replicated("web", 2, 100, 128)], &running);
    assert_eq!((s.keep.len(), s.start.len(), s.stop.len()), (2, 0, 0));
    // A paused node gets nothing new.
    let s = schedule(&nodes, &[replicated("web", 4, 100, 128)], &running);
    assert_eq!(nodes_of(&s.start), ["n2", "n2"]);
}

#[test]
fn instances_of_a_node_that_is_down_are_rescheduled() {
    let mut nodes = [node("n1", 4, 4096), node("n2", 4, 4096)];
    nodes[1].up = false;
    let s = schedule(
        &nodes,
        &[replicated("api", 2, 100, 128)],
        &[at("api", "1", "n1"), at("api", "2", "n2")],
    );
    assert_eq!(s.stop, [at("api", "2", "n2")]);
    assert_eq!(s.start, [at("api", "2", "n1")]);
}

#[test]
fn making_a_node_active_again_moves_nothing_back() {
    let nodes = [node("n1", 4, 4096), node("n2", 4, 4096)];
    let running = [at("web", "1", "n2"), at("web", "2", "n2")];
    let s = schedule(&nodes, &[replicated("web", 2, 100, 128)], &running);
    assert_eq!((s.keep.len(), s.start.len(), s.stop.len()), (2, 0, 0));
}

#[test]
fn constraints_choose_the_nodes_and_explain_when_none_match() {
    let mut nodes = [node("n1", 4, 4096), node("n2", 4, 4096)];
    nodes[1].labels.insert("pool".into(), "batch".into());
    let mut worker = replicated("worker", 2, 100, 64);
    worker.constraints = vec![Constraint::parse("node.labels.pool == batch").unwrap()];
    let s = schedule(&nodes, std::slice::from_ref(&worker), &[]);
    assert_eq!(nodes_of(&s.start), ["n2", "n2"]);
    worker.constraints = vec![Constraint::parse("node.labels.pool == gpu").unwrap()];
    let s = schedule(&nodes, &[worker], &[]);
    assert_eq!(
        s.unschedulable[0].reason,
        "no node matches node.labels.pool == gpu"
    );
}

#[test]
fn global_services_run_once_on_every_eligible_node() {
    let mut nodes = [
        node("n1", 4, 4096),
        node("n2", 4, 4096),
        node("n3", 4, 4096),
    ];
    let agent = Demand {
        mode: Mode::Global,
        ..replicated("agent", 0, 50, 32)
    };
    let s = schedule(&nodes, std::slice::from_ref(&agent), &[]);
    assert_eq!(
        s.start,
        [
            at("agent", "n1", "n1"),
            at("agent", "n2", "n2"),
            at("agent", "n3", "n3")
        ]
    );

    // Paused keeps its instance, drained loses it, and nothing moves elsewhere.
    nodes[1].availability = Availability::Pause;
    nodes[2].availability = Availability::Drain;
    let running = s.start.clone();
    let s = schedule(&nodes, &[agent], &running);
    assert_eq!(s.keep, [at("agent", "n1", "n1"), at("agent", "n2", "n2")]);
    assert_eq!(s.stop, [at("agent", "n3", "n3")]);
    assert!(s.start.is_empty());
}

#[test]
fn scaling_down_stops_the_highest_slots_and_removed_services_stop_entirely() {
    let nodes = [node("n1", 4, 4096)];
    let running = [
        at("web", "1", "n1"),
        at("web", "2", "n1"),
        at("web", "3", "n1"),
        at("old", "1", "n1"),
    ];
    let s = schedule(&nodes, &[replicated("web", 1, 100, 128)], &running);
    assert_eq!(s.keep, [at("web", "1", "n1")]);
    assert_eq!(
        s.stop,
        [
            at("old", "1", "n1"),
            at("web", "2", "n1"),
            at("web", "3", "n1")
        ]
    );
}

#[test]
fn the_same_inputs_always_give_the_same_schedule() {
    let nodes = [node("b", 2, 2048), node("a", 2, 2048), node("c", 2, 2048)];
    let demands = [
        replicated("web", 5, 300, 256),
        replicated("api", 4, 300, 256),
    ];
    let first = schedule(&nodes, &demands, &[]);
    for _ in 0..5 {
        let again = schedule(&nodes, &demands, &[]);
        assert_eq!(again.start, first.start);
    }
}

#[test]
fn a_spread_preference_balances_over_a_labels_values_before_nodes() {
    let zoned = |name: &str, zone: &str| NodeState {
        labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
        ..node(name, 4, 4096)
    };
    // Zone a has two nodes, zone b one: plain spreading would put two of three
    // instances in zone a; spreading over zones puts one in each zone first.
    let nodes = [zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let web = Demand {
        spread: vec!["zone".to_owned()],
        ..replicated("web", 2, 100, 128)
    };
    let s = schedule(&nodes, &[web], &[]);
    assert_eq!(nodes_of(&s.start), ["a1", "b1"]);
    let plain = schedule(&nodes, &[replicated("web", 2, 100, 128)], &[]);
    assert_eq!(nodes_of(&plain.start), ["a1", "a2"]);
}
