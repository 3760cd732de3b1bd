//! The filter chains of tcp and tls rules (`notes/vs-contract.md`, "TCP and TLS routes"): on the listener of a
//! port, for each VirtualService in force for Services on that port, one chain per rule and condition that
//! applies there, matched on the destination address (the Services' cluster IPs, or the condition's
//! `destinationSubnets`) and, for tls rules, the SNI; each hands the connection to a TCP proxy.
//!
//! A condition with `sourceLabels` or `sourceNamespace` is only on the listeners of the clients it names, and a
//! VirtualService exported to some namespaces only is in force on the listeners of those namespaces' proxies:
//! Envoy cannot match a chain on the client, so such a client gets its own listener for the port ([`Source`]),
//! and the listener every other proxy shares has only what applies to every client (Istio builds listeners per
//! proxy alike).
//!
//! Chains are written in VirtualService order (namespace/name), tls rules before tcp rules (Istio's field order),
//! each in rule order. Envoy, and the proxy, pick the most specific chain (longest address prefix, exact server
//! name before a wildcard), so order decides only between equal matches: there the earlier rule wins, as in
//! Istio, and the later chain leaves out what an earlier one has (an address, or a server name on it), and is
//! left out when nothing remains. Envoy refuses two chains with the same match, and the later could never win.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::virtual_service::exported_everywhere;
use weft_crds::virtual_service::l4::{L4Match, RouteDestination, parse_subnet};
use weft_xds::filters::TCP_PROXY;
use weft_xds::pack;

use super::super::routes::cluster_of;
use crate::index::{Snapshot, VirtualServiceModel};

/// The transport protocol Envoy's TLS inspector reports for a TLS ClientHello.
const TLS: &str = "tls";

/// An address prefix and a server name (none for tcp chains) some chain of the listener matches.
type Claim = (IpAddr, u32, Option<String>);

/// The client a listener is built for: conditions with `sourceLabels` or `sourceNamespace` apply to it when it
/// satisfies them. Without one (the listeners every proxy shares) such conditions are left out.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Whether a condition names its clients (`sourceLabels`, `sourceNamespace`).
fn names_clients(condition: &(impl L4Match + ?Sized)) -> bool {
    !condition.source_labels().is_empty() || condition.source_namespace().is_some()
}

/// Whether `source` is a client the condition names (a condition naming none takes every client).
fn takes(condition: &(impl L4Match + ?Sized), source: Option<&Source<'_>>) -> bool {
    if !names_clients(condition) {
        return true;
    }
    source.is_some_and(|source| {
        condition.source_namespace().is_none_or(|ns| ns == source.namespace)
            && condition.source_labels().iter().all(|(k, v)| source.labels.get(k) == Some(v))
    })
}

/// Whether `source` gets a listener of its own for `port`: a condition there names it, or a VirtualService not
/// exported to every namespace may decide for its namespace which rules apply on the port.
pub(crate) fn needs_own_listener(snapshot: &Snapshot, port: u16, source: &Source<'_>) -> bool {
    let l4 = snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules());
    let named_here = l4
        .filter(|vs| cluster_ips(snapshot, vs, port, Some(source)).is_some())
        .any(|vs| any_condition(vs, |m| applies(m, port) && names_clients(m) && takes(m, Some(source))));
    named_here || restricted_rules_on(snapshot, port, Some(source.namespace))
}

/// Whether the listener of `port` may differ between proxies: a condition there names its clients, or a
/// VirtualService exported to some namespaces only names a Service on the port while tcp or tls rules apply there.
pub(crate) fn differs_by_client(snapshot: &Snapshot, port: u16) -> bool {
    let l4 = snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules());
    let mut on_port = l4.filter(|vs| serves_port(snapshot, vs, port)).peekable();
    let any_on_port = on_port.peek().is_some();
    let names_clients_here = on_port.any(|vs| any_condition(vs, |m| applies(m, port) && names_clients(m)));
    names_clients_here || (any_on_port && restricted_rules_on(snapshot, port, None))
}

