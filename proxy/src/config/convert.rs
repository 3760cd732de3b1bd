//! xDS resources -> runtime config. Anything the proxy cannot apply faithfully is an error, which the xDS client
//! turns into a NACK (with this error as `error_detail`) while the last good config stays in force.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{Address, HealthStatus, address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    self as route, RouteConfiguration, header_matcher, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher as PbStringMatcher, string_matcher};
use weft_xds::lb::LbAlgorithm;

use super::{
    ClusterConfig, EndpointConfig, HeaderMatch, ListenerConfig, PathMatch, RouteAction, RouteEntry, RouteTable,
    StringMatcher, VirtualHost, WeightedTarget,
};

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

/// Envoy's defaults where a field is unset.
const ENVOY_DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
const ENVOY_DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl TryFrom<&Listener> for ListenerConfig {
    type Error = ConfigError;

    fn try_from(l: &Listener) -> Result<Self, ConfigError> {
        let err = |m: &str| reject("listener", &l.name, m);
        let port =
            socket_port(l.address.as_ref()).ok_or_else(|| err("address must be a socket address with a port"))?;
        let manager = l
            .filter_chains
            .iter()
            .flat_map(|c| &c.filters)
            .find_map(|f| match &f.config_type {
                Some(filter::ConfigType::TypedConfig(any)) => Some(weft_xds::unpack::<HttpConnectionManager>(any)),
                _ => None,
            })
            .ok_or_else(|| err("no HTTP connection manager filter (only HTTP listeners are supported)"))?
            .map_err(|e| err(&e.to_string()))?;
        let route_config = match manager.route_specifier {
            Some(http_connection_manager::RouteSpecifier::Rds(rds)) => rds.route_config_name,
            _ => return Err(err("routes must come from RDS (inline and scoped routes are not supported)")),
        };
        Ok(Self { name: l.name.clone(), port, route_config })
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

impl TryFrom<&RouteConfiguration> for RouteTable {
    type Error = ConfigError;

    fn try_from(r: &RouteConfiguration) -> Result<Self, ConfigError> {
        let virtual_hosts = r
            .virtual_hosts
            .iter()
            .map(virtual_host)
            .collect::<Result<_, String>>()
            .map_err(|m| reject("route configuration", &r.name, m))?;
        // VHDS over ADS: the table's other hosts are asked for on demand.
        let on_demand = r.vhds.is_some();
        Ok(Self { name: r.name.clone(), virtual_hosts, on_demand })
    }
}

/// A virtual host sent on its own (VHDS), named `ROUTE_CONFIG/HOST` as asked for.
impl TryFrom<&route::VirtualHost> for VirtualHost {
    type Error = ConfigError;

    fn try_from(v: &route::VirtualHost) -> Result<Self, ConfigError> {
        virtual_host(v).map_err(|m| reject("virtual host", &v.name, m))
    }
}

fn virtual_host(v: &route::VirtualHost) -> Result<VirtualHost, String> {
    Ok(VirtualHost {
        name: v.name.clone(),
        domains: v.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        routes: v.routes.iter().map(route_entry).collect::<Result<_, String>>()?,
    })
}

fn route_entry(r: &route::Route) -> Result<RouteEntry, String> {
    let in_route = |m: String| format!("route {:?}: {m}", r.name);
    let matcher = r.r#match.as_ref().ok_or_else(|| in_route("match is required".into()))?;
    if matcher.case_sensitive.as_ref().is_some_and(|c| !c.value) {
        return Err(in_route("case-insensitive path matching is not supported".into()));
    }
    if !matcher.query_parameters.is_empty() || !matcher.cookies.is_empty() || matcher.grpc.is_some() {
        return Err(in_route("query parameter, cookie and gRPC matching are not supported".into()));
    }
    let path = match &matcher.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(re)) => PathMatch::Regex(full_match(&re.regex).map_err(in_route)?),
        _ => return Err(in_route("path match must be prefix, path or safe_regex".into())),
    };
    let headers = matcher.headers.iter().map(header_match).collect::<Result<_, _>>().map_err(in_route)?;
    let action = match &r.action {
        Some(route::route::Action::Route(a)) => route_action(a).map_err(in_route)?,
        _ => return Err(in_route("only route actions are supported (no redirect or direct response)".into())),
    };
    Ok(RouteEntry { name: r.name.clone(), path, headers, action })
}

#[allow(deprecated)] // The deprecated specifiers are still valid xDS; accept them.
fn header_match(h: &route::HeaderMatcher) -> Result<HeaderMatch, String> {
    if h.invert_match {
        return Err(format!("header {:?}: inverted matches are not supported", h.name));
    }
    let matcher = match &h.header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)) => string_matcher(m)?,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)) => StringMatcher::Present,
        Some(header_matcher::HeaderMatchSpecifier::ExactMatch(v)) => StringMatcher::Exact(v.clone()),
        Some(header_matcher::HeaderMatchSpecifier::PrefixMatch(v)) => StringMatcher::Prefix(v.clone()),
        Some(header_matcher::HeaderMatchSpecifier::SafeRegexMatch(re)) => StringMatcher::Regex(full_match(&re.regex)?),
        _ => return Err(format!("header {:?}: only exact, prefix, regex and present matches are supported", h.name)),
    };
    Ok(HeaderMatch { name: h.name.to_ascii_lowercase(), matcher })
}

