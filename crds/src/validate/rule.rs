//! Checks of one HTTP rule (`http[i]`): its action (exactly one of `route`, `redirect`, `directResponse`), its
//! destinations and mirrors, and what modifies the forwarded request.

use super::cors::check_cors;
use super::headers::check_headers;
use super::matching::check_match;
use super::policies::{check_fault, check_retries};
use super::{MAX_TOTAL_WEIGHT, check_duration, check_host, check_percentage, is_dns_label, not_supported};
use crate::field_path::Path;
use crate::virtual_service::Delegate;
use crate::virtual_service::actions::decode_base64;
use crate::virtual_service::{HttpDirectResponse, HttpRedirect, HttpRewrite};
use crate::{Destination, FieldError, HttpRoute};

/// The largest direct response body, Istio's limit (route configurations say so to Envoy, whose default is 4 KiB).
pub const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;

/// The redirect codes Envoy can send (Istio's `redirectCode`).
pub const REDIRECT_CODES: [u32; 5] = [301, 302, 303, 307, 308];

pub(super) fn check_http_route(path: &Path, rule: &HttpRoute, errors: &mut Vec<FieldError>) {
    for (i, condition) in rule.matches.iter().enumerate() {
        check_match(&path.field("match").index(i), condition, errors);
    }
    check_route(path, rule, errors);
    // Only a forwarding rule (`route`) has a request to time out, retry, mirror or delay.
    let answers = match (&rule.redirect, &rule.direct_response) {
        (Some(_), _) => Some("redirect"),
        (None, Some(_)) => Some("directResponse"),
        (None, None) => None,
    };
    if let Some(redirect) = &rule.redirect {
        if !rule.route.is_empty() {
            errors.push(path.field("redirect").error("redirect cannot be used with route"));
        }
        check_redirect(&path.field("redirect"), redirect, errors);
    }
    if let Some(response) = &rule.direct_response {
        for (conflict, present) in [("route", !rule.route.is_empty()), ("redirect", rule.redirect.is_some())] {
            if present {
                errors
                    .push(path.field("directResponse").error(format!("directResponse cannot be used with {conflict}")));
            }
        }
        check_direct_response(&path.field("directResponse"), response, errors);
    }
    if let Some(delegate) = &rule.delegate {
        check_delegate(&path.field("delegate"), delegate, rule, errors);
    }
    if let Some(rewrite) = &rule.rewrite {
        check_rewrite(&path.field("rewrite"), rewrite, answers, errors);
    }
    check_forwarding(path, rule, answers, errors);
    if let Some(cors) = &rule.cors_policy {
        check_cors(&path.field("corsPolicy"), cors, errors);
    }
    if let Some(headers) = &rule.headers {
        check_headers(&path.field("headers"), headers, errors);
    }
}

/// `delegate`: a VirtualService name (and namespace), instead of the rule's own action.
fn check_delegate(path: &Path, delegate: &Delegate, rule: &HttpRoute, errors: &mut Vec<FieldError>) {
    // Names are not checked further, as Istio does not (its own example names namespace `nsA`): one that no
    // VirtualService has is reported in the ResolvedRefs condition.
    if delegate.name.is_empty() {
        errors.push(path.field("name").error("the name of the VirtualService to delegate to is required"));
    }
    let actions = [("route", !rule.route.is_empty()), ("redirect", rule.redirect.is_some())];
    let actions = actions.into_iter().chain([("directResponse", rule.direct_response.is_some())]);
    for (action, set) in actions {
        if set {
            errors.push(path.error(format!("delegate cannot be used with {action}: the delegate's rules act")));
        }
    }
}

