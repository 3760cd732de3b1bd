//! `VirtualService`: how requests addressed to a host are routed (Istio `networking.istio.io/v1` field names).
//! The rule's conditions live in [`matching`], what a rule does besides routing in [`actions`].
//!
//! The connection-level rules (`tcp`, `tls`) live in [`l4`].
//!
//! A VirtualService without `hosts` is a delegate: it routes nothing by itself, and the `http[].delegate` rules of
//! others take its http rules (Istio's delegation, one level).

pub mod actions;
pub mod cors;
pub mod l4;
pub mod matching;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::actions::{
    FaultAbort, FaultDelay, HeaderOperations, Headers, HttpBody, HttpDirectResponse, HttpFaultInjection,
    HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite, Percent, RegexRewrite,
};
pub use self::l4::{L4Match, L4MatchAttributes, L4Route, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute};
pub use self::matching::{HttpMatchRequest, StringMatch, StringMatchKind};
use crate::status::WeftStatus;

/// Routing rules for traffic addressed to `hosts`. The subset of Istio's VirtualService that Weft supports.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.weft.dev",
    version = "v1alpha1",
    kind = "VirtualService",
    plural = "virtualservices",
    shortname = "vs",
    category = "weft",
    namespaced,
    derive = "PartialEq",
    status = "WeftStatus",
    printcolumn = r#"{"name":"Hosts","type":"string","description":"The destination hosts this applies to","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","description":"Whether Weft accepted it","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Resolved","type":"string","description":"Whether every referenced host and subset exists","jsonPath":".status.conditions[?(@.type==\"ResolvedRefs\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// Destination hosts the rules apply to: a Service short name (resolved in this resource's namespace),
    /// `name.namespace`, the FQDN `name.namespace.svc.cluster.local`, or a wildcard (`*.bank.svc.cluster.local`,
    /// `*`) for every Service it matches. None: a delegate, whose http rules other VirtualServices take.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways the rules apply to; Weft has only the mesh (`mesh`, the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Ordered HTTP routing rules; the first rule whose match succeeds is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// Ordered rules for TLS connections not terminated by the mesh, matched on SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Ordered rules for TCP connections; the first rule whose match succeeds is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces whose proxies see this VirtualService: `.` (its own), `*` (every namespace, the default when
    /// empty) or namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// One HTTP routing rule: conditions and the destinations traffic goes to when they match.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name of the rule, shown in logs and the proxy's config dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions (ORed); each condition's fields are ANDed. No conditions matches every request.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations of matching requests. Exactly one of `route`, `redirect`, `directResponse`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Answer matching requests with a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer matching requests with a fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand matching requests to the http rules of another VirtualService, one without `hosts`; instead of
    /// `route`, `redirect` and `directResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the path or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for a request, e.g. `"10s"` or `"250ms"`. Unset: no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retry policy; unset: Istio's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Faults to inject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Send a copy of requests to this destination too (responses are discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Share of requests `mirror` receives; unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer form of `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Several mirrors, each with its share; not with `mirror`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Cross-origin resource sharing for browsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<cors::CorsPolicy>,
    /// Header changes on requests and responses of this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

impl HttpRoute {
    /// Every destination requests of this rule are sent to: the `route[]` destinations, then the mirrors. Whatever
    /// enumerates where a rule sends traffic (scopes, change tracking, reference checks) goes through this.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.destination_fields().map(|(_, destination)| destination)
    }

    /// [`Self::destinations`] with each one's place in the rule (`route[1].destination`, `mirror`).
    pub fn destination_fields(&self) -> impl Iterator<Item = (DestinationPlace, &Destination)> {
        let routes = self.route.iter().enumerate().map(|(i, r)| (DestinationPlace::Route(i), &r.destination));
        let mirror = self.mirror.iter().map(|m| (DestinationPlace::Mirror, m));
        let mirrors = self.mirrors.iter().enumerate().map(|(i, m)| (DestinationPlace::Mirrors(i), &m.destination));
        routes.chain(mirror).chain(mirrors)
    }
}

/// Where a destination is in its rule. Written out (`route[1].destination`) only when a message names it: the
/// destinations are walked far more often than any is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationPlace {
    /// `route[i].destination`.
    Route(usize),
    /// `mirror`.
    Mirror,
    /// `mirrors[i].destination`.
    Mirrors(usize),
}

