//! The contract between translation and the proxy: everything the operator translates from its golden test data
//! (every VirtualService feature Weft supports) is accepted by the proxy's config conversion, and means what the
//! YAML says. A field written by one side and refused by the other would NACK whole route tables in production.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use weft_operator::index::Index;
use weft_operator::source::Event;
use weft_operator::source::file::parse_file;
use weft_operator::translate::translate;
use weft_proxy::config::policy::{AbortWith, Fraction, GrpcTimeout};
use weft_proxy::config::{Action, ClusterConfig, ListenerConfig, RouteEntry, RouteTable};
use weft_xds::ProxyNode;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/testdata/translate").join(name)
}

/// The resources the operator translates out of `file` for a proxy in `namespace`.
fn resources(file: &str, namespace: &str) -> weft_operator::translate::ProxyResources {
    let path = testdata(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut index = Index::default();
    for resource in parse_file(&path, &text).resources {
        index.apply(Event::Applied(resource));
    }
    let node = ProxyNode { pod_name: "client".into(), namespace: namespace.into(), ip: None };
    translate(&index.snapshot(), &node)
}

/// The route tables a proxy in `namespace` builds from what the operator translates out of `file`.
fn tables(file: &str, namespace: &str) -> Vec<RouteTable> {
    let resources = resources(file, namespace);
    for cluster in &resources.clusters {
        ClusterConfig::try_from(cluster).unwrap();
    }
    for listener in &resources.listeners {
        ListenerConfig::try_from(listener).unwrap();
    }
    resources.routes.iter().map(|r| RouteTable::try_from(r).unwrap_or_else(|e| panic!("{file}: {e}"))).collect()
}

fn route<'a>(tables: &'a [RouteTable], port: &str, name: &str) -> &'a RouteEntry {
    let table = tables.iter().find(|t| t.name == port).unwrap();
    table.virtual_hosts().iter().flat_map(|h| &h.routes).find(|r| r.name == name).unwrap()
}

#[test]
fn every_golden_input_is_accepted_by_the_proxy() {
    for file in ["canary.yaml", "multiport.yaml", "traffic.yaml", "l4.yaml", "policies.yaml"] {
        assert!(!tables(file, "shop").is_empty(), "{file}");
    }
}

#[test]
fn the_traffic_rules_mean_on_the_proxy_what_the_yaml_says() {
    let tables = tables("traffic.yaml", "shop");
    let tested = route(&tables, "9080", "tested");
    let Action::Forward(action) = &tested.action else { panic!("{:?}", tested.action) };
    let retry = action.retry.as_ref().unwrap();
    assert_eq!((retry.retries, retry.status_codes.as_slice(), retry.other_hosts), (3, &[429][..], true));
    assert_eq!(action.grpc_timeout, GrpcTimeout::Honoured { max: action.timeout });
    assert_eq!(action.mirrors[0].share, Fraction { numerator: 125_000, denominator: 1_000_000 });
    assert_eq!(action.rewrite.authority.as_deref(), Some("reviews-v2.shop"));
    assert_eq!(action.targets[0].request_headers.set[0].0, "x-subset");
    let fault = tested.fault.as_ref().unwrap();
    assert_eq!(fault.abort.as_ref().unwrap().share, Fraction { numerator: 100_000, denominator: 1_000_000 });
    assert!(tested.ignore_case && tested.query.len() == 2);
    assert_eq!(tested.headers.iter().filter(|h| h.invert).count(), 2, "withoutHeaders");
    let regex = route(&tables, "9080", "regex-rewrite");
    let Action::Forward(regex_action) = &regex.action else { panic!() };
    assert!(regex_action.retry.is_none(), "attempts: 0 disables retries");
    assert_eq!(regex.fault.as_ref().unwrap().abort.as_ref().unwrap().with, AbortWith::Grpc(14));
    assert!(matches!(route(&tables, "9080", "old-api").action, Action::Redirect(_)));
    assert!(matches!(route(&tables, "9080", "health").action, Action::Respond(_)));
    assert!(route(&tables, "9080", "rest").cors.is_some());
    let Action::Forward(rest) = &route(&tables, "9080", "rest").action else { panic!() };
    let rest_retry = rest.retry.as_ref().unwrap();
    assert_eq!(rest_retry.retries, 5, "Istio's default conditions with the given attempts");
    assert!(!rest_retry.other_hosts, "retryIgnorePreviousHosts: false");
    let ms = std::time::Duration::from_millis;
    assert_eq!((rest_retry.backoff_base, rest_retry.backoff_max), (ms(100), ms(1000)), "backoff, at most ten times");
}

#[test]
fn a_tcp_canary_reaches_the_listener_of_its_port() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  clusterIP: 10.96.77.10\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080, targetPort: http}]\n---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  tcp:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 80\n    - destination: {host: reviews, subset: v2}\n      weight: 20\n";
    let path = Path::new("e2e.yaml");
    let mut index = Index::default();
    let parsed = parse_file(path, yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    for resource in parsed.resources {
        index.apply(Event::Applied(resource));
    }
    let node = ProxyNode { pod_name: "client".into(), namespace: "default".into(), ip: None };
    let resources = translate(&index.snapshot(), &node);
    let listener = resources.listeners.iter().find(|l| l.name == "0.0.0.0_9080").unwrap();
    let converted = ListenerConfig::try_from(listener).unwrap();
    let names: Vec<&str> = converted.l4_routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["tcp|default/reviews|0|0"]);
}

