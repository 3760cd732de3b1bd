//! The proxy's side of a state-of-the-world ADS stream, as a pure state machine: responses in; ACK/NACK and
//! subscription requests out; the accepted config kept. A response whose resources cannot all be converted is
//! NACKed with the conversion error, and the previous config of that type stays in force.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use weft_xds::{ResourceType, unpack};

use crate::config::convert::endpoints;
use crate::config::{ClusterConfig, EndpointConfig, ListenerConfig, ProxyConfig, RouteTable};

/// gRPC status code INVALID_ARGUMENT, as Envoy reports rejected config.
const INVALID_ARGUMENT: i32 = 3;

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

    /// Converts every resource first; applies only if all convert.
    fn apply(&mut self, kind: ResourceType, resources: &[Any]) -> Result<(), String> {
        fn all<P, T>(
            resources: &[Any],
            name: fn(&T) -> String,
            convert: fn(&P) -> Result<T, String>,
        ) -> Result<BTreeMap<String, T>, String>
        where
            P: prost::Message + prost::Name + Default,
        {
            resources
                .iter()
                .map(|any| {
                    let value = convert(&unpack::<P>(any).map_err(|e| e.to_string())?)?;
                    Ok((name(&value), value))
                })
                .collect()
        }
        match kind {
            ResourceType::Cluster => {
                self.config.clusters = all::<Cluster, ClusterConfig>(
                    resources,
                    |c| c.name.clone(),
                    |c| ClusterConfig::try_from(c).map_err(|e| e.to_string()),
                )?;
            }
            ResourceType::Listener => {
                self.config.listeners = all::<Listener, ListenerConfig>(
                    resources,
                    |l| l.name.clone(),
                    |l| ListenerConfig::try_from(l).map_err(|e| e.to_string()),
                )?;
            }
            ResourceType::Route => {
                let tables = all::<RouteConfiguration, RouteTable>(
                    resources,
                    |r| r.name.clone(),
                    |r| RouteTable::try_from(r).map_err(|e| e.to_string()),
                )?;
                self.config.routes.extend(tables);
            }
            ResourceType::Endpoint => {
                let sets = all::<ClusterLoadAssignment, (String, Vec<EndpointConfig>)>(
                    resources,
                    |(n, _)| n.clone(),
                    |c| endpoints(c).map(|e| (c.cluster_name.clone(), e)).map_err(|e| e.to_string()),
                )?;
                self.config.endpoints.extend(sets.into_values());
            }
        }
        Ok(())
    }

    /// After new clusters or listeners: subscribe to the endpoints and routes they name, drop the rest.
    fn follow_subscriptions(&mut self, kind: ResourceType) -> Option<DiscoveryRequest> {
        let (dependent, wanted): (ResourceType, BTreeSet<String>) = match kind {
            ResourceType::Cluster => {
                (ResourceType::Endpoint, self.config.clusters.values().map(|c| c.eds_name.clone()).collect())
            }
            ResourceType::Listener => {
                (ResourceType::Route, self.config.listeners.values().map(|l| l.route_config.clone()).collect())
            }
            _ => return None,
        };
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
