//! Authorization on a workload's inbound side (AuthorizationPolicy, Istio's semantics), as plain data the proxy
//! decides with: per action (`DENY`, `ALLOW`, `AUDIT`) the rules in force and the dry-run ones, each rule a tree
//! of Envoy's RBAC permissions (what is asked: port, path, method, host, headers) and principals (who asks:
//! identity, address). [`rbac`] writes and reads them as Envoy's RBAC filter configs, so an Envoy could
//! enforce the same; [`Authorization::decide`] is the evaluation, pure and allocation-free.
//!
//! Istio's order: a matching `DENY` rule denies; else, when the workload has any `ALLOW` policy, a request no
//! `ALLOW` rule matches is denied (an `ALLOW` policy without rules therefore allows nothing); else it is allowed.
//! `AUDIT` rules decide nothing; a match is reported. Dry-run rules are evaluated the same way, on their own
//! (as Envoy's shadow rules are), and only reported.

pub mod rbac;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::Serialize;

/// What a workload's inbound side enforces. Empty: nothing (every request allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Authorization {
    pub deny: Layer,
    pub allow: Layer,
    pub audit: Layer,
}

/// A workload's authorization in its two views: for HTTP requests, and for connections that are not HTTP
/// (whose rules leave out what only HTTP has, as Istio translates them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct InboundAuthz {
    pub http: Authorization,
    pub tcp: Authorization,
}

impl InboundAuthz {
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.tcp.is_empty()
    }
}

/// One action's rules: `None` where no policy of that action applies (which differs, for `ALLOW`, from a
/// policy whose rules are empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Layer {
    pub enforced: Option<Vec<NamedRule>>,
    pub dry_run: Option<Vec<NamedRule>>,
}

/// One rule of one policy: it matches when one of its permissions and one of its principals do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NamedRule {
    /// The AuthorizationPolicy, `namespace/name`.
    pub policy: Arc<str>,
    /// Its position in the policy's `rules`.
    pub index: u32,
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

/// What is asked (Envoy's `Permission`, the subset AuthorizationPolicy needs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    /// The port the connection was addressed to (the application's).
    DestinationPort(u16),
    /// The request's path, without the query.
    Path(StringMatch),
    /// A request header; `:method` and `:authority` name the method and host.
    Header(HeaderMatch),
}

/// Who asks (Envoy's `Principal`, the subset AuthorizationPolicy needs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A peer that proved an identity with mutual TLS; `Some`: one that matches.
    Authenticated(Option<StringMatch>),
    /// The connection's peer address (Envoy's `direct_remote_ip`; `remote_ip` too: no proxy protocol or
    /// trusted `x-forwarded-for` hops, so the two are the same address).
    RemoteIp(Cidr),
    Header(HeaderMatch),
}

/// A string test, optionally ignoring ASCII case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StringMatch {
    pub kind: MatchKind,
    pub value: String,
    pub ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

/// A header test: present (`value: None`), or with a value that matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HeaderMatch {
    /// Lower case, as HTTP/2 and the `http` crate carry names.
    pub name: String,
    pub value: Option<StringMatch>,
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// The connection a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub ip: IpAddr,
    /// The SPIFFE id the peer proved with mutual TLS.
    pub principal: Option<&'a str>,
    /// The application port it was addressed to.
    pub port: u16,
}

/// The HTTP request a decision is about; `None` for a TCP connection (whose HTTP tests never match).
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    pub headers: &'a HeaderMap,
}

/// What was decided, and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub allowed: bool,
    /// The rule that decided: a matching `DENY` or `ALLOW` rule; `None` when no policy applies, or when no
    /// `ALLOW` rule matched (denied).
    pub by: Option<&'a NamedRule>,
    /// The action of the layer that decided; `None` when no policy applies.
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

/// Everything a workload reports about one request or connection: the decision in force, what the dry-run
/// rules would have decided (when there are any), and the first matching `AUDIT` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub decision: Decision<'a>,
    pub dry_run: Option<Decision<'a>>,
    pub audited: Option<&'a NamedRule>,
}

impl Authorization {
    /// Whether it enforces or reports anything at all.
    pub fn is_empty(&self) -> bool {
        [&self.deny, &self.allow, &self.audit].iter().all(|l| l.enforced.is_none() && l.dry_run.is_none())
    }

    /// The verdict on `request` (or, without one, the connection) from `peer`.
    pub fn decide<'a>(&'a self, peer: &Peer<'_>, request: Option<&HttpRequest<'_>>) -> Verdict<'a> {
        let context = Context { peer, request };
        let decision = decide(self.deny.enforced.as_deref(), self.allow.enforced.as_deref(), &context);
        // Dry-run rules are judged on their own, as Envoy's shadow rules are.
        let dry_run = (self.deny.dry_run.is_some() || self.allow.dry_run.is_some())
            .then(|| decide(self.deny.dry_run.as_deref(), self.allow.dry_run.as_deref(), &context));
        let audited = all_rules(&self.audit).find(|rule| rule.matches(&context));
        Verdict { decision, dry_run, audited }
    }
}

