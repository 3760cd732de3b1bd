//! Outbound listeners: one per Service port. The first chain, without a `filter_chain_match` (the default), hands
//! HTTP to the route configuration of that port; after it, the tcp and tls rules of VirtualServices each add a TCP
//! proxy chain matched on the destination address (and SNI), see [`l4`]. Unless every Service on the port declares
//! HTTP by its port name, the listener asks proxies to detect the protocol first, or, where every one declares
//! another protocol, to take connections for TCP at once ([`PortKind`], [`weft_xds::detection`]).

mod l4;

pub use l4::Source;
pub(crate) use l4::{differs_by_client, needs_own_listener};

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use weft_xds::filters::{CORS, FAULT, HTTP_CONNECTION_MANAGER, ROUTER, TLS_INSPECTOR};
use weft_xds::{listener_name, pack, route_config_name};

use super::ads_config_source;
use crate::index::Snapshot;

/// How a port's listener takes a new connection, by the protocol its Services declare
/// ([`super::port_protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
    /// Every Service declares HTTP: HTTP at once.
    Http,
    /// Look at the first bytes ([`weft_xds::detection::detect`]).
    Detect,
    /// Every Service declares a protocol other than HTTP: TCP at once ([`weft_xds::detection::declare_tcp`]; for
    /// proxies that read it only).
    Tcp,
}

/// The outbound listener of `port` for `source` (none: the one every proxy shares): the HTTP chain, then the tcp
/// and tls chains of the rules that apply there.
pub(super) fn outbound(snapshot: &Snapshot, port: u16, source: Option<&Source<'_>>, kind: PortKind) -> Listener {
    let l4_chains = l4::filter_chains(snapshot, port, source);
    // The proxy (and Envoy) needs the ClientHello's SNI before it can pick a tls chain.
    let inspects_tls = l4_chains.iter().any(l4::is_tls);
    let filter_chains: Vec<FilterChain> = std::iter::once(http_chain(port)).chain(l4_chains).collect();
    let listener_filters = if inspects_tls {
        vec![ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack(&TlsInspector::default()))),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    let mut listener = Listener {
        name: listener_name(port),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                ..Default::default()
            })),
        }),
        filter_chains,
        listener_filters,
        // Traffic reaches these through the capture listener (15001), as with Istio; they never bind.
        bind_to_port: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    };
    match kind {
        PortKind::Http => {}
        PortKind::Detect => weft_xds::detection::detect(&mut listener),
        PortKind::Tcp => weft_xds::detection::declare_tcp(&mut listener),
    }
    listener
}

/// The default chain: HTTP to the route configuration of `port`.
fn http_chain(port: u16) -> FilterChain {
    let name = listener_name(port);
    let manager = HttpConnectionManager {
        stat_prefix: format!("outbound_{name}"),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_config_name(port),
        })),
        // Istio's order. The CORS and fault filters do nothing by themselves: routes with `corsPolicy` or `fault`
        // configure them (typed_per_filter_config).
        http_filters: vec![
            HttpFilter {
                name: CORS.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack(&Cors::default()))),
                ..Default::default()
            },
            HttpFilter {
                name: FAULT.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack(&HttpFault::default()))),
                ..Default::default()
            },
            HttpFilter {
                name: ROUTER.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack(&Router::default()))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    FilterChain {
        filters: vec![Filter {
            name: HTTP_CONNECTION_MANAGER.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(pack(&manager))),
        }],
        ..Default::default()
    }
}
