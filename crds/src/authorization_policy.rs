//! `AuthorizationPolicy` (`security.weft.dev/v1alpha1`, Istio's `security.istio.io/v1` fields): who may call a
//! workload, and how, enforced by its sidecar's inbound side.
//!
//! Where it applies (Istio's): with a `selector`, to the pods of its namespace carrying those labels (of every
//! namespace, when it lives in the root namespace); with `targetRefs`, to the pods the named Services select;
//! with neither, to every pod of its namespace (of the mesh, in the root namespace). A `DENY` policy that
//! matches denies; when any `ALLOW` policy applies, a request none matches is denied; `AUDIT` only reports.
//! The annotation `weft.dev/dry-run: "true"` (or Istio's `istio.io/dry-run`) evaluates a policy and reports
//! what it would decide, without enforcing it.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::destination_rule::WorkloadSelector;
use crate::status::WeftStatus;

/// Annotations that make a policy a dry run (Weft's, and Istio's for copied YAML).
pub const DRY_RUN_ANNOTATIONS: [&str; 2] = ["weft.dev/dry-run", "istio.io/dry-run"];

/// Access control for the selected workloads' inbound requests and connections.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.weft.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    shortname = "ap",
    category = "weft",
    namespaced,
    derive = "PartialEq",
    status = "WeftStatus",
    printcolumn = r#"{"name":"Action","type":"string","description":"What a match does","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","description":"Whether Weft accepted it","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// The pods it applies to, by label; without it (and without `targetRefs`), every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Services of this namespace whose pods it applies to (`kind: Service`, group `""` or `core`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Istio's older single form of `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The rules; a request matching any one matches the policy. No rules: an `ALLOW` policy allows nothing,
    /// other actions match nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    /// What a match does: `ALLOW` (the default), `DENY` or `AUDIT`. (`CUSTOM`, an external authorizer, is
    /// refused.)
    #[serde(default)]
    pub action: AuthorizationAction,
}

/// A Service the policy attaches to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    /// Must be the policy's own namespace when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    #[default]
    Allow,
    Deny,
    Audit,
    /// An external authorizer (refused by validation: Weft has none).
    Custom,
}

/// One rule: it matches when one of `from` matches (or there is none), one of `to` does (or there is none),
/// and every `when` condition does.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<From>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<To>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct From {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct To {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who calls: every field given must match (a value of the list, or none of the `not` list).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities from mutual TLS, as `<trust-domain>/ns/<namespace>/sa/<account>`; `*` wildcards at
    /// the start or end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// The peer identity's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// The peer's address: IPs or CIDR ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// The original client's address; the same as `ipBlocks` here (no trusted proxy hops are configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// What is asked: every field given must match. `hosts`, `methods` and `paths` are HTTP's.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// The request's host (case-insensitive); `*` wildcards at the start or end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// The workload port the connection was addressed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// The request's path without the query; `*` wildcards at the start or end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// An extra condition: `key` is one of `source.ip`, `remote.ip`, `source.namespace`, `source.principal`,
/// `destination.port`, `request.headers[<name>]`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// A policy that chooses workloads by `selector` or by Service (`targetRefs`, `targetRef`): AuthorizationPolicy
/// and HTTPLocalRateLimitPolicy.
pub trait WorkloadPolicy {
    fn selector(&self) -> Option<&WorkloadSelector>;
    fn target_refs(&self) -> &[PolicyTargetReference];
    fn target_ref(&self) -> Option<&PolicyTargetReference>;

    /// The labels a pod must carry for the policy to apply by selector; `None` without one (an empty
    /// `matchLabels` selects every pod, as in Istio).
    fn workload_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.selector().map(|s| &s.match_labels).filter(|labels| !labels.is_empty())
    }

    /// Every target reference, of both forms, with its field path.
    fn targets(&self) -> impl Iterator<Item = (String, &PolicyTargetReference)> + Clone {
        let refs = self.target_refs().iter().enumerate().map(|(i, t)| (format!("spec.targetRefs[{i}]"), t));
        refs.chain(self.target_ref().map(|t| ("spec.targetRef".to_string(), t)))
    }
}

impl WorkloadPolicy for AuthorizationPolicySpec {
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

impl PolicyTargetReference {
    /// Whether it names a Service (the only kind a sidecar policy attaches to).
    pub fn is_service(&self) -> bool {
        self.kind == "Service" && (self.group.is_empty() || self.group == "core")
    }
}

/// A value with Istio's wildcards: `*` alone, or at the start or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wildcard<'a> {
    /// `*`: any (non-empty) value.
    Any,
    Exact(&'a str),
    /// `abc*`.
    Prefix(&'a str),
    /// `*abc`.
    Suffix(&'a str),
}

impl<'a> Wildcard<'a> {
    /// The value's pattern; `None` when a `*` is elsewhere (Istio refuses those).
    pub fn of(value: &'a str) -> Option<Self> {
        if value == "*" {
            return Some(Self::Any);
        }
        let pattern = if let Some(rest) = value.strip_suffix('*') {
            Self::Prefix(rest)
        } else if let Some(rest) = value.strip_prefix('*') {
            Self::Suffix(rest)
        } else {
            Self::Exact(value)
        };
        let inner = match pattern {
            Self::Prefix(s) | Self::Suffix(s) | Self::Exact(s) => s,
            Self::Any => "",
        };
        (!inner.contains('*')).then_some(pattern)
    }
}

/// The keys of `when` conditions Weft evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionKey<'a> {
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    DestinationPort,
    /// `request.headers[<name>]`.
    RequestHeader(&'a str),
}

impl<'a> ConditionKey<'a> {
    /// The key, or why it is not supported.
    pub fn parse(key: &'a str) -> Result<Self, String> {
        Ok(match key {
            "source.ip" => Self::SourceIp,
            "remote.ip" => Self::RemoteIp,
            "source.namespace" => Self::SourceNamespace,
            "source.principal" => Self::SourcePrincipal,
            "destination.port" => Self::DestinationPort,
            _ => {
                if let Some(name) = key.strip_prefix("request.headers[").and_then(|k| k.strip_suffix(']')) {
                    if name.is_empty() || http_header_name(name).is_none() {
                        return Err(format!("{key:?} does not name a valid HTTP header"));
                    }
                    return Ok(Self::RequestHeader(name));
                }
                if key.starts_with("request.auth.") {
                    return Err(format!(
                        "{key:?} needs JWT authentication (RequestAuthentication), which Weft does not support yet"
                    ));
                }
                return Err(format!(
                    "{key:?} is not supported by Weft (supported: source.ip, remote.ip, source.namespace, \
                     source.principal, destination.port, request.headers[<name>])"
                ));
            }
        })
    }

    /// Whether only an HTTP request has it.
    pub fn is_http_only(self) -> bool {
        matches!(self, Self::RequestHeader(_))
    }
}

fn http_header_name(name: &str) -> Option<()> {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)).then_some(())
}

/// An address or range of `ipBlocks` and `source.ip`: `10.0.0.1` or `10.0.0.0/8`; the address and prefix
/// length, or `None` when it is neither.
pub fn ip_block(value: &str) -> Option<(std::net::IpAddr, u8)> {
    let (address, len) = match value.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (value, None),
    };
    let address: std::net::IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((address, len))
}

/// A port of `ports` and `destination.port`: 1 to 65535.
pub fn port_number(value: &str) -> Option<u16> {
    value.parse::<u16>().ok().filter(|p| *p != 0)
}
