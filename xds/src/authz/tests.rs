use std::net::IpAddr;

use http::HeaderMap;

use super::*;

fn rule(policy: &str, permissions: Vec<Permission>, principals: Vec<Principal>) -> NamedRule {
    NamedRule { policy: policy.into(), index: 0, permissions, principals }
}

fn exact(value: &str) -> StringMatch {
    StringMatch::new(MatchKind::Exact, value)
}

fn peer(ip: &str, principal: Option<&'static str>, port: u16) -> Peer<'static> {
    Peer { ip: ip.parse().unwrap(), principal, port }
}

fn get<'a>(path: &'a str, headers: &'a HeaderMap) -> HttpRequest<'a> {
    HttpRequest { method: "GET", path, authority: "Shop.example:80", headers }
}

#[test]
fn deny_wins_over_allow_and_an_allow_layer_denies_what_it_does_not_match() {
    let admin = rule(
        "ns/deny-admin",
        vec![Permission::Path(StringMatch::new(MatchKind::Prefix, "/admin"))],
        vec![Principal::Any],
    );
    let reader = rule(
        "ns/allow-reader",
        vec![Permission::Any],
        vec![Principal::Authenticated(Some(exact("spiffe://td/ns/ns/sa/reader")))],
    );
    let authz = Authorization {
        deny: Layer { enforced: Some(vec![admin]), dry_run: None },
        allow: Layer { enforced: Some(vec![reader]), dry_run: None },
        audit: Layer::default(),
    };
    let headers = HeaderMap::new();
    let reader_peer = peer("10.0.0.1", Some("spiffe://td/ns/ns/sa/reader"), 80);
    let decided = authz.decide(&reader_peer, Some(&get("/items?page=1", &headers))).decision;
    assert!(decided.allowed);
    assert_eq!(decided.by.map(|r| &*r.policy), Some("ns/allow-reader"));
    let denied = authz.decide(&reader_peer, Some(&get("/admin/users", &headers))).decision;
    assert_eq!((denied.allowed, denied.action), (false, Some(Action::Deny)));
    let stranger = authz.decide(&peer("10.0.0.2", None, 80), Some(&get("/items", &headers))).decision;
    assert_eq!((stranger.allowed, stranger.by, stranger.action), (false, None, Some(Action::Allow)));
    assert!(Authorization::default().decide(&reader_peer, None).decision.allowed);
}

#[test]
fn an_allow_layer_without_rules_allows_nothing_and_dry_runs_only_report() {
    let allow_nothing =
        Authorization { allow: Layer { enforced: None, dry_run: Some(Vec::new()) }, ..Default::default() };
    let verdict = allow_nothing.decide(&peer("127.0.0.1", None, 80), None);
    assert!(verdict.decision.allowed, "a dry run enforces nothing");
    assert_eq!(verdict.dry_run.map(|d| d.allowed), Some(false));
    let enforced = Authorization { allow: Layer { enforced: Some(Vec::new()), dry_run: None }, ..Default::default() };
    assert!(!enforced.decide(&peer("127.0.0.1", None, 80), None).decision.allowed);
}

#[test]
fn http_tests_never_match_a_tcp_connection_and_headers_compare_as_told() {
    let by_method = rule(
        "ns/p",
        vec![Permission::Header(HeaderMatch { name: ":method".into(), value: Some(exact("GET")) })],
        vec![Principal::Any],
    );
    let authz = Authorization { audit: Layer { enforced: Some(vec![by_method]), dry_run: None }, ..Default::default() };
    let headers = HeaderMap::new();
    let connection = peer("127.0.0.1", None, 80);
    assert!(authz.decide(&connection, Some(&get("/", &headers))).audited.is_some());
    assert!(authz.decide(&connection, None).audited.is_none());
    let host = HeaderMatch {
        name: ":authority".into(),
        value: Some(StringMatch { kind: MatchKind::Prefix, value: "shop.EXAMPLE".into(), ignore_case: true }),
    };
    assert!(host.matches(&get("/", &headers)));
    let mut with_user = HeaderMap::new();
    with_user.insert("x-user", "alice".parse().unwrap());
    let user = HeaderMatch { name: "x-user".into(), value: None };
    assert!(user.matches(&get("/", &with_user)) && !user.matches(&get("/", &headers)));
}

#[test]
fn a_repeated_header_is_tested_joined_and_bytes_that_are_not_text_still_count_as_present() {
    let mut headers = HeaderMap::new();
    headers.append("x-role", "guest".parse().unwrap());
    headers.append("x-role", "admin".parse().unwrap());
    let admin_anywhere =
        HeaderMatch { name: "x-role".into(), value: Some(StringMatch::new(MatchKind::Contains, "admin")) };
    assert!(admin_anywhere.matches(&get("/", &headers)), "a second value hides nothing from a DENY");
    let joined = HeaderMatch { name: "x-role".into(), value: Some(exact("guest,admin")) };
    assert!(joined.matches(&get("/", &headers)), "Envoy joins repeated values with ','");
    let mut binary = HeaderMap::new();
    binary.insert("x-token", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let present = HeaderMatch { name: "x-token".into(), value: None };
    assert!(present.matches(&get("/", &binary)), "a value with non-ASCII bytes is still present");
    let prefix = HeaderMatch { name: "x-token".into(), value: Some(StringMatch::new(MatchKind::Prefix, "caf")) };
    assert!(prefix.matches(&get("/", &binary)));
}

#[test]
fn address_ranges_and_string_matches() {
    let net = Cidr { address: "10.1.0.0".parse().unwrap(), prefix_len: 17 };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(net.contains(ip("10.1.127.3")) && !net.contains(ip("10.1.128.1")) && !net.contains(ip("10.0.0.1")));
    assert!(net.contains(ip("::ffff:10.1.0.9")), "an IPv4-mapped address is its IPv4 address");
    assert!(Cidr { address: ip("::1"), prefix_len: 128 }.contains(ip("::1")));
    assert!(Cidr { address: ip("0.0.0.0"), prefix_len: 0 }.contains(ip("192.168.1.1")));
    let contains = StringMatch::new(MatchKind::Contains, "/ns/shop/");
    assert!(contains.matches("spiffe://td/ns/shop/sa/a") && !contains.matches("spiffe://td/ns/shopping/sa/a"));
    let suffix = StringMatch { kind: MatchKind::Suffix, value: ".HTML".into(), ignore_case: true };
    assert!(suffix.matches("/index.html") && !suffix.matches("html"));
}

#[test]
fn rbac_filters_read_back_as_built() {
    let tree = rule(
        "shop/mixed",
        vec![Permission::And(vec![
            Permission::Or(vec![Permission::DestinationPort(8080), Permission::Path(exact("/a"))]),
            Permission::Not(Box::new(Permission::Header(HeaderMatch { name: "x-debug".into(), value: None }))),
        ])],
        vec![Principal::And(vec![
            Principal::Authenticated(Some(StringMatch::new(MatchKind::Contains, "/ns/shop/"))),
            Principal::Not(Box::new(Principal::RemoteIp(Cidr { address: "10.0.0.0".parse().unwrap(), prefix_len: 8 }))),
            Principal::Authenticated(None),
        ])],
    );
    let mut second = tree.clone();
    second.index = 1;
    let authz = Authorization {
        deny: Layer { enforced: Some(vec![tree.clone()]), dry_run: Some(vec![second.clone()]) },
        allow: Layer { enforced: Some(Vec::new()), dry_run: None },
        audit: Layer { enforced: Some(vec![tree, second]), dry_run: None },
    };
    let network = rbac::network_filters(&authz);
    assert_eq!(network.len(), 3);
    let configs: Vec<_> = network
        .iter()
        .map(|f| match &f.config_type {
            Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) => {
                crate::unpack::<envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac>(any).unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let parsed = rbac::parse(configs.iter().map(|c| (c.rules.as_ref(), c.shadow_rules.as_ref())));
    assert_eq!(parsed, Ok(authz.clone()));
    assert_eq!(rbac::http_filters(&authz).len(), 3);
    let mut twice = configs.clone();
    twice.push(configs[0].clone());
    let refused = rbac::parse(twice.iter().map(|c| (c.rules.as_ref(), c.shadow_rules.as_ref())));
    assert!(refused.unwrap_err().contains("more than one RBAC filter"));
}
