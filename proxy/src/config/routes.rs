//! Route tables and request matching: which route a request takes. Pure.

use std::time::Duration;

use http::HeaderMap;
use serde::{Serialize, Serializer};

/// One route configuration (all Services on a port).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    /// Hosts not among `virtual_hosts` may be asked for on demand (VHDS).
    pub on_demand: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-case host names, possibly with `:port`; `*` matches any host.
    pub domains: Vec<String>,
    pub routes: Vec<RouteEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteEntry {
    pub name: String,
    pub path: PathMatch,
    /// All must match.
    pub headers: Vec<HeaderMatch>,
    pub action: RouteAction,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(#[serde(serialize_with = "regex_text")] regex::Regex),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatch {
    /// Lower-case header name; `:method` for the method.
    pub name: String,
    pub matcher: StringMatcher,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    Regex(#[serde(serialize_with = "regex_text")] regex::Regex),
    Present,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteAction {
    /// Weighted targets; a single target has any weight.
    pub targets: Vec<WeightedTarget>,
    /// `None`: no timeout.
    #[serde(serialize_with = "optional_ms")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedTarget {
    pub cluster: String,
    pub weight: u32,
}

impl PartialEq for PathMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Prefix(a), Self::Prefix(b)) | (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl PartialEq for StringMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) | (Self::Prefix(a), Self::Prefix(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            (Self::Present, Self::Present) => true,
            _ => false,
        }
    }
}

fn regex_text<S: Serializer>(re: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    // Stored anchored (`^(?:..)$`) for full-string matching; shown as written.
    let text = re.as_str();
    s.serialize_str(text.strip_prefix("^(?:").and_then(|t| t.strip_suffix(")$")).unwrap_or(text))
}

fn optional_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_millis()),
        None => s.serialize_none(),
    }
}

/// What routing needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Host as sent (`Host` or `:authority`), possibly with a port.
    pub host: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
}

impl RouteTable {
    /// The route a request takes: the first matching route of the virtual host whose domains contain the host.
    pub fn route(&self, request: &RequestInfo<'_>) -> Option<&RouteEntry> {
        self.virtual_host(request.host)?.route(request)
    }

    /// The virtual host serving `host` (as sent, possibly with a port): an exact domain, else a `*` domain.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let host = host.to_ascii_lowercase();
        self.virtual_hosts
            .iter()
            .find(|v| v.domains.contains(&host))
            .or_else(|| self.virtual_hosts.iter().find(|v| v.domains.iter().any(|d| d == "*")))
    }
}

impl VirtualHost {
    /// The first of its routes that matches the request.
    pub fn route(&self, request: &RequestInfo<'_>) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| r.matches(request))
    }
}

impl RouteEntry {
    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => request.path.starts_with(p.as_str()),
            PathMatch::Exact(p) => request.path == p,
            PathMatch::Regex(re) => re.is_match(request.path),
        };
        path_ok && self.headers.iter().all(|h| h.matches(request))
    }
}

impl HeaderMatch {
    fn matches(&self, request: &RequestInfo<'_>) -> bool {
        if self.name == ":method" {
            return self.matcher.matches(Some(request.method));
        }
        // Several values of one header are matched as Envoy does: joined with commas.
        let values: Vec<&str> = request.headers.get_all(&self.name).iter().filter_map(|v| v.to_str().ok()).collect();
        let joined = (!values.is_empty()).then(|| values.join(","));
        self.matcher.matches(joined.as_deref())
    }
}

impl StringMatcher {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (_, None) => false,
            (Self::Present, Some(_)) => true,
            (Self::Exact(e), Some(v)) => v == e,
            (Self::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Self::Regex(re), Some(v)) => re.is_match(v),
        }
    }
}

impl RouteAction {
    /// Every cluster this action may send to.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.cluster.as_str())
    }

    /// The target for a request, given a uniformly random `roll`: each target is chosen with probability
    /// weight / total (the total fits a `u32`, so the modulo bias of a 64-bit roll is negligible). `None` when there
    /// is no target or every weight is zero with several targets.
    pub fn pick(&self, roll: u64) -> Option<&str> {
        if let [only] = self.targets.as_slice() {
            return Some(&only.cluster);
        }
        let total: u64 = self.targets.iter().map(|t| u64::from(t.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for target in &self.targets {
            if point < u64::from(target.weight) {
                return Some(&target.cluster);
            }
            point -= u64::from(target.weight);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(weights: &[(&str, u32)]) -> RouteAction {
        RouteAction {
            targets: weights.iter().map(|(c, w)| WeightedTarget { cluster: c.to_string(), weight: *w }).collect(),
            timeout: None,
        }
    }

    #[test]
    fn weights_split_the_roll_space_in_proportion() {
        let a = action(&[("v1", 90), ("v2", 10)]);
        let to_v2 = (0..1000u64).filter(|r| a.pick(*r) == Some("v2")).count();
        assert_eq!(to_v2, 100);
        assert_eq!(action(&[("v1", 0), ("v2", 100)]).pick(12345), Some("v2"));
        assert_eq!(action(&[("v1", 0), ("v2", 0)]).pick(1), None);
        assert_eq!(action(&[("only", 0)]).pick(7), Some("only"));
    }

    #[test]
    fn the_last_target_of_a_maximal_total_is_reachable() {
        let max = i32::MAX as u32;
        let a = action(&[("a", max), ("b", max), ("c", 1)]);
        assert_eq!(a.pick(u64::from(u32::MAX) - 1), Some("c"), "the last point of the roll space");
        assert_eq!(a.pick(u64::from(max)), Some("b"));
    }

    fn request<'a>(host: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
        RequestInfo { host, path, method: "GET", headers }
    }

    #[test]
    fn first_matching_route_of_the_matching_host_wins() {
        let route = |name: &str, path: PathMatch, headers: Vec<HeaderMatch>| RouteEntry {
            name: name.into(),
            path,
            headers,
            action: action(&[(name, 1)]),
        };
        let table = RouteTable {
            on_demand: false,
            name: "80".into(),
            virtual_hosts: vec![VirtualHost {
                name: "reviews".into(),
                domains: vec!["reviews".into(), "reviews:80".into()],
                routes: vec![
                    route(
                        "debug",
                        PathMatch::Prefix("/".into()),
                        vec![HeaderMatch { name: "x-debug".into(), matcher: StringMatcher::Exact("1".into()) }],
                    ),
                    route("exact", PathMatch::Exact("/health".into()), vec![]),
                    route("regex", PathMatch::Regex(regex::Regex::new("^(?:/v[0-9]+/.*)$").unwrap()), vec![]),
                ],
            }],
        };
        let mut debug = HeaderMap::new();
        debug.insert("x-debug", "1".parse().unwrap());
        let none = HeaderMap::new();
        assert_eq!(table.route(&request("Reviews:80", "/x", &debug)).map(|r| r.name.as_str()), Some("debug"));
        assert_eq!(table.route(&request("reviews", "/health", &none)).map(|r| r.name.as_str()), Some("exact"));
        assert_eq!(table.route(&request("reviews", "/v2/items", &none)).map(|r| r.name.as_str()), Some("regex"));
        assert!(table.route(&request("reviews", "/other", &none)).is_none(), "no route: 404");
        assert!(table.route(&request("ratings", "/health", &none)).is_none(), "unknown host: 404");
    }
}
