//! Kubernetes mode stopping: the leader releases its Lease and the operator returns within 2 s of the stop, even
//! with an ADS client connected that never reads (against a fake API server; real sockets for xDS and health).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::Method;
use support::ads_client::{RawStream, subscribe};
use support::operator_process::http_get;
use support::{fake_client, fake_cluster};
use tokio::net::TcpListener;
use weft_operator::app::{Listeners, serve_kubernetes};
use weft_operator::leader::LeaseConfig;
use weft_operator::source::kube::Scope;
use weft_xds::ResourceType;

async fn wait_for_metric(health: std::net::SocketAddr, line: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !http_get(health, "/metrics").await.1.lines().any(|l| l == line) {
        assert!(Instant::now() < until, "no {line:?} in /metrics");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_releases_its_lease_and_stops_within_2_s_despite_a_client_that_never_reads() {
    let (client, log) = fake_client(fake_cluster());
    let listeners = Listeners {
        xds: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        health: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        proxy_scope: Default::default(),
        root_namespace: weft_operator::index::ROOT_NAMESPACE.into(),
        secure: None,
    };
    let (xds, health) = (listeners.xds.as_ref().unwrap().local_addr().unwrap(), listeners.health.local_addr().unwrap());
    let mut lease = LeaseConfig::new("weft-system".into(), "weft-operator".into(), "replica-a".into());
    lease.retry_period = Duration::from_millis(50);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(serve_kubernetes(client, Scope::default(), lease, listeners, async {
        let _ = stopped.await;
    }));
    wait_for_metric(health, "weft_operator_leader 1").await;
    let until = Instant::now() + Duration::from_secs(10);
    while http_get(health, "/readyz").await.0 != 200 {
        assert!(Instant::now() < until, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stuck = RawStream::open_stuck(xds).await;
    stuck.send_request(&subscribe(ResourceType::Cluster, "", None)).await;
    stuck.send_request(&subscribe(ResourceType::Listener, "", None)).await;
    wait_for_metric(health, "weft_operator_connected_proxies 1").await;
    wait_for_metric(health, "weft_operator_plaintext_proxies 1").await;

    let started = Instant::now();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), operator).await.expect("the operator never stopped");
    let took = started.elapsed();
    println!("Kubernetes mode stopped in {} ms with a client that never reads", took.as_millis());
    assert!(result.unwrap().is_ok());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let released =
        log.lock().unwrap().iter().rev().find(|r| r.path.contains("/leases/") && r.method == Method::PUT).cloned();
    let released = released.expect("the lease was never written back");
    assert!(
        released.body["spec"]["holderIdentity"].is_null(),
        "the last lease write still holds it: {}",
        released.body
    );
    drop(stuck);
}
