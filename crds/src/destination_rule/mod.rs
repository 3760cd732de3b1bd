//! `DestinationRule`: named subsets of a Service's endpoints and how traffic to them is handled (Istio field names):
//! balancing here, connection pools, outlier detection and retry budget in [`policy`], TLS in [`tls`].

pub mod locality;
pub mod policy;
pub mod tls;

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::policy::{ConnectionPoolSettings, HttpSettings, OutlierDetection, RetryBudget, TcpSettings};
pub use self::tls::{ClientTlsSettings, TlsMode};
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
    /// The Service: short name (this resource's namespace), `name.namespace`, FQDN, or a wildcard
    /// (`*.bank.svc.cluster.local`, `*.example.com`, `*`) for every Service whose FQDN it matches; the rule naming
    /// a Service exactly wins over a wildcard one, a longer wildcard over a shorter one.
    pub host: String,
    /// Policy for all traffic to the host; a subset's own policy overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the Service's endpoints, selected by pod labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Namespaces whose proxies may apply this rule: `.` (its own), `*` (every namespace, the default when empty)
    /// or namespace names. A proxy looks a host's rule up in its own namespace, then the Service's, then the root
    /// namespace (Istio's lookup order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// The pods of this rule's namespace whose proxies apply it, ahead of any rule without a selector (Istio);
    /// `exportTo` then does not matter. Unset: the namespaces `exportTo` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

/// Pods of the rule's namespace, by labels.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a pod must carry, every one of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// How traffic to the host (or a subset) is handled.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Limits on connections and requests to the host; over them the proxy answers `503` at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejecting endpoints that keep failing, for a growing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// How many retries may be in flight, as a share of the requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// TLS to the host (see [`tls`]); unset: auto mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides of this policy's settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Not supported by Weft yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "policy::free_form")]
    pub tunnel: Option<serde_json::Value>,
    /// Not supported by Weft yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "policy::free_form")]
    pub proxy_protocol: Option<serde_json::Value>,
}

/// A policy for one port of the host: each setting it has replaces the enclosing policy's for that port.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    pub port: Option<crate::PortSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Load-balancing algorithm. Unset: power-of-two-choices over peak-EWMA latency (Weft's default).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Sticky balancing: requests with the same key (a header, a cookie, a query parameter) go to the same
    /// endpoint while it is there. Not with `simple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<policy::ConsistentHash>,
    /// Locality-aware balancing: stay in the client's zone and region while they have healthy endpoints (with
    /// `outlierDetection`), or split by `distribute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<locality::LocalityLbSetting>,
    /// Slow start: a new endpoint's share of requests grows over this warmup (round robin and least request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<policy::Warmup>,
    /// Deprecated form of `warmup.duration`, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<String>,
}

impl LoadBalancerSettings {
    /// The warmup asked for, from `warmup` or the deprecated `warmupDurationSecs`: `(duration, minimumPercent,
    /// aggression)`.
    pub fn warmup_settings(&self) -> Option<(&str, Option<f64>, Option<f64>)> {
        match (&self.warmup, &self.warmup_duration_secs) {
            (Some(w), _) => Some((w.duration.as_str(), w.minimum_percent, w.aggression)),
            (None, Some(duration)) => Some((duration.as_str(), None, None)),
            (None, None) => None,
        }
    }
}

/// Istio's `simple` load balancer names that Weft supports.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Istio's UNSPECIFIED: the proxy's default (peak-EWMA power of two choices).
    Unspecified,
    RoundRobin,
    LeastRequest,
    /// Istio's older name of LEAST_REQUEST.
    LeastConn,
    Random,
    /// Not supported by Weft yet.
    Passthrough,
}

/// A named group of the host's endpoints.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
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
