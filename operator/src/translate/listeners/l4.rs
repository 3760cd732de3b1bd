//! The filter chains of tcp and tls rules (`notes/vs-contract.md`, "TCP and TLS routes"): on the listener of a
//! port, for each VirtualService in force for Services on that port, one chain per rule and condition that
//! applies there, matched on the destination address (the Services' cluster IPs, or the condition's
//! `destinationSubnets`) and, for tls rules, the SNI; each hands the connection to a TCP proxy.
//!
//! Chains are written in VirtualService order (namespace/name), tls rules before tcp rules (Istio's field order),
//! each in rule order: the first that matches wins, as Istio reads them. A chain whose match an earlier chain
//! already has (a later rule shadowed on some address) leaves that address out, and is left out when none remain:
//! Envoy refuses two chains with the same match, and the later one could never be used anyway.

use std::collections::HashSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::virtual_service::l4::{L4Match, RouteDestination, parse_subnet};
use weft_xds::filters::TCP_PROXY;
use weft_xds::pack;

use super::super::routes::cluster_of;
use crate::index::{Snapshot, VirtualServiceModel};

/// The transport protocol Envoy's TLS inspector reports for a TLS ClientHello.
const TLS: &str = "tls";

/// Every tcp and tls chain of the listener of `port`, in the order the proxy tries them.
pub(super) fn filter_chains(snapshot: &Snapshot, port: u16) -> Vec<FilterChain> {
    let mut claimed = HashSet::new();
    let mut chains = Vec::new();
    for vs in snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules()) {
        let Some(addresses) = cluster_ips(snapshot, vs, port) else { continue };
        let mut conditions: Vec<Condition<'_>> = Vec::new();
        for (i, rule) in vs.spec.tls.iter().enumerate() {
            for (j, condition) in rule.matches.iter().enumerate().filter(|(_, m)| applies(*m, port)) {
                let server_names = condition.sni_hosts.as_slice();
                conditions.push(Condition::new("tls", (i, j), condition, server_names, &rule.route));
            }
        }
        for (i, rule) in vs.spec.tcp.iter().enumerate() {
            if rule.matches.is_empty() {
                conditions.push(Condition {
                    kind: "tcp",
                    at: (i, 0),
                    subnets: &[],
                    server_names: &[],
                    route: &rule.route,
                });
            }
            for (j, condition) in rule.matches.iter().enumerate().filter(|(_, m)| applies(*m, port)) {
                conditions.push(Condition::new("tcp", (i, j), condition, &[], &rule.route));
            }
        }
        for condition in conditions {
            let prefixes = condition.prefixes(&addresses);
            let unclaimed = prefixes.into_iter().filter(|p| claimed.insert(condition.key(p))).collect();
            if let Some(chain) = condition.chain(snapshot, vs, port, unclaimed) {
                chains.push(chain);
            }
        }
    }
    chains
}

/// Whether a chain is matched on SNI (the listener then needs the TLS inspector).
pub(super) fn is_tls(chain: &FilterChain) -> bool {
    chain.filter_chain_match.as_ref().is_some_and(|m| m.transport_protocol == TLS)
}