impl std::fmt::Display for DestinationPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Route(i) => write!(f, "route[{i}].destination"),
            Self::Mirror => f.write_str("mirror"),
            Self::Mirrors(i) => write!(f, "mirrors[{i}].destination"),
        }
    }
}

/// Where a destination is in a VirtualService's spec (`http[0].route[1].destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationField {
    /// `http`, `tcp` or `tls`.
    pub rules: &'static str,
    /// The rule's index in that list.
    pub rule: usize,
    pub place: DestinationPlace,
}

impl std::fmt::Display for DestinationField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}].{}", self.rules, self.rule, self.place)
    }
}

/// The VirtualService an http rule delegates to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Its name.
    pub name: String,
    /// Its namespace; unset: the delegating VirtualService's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl VirtualServiceSpec {
    /// Every destination of every rule (http, then tcp, then tls), mirrors included, with its field path from
    /// the spec (`http[0].route[1].destination`). Whatever enumerates where a VirtualService sends traffic
    /// (scopes, change tracking, reference checks) goes through this, so no kind of rule is forgotten.
    pub fn destination_fields(&self) -> impl Iterator<Item = (DestinationField, &Destination)> {
        let field = |rules: &'static str, rule: usize| move |(place, d)| (DestinationField { rules, rule, place }, d);
        let http = self.http.iter().enumerate().flat_map(move |(i, r)| r.destination_fields().map(field("http", i)));
        let tcp = self.tcp.iter().enumerate().flat_map(move |(i, r)| r.destination_fields().map(field("tcp", i)));
        let tls = self.tls.iter().enumerate().flat_map(move |(i, r)| r.destination_fields().map(field("tls", i)));
        http.chain(tcp).chain(tls)
    }

    /// [`Self::destination_fields`] without the paths.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.destination_fields().map(|(_, destination)| destination)
    }

    /// Whether it has connection-level rules (tcp or tls), which shape the listeners.
    pub fn has_l4_rules(&self) -> bool {
        !self.tcp.is_empty() || !self.tls.is_empty()
    }
}

/// Whether an `exportTo` list shows a VirtualService to every namespace (Istio: unset, or `*` among the entries).
pub fn exported_everywhere(export_to: &[String]) -> bool {
    export_to.is_empty() || export_to.iter().any(|e| e == "*")
}

/// A destination and the share of matching traffic it receives.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    /// Relative weight. With a single destination it may be omitted; with several, the weights are
    /// proportions of their sum (usually written to sum to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Header changes for requests sent to this destination and their responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A Service (and optionally a subset and port of it) that requests are sent to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service name: short (this resource's namespace), `name.namespace`, or FQDN.
    pub host: String,
    /// A subset defined by a DestinationRule for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Service port; may be omitted when the Service has a single port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A Service port, by number.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    pub number: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_destination_is_named_by_its_field_path() {
        let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
            "hosts": ["a"],
            "http": [
                {"route": [{"destination": {"host": "a"}}]},
                {"route": [{"destination": {"host": "b"}}, {"destination": {"host": "c"}}], "mirror": {"host": "d"},
                 "mirrors": [{"destination": {"host": "e"}}]}
            ],
            "tcp": [{"route": [{"destination": {"host": "f"}}]}],
            "tls": [{"match": [{"sniHosts": ["g.example.com"]}], "route": [{"destination": {"host": "g"}}]}]
        }))
        .expect("a valid spec");
        let fields: Vec<(String, &str)> =
            spec.destination_fields().map(|(field, d)| (field.to_string(), d.host.as_str())).collect();
        let expected = [
            ("http[0].route[0].destination", "a"),
            ("http[1].route[0].destination", "b"),
            ("http[1].route[1].destination", "c"),
            ("http[1].mirror", "d"),
            ("http[1].mirrors[0].destination", "e"),
            ("tcp[0].route[0].destination", "f"),
            ("tls[0].route[0].destination", "g"),
        ];
        assert_eq!(fields, expected.map(|(path, host)| (path.to_string(), host)));
        assert_eq!(spec.destinations().count(), expected.len());
    }
}
