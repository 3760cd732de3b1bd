//! Status of Weft resources, as a pure function of the snapshot: `Accepted` (is it valid and in force?) and, for
//! the kinds that name hosts or Services (VirtualService, DestinationRule, AuthorizationPolicy,
//! HTTPLocalRateLimitPolicy), `ResolvedRefs`
//! (does every host, subset, port and target Service it names exist?), with reasons and messages that name the field. [`writer`] puts them on the objects.

pub mod writer;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use weft_crds::status::{ACCEPTED, RESOLVED_REFS};
use weft_crds::virtual_service::Delegate;
use weft_crds::{DestinationRuleSpec, VirtualServiceSpec, WeftStatus};

use weft_crds::authorization_policy::WorkloadPolicy;

use crate::index::authz::target_service;
use crate::index::credentials;
use crate::index::{Snapshot, VirtualServiceModel, is_wildcard};
use crate::source::{Kind, Rejection, ResourceKey};

/// The least time between two status passes. A pass reads every rule of the mesh (a few tens of milliseconds at
/// 5000 Services), and in Kubernetes each status it writes comes back as a change: changes arriving faster are
/// taken together, the latest snapshot at each pass (as Istio batches its status updates). Status is for people
/// and tools reading it, not on the path of any request.
pub const PASS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Condition reasons (documented in the README).
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const UNKNOWN_HOST: &str = "UnknownHost";
    pub const UNKNOWN_SUBSET: &str = "UnknownSubset";
    pub const UNKNOWN_PORT: &str = "UnknownPort";
    pub const UNKNOWN_DELEGATE: &str = "UnknownDelegate";
    /// An AuthorizationPolicy's `targetRefs` names no Service of its namespace.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// A DestinationRule's `tls.credentialName` names no Secret, or one without what its mode needs.
    pub const INVALID_CREDENTIAL: &str = "InvalidCredential";
}

/// One condition as it should be, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionSpec {
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// The status one object should carry.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTarget {
    pub key: ResourceKey,
    pub generation: Option<i64>,
    /// What the object carries now.
    pub current: Option<WeftStatus>,
    pub conditions: Vec<ConditionSpec>,
}

/// The status every Weft resource of the snapshot should carry.
pub fn targets(snapshot: &Snapshot) -> Vec<StatusTarget> {
    let valid = |kind: Kind, namespace: &str, name: &str, generation, status: &Option<WeftStatus>, problems| {
        let key = ResourceKey { kind, namespace: namespace.to_string(), name: name.to_string() };
        let conditions =
            if kind.info().resolves_refs { vec![accepted(), resolved(problems)] } else { vec![accepted()] };
        (!snapshot.rejections.contains_key(&key)).then(|| StatusTarget {
            key,
            generation,
            current: status.clone(),
            conditions,
        })
    };
    let virtual_services = snapshot.virtual_services.iter().filter_map(|vs| {
        let problems = virtual_service_refs(snapshot, &vs.namespace, &vs.spec);
        valid(Kind::VirtualService, &vs.namespace, &vs.name, vs.generation, &vs.status, problems)
    });
    let destination_rules = snapshot.destination_rules.iter().filter_map(|dr| {
        let problems = destination_rule_refs(snapshot, &dr.namespace, &dr.spec);
        valid(Kind::DestinationRule, &dr.namespace, &dr.name, dr.generation, &dr.status, problems)
    });
    let peer_authentications = snapshot.peer_authentications.iter().filter_map(|pa| {
        valid(Kind::PeerAuthentication, &pa.namespace, &pa.name, pa.generation, &pa.status, Vec::new())
    });
    let authorization_policies = snapshot.authorization_policies.iter().filter_map(|ap| {
        let problems = target_refs(snapshot, &ap.namespace, &ap.spec);
        valid(Kind::AuthorizationPolicy, &ap.namespace, &ap.name, ap.generation, &ap.status, problems)
    });
    let rate_limit_policies = snapshot.rate_limit_policies.iter().filter_map(|rl| {
        let problems = target_refs(snapshot, &rl.namespace, &rl.spec);
        valid(Kind::HttpLocalRateLimitPolicy, &rl.namespace, &rl.name, rl.generation, &rl.status, problems)
    });
    virtual_services
        .chain(destination_rules)
        .chain(peer_authentications)
        .chain(authorization_policies)
        .chain(rate_limit_policies)
        .chain(snapshot.rejections.values().map(rejected))
        .collect()
}

