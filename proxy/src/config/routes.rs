//! Route tables and request matching: which route a request takes. Pure.

use std::collections::BTreeMap;

use crate::fast_hash::FastMap;
use std::time::Duration;

use http::HeaderMap;
use serde::Serialize;

pub use super::matcher::{RegexEq, StringMatcher};

use super::policy::{
    Cors, DirectResponse, Fault, GrpcTimeout, HashPolicy, HeaderOps, Mirror, Redirect, RetryPolicy, Rewrite,
    optional_ms,
};

/// A pod's labels.
pub type Labels = BTreeMap<String, String>;

/// One route configuration (all Services on a port).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteTable {
    pub name: String,
    virtual_hosts: Vec<VirtualHost>,
    /// Hosts not among `virtual_hosts` may be asked for on demand (VHDS).
    pub on_demand: bool,
    /// Each domain's virtual host (the first to claim it), so that finding one costs the same however many
    /// virtual hosts the table has.
    #[serde(skip)]
    by_domain: FastMap<String, usize>,
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
    /// Paths compare without regard to ASCII case (Istio's `ignoreUriCase`).
    pub ignore_case: bool,
    /// All must match.
    pub headers: Vec<HeaderMatch>,
    /// All must match.
    pub query: Vec<QueryMatch>,
    /// Labels the client's pod (this proxy's) must all carry (Istio's `sourceLabels`).
    pub source_labels: Labels,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub fault: Option<Fault>,
    pub cors: Option<Cors>,
}

/// What a matching route does with the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Boxed: far larger than the other actions.
    Forward(Box<RouteAction>),
    Redirect(Redirect),
    Respond(DirectResponse),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PathMatch {
    #[serde(rename = "prefix")]
    Prefix(String),
    #[serde(rename = "exact")]
    Exact(String),
    #[serde(rename = "regex")]
    Regex(RegexEq),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatch {
    /// Lower-case header name; `:method`, `:authority` and `:scheme` for those parts of the request.
    pub name: String,
    pub matcher: StringMatcher,
    /// Matches when the matcher does not (a header that is absent does not match a non-inverted matcher).
    pub invert: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryMatch {
    pub name: String,
    pub matcher: StringMatcher,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteAction {
    /// Weighted targets; a single target has any weight.
    pub targets: Vec<WeightedTarget>,
    /// `None`: no timeout.
    #[serde(serialize_with = "optional_ms")]
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub grpc_timeout: GrpcTimeout,
    pub mirrors: Vec<Mirror>,
    pub rewrite: Rewrite,
    pub hash_policy: Vec<HashPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedTarget {
    pub cluster: String,
    pub weight: u32,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

impl WeightedTarget {
    pub fn new(cluster: impl Into<String>, weight: u32) -> Self {
        Self {
            cluster: cluster.into(),
            weight,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
        }
    }
}

/// What routing needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Host as sent (`Host` or `:authority`), possibly with a port.
    pub host: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    /// `http` or `https`, as the request says (`:scheme`, or an absolute URI); `http` otherwise.
    pub scheme: &'a str,
    pub headers: &'a HeaderMap,
    /// The labels of the pod this proxy serves: the client's.
    pub source_labels: &'a Labels,
}

impl RouteTable {
    pub fn new(name: impl Into<String>, virtual_hosts: Vec<VirtualHost>, on_demand: bool) -> Self {
        let mut table = Self { name: name.into(), virtual_hosts: Vec::new(), on_demand, by_domain: FastMap::default() };
        for host in virtual_hosts {
            table.add_virtual_host(host);
        }
        table
    }

    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// Adds a virtual host after the others (its domains already claimed stay with their first host).
    pub fn add_virtual_host(&mut self, host: VirtualHost) {
        let index = self.virtual_hosts.len();
        for domain in &host.domains {
            self.by_domain.entry(domain.clone()).or_insert(index);
        }
        self.virtual_hosts.push(host);
    }

    /// The route a request takes: the first matching route of the virtual host whose domains contain the host.
    pub fn route(&self, request: &RequestInfo<'_>) -> Option<&RouteEntry> {
        self.virtual_host(request.host)?.route(request)
    }

    /// The virtual host of the Service whose cluster IP is `ip` (a domain of its own, never through `*`).
    pub fn service_at(&self, ip: std::net::IpAddr) -> Option<&VirtualHost> {
        self.by_domain.get(&weft_xds::address_domain(ip)).map(|&index| &self.virtual_hosts[index])
    }

    /// The virtual host serving `host` (as sent, possibly with a port): an exact domain, else a `*` domain.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let exact = match host.bytes().any(|b| b.is_ascii_uppercase()) {
            true => self.by_domain.get(&host.to_ascii_lowercase()),
            false => self.by_domain.get(host),
        };
        exact.or_else(|| self.by_domain.get("*")).map(|&index| &self.virtual_hosts[index])
    }
}

impl VirtualHost {
    /// The first of its routes that matches the request.
    pub fn route(&self, request: &RequestInfo<'_>) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| r.matches(request))
    }
}

impl RouteEntry {
    /// A route matching `path` that forwards by `action`, with nothing else set.
    pub fn forward(name: impl Into<String>, path: PathMatch, action: RouteAction) -> Self {
        Self {
            name: name.into(),
            path,
            ignore_case: false,
            headers: Vec::new(),
            query: Vec::new(),
            source_labels: Labels::new(),
            action: Action::Forward(Box::new(action)),
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            fault: None,
            cors: None,
        }
    }

    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        self.path_matches(request.path)
            && self.source_labels.iter().all(|(k, v)| request.source_labels.get(k) == Some(v))
            && self.headers.iter().all(|h| h.matches(request))
            && self.query.iter().all(|q| q.matches(request.query))
    }

    fn path_matches(&self, path: &str) -> bool {
        match (&self.path, self.ignore_case) {
            (PathMatch::Prefix(p), false) => path.starts_with(p.as_str()),
            (PathMatch::Prefix(p), true) => path.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)),
            (PathMatch::Exact(p), false) => path == p,
            (PathMatch::Exact(p), true) => path.eq_ignore_ascii_case(p),
            // Compiled case-insensitive when the route ignores case.
            (PathMatch::Regex(re), _) => re.is_match(path),
        }
    }

    /// Every cluster this route may send to, mirrors included.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        let action = match &self.action {
            Action::Forward(action) => Some(action),
            _ => None,
        };
        action.into_iter().flat_map(|a| {
            a.targets.iter().map(|t| t.cluster.as_str()).chain(a.mirrors.iter().map(|m| m.cluster.as_str()))
        })
    }
}

