//! Quota rules (domain notes §2): an environment whose declared services already
//! exceed its quota is rejected before anything runs, and each instance's request and
//! limit must sit inside the quota's limit range.

use drover_diagnostics::Code;
use drover_load::{EnvironmentDir, Object, Repo};
use drover_model::cluster::{Availability, Engine};
use drover_model::placement::Constraint;
use drover_model::quota::LimitRange;
use drover_model::service::Mode;
use drover_model::{Amount, Cpu, Memory, QuotaSpec, ServiceSpec};

use crate::{Findings, Hint};

/// How many instances a service declares: replicas (or the autoscaler's floor) for
/// replicated services; one per eligible node for global ones.
pub(crate) fn declared_instances(
    service: &ServiceSpec,
    eligible_nodes: impl Fn(&ServiceSpec) -> u64,
) -> u64 {
    match service.mode {
        Mode::Replicated => u64::from(
            service
                .replicas
                .unwrap_or_else(|| service.autoscaling.as_ref().map_or(1, |a| a.min_replicas)),
        ),
        Mode::Global => eligible_nodes(service),
    }
}

/// Per-instance amounts after limit-range defaults, as Kubernetes' LimitRanger
/// applies them: an unset request takes the limit, then the default request.
#[derive(Debug, Clone, Copy)]
struct Effective {
    cpu_request: Option<Cpu>,
    memory_request: Option<Memory>,
    cpu_limit: Option<Cpu>,
    memory_limit: Option<Memory>,
}

fn effective(spec: &ServiceSpec, range: &LimitRange) -> Effective {
    let (req, lim) = (spec.resources.requests, spec.resources.limits);
    let cpu_limit = lim.cpu.or(range.default_limit.cpu);
    let memory_limit = lim.memory.or(range.default_limit.memory);
    Effective {
        cpu_request: req
            .cpu
            .or(lim.cpu)
            .or(range.default_request.cpu)
            .or(cpu_limit),
        memory_request: req
            .memory
            .or(lim.memory)
            .or(range.default_request.memory)
            .or(memory_limit),
        cpu_limit,
        memory_limit,
    }
}

pub(crate) fn check(f: &mut Findings<'_>, repo: &Repo, dir: &EnvironmentDir) {
    let cluster = dir
        .environment
        .as_ref()
        .and_then(|e| repo.cluster(&e.spec().cluster));
    let eligible_nodes = |service: &ServiceSpec| -> u64 {
        let Some(local) = cluster
            .filter(|c| c.spec().engine == Engine::Local)
            .and_then(|c| c.spec().local.as_ref())
        else {
            return 1;
        };
        let constraints: Vec<Constraint> = service
            .placement
            .constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect();
        local
            .nodes
            .iter()
            .filter(|n| n.availability != Availability::Drain)
            .filter(|n| {
                constraints
                    .iter()
                    .all(|c| c.matches(&n.name, n.role, &n.labels))
            })
            .count() as u64
    };
    for quota in &dir.quotas {
        let spec = quota.spec();
        let range = &spec.limit_range;
        let mut totals = Totals::default();
        for service in &dir.services {
            let s = service.spec();
            let n = declared_instances(s, eligible_nodes);
            let e = effective(s, range);
            limit_range_bounds(f, service, range, &e, quota.name());
            totals.add(service.name(), n, &e, s.volumes.len() as u64);
        }
        totals.check(f, quota, spec, dir);
    }
}

fn limit_range_bounds(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    range: &LimitRange,
    e: &Effective,
    quota: &str,
) {
    bounds(
        f,
        service,
        quota,
        e.cpu_request,
        e.cpu_limit,
        range.min.cpu,
        range.max.cpu,
    );
    bounds(
        f,
        service,
        quota,
        e.memory_request,
        e.memory_limit,
        range.min.memory,
        range.max.memory,
    );
}

/// One resource against the limit range: the request at least `min`, the limit (0 or
/// unset meaning unlimited) at most `max`.
fn bounds<A: Amount>(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    quota: &str,
    request: Option<A>,
    limit: Option<A>,
    min: Option<A>,
    max: Option<A>,
) {
    let (name, field, label) = (service.name(), A::FIELD, A::LABEL);
    if let (Some(min), Some(r)) = (min, request)
        && r < min
    {
        f.at(
            service,
            &format!("spec.resources.requests.{field}"),
            Code::LimitRangeViolation,
            format!(
                "service `{name}` requests {r} {label}, below quota `{quota}`'s minimum of {min}"
            ),
        )
        .hint(format!("request at least {min}"));
    }
    if let Some(max) = max
        && limit.is_none_or(|l| l.is_unlimited() || l > max)
    {
        let has = limit
            .filter(|l| !l.is_unlimited())
            .map_or(format!("no {label} limit"), |l| {
                format!("a {label} limit of {l}")
            });
        f.at(
            service,
            &format!("spec.resources.limits.{field}"),
            Code::LimitRangeViolation,
            format!("service `{name}` has {has}, above quota `{quota}`'s maximum of {max}"),
        )
        .hint(format!("set `limits.{field}` to at most {max}"));
    }
}

/// One total to compare with the quota: its name, how to say it, the bound, the
/// contributions, and how to print an amount.
struct Sum<'a> {
    what: &'static str,
    phrase: &'static str,
    allowed: Option<u64>,
    parts: &'a [(&'a str, u64)],
    show: &'a dyn Fn(u64) -> String,
}

