//! The contract for a proxy's inbound side: which connections it accepts, per port, as PeerAuthentication
//! decides (`PERMISSIVE`, `STRICT`, `DISABLE`). The operator sends it as one listener, [`INBOUND_LISTENER`], in
//! Istio's `virtualInbound` shape so an Envoy could consume it: per mode a filter chain for a sidecar's mutual TLS
//! (transport `tls` with the mesh ALPN, terminated with the workload certificate, client certificate required)
//! and/or a chain for anything else, each under a `destination_port` match for a port-level mode or without one
//! for the workload's mode. Envoy picks the chains of the most specific port match first, so a port-level
//! `STRICT` has no plaintext chain to fall back to. Both chains pass bytes on with `tcp_proxy` to
//! [`INBOUND_PASSTHROUGH`] (Istio's original-destination cluster). [`listener`] builds it, [`parse`] reads it
//! back, so the two sides cannot drift apart.
//!
//! When AuthorizationPolicies apply to the workload, each chain carries their TCP view as network RBAC filters
//! before its `tcp_proxy`, and has an HTTP twin ([`http`]) carrying their HTTP view in an HTTP connection
//! manager, as Istio's inbound listener does; rate limits (HTTPLocalRateLimitPolicy) ride in the twins too, after
//! the RBAC filters, and a port with a limit of its own gets chains of its own. The two views differ where a rule tests what only HTTP has
//! (Istio's rule: such an `ALLOW` rule never matches a TCP connection; a `DENY` rule matches without those
//! tests).

mod http;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, TrafficDirection, TransportSocket, address, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, common_tls_context::ValidationContextType,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use serde::Serialize;

use crate::authz::{InboundAuthz, rbac};
use crate::filters::{TCP_PROXY, TLS_INSPECTOR};
use crate::mtls::{CERTIFICATE_SECRET, MTLS_ALPN, ROOTS_SECRET, TLS_SOCKET, sds};
use crate::ratelimit::RateLimit;

/// Name of the inbound listener (Istio's).
pub const INBOUND_LISTENER: &str = "virtualInbound";
/// The cluster inbound connections go on to: their original destination, the application (Istio's name).
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";
/// The port the inbound listener is bound to (the capture port).
pub const INBOUND_CAPTURE_PORT: u32 = 15006;

/// What the inbound side accepts on a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeerMode {
    /// A sidecar's mutual TLS and anything else, told apart by the first bytes (Istio's default).
    #[default]
    Permissive,
    /// A sidecar's mutual TLS only; anything else is closed before a byte reaches the application.
    Strict,
    /// Everything passes to the application as it comes; mutual TLS is not terminated.
    Disable,
}

/// A workload's inbound modes (one for every port, and the ports that differ), its authorization, and its
/// request rate limits (one for every port, and the ports with their own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct InboundPolicy {
    pub mode: PeerMode,
    pub ports: BTreeMap<u16, PeerMode>,
    pub authz: InboundAuthz,
    pub rate_limit: Option<RateLimit>,
    pub port_rate_limits: BTreeMap<u16, RateLimit>,
}

impl InboundPolicy {
    /// The mode for connections to the application's `port`.
    pub fn mode_for(&self, port: u16) -> PeerMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }

    /// The rate limit of requests to the application's `port`.
    pub fn limit_for(&self, port: u16) -> Option<&RateLimit> {
        self.port_rate_limits.get(&port).or(self.rate_limit.as_ref())
    }

    /// Whether it says nothing beyond the default (PERMISSIVE everywhere, nothing to authorize or limit).
    pub fn is_default(&self) -> bool {
        self.mode == PeerMode::Permissive
            && self.ports.values().all(|m| *m == PeerMode::Permissive)
            && self.authz.is_empty()
            && self.rate_limit.is_none()
            && self.port_rate_limits.is_empty()
    }

    /// The same policy without port-level modes that repeat the workload's (what [`parse`] reads back).
    pub fn normalized(mut self) -> Self {
        let mode = self.mode;
        self.ports.retain(|_, port_mode| *port_mode != mode);
        self
    }
}

