//! The operator as users run it: several replicas behind one address, health and metrics endpoints.

use std::time::{Duration, Instant};

use weft_e2e::http_client::HttpClient;
use weft_e2e::load::{LoadLoop, one, tally};
use weft_e2e::mesh::{HOST, LocalMesh, VERSIONS};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_whose_operator_replica_dies_moves_to_another_and_keeps_routing() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut mesh = LocalMesh::start_replicated([0, 100], 2).await?;
    let load = LoadLoop::start(mesh.client(), HOST, 2, None);
    mesh.kill_operator();
    // The second replica serves the same directory: an edit after the failover must reach the proxy.
    mesh.set_weights([100, 0])?;
    let client = mesh.client();
    let until = Instant::now() + Duration::from_secs(10);
    while one(&client, HOST).await.version.as_deref() != Some("v1") {
        assert!(Instant::now() < until, "the proxy did not follow the surviving replica\n{}", mesh.diagnostics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples = load.stop().await;
    let (counts, failures) = tally(&samples, &VERSIONS);
    println!("replica killed: {} requests (v1={}, v2={}), {failures} failed", samples.len(), counts[0], counts[1]);
    assert_eq!(failures, 0, "{}", mesh.diagnostics());
    let survivor = &mesh.operators[1].process;
    assert!(survivor.output().contains("proxy connected"), "the proxy never reached replica 1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reports_health_readiness_and_metrics() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mesh = LocalMesh::start([50, 50]).await?;
    let health = HttpClient::new(mesh.operators[0].metrics);
    assert_eq!(health.get("localhost", "/healthz", &[]).await?.status, 200);
    assert_eq!(health.get("localhost", "/readyz", &[]).await?.status, 200);
    let metrics = health.get("localhost", "/metrics", &[]).await?.body;
    for expected in [
        "weft_operator_connected_proxies 1",
        "weft_operator_xds_pushes_total{type=\"CDS\"}",
        "weft_operator_xds_push_latency_seconds_bucket",
        "weft_operator_snapshots_total",
    ] {
        assert!(metrics.contains(expected), "missing {expected:?} in:\n{metrics}");
    }
    Ok(())
}
