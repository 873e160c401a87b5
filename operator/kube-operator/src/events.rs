//! Drover's events as Kubernetes Events: everything the controller records (a
//! release started, healthy, rolled back; an apply that failed; a revision rejected)
//! is passed on, with the same stable reason, as an Event regarding the environment's
//! resource, so `kubectl describe environment staging` and `kubectl get events` tell
//! the story. One helper, [`publish`]; the store stays the one record.

use drover_control::Controller;
use drover_kube::KubeEngine;
use drover_model::environment::Environment;
use drover_store::Event;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// Reasons that say something went wrong: Warning events.
const WARNINGS: [&str; 6] = [
    "ReleaseFailed",
    "RollingBack",
    "Failed",
    "RevisionRejected",
    "RevertFailed",
    "PruneHeld",
];

/// Events about a cluster-scoped object (an Environment) live in `kube-system`: the
/// one namespace every API server version accepts for them (1.20 refuses `default`).
const EVENTS_NAMESPACE: &str = "kube-system";

/// Who reports the events.
#[derive(Clone)]
pub struct Reporter {
    pub client: Client,
    /// This replica's name.
    pub instance: String,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("instance", &self.instance)
            .finish()
    }
}

/// The Event type of a reason.
pub fn event_type(reason: &str) -> &'static str {
    if WARNINGS.contains(&reason) {
        "Warning"
    } else {
        "Normal"
    }
}

/// Publishes one of Drover's events regarding `resource`.
pub async fn publish(
    reporter: &Reporter,
    resource: &Environment,
    event: &Event,
) -> Result<(), kube::Error> {
    // The Events API keeps notes to 1 kB and reasons to 128 characters.
    let mut note = event.message.clone();
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let reason: String = event.reason.chars().take(128).collect();
    let at = k8s_openapi::jiff::Timestamp::from_millisecond(event.at_ms)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
    let object = KubeEvent {
        metadata: ObjectMeta {
            // As kubectl's events are named: the object's name and something unique.
            name: Some(format!(
                "{}.{}",
                resource.name_any(),
                drover_control::random_hex(8).unwrap_or_else(|_| format!("{:x}", event.at_ms))
            )),
            namespace: Some(EVENTS_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(at)),
        type_: Some(event_type(&event.reason).into()),
        reason: Some(reason.clone()),
        action: Some(reason),
        note: Some(note),
        regarding: Some(resource.object_ref(&())),
        reporting_controller: Some("drover.dev/operator".into()),
        reporting_instance: Some(reporter.instance.clone()),
        ..KubeEvent::default()
    };
    Api::<KubeEvent>::namespaced(reporter.client.clone(), EVENTS_NAMESPACE)
        .create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

/// Passes Drover's events on, in order, from a cursor.
#[derive(Debug)]
pub struct Publisher {
    reporter: Reporter,
    /// The number of the last event passed on.
    cursor: i64,
}

impl Publisher {
    /// Passes on the events recorded after the one numbered `after`.
    pub fn new(reporter: Reporter, after: i64) -> Publisher {
        Publisher {
            reporter,
            cursor: after,
        }
    }

    /// Passes on what was recorded since the last call. A rejected revision goes to
    /// every environment's resource; an event about an environment without a resource
    /// (not on a Kubernetes cluster), or about a cluster or a node, to none.
    pub async fn publish_new(&mut self, control: &Controller<KubeEngine>) {
        let Ok(new) = control.with_store(|s| s.events_after(self.cursor)) else {
            return;
        };
        let api: Api<Environment> = Api::all(self.reporter.client.clone());
        for (id, event) in new {
            self.cursor = id;
            // Of the events about no one environment, a rejected revision concerns them
            // all; a cluster's or a node's change none of their resources.
            if event.environment.is_empty() && event.reason != "RevisionRejected" {
                continue;
            }
            let targets = if event.environment.is_empty() {
                api.list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
            } else {
                api.get_opt(&event.environment)
                    .await
                    .ok()
                    .flatten()
                    .into_iter()
                    .collect()
            };
            for resource in &targets {
                if let Err(error) = publish(&self.reporter, resource, &event).await {
                    tracing::warn!(
                        "cannot record event {} on environment {}: {error}",
                        event.reason,
                        resource.name_any()
                    );
                }
            }
        }
    }
}
