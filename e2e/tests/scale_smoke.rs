//! The scale benchmark's harness on a small mesh, as a test: a real operator and light ADS clients. Every proxy
//! gets each change, a VirtualService edit pushes only routes and an endpoint change only endpoints, and a churn
//! of edits ends with every proxy at the last one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_e2e::scale::{CellSpec, report, run_cell};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_mesh_converges_and_each_change_pushes_only_its_type() {
    let spec = CellSpec {
        services: 30,
        proxies: 12,
        namespaces: 3,
        churn: Some((10, Duration::from_secs(2))),
        patience: Duration::from_secs(30),
    };
    let result = run_cell(spec).await.unwrap();
    println!("{}", report::tables(std::slice::from_ref(&result)));
    for (change, cost) in [("VirtualService edit", &result.edit), ("endpoint change", &result.endpoint)] {
        assert_eq!(cost.latencies.len(), spec.proxies, "{change} did not reach every proxy");
        assert_eq!(cost.other_responses, 0, "{change} pushed other types too");
        assert!(cost.sent.messages >= spec.proxies as f64, "{change}: {:?}", cost.sent);
    }
    let churn = result.churn.unwrap();
    assert_eq!(churn.converged, spec.proxies, "proxies did not all end at the last edit");
}