/// Whether a VirtualService exported to some namespaces only (visible to `namespace`, when given) names a Service
/// on `port`: for those namespaces it may take that Service's connections from the shared listener's rules.
fn restricted_rules_on(snapshot: &Snapshot, port: u16, namespace: Option<&str>) -> bool {
    snapshot
        .virtual_services
        .iter()
        .filter(|vs| !exported_everywhere(&vs.spec.export_to))
        .filter(|vs| namespace.is_none_or(|ns| vs.visibility(ns).is_some()))
        .any(|vs| serves_port(snapshot, vs, port))
}

/// Whether some Service a VirtualService names has `port`.
fn serves_port(snapshot: &Snapshot, vs: &VirtualServiceModel, port: u16) -> bool {
    vs.hosts
        .iter()
        .flat_map(|host| snapshot.hosts_named(host))
        .any(|host| snapshot.services.get(&host).is_some_and(|service| service.port(port).is_some()))
}

/// Whether some condition of the VirtualService's tls and tcp rules satisfies `check`.
fn any_condition(vs: &VirtualServiceModel, check: impl Fn(&dyn L4Match) -> bool) -> bool {
    let tls = vs.spec.tls.iter().flat_map(|r| r.matches.iter().map(|m| m as &dyn L4Match));
    let tcp = vs.spec.tcp.iter().flat_map(|r| r.matches.iter().map(|m| m as &dyn L4Match));
    tls.chain(tcp).any(check)
}