#[test]
fn destination_rule_policies_mean_on_the_proxy_what_the_yaml_says() {
    let clusters: Vec<ClusterConfig> =
        resources("policies.yaml", "default").clusters.iter().map(|c| ClusterConfig::try_from(c).unwrap()).collect();
    let whole = clusters.iter().find(|c| c.name == "outbound|9080||ratings.default.svc.cluster.local").unwrap();
    assert_eq!(whole.lb, weft_xds::lb::LbAlgorithm::LeastRequest, "LEAST_CONN is LEAST_REQUEST");
    assert_eq!(whole.connect_timeout, std::time::Duration::from_millis(250));
    assert_eq!((whole.limits.max_connections, whole.limits.max_pending_requests), (100, 10));
    assert_eq!((whole.limits.max_requests, whole.limits.max_retries), (200, 4));
    let budget = whole.retry_budget.unwrap();
    assert_eq!((budget.percent, budget.min_concurrency), (10.0, 5));
    let outlier = whole.outlier.unwrap();
    assert_eq!(
        (outlier.consecutive_5xx, outlier.consecutive_gateway, outlier.consecutive_local_origin),
        (Some(7), Some(3), Some(2))
    );
    assert_eq!((outlier.max_ejection_percent, whole.panic_threshold), (50, 25.0));
    assert_eq!(whole.connections.idle_timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(whole.connections.max_requests, Some(100));
    assert_eq!(whole.connections.protocol, weft_proxy::config::cluster::UpstreamProtocol::Http2, "h2UpgradePolicy");
    assert_eq!(whole.connections.max_streams, Some(50), "maxConcurrentStreams");
    assert_eq!(whole.connections.max_duration, Some(std::time::Duration::from_secs(600)));
    let keepalive = whole.connections.keepalive.unwrap();
    assert_eq!((keepalive.probes, keepalive.time), (Some(3), Some(std::time::Duration::from_secs(10))));
    let subset = clusters.iter().find(|c| c.name == "outbound|9080|v1|ratings.default.svc.cluster.local").unwrap();
    assert_eq!(subset.limits.max_requests, 5, "the subset's pool");
    let warmup = weft_proxy::config::cluster::SlowStart {
        window: std::time::Duration::from_secs(60),
        aggression: 2.0,
        min_weight_percent: 20.0,
    };
    assert_eq!((subset.lb, subset.slow_start), (weft_xds::lb::LbAlgorithm::RoundRobin, Some(warmup)));
    assert_eq!(whole.slow_start, None);
    assert_eq!(subset.outlier, whole.outlier, "the rule's outlier detection, merged in as Istio does");
    let sticky = clusters.iter().find(|c| c.name == "outbound|9080|sticky|ratings.default.svc.cluster.local").unwrap();
    assert_eq!((sticky.lb, sticky.hash_size), (weft_xds::lb::LbAlgorithm::Maglev, 251), "the subset's Maglev table");
    let plain = resources("canary.yaml", "default")
        .clusters
        .iter()
        .map(|c| ClusterConfig::try_from(c).unwrap())
        .next()
        .unwrap();
    assert_eq!(plain.limits.max_requests, u32::MAX, "no limit unless a rule sets one (Istio), not Envoy's 1024");
    assert!(plain.retry_budget.is_some(), "Weft's default retry budget");
    assert!(plain.outlier.is_none());
    let admin = clusters.iter().find(|c| c.name == "outbound|9090||ratings.default.svc.cluster.local").unwrap();
    assert_eq!((admin.lb, admin.hash_size), (weft_xds::lb::LbAlgorithm::RingHash, 4096), "the port's balancing");
    assert_eq!(admin.limits.max_requests, 2, "the port's pool");
    let tables = tables("policies.yaml", "default");
    let route = route(&tables, "9090", "default");
    let Action::Forward(action) = &route.action else { panic!("{:?}", route.action) };
    assert_eq!(
        action.hash_policy,
        [weft_proxy::config::policy::HashPolicy::Cookie(weft_proxy::config::policy::CookiePolicy {
            name: "session".into(),
            ttl: Some(std::time::Duration::from_secs(1800)),
            path: "/".into(),
        })]
    );
    assert_eq!(admin.outlier, whole.outlier, "the rest from the rule");
}

#[test]
fn a_tcp_route_idles_out_as_its_destinations_rules_say() {
    let resources = resources("l4.yaml", "shop");
    let listener = resources.listeners.iter().find(|l| l.name == "0.0.0.0_3306").unwrap();
    let routes = ListenerConfig::try_from(listener).unwrap().l4_routes;
    let canary = routes.iter().find(|r| r.name == "tcp|db/mysql|0|0").unwrap();
    assert_eq!(canary.idle_timeout, Some(std::time::Duration::from_secs(1800)), "the longer of its subsets'");
}
