//! `HTTPLocalRateLimitPolicy` (`security.weft.dev/v1alpha1`, Linkerd's `policy.linkerd.io` model): how many HTTP
//! requests per second a workload's sidecar lets through to the application, in total and per calling
//! identity, with overrides for named callers; over a limit a request is answered `429` (gRPC:
//! `RESOURCE_EXHAUSTED`) by the sidecar at once.
//!
//! Where it applies, as an AuthorizationPolicy: with a `selector`, the pods of its namespace carrying those
//! labels; with `targetRefs`, the pods the named Services select; with neither, every pod of its namespace. With
//! `port`, only requests to that workload port; without, requests to every port, counted together. Where several
//! apply to one port, the first in namespace/name order wins, a policy naming the port before one that does not.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::authorization_policy::{PolicyTargetReference, WorkloadPolicy};
use crate::destination_rule::WorkloadSelector;
use crate::status::WeftStatus;

/// Request rate limits for the selected workloads' inbound HTTP.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.weft.dev",
    version = "v1alpha1",
    kind = "HTTPLocalRateLimitPolicy",
    plural = "httplocalratelimitpolicies",
    shortname = "rl",
    category = "weft",
    namespaced,
    derive = "PartialEq",
    status = "WeftStatus",
    printcolumn = r#"{"name":"Total","type":"integer","description":"Requests per second in total","jsonPath":".spec.total.requestsPerSecond"}"#,
    printcolumn = r#"{"name":"Identity","type":"integer","description":"Requests per second per caller","jsonPath":".spec.identity.requestsPerSecond"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","description":"Whether Weft accepted it","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpLocalRateLimitPolicySpec {
    /// The pods it applies to, by label; without it (and without `targetRefs`), every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Services of this namespace whose pods it applies to (`kind: Service`, group `""` or `core`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The single form of `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The workload (container) port whose requests it limits; every port when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The limit on every request, whoever sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Limit>,
    /// The limit on each calling identity's requests, each identity counted on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Limit>,
    /// Limits for named callers, in place of `identity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    pub requests_per_second: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Override {
    pub requests_per_second: u32,
    /// The callers, by the ServiceAccount their workload runs as.
    pub client_refs: Vec<ClientRef>,
}

/// A caller: `kind: ServiceAccount`, in the policy's namespace unless `namespace` says otherwise.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kind under a Rust name (the derive names the type after the kind, Linkerd's capitals and all).
pub type HttpLocalRateLimitPolicy = HTTPLocalRateLimitPolicy;

impl WorkloadPolicy for HttpLocalRateLimitPolicySpec {
    fn selector(&self) -> Option<&WorkloadSelector> {
        self.selector.as_ref()
    }

    fn target_refs(&self) -> &[PolicyTargetReference] {
        &self.target_refs
    }

    fn target_ref(&self) -> Option<&PolicyTargetReference> {
        self.target_ref.as_ref()
    }
}

impl ClientRef {
    /// Whether it names a ServiceAccount (the only kind of caller a limit can name).
    pub fn is_service_account(&self) -> bool {
        self.kind == "ServiceAccount" && (self.group.is_empty() || self.group == "core")
    }
}
