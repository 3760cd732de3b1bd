//! Every kind the operator reads, registered once: its `apiVersion` and name, how a checked document becomes a
//! typed [`Resource`], and (for Weft's own kinds) the CRD entry in [`weft_crds::kinds`] that checks its spec and
//! names its API resource. Decoding, the Kubernetes watches and status writing all read this table.

use std::sync::Arc;

use serde_json::Value;
use weft_crds::FieldError;
use weft_crds::kinds::CrdKind;
use weft_crds::parse::from_value;

use super::{Kind, Resource};

/// One kind the operator reads.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    pub api_version: &'static str,
    pub name: &'static str,
    /// The typed object from a document whose spec (for a Weft kind) has been checked already.
    pub wrap: fn(Value) -> Result<Resource, FieldError>,
    /// Whether its status carries `ResolvedRefs` (it names hosts, subsets or ports that may not exist).
    pub resolves_refs: bool,
}

/// Every kind, in [`Kind`] order.
pub const KINDS: [KindInfo; 10] = [
    KindInfo {
        kind: Kind::Service,
        api_version: "v1",
        name: "Service",
        wrap: |v| from_value(v).map(|object| Resource::Service(Arc::new(object))),
        resolves_refs: false,
    },
    KindInfo {
        kind: Kind::Pod,
        api_version: "v1",
        name: "Pod",
        wrap: |v| from_value(v).map(|object| Resource::Pod(Arc::new(object))),
        resolves_refs: false,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        api_version: "discovery.k8s.io/v1",
        name: "EndpointSlice",
        wrap: |v| from_value(v).map(|object| Resource::EndpointSlice(Arc::new(object))),
        resolves_refs: false,
    },
    KindInfo {
        kind: Kind::VirtualService,
        api_version: weft_crds::API_VERSION,
        name: "VirtualService",
        wrap: |v| from_value(v).map(|object| Resource::VirtualService(Arc::new(object))),
        resolves_refs: true,
    },
    KindInfo {
        kind: Kind::DestinationRule,
        api_version: weft_crds::API_VERSION,
        name: "DestinationRule",
        wrap: |v| from_value(v).map(|object| Resource::DestinationRule(Arc::new(object))),
        resolves_refs: true,
    },
    KindInfo {
        kind: Kind::PeerAuthentication,
        api_version: weft_crds::SECURITY_API_VERSION,
        name: "PeerAuthentication",
        wrap: |v| from_value(v).map(|object| Resource::PeerAuthentication(Arc::new(object))),
        resolves_refs: false,
    },
    KindInfo {
        kind: Kind::AuthorizationPolicy,
        api_version: weft_crds::SECURITY_API_VERSION,
        name: "AuthorizationPolicy",
        wrap: |v| from_value(v).map(|object| Resource::AuthorizationPolicy(Arc::new(object))),
        resolves_refs: true,
    },
    KindInfo {
        kind: Kind::HttpLocalRateLimitPolicy,
        api_version: weft_crds::SECURITY_API_VERSION,
        name: "HTTPLocalRateLimitPolicy",
        wrap: |v| from_value(v).map(|object| Resource::HttpLocalRateLimitPolicy(Arc::new(object))),
        resolves_refs: true,
    },
    KindInfo {
        kind: Kind::Node,
        api_version: "v1",
        name: "Node",
        // Only the labels are kept: a node's status (images, conditions) is large and of no use here.
        wrap: |v| {
            from_value::<k8s_openapi::api::core::v1::Node>(v).map(|node| {
                Resource::Node(Arc::new(k8s_openapi::api::core::v1::Node {
                    metadata: node.metadata,
                    ..Default::default()
                }))
            })
        },
        resolves_refs: false,
    },
    KindInfo {
        kind: Kind::Secret,
        api_version: "v1",
        name: "Secret",
        // Only the certificates `credentialName` may name: nothing else of a Secret is held in memory.
        wrap: |v| from_value(v).map(|secret| Resource::Secret(Arc::new(crate::index::credentials::held(secret)))),
        resolves_refs: false,
    },
];

impl KindInfo {
    /// The kind of that `apiVersion` and `kind`, if the operator reads it.
    pub fn find(api_version: &str, name: &str) -> Option<&'static KindInfo> {
        KINDS.iter().find(|k| k.api_version == api_version && k.name == name)
    }

    /// Its CRD entry, for Weft's own kinds.
    pub fn crd(&self) -> Option<&'static CrdKind> {
        weft_crds::kinds::by_api_version(self.api_version, self.name)
    }
}

impl Kind {
    /// Its entry in [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        // KINDS is in Kind order, which a test checks.
        &KINDS[self as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_kind_order_and_every_weft_kind_has_its_crd() {
        for (i, info) in KINDS.iter().enumerate() {
            assert_eq!(info.kind as usize, i, "{:?}", info.kind);
            assert_eq!(info.kind.info().name, info.name);
            assert_eq!(info.crd().is_some(), info.api_version.contains(".weft.dev/"), "{}", info.name);
        }
        assert_eq!(KINDS.iter().filter(|k| k.crd().is_some()).count(), weft_crds::kinds::ALL.len());
    }
}