/// `route[]`: the destinations and their weights, or the error that the rule does nothing.
fn check_route(path: &Path, rule: &HttpRoute, errors: &mut Vec<FieldError>) {
    let acts = !rule.route.is_empty() || rule.redirect.is_some() || rule.direct_response.is_some();
    if !acts && rule.delegate.is_none() {
        errors.push(path.field("route").error("one of route, redirect or directResponse is required"));
    }
    for (i, dest) in rule.route.iter().enumerate() {
        let dest_path = path.field("route").index(i);
        check_destination(&dest_path.field("destination"), &dest.destination, errors);
        check_weight(&dest_path.field("weight"), dest.weight, errors);
        if let Some(headers) = &dest.headers {
            check_headers(&dest_path.field("headers"), headers, errors);
        }
    }
    check_total_weight(&path.field("route"), rule.route.iter().map(|d| d.weight), errors);
}

/// One destination's weight: unset (0 when there are several) or not negative.
pub(super) fn check_weight(path: &Path, weight: Option<i32>, errors: &mut Vec<FieldError>) {
    if let Some(weight) = weight.filter(|w| *w < 0) {
        errors.push(path.error(format!("weight {weight} must not be negative")));
    }
}

/// The weights of a rule's destinations (`route`) together: several must not all be zero (nothing would get
/// traffic), and Envoy must be able to add them up.
pub(super) fn check_total_weight(
    path: &Path,
    weights: impl ExactSizeIterator<Item = Option<i32>>,
    errors: &mut Vec<FieldError>,
) {
    let several = weights.len() > 1;
    let total: i64 = weights.map(|w| i64::from(w.unwrap_or(0).max(0))).sum();
    if several && total == 0 {
        errors.push(path.error("the weights of several destinations must not all be zero"));
    }
    if total > MAX_TOTAL_WEIGHT {
        errors.push(path.error(format!(
            "the weights add up to {total}, more than {MAX_TOTAL_WEIGHT} (the largest total Envoy accepts)"
        )));
    }
}

/// `timeout`, `retries`, `fault` and the mirrors, which act on a forwarded request: refused on a rule that
/// answers itself (`answers`), where Istio would ignore them (or, for `fault`, refuse them too).
fn check_forwarding(path: &Path, rule: &HttpRoute, answers: Option<&str>, errors: &mut Vec<FieldError>) {
    let only_forwarding = |field: &str, set: bool, errors: &mut Vec<FieldError>| {
        if let (true, Some(action)) = (set, answers) {
            errors.push(path.field(field).error(format!("{field} cannot be used with {action}")));
        }
    };
    only_forwarding("timeout", rule.timeout.is_some(), errors);
    if let Some(timeout) = &rule.timeout {
        check_duration(&path.field("timeout"), timeout, errors);
    }
    only_forwarding("retries", rule.retries.is_some(), errors);
    if let Some(retries) = &rule.retries {
        check_retries(&path.field("retries"), retries, errors);
    }
    only_forwarding("fault", rule.fault.is_some(), errors);
    if let Some(fault) = &rule.fault {
        check_fault(&path.field("fault"), fault, errors);
    }
    only_forwarding("mirror", rule.mirror.is_some(), errors);
    if let Some(mirror) = &rule.mirror {
        check_destination(&path.field("mirror"), mirror, errors);
    }
    if let Some(percentage) = rule.mirror_percentage {
        check_percentage(&path.field("mirrorPercentage").field("value"), percentage.value, errors);
    }
    if let Some(percent) = rule.mirror_percent
        && percent > 100
    {
        errors.push(path.field("mirrorPercent").error(format!("percent {percent} is out of range 0-100")));
    }
    let percentage_set = rule.mirror_percentage.is_some() || rule.mirror_percent.is_some();
    if percentage_set && rule.mirror.is_none() {
        errors.push(path.field("mirrorPercentage").error("mirrorPercentage (or mirrorPercent) needs mirror"));
    }
    only_forwarding("mirrors", !rule.mirrors.is_empty(), errors);
    if rule.mirror.is_some() && !rule.mirrors.is_empty() {
        errors.push(path.field("mirrors").error("mirror and mirrors cannot both be set"));
    }
    for (i, mirror) in rule.mirrors.iter().enumerate() {
        let mirror_path = path.field("mirrors").index(i);
        check_destination(&mirror_path.field("destination"), &mirror.destination, errors);
        if let Some(percentage) = mirror.percentage {
            check_percentage(&mirror_path.field("percentage").field("value"), percentage.value, errors);
        }
    }
}

