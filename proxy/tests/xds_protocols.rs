//! The proxy's xDS protocol: incremental (delta) with Weft's operator, state of the world with a control plane
//! that has no delta (an older operator during an upgrade), routing either way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::{Backend, Operator, Proxy, SERVICE, SotwOnlyOperator, free_port, get};

async fn routes(proxy: &Proxy) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((StatusCode::OK, body)) = get(proxy.outbound, SERVICE, "/", &[]).await {
            assert_eq!(body, "slow backend\n");
            return;
        }
        assert!(Instant::now() < until, "never routed; proxy log:\n{}", proxy.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_speaks_delta_xds_to_the_operator() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &[]);
    routes(&proxy).await;
    assert!(proxy.output().contains("protocol=\"delta\""), "{}", proxy.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_without_delta_is_spoken_to_in_state_of_the_world() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = SotwOnlyOperator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &[]);
    routes(&proxy).await;
    let log = proxy.output();
    assert!(log.contains("does not serve delta xDS"), "{log}");
    assert!(log.contains("protocol=\"state of the world\""), "{log}");
}
