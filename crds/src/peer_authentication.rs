//! `PeerAuthentication` (`security.weft.dev/v1alpha1`, Istio's `security.istio.io/v1` fields): whether a
//! workload's sidecar accepts plaintext, mutual TLS, or both on its inbound side.
//!
//! Precedence (Istio's): a policy with a `selector` matching the pod, else its namespace's policy without one,
//! else the mesh-wide policy (no selector, in the root namespace: the operator's own), else `PERMISSIVE`. Where
//! several apply at one level the oldest wins. `UNSET` inherits from the level above; `portLevelMtls` (with a
//! selector only) overrides the mode for the workload's own (container) ports.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::destination_rule::WorkloadSelector;
use crate::status::WeftStatus;

/// Mutual TLS requirements for connections into the selected workloads.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.weft.dev",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    plural = "peerauthentications",
    shortname = "pa",
    category = "weft",
    namespaced,
    derive = "PartialEq",
    status = "WeftStatus",
    printcolumn = r#"{"name":"Mode","type":"string","description":"The workload-level mode","jsonPath":".spec.mtls.mode"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","description":"Whether Weft accepted it","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// The pods of this namespace it applies to; without one it applies to the whole namespace (or, in the root
    /// namespace, to the whole mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The mode for every port of the workloads, unless `portLevelMtls` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Per workload (container) port number: its own mode. Only with a `selector`. (Keys are strings in
    /// JSON; a map with integer keys would need `patternProperties`, which a structural schema forbids.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<String, MutualTls>,
}

/// One mode.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    #[serde(default)]
    pub mode: MtlsMode,
}

/// Istio's modes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the level above (`PERMISSIVE` at the top).
    #[default]
    Unset,
    /// Plaintext only: mutual TLS is not terminated (and clients send plaintext to these workloads).
    Disable,
    /// Mutual TLS and plaintext both, told apart by the first bytes.
    Permissive,
    /// Mutual TLS only: a plaintext connection is closed before any byte reaches the application.
    Strict,
}

impl PeerAuthenticationSpec {
    /// The labels a pod must carry for this policy to be its workload policy; `None` for a namespace-wide (or
    /// mesh-wide) policy. An empty `matchLabels` selects nothing in particular: namespace-wide, as in Istio.
    pub fn workload_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.selector.as_ref().map(|s| &s.match_labels).filter(|labels| !labels.is_empty())
    }

    /// The port-level modes with a valid port number (validation refuses the others).
    pub fn port_modes(&self) -> impl Iterator<Item = (u16, MtlsMode)> + '_ {
        self.port_level_mtls.iter().filter_map(|(port, level)| Some((valid_port(port)?, level.mode)))
    }
}

/// A port number of `portLevelMtls`: 1 to 65535.
pub fn valid_port(key: &str) -> Option<u16> {
    key.parse::<u16>().ok().filter(|port| *port != 0)
}
