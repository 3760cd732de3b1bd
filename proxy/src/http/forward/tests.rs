//! The routing decision in both modes: explicit (authority picks the port) and transparent (original
//! destination picks the port; unclaimed hosts pass through).

use std::collections::BTreeMap;

use super::*;
use crate::config::{
    ListenerConfig, PathMatch, ProxyConfig, RouteAction, RouteEntry, RouteTable, VirtualHost, WeightedTarget,
};
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

fn runtime(config: ProxyConfig) -> Runtime {
    Runtime { config: Arc::new(config), ..Runtime::default() }
}

/// The decision, with a route shown by its name.
fn decide(host: Option<&str>, path: &str, destination: Destination) -> Result<Decision, LocalReply> {
    let runtime = runtime(config());
    let request = Request::get(path).body(()).unwrap();
    route(&request, host, &runtime, &Labels::new(), destination, false).map(Decision::of)
}

#[derive(Debug, PartialEq)]
enum Decision {
    Route(String),
    Original(std::net::SocketAddr),
    Ask(String),
    AskAddress(String),
}

impl Decision {
    fn of(upstream: Upstream<'_>) -> Self {
        match upstream {
            Upstream::Route(r) => Self::Route(r.name.clone()),
            Upstream::Original(a) => Self::Original(a),
            Upstream::Ask { name, address: false } => Self::Ask(name),
            Upstream::Ask { name, address: true } => Self::AskAddress(name),
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

fn on_demand_config() -> ProxyConfig {
    let mut config = config();
    if let Some(table) = config.routes.get_mut("8080") {
        table.on_demand = true;
    }
    config
}

#[test]
fn a_host_without_config_is_asked_for_once_then_routed_as_unknown() {
    let runtime = runtime(on_demand_config());
    let request = Request::get("/api").body(()).unwrap();
    let to = original("10.213.0.3:8080");
    let decide = |host, ask| route(&request, Some(host), &runtime, &Labels::new(), to, ask).map(Decision::of);
    assert_eq!(decide("ledger.bank", true), Ok(Decision::Ask("8080/ledger.bank".into())), "asked for first");
    let unknown = decide("ledger.bank", false);
    assert_eq!(unknown, Ok(Decision::Original("10.213.0.3:8080".parse().unwrap())), "then an unknown host");
    assert_eq!(decide("echo", true), Ok(Decision::Route("api".into())), "a host it holds is not asked for");
}

/// A request whose `Host` is the cluster IP of a Service the proxy does not hold is asked for by address, as TCP
/// sent there is, and routed by the Service's routes once answered; a pod's address goes to that pod.
#[test]
fn an_address_without_config_is_asked_for_by_address_then_routed_by_its_service() {
    let mut config = on_demand_config();
    let request = Request::get("/api").body(()).unwrap();
    let decide = |config: &ProxyConfig, host: &str, ask: bool| {
        let runtime = runtime(config.clone());
        let to = original(&format!("{}:8080", host.trim_end_matches(":8080")));
        route(&request, Some(host), &runtime, &Labels::new(), to, ask).map(Decision::of)
    };
    let ledger_ip = Ok(Decision::AskAddress("8080/10.96.0.9".into()));
    assert_eq!(decide(&config, "10.96.0.9", true), ledger_ip, "asked for by address");
    assert_eq!(decide(&config, "10.96.0.9:8080", true), ledger_ip, "with the port too");
    let public = "93.184.216.34:8080".parse().unwrap();
    assert_eq!(decide(&config, "93.184.216.34", true), Ok(Decision::Original(public)), "the internet is not asked for");
    let unanswered = Ok(Decision::Original("10.96.0.9:8080".parse().unwrap()));
    assert_eq!(decide(&config, "10.96.0.9", false), unanswered, "asked once: then as sent");

    let action = RouteAction::to_targets(vec![WeightedTarget::new("outbound|8080||ledger.bank.svc.cluster.local", 1)]);
    let routes = vec![RouteEntry::forward("ledger", PathMatch::Prefix("/".into()), action)];
    let domains = vec!["ledger.bank.svc.cluster.local".to_string(), "10.96.0.9".to_string()];
    let ledger = VirtualHost { name: "8080/10.96.0.9".into(), domains: domains.clone(), routes: routes.clone() };
    config.on_demand.insert("8080/10.96.0.9".into(), Some(ledger));
    assert_eq!(decide(&config, "10.96.0.9:8080", true), Ok(Decision::Route("ledger".into())), "its Service's routes");
    let pod = VirtualHost { name: "8080/10.1.0.7".into(), domains, routes };
    config.on_demand.insert("8080/10.1.0.7".into(), Some(pod));
    let to_pod = Ok(Decision::Original("10.1.0.7:8080".parse().unwrap()));
    assert_eq!(decide(&config, "10.1.0.7", true), to_pod, "a pod's address: to that pod, not balanced");

    let mut holding = runtime(on_demand_config());
    holding.endpoint_clusters.insert("10.1.0.8:8080".parse().unwrap(), Arc::from(CLUSTER));
    let to = original("10.1.0.8:8080");
    let decided = route(&request, Some("10.1.0.8"), &holding, &Labels::new(), to, true).map(Decision::of);
    assert_eq!(decided, Ok(Decision::Original("10.1.0.8:8080".parse().unwrap())), "a held pod is not asked for");
}
