//! The state database on disk: everything survives closing and reopening, and the
//! applied objects feed the planner.

use std::path::Path;

use drover_plan::{Action, plan};
use drover_store::{Database, EnvironmentStatus, InstanceRecord, LocalState, Store};

fn desired() -> drover_diff::State {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo"));
    let loaded = drover_load::load(&drover_load::read_dir(root).unwrap());
    assert!(loaded.diagnostics.is_empty());
    drover_diff::normalize(&loaded.repo)
}

fn instance(id: &str, node: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        environment: "staging".into(),
        service: "web".into(),
        slot: "0".into(),
        node: node.into(),
        spec_hash: "h1".into(),
        ports: Default::default(),
        assignment: None,
        previous: None,
        port: Some(41000),
        pid: Some(1234),
        state: "running".into(),
        ready: true,
        restarts: 0,
    }
}

#[test]
fn applied_objects_feed_the_planner_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/drover.db");
    let desired = desired();
    {
        let store = LocalState::open(&path).unwrap();
        let first = plan(&desired, &store.observed().unwrap());
        assert_eq!(first.actions.len(), 14);
        for action in &first.actions {
            store.record(action).unwrap();
        }
    }
    // A new process opens the same file: nothing left to do, and all of it is ours.
    let store = LocalState::open(&path).unwrap();
    let observed = store.observed().unwrap();
    assert_eq!(observed.inventory.len(), 14);
    assert!(plan(&desired, &observed).is_empty());
    // Secret values are stored only as fingerprints. (With WAL, recent pages may still
    // be in the -wal file: read both, and check the read sees the data at all.)
    let mut raw = std::fs::read(&path).unwrap();
    raw.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.contains("ghcr.io/example/shop-api"),
        "the database content was not read"
    );
    assert!(
        !raw.contains("YWdlLWVuY3J5cHRpb24ub3Jn"),
        "a secret value reached the state database"
    );
}

#[test]
fn two_engines_keep_their_own_record_of_one_object() {
    // An environment moving from a local cluster to a Kubernetes one is, for a pass,
    // applied by one engine and pruned by the other: neither takes the other's row.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("drover.db");
    let local = LocalState::open(&path).unwrap();
    let kube = drover_store::Applied::open(&path, "kubernetes").unwrap();
    let desired = desired();
    for action in plan(&desired, &local.observed().unwrap()).actions {
        local.record(&action).unwrap();
    }
    for action in plan(&desired, &kube.observed().unwrap()).actions {
        kube.record(&action, "[\"made\"]").unwrap();
    }
    let key = desired.keys().find(|k| k.name == "worker").unwrap().clone();
    assert_eq!(local.observed().unwrap().inventory.len(), 14);
    assert_eq!(kube.made(&key).unwrap().as_deref(), Some("[\"made\"]"));
    local.record(&Action::Delete { key: key.clone() }).unwrap();
    assert!(!local.observed().unwrap().objects.contains_key(&key));
    assert!(kube.observed().unwrap().objects.contains_key(&key));
}

#[test]
fn a_deletion_leaves_the_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalState::open(&tmp.path().join("drover.db")).unwrap();
    let desired = desired();
    for action in plan(&desired, &store.observed().unwrap()).actions {
        store.record(&action).unwrap();
    }
    let key = desired.keys().find(|k| k.name == "worker").unwrap().clone();
    store.record(&Action::Delete { key: key.clone() }).unwrap();
    let observed = store.observed().unwrap();
    assert!(!observed.inventory.contains(&key) && !observed.objects.contains_key(&key));
}

#[test]
fn environments_instances_and_events_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("drover.db");
    let status = EnvironmentStatus {
        name: "staging".into(),
        revision: Some("3f2a1c0".into()),
        summary: Some("web: 4 replicas".into()),
        status: drover_release::SyncStatus::Synced,
        message: String::new(),
    };
    {
        let store = Store::open(&path).unwrap();
        let local = LocalState::open(&path).unwrap();
        store.set_environment(&status).unwrap();
        local.put_instance(&instance("web-0", "staging-1")).unwrap();
        local.put_instance(&instance("web-1", "staging-2")).unwrap();
        local.remove_instance("web-1").unwrap();
        store
            .event("staging", "Service/web", "Scaled", "replicas 2 → 4")
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let local = LocalState::open(&path).unwrap();
    assert_eq!(store.environments().unwrap(), [status]);
    assert_eq!(local.instances().unwrap(), [instance("web-0", "staging-1")]);
    assert_eq!(local.instance("web-1").unwrap(), None);
    let events = store.events(10).unwrap();
    assert_eq!(
        (events[0].reason.as_str(), events[0].message.as_str()),
        ("Scaled", "replicas 2 → 4")
    );
}

#[test]
fn only_the_newest_events_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("drover.db"))
        .unwrap()
        .keep_events(5);
    for i in 0..12 {
        store
            .event("staging", "Service/web", "Tick", &i.to_string())
            .unwrap();
    }
    let messages: Vec<String> = store
        .events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["11", "10", "9", "8", "7"]);
}