/// The cluster IPs of the Services on `port` this VirtualService is in force for, without repeats; `None` when
/// it is in force for no Service on that port (its rules then shape no chain there).
fn cluster_ips(snapshot: &Snapshot, vs: &VirtualServiceModel, port: u16) -> Option<Vec<IpAddr>> {
    let in_force = |host: &&String| {
        snapshot.virtual_service(host).is_some_and(|v| (&v.namespace, &v.name) == (&vs.namespace, &vs.name))
    };
    let services: Vec<_> = vs
        .hosts
        .iter()
        .filter(in_force)
        .filter_map(|host| snapshot.services.get(host))
        .filter(|service| service.port(port).is_some())
        .collect();
    if services.is_empty() {
        return None;
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for address in services.iter().filter_map(|service| service.cluster_ip) {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Some(addresses)
}

/// Whether a condition can match a connection on `port` (its `port`, when set, is that one).
fn applies(condition: &impl L4Match, port: u16) -> bool {
    condition.port().is_none_or(|p| p == u32::from(port))
}

/// One rule's condition that applies on the listener: what its chain is made of.
struct Condition<'a> {
    kind: &'static str,
    /// Rule index, match index.
    at: (usize, usize),
    subnets: &'a [String],
    server_names: &'a [String],
    route: &'a [RouteDestination],
}

impl<'a> Condition<'a> {
    fn new(
        kind: &'static str,
        at: (usize, usize),
        condition: &'a impl L4Match,
        server_names: &'a [String],
        route: &'a [RouteDestination],
    ) -> Self {
        Self { kind, at, subnets: condition.destination_subnets(), server_names, route }
    }

    /// The destination addresses it matches: its `destinationSubnets`, else the Services' cluster IPs.
    fn prefixes(&self, cluster_ips: &[IpAddr]) -> Vec<(IpAddr, u32)> {
        if self.subnets.is_empty() {
            cluster_ips.iter().map(|ip| (*ip, if ip.is_ipv4() { 32 } else { 128 })).collect()
        } else {
            // Validation refuses what does not parse; a rule from before that is left without that address.
            self.subnets.iter().filter_map(|s| parse_subnet(s)).collect()
        }
    }

    /// What makes two chains' matches the same on one address prefix.
    fn key(&self, prefix: &(IpAddr, u32)) -> (IpAddr, u32, Vec<String>) {
        let mut server_names = self.server_names.to_vec();
        server_names.sort();
        (prefix.0, prefix.1, server_names)
    }

    /// Its chain on these addresses; `None` without addresses or destinations.
    fn chain(
        &self,
        snapshot: &Snapshot,
        vs: &VirtualServiceModel,
        port: u16,
        prefixes: Vec<(IpAddr, u32)>,
    ) -> Option<FilterChain> {
        if prefixes.is_empty() || self.route.is_empty() {
            return None;
        }
        let prefix_ranges = prefixes
            .into_iter()
            .map(|(address, len)| CidrRange {
                address_prefix: address.to_string(),
                prefix_len: Some(UInt32Value { value: len }),
            })
            .collect();
        let tls = self.kind == TLS;
        let filter_chain_match = FilterChainMatch {
            prefix_ranges,
            server_names: if tls { self.server_names.to_vec() } else { Vec::new() },
            transport_protocol: if tls { TLS.to_string() } else { String::new() },
            ..Default::default()
        };
        let proxy = tcp_proxy_of(snapshot, vs, self.route, port);
        Some(FilterChain {
            name: format!("{}|{}/{}|{}|{}", self.kind, vs.namespace, vs.name, self.at.0, self.at.1),
            filter_chain_match: Some(filter_chain_match),
            filters: vec![Filter {
                name: TCP_PROXY.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
            }],
            ..Default::default()
        })
    }
}

/// The TCP proxy to a rule's destinations: one cluster, or weighted clusters.
fn tcp_proxy_of(snapshot: &Snapshot, vs: &VirtualServiceModel, route: &[RouteDestination], port: u16) -> TcpProxy {
    let (stat_prefix, cluster_specifier) = match route {
        [only] => {
            let cluster = cluster_of(snapshot, vs, &only.destination, port);
            (cluster.clone(), tcp_proxy::ClusterSpecifier::Cluster(cluster))
        }
        destinations => {
            let clusters = destinations
                .iter()
                .map(|d| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: cluster_of(snapshot, vs, &d.destination, port),
                    weight: u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0),
                    ..Default::default()
                })
                .collect();
            let weighted = tcp_proxy::WeightedCluster { clusters };
            ("weighted".to_string(), tcp_proxy::ClusterSpecifier::WeightedClusters(weighted))
        }
    };
    TcpProxy { stat_prefix, cluster_specifier: Some(cluster_specifier), ..Default::default() }
}
