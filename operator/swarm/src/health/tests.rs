//! Progress read from services and tasks as the Engine API returns them.

use serde_json::json;

use super::*;

fn service(update: Option<(&str, &str)>) -> Service {
    let mut v = json!({
        "ID": "svc1",
        "Spec": {"Name": "staging_web", "Mode": {"Replicated": {"Replicas": 2}},
                 "TaskTemplate": {"ContainerSpec": {"Image": "web:2"}}},
    });
    if let Some((state, message)) = update {
        v["UpdateStatus"] = json!({"State": state, "Message": message});
    }
    serde_json::from_value(v).unwrap()
}

fn task(image: &str, state: &str, desired: &str, at: &str, err: Option<&str>) -> Task {
    let mut status = json!({"State": state, "Timestamp": at});
    if let Some(err) = err {
        status["Err"] = json!(err);
    }
    serde_json::from_value(json!({
        "ServiceID": "svc1", "DesiredState": desired, "Status": status,
        "Spec": {"ContainerSpec": {"Image": image}},
    }))
    .unwrap()
}

#[test]
fn every_task_running_the_new_spec_is_healthy() {
    let tasks = [
        task("web:2", "running", "running", "2026-01-01T00:00:01Z", None),
        task("web:2", "running", "running", "2026-01-01T00:00:02Z", None),
        task(
            "web:1",
            "shutdown",
            "shutdown",
            "2026-01-01T00:00:00Z",
            None,
        ),
    ];
    let p = progress(
        &service(Some(("completed", ""))),
        &tasks.iter().collect::<Vec<_>>(),
    );
    assert_eq!(p.progress, Progress::Healthy, "{}", p.detail);
    assert_eq!(p.detail, "2/2 running");
}

#[test]
fn tasks_of_the_previous_spec_still_running_mean_rolling() {
    let tasks = [
        task("web:2", "running", "running", "2026-01-01T00:00:01Z", None),
        task("web:2", "starting", "running", "2026-01-01T00:00:02Z", None),
        task("web:1", "running", "running", "2026-01-01T00:00:00Z", None),
    ];
    let p = progress(
        &service(Some(("updating", ""))),
        &tasks.iter().collect::<Vec<_>>(),
    );
    assert_eq!(p.progress, Progress::Rolling);
    assert_eq!(p.detail, "1/2 running, 1 on the previous spec");
}

#[test]
fn a_paused_update_has_failed_with_swarms_reason() {
    let tasks = [task(
        "web:2",
        "failed",
        "shutdown",
        "2026-01-01T00:00:01Z",
        Some("task: non-zero exit (137): dockerexec: unhealthy container"),
    )];
    let p = progress(
        &service(Some((
            "paused",
            "update paused due to failure or early termination of task x",
        ))),
        &tasks.iter().collect::<Vec<_>>(),
    );
    let Progress::Failed { why } = &p.progress else {
        panic!("{p:?}")
    };
    assert!(why.contains("update paused"), "{why}");
    assert!(p.detail.contains("unhealthy container"), "{}", p.detail);
}

#[test]
fn a_missing_image_fails_at_once_and_repeated_failures_fail_the_release() {
    let missing = [task(
        "web:2",
        "rejected",
        "shutdown",
        "2026-01-01T00:00:01Z",
        Some("No such image: web:2"),
    )];
    let p = progress(&service(None), &missing.iter().collect::<Vec<_>>());
    assert!(matches!(p.progress, Progress::Failed { .. }), "{p:?}");

    let crash = |at: &str| {
        task(
            "web:2",
            "failed",
            "shutdown",
            at,
            Some("task: non-zero exit (1)"),
        )
    };
    let two = [crash("2026-01-01T00:00:01Z"), crash("2026-01-01T00:00:02Z")];
    let p = progress(&service(None), &two.iter().collect::<Vec<_>>());
    assert_eq!(
        p.progress,
        Progress::Rolling,
        "two failures may still recover"
    );
    let three = [
        crash("2026-01-01T00:00:01Z"),
        crash("2026-01-01T00:00:02Z"),
        crash("2026-01-01T00:00:03Z"),
    ];
    let p = progress(&service(None), &three.iter().collect::<Vec<_>>());
    assert!(matches!(p.progress, Progress::Failed { .. }), "{p:?}");
}
