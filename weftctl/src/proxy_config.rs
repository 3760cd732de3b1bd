//! `weftctl proxy-config clusters|endpoints|listeners|routes POD[.NS]`: the xDS resources the operator sends a
//! proxy, decoded into tables (with the VirtualService or DestinationRule each route and cluster came from), or
//! the decoded resources themselves (Envoy's JSON, see [`crate::envoy_json`]). Pure: the debug API's answer in,
//! text out.

use std::fmt::Write;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{Address, HealthStatus, address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost, route, route_action, route_match};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use prost::Message;
use weft_operator::debug::{ConfigView, ResourceView};
use weft_xds::provenance::{config_of, short_config};
use weft_xds::{ClusterName, unpack};

use crate::table;

/// Which resources to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Clusters,
    Endpoints,
    Listeners,
    Routes,
}

impl Section {
    /// The debug API's type names this section shows.
    fn types(self) -> &'static [&'static str] {
        match self {
            Self::Clusters => &["CDS"],
            Self::Endpoints => &["EDS"],
            Self::Listeners => &["LDS"],
            Self::Routes => &["RDS", "VHDS"],
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?} from the operator does not decode: {reason}")]
pub struct DecodeError {
    kind: String,
    name: String,
    reason: String,
}

/// The resources of `section` in `config`.
pub fn resources(config: &ConfigView, section: Section) -> impl Iterator<Item = &ResourceView> {
    config.resources.iter().filter(move |r| section.types().contains(&r.kind.as_str()))
}

fn decode<T: Message + Default>(resource: &ResourceView) -> Result<T, DecodeError> {
    let error = |reason: String| DecodeError { kind: resource.kind.clone(), name: resource.name.clone(), reason };
    let bytes = resource.bytes().map_err(|e| error(e.to_string()))?;
    T::decode(bytes.as_slice()).map_err(|e| error(e.to_string()))
}

/// The table of `section`.
pub fn table(config: &ConfigView, section: Section) -> Result<String, DecodeError> {
    let mut rows = Vec::new();
    for resource in resources(config, section) {
        match (section, resource.kind.as_str()) {
            (Section::Clusters, _) => rows.push(cluster_row(&decode(resource)?)),
            (Section::Endpoints, _) => rows.extend(endpoint_rows(&decode(resource)?)),
            (Section::Listeners, _) => rows.extend(listener_rows(&decode(resource)?)),
            (Section::Routes, "VHDS") => rows.extend(virtual_host_rows("(on demand)", &decode(resource)?)),
            (Section::Routes, _) => {
                let routes: RouteConfiguration = decode(resource)?;
                rows.extend(routes.virtual_hosts.iter().flat_map(|vh| virtual_host_rows(&routes.name, vh)));
            }
        }
    }
    if section == Section::Clusters {
        // By Service and port, the whole Service's cluster before its subsets.
        rows.sort_by(|a, b| {
            let key = |r: &Vec<String>| (r[0].clone(), r[1].parse::<u16>().unwrap_or(0), r[2] != "-", r[2].clone());
            key(a).cmp(&key(b))
        });
    }
    let header: &[&str] = match section {
        Section::Clusters => &["SERVICE FQDN", "PORT", "SUBSET", "TYPE", "DESTINATION RULE"],
        Section::Endpoints => &["ENDPOINT", "STATUS", "LOCALITY", "PRIORITY", "CLUSTER"],
        Section::Listeners => &["NAME", "ADDRESS", "MATCH", "DESTINATION"],
        Section::Routes => &["NAME", "VIRTUAL HOST", "DOMAINS", "MATCH", "ROUTE", "VIRTUAL SERVICE"],
    };
    Ok(table::render(header, &rows))
}

/// The resources of `section`, decoded, in the protobuf text Rust's `Debug` gives (`-o proto`).
pub fn decoded(config: &ConfigView, section: Section) -> Result<String, DecodeError> {
    let mut out = String::new();
    for resource in resources(config, section) {
        let text = match resource.kind.as_str() {
            "CDS" => format!("{:#?}", decode::<Cluster>(resource)?),
            "EDS" => format!("{:#?}", decode::<ClusterLoadAssignment>(resource)?),
            "LDS" => format!("{:#?}", decode::<Listener>(resource)?),
            "VHDS" => format!("{:#?}", decode::<VirtualHost>(resource)?),
            _ => format!("{:#?}", decode::<RouteConfiguration>(resource)?),
        };
        let _ = writeln!(out, "# {} {}\n{text}", resource.kind, resource.name);
    }
    Ok(out)
}

/// The resources of `section` in Envoy's JSON, as a list.
pub fn envoy_json(config: &ConfigView, section: Section) -> Result<serde_json::Value, DecodeError> {
    let mut list = Vec::new();
    for resource in resources(config, section) {
        let error = |reason: String| DecodeError { kind: resource.kind.clone(), name: resource.name.clone(), reason };
        let bytes = resource.bytes().map_err(|e| error(e.to_string()))?;
        list.push(crate::envoy_json::to_json(&resource.kind, &bytes).map_err(|e| error(e.to_string()))?);
    }
    Ok(serde_json::Value::Array(list))
}

fn origin(metadata: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>) -> String {
    config_of(metadata).map(short_config).unwrap_or_else(|| "-".to_string())
}

fn cluster_row(cluster: &Cluster) -> Vec<String> {
    let parsed = ClusterName::parse(&cluster.name);
    let kind = match &cluster.cluster_discovery_type {
        Some(cluster::ClusterDiscoveryType::Type(t)) => {
            cluster::DiscoveryType::try_from(*t).map(|t| t.as_str_name().to_string()).unwrap_or_default()
        }
        Some(cluster::ClusterDiscoveryType::ClusterType(custom)) => custom.name.clone(),
        None => "STATIC".to_string(),
    };
    match parsed {
        Some(name) => vec![
            name.host,
            name.port.to_string(),
            if name.subset.is_empty() { "-".to_string() } else { name.subset },
            kind,
            origin(cluster.metadata.as_ref()),
        ],
        None => vec![cluster.name.clone(), "-".into(), "-".into(), kind, origin(cluster.metadata.as_ref())],
    }
}

fn endpoint_rows(assignment: &ClusterLoadAssignment) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for group in &assignment.endpoints {
        let locality = group.locality.as_ref().map(|l| {
            [l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        });
        for endpoint in &group.lb_endpoints {
            let address = match &endpoint.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(e)) => e.address.as_ref().map(socket).unwrap_or_default(),
                _ => "-".to_string(),
            };
            let status = HealthStatus::try_from(endpoint.health_status).unwrap_or(HealthStatus::Unknown);
            let status = if status == HealthStatus::Unknown { "HEALTHY" } else { status.as_str_name() };
            rows.push(vec![
                address,
                status.to_string(),
                locality.clone().filter(|l| !l.is_empty()).unwrap_or_else(|| "-".to_string()),
                group.priority.to_string(),
                assignment.cluster_name.clone(),
            ]);
        }
    }
    rows
}

