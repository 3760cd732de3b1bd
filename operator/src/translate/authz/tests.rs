//! Istio's documented AuthorizationPolicy examples, from YAML to the decision the proxy makes.

use std::collections::BTreeMap;

use http::HeaderMap;
use weft_xds::authz::{HttpRequest, InboundAuthz, Peer};

use super::inbound_authz;
use crate::index::authz::{AuthorizationPolicyModel, policies_for};
use crate::index::snapshot_of_yaml;

const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const OTHER: &str = "spiffe://cluster.local/ns/bar/sa/other";

/// The authorization of a pod labelled `app: httpbin` in `foo`, under these policies (each `namespace: spec`).
fn authz(policies: &[(&str, &str)]) -> InboundAuthz {
    let yaml: String = policies
        .iter()
        .enumerate()
        .map(|(i, (namespace, spec))| {
            format!(
                "apiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}, \
                 namespace: {namespace}}}\nspec: {spec}\n---\n"
            )
        })
        .collect();
    let snapshot = snapshot_of_yaml(&yaml);
    assert_eq!(snapshot.rejections.len(), 0, "{:?}", snapshot.rejections);
    let labels = BTreeMap::from([("app".to_string(), "httpbin".to_string())]);
    inbound_authz(&policies_for(&snapshot, "foo", &labels))
}

/// One call: an HTTP request (`Some((method, path))`) or a TCP connection, from `who` to `port`.
struct Call<'a> {
    who: Option<&'a str>,
    ip: &'a str,
    port: u16,
    http: Option<(&'a str, &'a str)>,
    headers: HeaderMap,
}

