//! Checks of the connection-level rules (`tcp[i]`, `tls[i]`): their conditions and weighted destinations.

use super::labels::check_labels;
use super::rule::{check_destination, check_total_weight, check_weight};
use super::{check_gateways, is_dns_label};
use crate::FieldError;
use crate::field_path::Path;
use crate::virtual_service::l4::{L4Match, RouteDestination, parse_subnet};
use crate::virtual_service::{TcpRoute, TlsRoute};

pub(super) fn check_tcp_route(path: &Path, rule: &TcpRoute, errors: &mut Vec<FieldError>) {
    for (i, condition) in rule.matches.iter().enumerate() {
        check_l4_match(&path.field("match").index(i), condition, errors);
    }
    check_destinations(path, &rule.route, errors);
}

pub(super) fn check_tls_route(path: &Path, rule: &TlsRoute, errors: &mut Vec<FieldError>) {
    // Without a match a TLS rule would take every TLS connection on every port of its hosts; Istio asks for one.
    if rule.matches.is_empty() {
        errors.push(path.field("match").error("a tls rule needs at least one match (with sniHosts)"));
    }
    for (i, condition) in rule.matches.iter().enumerate() {
        let match_path = path.field("match").index(i);
        if condition.sni_hosts.is_empty() {
            errors.push(match_path.field("sniHosts").error("at least one SNI host is required"));
        }
        for (j, sni) in condition.sni_hosts.iter().enumerate() {
            check_sni_host(&match_path.field("sniHosts").index(j), sni, errors);
        }
        check_l4_match(&match_path, condition, errors);
    }
    check_destinations(path, &rule.route, errors);
}

/// What tcp and tls conditions have alike.
fn check_l4_match(path: &Path, condition: &impl L4Match, errors: &mut Vec<FieldError>) {
    for (i, subnet) in condition.destination_subnets().iter().enumerate() {
        if parse_subnet(subnet).is_none() {
            errors.push(
                path.field("destinationSubnets")
                    .index(i)
                    .error(format!("{subnet:?} is not an IP address or a subnet (a.b.c.d, a.b.c.d/xx, or IPv6 alike)")),
            );
        }
    }
    if let Some(port) = condition.port()
        && !(1..=65535).contains(&port)
    {
        errors.push(path.field("port").error(format!("port {port} is out of range 1-65535")));
    }
    check_labels(&path.field("sourceLabels"), condition.source_labels(), errors);
    check_gateways(&path.field("gateways"), condition.gateways(), errors);
}

/// An SNI host: a DNS name, optionally with a wildcard prefix (`*.example.com`).
fn check_sni_host(path: &Path, sni: &str, errors: &mut Vec<FieldError>) {
    let name = sni.strip_prefix("*.").unwrap_or(sni);
    if sni.is_empty() {
        errors.push(path.error("SNI host must not be empty"));
    } else if name.contains('*') {
        errors.push(path.error(format!(
            "SNI host {sni:?}: a wildcard is allowed only as a prefix of a domain (\"*.example.com\")"
        )));
    } else if !name.split('.').all(is_dns_label) {
        errors.push(path.error(format!("SNI host {sni:?} is not a valid DNS name")));
    }
}

/// `route[]`: at least one destination (a connection cannot be answered by the mesh itself), and their weights.
fn check_destinations(path: &Path, route: &[RouteDestination], errors: &mut Vec<FieldError>) {
    if route.is_empty() {
        errors.push(path.field("route").error("at least one destination is required"));
    }
    for (i, dest) in route.iter().enumerate() {
        let dest_path = path.field("route").index(i);
        check_destination(&dest_path.field("destination"), &dest.destination, errors);
        check_weight(&dest_path.field("weight"), dest.weight, errors);
    }
    check_total_weight(&path.field("route"), route.iter().map(|d| d.weight), errors);
}
