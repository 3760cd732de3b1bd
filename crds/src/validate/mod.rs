//! Semantic checks the OpenAPI schema cannot express. Pure: a spec in, every problem (with its field path) out,
//! in the order the fields are written. Used by the operator (standalone files, status conditions) and the
//! validating webhook.
//!
//! A field Weft does not support yet is refused here with a message saying so (see [`not_supported`]), never
//! silently ignored: an Istio user must learn that the YAML does not do what it would do under Istio.

mod authorization_policy;
mod client_tls;
mod cors;
mod destination_rule;
mod headers;
mod l4;
mod labels;
mod matching;
mod peer_authentication;
mod policies;
mod rate_limit;
mod rule;
#[cfg(test)]
mod tests;

pub use authorization_policy::{rule_is_enforceable, validate_authorization_policy};
pub use destination_rule::validate_destination_rule;
pub use headers::has_substitution;
pub use peer_authentication::validate_peer_authentication;
pub use rate_limit::validate_rate_limit;
pub use rule::MAX_DIRECT_RESPONSE_BODY;

use std::collections::BTreeSet;

use crate::field_path::Path;
use crate::{FieldError, VirtualServiceSpec};

/// The largest sum of a route's weights: Envoy refuses weighted clusters whose total exceeds a `uint32`.
pub const MAX_TOTAL_WEIGHT: i64 = u32::MAX as i64;

/// The only gateway Weft has: Istio's name for "the sidecars of the mesh".
pub const MESH_GATEWAY: &str = "mesh";

/// Every problem in a VirtualService spec; empty when it is valid.
pub fn validate_virtual_service(spec: &VirtualServiceSpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    // Without hosts it is a delegate (Istio): only http rules, for the mesh, and no further delegation.
    let delegate = spec.hosts.is_empty();
    if delegate {
        check_delegate_virtual_service(&root, spec, &mut errors);
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        check_rule_host(&root.field("hosts").index(i), host, &mut errors);
    }
    check_gateways(&root.field("gateways"), &spec.gateways, &mut errors);
    // Istio refuses a VirtualService without routes: applied, it would cut its hosts off.
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        errors.push(root.error("at least one route is required (http, tcp or tls)"));
    }
    for (i, http) in spec.http.iter().enumerate() {
        rule::check_http_route(&root.field("http").index(i), http, &mut errors);
        if delegate && http.delegate.is_some() {
            errors.push(
                root.field("http")
                    .index(i)
                    .field("delegate")
                    .error("a VirtualService without hosts is a delegate and cannot delegate further (one level only)"),
            );
        }
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        l4::check_tls_route(&root.field("tls").index(i), tls, &mut errors);
    }
    for (i, tcp) in spec.tcp.iter().enumerate() {
        l4::check_tcp_route(&root.field("tcp").index(i), tcp, &mut errors);
    }
    check_export_to(&root.field("exportTo"), spec, &mut errors);
    errors
}

/// A delegate (no hosts): Istio refuses gateways and tcp and tls rules there, which only a root's hosts give a
/// meaning to.
fn check_delegate_virtual_service(root: &Path, spec: &VirtualServiceSpec, errors: &mut Vec<FieldError>) {
    let refused =
        [("gateways", !spec.gateways.is_empty()), ("tcp", !spec.tcp.is_empty()), ("tls", !spec.tls.is_empty())];
    for (field, set) in refused {
        if set {
            errors.push(root.field(field).error(format!(
                "a VirtualService without hosts is a delegate: it cannot have {field} (give it hosts, or move them \
                 to the VirtualService that delegates to it)"
            )));
        }
    }
    if spec.http.is_empty() {
        errors.push(root.field("hosts").error("at least one host is required (or, for a delegate, http rules)"));
    }
}

/// A VirtualService's `exportTo` entries (see [`check_export_entries`]).
fn check_export_to(path: &Path, spec: &VirtualServiceSpec, errors: &mut Vec<FieldError>) {
    check_export_entries(path, &spec.export_to, errors);
}

