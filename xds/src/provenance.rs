//! Which Weft resource produced an xDS route or cluster, carried in the resource's own metadata the way Istio
//! does (`metadata.filter_metadata.istio.config`), under Weft's key: `filter_metadata.weft.config` holds the
//! resource's API path, `/apis/networking.weft.dev/v1alpha1/namespaces/NS/virtual-service/NAME`. The operator
//! writes it; `weftctl proxy-config` and the debug API read it back. Proxies ignore it.

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};

/// The `filter_metadata` key Weft writes under.
pub const METADATA_KEY: &str = "weft";
/// The field naming the resource.
const CONFIG_FIELD: &str = "config";
const GROUP_VERSION: &str = "networking.weft.dev/v1alpha1";

/// The Weft kinds that produce routes and clusters, as their API path spells them (Istio's kebab-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    VirtualService,
    DestinationRule,
}

impl ConfigKind {
    fn path_segment(self) -> &'static str {
        match self {
            Self::VirtualService => "virtual-service",
            Self::DestinationRule => "destination-rule",
        }
    }
}

/// Metadata naming the resource `namespace/name` of `kind` as the origin of the route or cluster it is put on.
pub fn config_metadata(kind: ConfigKind, namespace: &str, name: &str) -> Metadata {
    let path = format!("/apis/{GROUP_VERSION}/namespaces/{namespace}/{}/{name}", kind.path_segment());
    let field = Value { kind: Some(Kind::StringValue(path)) };
    let weft = Struct { fields: [(CONFIG_FIELD.to_string(), field)].into() };
    Metadata { filter_metadata: [(METADATA_KEY.to_string(), weft)].into(), ..Default::default() }
}

/// The API path of the resource that produced a route or cluster, if its metadata names one.
pub fn config_of(metadata: Option<&Metadata>) -> Option<&str> {
    let field = metadata?.filter_metadata.get(METADATA_KEY)?.fields.get(CONFIG_FIELD)?;
    match field.kind.as_ref()? {
        Kind::StringValue(path) => Some(path),
        _ => None,
    }
}

/// `namespace/name (Kind)` of an API path written by [`config_metadata`], for a table cell; the path itself when
/// it is not one.
pub fn short_config(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["apis", _group, _version, "namespaces", namespace, kind, name] => format!("{kind}/{namespace}/{name}"),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_written_is_read_back() {
        let metadata = config_metadata(ConfigKind::DestinationRule, "shop", "reviews");
        let path = config_of(Some(&metadata)).unwrap();
        assert_eq!(path, "/apis/networking.weft.dev/v1alpha1/namespaces/shop/destination-rule/reviews");
        assert_eq!(short_config(path), "destination-rule/shop/reviews");
        assert_eq!(config_of(None), None);
        assert_eq!(config_of(Some(&Metadata::default())), None);
    }
}