fn socket(address: &Address) -> String {
    match &address.address {
        Some(address::Address::SocketAddress(s)) => match s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(port)) if s.address.contains(':') => {
                format!("[{}]:{port}", s.address)
            }
            Some(socket_address::PortSpecifier::PortValue(port)) => format!("{}:{port}", s.address),
            _ => s.address.clone(),
        },
        _ => "-".to_string(),
    }
}

fn listener_rows(listener: &Listener) -> Vec<Vec<String>> {
    let address = listener.address.as_ref().map(socket).unwrap_or_else(|| "-".to_string());
    let chains = listener.filter_chains.iter().chain(listener.default_filter_chain.as_ref());
    chains.map(|chain| vec![listener.name.clone(), address.clone(), chain_match(chain), destination(chain)]).collect()
}

fn chain_match(chain: &FilterChain) -> String {
    let Some(m) = &chain.filter_chain_match else { return "ALL".to_string() };
    let mut parts = Vec::new();
    if let Some(port) = &m.destination_port {
        parts.push(format!("port {}", port.value));
    }
    if !m.prefix_ranges.is_empty() {
        let ranges: Vec<String> = m
            .prefix_ranges
            .iter()
            .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.as_ref().map(|l| l.value).unwrap_or(32)))
            .collect();
        parts.push(format!("addr {}", ranges.join(",")));
    }
    if !m.server_names.is_empty() {
        parts.push(format!("sni {}", m.server_names.join(",")));
    }
    if !m.transport_protocol.is_empty() {
        parts.push(format!("transport {}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("alpn {}", m.application_protocols.join(",")));
    }
    if parts.is_empty() { "ALL".to_string() } else { parts.join("; ") }
}

/// Where a filter chain sends traffic: the route configuration of its HTTP connection manager, or its TCP
/// proxy's cluster(s).
fn destination(chain: &FilterChain) -> String {
    let mut found = Vec::new();
    for any in chain.filters.iter().filter_map(|f| match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => Some(any),
        _ => None,
    }) {
        if let Ok(hcm) = unpack::<HttpConnectionManager>(any) {
            found.push(match hcm.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(rds)) => format!("Route: {}", rds.route_config_name),
                Some(http_connection_manager::RouteSpecifier::RouteConfig(inline)) => {
                    format!("Inline route: {}", inline.name)
                }
                _ => "HTTP".to_string(),
            });
        } else if let Ok(tcp) = unpack::<TcpProxy>(any) {
            found.push(match tcp.cluster_specifier {
                Some(tcp_proxy::ClusterSpecifier::Cluster(cluster)) => format!("Cluster: {cluster}"),
                Some(tcp_proxy::ClusterSpecifier::WeightedClusters(weighted)) => {
                    let parts: Vec<String> =
                        weighted.clusters.iter().map(|c| format!("{} ({})", c.name, c.weight)).collect();
                    format!("Clusters: {}", parts.join(", "))
                }
                None => "TCP".to_string(),
            });
        }
    }
    if found.is_empty() { "-".to_string() } else { found.join("; ") }
}

