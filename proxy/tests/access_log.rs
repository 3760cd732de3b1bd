//! Access logs as a user turns them on (`--access-log stdout`): one JSON line per request with Istio's fields,
//! the request id the upstream got and the trace id the client sent; nothing when they are off. Every request
//! leaves with an `x-request-id`, the client's own when it sent one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::{Backend, Operator, Proxy, free_port, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The access log lines the proxy has written so far.
fn lines(proxy: &Proxy) -> Vec<Value> {
    proxy.output().lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn wait_for_lines(proxy: &Proxy, count: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = lines(proxy);
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < until, "expected {count} access log lines:\n{}", proxy.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A POST with a body of `body`'s length, over a raw HTTP/1.1 connection; the response's status line.
async fn post(proxy: &Proxy, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(proxy.outbound).await.unwrap();
    let request = format!(
        "POST /orders?id=7 HTTP/1.1\r\nHost: slow\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn each_request_is_one_json_line_with_its_ids_and_where_it_went() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &["--access-log", "stdout"]);
    proxy.wait_ready(StatusCode::OK).await;

    let echo_id = ("x-echo-header", "x-request-id");
    let (status, generated) =
        get(proxy.outbound, "slow", "/", &[echo_id, ("traceparent", TRACEPARENT), ("user-agent", "shop/1.0")])
            .await
            .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(generated.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "a UUID: {generated}");
    let (_, kept) = get(proxy.outbound, "slow", "/", &[echo_id, ("x-request-id", "order-7")]).await.unwrap();
    assert_eq!(kept, "order-7", "the client's own id goes on unchanged");
    let (status, _) = get(proxy.outbound, "nowhere", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(post(&proxy, "hello world").await, "HTTP/1.1 200 OK");

    let lines = wait_for_lines(&proxy, 4).await;
    let first = &lines[0];
    assert_eq!(first["direction"], "outbound");
    assert_eq!(
        (first["method"].as_str(), first["authority"].as_str(), first["path"].as_str()),
        (Some("GET"), Some("slow"), Some("/"))
    );
    assert_eq!((first["response_code"].as_u64(), first["response_flags"].as_str()), (Some(200), Some("-")));
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["upstream_cluster"], "outbound|80||slow.default.svc.cluster.local");
    assert_eq!(first["upstream_host"], backend.address.to_string());
    assert_eq!(first["request_id"], generated.as_str(), "the id the upstream got");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["user_agent"], "shop/1.0");
    assert_eq!(first["bytes_sent"].as_u64(), Some(generated.len() as u64));
    assert!(first["start_time"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')), "{first}");
    assert!(first["duration"].is_u64());
    assert_eq!(lines[1]["request_id"], "order-7");
    let no_route = &lines[2];
    assert_eq!((no_route["response_code"].as_u64(), no_route["response_flags"].as_str()), (Some(404), Some("NR")));
    assert_eq!(no_route["upstream_cluster"], Value::Null);
    let posted = &lines[3];
    assert_eq!((posted["method"].as_str(), posted["path"].as_str()), (Some("POST"), Some("/orders?id=7")));
    assert_eq!(posted["bytes_received"].as_u64(), Some(11), "the request body's bytes");
    assert_eq!(posted["bytes_sent"].as_u64(), Some("slow backend\n".len() as u64));
}

#[tokio::test]
async fn access_logs_are_off_unless_asked_for() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let (status, id) = get(proxy.outbound, "slow", "/", &[("x-echo-header", "x-request-id")]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id.len(), 36, "request ids are given with logs off too: {id}");
    // The request has been answered: a line would have been queued before the response ended.
    let (status, _) = get(proxy.health, "proxy", "/metrics", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(lines(&proxy).is_empty(), "no access log by default:\n{}", proxy.output());

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args([
            "run",
            "--xds-address",
            "http://127.0.0.1:1",
            "--pod-name",
            "p",
            "--pod-namespace",
            "d",
            "--access-log",
            "file",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'file' for '--access-log"));
}