/// The inbound listener for `policy`.
pub fn listener(policy: &InboundPolicy) -> Listener {
    let ports: std::collections::BTreeSet<u16> =
        policy.ports.keys().chain(policy.port_rate_limits.keys()).copied().collect();
    let levels = ports.into_iter().map(|port| (Some(port), policy.mode_for(port), policy.limit_for(port)));
    let filter_chains = levels
        .chain([(None, policy.mode, policy.rate_limit.as_ref())])
        .flat_map(|(port, mode, limit)| chains(port.map(u32::from), mode, &policy.authz, limit))
        .collect();
    Listener {
        name: INBOUND_LISTENER.to_string(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(INBOUND_CAPTURE_PORT)),
                ..Default::default()
            })),
        }),
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters: vec![ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType::TypedConfig(
                crate::pack(&TlsInspector::default()),
            )),
            ..Default::default()
        }],
        filter_chains,
        ..Default::default()
    }
}

fn chains(port: Option<u32>, mode: PeerMode, authz: &InboundAuthz, limit: Option<&RateLimit>) -> Vec<FilterChain> {
    let mutual = FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: port.map(|value| UInt32Value { value }),
            transport_protocol: "tls".to_string(),
            application_protocols: vec![String::from_utf8_lossy(MTLS_ALPN).into_owned()],
            ..Default::default()
        }),
        transport_socket: Some(mutual_tls_socket()),
        name: chain_name(port, "mtls"),
        ..Default::default()
    };
    let anything = FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: port.map(|value| UInt32Value { value }),
            ..Default::default()
        }),
        name: chain_name(port, "plaintext"),
        ..Default::default()
    };
    let chains = match mode {
        PeerMode::Permissive => vec![mutual, anything],
        PeerMode::Strict => vec![mutual],
        PeerMode::Disable => vec![anything],
    };
    chains.into_iter().flat_map(|chain| with_filters(chain, authz, limit)).collect()
}

/// The chain with its filters (network RBAC, then `tcp_proxy`), and its HTTP twin when there is anything to
/// authorize or limit.
fn with_filters(mut chain: FilterChain, authz: &InboundAuthz, limit: Option<&RateLimit>) -> Vec<FilterChain> {
    let twin = (!authz.is_empty() || limit.is_some()).then(|| http::twin(&chain, &authz.http, limit));
    chain.filters = rbac::network_filters(&authz.tcp);
    chain.filters.push(passthrough());
    [chain].into_iter().chain(twin).collect()
}

fn chain_name(port: Option<u32>, kind: &str) -> String {
    match port {
        Some(port) => format!("{port}-{kind}"),
        None => kind.to_string(),
    }
}

fn passthrough() -> Filter {
    let proxy = TcpProxy {
        stat_prefix: INBOUND_PASSTHROUGH.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(INBOUND_PASSTHROUGH.to_string())),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(crate::pack(
            &proxy,
        ))),
    }
}

/// Terminates a sidecar's TLS with the workload certificate, requiring the client's, checked against the bundle.
fn mutual_tls_socket() -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(CERTIFICATE_SECRET)],
            alpn_protocols: vec![String::from_utf8_lossy(MTLS_ALPN).into_owned()],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(sds(ROOTS_SECRET))),
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(crate::pack(&context))),
    }
}

