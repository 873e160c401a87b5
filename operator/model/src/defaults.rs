//! Default values, in one place so that docs/model.md, serde and the normalizer agree.

use crate::quantity::Duration;

pub(crate) fn one() -> u32 {
    1
}
pub(crate) fn yes() -> bool {
    true
}
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
pub(crate) fn root_path() -> String {
    "/".to_owned()
}
pub(crate) fn probe_period_seconds() -> u32 {
    10
}
pub(crate) fn probe_timeout_seconds() -> u32 {
    1
}
pub(crate) fn probe_success_threshold() -> u32 {
    1
}
pub(crate) fn probe_failure_threshold() -> u32 {
    3
}
pub(crate) fn autoscaling_tolerance() -> f64 {
    0.1
}
pub(crate) fn autoscaling_period() -> Duration {
    Duration::secs(30)
}
pub(crate) fn monitor() -> Duration {
    Duration::secs(5)
}
pub(crate) fn heartbeat_timeout() -> Duration {
    Duration::secs(10)
}
pub(crate) fn pool_drain_timeout() -> Duration {
    Duration::secs(30)
}
pub(crate) fn progress_deadline() -> Duration {
    Duration::secs(120)
}
pub(crate) fn history_limit() -> u32 {
    20
}
pub(crate) fn soak() -> Duration {
    Duration::secs(300)
}
pub(crate) fn loopback() -> String {
    "127.0.0.1".to_owned()
}
pub(crate) fn local_region() -> String {
    "local".to_owned()
}
pub(crate) fn default_network() -> String {
    "default".to_owned()
}
