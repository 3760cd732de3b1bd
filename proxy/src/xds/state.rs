//! The proxy's side of a state-of-the-world ADS stream, as a pure state machine: responses in; ACK/NACK and
//! subscription requests out; the accepted config kept. A response whose resources cannot all be converted is
//! NACKed with the conversion error, and the previous config of that type stays in force.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use weft_xds::ResourceType;

use super::resource::{convert, dependent_names, insert};
use crate::config::ProxyConfig;

/// gRPC status code INVALID_ARGUMENT, as Envoy reports rejected config.
pub(super) const INVALID_ARGUMENT: i32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied(ResourceType),
    Rejected { kind: ResourceType, error: String },
    Ignored(String),
}

#[derive(Debug)]
pub struct Reply {
    pub requests: Vec<DiscoveryRequest>,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub struct ClientState {
    node: Node,
    config: ProxyConfig,
    versions: BTreeMap<ResourceType, String>,
    nonces: BTreeMap<ResourceType, String>,
    endpoint_names: BTreeSet<String>,
    route_names: BTreeSet<String>,
    received: BTreeSet<ResourceType>,
}

impl ClientState {
    pub fn new(node: Node) -> Self {
        Self {
            node,
            config: ProxyConfig::default(),
            versions: BTreeMap::new(),
            nonces: BTreeMap::new(),
            endpoint_names: BTreeSet::new(),
            route_names: BTreeSet::new(),
            received: BTreeSet::new(),
        }
    }

    /// Continues from a config accepted over another protocol (a control plane without delta xDS): keeps serving
    /// it, subscribes to what it names, and takes everything anew from the first responses.
    pub fn resume(node: Node, config: ProxyConfig) -> Self {
        let mut state = Self::new(node);
        state.endpoint_names = super::resource::endpoint_names(&config);
        state.route_names = config.listeners.values().map(|l| l.route_config.clone()).collect();
        state.received =
            ResourceType::ALL.into_iter().filter(|k| config.versions.contains_key(k.short_name())).collect();
        state.config = config;
        state
    }

    /// The requests that open a new stream: every subscription, with the versions already held.
    pub fn on_connect(&mut self) -> Vec<DiscoveryRequest> {
        self.nonces.clear();
        ResourceType::ALL
            .into_iter()
            .filter(|k| k.is_wildcard_type() || !self.names(*k).is_empty())
            .map(|k| self.request(k, None))
            .collect()
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Ready once listeners, clusters, and every route table and endpoint set they name have arrived.
    pub fn is_ready(&self) -> bool {
        self.received.contains(&ResourceType::Cluster)
            && self.received.contains(&ResourceType::Listener)
            && self.route_names.iter().all(|n| self.config.routes.contains_key(n))
            && self.endpoint_names.iter().all(|n| self.config.endpoints.contains_key(n))
    }

    pub fn on_response(&mut self, response: &DiscoveryResponse) -> Reply {
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            return Reply {
                requests: Vec::new(),
                outcome: Outcome::Ignored(format!("unknown type {}", response.type_url)),
            };
        };
        self.nonces.insert(kind, response.nonce.clone());
        if let Err(error) = self.apply(kind, &response.resources) {
            let request = self.request(kind, Some(error.clone()));
            return Reply { requests: vec![request], outcome: Outcome::Rejected { kind, error } };
        }
        self.versions.insert(kind, response.version_info.clone());
        self.config.versions.insert(kind.short_name().to_string(), response.version_info.clone());
        self.received.insert(kind);
        let mut requests = vec![self.request(kind, None)];
        requests.extend(self.follow_subscriptions(kind));
        Reply { requests, outcome: Outcome::Applied(kind) }
    }

    /// Converts every resource first; applies only if all convert. A state-of-the-world response replaces the
    /// clusters and listeners; route and endpoint responses add to (or replace) those named.
    fn apply(&mut self, kind: ResourceType, resources: &[Any]) -> Result<(), String> {
        let converted = resources.iter().map(|any| convert(kind, any)).collect::<Result<Vec<_>, String>>()?;
        match kind {
            ResourceType::Cluster => self.config.clusters.clear(),
            ResourceType::Listener => {
                self.config.listeners.clear();
                self.config.inbound = None;
            }
            ResourceType::Route | ResourceType::Endpoint | ResourceType::VirtualHost => {}
        }
        for (name, value) in converted {
            insert(&mut self.config, name, value);
        }
        Ok(())
    }

    /// After new clusters or listeners: subscribe to the endpoints and routes they name, drop the rest.
    fn follow_subscriptions(&mut self, kind: ResourceType) -> Option<DiscoveryRequest> {
        let (dependent, wanted) = dependent_names(&self.config, kind)?;
        if dependent == ResourceType::Endpoint {
            self.config.endpoints.retain(|name, _| wanted.contains(name));
            if self.endpoint_names == wanted {
                return None;
            }
            self.endpoint_names = wanted;
        } else {
            self.config.routes.retain(|name, _| wanted.contains(name));
            if self.route_names == wanted {
                return None;
            }
            self.route_names = wanted;
        }
        Some(self.request(dependent, None))
    }

    fn names(&self, kind: ResourceType) -> &BTreeSet<String> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        match kind {
            ResourceType::Endpoint => &self.endpoint_names,
            ResourceType::Route => &self.route_names,
            _ => &NONE,
        }
    }

