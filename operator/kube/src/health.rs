//! Health, pure: a service's progress read from its workload's live status and its
//! Pods, in the release core's vocabulary (`Rolling`, `Healthy`, `Failed`), with the
//! detail a person needs (`1/2 updated, 0/2 ready`).

use drover_release::{Progress, ServiceProgress};
use serde_json::Value;

/// Container states that do not get better by waiting.
const STUCK: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
];

/// Restarts of one container of the current template after which the release has
/// failed, as the local engine's restart back-off would show it.
pub const RESTARTS_FAILED: i64 = 3;

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// A Deployment's or DaemonSet's progress; `pods` are the service's Pods.
pub fn progress(workload: Option<&Value>, pods: &[&Value]) -> ServiceProgress {
    let Some(w) = workload else {
        return ServiceProgress::new(Progress::Rolling, "its workload is not created yet");
    };
    let status = &w["status"];
    if int(&status["observedGeneration"]) < int(&w["metadata"]["generation"]) {
        return ServiceProgress::new(
            Progress::Rolling,
            "the cluster has not taken up the new spec yet",
        );
    }
    let daemon = w["kind"] == "DaemonSet";
    let (desired, updated, ready, available, total) = if daemon {
        let d = int(&status["desiredNumberScheduled"]);
        (
            d,
            int(&status["updatedNumberScheduled"]),
            int(&status["numberReady"]),
            int(&status["numberAvailable"]),
            int(&status["currentNumberScheduled"]),
        )
    } else {
        (
            w["spec"]["replicas"].as_i64().unwrap_or(1),
            int(&status["updatedReplicas"]),
            int(&status["readyReplicas"]),
            int(&status["availableReplicas"]),
            int(&status["replicas"]),
        )
    };
    let detail = format!("{updated}/{desired} updated, {ready}/{desired} ready");
    let template = &w["spec"]["template"]["spec"]["containers"];
    let current: Vec<&&Value> = pods
        .iter()
        .filter(|p| same_containers(&p["spec"]["containers"], template))
        .collect();
    for pod in &current {
        if let Some(why) = stuck(pod) {
            return ServiceProgress::new(Progress::Failed { why }, detail);
        }
    }
    let deadline_passed = status["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if deadline_passed {
        let why = "the Deployment passed its progress deadline (ProgressDeadlineExceeded)";
        return ServiceProgress::new(
            Progress::Failed {
                why: why.to_owned(),
            },
            detail,
        );
    }
    if updated >= desired && available >= desired && total == desired {
        ServiceProgress::new(Progress::Healthy, detail)
    } else {
        ServiceProgress::new(Progress::Rolling, detail)
    }
}

/// A plain Kubernetes object's progress, where a rule exists for its kind (as Argo CD
/// assesses health): workloads by their rollout, a Job by its conditions, a
/// PersistentVolumeClaim by being bound; any other kind is healthy once it exists.
pub fn object_progress(live: Option<&Value>) -> ServiceProgress {
    let Some(o) = live else {
        return ServiceProgress::new(Progress::Rolling, "not created yet");
    };
    let group = crate::render::group_of(o["apiVersion"].as_str().unwrap_or_default());
    match (group, o["kind"].as_str().unwrap_or_default()) {
        ("apps", "Deployment" | "DaemonSet") => progress(Some(o), &[]),
        ("apps", "StatefulSet") => stateful_set(o),
        ("batch", "Job") => job(o),
        ("", "PersistentVolumeClaim") => match o["status"]["phase"].as_str() {
            Some("Bound") => ServiceProgress::new(Progress::Healthy, "bound"),
            Some("Lost") => ServiceProgress::new(
                Progress::Failed {
                    why: "its volume is lost (phase Lost)".to_owned(),
                },
                "lost",
            ),
            _ => ServiceProgress::new(Progress::Rolling, "waiting to be bound"),
        },
        _ => ServiceProgress::new(Progress::Healthy, "created"),
    }
}

fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

fn job(o: &Value) -> ServiceProgress {
    let status = &o["status"];
    let detail = format!(
        "{} succeeded, {} failed, {} running",
        int(&status["succeeded"]),
        int(&status["failed"]),
        int(&status["active"])
    );
    if condition(o, "Complete").is_some() {
        return ServiceProgress::new(Progress::Healthy, detail);
    }
    if let Some(failed) = condition(o, "Failed") {
        let why = format!(
            "the Job failed: {} {}",
            failed["reason"].as_str().unwrap_or_default(),
            failed["message"].as_str().unwrap_or_default()
        );
        return ServiceProgress::new(
            Progress::Failed {
                why: why.trim_end().to_owned(),
            },
            detail,
        );
    }
    ServiceProgress::new(Progress::Rolling, detail)
}

