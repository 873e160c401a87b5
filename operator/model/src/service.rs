//! `Service`: N identical instances of one workload plus the rules to reach, check,
//! scale and update them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::quantity::{Cpu, Duration, Memory};

/// The desired state of one service.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    shortname = "dsvc",
    namespaced,
    doc = "A Drover service: N identical instances of one workload plus the rules to reach, check, scale and update them."
)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Container image (`registry/name:tag` or `@sha256:` digest). The Kubernetes engine
    /// runs it; the local engine runs `command` instead and ignores the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The artifact version this service runs (for example `v1.3.0`). Shown in diffs
    /// and carried from one environment to the next by promotions; the local engine
    /// passes it to instances as `DROVER_VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Overrides the image's entrypoint. For the local engine: the program to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub command: Vec<String>,
    /// Overrides the image's cmd (the arguments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub args: Vec<String>,
    /// Environment variables. Names: letters, digits and `_`, not starting with a digit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub env: BTreeMap<String, String>,
    /// Working directory; created when missing. Default `/` for images; for the local
    /// engine, the instance's own directory in Drover's state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `replicated` (run `replicas` instances) or `global` (one on every eligible node).
    #[serde(default)]
    pub mode: Mode,
    /// Number of instances for `replicated` mode (default 1). Not allowed with `global`.
    /// With autoscaling on, the starting count; the autoscaler owns it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Ports the workload listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub ports: Vec<Port>,
    /// Who can reach the service: `none`, `internal` (default), `private`, `public`.
    #[serde(default)]
    pub access: Access,
    /// Volumes mounted into every instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub volumes: Vec<Volume>,
    /// CPU and memory each instance reserves (requests) and may use at most (limits).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Failing it restarts the instance (per `restartPolicy`). None = always healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Failing it takes the instance out of load balancing until it passes again.
    /// None = ready as soon as it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// When an exited instance is started again: `always` (default), `on-failure`, `never`.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Scale the replica count between bounds from observed metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// `rolling` (default: batches per `update`, no outage) or `recreate` (stop all, then
    /// start the same number of new ones).
    #[serde(default)]
    pub strategy: Strategy,
    /// How a changed spec rolls out.
    #[serde(default)]
    pub update: UpdateConfig,
    /// How a rollback to the previous spec rolls out (same fields as `update`).
    #[serde(default)]
    pub rollback: UpdateConfig,
    /// Where instances may run.
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    /// HTTP routes through the cluster's proxy to this service's ready instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub routes: Vec<Route>,
    /// Secrets delivered to every instance as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub secrets: Vec<SecretMount>,
    /// Services (in the same environment) that must be rolled out and healthy first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub depends_on: Vec<String>,
}

/// The port a container listens on when its service names none, and the first of
/// those handed to unnumbered ports.
pub const DEFAULT_TARGET_PORT: u16 = 8080;

impl ServiceSpec {
    /// The ports a container of this service declares (container engines: Kubernetes,
    /// Swarm): its own, unnumbered ones numbered 8080, 8081, … in order (as the local
    /// engine gives each a port of its own), or one `default` port 8080.
    pub fn container_ports(&self) -> Vec<Port> {
        if self.ports.is_empty() {
            return vec![Port {
                name: "default".to_owned(),
                target: Some(DEFAULT_TARGET_PORT),
                published: None,
                protocol: Protocol::Tcp,
            }];
        }
        let mut next = DEFAULT_TARGET_PORT;
        self.ports
            .iter()
            .map(|p| {
                let target = p.target.unwrap_or_else(|| {
                    let n = next;
                    next += 1;
                    n
                });
                Port {
                    target: Some(target),
                    ..p.clone()
                }
            })
            .collect()
    }

    /// The variables the local engine sets for its ports (`PORT` for the first,
    /// `PORT_NAME` for each), for `ports`, where the service does not set them itself:
    /// one program runs on every engine.
    pub fn port_variables(&self, ports: &[Port]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let number = port.target.unwrap_or(DEFAULT_TARGET_PORT).to_string();
            let name = format!("PORT_{}", port.name.to_uppercase().replace('-', "_"));
            for var in [(i == 0).then(|| "PORT".to_owned()), Some(name)]
                .into_iter()
                .flatten()
            {
                if !self.env.contains_key(&var) {
                    out.push((var, number.clone()));
                }
            }
        }
        out
    }
}

/// How many instances run and where.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `replicas` instances spread across eligible nodes.
    #[default]
    Replicated,
    /// One instance on every eligible node.
    Global,
}