fn virtual_host_rows(route_config: &str, host: &VirtualHost) -> Vec<Vec<String>> {
    let domains = match host.domains.as_slice() {
        [] => "-".to_string(),
        [only] => only.clone(),
        [first, rest @ ..] => format!("{first} + {} more", rest.len()),
    };
    host.routes
        .iter()
        .map(|r| {
            let matched = r.r#match.as_ref().map(route_match_text).unwrap_or_else(|| "-".to_string());
            vec![
                route_config.to_string(),
                host.name.clone(),
                domains.clone(),
                matched,
                route_target(r),
                origin(r.metadata.as_ref()),
            ]
        })
        .collect()
}

fn route_match_text(m: &envoy_types::pb::envoy::config::route::v3::RouteMatch) -> String {
    let mut text = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => format!("{p}*"),
        Some(route_match::PathSpecifier::Path(p)) => p.clone(),
        Some(route_match::PathSpecifier::SafeRegex(r)) => format!("~{}", r.regex),
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => format!("{p}/*"),
        _ => "/*".to_string(),
    };
    for header in &m.headers {
        let _ = write!(text, " [{}]", header.name);
    }
    if !m.query_parameters.is_empty() {
        let _ = write!(text, " ?{}", m.query_parameters.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join("&"));
    }
    text
}

fn route_target(r: &envoy_types::pb::envoy::config::route::v3::Route) -> String {
    match &r.action {
        Some(route::Action::Route(action)) => match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .iter()
                .map(|c| format!("{} {}%", c.name, c.weight.as_ref().map(|w| w.value).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".to_string(),
        },
        Some(route::Action::Redirect(_)) => "redirect".to_string(),
        Some(route::Action::DirectResponse(d)) => format!("direct response {}", d.status),
        _ => "-".to_string(),
    }
}
