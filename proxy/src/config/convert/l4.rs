//! Listener filter chains -> the HTTP route configuration (the chain with the HTTP connection manager) or a TCP
//! route (a chain with a TCP proxy to weighted clusters, matched by destination range and, for TLS, server name).

use std::net::IpAddr;

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use weft_xds::detection::{PLAINTEXT_HTTP, plaintext_http_match};
use weft_xds::filters::{HTTP_CONNECTION_MANAGER, TCP_PROXY};

use crate::config::WeightedTarget;
use crate::config::l4::{Cidr, L4Route};

pub(super) enum Chain {
    /// Serves HTTP by this route configuration; `plaintext_only`: matched on plaintext HTTP's application
    /// protocols (a listener that serves TCP unless told otherwise, [`weft_xds::detection::declare_tcp`]).
    Http {
        route_config: String,
        plaintext_only: bool,
    },
    Tcp(L4Route),
}

pub(super) fn chain_kind(chain: &FilterChain) -> Result<Chain, String> {
    let [only] = chain.filters.as_slice() else {
        return Err(format!("filter chain {:?}: exactly one network filter is supported", chain.name));
    };
    let Some(filter::ConfigType::TypedConfig(any)) = &only.config_type else {
        return Err(format!("filter {:?}: a typed config is required", only.name));
    };
    match only.name.as_str() {
        HTTP_CONNECTION_MANAGER => {
            let plaintext_only = match &chain.filter_chain_match {
                None => false,
                Some(matched) if *matched == plaintext_http_match() => true,
                Some(_) => {
                    return Err(format!(
                        "the HTTP filter chain must match nothing, or only application_protocols {PLAINTEXT_HTTP:?}"
                    ));
                }
            };
            let manager: HttpConnectionManager = weft_xds::unpack(any).map_err(|e| e.to_string())?;
            match manager.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
                    Ok(Chain::Http { route_config: rds.route_config_name, plaintext_only })
                }
                _ => Err("routes must come from RDS (inline and scoped routes are not supported)".into()),
            }
        }
        TCP_PROXY => {
            let proxy: TcpProxy = weft_xds::unpack(any).map_err(|e| e.to_string())?;
            tcp_route(chain, &proxy).map(Chain::Tcp).map_err(|m| format!("filter chain {:?}: {m}", chain.name))
        }
        other => Err(format!("network filter {other:?} is not supported")),
    }
}

fn tcp_route(chain: &FilterChain, proxy: &TcpProxy) -> Result<L4Route, String> {
    let targets = match &proxy.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(name)) => vec![WeightedTarget::new(name.clone(), 1)],
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) if !w.clusters.is_empty() => {
            w.clusters.iter().map(|c| WeightedTarget::new(c.name.clone(), c.weight)).collect()
        }
        _ => return Err("the TCP proxy must name a cluster or weighted clusters".into()),
    };
    if targets.len() > 1 && targets.iter().all(|t| t.weight == 0) {
        return Err("weighted clusters must not all have weight 0".into());
    }
    let matched = chain.filter_chain_match.clone().unwrap_or_default();
    let unsupported = matched.destination_port.is_some()
        || !matched.source_prefix_ranges.is_empty()
        || !matched.direct_source_prefix_ranges.is_empty()
        || !matched.source_ports.is_empty()
        || !matched.application_protocols.is_empty()
        || !matched.address_suffix.is_empty();
    if unsupported {
        return Err("only destination ranges, server names and the transport protocol can be matched".into());
    }
    let tls = match matched.transport_protocol.as_str() {
        "" => false,
        "tls" => true,
        other => return Err(format!("transport protocol {other:?} is not supported")),
    };
    if !matched.server_names.is_empty() && !tls {
        return Err("server names are matched on TLS connections only (transport_protocol: tls)".into());
    }
    let destinations = matched.prefix_ranges.iter().map(cidr).collect::<Result<_, _>>()?;
    Ok(L4Route {
        name: chain.name.clone(),
        destinations,
        server_names: matched.server_names.clone(),
        tls,
        targets,
        idle_timeout: proxy.idle_timeout.as_ref().map(super::to_duration).transpose()?,
    })
}

fn cidr(range: &envoy_types::pb::envoy::config::core::v3::CidrRange) -> Result<Cidr, String> {
    let address: IpAddr =
        range.address_prefix.parse().map_err(|_| format!("{:?} is not an IP address", range.address_prefix))?;
    let most = if address.is_ipv4() { 32 } else { 128 };
    // Envoy: an unset prefix length is 0 (the whole address family).
    let prefix = range.prefix_len.as_ref().map_or(0, |p| p.value);
    let prefix = u8::try_from(prefix)
        .ok()
        .filter(|p| u32::from(*p) <= most)
        .ok_or_else(|| format!("prefix length {prefix} is out of range"))?;
    Ok(Cidr { address, prefix })
}
