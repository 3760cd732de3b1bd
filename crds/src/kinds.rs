//! Every Weft CRD kind, registered once: its group, names, spec check and CRD manifest. The operator's decoding,
//! the validating webhook and `crdgen` all read this table, so a new kind is added here and nowhere else in
//! this crate.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::field_path::FieldError;
use crate::spec::{
    authorization_policy_spec, destination_rule_spec, peer_authentication_spec, rate_limit_spec, virtual_service_spec,
};
use crate::{AuthorizationPolicy, DestinationRule, HttpLocalRateLimitPolicy, PeerAuthentication, VirtualService};

/// One Weft CRD kind.
#[derive(Debug)]
pub struct CrdKind {
    pub group: &'static str,
    pub version: &'static str,
    /// `apiVersion` as written in YAML: `group/version`.
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// The mesh the kind comes from (`Istio`, `Linkerd`) and the group it keeps the kind in, for a hint when a
    /// user forgets to change `apiVersion`.
    pub origin: (&'static str, &'static str),
    /// Every problem of a `spec`, or the spec as checked (fields Weft does not know left out).
    pub check: fn(&Value) -> Result<Value, Vec<FieldError>>,
    /// The CustomResourceDefinition, as `crdgen` writes it.
    pub crd: fn() -> CustomResourceDefinition,
}

/// Every Weft CRD kind, in the order the manifests are written.
pub const ALL: [CrdKind; 5] = [
    CrdKind {
        group: crate::GROUP,
        version: crate::VERSION,
        api_version: crate::API_VERSION,
        kind: "VirtualService",
        plural: "virtualservices",
        origin: ("Istio", "networking.istio.io"),
        check: |spec| reserialize(virtual_service_spec(spec)),
        crd: VirtualService::crd,
    },
    CrdKind {
        group: crate::GROUP,
        version: crate::VERSION,
        api_version: crate::API_VERSION,
        kind: "DestinationRule",
        plural: "destinationrules",
        origin: ("Istio", "networking.istio.io"),
        check: |spec| reserialize(destination_rule_spec(spec)),
        crd: DestinationRule::crd,
    },
    CrdKind {
        group: crate::SECURITY_GROUP,
        version: crate::VERSION,
        api_version: crate::SECURITY_API_VERSION,
        kind: "PeerAuthentication",
        plural: "peerauthentications",
        origin: ("Istio", "security.istio.io"),
        check: |spec| reserialize(peer_authentication_spec(spec)),
        crd: PeerAuthentication::crd,
    },
    CrdKind {
        group: crate::SECURITY_GROUP,
        version: crate::VERSION,
        api_version: crate::SECURITY_API_VERSION,
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
        origin: ("Istio", "security.istio.io"),
        check: |spec| reserialize(authorization_policy_spec(spec)),
        crd: AuthorizationPolicy::crd,
    },
    CrdKind {
        group: crate::SECURITY_GROUP,
        version: crate::VERSION,
        api_version: crate::SECURITY_API_VERSION,
        kind: "HTTPLocalRateLimitPolicy",
        plural: "httplocalratelimitpolicies",
        origin: ("Linkerd", "policy.linkerd.io"),
        check: |spec| reserialize(rate_limit_spec(spec)),
        crd: HttpLocalRateLimitPolicy::crd,
    },
];

/// The kind of that `apiVersion` and `kind`, if it is a Weft CRD.
pub fn by_api_version(api_version: &str, kind: &str) -> Option<&'static CrdKind> {
    ALL.iter().find(|k| k.api_version == api_version && k.kind == kind)
}

/// The kind of that group, version and kind, if it is a Weft CRD.
pub fn by_gvk(group: &str, version: &str, kind: &str) -> Option<&'static CrdKind> {
    ALL.iter().find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The Weft kind an Istio (or Linkerd) `apiVersion` and `kind` correspond to: a user who copied their YAML.
pub fn foreign_counterpart(api_version: &str, kind: &str) -> Option<&'static CrdKind> {
    let group = api_version.split_once('/').map_or(api_version, |(group, _)| group);
    ALL.iter().find(|k| k.origin.1 == group && k.kind == kind)
}

fn reserialize<T: Serialize>(checked: Result<T, Vec<FieldError>>) -> Result<Value, Vec<FieldError>> {
    let spec = checked?;
    serde_json::to_value(spec).map_err(|e| vec![FieldError::new("spec", e.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_matches_its_generated_crd() {
        for kind in &ALL {
            let crd = (kind.crd)();
            assert_eq!(crd.spec.group, kind.group);
            assert_eq!(crd.spec.names.kind, kind.kind);
            assert_eq!(crd.spec.names.plural, kind.plural);
            assert_eq!(kind.api_version, format!("{}/{}", kind.group, kind.version));
            assert!(crd.spec.versions.iter().any(|v| v.name == kind.version), "{}", kind.kind);
        }
    }
}
