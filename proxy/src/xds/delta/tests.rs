//! The delta client: subscriptions that follow clusters and listeners, resources applied one by one, NACKs that
//! change nothing, and reconnects that tell the server what is held.

use envoy_types::pb::envoy::service::discovery::v3::Resource;
use envoy_types::pb::google::protobuf::Any;

use super::*;
use crate::xds::testing::{cluster, listener, routes};

fn response(kind: ResourceType, nonce: &str, resources: &[(&str, Any)], removed: &[&str]) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: kind.type_url().into(),
        nonce: nonce.into(),
        resources: resources
            .iter()
            .map(|(name, any)| Resource {
                name: name.to_string(),
                version: format!("v-{name}-{nonce}"),
                resource: Some(any.clone()),
                ..Default::default()
            })
            .collect(),
        removed_resources: removed.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn client() -> DeltaState {
    DeltaState::new(Node { id: "sidecar~~client.default~default.svc.cluster.local".into(), ..Default::default() })
}

#[test]
fn clusters_and_listeners_are_wildcards_and_endpoints_and_routes_follow_them() {
    let mut state = client();
    let opening = state.on_connect();
    assert_eq!(opening.len(), 2, "CDS and LDS");
    assert!(opening[0].node.is_some() && opening[1].node.is_none(), "the node goes with the first request");
    assert!(opening.iter().all(|r| r.resource_names_subscribe.is_empty()), "wildcards");
    let reply =
        state.on_response(&response(ResourceType::Cluster, "1", &[("a", cluster("a")), ("b", cluster("b"))], &[]));
    let [ack, eds] = reply.requests.as_slice() else { panic!("ACK and EDS subscription: {:?}", reply.requests) };
    assert_eq!((ack.response_nonce.as_str(), ack.error_detail.is_none()), ("1", true));
    assert_eq!(eds.resource_names_subscribe, ["a", "b"]);
    let reply = state.on_response(&response(ResourceType::Cluster, "2", &[], &["b"]));
    assert_eq!(reply.requests[1].resource_names_unsubscribe, ["b"], "a removed cluster's endpoints are dropped");
    assert_eq!(state.config().clusters.len(), 1);
    state.on_response(&response(ResourceType::Listener, "3", &[("0.0.0.0_80", listener(80, "80"))], &[]));
    assert!(!state.is_ready(), "routes and endpoints have not arrived");
    state.on_response(&response(ResourceType::Route, "4", &[("80", routes("80", "/", "a"))], &[]));
    let endpoints = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
        cluster_name: "a".into(),
        ..Default::default()
    };
    state.on_response(&response(ResourceType::Endpoint, "5", &[("a", weft_xds::pack(&endpoints))], &[]));
    assert!(state.is_ready());
}

#[test]
fn an_invalid_resource_is_nacked_and_changes_nothing() {
    let mut state = client();
    state.on_connect();
    state.on_response(&response(ResourceType::Listener, "1", &[("0.0.0.0_80", listener(80, "80"))], &[]));
    state.on_response(&response(ResourceType::Route, "2", &[("80", routes("80", "/v[0-9]+", "good"))], &[]));
    let good = state.config().routes.clone();
    let reply = state.on_response(&response(ResourceType::Route, "3", &[("80", routes("80", "/v[0-9", "bad"))], &[]));
    let Outcome::Rejected { error, .. } = &reply.outcome else { panic!("expected a rejection") };
    assert!(error.contains("invalid regex"), "{error}");
    let [nack] = reply.requests.as_slice() else { panic!("one NACK") };
    assert_eq!(nack.response_nonce, "3");
    assert!(nack.error_detail.is_some());
    assert_eq!(state.config().routes, good, "last good routes stay");
}

#[test]
fn a_reconnect_names_what_is_held_at_which_version() {
    let mut state = client();
    state.on_connect();
    state.on_response(&response(ResourceType::Cluster, "7", &[("a", cluster("a"))], &[]));
    let again = state.on_connect();
    let cds = again.iter().find(|r| r.type_url == ResourceType::Cluster.type_url()).unwrap();
    assert_eq!(cds.initial_resource_versions.get("a").map(String::as_str), Some("v-a-7"));
    let eds = again.iter().find(|r| r.type_url == ResourceType::Endpoint.type_url()).unwrap();
    assert_eq!(eds.resource_names_subscribe, ["a"], "endpoint subscriptions are renewed");
}

