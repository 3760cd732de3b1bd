//! A rule's conditions (`http[].match[]`) as Envoy `RouteMatch`es, and which conditions a route configuration
//! holds at all: `port` and `sourceNamespace` are decided at translation time, per route configuration (one per
//! port) and per namespace (route configurations are translated per namespace); `sourceLabels` by each proxy
//! (see `weft_xds::source`).

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher, route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::BoolValue;
use weft_crds::virtual_service::StringMatchKind;
use weft_crds::{HttpMatchRequest, StringMatch};
use weft_xds::source::source_label_matcher;

/// Whether `condition` can match a request on `port` from a proxy in `namespace`.
pub(super) fn applies(condition: &HttpMatchRequest, port: u16, namespace: &str) -> bool {
    condition.port.is_none_or(|p| p == u32::from(port))
        && condition.source_namespace.as_deref().is_none_or(|n| n == namespace)
}

pub(super) fn match_all() -> RouteMatch {
    RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())), ..Default::default() }
}

pub(super) fn route_match(condition: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match condition.uri.as_ref().and_then(StringMatch::kind) {
        Some(StringMatchKind::Exact(p)) => route_match::PathSpecifier::Path(p.to_string()),
        Some(StringMatchKind::Prefix(p)) => route_match::PathSpecifier::Prefix(p.to_string()),
        Some(StringMatchKind::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
        None => route_match::PathSpecifier::Prefix("/".to_string()),
    };
    let mut headers: Vec<HeaderMatcher> =
        condition.headers.iter().map(|(name, m)| header_matcher(&name.to_ascii_lowercase(), m)).collect();
    // Pseudo-headers carry the request line; Istio matches method, authority and scheme through them.
    for (name, m) in
        [(":method", &condition.method), (":authority", &condition.authority), (":scheme", &condition.scheme)]
    {
        if let Some(m) = m {
            headers.push(header_matcher(name, m));
        }
    }
    headers.extend(
        condition
            .without_headers
            .iter()
            .map(|(name, m)| HeaderMatcher { invert_match: true, ..header_matcher(&name.to_ascii_lowercase(), m) }),
    );
    let query_parameters = condition.query_params.iter().map(|(name, m)| query_matcher(name, m)).collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        // Envoy applies this to path and prefix only, as Istio documents `ignoreUriCase`.
        case_sensitive: (condition.ignore_uri_case == Some(true)).then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        // Route configurations are shared by a namespace's proxies; each proxy checks its own labels.
        dynamic_metadata: condition.source_labels.iter().map(|(k, v)| source_label_matcher(k, v)).collect(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, m: &StringMatch) -> HeaderMatcher {
    let specifier = match string_matcher(m) {
        Some(matcher) => header_matcher::HeaderMatchSpecifier::StringMatch(matcher),
        // Istio reads an empty match as "the header is present".
        None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher { name: name.to_string(), header_match_specifier: Some(specifier), ..Default::default() }
}

/// Istio matches query parameters by exact value or regex; validation refuses prefixes.
fn query_matcher(name: &str, m: &StringMatch) -> QueryParameterMatcher {
    QueryParameterMatcher {
        name: name.to_string(),
        query_parameter_match_specifier: string_matcher(m)
            .map(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch),
    }
}

pub(super) fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = match m.kind()? {
        StringMatchKind::Exact(v) => MatchPattern::Exact(v.to_string()),
        StringMatchKind::Prefix(v) => MatchPattern::Prefix(v.to_string()),
        StringMatchKind::Regex(v) => MatchPattern::SafeRegex(regex(v)),
    };
    Some(StringMatcher { match_pattern: Some(pattern), ..Default::default() })
}

pub(super) fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher { regex: pattern.to_string(), ..Default::default() }
}
