//! Route actions -> plain config: where a request goes (weighted clusters, mirrors) and how (timeout, retries,
//! gRPC deadlines, rewrites), or the redirect or direct response the proxy answers with itself.

use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::data_source;
use envoy_types::pb::envoy::config::route::v3::{
    self as route, DirectResponseAction, RedirectAction, redirect_action, route_action,
};
use http::StatusCode;

use super::policy::{fraction, header_ops, retry_policy};
use super::routes::bounded_regex;
use super::to_duration;
use crate::config::policy::{
    CookiePolicy, DirectResponse, GrpcTimeout, HashPolicy, Mirror, Redirect, RegexRewrite, Rewrite,
};
use crate::config::{RouteAction, WeightedTarget};

/// Envoy's route timeout when the field is unset.
const ENVOY_DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

pub(super) fn route_action(a: &route::RouteAction) -> Result<RouteAction, String> {
    let targets = targets(a)?;
    let timeout = match &a.timeout {
        None => Some(ENVOY_DEFAULT_ROUTE_TIMEOUT),
        Some(d) => Some(to_duration(d)?).filter(|d| !d.is_zero()),
    };
    let retry = a.retry_policy.as_ref().map(retry_policy).transpose()?.flatten();
    let grpc_timeout = match a.max_stream_duration.as_ref().and_then(|m| m.grpc_timeout_header_max.as_ref()) {
        None => GrpcTimeout::Ignored,
        Some(max) => GrpcTimeout::Honoured { max: Some(to_duration(max)?).filter(|d| !d.is_zero()) },
    };
    let mirrors = a.request_mirror_policies.iter().map(mirror).collect::<Result<_, _>>()?;
    let hash_policy = a.hash_policy.iter().map(hash_policy).collect::<Result<_, _>>()?;
    Ok(RouteAction { targets, timeout, retry, grpc_timeout, mirrors, rewrite: rewrite(a)?, hash_policy })
}

fn hash_policy(p: &route_action::HashPolicy) -> Result<HashPolicy, String> {
    use route_action::hash_policy::PolicySpecifier;
    match &p.policy_specifier {
        Some(PolicySpecifier::Header(h)) if h.regex_rewrite.is_none() => {
            http::HeaderName::from_bytes(h.header_name.as_bytes())
                .map(HashPolicy::Header)
                .map_err(|_| format!("hash policy header {:?} is not a header name", h.header_name))
        }
        Some(PolicySpecifier::Cookie(c)) if c.attributes.is_empty() => Ok(HashPolicy::Cookie(CookiePolicy {
            name: c.name.clone(),
            ttl: c.ttl.as_ref().map(to_duration).transpose()?,
            path: c.path.clone(),
        })),
        Some(PolicySpecifier::QueryParameter(q)) => Ok(HashPolicy::QueryParameter(q.name.clone())),
        Some(PolicySpecifier::ConnectionProperties(c)) if c.source_ip => Ok(HashPolicy::SourceIp),
        _ => Err("only header, cookie (without attributes), query parameter and source IP hash policies are supported"
            .into()),
    }
}

fn targets(a: &route::RouteAction) -> Result<Vec<WeightedTarget>, String> {
    let targets: Vec<WeightedTarget> = match &a.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(name)) => vec![WeightedTarget::new(name.clone(), 1)],
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) if !w.clusters.is_empty() => {
            w.clusters.iter().map(weighted_target).collect::<Result<_, _>>()?
        }
        _ => return Err("the action must name a cluster or weighted clusters".into()),
    };
    if targets.len() > 1 && targets.iter().all(|t| t.weight == 0) {
        return Err("weighted clusters must not all have weight 0".into());
    }
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total > u64::from(u32::MAX) {
        return Err(format!("the weights of weighted clusters add up to {total}, more than {}", u32::MAX));
    }
    Ok(targets)
}

fn weighted_target(c: &route::weighted_cluster::ClusterWeight) -> Result<WeightedTarget, String> {
    let in_cluster = |m: String| format!("weighted cluster {:?}: {m}", c.name);
    Ok(WeightedTarget {
        cluster: c.name.clone(),
        weight: c.weight.as_ref().map_or(0, |w| w.value),
        request_headers: header_ops(&c.request_headers_to_add, &c.request_headers_to_remove).map_err(in_cluster)?,
        response_headers: header_ops(&c.response_headers_to_add, &c.response_headers_to_remove).map_err(in_cluster)?,
    })
}

