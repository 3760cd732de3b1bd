//! The scale benchmark's harness on a small mesh, as a test: a real operator and light ADS clients. Every proxy
//! holding a changed Service gets the change, a VirtualService edit pushes only routes and an endpoint change
//! only endpoints, a churn of edits ends with every such proxy at the last one, and a delta proxy holds only its
//! namespace's Services.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_e2e::scale::{CellResult, CellSpec, Protocol, ProxyScope, probe, report, run_cell};

fn spec_services() -> usize {
    30
}

async fn a_small_mesh_converges_and_each_change_pushes_only_its_type(protocol: Protocol) -> CellResult {
    let spec = CellSpec {
        services: spec_services(),
        proxies: 12,
        namespaces: 3,
        churn: Some((10, Duration::from_secs(2))),
        patience: Duration::from_secs(30),
        protocol,
        scope: ProxyScope::Namespace,
    };
    let result = run_cell(spec).await.unwrap();
    println!("{}", report::tables(std::slice::from_ref(&result)));
    for (change, cost) in [("VirtualService edit", &result.edit), ("endpoint change", &result.endpoint)] {
        // Delta proxies hold their own namespace (a third of them hold the changed Service); the others all.
        let holding = if protocol == Protocol::Delta { spec.proxies / spec.namespaces } else { spec.proxies };
        assert_eq!(cost.latencies.len(), holding, "{change} did not reach every proxy holding the Service");
        assert_eq!(cost.bystanders, 0, "{change} reached proxies that do not hold the Service");
        assert_eq!(cost.other_responses, 0, "{change} pushed other types too");
        assert!(cost.sent.messages >= holding as f64, "{change}: {:?}", cost.sent);
    }
    let churn = result.churn.as_ref().unwrap();
    assert_eq!(churn.converged, churn.proxies, "proxies did not all end at the last edit");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_delta_xds_a_change_sends_only_the_changed_resources() {
    let delta = a_small_mesh_converges_and_each_change_pushes_only_its_type(Protocol::Delta).await;
    let sotw = a_small_mesh_converges_and_each_change_pushes_only_its_type(Protocol::StateOfTheWorld).await;
    // An endpoint change touches one Service: delta sends its endpoints, state of the world every Service's.
    assert!(
        delta.endpoint.sent.bytes * 5.0 < sotw.endpoint.sent.bytes,
        "delta sent {} bytes for an endpoint change, state of the world {}",
        delta.endpoint.sent.bytes,
        sotw.endpoint.sent.bytes
    );
    // Three clusters per Service (the Service and two subsets): a delta proxy holds its namespace's ten Services.
    assert_eq!(delta.clusters_per_proxy, 30.0, "a delta proxy holds its namespace");
    let mesh = (spec_services() * 3 + probe::CALLED) as f64;
    assert_eq!(sotw.clusters_per_proxy, mesh, "state of the world has no on-demand discovery: the whole mesh");
    // The real proxy of the probe, in a namespace of its own, holds what it called and nothing else.
    assert_eq!(delta.probe.clusters, probe::CALLED);
}