/// A port the workload listens on.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Name routes and probes refer to (for example `http`).
    pub name: String,
    /// Port inside the instance. The local engine assigns one when unset and passes it
    /// as `PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u16>,
    /// Port on the cluster's entry point (routing mesh / load balancer) for `private`
    /// and `public` access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of a port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// Who can reach a service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// No entry point at all.
    None,
    /// A service address inside the cluster only.
    #[default]
    Internal,
    /// A load balancer on the private network.
    Private,
    /// A public load balancer.
    Public,
}

/// A volume mounted into every instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Name of the volume, unique within the service.
    pub name: String,
    /// `host-path` (default), `nfs` or `config`.
    #[serde(rename = "type", default)]
    pub kind: VolumeKind,
    /// Host path, `server:/export` for nfs, or a file in the config repo for config.
    /// A host-path volume without a source is a directory Drover keeps for the
    /// service on its node, across restarts and replacements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absolute path inside the instance.
    pub target: String,
    /// Mount read-only (default false).
    #[serde(default, skip_serializing_if = "defaults::is_false")]
    pub read_only: bool,
}

/// Where a volume's data lives.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum VolumeKind {
    /// A directory on the node; data stays with that node.
    #[default]
    HostPath,
    /// A network share: data follows the instance across nodes.
    Nfs,
    /// A file from the config repo, read-only.
    Config,
}

/// CPU and memory amounts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// Cores: `0.25`, `250m`, `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Bytes: `512Mi`, `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

impl ResourceList {
    /// Neither amount is set.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

/// Requests (reserved by the scheduler) and limits (hard ceilings; 0 = unlimited).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Reserved per instance: a node is eligible only with this much unreserved.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,
    /// Ceiling per instance; must be >= the request. 0 means unlimited.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
}

impl Resources {
    /// No requests and no limits.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// A health check. Exactly one of `httpGet`, `tcpSocket`, `exec`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Healthy when an HTTP GET answers with a status from 200 to 399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// Healthy when a TCP connection opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Healthy when the command exits 0 (a script needs its interpreter: `sh check.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// Seconds after start before the first check (default 0).
    #[serde(default)]
    pub initial_delay_seconds: u32,
    /// Seconds between checks (default 10).
    #[serde(default = "defaults::probe_period_seconds")]
    pub period_seconds: u32,
    /// Seconds a check may take before it counts as failed (default 1).
    #[serde(default = "defaults::probe_timeout_seconds")]
    pub timeout_seconds: u32,
    /// Consecutive passes to become healthy (default 1; must be 1 for liveness).
    #[serde(default = "defaults::probe_success_threshold")]
    pub success_threshold: u32,
    /// Consecutive failures to become unhealthy (default 3).
    #[serde(default = "defaults::probe_failure_threshold")]
    pub failure_threshold: u32,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            http_get: None,
            tcp_socket: None,
            exec: None,
            initial_delay_seconds: 0,
            period_seconds: defaults::probe_period_seconds(),
            timeout_seconds: defaults::probe_timeout_seconds(),
            success_threshold: defaults::probe_success_threshold(),
            failure_threshold: defaults::probe_failure_threshold(),
        }
    }
}

/// An HTTP GET check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// Path to request (default `/`).
    #[serde(default = "defaults::root_path")]
    pub path: String,
    /// Port name or number (default: the service's first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub headers: BTreeMap<String, String>,
}

/// URL scheme of an HTTP check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// A TCP connect check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// Port name or number (default: the service's first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
}

/// A command check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    /// Program and arguments, run inside the instance's environment.
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub command: Vec<String>,
}

pub use crate::port_ref::PortRef;

/// When an exited instance is started again.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status (with exponential back-off).
    #[default]
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never; the instance stays exited.
    Never,
}

/// Replica bounds and the metrics that move the count between them.
///
/// desired = ceil(current × value / target) per metric, the largest over metrics,
/// clamped to [minReplicas, maxReplicas]; no change while value/target is within
/// 1 ± tolerance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// Lower bound (default 1).
    #[serde(default = "defaults::one")]
    pub min_replicas: u32,
    /// Upper bound (required).
    pub max_replicas: u32,
    /// At least one metric with its target per instance.
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub metrics: Vec<Metric>,
    /// Relative deviation from the target that causes no change (default 0.1).
    #[serde(default = "defaults::autoscaling_tolerance")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::ratio()"))]
    pub tolerance: f64,
    /// How often metrics are evaluated (default 30s).
    #[serde(default = "defaults::autoscaling_period")]
    pub evaluation_period: Duration,
}

/// One autoscaling metric and its target value per instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// What is measured.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Target per instance: percent of the request for `cpu` and `memory`; requests
    /// per second for `request-rate`; bytes per second for bandwidth.
    pub target: u64,
}

