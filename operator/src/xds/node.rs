//! Who is on the other end of an ADS stream, from the node of its first request: the proxy (`node.id`) and
//! how much of the mesh it is sent. Only a client that says it can ask for virtual hosts on demand (node
//! metadata `WEFT_ON_DEMAND`, as `weft-proxy` does) is sent less than the whole mesh; Envoy and other xDS
//! clients, which would not ask, get everything. A client may state its own scope (`WEFT_PROXY_SCOPE`).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use weft_process::excerpt;
use weft_xds::{ON_DEMAND_METADATA_KEY, ProxyNode, ProxyScope, SCOPE_METADATA_KEY};

/// The scope a stream is served with, and why not the one the client stated, when it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub scope: ProxyScope,
    pub warning: Option<String>,
}

/// What a client reads beyond what every proxy does, from Envoy's `Node.client_features`: the operator sends the
/// newer shapes to such clients only, so proxies from before them keep getting what they understand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Listeners of ports declared TCP ([`weft_xds::detection::DECLARED_TCP_FEATURE`]).
    pub declared_tcp: bool,
}

impl Features {
    pub fn of(node: Option<&Node>) -> Self {
        let announced = |feature: &str| node.is_some_and(|n| n.client_features.iter().any(|f| f == feature));
        Self { declared_tcp: announced(weft_xds::detection::DECLARED_TCP_FEATURE) }
    }
}

/// The proxy and its scope; an error (for the client, in a few words) when the node does not say who it is.
pub fn identify(node: Option<&Node>, default: ProxyScope) -> Result<(ProxyNode, Scope), String> {
    let id = node.map(|n| n.id.as_str()).unwrap_or_default();
    if id.is_empty() {
        return Err("the first request of an ADS stream must carry node.id".to_string());
    }
    let proxy = ProxyNode::parse(id).map_err(|_| {
        format!("node.id {:?} is not sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local", excerpt(id))
    })?;
    let field = |key: &str| node.and_then(|n| n.metadata.as_ref()).and_then(|m| m.fields.get(key));
    if field(ON_DEMAND_METADATA_KEY).is_none() {
        return Ok((proxy, Scope { scope: ProxyScope::Mesh, warning: None }));
    }
    let scope = match field(SCOPE_METADATA_KEY).and_then(|v| v.kind.as_ref()) {
        None => Scope { scope: default, warning: None },
        Some(Kind::StringValue(stated)) => match stated.parse() {
            Ok(scope) => Scope { scope, warning: None },
            // A newer proxy may know scopes this operator does not: served, with the default.
            Err(e) => Scope {
                scope: default,
                warning: Some(format!("node.metadata.{SCOPE_METADATA_KEY}: {}; using {default}", excerpt(&e))),
            },
        },
        Some(_) => {
            let warning = format!("node.metadata.{SCOPE_METADATA_KEY} is not a string; using {default}");
            Scope { scope: default, warning: Some(warning) }
        }
    };
    Ok((proxy, scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};

    fn node(fields: &[(&str, Kind)]) -> Node {
        let fields = fields.iter().map(|(k, kind)| (k.to_string(), Value { kind: Some(kind.clone()) })).collect();
        let metadata = Some(Struct { fields });
        Node { id: "sidecar~~web-1.shop~shop.svc.cluster.local".into(), metadata, ..Default::default() }
    }

    fn text(value: &str) -> Kind {
        Kind::StringValue(value.into())
    }

    #[test]
    fn a_proxy_that_asks_on_demand_may_state_its_scope_and_others_get_the_mesh() {
        let scope = |n: &Node| identify(Some(n), ProxyScope::Namespace).map(|(_, scope)| scope);
        let on_demand = (ON_DEMAND_METADATA_KEY, text("vhds"));
        assert_eq!(scope(&node(std::slice::from_ref(&on_demand))).unwrap().scope, ProxyScope::Namespace, "the default");
        let stated = scope(&node(&[on_demand.clone(), (SCOPE_METADATA_KEY, text("on-demand"))])).unwrap();
        assert_eq!(stated, Scope { scope: ProxyScope::OnDemand, warning: None });
        assert_eq!(scope(&node(&[])).unwrap().scope, ProxyScope::Mesh, "a client that would not ask: everything");
        let typo = scope(&node(&[on_demand.clone(), (SCOPE_METADATA_KEY, text("meshh"))])).unwrap();
        assert_eq!(typo.scope, ProxyScope::Namespace, "an unknown scope is served with the default");
        assert!(typo.warning.is_some_and(|w| w.starts_with("node.metadata.WEFT_PROXY_SCOPE: unknown proxy scope")));
        assert!(scope(&node(&[on_demand, (SCOPE_METADATA_KEY, Kind::BoolValue(true))])).unwrap().warning.is_some());
        assert!(identify(None, ProxyScope::Mesh).is_err(), "no node");
    }

    #[test]
    fn a_proxy_announces_what_it_reads_in_client_features() {
        let mut announcing = node(&[]);
        assert_eq!(Features::of(Some(&announcing)), Features::default(), "a proxy from before the features");
        announcing.client_features = vec!["envoy.lb.does_not_support_overprovisioning".into()];
        assert!(!Features::of(Some(&announcing)).declared_tcp, "Envoy's own features say nothing of Weft's");
        announcing.client_features.push(weft_xds::detection::DECLARED_TCP_FEATURE.into());
        assert!(Features::of(Some(&announcing)).declared_tcp);
        assert_eq!(Features::of(None), Features::default());
    }
}