#[test]
fn hosts_asked_for_on_demand_are_subscribed_once_kept_over_reconnects_and_absence_is_remembered() {
    let mut state = client();
    state.on_connect();
    let ask = state.ask("80/ledger.bank".into()).expect("a subscription");
    assert_eq!(
        (ask.type_url.as_str(), ask.resource_names_subscribe.as_slice()),
        (ResourceType::VirtualHost.type_url(), &["80/ledger.bank".to_string()][..])
    );
    assert!(state.ask("80/ledger.bank".into()).is_none(), "asked once");
    let _ = state.ask("80/nowhere".into());
    let mut host = crate::xds::testing::route_config("80", "/.*", "c-ledger").virtual_hosts.remove(0);
    host.name = "80/ledger.bank".into();
    let reply = state.on_response(&response(
        ResourceType::VirtualHost,
        "1",
        &[("80/ledger.bank", weft_xds::pack(&host))],
        &["80/nowhere"],
    ));
    assert_eq!(reply.outcome, Outcome::Applied(ResourceType::VirtualHost));
    let held = &state.config().on_demand;
    assert!(held["80/ledger.bank"].as_ref().is_some_and(|h| h.domains == ["reviews"]));
    assert_eq!(held["80/nowhere"], None, "absence is remembered");
    let reconnect = state.on_connect();
    let vhds = &reconnect[0];
    assert_eq!(vhds.type_url, ResourceType::VirtualHost.type_url(), "first, so the clusters it needs are kept");
    assert!(vhds.node.is_some(), "with the node");
    assert_eq!(vhds.resource_names_subscribe, ["80/ledger.bank", "80/nowhere"]);
    assert_eq!(vhds.initial_resource_versions["80/ledger.bank"], "v-80/ledger.bank-1");
    assert!(reconnect[1..].iter().all(|r| r.node.is_none()));
}

#[test]
fn a_rejected_on_demand_answer_ends_the_wait_for_the_hosts_it_named() {
    let mut state = client();
    state.on_connect();
    state.ask("80/ledger.bank".into());
    let garbage = Any { type_url: ResourceType::VirtualHost.type_url().into(), value: vec![0xff, 0xff] };
    let reply = state.on_response(&response(ResourceType::VirtualHost, "1", &[("80/ledger.bank", garbage)], &[]));
    assert!(matches!(reply.outcome, Outcome::Rejected { .. }));
    assert!(reply.requests[0].error_detail.is_some(), "NACKed");
    assert_eq!(state.config().on_demand.get("80/ledger.bank"), Some(&None), "counts as unknown: nobody waits");
}

/// An address whose Service went away (its pod replaced, say) is forgotten and unsubscribed, so pods coming and
/// going never fill the proxy's budget of absent addresses; an address nobody had is remembered as absent.
#[test]
fn an_address_whose_service_went_is_unsubscribed_and_forgotten() {
    let mut state = client();
    state.on_connect();
    let _ = state.ask("9092/10.1.0.7".into());
    let _ = state.ask("9092/10.1.0.8".into());
    let mut host = crate::xds::testing::route_config("9092", "/.*", "c-brokers").virtual_hosts.remove(0);
    host.name = "9092/10.1.0.7".into();
    let found = [("9092/10.1.0.7", weft_xds::pack(&host))];
    state.on_response(&response(ResourceType::VirtualHost, "1", &found, &["9092/10.1.0.8"]));
    let reply = state.on_response(&response(ResourceType::VirtualHost, "2", &[], &["9092/10.1.0.7"]));
    let unsubscribed: Vec<&String> = reply.requests.iter().flat_map(|r| &r.resource_names_unsubscribe).collect();
    assert_eq!(unsubscribed, ["9092/10.1.0.7"]);
    assert_eq!(state.config().on_demand.get("9092/10.1.0.7"), None, "forgotten: asked again when dialled again");
    assert_eq!(state.config().on_demand.get("9092/10.1.0.8"), Some(&None), "nobody's: remembered");
    let late = state.on_response(&response(ResourceType::VirtualHost, "3", &found, &[]));
    assert_eq!(late.outcome, Outcome::Applied(ResourceType::VirtualHost), "acknowledged");
    assert_eq!(state.config().on_demand.get("9092/10.1.0.7"), None, "an answer no longer followed is not taken");
    assert!(state.ask("9092/10.1.0.7".into()).is_some(), "subscribed anew");
}
