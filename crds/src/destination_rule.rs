//! `DestinationRule`: named subsets of a Service's endpoints and how traffic to them is balanced (Istio field names).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::WeftStatus;

/// Policies for traffic to `host` after routing: subsets and load balancing.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.weft.dev",
    version = "v1alpha1",
    kind = "DestinationRule",
    plural = "destinationrules",
    shortname = "dr",
    category = "weft",
    namespaced,
    derive = "PartialEq",
    status = "WeftStatus",
    printcolumn = r#"{"name":"Host","type":"string","description":"The Service this applies to","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","description":"Whether Weft accepted it","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Resolved","type":"string","description":"Whether every referenced host and subset exists","jsonPath":".status.conditions[?(@.type==\"ResolvedRefs\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    /// The Service: short name (this resource's namespace), `name.namespace`, or FQDN.
    pub host: String,
    /// Policy for all traffic to the host; a subset's own policy overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the Service's endpoints, selected by pod labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

/// Traffic policy; Weft supports load balancing here so far.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
}

/// Load-balancing algorithm. Unset: power-of-two-choices over peak-EWMA latency (Weft's default).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
}

/// Istio's `simple` load balancer names that Weft supports.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Istio's UNSPECIFIED: the proxy's default (peak-EWMA power of two choices).
    Unspecified,
    RoundRobin,
    LeastRequest,
    Random,
}

/// A named group of the host's endpoints.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Name used by VirtualService destinations (`destination.subset`).
    pub name: String,
    /// Pod labels an endpoint must carry to belong to the subset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Overrides the rule's traffic policy for this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}
