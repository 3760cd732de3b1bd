//! Route configurations and virtual hosts -> route tables: each route's match, action and per-route policies.

use envoy_types::pb::envoy::config::route::v3::{
    self as route, RouteConfiguration, header_matcher, query_parameter_matcher, route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{MetadataMatcher, StringMatcher as PbStringMatcher, string_matcher};

use weft_xds::source::parse_source_label;

use super::actions::{direct_response, redirect, route_action};
use super::policy::{filter_configs, header_ops};
use super::{ConfigError, reject};
use crate::config::routes::{Action, Labels, QueryMatch, RegexEq};
use crate::config::{HeaderMatch, PathMatch, RouteEntry, RouteTable, StringMatcher, VirtualHost};

impl TryFrom<&RouteConfiguration> for RouteTable {
    type Error = ConfigError;

    fn try_from(r: &RouteConfiguration) -> Result<Self, ConfigError> {
        let virtual_hosts = r
            .virtual_hosts
            .iter()
            .map(virtual_host)
            .collect::<Result<_, String>>()
            .map_err(|m| reject("route configuration", &r.name, m))?;
        // VHDS over ADS: the table's other hosts are asked for on demand.
        let on_demand = r.vhds.is_some();
        Ok(Self::new(r.name.clone(), virtual_hosts, on_demand))
    }
}

/// A virtual host sent on its own (VHDS), named `ROUTE_CONFIG/HOST` as asked for.
impl TryFrom<&route::VirtualHost> for VirtualHost {
    type Error = ConfigError;

    fn try_from(v: &route::VirtualHost) -> Result<Self, ConfigError> {
        virtual_host(v).map_err(|m| reject("virtual host", &v.name, m))
    }
}

fn virtual_host(v: &route::VirtualHost) -> Result<VirtualHost, String> {
    Ok(VirtualHost {
        name: v.name.clone(),
        domains: v.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        routes: v.routes.iter().map(route_entry).collect::<Result<_, String>>()?,
    })
}

fn route_entry(r: &route::Route) -> Result<RouteEntry, String> {
    let in_route = |m: String| format!("route {:?}: {m}", r.name);
    let matcher = r.r#match.as_ref().ok_or_else(|| in_route("match is required".into()))?;
    if !matcher.cookies.is_empty() || matcher.grpc.is_some() || matcher.runtime_fraction.is_some() {
        return Err(in_route("cookie, gRPC and runtime fraction matching are not supported".into()));
    }
    let ignore_case = matcher.case_sensitive.as_ref().is_some_and(|c| !c.value);
    let path = path_match(matcher.path_specifier.as_ref(), ignore_case).map_err(in_route)?;
    let headers = matcher.headers.iter().map(header_match).collect::<Result<_, _>>().map_err(in_route)?;
    let query = matcher.query_parameters.iter().map(query_match).collect::<Result<_, _>>().map_err(in_route)?;
    let source_labels = source_labels(&matcher.dynamic_metadata).map_err(in_route)?;
    let action = match &r.action {
        Some(route::route::Action::Route(a)) => Action::Forward(Box::new(route_action(a).map_err(in_route)?)),
        Some(route::route::Action::Redirect(a)) => Action::Redirect(redirect(a).map_err(in_route)?),
        Some(route::route::Action::DirectResponse(a)) => Action::Respond(direct_response(a).map_err(in_route)?),
        _ => return Err(in_route("the action must be a route, a redirect or a direct response".into())),
    };
    let request_headers = header_ops(&r.request_headers_to_add, &r.request_headers_to_remove).map_err(in_route)?;
    let response_headers = header_ops(&r.response_headers_to_add, &r.response_headers_to_remove).map_err(in_route)?;
    let filters = filter_configs(&r.typed_per_filter_config).map_err(in_route)?;
    Ok(RouteEntry {
        name: r.name.clone(),
        path,
        ignore_case,
        headers,
        query,
        source_labels,
        action,
        request_headers,
        response_headers,
        fault: filters.fault,
        cors: filters.cors,
    })
}

/// The client labels a route asks for; a label asked for twice is refused rather than one silently winning.
pub(super) fn source_labels(matchers: &[MetadataMatcher]) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for matcher in matchers {
        let (key, value) = parse_source_label(matcher)?;
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("source label {key:?} is matched twice"));
        }
    }
    Ok(labels)
}

fn path_match(specifier: Option<&route_match::PathSpecifier>, ignore_case: bool) -> Result<PathMatch, String> {
    Ok(match specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(re)) => {
            let pattern = if ignore_case { format!("(?i:{})", re.regex) } else { re.regex.clone() };
            PathMatch::Regex(full_match(&pattern)?)
        }
        _ => return Err("path match must be prefix, path or safe_regex".into()),
    })
}

#[allow(deprecated)] // The deprecated specifiers are still valid xDS; accept them.
fn header_match(h: &route::HeaderMatcher) -> Result<HeaderMatch, String> {
    let matcher = match &h.header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)) => string_matcher(m)?,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)) => StringMatcher::Present,
        Some(header_matcher::HeaderMatchSpecifier::ExactMatch(v)) => StringMatcher::Exact(v.clone()),
        Some(header_matcher::HeaderMatchSpecifier::PrefixMatch(v)) => StringMatcher::Prefix(v.clone()),
        Some(header_matcher::HeaderMatchSpecifier::SafeRegexMatch(re)) => StringMatcher::Regex(full_match(&re.regex)?),
        _ => return Err(format!("header {:?}: only exact, prefix, regex and present matches are supported", h.name)),
    };
    Ok(HeaderMatch { name: h.name.to_ascii_lowercase(), matcher, invert: h.invert_match })
}

fn query_match(q: &route::QueryParameterMatcher) -> Result<QueryMatch, String> {
    let matcher = match &q.query_parameter_match_specifier {
        Some(query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(m)) => string_matcher(m)?,
        Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)) => StringMatcher::Present,
        _ => return Err(format!("query parameter {:?}: a string or present match is required", q.name)),
    };
    Ok(QueryMatch { name: q.name.clone(), matcher })
}

pub(super) fn string_matcher(m: &PbStringMatcher) -> Result<StringMatcher, String> {
    if m.ignore_case {
        return Err("case-insensitive string matching is not supported".into());
    }
    match &m.match_pattern {
        Some(string_matcher::MatchPattern::Exact(v)) => Ok(StringMatcher::Exact(v.clone())),
        Some(string_matcher::MatchPattern::Prefix(v)) => Ok(StringMatcher::Prefix(v.clone())),
        Some(string_matcher::MatchPattern::SafeRegex(re)) => Ok(StringMatcher::Regex(full_match(&re.regex)?)),
        _ => Err("only exact, prefix and safe_regex string matches are supported".into()),
    }
}

/// Most memory one compiled pattern may take: patterns come from the control plane, and a pathological one
/// must be refused rather than slow every request.
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Envoy's `safe_regex` must match the whole value.
pub(super) fn full_match(pattern: &str) -> Result<RegexEq, String> {
    bounded_regex(&format!("^(?:{pattern})$")).map(RegexEq)
}

pub(super) fn bounded_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
        format!("invalid regex {pattern:?}: {}", e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
    })
}