/// Autoscaling metric kinds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// CPU usage as a percentage of the CPU request (needs `resources.requests.cpu`).
    Cpu,
    /// Memory usage as a percentage of the memory request (needs `resources.requests.memory`).
    Memory,
    /// Requests per second through the proxy.
    RequestRate,
    /// Bytes per second received.
    InboundBandwidth,
    /// Bytes per second sent.
    OutboundBandwidth,
}

impl MetricKind {
    /// Targets of this metric are a percentage of a resource request.
    pub fn is_utilization(self) -> bool {
        matches!(self, MetricKind::Cpu | MetricKind::Memory)
    }
}

/// How instances are replaced when the spec changes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// In batches of `update.parallelism`, without an outage.
    #[default]
    Rolling,
    /// Stop every instance, then start the same number of new ones.
    Recreate,
}

/// Rolling update (or rollback) parameters, with Docker Swarm's defaults.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConfig {
    /// Instances updated at once (default 1; 0 = all at once).
    #[serde(default = "defaults::one")]
    pub parallelism: u32,
    /// Wait between batches (default 0s).
    #[serde(default)]
    pub delay: Duration,
    /// What happens when failures exceed `maxFailureRatio`: `pause` (default),
    /// `continue` or `rollback` (not allowed in `rollback:` itself).
    #[serde(default)]
    pub failure_action: FailureAction,
    /// How long each updated instance is watched for failure (default 5s).
    #[serde(default = "defaults::monitor")]
    pub monitor: Duration,
    /// Fraction of updated instances that may fail before `failureAction` (default 0).
    #[serde(default)]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::ratio()"))]
    pub max_failure_ratio: f64,
    /// `stop-first` (default: old stops, then new starts) or `start-first` (new becomes
    /// ready before old stops; needs room for one more instance).
    #[serde(default)]
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration(0),
            failure_action: FailureAction::Pause,
            monitor: defaults::monitor(),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// What a failed update does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Stop updating; keep what runs.
    #[default]
    Pause,
    /// Carry on with the next batch.
    Continue,
    /// Return to the previous spec.
    Rollback,
}

/// The order of stopping old and starting new instances.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// Placement rules.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Every constraint must hold on a node: `node.labels.KEY == VALUE`,
    /// `node.labels.KEY != VALUE`, `node.role == manager|worker`, `node.name == NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub constraints: Vec<String>,
    /// Spread instances evenly over the values of node labels, in order
    /// (`docker service create --placement-pref spread=node.labels.zone`): among the
    /// nodes the constraints allow, a new instance goes to the value with the fewest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub preferences: Vec<PlacementPreference>,
}

impl Placement {
    /// No constraints and no preferences.
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.preferences.is_empty()
    }

    /// The label keys instances spread over, in order (preferences that name no node
    /// label are left out: validation reports them).
    pub fn spread_labels(&self) -> Vec<String> {
        self.preferences
            .iter()
            .filter_map(|p| p.label().map(str::to_owned))
            .collect()
    }
}

/// One placement preference.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementPreference {
    /// `node.labels.KEY`: spread over the values of this node label (nodes without it
    /// count as one more value).
    pub spread: String,
}

impl PlacementPreference {
    /// The label key `spread` names, if it names one.
    pub fn label(&self) -> Option<&str> {
        self.spread
            .trim()
            .strip_prefix("node.labels.")
            .filter(|k| !k.is_empty())
    }
}

/// An HTTP route through the cluster's proxy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Host header to match (`shop.example.com`, `*.example.com`); any host when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix to match (default `/`); the longest matching prefix wins.
    #[serde(default = "defaults::root_path")]
    pub path: String,
    /// Name of the service port to send to (default: the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Proxy listener to attach to (default: every listener of the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// `round-robin` (default) or `least-connections`.
    #[serde(default)]
    pub balancing: Balancing,
    /// `none` (default) or `cookie` (a client keeps its instance while it is ready).
    #[serde(default)]
    pub session_affinity: SessionAffinity,
}

/// How the proxy picks an instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Balancing {
    #[default]
    RoundRobin,
    LeastConnections,
}

/// Whether a client sticks to one instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum SessionAffinity {
    #[default]
    None,
    Cookie,
}

/// A secret delivered to instances as files.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretMount {
    /// Name of a `Secret` in the same environment.
    pub name: String,
    /// Directory the secret's keys appear in, one file per key
    /// (default `/run/secrets/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Environment variables set to a key's value: `{DB_PASSWORD: password}`. Files are
    /// safer (a process's environment is inherited by its children and shows in
    /// crash reports); use this for programs that read nothing else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub env: BTreeMap<String, String>,
}
