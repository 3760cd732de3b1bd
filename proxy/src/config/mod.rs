//! The proxy's runtime configuration: plain Rust types converted from xDS resources (see [`convert`]). Everything
//! the data plane reads comes from here; nothing downstream sees protobuf.

pub mod convert;
pub mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use weft_xds::lb::LbAlgorithm;

pub use routes::{
    HeaderMatch, PathMatch, RouteAction, RouteEntry, RouteTable, StringMatcher, VirtualHost, WeightedTarget,
};

/// The whole applied configuration. Serialized as the admin `/config_dump`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// Outbound listeners by name.
    pub listeners: BTreeMap<String, ListenerConfig>,
    /// Route tables by route configuration name.
    pub routes: BTreeMap<String, RouteTable>,
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Endpoints by cluster (EDS service) name.
    pub endpoints: BTreeMap<String, Vec<EndpointConfig>>,
    /// Accepted xDS version per type (`CDS`, `EDS`, `LDS`, `RDS`).
    pub versions: BTreeMap<String, String>,
}

/// An outbound listener: which route table serves HTTP for traffic to `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub port: u16,
    pub route_config: String,
}

/// A cluster: how requests are balanced over its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    pub name: String,
    pub lb: LbAlgorithm,
    #[serde(with = "duration_ms")]
    pub connect_timeout: Duration,
    /// Name of the endpoint assignment (EDS) that feeds it.
    pub eds_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EndpointConfig {
    pub address: SocketAddr,
    pub healthy: bool,
}

impl ProxyConfig {
    /// The route table serving traffic addressed to `port`, through the listener for that port.
    pub fn route_table_for_port(&self, port: u16) -> Option<&RouteTable> {
        let listener = self.listeners.values().find(|l| l.port == port)?;
        self.routes.get(&listener.route_config)
    }
}

/// Durations in the config dump, as milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}