fn mirror(m: &route_action::RequestMirrorPolicy) -> Result<Mirror, String> {
    if m.cluster.is_empty() {
        return Err("a request mirror policy must name a cluster".into());
    }
    let share = match m.runtime_fraction.as_ref().and_then(|r| r.default_value.as_ref()) {
        Some(f) => fraction(f)?,
        None => crate::config::policy::Fraction::ALL,
    };
    Ok(Mirror { cluster: m.cluster.clone(), share })
}

fn rewrite(a: &route::RouteAction) -> Result<Rewrite, String> {
    let prefix = (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone());
    let regex = match &a.regex_rewrite {
        Some(r) => {
            let pattern = r.pattern.as_ref().ok_or("regex_rewrite needs a pattern")?;
            Some(RegexRewrite { pattern: bounded_regex(&pattern.regex)?, substitution: substitution(&r.substitution) })
        }
        None => None,
    };
    if prefix.is_some() && regex.is_some() {
        return Err("prefix_rewrite and regex_rewrite are exclusive".into());
    }
    let authority = match &a.host_rewrite_specifier {
        None => None,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(host)) => {
            http::uri::Authority::try_from(host.as_str())
                .map_err(|_| format!("host rewrite {host:?} is not a valid authority"))?;
            Some(host.clone())
        }
        Some(_) => return Err("only a literal host rewrite is supported".into()),
    };
    Ok(Rewrite { prefix, regex, authority })
}

/// RE2's and Envoy's substitution syntax (`\1` for a group) in the `regex` crate's (`${1}`), `$` made literal.
fn substitution(envoy: &str) -> String {
    let mut out = String::with_capacity(envoy.len());
    let mut chars = envoy.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                chars.next();
                out.push_str(&format!("${{{d}}}"));
            }
            ('\\', Some('\\')) => {
                chars.next();
                out.push('\\');
            }
            ('$', _) => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn redirect(r: &RedirectAction) -> Result<Redirect, String> {
    let scheme = match &r.scheme_rewrite_specifier {
        None => None,
        Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
        Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(false)) => None,
        Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(s)) => Some(s.to_ascii_lowercase()),
    };
    let path = match &r.path_rewrite_specifier {
        None => None,
        Some(redirect_action::PathRewriteSpecifier::PathRedirect(p)) => Some(p.clone()),
        Some(_) => return Err("only path_redirect is supported in redirects".into()),
    };
    let port = match r.port_redirect {
        0 => None,
        p => Some(u16::try_from(p).map_err(|_| format!("redirect port {p} is out of range"))?),
    };
    use redirect_action::RedirectResponseCode as Code;
    let status = match Code::try_from(r.response_code) {
        Ok(Code::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
        Ok(Code::Found) => StatusCode::FOUND,
        Ok(Code::SeeOther) => StatusCode::SEE_OTHER,
        Ok(Code::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
        Ok(Code::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
        Err(_) => return Err(format!("unknown redirect response code {}", r.response_code)),
    };
    let host = (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone());
    Ok(Redirect { scheme, host, port, path, strip_query: r.strip_query, status })
}

pub(super) fn direct_response(d: &DirectResponseAction) -> Result<DirectResponse, String> {
    if d.body_format.is_some() {
        return Err("direct response body formats are not supported".into());
    }
    let status = u16::try_from(d.status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("direct response status {} is not in 200-599", d.status))?;
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => Bytes::new(),
        Some(data_source::Specifier::InlineString(s)) => Bytes::from(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => Bytes::from(b.clone()),
        Some(_) => return Err("a direct response body must be inline".into()),
    };
    Ok(DirectResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_substitutions_become_regex_crate_ones() {
        assert_eq!(substitution(r"/v2/\1/items/\2"), "/v2/${1}/items/${2}");
        assert_eq!(substitution(r"/cost/$5\\x"), r"/cost/$$5\x");
        let re = regex::Regex::new("^/v1/([^/]+)$").unwrap();
        assert_eq!(re.replace_all("/v1/books", substitution(r"/v2/\1").as_str()), "/v2/books");
    }
}
