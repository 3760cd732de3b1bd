//! The routing decision in both modes: explicit (authority picks the port) and transparent (original
//! destination picks the port; unclaimed hosts pass through).

use std::collections::BTreeMap;

use super::*;
use crate::config::{ListenerConfig, PathMatch, RouteAction, RouteEntry, RouteTable, VirtualHost, WeightedTarget};
use weft_xds::detection::Detection;

const CLUSTER: &str = "outbound|8080||echo.default.svc.cluster.local";

fn config() -> ProxyConfig {
    let action = RouteAction::to_targets(vec![WeightedTarget::new(CLUSTER, 1)]);
    let route = RouteEntry::forward("api", PathMatch::Prefix("/api".into()), action);
    let host =
        VirtualHost { name: "echo:8080".into(), domains: vec!["echo".into(), "echo:8080".into()], routes: vec![route] };
    let table = RouteTable::new("8080", vec![host], false);
    let listener = ListenerConfig {
        name: "0.0.0.0_8080".into(),
        port: 8080,
        route_config: "8080".into(),
        l4_routes: Vec::new(),
        detection: Detection::Off,
    };
    ProxyConfig {
        listeners: BTreeMap::from([(listener.name.clone(), listener)]),
        routes: BTreeMap::from([("8080".to_string(), table)]),
        ..ProxyConfig::default()
    }
}

/// The decision, with a route shown by its name.
fn decide(host: Option<&str>, path: &str, destination: Destination) -> Result<Decision, LocalReply> {
    let config = config();
    let request = Request::get(path).body(()).unwrap();
    route(&request, host, &config, &Labels::new(), destination, false).map(Decision::of)
}

#[derive(Debug, PartialEq)]
enum Decision {
    Route(String),
    Original(std::net::SocketAddr),
    Ask(String),
}

impl Decision {
    fn of(upstream: Upstream<'_>) -> Self {
        match upstream {
            Upstream::Route(r) => Self::Route(r.name.clone()),
            Upstream::Original(a) => Self::Original(a),
            Upstream::Ask(n) => Self::Ask(n),
        }
    }
}

fn original(address: &str) -> Destination {
    Destination::Original(address.parse().unwrap())
}

#[test]
fn explicit_mode_routes_by_the_authority_port() {
    let cluster = Ok(Decision::Route("api".into()));
    let explicit = Destination::Explicit { default_port: 80 };
    assert_eq!(decide(Some("echo:8080"), "/api/x", explicit), cluster);
    assert_eq!(decide(Some("echo"), "/api/x", Destination::Explicit { default_port: 8080 }), cluster);
    assert_eq!(decide(Some("echo"), "/api/x", explicit), Err(LocalReply::NoRoute), "port 80 has no routes");
    assert_eq!(decide(None, "/api/x", explicit), Err(LocalReply::MissingHost));
}

#[test]
fn transparent_mode_routes_by_the_original_port_and_passes_the_rest_through() {
    let to = "10.213.0.3:8080".parse().unwrap();
    let cluster = Ok(Decision::Route("api".into()));
    assert_eq!(decide(Some("echo"), "/api/x", original("10.213.0.3:8080")), cluster);
    assert_eq!(decide(Some("Echo:8080"), "/api/x", original("10.213.0.3:8080")), cluster);
    assert_eq!(
        decide(Some("10.213.0.3:8080"), "/api/x", original("10.213.0.3:8080")),
        Ok(Decision::Original(to)),
        "no virtual host claims the IP: passthrough"
    );
    assert_eq!(decide(None, "/", original("10.213.0.3:8080")), Ok(Decision::Original(to)));
    let other = "10.213.0.3:9999".parse().unwrap();
    assert_eq!(decide(Some("echo"), "/api", original("10.213.0.3:9999")), Ok(Decision::Original(other)));
    assert_eq!(
        decide(Some("echo"), "/other", original("10.213.0.3:8080")),
        Err(LocalReply::NoRoute),
        "a claimed host whose rules match nothing gets 404, as in Istio"
    );
}

#[test]
fn a_host_without_config_is_asked_for_once_then_routed_as_unknown() {
    let mut config = config();
    if let Some(table) = config.routes.get_mut("8080") {
        table.on_demand = true;
    }
    let request = Request::get("/api").body(()).unwrap();
    let to = original("10.213.0.3:8080");
    let decide = |host, ask| route(&request, Some(host), &config, &Labels::new(), to, ask).map(Decision::of);
    assert_eq!(decide("ledger.bank", true), Ok(Decision::Ask("8080/ledger.bank".into())), "asked for first");
    let unknown = decide("ledger.bank", false);
    assert_eq!(unknown, Ok(Decision::Original("10.213.0.3:8080".parse().unwrap())), "then an unknown host");
    assert_eq!(decide("echo", true), Ok(Decision::Route("api".into())), "a host it holds is not asked for");
}
