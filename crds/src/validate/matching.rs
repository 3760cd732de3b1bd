//! Checks of a rule's conditions (`http[].match[]`).

use super::labels::check_labels;
use super::{check_gateways, check_regex, http_header_name_is_invalid, is_dns_label, not_supported};
use crate::field_path::Path;
use crate::virtual_service::StringMatchKind;
use crate::{FieldError, HttpMatchRequest, StringMatch};

/// How an empty `{}` string match reads where it is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Empty {
    /// Istio reads `{}` on a header as "the header is present" (in `withoutHeaders`: absent).
    MeansPresent,
    Invalid,
}

pub(super) fn check_match(path: &Path, condition: &HttpMatchRequest, errors: &mut Vec<FieldError>) {
    if let Some(uri) = &condition.uri {
        check_string_match(&path.field("uri"), uri, Empty::Invalid, errors);
        if let Some(StringMatchKind::Exact(p) | StringMatchKind::Prefix(p)) = uri.kind()
            && !p.starts_with('/')
        {
            errors.push(path.field("uri").error(format!("path {p:?} must start with '/'")));
        }
    }
    for (field, value) in [("scheme", &condition.scheme), ("method", &condition.method)] {
        if let Some(m) = value {
            check_string_match(&path.field(field), m, Empty::Invalid, errors);
        }
    }
    if let Some(authority) = &condition.authority {
        check_string_match(&path.field("authority"), authority, Empty::Invalid, errors);
    }
    check_headers(&path.field("headers"), &condition.headers, errors);
    if let Some(port) = condition.port
        && !(1..=65535).contains(&port)
    {
        errors.push(path.field("port").error(format!("port {port} is out of range 1-65535")));
    }
    check_labels(&path.field("sourceLabels"), &condition.source_labels, errors);
    check_gateways(&path.field("gateways"), &condition.gateways, errors);
    for (name, value) in &condition.query_params {
        check_query_param(&path.field("queryParams").key(name), name, value, errors);
    }
    check_headers(&path.field("withoutHeaders"), &condition.without_headers, errors);
    if let Some(namespace) = &condition.source_namespace
        && !is_dns_label(namespace)
    {
        errors.push(path.field("sourceNamespace").error(format!("{namespace:?} is not a valid namespace name")));
    }
    if condition.stat_prefix.is_some() {
        errors.push(not_supported(&path.field("statPrefix"), "per-route statistics (statPrefix)"));
    }
}

fn check_headers<'a>(
    path: &Path,
    headers: impl IntoIterator<Item = (&'a String, &'a StringMatch)>,
    errors: &mut Vec<FieldError>,
) {
    for (name, value) in headers {
        let header_path = path.key(name);
        if http_header_name_is_invalid(name) {
            errors.push(header_path.error(format!("{name:?} is not a valid HTTP header name")));
        }
        check_string_match(&header_path, value, Empty::MeansPresent, errors);
    }
}

/// Istio matches query parameters by `exact` or `regex` only; `exact: ""` means "present".
fn check_query_param(path: &Path, name: &str, value: &StringMatch, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(path.error("query parameter name must not be empty"));
    }
    if value.prefix.is_some() {
        errors.push(path.field("prefix").error("query parameters are matched by exact or regex only (as in Istio)"));
    } else {
        check_string_match(path, value, Empty::Invalid, errors);
    }
}

/// A string match that must say one of exact, prefix or regex.
pub(super) fn check_required_match(path: &Path, m: &StringMatch, errors: &mut Vec<FieldError>) {
    check_string_match(path, m, Empty::Invalid, errors);
}

fn check_string_match(path: &Path, m: &StringMatch, empty: Empty, errors: &mut Vec<FieldError>) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()].iter().filter(|s| **s).count();
    match (set, m.kind()) {
        (0, _) if empty == Empty::MeansPresent => {}
        (0, _) => errors.push(path.error("one of exact, prefix or regex is required")),
        (_, None) => errors.push(path.error("only one of exact, prefix or regex may be set")),
        (_, Some(StringMatchKind::Regex(re))) => check_regex(&path.field("regex"), re, errors),
        _ => {}
    }
}