/// Sums over an environment, remembering who contributes what for the message.
#[derive(Default)]
struct Totals<'a> {
    services: u64,
    instances: u64,
    volumes: u64,
    cpu_requests: Vec<(&'a str, u64)>,
    memory_requests: Vec<(&'a str, u64)>,
    cpu_limits: Vec<(&'a str, u64)>,
    memory_limits: Vec<(&'a str, u64)>,
    /// Services without a limit (unlimited), which a limits quota cannot admit.
    no_cpu_limit: Vec<&'a str>,
    no_memory_limit: Vec<&'a str>,
}

impl<'a> Totals<'a> {
    fn add(&mut self, name: &'a str, n: u64, e: &Effective, volumes: u64) {
        self.services += 1;
        self.instances += n;
        self.volumes += volumes;
        self.cpu_requests
            .push((name, n * e.cpu_request.map_or(0, Cpu::millis)));
        self.memory_requests
            .push((name, n * e.memory_request.map_or(0, Memory::bytes)));
        match e.cpu_limit.filter(|l| l.millis() != 0) {
            Some(l) => self.cpu_limits.push((name, n * l.millis())),
            None => self.no_cpu_limit.push(name),
        }
        match e.memory_limit.filter(|l| l.bytes() != 0) {
            Some(l) => self.memory_limits.push((name, n * l.bytes())),
            None => self.no_memory_limit.push(name),
        }
    }

    fn check(
        &self,
        f: &mut Findings<'_>,
        quota: &Object<QuotaSpec>,
        spec: &QuotaSpec,
        dir: &EnvironmentDir,
    ) {
        let env = &dir.name;
        let q = quota.name();
        let hard = &spec.hard;
        let counts = [
            ("instances", hard.instances, self.instances),
            ("services", hard.services, self.services),
            ("secrets", hard.secrets, dir.secrets.len() as u64),
            ("volumes", hard.volumes, self.volumes),
            ("quotas", hard.quotas, dir.quotas.len() as u64),
        ];
        for (what, allowed, declared) in counts {
            if let Some(allowed) = allowed
                && declared > u64::from(allowed)
            {
                f.at(quota, &format!("spec.hard.{what}"), Code::QuotaExceeded, format!("environment `{env}` declares {declared} {what}, above quota `{q}`'s {allowed}"))
                    .hint(format!("remove {} or raise `hard.{what}`", declared - u64::from(allowed)));
            }
        }
        let cpu = |m: u64| Cpu(m).to_string();
        let mem = |b: u64| Memory(b).to_string();
        let sums = [
            Sum {
                what: "requests.cpu",
                phrase: "requests {} CPU",
                allowed: hard.requests.cpu.map(Cpu::millis),
                parts: &self.cpu_requests,
                show: &cpu,
            },
            Sum {
                what: "requests.memory",
                phrase: "requests {} of memory",
                allowed: hard.requests.memory.map(Memory::bytes),
                parts: &self.memory_requests,
                show: &mem,
            },
            Sum {
                what: "limits.cpu",
                phrase: "has CPU limits of {}",
                allowed: hard.limits.cpu.map(Cpu::millis),
                parts: &self.cpu_limits,
                show: &cpu,
            },
            Sum {
                what: "limits.memory",
                phrase: "has memory limits of {}",
                allowed: hard.limits.memory.map(Memory::bytes),
                parts: &self.memory_limits,
                show: &mem,
            },
        ];
        for Sum {
            what,
            phrase,
            allowed,
            parts,
            show,
        } in sums
        {
            let Some(allowed) = allowed else { continue };
            let total: u64 = parts.iter().map(|(_, v)| v).sum();
            if total > allowed {
                let mut top: Vec<&(&str, u64)> = parts.iter().filter(|(_, v)| *v > 0).collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let listed: Vec<String> = top
                    .iter()
                    .take(3)
                    .map(|(n, v)| format!("{n} {}", show(*v)))
                    .collect();
                let more = if top.len() > 3 {
                    format!(", +{} more", top.len() - 3)
                } else {
                    String::new()
                };
                let declared = phrase.replace("{}", &show(total));
                f.at(quota, &format!("spec.hard.{what}"), Code::QuotaExceeded,
                    format!("environment `{env}` {declared} in total ({}{more}), above quota `{q}`'s `{what}: {}`", listed.join(", "), show(allowed)))
                    .hint(format!("reduce replicas or per-instance {what}, or raise the quota"));
            }
        }
        let unlimited = [
            ("limits.cpu", hard.limits.cpu.is_some(), &self.no_cpu_limit),
            (
                "limits.memory",
                hard.limits.memory.is_some(),
                &self.no_memory_limit,
            ),
        ];
        for (what, bounded, services) in unlimited {
            if bounded && !services.is_empty() {
                f.at(
                    quota,
                    &format!("spec.hard.{what}"),
                    Code::QuotaExceeded,
                    format!(
                        "quota `{q}` bounds total {what}, but {} set no limit (unlimited)",
                        services
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .hint(format!(
                    "set `resources.{what}` on them, or `limitRange.defaultLimit` in the quota"
                ));
            }
        }
    }
}
