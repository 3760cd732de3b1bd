//! The HTTP twin of an inbound filter chain, when AuthorizationPolicies or rate limits apply: the same match
//! narrowed to HTTP
//! (Envoy's `http_inspector` names plaintext `http/1.1` and `h2c`; over the mesh's TLS, a client offering
//! [`MTLS_HTTP_ALPN`]), and an HTTP connection manager whose RBAC filters carry the HTTP view of the policies,
//! and whose local rate limit filter the port's limit ([`crate::ratelimit`]), before a router that sends every request on to [`super::INBOUND_PASSTHROUGH`], as Istio's inbound HTTP
//! chains do. Weft's proxy tells HTTP apart by reading the first bytes itself, on either transport, and reads
//! the twin for its rules.

use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};

use super::INBOUND_PASSTHROUGH;
use crate::authz::{Authorization, rbac};
use crate::detection::PLAINTEXT_HTTP;
use crate::filters::{HTTP_CONNECTION_MANAGER, ROUTER};
use crate::mtls::{MTLS_ALPN, MTLS_HTTP_ALPN};
use crate::ratelimit::{self, LOCAL_RATE_LIMIT, RateLimit};

/// The HTTP twin of `chain` (whose filters are not set yet), enforcing `authz` and `limit`.
pub(super) fn twin(chain: &FilterChain, authz: &Authorization, limit: Option<&RateLimit>) -> FilterChain {
    let mut matcher = chain.filter_chain_match.clone().unwrap_or_default();
    matcher.application_protocols = if matcher.application_protocols.is_empty() {
        PLAINTEXT_HTTP.iter().map(|p| p.to_string()).collect()
    } else {
        vec![http_alpn()]
    };
    let mut http_filters = rbac::http_filters(authz);
    http_filters.extend(limit.map(ratelimit::filter));
    http_filters.push(HttpFilter {
        name: ROUTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(crate::pack(&Router::default()))),
        ..Default::default()
    });
    let manager = HttpConnectionManager {
        stat_prefix: "inbound_http".to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(to_the_application())),
        http_filters,
        ..Default::default()
    };
    FilterChain {
        filter_chain_match: Some(matcher),
        filters: vec![Filter {
            name: HTTP_CONNECTION_MANAGER.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(crate::pack(&manager))),
        }],
        transport_socket: chain.transport_socket.clone(),
        name: format!("{}-http", chain.name),
        ..Default::default()
    }
}

/// The ALPN that picks the HTTP twin of a mutual TLS chain (Istio's `istio-http/1.1` counterpart): what Weft's
/// clients offer before [`MTLS_ALPN`] when they carry HTTP ([`crate::mtls::Carried`]).
fn http_alpn() -> String {
    String::from_utf8_lossy(MTLS_HTTP_ALPN).into_owned()
}

fn to_the_application() -> RouteConfiguration {
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(INBOUND_PASSTHROUGH.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    };
    RouteConfiguration {
        name: "inbound|http|0".to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "inbound|http|0".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// When `chain` is an HTTP twin: its HTTP view and rate limit, with `matcher` narrowed back to its TCP
/// sibling's. `None` for any other chain.
pub(super) fn parse_twin(
    chain: &FilterChain,
    matcher: &mut FilterChainMatch,
) -> Result<Option<(Authorization, Option<RateLimit>)>, String> {
    let [only] = chain.filters.as_slice() else { return Ok(None) };
    if only.name != HTTP_CONNECTION_MANAGER {
        return Ok(None);
    }
    let plaintext: Vec<String> = PLAINTEXT_HTTP.iter().map(|p| p.to_string()).collect();
    matcher.application_protocols = if matcher.application_protocols == plaintext {
        Vec::new()
    } else if matcher.application_protocols == [http_alpn()] {
        vec![String::from_utf8_lossy(MTLS_ALPN).into_owned()]
    } else {
        return Err(format!("an HTTP chain must match application_protocols {plaintext:?} or [{:?}]", http_alpn()));
    };
    let Some(filter::ConfigType::TypedConfig(any)) = &only.config_type else {
        return Err("the HTTP connection manager has no config".to_string());
    };
    let manager: HttpConnectionManager = crate::unpack(any).map_err(|e| e.to_string())?;
    let Some((_router, mut before)) = manager.http_filters.split_last().filter(|(last, _)| last.name == ROUTER) else {
        return Err(format!("the HTTP filters must end with {ROUTER}"));
    };
    let mut limit = None;
    if let Some((last, rest)) = before.split_last().filter(|(last, _)| last.name == LOCAL_RATE_LIMIT) {
        let Some(http_filter::ConfigType::TypedConfig(any)) = &last.config_type else {
            return Err("the local rate limit filter has no config".to_string());
        };
        limit = Some(ratelimit::parse(&crate::unpack(any).map_err(|e| e.to_string())?)?);
        before = rest;
    }
    let authz = rbac::parse_http_filters(before, "on the inbound side")?;
    Ok(Some((authz, limit)))
}
