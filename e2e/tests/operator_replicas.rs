//! The operator as users run it: several replicas behind one address, health and metrics endpoints.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// Proxies connected to replica 0 besides the mesh's own.
const EXTRA_PROXIES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_the_operator_exits_promptly_and_its_proxies_move_to_another_replica() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut mesh = LocalMesh::start_replicated([0, 100], 2).await?;
    let mut extra = Vec::new();
    for i in 0..EXTRA_PROXIES {
        extra.push(mesh.spawn_proxy(&format!("client-{i}"))?);
    }
    let stuck = StuckAdsClient::connect(mesh.operators[0].xds).await?;
    let health = HttpClient::new(mesh.operators[0].metrics);
    let connected = format!("weft_operator_connected_proxies {}", EXTRA_PROXIES + 2);
    let until = Instant::now() + Duration::from_secs(15);
    while !health.get("localhost", "/metrics", &[]).await?.body.contains(&connected) {
        anyhow::ensure!(Instant::now() < until, "not every client reached replica 0\n{}", mesh.diagnostics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, outbound) in &extra {
        let client = HttpClient::new(*outbound);
        let until = Instant::now() + Duration::from_secs(15);
        while !one(&client, HOST).await.ok {
            anyhow::ensure!(Instant::now() < until, "an extra proxy never routed\n{}", mesh.diagnostics());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let load = LoadLoop::start(mesh.client(), HOST, 2, None);
    let extra_load: Vec<LoadLoop> =
        extra.iter().map(|(_, outbound)| LoadLoop::start(HttpClient::new(*outbound), HOST, 1, None)).collect();
    let sent = Instant::now();
    mesh.operators[0].process.terminate()?;
    let (stopping, surviving) = mesh.operators.split_at_mut(1);
    let survivor = &surviving[0].process;
    let moved = async {
        // Every proxy reconnects to the surviving replica, not waiting for the stopping one to exit.
        while survivor.output().matches("proxy connected").count() < EXTRA_PROXIES + 1 {
            if sent.elapsed() > Duration::from_secs(5) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(sent.elapsed())
    };
    let exited = async {
        let status = stopping[0].process.wait_exit(Duration::from_secs(15)).await;
        (status, sent.elapsed())
    };
    let ((status, took), moved) = tokio::join!(exited, moved);
    println!(
        "SIGTERM with {} proxies and a client that never reads connected: exited in {} ms ({status:?}); proxies on replica 1 after {:?}",
        EXTRA_PROXIES + 1,
        took.as_millis(),
        moved
    );
    assert!(status.is_some_and(|s| s.success()), "operator did not exit cleanly: {status:?}\n{}", mesh.diagnostics());
    assert!(took < Duration::from_secs(2), "operator took {took:?} to exit on SIGTERM\n{}", mesh.diagnostics());
    assert!(moved.is_some(), "proxies did not reconnect to replica 1\n{}", mesh.operators[1].process.tail(30));
    drop(stuck);
    mesh.set_weights([100, 0])?;
    for client in std::iter::once(mesh.client()).chain(extra.iter().map(|(_, outbound)| HttpClient::new(*outbound))) {
        let until = Instant::now() + Duration::from_secs(5);
        while one(&client, HOST).await.version.as_deref() != Some("v1") {
            anyhow::ensure!(Instant::now() < until, "a proxy did not follow replica 1\n{}", mesh.diagnostics());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut samples = load.stop().await;
    for loop_ in extra_load {
        samples.extend(loop_.stop().await);
    }
    let (_, failures) = tally(&samples, &VERSIONS);
    println!("during the restart: {} requests, {failures} failed", samples.len());
    let failed: Vec<&str> = samples.iter().filter(|s| !s.ok).map(|s| s.detail.as_str()).take(5).collect();
    assert_eq!(failures, 0, "{failed:?}\n{}", mesh.diagnostics());
    Ok(())
}

/// An ADS client that subscribes and then never reads: its stream window is zero, so nothing the operator sends
/// can be delivered, the end of the stream included.
struct StuckAdsClient {
    _requests: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>,
    _response: hyper::Response<hyper::body::Incoming>,
}

impl StuckAdsClient {
    async fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(connection);
        let (requests, rx) = tokio::sync::mpsc::channel(4);
        let request = http::Request::post(format!(
            "http://{address}/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)))?;
        let response = sender.send_request(request);
        for type_url in [
            "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "type.googleapis.com/envoy.config.listener.v3.Listener",
        ] {
            let _ = requests
                .send(Ok(Frame::data(grpc_frame(&discovery_request(
                    "sidecar~~stuck.default~default.svc.cluster.local",
                    type_url,
                )))))
                .await;
        }
        Ok(Self { _requests: requests, _response: response.await? })
    }
}

/// A DiscoveryRequest with `node.id` and `type_url`, protobuf-encoded by hand (fields 2 and 4).
fn discovery_request(node_id: &str, type_url: &str) -> Vec<u8> {
    let node = length_delimited(1, node_id.as_bytes());
    let mut request = length_delimited(2, &node);
    request.extend(length_delimited(4, type_url.as_bytes()));
    request
}

fn length_delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}
