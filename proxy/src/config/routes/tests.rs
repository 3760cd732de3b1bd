//! Route matching and weighted picks.

use super::*;

fn action(weights: &[(&str, u32)]) -> RouteAction {
    RouteAction::to_targets(weights.iter().map(|(c, w)| WeightedTarget::new(*c, *w)).collect())
}

fn picked(a: &RouteAction, roll: u64) -> Option<&str> {
    a.pick(roll).map(|t| t.cluster.as_str())
}

#[test]
fn weights_split_the_roll_space_in_proportion() {
    let a = action(&[("v1", 90), ("v2", 10)]);
    let to_v2 = (0..1000u64).filter(|r| picked(&a, *r) == Some("v2")).count();
    assert_eq!(to_v2, 100);
    assert_eq!(picked(&action(&[("v1", 0), ("v2", 100)]), 12345), Some("v2"));
    assert_eq!(picked(&action(&[("v1", 0), ("v2", 0)]), 1), None);
    assert_eq!(picked(&action(&[("only", 0)]), 7), Some("only"));
}

#[test]
fn the_last_target_of_a_maximal_total_is_reachable() {
    let max = i32::MAX as u32;
    let a = action(&[("a", max), ("b", max), ("c", 1)]);
    assert_eq!(picked(&a, u64::from(u32::MAX) - 1), Some("c"), "the last point of the roll space");
    assert_eq!(picked(&a, u64::from(max)), Some("b"));
}

static NO_LABELS: Labels = Labels::new();

fn request<'a>(host: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
    RequestInfo { host, path, query: None, method: "GET", scheme: "http", headers, source_labels: &NO_LABELS }
}

fn header(name: &str, matcher: StringMatcher) -> HeaderMatch {
    HeaderMatch { name: name.into(), matcher, invert: false }
}

fn regex(pattern: &str) -> RegexEq {
    RegexEq(regex::Regex::new(pattern).unwrap())
}

fn route(name: &str, path: PathMatch, headers: Vec<HeaderMatch>) -> RouteEntry {
    RouteEntry { headers, ..RouteEntry::forward(name, path, action(&[(name, 1)])) }
}

#[test]
fn first_matching_route_of_the_matching_host_wins() {
    let table = RouteTable::new(
        "80",
        vec![VirtualHost {
            name: "reviews".into(),
            domains: vec!["reviews".into(), "reviews:80".into()],
            routes: vec![
                route(
                    "debug",
                    PathMatch::Prefix("/".into()),
                    vec![header("x-debug", StringMatcher::Exact("1".into()))],
                ),
                route("exact", PathMatch::Exact("/health".into()), vec![]),
                route("regex", PathMatch::Regex(regex("^(?:/v[0-9]+/.*)$")), vec![]),
            ],
        }],
        false,
    );
    let mut debug = HeaderMap::new();
    debug.insert("x-debug", "1".parse().unwrap());
    let none = HeaderMap::new();
    assert_eq!(table.route(&request("Reviews:80", "/x", &debug)).map(|r| r.name.as_str()), Some("debug"));
    assert_eq!(table.route(&request("reviews", "/health", &none)).map(|r| r.name.as_str()), Some("exact"));
    assert_eq!(table.route(&request("reviews", "/v2/items", &none)).map(|r| r.name.as_str()), Some("regex"));
    assert!(table.route(&request("reviews", "/other", &none)).is_none(), "no route: 404");
    assert!(table.route(&request("ratings", "/health", &none)).is_none(), "unknown host: 404");
}

