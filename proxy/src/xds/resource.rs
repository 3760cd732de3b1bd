//! One xDS resource, converted to the proxy's plain config types; shared by the state-of-the-world and delta
//! clients. Conversion failures are what a NACK reports.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{self as route, RouteConfiguration};
use envoy_types::pb::google::protobuf::Any;
use weft_xds::inbound::{self, INBOUND_LISTENER, InboundPolicy};
use weft_xds::{ResourceType, unpack};

use crate::config::convert::endpoints;
use crate::config::{ClusterConfig, EndpointConfig, ListenerConfig, ProxyConfig, RouteTable, VirtualHost};

/// A converted resource.
#[derive(Debug)]
pub enum Converted {
    /// Boxed: far larger than the others.
    Cluster(Box<ClusterConfig>),
    Listener(ListenerConfig),
    /// The inbound listener ([`weft_xds::inbound::INBOUND_LISTENER`]); boxed, as large as a cluster.
    Inbound(Box<InboundPolicy>),
    Routes(RouteTable),
    Endpoints(Vec<EndpointConfig>),
    VirtualHost(VirtualHost),
}

/// Decodes and converts one resource of `kind`: its name and value.
pub fn convert(kind: ResourceType, any: &Any) -> Result<(String, Converted), String> {
    fn decoded<T: prost::Message + prost::Name + Default>(any: &Any) -> Result<T, String> {
        unpack::<T>(any).map_err(|e| e.to_string())
    }
    match kind {
        ResourceType::Cluster => {
            let cluster = ClusterConfig::try_from(&decoded::<Cluster>(any)?).map_err(|e| e.to_string())?;
            Ok((cluster.name.clone(), Converted::Cluster(Box::new(cluster))))
        }
        ResourceType::Listener => {
            let listener = decoded::<Listener>(any)?;
            if listener.name == INBOUND_LISTENER {
                let policy = inbound::parse(&listener).map_err(|e| format!("listener {INBOUND_LISTENER:?}: {e}"))?;
                return Ok((listener.name, Converted::Inbound(Box::new(policy))));
            }
            let listener = ListenerConfig::try_from(&listener).map_err(|e| e.to_string())?;
            Ok((listener.name.clone(), Converted::Listener(listener)))
        }
        ResourceType::Route => {
            let table = RouteTable::try_from(&decoded::<RouteConfiguration>(any)?).map_err(|e| e.to_string())?;
            Ok((table.name.clone(), Converted::Routes(table)))
        }
        ResourceType::Endpoint => {
            let assignment = decoded::<ClusterLoadAssignment>(any)?;
            let set = endpoints(&assignment).map_err(|e| e.to_string())?;
            Ok((assignment.cluster_name, Converted::Endpoints(set)))
        }
        ResourceType::VirtualHost => {
            let host = decoded::<route::VirtualHost>(any)?;
            let converted = VirtualHost::try_from(&host).map_err(|e| e.to_string())?;
            Ok((host.name, Converted::VirtualHost(converted)))
        }
    }
}

/// Puts a converted resource into the config under `name`.
pub fn insert(config: &mut ProxyConfig, name: String, value: Converted) {
    match value {
        Converted::Cluster(c) => {
            config.clusters.insert(name, *c);
        }
        Converted::Listener(l) => {
            config.listeners.insert(name, l);
        }
        Converted::Inbound(policy) => config.inbound = Some(*policy),
        Converted::Routes(r) => {
            config.routes.insert(name, r);
        }
        Converted::Endpoints(e) => {
            config.endpoints.insert(name, e);
        }
        Converted::VirtualHost(v) => {
            config.on_demand.insert(name, Some(v));
        }
    }
}

/// Takes the resource `name` of `kind` out of the config.
pub fn remove(config: &mut ProxyConfig, kind: ResourceType, name: &str) {
    match kind {
        ResourceType::Cluster => drop(config.clusters.remove(name)),
        ResourceType::Listener if name == INBOUND_LISTENER => config.inbound = None,
        ResourceType::Listener => drop(config.listeners.remove(name)),
        ResourceType::Route => drop(config.routes.remove(name)),
        ResourceType::Endpoint => drop(config.endpoints.remove(name)),
        // For a name asked for on demand, a removal means "no such host" (see `OnDemandHosts::answer_removed`).
        ResourceType::VirtualHost => drop(config.on_demand.answer_removed(name)),
    }
}

/// The endpoint assignments the clusters name (an original-destination cluster names none).
pub fn endpoint_names(config: &ProxyConfig) -> BTreeSet<String> {
    config.clusters.values().filter(|c| !c.original_destination).map(|c| c.eds_name.clone()).collect()
}

/// The subscriptions a type's resources imply: the endpoint sets the clusters name, the route tables the
/// listeners name. `None` for the other types.
pub fn dependent_names(config: &ProxyConfig, kind: ResourceType) -> Option<(ResourceType, BTreeSet<String>)> {
    match kind {
        ResourceType::Cluster => Some((ResourceType::Endpoint, endpoint_names(config))),
        ResourceType::Listener => {
            Some((ResourceType::Route, config.listeners.values().map(|l| l.route_config.clone()).collect()))
        }
        _ => None,
    }
}