fn all_rules(layer: &Layer) -> impl Iterator<Item = &NamedRule> {
    layer.enforced.iter().chain(&layer.dry_run).flatten()
}

struct Context<'c> {
    peer: &'c Peer<'c>,
    request: Option<&'c HttpRequest<'c>>,
}

fn decide<'a>(deny: Option<&'a [NamedRule]>, allow: Option<&'a [NamedRule]>, context: &Context<'_>) -> Decision<'a> {
    let first = |rules: &'a [NamedRule]| rules.iter().find(|rule| rule.matches(context));
    if let Some(rule) = deny.and_then(first) {
        return Decision { allowed: false, by: Some(rule), action: Some(Action::Deny) };
    }
    match allow {
        None => Decision { allowed: true, by: None, action: None },
        Some(rules) => {
            let by = first(rules);
            Decision { allowed: by.is_some(), by, action: Some(Action::Allow) }
        }
    }
}

impl NamedRule {
    fn matches(&self, context: &Context<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(context)) && self.principals.iter().any(|p| p.matches(context))
    }
}

impl Permission {
    fn matches(&self, context: &Context<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(context)),
            Self::Or(any) => any.iter().any(|p| p.matches(context)),
            Self::Not(inner) => !inner.matches(context),
            Self::DestinationPort(port) => context.peer.port == *port,
            Self::Path(matcher) => context.request.is_some_and(|r| matcher.matches(path_only(r.path))),
            Self::Header(header) => context.request.is_some_and(|r| header.matches(r)),
        }
    }
}

impl Principal {
    fn matches(&self, context: &Context<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(context)),
            Self::Or(any) => any.iter().any(|p| p.matches(context)),
            Self::Not(inner) => !inner.matches(context),
            Self::Authenticated(None) => context.peer.principal.is_some(),
            Self::Authenticated(Some(matcher)) => context.peer.principal.is_some_and(|p| matcher.matches(p)),
            Self::RemoteIp(cidr) => cidr.contains(context.peer.ip),
            Self::Header(header) => context.request.is_some_and(|r| header.matches(r)),
        }
    }
}

fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

impl HeaderMatch {
    fn matches(&self, request: &HttpRequest<'_>) -> bool {
        let value = match self.name.as_str() {
            ":method" => Some(Cow::Borrowed(request.method)),
            ":authority" | "host" => Some(Cow::Borrowed(request.authority)),
            ":path" => Some(Cow::Borrowed(request.path)),
            name => header_value(request.headers, name),
        };
        match (&self.value, value) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(matcher), Some(value)) => matcher.matches(&value),
        }
    }
}

/// A header's value as Envoy's RBAC tests it: every value of a repeated header joined with `,`, and bytes that
/// are not text kept (replaced), so a header is present whatever it carries. Allocates only for those two.
fn header_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    let mut values = headers.get_all(name).iter();
    let first = String::from_utf8_lossy(values.next()?.as_bytes());
    let Some(second) = values.next() else { return Some(first) };
    let mut joined = first.into_owned();
    for value in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(Cow::Owned(joined))
}

impl StringMatch {
    pub fn new(kind: MatchKind, value: impl Into<String>) -> Self {
        Self { kind, value: value.into(), ignore_case: false }
    }

    pub fn matches(&self, value: &str) -> bool {
        if self.ignore_case {
            // Comparing bytes case-insensitively keeps the hot path free of allocations.
            let (v, want) = (value.as_bytes(), self.value.as_bytes());
            return match self.kind {
                MatchKind::Exact => v.eq_ignore_ascii_case(want),
                MatchKind::Prefix => v.len() >= want.len() && v[..want.len()].eq_ignore_ascii_case(want),
                MatchKind::Suffix => v.len() >= want.len() && v[v.len() - want.len()..].eq_ignore_ascii_case(want),
                MatchKind::Contains => v.windows(want.len().max(1)).any(|w| w.eq_ignore_ascii_case(want)),
            };
        }
        match self.kind {
            MatchKind::Exact => value == self.value,
            MatchKind::Prefix => value.starts_with(&self.value),
            MatchKind::Suffix => value.ends_with(&self.value),
            MatchKind::Contains => value.contains(&self.value),
        }
    }
}

impl Cidr {
    /// Whether `ip` is in the range; an IPv4 address in an IPv4-mapped IPv6 form counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_equal(&net.octets(), &ip.octets(), self.prefix_len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_equal(&net.octets(), &ip.octets(), self.prefix_len),
            _ => false,
        }
    }
}

fn prefix_equal(net: &[u8], ip: &[u8], prefix_len: u8) -> bool {
    let bits = usize::from(prefix_len).min(net.len() * 8);
    let (whole, rest) = (bits / 8, bits % 8);
    if net[..whole] != ip[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        net[whole] & mask == ip[whole] & mask
    }
}

#[cfg(test)]
mod tests;