impl HeaderMatch {
    fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let found = match self.name.as_str() {
            ":method" => self.matcher.matches(Some(request.method)),
            ":authority" => self.matcher.matches(Some(request.host)),
            ":scheme" => self.matcher.matches(Some(request.scheme)),
            name => {
                // Several values of one header are matched as Envoy does: joined with commas.
                let values: Vec<&str> = request.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
                let joined = (!values.is_empty()).then(|| values.join(","));
                self.matcher.matches(joined.as_deref())
            }
        };
        found != self.invert
    }
}

impl QueryMatch {
    /// The first parameter of that name decides, as in Envoy; values are compared as sent (not decoded).
    fn matches(&self, query: Option<&str>) -> bool {
        let value = query.unwrap_or_default().split('&').find_map(|pair| match pair.split_once('=') {
            Some((name, value)) if name == self.name => Some(value),
            None if pair == self.name => Some(""),
            _ => None,
        });
        self.matcher.matches(value)
    }
}

impl RouteAction {
    /// An action that only sends to `targets`: no timeout, retries, mirrors or rewrites.
    pub fn to_targets(targets: Vec<WeightedTarget>) -> Self {
        Self {
            targets,
            timeout: None,
            retry: None,
            grpc_timeout: GrpcTimeout::Ignored,
            mirrors: Vec::new(),
            rewrite: Rewrite::default(),
            hash_policy: Vec::new(),
        }
    }

    /// The target for a request, given a uniformly random `roll` ([`pick_weighted`]).
    pub fn pick(&self, roll: u64) -> Option<&WeightedTarget> {
        pick_weighted(&self.targets, roll)
    }
}

/// The target for a uniformly random `roll`: each chosen with probability weight / total (the total fits a
/// `u32`, so the modulo bias of a 64-bit roll is negligible). `None` when there is no target or every weight is
/// zero with several targets.
pub fn pick_weighted(targets: &[WeightedTarget], roll: u64) -> Option<&WeightedTarget> {
    if let [only] = targets {
        return Some(only);
    }
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = roll % total;
    for target in targets {
        if point < u64::from(target.weight) {
            return Some(target);
        }
        point -= u64::from(target.weight);
    }
    None
}

pub mod explain;

#[cfg(test)]
mod tests;