/// Every tcp and tls chain of the listener of `port` for `source` (none: the shared listener), in the order the
/// proxy tries them.
pub(super) fn filter_chains(snapshot: &Snapshot, port: u16, source: Option<&Source<'_>>) -> Vec<FilterChain> {
    let mut claimed = HashSet::new();
    let mut chains = Vec::new();
    for vs in snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules()) {
        let Some(addresses) = cluster_ips(snapshot, vs, port, source) else { continue };
        let mut conditions: Vec<Condition<'_>> = Vec::new();
        for (i, rule) in vs.spec.tls.iter().enumerate() {
            let taken = rule.matches.iter().enumerate().filter(|(_, m)| applies(*m, port) && takes(*m, source));
            for (j, condition) in taken {
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
            let taken = rule.matches.iter().enumerate().filter(|(_, m)| applies(*m, port) && takes(*m, source));
            for (j, condition) in taken {
                conditions.push(Condition::new("tcp", (i, j), condition, &[], &rule.route));
            }
        }
        for condition in conditions {
            let (prefixes, server_names) = condition.unclaimed(&addresses, &mut claimed);
            if let Some(chain) = condition.chain(snapshot, vs, port, prefixes, server_names) {
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
fn cluster_ips(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    port: u16,
    source: Option<&Source<'_>>,
) -> Option<Vec<IpAddr>> {
    let in_force = |host: &String| {
        let chosen = match source {
            Some(source) => snapshot.virtual_service_for(host, source.namespace),
            None => snapshot.mesh_virtual_service(host),
        };
        chosen.is_some_and(|v| (&v.namespace, &v.name) == (&vs.namespace, &vs.name))
    };
    // A wildcard host names every Service it matches.
    let services: Vec<_> = vs
        .hosts
        .iter()
        .flat_map(|host| snapshot.hosts_named(host))
        .filter(in_force)
        .filter_map(|host| snapshot.services.get(&host))
        .filter(|service| service.port(port).is_some())
        .collect();
    if services.is_empty() {
        return None;
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for address in services.iter().flat_map(|service| service.cluster_ips.iter().copied()) {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Some(addresses)
}

/// Whether a condition can match a connection on `port` (its `port`, when set, is that one).
fn applies(condition: &(impl L4Match + ?Sized), port: u16) -> bool {
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

    /// The addresses and server names of its match that no earlier chain has, noted as had now. A server name
    /// is left out when earlier chains have it on every address; an address, when they have every server name
    /// kept on it (a tcp chain's "server name" is none at all).
    fn unclaimed(&self, cluster_ips: &[IpAddr], claimed: &mut HashSet<Claim>) -> (Vec<(IpAddr, u32)>, Vec<String>) {
        let prefixes = self.prefixes(cluster_ips);
        let names: Vec<Option<&String>> = match self.server_names {
            [] => vec![None],
            names => names.iter().map(Some).collect(),
        };
        let had = |claimed: &HashSet<Claim>, p: &(IpAddr, u32), name: Option<&String>| {
            claimed.contains(&(p.0, p.1, name.cloned()))
        };
        let names: Vec<Option<&String>> =
            names.into_iter().filter(|name| prefixes.iter().any(|p| !had(claimed, p, *name))).collect();
        let prefixes: Vec<(IpAddr, u32)> =
            prefixes.into_iter().filter(|p| names.iter().any(|name| !had(claimed, p, *name))).collect();
        for prefix in &prefixes {
            claimed.extend(names.iter().map(|name| (prefix.0, prefix.1, name.cloned())));
        }
        (prefixes, names.into_iter().flatten().cloned().collect())
    }

    /// Its chain on these addresses (and server names); `None` without addresses or destinations.
    fn chain(
        &self,
        snapshot: &Snapshot,
        vs: &VirtualServiceModel,
        port: u16,
        prefixes: Vec<(IpAddr, u32)>,
        server_names: Vec<String>,
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
            server_names,
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
    // One TCP proxy serves every destination of the rule: the longest idle timeout their rules set (0s: none).
    let clusters: Vec<&str> = match &cluster_specifier {
        tcp_proxy::ClusterSpecifier::Cluster(name) => vec![name.as_str()],
        tcp_proxy::ClusterSpecifier::WeightedClusters(w) => w.clusters.iter().map(|c| c.name.as_str()).collect(),
    };
    let timeouts = clusters.iter().filter_map(|c| super::super::clusters::tcp_idle_timeout(snapshot, c));
    let idle_timeout = timeouts.max_by_key(|t| if t.is_zero() { std::time::Duration::MAX } else { *t });
    TcpProxy {
        stat_prefix,
        cluster_specifier: Some(cluster_specifier),
        idle_timeout: idle_timeout.map(super::super::duration),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml;

    const DB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: 10.96.0.9, ports: [{port: 443}]}
---
apiVersion: networking.weft.dev/v1alpha1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db]
  tls:
  - {match: [{sniHosts: [a.example.com, b.example.com]}], route: [{destination: {host: db}}]}
  - {match: [{sniHosts: [c.example.com, a.example.com]}], route: [{destination: {host: db}}]}
  - {match: [{sniHosts: [b.example.com]}, {port: 8443, sniHosts: [d.example.com]}], route: [{destination: {host: db}}]}
  tcp:
  - {route: [{destination: {host: db}}]}
  - {route: [{destination: {host: db}}]}
  - {match: [{destinationSubnets: [10.0.0.0/8]}], route: [{destination: {host: db}}]}
"#;

    #[test]
    fn what_an_earlier_chain_matches_is_left_out_of_later_ones() {
        let chains = filter_chains(&snapshot_of_yaml(DB), 443, None);
        let seen: Vec<(&str, Vec<String>, Vec<String>)> = chains
            .iter()
            .map(|c| {
                let m = c.filter_chain_match.as_ref().unwrap();
                let prefixes = m
                    .prefix_ranges
                    .iter()
                    .map(|r| format!("{}/{:?}", r.address_prefix, r.prefix_len.map(|l| l.value)))
                    .collect();
                (c.name.as_str(), prefixes, m.server_names.clone())
            })
            .collect();
        let ip = || vec!["10.96.0.9/Some(32)".to_string()];
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            [
                ("tls|shop/db|0|0", ip(), names(&["a.example.com", "b.example.com"])),
                ("tls|shop/db|1|0", ip(), names(&["c.example.com"])),
                ("tcp|shop/db|0|0", ip(), Vec::new()),
                ("tcp|shop/db|2|0", vec!["10.0.0.0/Some(8)".to_string()], Vec::new()),
            ],
            "tls rule 2 is shadowed on 443 (its other condition is for 8443), and so is tcp rule 1"
        );
        assert!(chains.iter().take(2).all(is_tls) && !chains.iter().skip(2).any(is_tls));
        assert!(
            filter_chains(&snapshot_of_yaml(&DB.replace("clusterIP: 10.96.0.9", "clusterIP: None")), 443, None)
                .iter()
                .all(|c| c.name == "tcp|shop/db|2|0"),
            "without a cluster IP only destinationSubnets match"
        );
    }
}
