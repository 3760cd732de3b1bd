//! Outbound listeners: one per Service port, handing HTTP to the route configuration of that port.

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use weft_xds::filters::{CORS, FAULT, HTTP_CONNECTION_MANAGER, ROUTER};
use weft_xds::{listener_name, pack, route_config_name};

use super::ads_config_source;

pub(super) fn outbound(port: u16) -> Listener {
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
    Listener {
        name,
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HTTP_CONNECTION_MANAGER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&manager))),
            }],
            ..Default::default()
        }],
        // Traffic reaches these through the capture listener (15001), as with Istio; they never bind.
        bind_to_port: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    }
}
