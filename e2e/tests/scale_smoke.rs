//! The scale benchmark's harness on a small mesh, as a test: a real operator and light ADS clients. Every proxy
//! gets each change, a VirtualService edit pushes only routes and an endpoint change only endpoints, and a churn
//! of edits ends with every proxy at the last one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_e2e::scale::{CellResult, CellSpec, Protocol, report, run_cell};

async fn a_small_mesh_converges_and_each_change_pushes_only_its_type(protocol: Protocol) -> CellResult {
    let spec = CellSpec {
        services: 30,
        proxies: 12,
        namespaces: 3,
        churn: Some((10, Duration::from_secs(2))),
        patience: Duration::from_secs(30),
        protocol,
    };
    let result = run_cell(spec).await.unwrap();
    println!("{}", report::tables(std::slice::from_ref(&result)));
    for (change, cost) in [("VirtualService edit", &result.edit), ("endpoint change", &result.endpoint)] {
        assert_eq!(cost.latencies.len(), spec.proxies, "{change} did not reach every proxy");
        assert_eq!(cost.other_responses, 0, "{change} pushed other types too");
        assert!(cost.sent.messages >= spec.proxies as f64, "{change}: {:?}", cost.sent);
    }
    let churn = result.churn.as_ref().unwrap();
    assert_eq!(churn.converged, spec.proxies, "proxies did not all end at the last edit");
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
}
