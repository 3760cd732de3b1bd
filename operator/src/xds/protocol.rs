//! What the ADS server's stream loop needs from a protocol variant, state of the world ([`super::sotw`]) or
//! incremental ([`super::delta`]): both are pure state machines, requests and new resources in, responses out.
//! Also what both share: the answers a proxy gives, and the clusters a change removes but that must outlive
//! the routes that still use them (make-before-break).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use weft_xds::ResourceType;

use super::resources::{EncodedResources, ResourceMap};

/// One variant of the ADS protocol, as the stream loop drives it.
pub trait Protocol: Default + Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;

    /// The node of a request; the first request of a stream must carry it.
    fn node(request: &Self::Request) -> Option<&Node>;
    /// Handles a request from the proxy.
    fn on_request(&mut self, request: &Self::Request) -> Step<Self::Response>;
    /// Takes a new set of resources for this proxy and returns the pushes it causes.
    fn on_resources(&mut self, resources: Arc<EncodedResources>) -> Vec<Self::Response>;
    /// The type a response carries, for metrics and logs.
    fn kind(response: &Self::Response) -> Option<ResourceType>;
    /// What the debug API shows of a response: its nonce, the type's version (empty where the protocol has
    /// none) and how many resources it carries.
    fn sent(response: &Self::Response) -> (&str, &str, usize);
    /// The nonce of the response a request answers (empty for none).
    fn response_nonce(request: &Self::Request) -> &str;
    /// The protocol's name for the debug API.
    const NAME: &'static str;

    /// Whether a proxy can ask for virtual hosts on demand (VHDS) over this protocol: only then is it sent less
    /// than the whole mesh.
    const ON_DEMAND: bool;
    /// The on-demand names the proxy will be subscribed to once `request` is handled, when it changes them: the
    /// stream translates those before handling the request, so the answer to a subscription carries them.
    fn on_demand_after(&self, _request: &Self::Request) -> Option<BTreeSet<String>> {
        None
    }
}

/// What a request told us, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ack { kind: ResourceType, version: String },
    Nack { kind: ResourceType, version: String, message: String },
}

/// The outcome of handling one request.
#[derive(Debug)]
pub struct Step<R> {
    pub responses: Vec<R>,
    pub answer: Option<Answer>,
    /// The request was unusable (unknown type, stale nonce); the reason, for a debug log.
    pub ignored: Option<String>,
}

impl<R> Default for Step<R> {
    fn default() -> Self {
        Self { responses: Vec::new(), answer: None, ignored: None }
    }
}

/// The type a request is about; a step that ignores the request when it is no type Weft serves.
pub fn requested_type<R>(type_url: &str) -> Result<ResourceType, Step<R>> {
    ResourceType::from_type_url(type_url)
        .ok_or_else(|| Step { ignored: Some(format!("unsupported type {type_url:?}")), ..Step::default() })
}

/// Clusters (and their endpoints) that a change removed, still served until the proxy has answered the
/// listener and route pushes of that change, so that no route points at a cluster the proxy no longer has.
#[derive(Debug, Default)]
pub struct Retained {
    by_type: BTreeMap<ResourceType, ResourceMap>,
}

impl Retained {
    /// Notes what `next` removes from `previous`.
    pub fn note_removals(&mut self, previous: &EncodedResources, next: &EncodedResources) {
        for kind in [ResourceType::Cluster, ResourceType::Endpoint] {
            let (old, new) = (previous.of_type(kind), next.of_type(kind));
            if matches!((old, new), (Some(o), Some(n)) if o.names == n.names) {
                continue;
            }
            let removed = old
                .map(|o| &o.map)
                .into_iter()
                .flatten()
                .filter(|(name, _)| !new.is_some_and(|n| n.map.contains_key(*name)));
            self.by_type.entry(kind).or_default().extend(removed.map(|(n, a)| (n.clone(), a.clone())));
        }
    }

    /// The retained resources of `kind`, if any.
    pub fn of_type(&self, kind: ResourceType) -> Option<&ResourceMap> {
        self.by_type.get(&kind).filter(|m| !m.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.values().all(|m| m.is_empty())
    }

    pub fn clear(&mut self) {
        self.by_type.clear();
    }
}