pub(super) fn check_destination(path: &Path, d: &Destination, errors: &mut Vec<FieldError>) {
    check_host(&path.field("host"), &d.host, errors);
    if let Some(subset) = &d.subset
        && !is_dns_label(subset)
    {
        errors.push(path.field("subset").error(format!("{subset:?} is not a valid subset name")));
    }
    if let Some(port) = d.port
        && !(1..=65535).contains(&port.number)
    {
        errors.push(path.field("port").field("number").error(format!("port {} is out of range 1-65535", port.number)));
    }
}

fn check_redirect(path: &Path, redirect: &HttpRedirect, errors: &mut Vec<FieldError>) {
    if let Some(port) = redirect.port
        && !(1..=65535).contains(&port)
    {
        errors.push(path.field("port").error(format!("port {port} is out of range 1-65535")));
    }
    if redirect.derive_port.is_some() {
        if redirect.port.is_some() {
            errors.push(path.field("derivePort").error("only one of port or derivePort may be set"));
        }
        errors.push(not_supported(&path.field("derivePort"), "derivePort; set port"));
    }
    if let Some(code) = redirect.redirect_code
        && !REDIRECT_CODES.contains(&code)
    {
        errors.push(
            path.field("redirectCode").error(format!("redirect code {code} is not one of 301, 302, 303, 307, 308")),
        );
    }
}

fn check_direct_response(path: &Path, response: &HttpDirectResponse, errors: &mut Vec<FieldError>) {
    if !(200..=599).contains(&response.status) {
        errors.push(path.field("status").error(format!("status {} is out of range 200-599", response.status)));
    }
    let Some(body) = &response.body else { return };
    match (&body.string, &body.bytes) {
        (Some(_), Some(_)) => errors.push(path.field("body").error("only one of string or bytes may be set")),
        (None, None) => errors.push(path.field("body").error("one of string or bytes is required")),
        (None, Some(bytes)) if decode_base64(bytes).is_none() => {
            errors.push(path.field("body").field("bytes").error("bytes must be base64 (standard alphabet, padded)"));
        }
        (Some(text), None) if text.len() > MAX_DIRECT_RESPONSE_BODY => errors.push(too_big(&path.field("body"))),
        (None, Some(bytes)) if decode_base64(bytes).is_some_and(|b| b.len() > MAX_DIRECT_RESPONSE_BODY) => {
            errors.push(too_big(&path.field("body")));
        }
        _ => {}
    }
}

fn too_big(path: &Path) -> FieldError {
    path.error(format!("a direct response body may hold at most {MAX_DIRECT_RESPONSE_BODY} bytes"))
}

fn check_rewrite(path: &Path, rewrite: &HttpRewrite, answers: Option<&str>, errors: &mut Vec<FieldError>) {
    if let Some(action) = answers {
        errors.push(path.error(format!("rewrite cannot be used with {action}")));
    }
    if rewrite.uri.is_some() && rewrite.uri_regex_rewrite.is_some() {
        errors.push(path.error("only one of uri or uriRegexRewrite may be set"));
    }
    if rewrite.uri.is_none() && rewrite.uri_regex_rewrite.is_none() && rewrite.authority.is_none() {
        errors.push(path.error("one of uri, uriRegexRewrite or authority is required"));
    }
    if let Some(regex) = &rewrite.uri_regex_rewrite {
        // Envoy substitutes anywhere in the path, so the pattern is compiled as written, not anchored.
        if let Err(err) = regex::Regex::new(&regex.pattern) {
            let message = super::one_line(&err.to_string());
            errors.push(path.field("uriRegexRewrite").field("match").error(format!("invalid regex: {message}")));
        } else if regex.pattern.is_empty() {
            errors.push(path.field("uriRegexRewrite").field("match").error("match must not be empty"));
        }
    }
}