fn http(who: Option<&'static str>, method: &'static str, path: &'static str) -> Call<'static> {
    Call { who, ip: "10.0.0.5", port: 8000, http: Some((method, path)), headers: HeaderMap::new() }
}

fn tcp(who: Option<&'static str>, port: u16) -> Call<'static> {
    Call { who, ip: "10.0.0.5", port, http: None, headers: HeaderMap::new() }
}

fn allowed(authz: &InboundAuthz, call: &Call<'_>) -> bool {
    let peer = Peer { ip: call.ip.parse().unwrap(), principal: call.who, port: call.port };
    match call.http {
        Some((method, path)) => {
            let request = HttpRequest { method, path, authority: "HTTPBIN.foo:8000", headers: &call.headers };
            authz.http.decide(&peer, Some(&request)).decision.allowed
        }
        None => authz.tcp.decide(&peer, None).decision.allowed,
    }
}

#[test]
fn allow_nothing_deny_all_and_allow_all() {
    let nothing = authz(&[("foo", "{}")]);
    assert!(!allowed(&nothing, &http(Some(SLEEP), "GET", "/")));
    assert!(!allowed(&nothing, &tcp(Some(SLEEP), 9000)));
    let deny_all = authz(&[("foo", "{rules: [{}]}"), ("foo", "{action: DENY, rules: [{}]}")]);
    assert!(!allowed(&deny_all, &http(None, "GET", "/")));
    let allow_all = authz(&[("foo", "{rules: [{}]}")]);
    assert!(allowed(&allow_all, &http(None, "GET", "/")) && allowed(&allow_all, &tcp(None, 1)));
    assert!(authz(&[]).http.is_empty(), "no policy: nothing to enforce");
}

#[test]
fn deny_by_namespace() {
    let policy = authz(&[("foo", "{action: DENY, rules: [{from: [{source: {notNamespaces: [default]}}]}]}")]);
    assert!(allowed(&policy, &http(Some(SLEEP), "GET", "/")));
    assert!(!allowed(&policy, &http(Some(OTHER), "GET", "/")));
    assert!(!allowed(&policy, &http(None, "GET", "/")), "no identity is in no namespace");
}

#[test]
fn allow_by_principal_path_and_method() {
    let policy = authz(&[(
        "foo",
        "{selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: \
         [cluster.local/ns/default/sa/sleep]}}], to: [{operation: {methods: [GET], paths: [\"/info*\"]}}]}]}",
    )]);
    assert!(allowed(&policy, &http(Some(SLEEP), "GET", "/info/x?y=1")));
    assert!(!allowed(&policy, &http(Some(SLEEP), "POST", "/info/x")));
    assert!(!allowed(&policy, &http(Some(SLEEP), "GET", "/other")));
    assert!(!allowed(&policy, &http(Some(OTHER), "GET", "/info")));
    // The rule tests HTTP: as an ALLOW rule it never matches a TCP connection (Istio's TCP translation).
    assert!(!allowed(&policy, &tcp(Some(SLEEP), 8000)));
}

#[test]
fn port_only_rules_apply_to_tcp_and_http_alike() {
    let policy = authz(&[("foo", "{rules: [{to: [{operation: {ports: [\"9000\"]}}]}]}")]);
    assert!(allowed(&policy, &tcp(None, 9000)));
    assert!(!allowed(&policy, &tcp(None, 9001)));
    assert!(!allowed(&policy, &http(None, "GET", "/")), "port 8000");
}

#[test]
fn http_only_tests_on_a_tcp_connection_follow_istio() {
    // ALLOW: the rule with `methods` is left out for TCP, so port 9000 is not allowed by it.
    let allow = authz(&[("foo", "{rules: [{to: [{operation: {ports: [\"9000\"], methods: [GET]}}]}]}")]);
    assert!(!allowed(&allow, &tcp(None, 9000)));
    let mut get = http(None, "GET", "/");
    get.port = 9000;
    assert!(allowed(&allow, &get));
    // DENY: `methods` is dropped for TCP, so the rule denies every connection to port 9000.
    let deny = authz(&[("foo", "{action: DENY, rules: [{to: [{operation: {ports: [\"9000\"], methods: [GET]}}]}]}")]);
    assert!(!allowed(&deny, &tcp(None, 9000)));
    assert!(allowed(&deny, &tcp(None, 9001)));
    let mut post = http(None, "POST", "/");
    post.port = 9000;
    assert!(allowed(&deny, &post));
}

#[test]
fn not_forms_and_deny_over_allow() {
    let policy = authz(&[
        ("foo", "{rules: [{to: [{operation: {notPaths: [\"/admin*\"], notMethods: [DELETE]}}]}]}"),
        (
            "foo",
            "{action: DENY, rules: [{to: [{operation: {paths: [/healthz]}}], from: [{source: {notIpBlocks: [10.0.0.0/8]}}]}]}",
        ),
    ]);
    assert!(allowed(&policy, &http(None, "GET", "/a")));
    assert!(!allowed(&policy, &http(None, "GET", "/admin/users")));
    assert!(!allowed(&policy, &http(None, "DELETE", "/a")));
    assert!(allowed(&policy, &http(None, "GET", "/healthz")), "from inside 10.0.0.0/8");
    let mut outside = http(None, "GET", "/healthz");
    outside.ip = "192.168.1.1";
    assert!(!allowed(&policy, &outside), "DENY wins over the ALLOW that matches too");
}

#[test]
fn conditions_hosts_and_ip_blocks() {
    let policy = authz(&[(
        "foo",
        "{rules: [{to: [{operation: {hosts: [\"httpbin.foo*\"]}}], when: [{key: \"request.headers[version]\", \
         values: [v1, \"v2*\"]}, {key: source.ip, notValues: [10.0.0.6]}]}]}",
    )]);
    let mut v1 = http(None, "GET", "/");
    v1.headers.insert("version", "v1".parse().unwrap());
    assert!(allowed(&policy, &v1), "the host matches case-insensitively");
    let mut v22 = http(None, "GET", "/");
    v22.headers.insert("version", "v22".parse().unwrap());
    assert!(allowed(&policy, &v22));
    assert!(!allowed(&policy, &http(None, "GET", "/")), "no version header");
    let mut excluded = http(None, "GET", "/");
    excluded.headers.insert("version", "v1".parse().unwrap());
    excluded.ip = "10.0.0.6";
    assert!(!allowed(&policy, &excluded));
}

#[test]
fn policies_of_the_root_namespace_and_other_workloads() {
    let policy = authz(&[
        ("weft-system", "{action: DENY, rules: [{from: [{source: {namespaces: [bar]}}]}]}"),
        ("foo", "{selector: {matchLabels: {app: other}}}"),
    ]);
    assert!(allowed(&policy, &http(Some(SLEEP), "GET", "/")), "the ALLOW policy selects other pods");
    assert!(!allowed(&policy, &http(Some(OTHER), "GET", "/")), "the mesh-wide DENY applies");
}

#[test]
fn dry_run_and_audit_only_report() {
    let yaml_dry_run = "{action: DENY, rules: [{to: [{operation: {paths: [/secret]}}]}]}";
    let mut policy =
        authz(&[("foo", yaml_dry_run), ("foo", "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}")]);
    // Mark the DENY policy a dry run as its annotation would.
    policy.http.deny.dry_run = policy.http.deny.enforced.take();
    let peer = Peer { ip: "10.0.0.5".parse().unwrap(), principal: None, port: 8000 };
    let headers = HeaderMap::new();
    let secret = HttpRequest { method: "POST", path: "/secret", authority: "h", headers: &headers };
    let verdict = policy.http.decide(&peer, Some(&secret));
    assert!(verdict.decision.allowed);
    assert_eq!(verdict.dry_run.map(|d| d.allowed), Some(false));
    assert_eq!(verdict.audited.map(|r| &*r.policy), Some("foo/p1"));
}

#[test]
fn a_rule_that_skipped_validation_fails_closed() {
    let unchecked = |spec: &str| AuthorizationPolicyModel {
        namespace: "foo".into(),
        name: "unchecked".into(),
        generation: None,
        status: None,
        dry_run: false,
        spec: serde_saphyr::from_str(spec).unwrap(),
    };
    // Dropping the port that does not parse would allow every port; the rule allows nothing instead.
    let allow = unchecked("{rules: [{to: [{operation: {ports: [http]}}]}]}");
    let allow = inbound_authz(&[&allow]);
    assert!(!allowed(&allow, &tcp(Some(SLEEP), 9000)) && !allowed(&allow, &http(Some(SLEEP), "GET", "/")));
    // Reading `a*b` as any identity would be as wrong as ignoring it; the DENY rule denies everything.
    let deny = unchecked("{action: DENY, rules: [{from: [{source: {principals: [\"a*b\"]}}]}]}");
    let deny = inbound_authz(&[&deny]);
    assert!(!allowed(&deny, &http(Some(OTHER), "GET", "/")) && !allowed(&deny, &tcp(None, 9000)));
    // An unknown `when` key fails closed the same way.
    let when = unchecked("{action: DENY, rules: [{when: [{key: \"request.auth.claims[iss]\", values: [x]}]}]}");
    assert!(!allowed(&inbound_authz(&[&when]), &http(Some(SLEEP), "GET", "/")));
}
