//! The proxy's health listener and graceful shutdown, with the real binary on loopback and an in-process standalone
//! operator and backend: `/healthz/ready` follows config, `/metrics` counts traffic, `weft-proxy wait` follows
//! readiness, and SIGTERM lets in-flight requests finish while new connections are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::{Backend, CLUSTER, Operator, Proxy, SERVICE, free_port, get, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_config_and_metrics_count_traffic() {
    let backend = Backend::start().await;
    let xds = free_port();
    let proxy = Proxy::start(xds, &[]);
    let waiting = proxy.wait_ready(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(waiting, "waiting for config\n");
    let before = proxy.metrics().await;
    assert_eq!(sample(&before, "weft_proxy_xds_connected"), 0.0, "{before}");
    assert_eq!(sample(&before, "weft_proxy_ready"), 0.0);

    let _operator = Operator::start(xds, backend.address).await;
    proxy.wait_ready(StatusCode::OK).await;
    let (status, body) = get(proxy.outbound, SERVICE, "/", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"));
    let (status, _) = get(proxy.outbound, "nowhere", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let metrics = proxy.metrics().await;
    let ok = format!(r#"weft_proxy_requests_total{{direction="outbound",cluster="{CLUSTER}",code_class="2xx"}}"#);
    assert_eq!(sample(&metrics, &ok), 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, r#"weft_proxy_requests_total{direction="outbound",cluster="none",code_class="4xx"}"#),
        1.0
    );
    assert_eq!(sample(&metrics, r#"weft_proxy_tcp_connections_total{direction="outbound",mode="http"}"#), 2.0);
    assert!(sample(&metrics, r#"weft_proxy_tcp_received_bytes_total{direction="outbound",mode="http"}"#) > 0.0);
    assert!(sample(&metrics, r#"weft_proxy_xds_config_applied_total{type="CDS"}"#) >= 1.0);
    assert_eq!(sample(&metrics, "weft_proxy_xds_connected"), 1.0);
    assert_eq!(sample(&metrics, "weft_proxy_ready"), 1.0);
    println!(
        "metrics after two requests:\n{}",
        metrics.lines().filter(|l| l.contains("_total{")).collect::<Vec<_>>().join("\n")
    );

    let url = format!("http://{}/healthz/ready", proxy.health);
    let wait = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["wait", "--timeout", "5s", "--url", &url])
        .output()
        .unwrap();
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_refuses_new_connections_and_exits_0() {
    let mut backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let mut proxy = Proxy::start(xds, &["--drain-timeout", "10s"]);
    proxy.wait_ready(StatusCode::OK).await;
    let (status, _) = get(proxy.outbound, SERVICE, "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    backend.arrivals.recv().await;

    let outbound = proxy.outbound;
    let slow = tokio::spawn(async move { get(outbound, SERVICE, "/", &[("x-echo-delay-ms", "1500")]).await });
    tokio::time::timeout(Duration::from_secs(5), backend.arrivals.recv())
        .await
        .expect("slow request reached the backend");
    let signalled = Instant::now();
    proxy.signal_term();

    // New connections are refused while the slow request is still in flight.
    let until = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(outbound).await.is_ok() {
        assert!(Instant::now() < until, "the outbound listener still accepts after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_after = signalled.elapsed();
    assert!(!slow.is_finished(), "the slow request should still be in flight when new connections are refused");
    assert_eq!(proxy.wait_ready(StatusCode::SERVICE_UNAVAILABLE).await, "draining\n");

    let (status, body) = slow.await.unwrap().expect("the in-flight request completes");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"));
    let exit = proxy.wait_exit(Duration::from_secs(10)).await;
    println!(
        "SIGTERM: new connections refused after {:.0} ms, in-flight request answered {status}, exit {exit} after {:.0} ms",
        refused_after.as_secs_f64() * 1000.0,
        signalled.elapsed().as_secs_f64() * 1000.0
    );
    assert!(exit.success(), "exit status {exit}; log:\n{}", proxy.output());
    assert!(proxy.output().contains("drained; exiting"), "{}", proxy.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_cuts_what_is_left_and_still_exits_0() {
    let mut backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let mut proxy = Proxy::start(xds, &["--drain-timeout", "300ms"]);
    proxy.wait_ready(StatusCode::OK).await;
    let outbound = proxy.outbound;
    let stuck = tokio::spawn(async move { get(outbound, SERVICE, "/", &[("x-echo-delay-ms", "30000")]).await });
    tokio::time::timeout(Duration::from_secs(5), backend.arrivals.recv()).await.expect("request reached the backend");
    let signalled = Instant::now();
    proxy.signal_term();
    let exit = proxy.wait_exit(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit}; log:\n{}", proxy.output());
    assert!(took < Duration::from_secs(3), "exit took {took:?} with a 300 ms drain timeout");
    assert!(stuck.await.unwrap().is_err(), "the cut request fails");
    assert!(proxy.output().contains("drain timeout"), "{}", proxy.output());
}

#[test]
fn wait_gives_up_with_one_line_and_exit_1() {
    let url = format!("http://{}/healthz/ready", free_port());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["wait", "--timeout", "500ms", "--url", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("weft-proxy: ") && stderr.contains("not ready after 500ms"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
