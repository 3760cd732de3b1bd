//! Why a request takes the route it takes: the proxy's own matching ([`RouteTable::virtual_host`],
//! [`RouteEntry::matches`]) done step by step, with the first reason each earlier route did not match. Pure;
//! `weftctl route` prints it.

use super::{RequestInfo, RouteEntry, RouteTable, VirtualHost};

/// How one route fared against the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Matched,
    /// The first condition that failed, in words.
    NotMatched(String),
}

/// The virtual host a request lands on and its routes up to the one it takes.
#[derive(Debug)]
pub struct Explanation<'a> {
    pub virtual_host: Option<&'a VirtualHost>,
    /// Each route tried, in order, ending with the one that matched (if any did).
    pub tried: Vec<(&'a RouteEntry, Verdict)>,
}

impl Explanation<'_> {
    /// The route the request takes.
    pub fn chosen(&self) -> Option<&RouteEntry> {
        self.tried.last().filter(|(_, v)| *v == Verdict::Matched).map(|(r, _)| *r)
    }
}

/// The proxy's routing decision for `request` in `table`, explained.
pub fn explain<'a>(table: &'a RouteTable, request: &RequestInfo<'_>) -> Explanation<'a> {
    let virtual_host = table.virtual_host(request.host);
    let mut tried = Vec::new();
    for route in virtual_host.iter().flat_map(|v| v.routes.iter()) {
        let verdict = verdict(route, request);
        let matched = verdict == Verdict::Matched;
        tried.push((route, verdict));
        if matched {
            break;
        }
    }
    Explanation { virtual_host, tried }
}

fn verdict(route: &RouteEntry, request: &RequestInfo<'_>) -> Verdict {
    if !route.path_matches(request.path) {
        return Verdict::NotMatched(format!("path {} does not match {:?}", request.path, route.path));
    }
    if let Some((key, want)) = route.source_labels.iter().find(|(k, v)| request.source_labels.get(*k) != Some(*v)) {
        return Verdict::NotMatched(format!("sourceLabels: the client pod has no label {key}={want}"));
    }
    if let Some(header) = route.headers.iter().find(|h| !h.matches(request)) {
        let negated = if header.invert { "not " } else { "" };
        return Verdict::NotMatched(format!("header {}: {negated}{:?} not satisfied", header.name, header.matcher));
    }
    if let Some(query) = route.query.iter().find(|q| !q.matches(request.query)) {
        return Verdict::NotMatched(format!("query parameter {}: {:?} not satisfied", query.name, query.matcher));
    }
    debug_assert!(route.matches(request));
    Verdict::Matched
}

#[cfg(test)]
mod tests {
    use super::super::{HeaderMatch, Labels, PathMatch, RouteAction, WeightedTarget};
    use super::*;
    use crate::config::matcher::StringMatcher;

    fn table() -> RouteTable {
        let action = |cluster: &str| RouteAction::to_targets(vec![WeightedTarget::new(cluster, 100)]);
        let mut jason = RouteEntry::forward("jason", PathMatch::Prefix("/".into()), action("v2"));
        jason.headers.push(HeaderMatch {
            name: "end-user".into(),
            matcher: StringMatcher::Exact("jason".into()),
            invert: false,
        });
        let api = RouteEntry::forward("api", PathMatch::Prefix("/api".into()), action("api"));
        let rest = RouteEntry::forward("rest", PathMatch::Prefix("/".into()), action("v1"));
        let host =
            VirtualHost { name: "reviews:80".into(), domains: vec!["reviews".into()], routes: vec![jason, api, rest] };
        RouteTable::new("80", vec![host], false)
    }

    #[test]
    fn each_route_before_the_chosen_one_says_why_it_did_not_match() {
        let (table, headers, labels) = (table(), http::HeaderMap::new(), Labels::new());
        let request = RequestInfo {
            host: "reviews",
            path: "/reviews/1",
            query: None,
            method: "GET",
            scheme: "http",
            headers: &headers,
            source_labels: &labels,
        };
        let explained = explain(&table, &request);
        let names: Vec<&str> = explained.tried.iter().map(|(r, _)| r.name.as_str()).collect();
        assert_eq!(names, ["jason", "api", "rest"]);
        assert!(matches!(&explained.tried[0].1, Verdict::NotMatched(why) if why.starts_with("header end-user")));
        assert!(matches!(&explained.tried[1].1, Verdict::NotMatched(why) if why.starts_with("path /reviews/1")));
        assert_eq!(explained.chosen().map(|r| r.name.as_str()), Some("rest"));
        assert_eq!(explained.chosen(), table.route(&request), "the same decision the proxy makes");
        let elsewhere = explain(&table, &RequestInfo { host: "ratings", ..request });
        assert!(elsewhere.virtual_host.is_none() && elsewhere.chosen().is_none());
    }
}
