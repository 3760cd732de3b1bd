//! Rewrites before forwarding (Istio's `rewrite`): the part of the path the route matched replaced by a new
//! prefix (`uri`), or every match of a pattern substituted (`uriRegexRewrite`); the authority replaced
//! (`authority`). The query string is kept.

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Uri, Version, header};
use tower::ServiceExt;

use super::{Next, RouteFuture, RouteStep};
use crate::config::PathMatch;
use crate::config::policy::Rewrite;
use crate::http::Body;

/// The path after a rewrite. Pure. `matched` is the route's path match (a prefix match replaces that prefix,
/// ASCII case ignored as the match did; any other match replaces the whole path).
pub fn rewrite_path(rewrite: &Rewrite, matched: &PathMatch, path: &str) -> Option<String> {
    if let Some(regex) = &rewrite.regex {
        return Some(regex.pattern.replace_all(path, regex.substitution.as_str()).into_owned());
    }
    let prefix = rewrite.prefix.as_ref()?;
    let rest = match matched {
        PathMatch::Prefix(p) => path.get(p.len()..).unwrap_or_default(),
        PathMatch::Exact(_) | PathMatch::Regex(_) => "",
    };
    Some(format!("{prefix}{rest}"))
}

#[derive(Clone, Copy)]
pub struct RewriteLayer<'a> {
    rewrite: &'a Rewrite,
    matched: &'a PathMatch,
}

impl<'a> RewriteLayer<'a> {
    /// `None` when the route rewrites nothing.
    pub fn new(rewrite: &'a Rewrite, matched: &'a PathMatch) -> Option<Self> {
        (!rewrite.is_empty()).then_some(Self { rewrite, matched })
    }
}

impl<'a> RouteStep<'a> for RewriteLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, mut request: Request<Body>) -> RouteFuture<'a> {
        apply(self, &mut request);
        Box::pin(next.oneshot(request))
    }
}

/// Rewrites the request's URI (which carries the authority upstream) and, for HTTP/1, its `Host`.
fn apply(config: RewriteLayer<'_>, request: &mut Request<Body>) {
    let mut parts = request.uri().clone().into_parts();
    if let Some(path) = rewrite_path(config.rewrite, config.matched, request.uri().path()) {
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let with_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(path_and_query) = PathAndQuery::try_from(with_query) {
            parts.path_and_query = Some(path_and_query);
        }
    }
    if let Some(authority) = &config.rewrite.authority
        && let Ok(parsed) = Authority::try_from(authority.as_str())
    {
        parts.authority = Some(parsed);
        if request.version() != Version::HTTP_2
            && let Ok(host) = HeaderValue::from_str(authority)
        {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegexEq;
    use crate::config::policy::RegexRewrite;

    fn prefix(p: &str) -> Rewrite {
        Rewrite { prefix: Some(p.into()), ..Rewrite::default() }
    }

    #[test]
    fn a_prefix_rewrite_replaces_what_the_route_matched() {
        let matched = PathMatch::Prefix("/ratings".into());
        assert_eq!(rewrite_path(&prefix("/v1/bookRatings"), &matched, "/ratings/2").unwrap(), "/v1/bookRatings/2");
        assert_eq!(rewrite_path(&prefix("/"), &matched, "/ratings").unwrap(), "/");
        let exact = PathMatch::Exact("/old".into());
        assert_eq!(rewrite_path(&prefix("/new"), &exact, "/old").unwrap(), "/new", "an exact match: the whole path");
        assert!(rewrite_path(&Rewrite::default(), &matched, "/ratings").is_none());
    }

    #[test]
    fn a_regex_rewrite_substitutes_every_match() {
        let regex = RegexRewrite {
            pattern: regex::Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
            substitution: "${2}/instance/${1}".into(),
        };
        let rewrite = Rewrite { regex: Some(regex), ..Rewrite::default() };
        let any = PathMatch::Regex(RegexEq(regex::Regex::new(".*").unwrap()));
        assert_eq!(rewrite_path(&rewrite, &any, "/service/foo/v1/api").unwrap(), "/v1/api/instance/foo");
    }
}