    /// A request for `kind`: an ACK of the last response (or NACK with `error`), carrying the subscription.
    fn request(&self, kind: ResourceType, error: Option<String>) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.versions.get(&kind).cloned().unwrap_or_default(),
            node: Some(self.node.clone()),
            resource_names: self.names(kind).iter().cloned().collect(),
            type_url: kind.type_url().to_string(),
            response_nonce: self.nonces.get(&kind).cloned().unwrap_or_default(),
            error_detail: error.map(|message| Status { code: INVALID_ARGUMENT, message, details: Vec::new() }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::testing::{cluster, listener, route_config, routes};
    use envoy_types::pb::envoy::config::route::v3::{
        WeightedCluster, route, route_action, weighted_cluster::ClusterWeight,
    };
    use envoy_types::pb::google::protobuf::UInt32Value;
    use weft_xds::pack;

    fn response(kind: ResourceType, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: kind.type_url().into(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn client() -> ClientState {
        ClientState::new(Node { id: "sidecar~~client.default~default.svc.cluster.local".into(), ..Default::default() })
    }

    #[test]
    fn clusters_and_listeners_are_acked_and_their_dependencies_subscribed() {
        let mut state = client();
        let opening = state.on_connect();
        assert_eq!(opening.len(), 2, "CDS and LDS, wildcard");
        let reply = state.on_response(&response(ResourceType::Cluster, "c1", "n1", vec![cluster("a"), cluster("b")]));
        assert_eq!(reply.outcome, Outcome::Applied(ResourceType::Cluster));
        let [ack, eds] = reply.requests.as_slice() else { panic!("expected ACK + EDS request") };
        assert_eq!((ack.version_info.as_str(), ack.response_nonce.as_str()), ("c1", "n1"));
        assert!(ack.error_detail.is_none());
        assert_eq!(eds.type_url, ResourceType::Endpoint.type_url());
        assert_eq!(eds.resource_names, ["a", "b"]);
        let reply = state.on_response(&response(ResourceType::Listener, "l1", "n2", vec![listener(80, "80")]));
        assert_eq!(reply.requests[1].resource_names, ["80"]);
        assert!(!state.is_ready(), "routes and endpoints have not arrived");
    }

    #[test]
    fn an_invalid_route_is_nacked_with_detail_and_the_last_good_routes_stay() {
        let mut state = client();
        state.on_connect();
        state.on_response(&response(ResourceType::Listener, "l1", "n1", vec![listener(80, "80")]));
        state.on_response(&response(ResourceType::Route, "r1", "n2", vec![routes("80", "/v[0-9]+", "good")]));
        let good = state.config().routes.clone();

        let reply = state.on_response(&response(ResourceType::Route, "r2", "n3", vec![routes("80", "/v[0-9", "bad")]));
        let Outcome::Rejected { kind, error } = &reply.outcome else { panic!("expected a rejection") };
        assert_eq!(*kind, ResourceType::Route);
        assert!(error.contains("invalid regex"), "{error}");
        let [nack] = reply.requests.as_slice() else { panic!("expected one NACK") };
        assert_eq!(nack.version_info, "r1", "a NACK carries the last accepted version");
        assert_eq!(nack.response_nonce, "n3");
        assert!(nack.error_detail.as_ref().is_some_and(|s| s.message.contains("route configuration \"80\"")));
        assert_eq!(state.config().routes, good, "last good routes stay in force");
        assert_eq!(state.config().versions.get("RDS").map(String::as_str), Some("r1"));
    }

    #[test]
    fn weights_adding_up_past_a_u32_are_nacked() {
        let mut state = client();
        let mut table = route_config("80", "/", "a");
        let weighted = route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: ["a", "b", "c"]
                .map(|name| ClusterWeight {
                    name: name.into(),
                    weight: Some(UInt32Value { value: i32::MAX as u32 }),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        });
        if let Some(route::Action::Route(action)) = &mut table.virtual_hosts[0].routes[0].action {
            action.cluster_specifier = Some(weighted);
        }
        let reply = state.on_response(&response(ResourceType::Route, "r1", "n1", vec![pack(&table)]));
        let Outcome::Rejected { error, .. } = &reply.outcome else { panic!("expected a rejection") };
        assert!(error.contains("add up to 6442450941, more than 4294967295"), "{error}");
    }

    #[test]
    fn a_resource_of_the_wrong_type_is_nacked() {
        let mut state = client();
        let reply = state.on_response(&response(ResourceType::Cluster, "c1", "n1", vec![listener(80, "80")]));
        assert!(matches!(reply.outcome, Outcome::Rejected { .. }));
        assert!(state.config().clusters.is_empty());
    }

    #[test]
    fn reconnecting_resubscribes_with_the_versions_held() {
        let mut state = client();
        state.on_connect();
        state.on_response(&response(ResourceType::Cluster, "c1", "n1", vec![cluster("a")]));
        let again = state.on_connect();
        let eds = again.iter().find(|r| r.type_url == ResourceType::Endpoint.type_url()).expect("EDS resubscribed");
        assert_eq!(eds.resource_names, ["a"]);
        let cds = again.iter().find(|r| r.type_url == ResourceType::Cluster.type_url()).expect("CDS resubscribed");
        assert_eq!((cds.version_info.as_str(), cds.response_nonce.as_str()), ("c1", ""));
    }
}