fn stateful_set(o: &Value) -> ServiceProgress {
    let status = &o["status"];
    if int(&status["observedGeneration"]) < int(&o["metadata"]["generation"]) {
        return ServiceProgress::new(
            Progress::Rolling,
            "the cluster has not taken up the new spec yet",
        );
    }
    let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
    let (updated, ready) = (
        int(&status["updatedReplicas"]),
        int(&status["readyReplicas"]),
    );
    let detail = format!("{updated}/{desired} updated, {ready}/{desired} ready");
    let revision_done =
        status["updateRevision"].is_null() || status["currentRevision"] == status["updateRevision"];
    if updated >= desired && ready >= desired && revision_done {
        ServiceProgress::new(Progress::Healthy, detail)
    } else {
        ServiceProgress::new(Progress::Rolling, detail)
    }
}

/// The Pod runs the workload's current template (same images, commands and env).
fn same_containers(pod: &Value, template: &Value) -> bool {
    let (Some(pod), Some(template)) = (pod.as_array(), template.as_array()) else {
        return false;
    };
    pod.len() == template.len()
        && pod.iter().zip(template).all(|(p, t)| {
            ["image", "command", "args", "env"]
                .iter()
                .all(|f| crate::drift::drifted(&t[*f], &p[*f]).is_none())
        })
}

/// Why a Pod of the current template will not come up by itself, if so.
fn stuck(pod: &Value) -> Option<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("?");
    for c in pod["status"]["containerStatuses"].as_array()? {
        let waiting = c["state"]["waiting"]["reason"].as_str().unwrap_or_default();
        let restarts = int(&c["restartCount"]);
        if STUCK.contains(&waiting) {
            let message = c["state"]["waiting"]["message"]
                .as_str()
                .unwrap_or_default();
            return Some(
                format!("pod {name}: {waiting} {message} (restarted {restarts} times)")
                    .replace("  ", " "),
            );
        }
        if restarts >= RESTARTS_FAILED {
            return Some(format!("pod {name}: restarted {restarts} times"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "web:2"}]}}},
            "status": status})
    }

    #[test]
    fn a_deployment_is_healthy_when_every_replica_is_updated_and_available() {
        let d = deployment(json!({"observedGeneration": 2, "replicas": 2,
            "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}));
        assert_eq!(progress(Some(&d), &[]).progress, Progress::Healthy);
    }

    #[test]
    fn old_replicas_still_running_keep_it_rolling() {
        let d = deployment(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 2}));
        let p = progress(Some(&d), &[]);
        assert_eq!(p.progress, Progress::Rolling);
        assert_eq!(p.detail, "2/2 updated, 3/2 ready");
        let stale = deployment(json!({"observedGeneration": 1}));
        assert_eq!(progress(Some(&stale), &[]).progress, Progress::Rolling);
    }

    #[test]
    fn a_crash_looping_pod_of_the_new_template_fails_the_release() {
        let d = deployment(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1}));
        let crashing = json!({"metadata": {"name": "web-1"},
            "spec": {"containers": [{"image": "web:2"}]},
            "status": {"containerStatuses": [{"restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let old = json!({"metadata": {"name": "web-0"},
            "spec": {"containers": [{"image": "web:1"}]},
            "status": {"containerStatuses": [{"restartCount": 9}]}});
        match progress(Some(&d), &[&crashing]).progress {
            Progress::Failed { why } => assert!(why.contains("web-1: CrashLoopBackOff"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(progress(Some(&d), &[&old]).progress, Progress::Rolling);
    }

    #[test]
    fn a_job_is_healthy_once_complete_and_fails_with_its_reason() {
        let job = |conditions: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": conditions}});
        let running = job(json!([]));
        assert_eq!(object_progress(Some(&running)).progress, Progress::Rolling);
        let done = job(json!([{"type": "Complete", "status": "True"}]));
        assert_eq!(object_progress(Some(&done)).progress, Progress::Healthy);
        let failed = job(json!([{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]));
        match object_progress(Some(&failed)).progress {
            Progress::Failed { why } => assert_eq!(
                why,
                "the Job failed: BackoffLimitExceeded Job has reached the specified backoff limit"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_objects_without_a_rule_are_healthy_once_they_exist() {
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {}});
        assert_eq!(object_progress(Some(&map)).progress, Progress::Healthy);
        assert_eq!(object_progress(None).progress, Progress::Rolling);
        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "status": {"phase": "Pending"}});
        assert_eq!(object_progress(Some(&claim)).progress, Progress::Rolling);
        let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 1}});
        assert_eq!(object_progress(Some(&set)).progress, Progress::Rolling);
    }

    #[test]
    fn a_passed_progress_deadline_fails_the_release() {
        let d = deployment(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}));
        assert!(matches!(
            progress(Some(&d), &[]).progress,
            Progress::Failed { .. }
        ));
    }
}
