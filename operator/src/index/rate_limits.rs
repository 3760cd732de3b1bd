//! HTTPLocalRateLimitPolicy in the snapshot, and which apply to a workload: scoped as AuthorizationPolicies are
//! ([`super::authz::PolicyScope`]). Pure.

use std::collections::BTreeMap;

use weft_crds::authorization_policy::WorkloadPolicy;
use weft_crds::{HttpLocalRateLimitPolicy, HttpLocalRateLimitPolicySpec, WeftStatus};

use super::authz::PolicyScope;
use super::build::namespace_of;
use super::snapshot::Snapshot;

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitPolicyModel {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status the object carries now.
    pub status: Option<WeftStatus>,
    pub spec: HttpLocalRateLimitPolicySpec,
}

impl RateLimitPolicyModel {
    pub fn of(policy: &HttpLocalRateLimitPolicy) -> Self {
        Self {
            namespace: namespace_of(&policy.metadata.namespace),
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            status: policy.status.clone(),
            spec: policy.spec.clone(),
        }
    }

    /// Equal but for what only status reports (status, generation).
    pub fn same_config(&self, other: &Self) -> bool {
        (&self.namespace, &self.name, &self.spec) == (&other.namespace, &other.name, &other.spec)
    }
}

/// The policies that apply to a pod in `namespace` with `labels`, in namespace/name order.
pub fn rate_limits_for<'a>(
    snapshot: &'a Snapshot,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<&'a RateLimitPolicyModel> {
    let covers = |p: &&RateLimitPolicyModel| {
        let scope = PolicyScope {
            namespace: &p.namespace,
            labels: p.spec.workload_labels(),
            targets: p.spec.targets().map(|(_, t)| t),
        };
        scope.covers(snapshot, namespace, labels)
    };
    snapshot.rate_limit_policies.iter().filter(covers).collect()
}