fn string_matcher(m: &PbStringMatcher) -> Result<StringMatcher, String> {
    if m.ignore_case {
        return Err("case-insensitive string matching is not supported".into());
    }
    match &m.match_pattern {
        Some(string_matcher::MatchPattern::Exact(v)) => Ok(StringMatcher::Exact(v.clone())),
        Some(string_matcher::MatchPattern::Prefix(v)) => Ok(StringMatcher::Prefix(v.clone())),
        Some(string_matcher::MatchPattern::SafeRegex(re)) => Ok(StringMatcher::Regex(full_match(&re.regex)?)),
        _ => Err("only exact, prefix and safe_regex string matches are supported".into()),
    }
}

/// Envoy's `safe_regex` must match the whole value.
fn full_match(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

fn route_action(a: &route::RouteAction) -> Result<RouteAction, String> {
    let targets = match &a.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(name)) => {
            vec![WeightedTarget { cluster: name.clone(), weight: 1 }]
        }
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) if !w.clusters.is_empty() => w
            .clusters
            .iter()
            .map(|c| WeightedTarget { cluster: c.name.clone(), weight: c.weight.as_ref().map_or(0, |w| w.value) })
            .collect(),
        _ => return Err("the action must name a cluster or weighted clusters".into()),
    };
    if targets.len() > 1 && targets.iter().all(|t| t.weight == 0) {
        return Err("weighted clusters must not all have weight 0".into());
    }
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total > u64::from(u32::MAX) {
        return Err(format!("the weights of weighted clusters add up to {total}, more than {}", u32::MAX));
    }
    let timeout = match &a.timeout {
        None => Some(ENVOY_DEFAULT_ROUTE_TIMEOUT),
        Some(d) => Some(to_duration(d)?).filter(|d| !d.is_zero()),
    };
    Ok(RouteAction { targets, timeout })
}

fn to_duration(d: &envoy_types::pb::google::protobuf::Duration) -> Result<Duration, String> {
    let seconds = u64::try_from(d.seconds).map_err(|_| "durations must not be negative".to_string())?;
    let nanos = u32::try_from(d.nanos).map_err(|_| "durations must not be negative".to_string())?;
    Ok(Duration::new(seconds, nanos))
}

impl TryFrom<&Cluster> for ClusterConfig {
    type Error = ConfigError;

    fn try_from(c: &Cluster) -> Result<Self, ConfigError> {
        let err = |m: String| reject("cluster", &c.name, m);
        let is_eds = matches!(c.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32);
        if !is_eds {
            return Err(err("only EDS clusters are supported".into()));
        }
        let lb = match &c.load_balancing_policy {
            Some(policy) => LbAlgorithm::from_policy(policy)
                .ok_or_else(|| err("none of the load_balancing_policy entries is supported".into()))?,
            None => match cluster::LbPolicy::try_from(c.lb_policy) {
                Ok(cluster::LbPolicy::RoundRobin) => LbAlgorithm::RoundRobin,
                Ok(cluster::LbPolicy::LeastRequest) => LbAlgorithm::LeastRequest,
                Ok(cluster::LbPolicy::Random) => LbAlgorithm::Random,
                other => return Err(err(format!("lb_policy {other:?} is not supported"))),
            },
        };
        let connect_timeout = match &c.connect_timeout {
            Some(d) => to_duration(d).map_err(err)?,
            None => ENVOY_DEFAULT_CONNECT_TIMEOUT,
        };
        let eds_name = c.eds_cluster_config.as_ref().map(|e| e.service_name.clone()).unwrap_or_default();
        let eds_name = if eds_name.is_empty() { c.name.clone() } else { eds_name };
        Ok(Self { name: c.name.clone(), lb, connect_timeout, eds_name })
    }
}

/// The endpoints of a `ClusterLoadAssignment`.
pub fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, ConfigError> {
    let mut out = Vec::new();
    for endpoint in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &endpoint.host_identifier else {
            return Err(reject("endpoints", &cla.cluster_name, "every endpoint needs an address"));
        };
        let address = socket_addr(e.address.as_ref())
            .ok_or_else(|| reject("endpoints", &cla.cluster_name, "endpoint addresses must be IP:port"))?;
        let healthy =
            matches!(HealthStatus::try_from(endpoint.health_status), Ok(HealthStatus::Healthy | HealthStatus::Unknown));
        out.push(EndpointConfig { address, healthy });
    }
    Ok(out)
}

fn socket_addr(address: Option<&Address>) -> Option<SocketAddr> {
    let address::Address::SocketAddress(s) = address?.address.as_ref()? else { return None };
    let ip: IpAddr = s.address.parse().ok()?;
    Some(SocketAddr::new(ip, socket_port(address)?))
}