/// Reads a listener built by [`listener`] back into the policy; a message naming what is not of that shape.
pub fn parse(listener: &Listener) -> Result<InboundPolicy, String> {
    if let Some(other) = listener.listener_filters.iter().find(|f| f.name != TLS_INSPECTOR) {
        return Err(format!("listener filter {:?} is not supported", other.name));
    }
    // Per port (None: the workload's mode): whether a mutual TLS chain and a catch-all chain are there.
    let mut seen: BTreeMap<Option<u16>, (bool, bool)> = BTreeMap::new();
    // The authorization of every chain: the listener's views are the workload's, the same on each.
    let (mut tcp_views, mut http_views) = (Vec::new(), Vec::new());
    // The rate limit of each port's HTTP chains (None: the workload's).
    let mut limits: BTreeMap<Option<u16>, Option<RateLimit>> = BTreeMap::new();
    for chain in &listener.filter_chains {
        let name = &chain.name;
        let in_chain = |e: String| format!("filter chain {name:?}: {e}");
        let mut matcher = chain.filter_chain_match.clone().unwrap_or_default();
        let port = match matcher.destination_port.map(|p| u16::try_from(p.value)) {
            None => None,
            Some(Ok(port)) if port != 0 => Some(port),
            Some(_) => return Err(in_chain("destination_port is not a port".to_string())),
        };
        if let Some((view, limit)) = http::parse_twin(chain, &mut matcher).map_err(in_chain)? {
            http_views.push(view);
            if limits.insert(port, limit.clone()).is_some_and(|other| other != limit) {
                return Err(in_chain("the port's HTTP chains limit requests differently".to_string()));
            }
        } else {
            tcp_views.push(tcp_view(&chain.filters).map_err(in_chain)?);
        }
        let entry = seen.entry(port).or_default();
        if is_mutual_chain(&matcher, chain.transport_socket.as_ref()) {
            entry.0 = true;
        } else if matcher == (FilterChainMatch { destination_port: matcher.destination_port, ..Default::default() })
            && chain.transport_socket.is_none()
        {
            entry.1 = true;
        } else {
            return Err(in_chain("neither a mutual TLS chain nor a plaintext one".to_string()));
        }
    }
    let mode_of = |port: Option<u16>| match seen.get(&port) {
        Some((true, true)) => Ok(PeerMode::Permissive),
        Some((true, false)) => Ok(PeerMode::Strict),
        Some((false, true)) => Ok(PeerMode::Disable),
        _ => Err("the listener has no filter chain for every port (one without destination_port)".to_string()),
    };
    let mode = mode_of(None)?;
    let mut ports = BTreeMap::new();
    for port in seen.keys().flatten() {
        ports.insert(*port, mode_of(Some(*port))?);
    }
    let authz = InboundAuthz { tcp: same_on_every_chain(tcp_views)?, http: same_on_every_chain(http_views)? };
    if !authz.tcp.is_empty() && authz.http.is_empty() {
        return Err("the chains authorize TCP connections but have no HTTP twin to authorize requests".to_string());
    }
    let rate_limit = limits.get(&None).cloned().flatten();
    let port_rate_limits = limits
        .into_iter()
        .filter_map(|(port, limit)| Some((port?, limit?)))
        .filter(|(_, limit)| Some(limit) != rate_limit.as_ref())
        .collect();
    Ok(InboundPolicy { mode, ports, authz, rate_limit, port_rate_limits }.normalized())
}

/// The TCP view of a chain's filters: network RBAC filters, then one `tcp_proxy`.
fn tcp_view(filters: &[Filter]) -> Result<crate::authz::Authorization, String> {
    let Some((_tcp_proxy, rbac_filters)) = filters.split_last().filter(|(last, _)| last.name == TCP_PROXY) else {
        return Err(format!("a chain must end with one {TCP_PROXY} filter"));
    };
    rbac::parse_network_filters(rbac_filters, &format!("before {TCP_PROXY}"))
}

fn same_on_every_chain(views: Vec<crate::authz::Authorization>) -> Result<crate::authz::Authorization, String> {
    let mut views = views.into_iter();
    let first = views.next().unwrap_or_default();
    if views.any(|view| view != first) {
        return Err("the filter chains authorize differently; the inbound side has one authorization".to_string());
    }
    Ok(first)
}