fn rejected(rejection: &Rejection) -> StatusTarget {
    let message = rejection.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let mut conditions = vec![ConditionSpec { type_: ACCEPTED, status: "False", reason: reason::INVALID, message }];
    if rejection.key.kind.info().resolves_refs {
        conditions.push(ConditionSpec {
            type_: RESOLVED_REFS,
            status: "Unknown",
            reason: reason::INVALID,
            message: "not checked while the resource is invalid".into(),
        });
    }
    StatusTarget {
        key: rejection.key.clone(),
        generation: rejection.generation,
        current: rejection.status.clone(),
        conditions,
    }
}

fn accepted() -> ConditionSpec {
    ConditionSpec { type_: ACCEPTED, status: "True", reason: reason::ACCEPTED, message: "in force".into() }
}

/// `ResolvedRefs` from the problems found: the first problem's reason, every problem in the message.
fn resolved(problems: Vec<(&'static str, String)>) -> ConditionSpec {
    match problems.first() {
        None => ConditionSpec {
            type_: RESOLVED_REFS,
            status: "True",
            reason: reason::RESOLVED_REFS,
            message: "every referenced host, subset and port exists".into(),
        },
        Some((first_reason, _)) => ConditionSpec {
            type_: RESOLVED_REFS,
            status: "False",
            reason: first_reason,
            message: problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        },
    }
}

fn virtual_service_refs(
    snapshot: &Snapshot,
    namespace: &str,
    spec: &VirtualServiceSpec,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for (i, host) in spec.hosts.iter().enumerate() {
        let fqdn = snapshot.resolve_host(host, namespace);
        if is_wildcard(&fqdn) {
            // A wildcard names no Service of its own; it resolves when it matches one (Services may come later).
            if snapshot.hosts_named(&fqdn).is_empty() {
                problems.push((reason::UNKNOWN_HOST, format!("spec.hosts[{i}]: no Service matches {fqdn}")));
            }
        } else if !snapshot.services.contains_key(&fqdn) {
            problems.push((reason::UNKNOWN_HOST, format!("spec.hosts[{i}]: no Service {fqdn}")));
        }
    }
    for (i, rule) in spec.http.iter().enumerate() {
        if let Some(delegate) = &rule.delegate
            && let Some(problem) = delegate_problem(snapshot, namespace, delegate)
        {
            problems.push((reason::UNKNOWN_DELEGATE, format!("spec.http[{i}].delegate: {problem}")));
        }
    }
    // Every kind of rule, mirrors too: a mirror to a Service that does not exist loses its copies as surely as a
    // route loses requests.
    for (field, d) in spec.destination_fields() {
        let fqdn = snapshot.resolve_host(&d.host, namespace);
        let Some(service) = snapshot.services.get(&fqdn) else {
            problems.push((reason::UNKNOWN_HOST, format!("spec.{field}.host: no Service {fqdn}")));
            continue;
        };
        if let Some(port) = d.port
            && !service.ports.iter().any(|p| u32::from(p.port) == port.number)
        {
            problems.push((
                reason::UNKNOWN_PORT,
                format!("spec.{field}.port.number: Service {fqdn} has no port {}", port.number),
            ));
        }
        if let Some(subset) = &d.subset {
            // The rule the VirtualService's own namespace applies to the host.
            let rule = snapshot.destination_rule_for(&fqdn, namespace);
            if !rule.is_some_and(|r| r.spec.subsets.iter().any(|s| &s.name == subset)) {
                let known = rule.map(|r| r.spec.subsets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
                let detail = match known {
                    Some(k) if !k.is_empty() => format!(" (DestinationRule subsets: {k})"),
                    Some(_) => " (its DestinationRule defines no subsets)".to_string(),
                    None => " (no DestinationRule for this host)".to_string(),
                };
                problems.push((
                    reason::UNKNOWN_SUBSET,
                    format!("spec.{field}.subset: {fqdn} has no subset {subset:?}{detail}"),
                ));
            }
        }
    }
    problems
}

/// Why a delegating rule of a VirtualService in `namespace` has no rules in force, if it has none: no delegate
/// (a VirtualService without hosts) of that name, or one not exported to the namespace.
fn delegate_problem(snapshot: &Snapshot, namespace: &str, delegate: &Delegate) -> Option<String> {
    let target_namespace = delegate.namespace.as_deref().unwrap_or(namespace);
    let named = |vs: &&VirtualServiceModel| vs.namespace == target_namespace && vs.name == delegate.name;
    let Some(found) = snapshot.virtual_services.iter().map(Arc::as_ref).find(named) else {
        return Some(format!("no VirtualService {target_namespace}/{}", delegate.name));
    };
    if !found.spec.hosts.is_empty() {
        return Some(format!(
            "VirtualService {target_namespace}/{} has hosts: only one without hosts is a delegate",
            delegate.name
        ));
    }
    found.visibility(namespace).is_none().then(|| {
        format!("VirtualService {target_namespace}/{} is not exported to namespace {namespace}", delegate.name)
    })
}

fn destination_rule_refs(
    snapshot: &Snapshot,
    namespace: &str,
    spec: &DestinationRuleSpec,
) -> Vec<(&'static str, String)> {
    let fqdn = snapshot.resolve_host(&spec.host, namespace);
    let mut problems = Vec::new();
    // A wildcard names the Services that match it, none or many, as a VirtualService's does.
    if !crate::index::is_wildcard(&fqdn) && !snapshot.services.contains_key(&fqdn) {
        problems.push((reason::UNKNOWN_HOST, format!("spec.host: no Service {fqdn}")));
    }
    for (path, tls) in spec.tls_settings() {
        let Some(name) = &tls.credential_name else { continue };
        // SIMPLE reads nothing but roots: verifying nothing, it needs nothing of the Secret.
        if tls.mode == weft_crds::destination_rule::TlsMode::Simple && !credentials::reads_roots(tls) {
            continue;
        }
        let revocation = || credentials::revocation_problem(&snapshot.credentials, namespace, name);
        let problem = credentials::problem(&snapshot.credentials, namespace, name, tls.mode)
            // The lists go with the roots: a rule verifying nothing (`insecureSkipVerify`) uses neither.
            .or_else(|| credentials::reads_roots(tls).then(revocation).flatten());
        if let Some(problem) = problem {
            let why = if snapshot.secrets_unread {
                " (this operator reads no Secrets: --read-secrets false, the chart's operator.readSecrets=false)"
            } else {
                ""
            };
            problems.push((reason::INVALID_CREDENTIAL, format!("{path}.credentialName: {problem}{why}")));
        }
    }
    problems
}

/// Every target reference of a workload policy in `namespace` naming no Service of that namespace.
fn target_refs(snapshot: &Snapshot, namespace: &str, spec: &impl WorkloadPolicy) -> Vec<(&'static str, String)> {
    spec.targets()
        .filter(|(_, target)| target_service(snapshot, namespace, target).is_none())
        .map(|(path, target)| {
            let named = target.namespace.as_deref().unwrap_or(namespace);
            let problem = match named == namespace {
                true => format!("{path}: no Service {named}/{}", target.name),
                false => format!("{path}: a policy may only target Services of its own namespace {namespace}"),
            };
            (reason::TARGET_NOT_FOUND, problem)
        })
        .collect()
}

/// Every unresolved reference of the snapshot's valid rules, one `(object, problem)` per field: what Kubernetes
/// mode reports as `ResolvedRefs: False`, for standalone mode to log.
pub fn unresolved_refs(snapshot: &Snapshot) -> BTreeSet<(ResourceKey, String)> {
    let resolved = |target: &StatusTarget| {
        target.conditions.iter().find(|c| c.type_ == RESOLVED_REFS && c.status == "False").map(|c| c.message.clone())
    };
    targets(snapshot)
        .into_iter()
        .filter_map(|target| resolved(&target).map(|message| (target.key, message)))
        .flat_map(|(key, message)| message.split("; ").map(|m| (key.clone(), m.to_string())).collect::<Vec<_>>())
        .collect()
}

/// Whether the object's current status differs from the target (timestamps aside).
pub fn needs_write(target: &StatusTarget) -> bool {
    let Some(current) = &target.current else { return true };
    current.observed_generation != target.generation
        || current.conditions.len() != target.conditions.len()
        || target.conditions.iter().any(|want| {
            current.condition(want.type_).is_none_or(|have| {
                have.status != want.status
                    || have.reason != want.reason
                    || have.message != want.message
                    || have.observed_generation != target.generation
            })
        })
}

/// The status to write at `now`: a condition keeps its `lastTransitionTime` while its status stays the same.
pub fn render(target: &StatusTarget, now: &Time) -> WeftStatus {
    let conditions = target
        .conditions
        .iter()
        .map(|want| {
            let previous = target.current.as_ref().and_then(|c| c.condition(want.type_));
            let since = match previous {
                Some(p) if p.status == want.status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: want.type_.to_string(),
                status: want.status.to_string(),
                reason: want.reason.to_string(),
                message: want.message.clone(),
                observed_generation: target.generation,
                last_transition_time: since,
            }
        })
        .collect();
    WeftStatus { observed_generation: target.generation, conditions }
}