#[test]
fn a_services_cluster_ip_finds_its_virtual_host_and_no_other_address_does() {
    let host = |name: &str, domains: &[&str]| VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes: vec![],
    };
    let table = RouteTable::new(
        "3306",
        vec![
            host("mysql.db.svc.cluster.local:3306", &["mysql.db", "10.96.0.20", "10.96.0.20:3306"]),
            host("v6.db.svc.cluster.local:3306", &["[fd00::31]"]),
            host("catch-all", &["*"]),
        ],
        false,
    );
    let at = |ip: &str| table.service_at(ip.parse().unwrap()).map(|h| h.name.as_str());
    assert_eq!(at("10.96.0.20"), Some("mysql.db.svc.cluster.local:3306"));
    assert_eq!(at("fd00::31"), Some("v6.db.svc.cluster.local:3306"));
    assert_eq!(at("10.96.0.21"), None, "a `*` host claims names, not a Service's address");
}

#[test]
fn inverted_header_matches_and_pseudo_headers() {
    let mut canary = HeaderMap::new();
    canary.insert("x-canary", "yes".parse().unwrap());
    let none = HeaderMap::new();
    let without = route(
        "without",
        PathMatch::Prefix("/".into()),
        vec![HeaderMatch { name: "x-canary".into(), matcher: StringMatcher::Present, invert: true }],
    );
    assert!(without.matches(&request("r", "/", &none)), "absent header: withoutHeaders {{}} matches");
    assert!(!without.matches(&request("r", "/", &canary)));
    let authority = route(
        "a",
        PathMatch::Prefix("/".into()),
        vec![
            header(":authority", StringMatcher::Prefix("reviews".into())),
            header(":scheme", StringMatcher::Exact("http".into())),
        ],
    );
    assert!(authority.matches(&request("reviews:9080", "/", &none)));
    assert!(!authority.matches(&request("ratings", "/", &none)));
}

#[test]
fn query_parameters_match_by_their_first_value() {
    let mut r = route("q", PathMatch::Prefix("/".into()), vec![]);
    r.query = vec![
        QueryMatch { name: "user".into(), matcher: StringMatcher::Exact("jason".into()) },
        QueryMatch { name: "debug".into(), matcher: StringMatcher::Exact(String::new()) },
    ];
    let none = HeaderMap::new();
    let with = |query| RequestInfo { query: Some(query), ..request("r", "/", &none) };
    assert!(r.matches(&with("user=jason&debug")));
    assert!(r.matches(&with("debug=&user=jason")));
    assert!(!r.matches(&with("user=jason")), "debug missing");
    assert!(!r.matches(&with("user=jasonx&debug")));
    assert!(!r.matches(&request("r", "/", &none)), "no query string");
}

#[test]
fn source_labels_match_a_proxy_carrying_all_of_them() {
    let mut r = route("s", PathMatch::Prefix("/".into()), vec![]);
    r.source_labels = Labels::from([("app".into(), "web".into()), ("version".into(), "v2".into())]);
    let none = HeaderMap::new();
    let from = |labels: &[(&str, &str)]| labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Labels>();
    let matches = |labels: &Labels| r.matches(&RequestInfo { source_labels: labels, ..request("r", "/", &none) });
    assert!(matches(&from(&[("app", "web"), ("version", "v2"), ("team", "a")])), "extra labels do not matter");
    assert!(!matches(&from(&[("app", "web"), ("version", "v1")])), "one label differs");
    assert!(!matches(&from(&[("app", "web")])), "one label missing");
    assert!(!matches(&Labels::new()), "a proxy without labels");
    assert!(route("s", PathMatch::Prefix("/".into()), vec![]).matches(&request("r", "/", &none)), "no sourceLabels");
}

#[test]
fn paths_can_ignore_case() {
    let mut r = route("p", PathMatch::Prefix("/API/v1".into()), vec![]);
    let none = HeaderMap::new();
    assert!(!r.matches(&request("r", "/api/V1/items", &none)));
    r.ignore_case = true;
    assert!(r.matches(&request("r", "/api/V1/items", &none)));
    assert!(!r.matches(&request("r", "/ap", &none)), "shorter than the prefix");
    assert!(!r.matches(&request("r", "/é", &none)), "a multi-byte character is not split");
    r.path = PathMatch::Exact("/Health".into());
    assert!(r.matches(&request("r", "/HEALTH", &none)));
}
