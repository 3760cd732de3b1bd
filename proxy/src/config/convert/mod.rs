//! xDS resources -> runtime config. Anything the proxy cannot apply faithfully is an error, which the xDS client
//! turns into a NACK (with this error as `error_detail`) while the last good config stays in force.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Address, HealthStatus, address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::{EndpointConfig, ListenerConfig};
use l4::{Chain, chain_kind};
use weft_xds::filters::{HTTP_INSPECTOR, TLS_INSPECTOR};

mod actions;
mod cluster;
mod l4;
mod policy;
mod routes;
mod tls;

/// Why a resource was rejected; becomes the NACK's `error_detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {message}")]
pub struct ConfigError {
    pub kind: &'static str,
    pub name: String,
    pub message: String,
}

fn reject(kind: &'static str, name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { kind, name: name.to_string(), message: message.into() }
}

impl TryFrom<&Listener> for ListenerConfig {
    type Error = ConfigError;

    fn try_from(l: &Listener) -> Result<Self, ConfigError> {
        let err = |m: &str| reject("listener", &l.name, m);
        let port =
            socket_port(l.address.as_ref()).ok_or_else(|| err("address must be a socket address with a port"))?;
        if let Some(other) = l.listener_filters.iter().find(|f| f.name != TLS_INSPECTOR && f.name != HTTP_INSPECTOR) {
            return Err(err(&format!("listener filter {:?} is not supported", other.name)));
        }
        let mut route_config = None;
        let mut l4_routes = Vec::new();
        let mut plaintext_only = false;
        for chain in &l.filter_chains {
            match chain_kind(chain).map_err(|m| err(&m))? {
                Chain::Http { route_config: name, plaintext_only: only } if route_config.is_none() => {
                    (route_config, plaintext_only) = (Some(name), only);
                }
                Chain::Http { .. } => return Err(err("only one HTTP filter chain is supported")),
                Chain::Tcp(route) => l4_routes.push(route),
            }
        }
        let route_config =
            route_config.ok_or_else(|| err("no HTTP connection manager filter (only HTTP listeners are supported)"))?;
        // Either the HTTP chain is the default, or what it does not take passes through.
        match &l.default_filter_chain {
            None if plaintext_only => return Err(err("an HTTP chain with a match needs a default_filter_chain")),
            Some(chain) if !weft_xds::detection::is_passthrough_chain(chain) => {
                return Err(err("the default_filter_chain must pass TCP through to PassthroughCluster"));
            }
            Some(_) if !plaintext_only => return Err(err("with a default_filter_chain, the HTTP chain needs a match")),
            _ => {}
        }
        let detection = weft_xds::detection::detection_of(l);
        Ok(Self { name: l.name.clone(), port, route_config, l4_routes, detection })
    }
}

fn socket_port(address: Option<&Address>) -> Option<u16> {
    match address?.address.as_ref()? {
        address::Address::SocketAddress(s) => match s.port_specifier.as_ref()? {
            socket_address::PortSpecifier::PortValue(p) => u16::try_from(*p).ok(),
            socket_address::PortSpecifier::NamedPort(_) => None,
        },
        _ => None,
    }
}

pub(super) fn to_duration(d: &envoy_types::pb::google::protobuf::Duration) -> Result<Duration, String> {
    let seconds = u64::try_from(d.seconds).map_err(|_| "durations must not be negative".to_string())?;
    let nanos = u32::try_from(d.nanos).map_err(|_| "durations must not be negative".to_string())?;
    Ok(Duration::new(seconds, nanos))
}

/// The endpoints of a `ClusterLoadAssignment`.
pub fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, ConfigError> {
    let mut out = Vec::new();
    let mut priorities: Vec<u32> = cla.endpoints.iter().map(|l| l.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    if priorities.iter().enumerate().any(|(i, p)| *p as usize != i) {
        // As Envoy: levels run 0, 1, 2, ... without a gap.
        return Err(reject("endpoints", &cla.cluster_name, "priorities must run from 0 without gaps"));
    }
    let groups = cla.endpoints.iter().enumerate();
    for ((locality, group), endpoint) in groups.flat_map(|g| g.1.lb_endpoints.iter().map(move |e| (g, e))) {
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &endpoint.host_identifier else {
            return Err(reject("endpoints", &cla.cluster_name, "every endpoint needs an address"));
        };
        let address = socket_addr(e.address.as_ref())
            .ok_or_else(|| reject("endpoints", &cla.cluster_name, "endpoint addresses must be IP:port"))?;
        let healthy =
            matches!(HealthStatus::try_from(endpoint.health_status), Ok(HealthStatus::Healthy | HealthStatus::Unknown));
        let mtls = weft_xds::mtls::is_meshed_endpoint(endpoint.metadata.as_ref());
        out.push(EndpointConfig {
            address,
            healthy,
            mtls,
            priority: group.priority,
            locality: u32::try_from(locality).unwrap_or(u32::MAX),
            locality_weight: group.load_balancing_weight.map_or(0, |w| w.value),
        });
    }
    Ok(out)
}

fn socket_addr(address: Option<&Address>) -> Option<SocketAddr> {
    let address::Address::SocketAddress(s) = address?.address.as_ref()? else { return None };
    let ip: IpAddr = s.address.parse().ok()?;
    Some(SocketAddr::new(ip, socket_port(address)?))
}

#[cfg(test)]
mod tests;