fn is_mutual_chain(matcher: &FilterChainMatch, socket: Option<&TransportSocket>) -> bool {
    let alpn = String::from_utf8_lossy(MTLS_ALPN);
    matcher.transport_protocol == "tls"
        && matcher.application_protocols.iter().any(|p| *p == alpn)
        && socket.is_some_and(|s| s.name == TLS_SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_and_port_level_reads_back_as_built() {
        for mode in [PeerMode::Permissive, PeerMode::Strict, PeerMode::Disable] {
            let ports =
                BTreeMap::from([(8080, PeerMode::Disable), (9090, PeerMode::Strict), (7070, PeerMode::Permissive)]);
            let policy = InboundPolicy { mode, ports, ..Default::default() };
            assert_eq!(parse(&listener(&policy)), Ok(policy.clone().normalized()));
            assert_eq!(policy.mode_for(8080), PeerMode::Disable);
            assert_eq!(policy.mode_for(1), mode);
        }
    }

    #[test]
    fn strict_has_no_plaintext_chain_and_other_shapes_are_refused() {
        let strict = listener(&InboundPolicy { mode: PeerMode::Strict, ..Default::default() });
        assert_eq!(strict.filter_chains.len(), 1);
        assert_eq!(
            strict.filter_chains[0].filter_chain_match.as_ref().map(|m| m.transport_protocol.as_str()),
            Some("tls")
        );
        let mut no_default = strict.clone();
        no_default.filter_chains.clear();
        assert!(parse(&no_default).unwrap_err().contains("no filter chain for every port"));
        let mut odd = strict;
        odd.filter_chains[0].filters.clear();
        assert!(parse(&odd).unwrap_err().contains("tcp_proxy"));
    }

    #[test]
    fn authorization_rides_on_every_chain_and_reads_back() {
        use crate::authz::{Authorization, Layer, NamedRule, Permission, Principal};
        let rule = |permission| NamedRule {
            policy: "shop/p".into(),
            index: 0,
            permissions: vec![permission],
            principals: vec![Principal::Any],
        };
        let http = Authorization {
            allow: Layer {
                enforced: Some(vec![rule(Permission::Path(crate::authz::StringMatch::new(
                    crate::authz::MatchKind::Exact,
                    "/a",
                )))]),
                dry_run: None,
            },
            ..Default::default()
        };
        let tcp = Authorization { allow: Layer { enforced: Some(Vec::new()), dry_run: None }, ..Default::default() };
        let policy = InboundPolicy {
            mode: PeerMode::Permissive,
            ports: BTreeMap::from([(9090, PeerMode::Strict)]),
            authz: InboundAuthz { http, tcp },
            ..Default::default()
        };
        let built = listener(&policy);
        // Per port and transport a TCP chain and its HTTP twin: 9090 mtls, then mtls and plaintext.
        assert_eq!(built.filter_chains.len(), 6);
        assert_eq!(parse(&built), Ok(policy.clone()));
        let mut differing = built.clone();
        differing.filter_chains[0].filters.remove(0);
        assert!(parse(&differing).unwrap_err().contains("authorize differently"));
    }

    #[test]
    fn rate_limits_ride_in_http_chains_and_a_port_with_its_own_gets_chains() {
        let limit = |policy: &str, total| RateLimit {
            policy: policy.into(),
            total: Some(total),
            identity: None,
            overrides: BTreeMap::new(),
        };
        let policy = InboundPolicy {
            mode: PeerMode::Strict,
            rate_limit: Some(limit("shop/all", 100)),
            port_rate_limits: BTreeMap::from([(8080, limit("shop/api", 10))]),
            ..Default::default()
        };
        let built = listener(&policy);
        // STRICT: per port (8080, then every port) the mutual TLS chain and its HTTP twin.
        assert_eq!(built.filter_chains.len(), 4);
        assert_eq!(parse(&built), Ok(policy.clone()));
        assert_eq!(policy.limit_for(8080).map(|l| l.total), Some(Some(10)));
        assert_eq!(policy.limit_for(9090).map(|l| &*l.policy), Some("shop/all"));
    }
}
