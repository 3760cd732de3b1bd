//! The operator's debug API, read-only, on the metrics port (:9090) beside `/metrics`: what `weftctl
//! proxy-status` and `weftctl proxy-config` read. On Kubernetes it is reached through the API server's service
//! proxy (`/api/v1/namespaces/NS/services/weft-operator:metrics/proxy/debug/...`) or a port-forward.
//!
//! - `GET /debug/proxies`: every connected proxy and, per xDS type, what it was sent and how it answered
//!   ([`registry::ProxiesView`]).
//! - `GET /debug/config?proxy=POD.NAMESPACE` (or a node id): the resources the operator sends that proxy
//!   ([`ConfigView`]): exactly what its stream was last given when it is connected, else what it would be sent
//!   if it connected now. Resources are the protobuf bytes (base64) of each `Any`: the client decodes them, so
//!   the answer is Envoy's own format, not a rendering of it.

pub mod describe;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::{Deserialize, Serialize};
use weft_xds::{ProxyNode, ProxyScope, ResourceType};

use crate::index::published::SnapshotReceiver;
use crate::xds::resources::EncodedResources;
use crate::xds::shared::{Translations, Wanted};
use registry::{ProxiesView, Registry, unix_ms};

/// The answer of `/debug/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The node id the resources are for.
    pub proxy: String,
    /// Whether the proxy is connected (the resources are what its stream holds) or not (what it would get).
    pub connected: bool,
    /// The operator config they were translated from.
    pub config: u64,
    /// The pod's labels, as the operator knows them (what routes' `sourceLabels` are matched against).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub resources: Vec<ResourceView>,
}

/// One xDS resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceView {
    /// `CDS`, `EDS`, `LDS`, `RDS` or `VHDS`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub type_url: String,
    /// The `Any`'s value, base64 (standard alphabet, padded).
    pub value: String,
}

impl ResourceView {
    /// The resource's protobuf bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.value)
    }
}

/// What the debug API reads.
#[derive(Clone)]
pub struct DebugState {
    pub registry: Arc<Registry>,
    pub snapshots: SnapshotReceiver,
    /// The scope a proxy that states none is served with.
    pub default_scope: ProxyScope,
}

pub fn router(state: DebugState) -> Router {
    Router::new()
        .route(
            "/debug",
            get(|| async {
                "debug endpoints: GET /debug/proxies, /debug/config?proxy=POD.NAMESPACE, /debug/describe?pod=POD.NAMESPACE\n"
            }),
        )
        .route("/debug/proxies", get(proxies))
        .route("/debug/config", get(config))
        .route("/debug/describe", get(describe_pod))
        .with_state(state)
}

async fn proxies(State(state): State<DebugState>) -> impl IntoResponse {
    let config = state.snapshots.borrow().as_ref().map(|p| p.config).unwrap_or_default();
    let view =
        ProxiesView { now_unix_ms: unix_ms(std::time::SystemTime::now()), config, proxies: state.registry.proxies() };
    axum::Json(view)
}

#[derive(Debug, Deserialize)]
struct ConfigQuery {
    proxy: Option<String>,
}

async fn config(State(state): State<DebugState>, Query(query): Query<ConfigQuery>) -> Response {
    let Some(proxy) = query.proxy.filter(|p| !p.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "give the proxy: /debug/config?proxy=POD.NAMESPACE\n").into_response();
    };
    let node = match proxy_node(&proxy) {
        Ok(node) => node,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let Some(published) = state.snapshots.borrow().clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no config built yet\n").into_response();
    };
    let key = format!("{}/{}", node.namespace, node.pod_name);
    let labels = published.snapshot.pod_labels.get(&key).cloned().unwrap_or_default();
    if let Some((id, config, Some(resources))) = state.registry.resources_of(&node.namespace, &node.pod_name) {
        let view = ConfigView { proxy: id, connected: true, config, labels, resources: views(&resources) };
        return axum::Json(view).into_response();
    }
    if !published.snapshot.pod_labels.contains_key(&key) {
        let message = format!("no proxy of pod {key} is connected and the operator knows no such pod\n");
        return (StatusCode::NOT_FOUND, message).into_response();
    }
    // What a proxy of this operator's release would get (it reads listeners declared TCP).
    let wanted =
        Wanted { node: &node, scope: state.default_scope, on_demand: None, declared_tcp: true, verified: false };
    let resources = Translations::default().for_proxy(&published, wanted).await;
    let view = ConfigView {
        proxy: node.to_string(),
        connected: false,
        config: published.config,
        labels,
        resources: views(&resources),
    };
    axum::Json(view).into_response()
}

