//! The inbound side is HTTP-aware: requests are counted with the caller's SPIFFE id, the application learns it
//! from `x-forwarded-client-cert` (and never from a client that forged one), WebSocket upgrades reach the
//! application and carry bytes both ways (no other upgrade does, so no request escapes the per-request checks),
//! and what is not HTTP still passes as TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use support::mesh_tls::*;
use support::{get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const XFCC: &str = "x-forwarded-client-cert";

#[tokio::test]
async fn requests_carry_the_caller_s_identity_to_the_application_and_into_the_metrics() {
    let pair = Pair::serving_as("server").await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);
    let echo = [("x-echo-header", XFCC)];

    let (status, seen) = get(client.outbound, "slow", "/", &echo).await.unwrap();
    assert_eq!(status, StatusCode::OK, "client log:\n{}", client.output());
    assert_eq!(seen, "By=spiffe://cluster.local/ns/default/sa/server;URI=spiffe://cluster.local/ns/default/sa/client");

    // A plaintext client cannot claim an identity: its header is dropped.
    let forged = [("x-echo-header", XFCC), (XFCC, "URI=spiffe://cluster.local/ns/default/sa/admin")];
    let (status, seen) = get(listen, "slow", "/", &forged).await.unwrap();
    assert_eq!((status, seen.as_str()), (StatusCode::OK, "(none)"));

    let metrics = server.metrics().await;
    let port = listen.port();
    let by = |principal: &str| {
        let series = format!(
            "weft_proxy_inbound_requests_total{{port=\"{port}\",source_principal=\"{principal}\",code_class=\"2xx\"}}"
        );
        sample(&metrics, &series)
    };
    assert_eq!(by("spiffe://cluster.local/ns/default/sa/client"), 1.0, "metrics:\n{metrics}");
    assert_eq!(by("unknown"), 1.0, "the plaintext request");
    let cluster =
        format!("weft_proxy_requests_total{{direction=\"inbound\",cluster=\"inbound|{port}||\",code_class=\"2xx\"}}");
    assert_eq!(sample(&metrics, &cluster), 2.0);
}

/// An application that answers every `GET` with `101` (whether or not it asked to switch) and then echoes bytes,
/// and echoes anything that is not HTTP from the first byte.
async fn upgrading_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                    if head.starts_with(b"GET ") && head.ends_with(b"\r\n\r\n") {
                        let switch =
                            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
                        stream.write_all(switch.as_bytes()).await.unwrap();
                        head.clear();
                        break;
                    }
                    if !b"GET ".starts_with(&head[..head.len().min(4)]) {
                        break;
                    }
                }
                let _ = stream.write_all(&head).await;
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// The upgrading echo application behind a server sidecar started with `extra` flags, ready: the mesh (kept for
/// the test's length), the sidecar and where it listens.
async fn upgrading_server(extra: &[&str]) -> (Mesh, support::Proxy, SocketAddr) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = upgrading_echo().await;
    let listen = server_pod_address();
    let mesh = Mesh::start(&service_yaml(listen, "server")).await;
    let server = server_proxy_with(&mesh, listen, app, extra);
    server.wait_ready(StatusCode::OK).await;
    (mesh, server, listen)
}

#[tokio::test]
async fn a_websocket_is_not_cut_by_the_request_header_timeout() {
    let (_mesh, server, listen) = upgrading_server(&["--request-headers-timeout", "1s"]).await;

    let mut stream = upgrade_to(listen, "websocket").await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in [&b"a first message"[..], b"one after a quiet spell"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message, "{}", String::from_utf8_lossy(&echoed));
        // Quiet for longer than the request-header timeout: the condition under test.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="inbound",kind="request_headers"}"#), 0.0);
}

/// A connection whose first request asks to switch to `protocol`.
async fn upgrade_to(listen: SocketAddr, protocol: &str) -> TcpStream {
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let request = format!("GET /chat HTTP/1.1\r\nhost: slow\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn an_upgrade_reaches_the_application_and_other_protocols_pass_as_tcp() {
    let (_mesh, server, listen) = upgrading_server(&[]).await;

    let mut stream = upgrade_to(listen, "websocket").await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}\nserver log:\n{}", server.output());
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping over the upgraded connection").await.unwrap();
    let mut echoed = [0u8; 33];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping over the upgraded connection");

    // h2c is served as plain HTTP/1.1: the application is not asked to switch, and its unasked 101 is not passed
    // on (later bytes would otherwise reach it unchecked). Other protocols are refused before the application.
    let mut h2c = upgrade_to(listen, "h2c").await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut h2c)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let mut other = upgrade_to(listen, "tls/1.3").await;
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut other)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    // Not HTTP: passed through as bytes.
    let mut raw = TcpStream::connect(listen).await.unwrap();
    raw.write_all(b"\x00\x01binary protocol").await.unwrap();
    let mut back = [0u8; 17];
    tokio::time::timeout(Duration::from_secs(10), raw.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"\x00\x01binary protocol");
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_tcp_connections_total{direction="inbound",mode="http"}"#), 3.0);
    assert_eq!(sample(&metrics, r#"weft_proxy_tcp_connections_total{direction="inbound",mode="tcp"}"#), 1.0);
}
