//! Route configurations: per port, one virtual host per Service, with the VirtualService's rules or, when no
//! VirtualService names the Service, a single route to the whole Service. The Envoy fields written are fixed
//! by the VirtualService contract the proxy reads (`notes/vs-contract.md`); the submodules translate one part of
//! a rule each.

mod actions;
mod cors;
mod fault;
mod headers;
mod matching;
mod retry;

use std::collections::HashMap;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, Vhds, VirtualHost, route, route_action};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::HttpRoute;
use weft_crds::validate::MAX_DIRECT_RESPONSE_BODY;
use weft_xds::filters::{CORS, FAULT};
use weft_xds::provenance::{ConfigKind, config_metadata};
use weft_xds::{address_domain, cluster_name, pack, route_config_name, virtual_host_name};

pub(super) use self::actions::cluster_of;
use self::headers::HeaderEdits;
use self::matching::{applies, match_all, route_match};
use super::ads_config_source;
use crate::index::{ServiceModel, Snapshot, VirtualServiceModel};

/// The route configuration for `port` holding a virtual host per Service of `services` on that port. With
/// `on_demand`, a proxy asks for the virtual hosts of other Services as it meets them (VHDS over ADS).
pub(super) fn route_configuration<'a>(
    snapshot: &Snapshot,
    namespace: &str,
    port: u16,
    services: impl Iterator<Item = &'a ServiceModel>,
    on_demand: bool,
) -> RouteConfiguration {
    let virtual_hosts = services
        .filter(|service| service.port(port).is_some())
        .map(|service| virtual_host(snapshot, service, port, namespace))
        .collect();
    let vhds = on_demand.then(|| Vhds { config_source: Some(ads_config_source()) });
    RouteConfiguration {
        name: route_config_name(port),
        virtual_hosts,
        vhds,
        // As Istio does: direct responses may be as large as validation allows, not Envoy's default 4 KiB.
        max_direct_response_body_size_bytes: Some(UInt32Value { value: MAX_DIRECT_RESPONSE_BODY as u32 }),
        ..Default::default()
    }
}

/// The virtual host of one Service port, as proxies in `namespace` see it: the rules of the VirtualService that
/// routes the Service for them (one exported to their namespace) or, when that one has no HTTP rules or there is
/// none, a single route to the whole Service.
pub(super) fn virtual_host(snapshot: &Snapshot, service: &ServiceModel, port: u16, namespace: &str) -> VirtualHost {
    VirtualHost {
        name: virtual_host_name(&service.fqdn(), port),
        domains: domains(service, port, namespace),
        // A VirtualService with only tcp/tls rules says nothing about HTTP: its hosts' HTTP traffic (on ports
        // its rules leave alone) goes where it would without it, not into a virtual host without routes.
        routes: match snapshot.virtual_service_for(&service.fqdn(), namespace).filter(|vs| !vs.http.is_empty()) {
            Some(vs) => vs
                .http
                .iter()
                .enumerate()
                .flat_map(|(i, rule)| rule_routes(snapshot, vs, i, rule, port, namespace))
                .collect(),
            None => vec![default_route(snapshot, &cluster_name(&service.fqdn(), port, ""), namespace)],
        },
        ..Default::default()
    }
}

/// The route of a host without HTTP rules: the whole Service, with Istio's defaults and the hash policy of the
/// DestinationRule proxies in `namespace` apply to it.
fn default_route(snapshot: &Snapshot, cluster: &str, namespace: &str) -> Route {
    let mut action =
        actions::forwarding(route_action::ClusterSpecifier::Cluster(cluster.to_string()), std::time::Duration::ZERO);
    action.hash_policy = super::clusters::hash_policy(snapshot, cluster, namespace);
    Route {
        name: "default".to_string(),
        r#match: Some(match_all()),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

/// Every name a client in `namespace` may use for the Service, with and without the port, and its cluster IP (as
/// Istio's virtual hosts have it: a request to that address is for the Service, and so is a TCP connection, see
/// [`weft_xds::names::virtual_host_name`]). The bare short name only resolves (through DNS search paths) inside
/// the Service's own namespace, so only there is it added.
/// The FQDN comes first: proxies find a Service's clusters by it ([`weft_xds::service_of_domains`]).
fn domains(service: &ServiceModel, port: u16, namespace: &str) -> Vec<String> {
    let mut names = vec![
        service.fqdn(),
        format!("{}.{}.svc", service.name, service.namespace),
        format!("{}.{}", service.name, service.namespace),
    ];
    if service.namespace == namespace {
        names.push(service.name.clone());
    }
    names.extend(service.cluster_ips.iter().map(|ip| address_domain(*ip)));
    names.iter().flat_map(|n| [n.clone(), format!("{n}:{port}")]).collect()
}

/// The routes of one rule in the route configuration of `port` for proxies in `namespace`: one per condition
/// that can match there (a rule whose conditions all name another port or namespace has none).
fn rule_routes(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    index: usize,
    rule: &HttpRoute,
    port: u16,
    namespace: &str,
) -> Vec<Route> {
    let matches: Vec<_> = if rule.matches.is_empty() {
        vec![match_all()]
    } else {
        rule.matches.iter().filter(|m| applies(m, port, namespace)).map(route_match).collect()
    };
    if matches.is_empty() {
        return Vec::new();
    }
    let name = rule.name.clone().unwrap_or_else(|| format!("{}.{}.http[{index}]", vs.name, vs.namespace));
    let template = rule_route(snapshot, vs, rule, (port, namespace), name);
    matches.into_iter().map(|m| Route { r#match: Some(m), ..template.clone() }).collect()
}

/// A rule's route without its match, for `port` and proxies in a namespace: the action, the header edits and the
/// fault filter's configuration.
fn rule_route(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    rule: &HttpRoute,
    (port, namespace): (u16, &str),
    name: String,
) -> Route {
    let mut edits = HeaderEdits::of(rule.headers.as_ref());
    let action = match (&rule.redirect, &rule.direct_response) {
        (Some(redirect), _) => route::Action::Redirect(actions::redirect_action(redirect)),
        (None, Some(response)) => route::Action::DirectResponse(actions::direct_response_action(response)),
        (None, None) => {
            // With one destination there are no weighted clusters to carry its edits: they follow the rule's.
            if let [only] = rule.route.as_slice() {
                edits = edits.then(HeaderEdits::of(only.headers.as_ref()));
            }
            route::Action::Route(actions::route_action(snapshot, vs, rule, (port, namespace)))
        }
    };
    let fault = rule.fault.iter().map(|f| (FAULT.to_string(), pack(&fault::http_fault(f))));
    let cors = rule.cors_policy.iter().map(|c| (CORS.to_string(), pack(&cors::cors_policy(c))));
    let typed_per_filter_config: HashMap<_, _> = fault.chain(cors).collect();
    Route {
        name,
        action: Some(action),
        request_headers_to_add: edits.request_add,
        request_headers_to_remove: edits.request_remove,
        response_headers_to_add: edits.response_add,
        response_headers_to_remove: edits.response_remove,
        typed_per_filter_config,
        metadata: Some(config_metadata(ConfigKind::VirtualService, &vs.namespace, &vs.name)),
        ..Default::default()
    }
}