#[derive(Debug, Deserialize)]
struct DescribeQuery {
    pod: Option<String>,
}

async fn describe_pod(State(state): State<DebugState>, Query(query): Query<DescribeQuery>) -> Response {
    let node = match query.pod.as_deref().map(proxy_node) {
        Some(Ok(node)) => node,
        Some(Err(message)) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
        None => return (StatusCode::BAD_REQUEST, "give the pod: /debug/describe?pod=POD.NAMESPACE\n").into_response(),
    };
    let Some(published) = state.snapshots.borrow().clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no config built yet\n").into_response();
    };
    match describe::describe(&published.snapshot, &node.namespace, &node.pod_name) {
        Some(description) => axum::Json(description).into_response(),
        None => {
            let message = format!("the operator knows no pod {}/{}\n", node.namespace, node.pod_name);
            (StatusCode::NOT_FOUND, message).into_response()
        }
    }
}

/// The proxy named by a node id or `POD.NAMESPACE`.
fn proxy_node(text: &str) -> Result<ProxyNode, String> {
    if text.contains('~') {
        return ProxyNode::parse(text);
    }
    // A namespace is a DNS label (no dots); a pod name may have dots.
    match text.rsplit_once('.') {
        Some((pod, namespace)) if !pod.is_empty() && !namespace.is_empty() => {
            Ok(ProxyNode { pod_name: pod.to_string(), namespace: namespace.to_string(), ip: None })
        }
        _ => Err(format!("{text:?} is neither POD.NAMESPACE nor a node id")),
    }
}

/// Every resource, in push order then by name.
fn views(resources: &EncodedResources) -> Vec<ResourceView> {
    let engine = &base64::engine::general_purpose::STANDARD;
    ResourceType::ALL
        .into_iter()
        .filter_map(|kind| resources.of_type(kind).map(|of_type| (kind, of_type)))
        .flat_map(|(kind, of_type)| {
            of_type.map.iter().map(move |(name, any)| ResourceView {
                kind: kind.short_name().to_string(),
                name: name.clone(),
                type_url: any.type_url.clone(),
                value: engine.encode(redacted(kind, any).as_deref().unwrap_or(&any.value)),
            })
        })
        .collect()
}

/// A cluster's encoding with its inline private keys (a `credentialName` Secret's) redacted, when it has any: the
/// debug API is not the way to a key.
fn redacted(kind: ResourceType, any: &envoy_types::pb::google::protobuf::Any) -> Option<Vec<u8>> {
    use prost::Message;
    if kind != ResourceType::Cluster {
        return None;
    }
    let mut cluster = weft_xds::unpack::<envoy_types::pb::envoy::config::cluster::v3::Cluster>(any).ok()?;
    weft_xds::origination::redact_keys(&mut cluster).then(|| cluster.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_named_by_pod_and_namespace_or_by_node_id() {
        let by_pod = proxy_node("web-1.shop").unwrap();
        assert_eq!((by_pod.pod_name.as_str(), by_pod.namespace.as_str()), ("web-1", "shop"));
        let by_id = proxy_node("sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local").unwrap();
        assert_eq!(by_id.pod_name, "web-1");
        assert!(proxy_node("web-1").is_err());
        assert_eq!(proxy_node("web.v1.shop").unwrap().pod_name, "web.v1", "pod names may have dots");
    }
}