/// `exportTo` entries, as Istio validates them (VirtualService and DestinationRule alike): each `.` (this
/// namespace), `*` (every namespace) or a namespace name, without repeats, and `*` alone. Istio's `~` (nobody)
/// exists only for ServiceEntries.
fn check_export_entries(path: &Path, export_to: &[String], errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, entry) in export_to.iter().enumerate() {
        if entry != "." && entry != "*" && !is_dns_label(entry) {
            errors.push(path.index(i).error(format!(
                "exportTo entry {entry:?} must be \".\" (this namespace), \"*\" (every namespace) or a namespace name"
            )));
        } else if !seen.insert(entry.as_str()) {
            errors.push(path.index(i).error(format!("duplicate exportTo entry {entry:?}")));
        }
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "*") {
        errors.push(path.error("\"*\" (every namespace) cannot be listed with other exportTo entries"));
    }
}

/// "`what` is not supported by Weft yet", on the field that asks for it.
pub(crate) fn not_supported(path: &Path, what: &str) -> FieldError {
    path.error(format!("{what} is not supported by Weft yet"))
}

/// Gateways, at the top level or in a match: only `mesh`.
fn check_gateways(path: &Path, gateways: &[String], errors: &mut Vec<FieldError>) {
    for (i, gateway) in gateways.iter().enumerate() {
        if gateway != MESH_GATEWAY {
            errors.push(path.index(i).error(format!(
                "gateway {gateway:?} is not supported by Weft yet: Weft has only the mesh (\"{MESH_GATEWAY}\"), \
                 no gateways yet"
            )));
        }
    }
}

/// A VirtualService's or DestinationRule's host: a Service name, or a wildcard naming every Service whose FQDN it
/// matches (`*`, `*.example.com`, `*.bank.svc.cluster.local`). Istio also takes a partial first label
/// (`*foo.example.com`); Weft asks for a whole one.
fn check_rule_host(path: &Path, host: &str, errors: &mut Vec<FieldError>) {
    let Some(rest) = host.strip_prefix('*') else {
        if host.contains('*') {
            errors.push(path.error(format!(
                "wildcard host {host:?}: a wildcard is allowed only alone (\"*\") or as the first label of a \
                 domain (\"*.example.com\")"
            )));
        } else {
            check_host(path, host, errors);
        }
        return;
    };
    let labels_valid = |domain: &str| domain.split('.').all(is_dns_label);
    match rest.strip_prefix('.') {
        _ if rest.is_empty() => {}
        Some(domain) if labels_valid(domain) => {}
        None if labels_valid(rest) => errors.push(not_supported(
            path,
            &format!("wildcard host {host:?}, a wildcard within a label (use a whole label: \"*.example.com\"),"),
        )),
        _ => errors.push(path.error(format!(
            "wildcard host {host:?}: a wildcard is allowed only alone (\"*\") or as the first label of a domain \
             (\"*.example.com\")"
        ))),
    }
}

/// A destination's host: a Service name. Weft refuses wildcard destinations (a destination is one Service's
/// cluster).
fn check_host(path: &Path, host: &str, errors: &mut Vec<FieldError>) {
    if host.is_empty() {
        errors.push(path.error("host must not be empty"));
    } else if host.contains('*') {
        errors.push(path.error(format!("wildcard host {host:?} is not supported by Weft yet; name the Service")));
    } else if !host.split('.').all(is_dns_label) {
        errors.push(path.error(format!("host {host:?} is not a valid DNS name")));
    }
}

/// A duration as Istio writes them; the parsed value when it is one.
fn check_duration(path: &Path, text: &str, errors: &mut Vec<FieldError>) -> Option<std::time::Duration> {
    match crate::duration::parse_duration(text) {
        Ok(duration) => Some(duration),
        Err(message) => {
            errors.push(path.error(message));
            None
        }
    }
}

/// Compiles a regex that must match the whole input, as Istio (RE2 full match) and Envoy's `safe_regex` do.
pub fn compile_full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

fn check_regex(path: &Path, pattern: &str, errors: &mut Vec<FieldError>) {
    if let Err(err) = compile_full_match(pattern) {
        errors.push(path.error(format!("invalid regex: {}", one_line(&err.to_string()))));
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn http_header_name_is_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A percentage must lie in 0..=100 (Istio).
fn check_percentage(path: &Path, value: f64, errors: &mut Vec<FieldError>) {
    if !(0.0..=100.0).contains(&value) {
        errors.push(path.error(format!("percentage {value} is out of range 0-100")));
    }
}
