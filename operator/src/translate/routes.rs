//! Route configurations: per port, one virtual host per Service, with the VirtualService's rules or, when no
//! VirtualService names the Service, a single route to the whole Service.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, Vhds, VirtualHost, WeightedCluster,
    header_matcher, route, route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::duration::parse_duration;
use weft_crds::virtual_service::StringMatchKind;
use weft_crds::{HttpMatchRequest, HttpRoute, StringMatch};
use weft_xds::{cluster_name, route_config_name};

use super::{ads_config_source, duration};
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
    RouteConfiguration { name: route_config_name(port), virtual_hosts, vhds, ..Default::default() }
}

/// The virtual host of one Service port, as proxies in `namespace` see it: the VirtualService's rules or, when no
/// VirtualService names the Service, a single route to the whole Service.
pub(super) fn virtual_host(snapshot: &Snapshot, service: &ServiceModel, port: u16, namespace: &str) -> VirtualHost {
    VirtualHost {
        name: format!("{}:{port}", service.fqdn()),
        domains: domains(service, port, namespace),
        routes: match snapshot.virtual_service(&service.fqdn()) {
            Some(vs) => {
                vs.spec.http.iter().enumerate().flat_map(|(i, rule)| rule_routes(snapshot, vs, i, rule, port)).collect()
            }
            None => vec![Route {
                name: "default".to_string(),
                r#match: Some(match_all()),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster_name(
                        &service.fqdn(),
                        port,
                        "",
                    ))),
                    timeout: Some(duration(std::time::Duration::ZERO)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
        },
        ..Default::default()
    }
}

/// Every name a client in `namespace` may use for the Service, with and without the port. The bare short name
/// only resolves (through DNS search paths) inside the Service's own namespace, so only there is it added.
fn domains(service: &ServiceModel, port: u16, namespace: &str) -> Vec<String> {
    let mut names = vec![
        service.fqdn(),
        format!("{}.{}.svc", service.name, service.namespace),
        format!("{}.{}", service.name, service.namespace),
    ];
    if service.namespace == namespace {
        names.push(service.name.clone());
    }
    names.iter().flat_map(|n| [n.clone(), format!("{n}:{port}")]).collect()
}

fn rule_routes(snapshot: &Snapshot, vs: &VirtualServiceModel, index: usize, rule: &HttpRoute, port: u16) -> Vec<Route> {
    let name = rule.name.clone().unwrap_or_else(|| format!("{}.{}.http[{index}]", vs.name, vs.namespace));
    let action = route::Action::Route(route_action(snapshot, vs, rule, port));
    let matches: Vec<RouteMatch> =
        if rule.matches.is_empty() { vec![match_all()] } else { rule.matches.iter().map(route_match).collect() };
    matches
        .into_iter()
        .map(|m| Route { name: name.clone(), r#match: Some(m), action: Some(action.clone()), ..Default::default() })
        .collect()
}

fn route_action(snapshot: &Snapshot, vs: &VirtualServiceModel, rule: &HttpRoute, port: u16) -> RouteAction {
    let mut targets: Vec<(String, u32)> = rule
        .route
        .iter()
        .map(|dest| {
            let d = &dest.destination;
            let host = snapshot.resolve_host(&d.host, &vs.namespace);
            let dest_port = snapshot.destination_port(&host, d.port.map(|p| p.number), port);
            let weight = u32::try_from(dest.weight.unwrap_or(0)).unwrap_or(0);
            (cluster_name(&host, dest_port, d.subset.as_deref().unwrap_or_default()), weight)
        })
        .collect();
    let cluster_specifier = if targets.len() == 1 {
        route_action::ClusterSpecifier::Cluster(targets.remove(0).0)
    } else {
        route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: targets
                .into_iter()
                .map(|(name, weight)| ClusterWeight {
                    name,
                    weight: Some(UInt32Value { value: weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    };
    // Istio's default is no timeout; Envoy's would be 15 s, so zero ("disabled") is always written.
    let timeout = rule.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or_default();
    RouteAction { cluster_specifier: Some(cluster_specifier), timeout: Some(duration(timeout)), ..Default::default() }
}

fn match_all() -> RouteMatch {
    RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())), ..Default::default() }
}

fn route_match(condition: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match condition.uri.as_ref().and_then(StringMatch::kind) {
        Some(StringMatchKind::Exact(p)) => route_match::PathSpecifier::Path(p.to_string()),
        Some(StringMatchKind::Prefix(p)) => route_match::PathSpecifier::Prefix(p.to_string()),
        Some(StringMatchKind::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
        None => route_match::PathSpecifier::Prefix("/".to_string()),
    };
    let mut headers: Vec<HeaderMatcher> =
        condition.headers.iter().map(|(name, m)| header_matcher(&name.to_ascii_lowercase(), m)).collect();
    if let Some(method) = &condition.method {
        headers.push(header_matcher(":method", method));
    }
    RouteMatch { path_specifier: Some(path_specifier), headers, ..Default::default() }
}

fn header_matcher(name: &str, m: &StringMatch) -> HeaderMatcher {
    let pattern = match m.kind() {
        Some(StringMatchKind::Exact(v)) => Some(MatchPattern::Exact(v.to_string())),
        Some(StringMatchKind::Prefix(v)) => Some(MatchPattern::Prefix(v.to_string())),
        Some(StringMatchKind::Regex(v)) => Some(MatchPattern::SafeRegex(regex(v))),
        None => None,
    };
    let specifier = match pattern {
        Some(p) => header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(p),
            ..Default::default()
        }),
        // Istio reads an empty match as "the header is present".
        None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher { name: name.to_string(), header_match_specifier: Some(specifier), ..Default::default() }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher { regex: pattern.to_string(), ..Default::default() }
}
