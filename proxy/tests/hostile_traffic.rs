//! The real proxy facing requests that name two hosts, backends that never answer or stall, clients that send
//! slowly, and connections left idle: each is refused, answered or cut with the status Envoy users expect, and
//! counted in `weft_proxy_timeouts_total`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Backend, Operator, Proxy, SERVICE, free_port, get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy in front of the misbehaving backend, ready to route, with `flags`; `rules` are extra YAML documents.
async fn mesh(flags: &[&str], rules: &str) -> (Proxy, Operator, Backend) {
    let backend = Backend::start().await;
    let xds = free_port();
    let operator = Operator::start_with(xds, backend.address, rules).await;
    let proxy = Proxy::start(xds, flags);
    proxy.wait_ready(StatusCode::OK).await;
    (proxy, operator, backend)
}

/// Sends raw bytes on a new connection and reads the status line of the answer (0 when the connection closed
/// without one).
async fn raw_status(to: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut stream).await
}

/// The status code and head of the response on `stream` (0 and "" when it closes first), within 20 s.
async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte)).await.expect("no answer in 20 s") {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

/// A whole response with a `content-length` body: its status.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let (status, head) = read_head(stream).await;
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    status
}

fn seen_host(head: &str) -> Option<&str> {
    head.lines().find_map(|l| l.strip_prefix("x-seen-host: "))
}

/// One HTTP/2 request (prior knowledge) to `uri` with `headers`: status and the host the backend saw.
async fn h2_request(to: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Option<String>) {
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    let seen = response.headers().get("x-seen-host").map(|v| v.to_str().unwrap().to_string());
    (response.status(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_sees_the_host_the_request_was_routed_by_and_conflicts_get_400() {
    let (proxy, _operator, _backend) = mesh(&[], "").await;
    let to = proxy.outbound;
    let (status, head) = raw_status(to, "GET / HTTP/1.1\r\nhost: slow\r\nhost: evil.example\r\n\r\n").await;
    assert_eq!(status, 400, "two Host headers: {head}");
    let (status, head) = raw_status(to, "GET http://slow/ HTTP/1.1\r\nhost: evil.example\r\n\r\n").await;
    assert_eq!(status, 400, "absolute-form target and a different Host: {head}");
    let (status, head) = raw_status(to, "GET / HTTP/1.1\r\nhost: sl ow\r\n\r\n").await;
    assert_eq!(status, 400, "an invalid Host: {head}");
    let (status, head) = raw_status(to, "GET http://slow/ HTTP/1.1\r\nhost: slow\r\nconnection: close\r\n\r\n").await;
    assert_eq!((status, seen_host(&head)), (200, Some("slow")), "{head}");
    let (status, head) = raw_status(to, "GET / HTTP/1.1\r\nhost: slow\r\nconnection: close\r\n\r\n").await;
    assert_eq!((status, seen_host(&head)), (200, Some("slow")), "{head}");

    let (status, seen) = h2_request(to, "http://slow/", &[("host", "evil.example")]).await;
    assert_eq!((status, seen), (StatusCode::BAD_REQUEST, None), ":authority and a different host header");
    let (status, seen) = h2_request(to, "http://slow/", &[]).await;
    assert_eq!((status, seen.as_deref()), (StatusCode::OK, Some("slow")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_backend_gets_504_after_the_stream_idle_timeout() {
    let (proxy, _operator, _backend) = mesh(&["--stream-idle-timeout", "1s"], "").await;
    let started = Instant::now();
    let (status, body) = get(proxy.outbound, SERVICE, "/", &[("x-never-answer", "1")]).await.unwrap();
    let took = started.elapsed();
    println!("silent backend: {status} {body:?} after {took:?}");
    assert_eq!((status, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "stream timeout\n"));
    assert!(took >= Duration::from_secs(1), "answered after {took:?}, before the timeout");
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="stream_idle"}"#), 1.0);
}

/// Reads a response's body to its end; whether it ended cleanly, and after how long.
async fn read_body(to: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Result<String, String>, Duration) {
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::get("/").header("host", SERVICE);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let response = sender.send_request(request.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    let status = response.status();
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect()).await.expect("body hung");
    let body = body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).map_err(|e| e.to_string());
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stalls_its_body_is_cut_by_the_stream_idle_timeout() {
    let (proxy, _operator, _backend) = mesh(&["--stream-idle-timeout", "1s"], "").await;
    let (status, body, took) = read_body(proxy.outbound, &[("x-stall-body", "1")]).await;
    println!("stalled body: {status}, {body:?} after {took:?}");
    assert_eq!(status, StatusCode::OK, "the head had been sent");
    assert!(body.is_err(), "a cut body must not look complete: {body:?}");
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="stream_idle"}"#), 1.0);
}

const ROUTE_TIMEOUT_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\n\
metadata: {name: slow, namespace: default}\nspec:\n  hosts: [slow]\n  http:\n  - route:\n    - destination: {host: slow}\n    timeout: 1s\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_covers_the_whole_response() {
    let (proxy, _operator, _backend) = mesh(&[], ROUTE_TIMEOUT_VS).await;
    let (status, body) = get(proxy.outbound, SERVICE, "/", &[("x-echo-delay-ms", "3000")]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n"));
    let (status, body, took) = read_body(proxy.outbound, &[("x-slow-body-ms", "3000")]).await;
    println!("slow body under a 1 s route timeout: {status}, {body:?} after {took:?}");
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "the body outlived the route timeout: {body:?}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}, not at the 1 s timeout");
    let (status, body, _) = read_body(proxy.outbound, &[("x-slow-body-ms", "100")]).await;
    assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok("first part\nthe rest\n")));
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="route"}"#), 2.0);
}

/// Requests with `x-abort` are answered `503` by the proxy itself, before their bodies are read.
const ABORT_VS: &str = concat!(
    "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\n",
    "metadata: {name: slow, namespace: default}\nspec:\n  hosts: [slow]\n  http:\n",
    "  - match: [{headers: {x-abort: {exact: \"1\"}}}]\n",
    "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n",
    "    route: [{destination: {host: slow}}]\n",
    "  - route: [{destination: {host: slow}}]\n",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unread_body_of_a_request_answered_early_starts_no_request_header_timeout() {
    let (proxy, _operator, _backend) = mesh(&["--request-headers-timeout", "1s"], ABORT_VS).await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let upload = "POST / HTTP/1.1\r\nhost: slow\r\nx-abort: 1\r\ncontent-length: 20\r\n\r\ntwenty bytes of body";
    stream.write_all(upload.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await, 503);
    // The rest of the body is read after the answer: those bytes are not the head of a next request, and the
    // kept-alive connection may wait longer than the header timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await, 200, "the kept-alive connection got a 408 or was cut");
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="request_headers"}"#), 0.0);
}

/// Connections that send their request headers one byte at a time.
const SLOW_CLIENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sending_headers_slowly_get_408_and_idle_keep_alive_connections_do_not() {
    let (proxy, _operator, _backend) = mesh(&["--request-headers-timeout", "1s"], "").await;
    let to = proxy.outbound;
    // A kept-alive connection may wait between requests for longer than the header timeout.
    let mut kept = TcpStream::connect(to).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut kept).await, 200);
    let started = Instant::now();
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(to).await.unwrap();
                let request =
                    b"GET / HTTP/1.1\r\nhost: slow\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
                for byte in request {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    // The client's pace: one byte per 200 ms; the whole head would take over 15 s.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if started.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                }
                read_head(&mut stream).await
            })
        })
        .collect();
    for client in slow {
        let (status, head) = client.await.unwrap();
        assert_eq!(status, 408, "{head}");
    }
    println!("{SLOW_CLIENTS} slow-header clients answered 408 within {:?}", started.elapsed());
    kept.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut kept).await, 200, "the kept-alive connection was cut");
    let metrics = proxy.metrics().await;
    let counted = sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="request_headers"}"#);
    assert_eq!(counted, SLOW_CLIENTS as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_body_gets_408() {
    let (proxy, _operator, _backend) = mesh(&["--stream-idle-timeout", "1s"], "").await;
    let (status, head) =
        raw_status(proxy.outbound, "POST / HTTP/1.1\r\nhost: slow\r\ncontent-length: 100\r\n\r\nonly ten b").await;
    assert_eq!(status, 408, "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (proxy, _operator, _backend) = mesh(&["--idle-timeout", "1s"], "").await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await, 200);
    closed_one_idle_timeout_after(Instant::now(), &proxy, &mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_idle_timeout_is_not_cut_and_its_connection_idles_out_after() {
    let (proxy, _operator, _backend) = mesh(&["--idle-timeout", "1s"], "").await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    // In flight twice the idle timeout, without a byte either way meanwhile.
    stream.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\nx-echo-delay-ms: 2000\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await, 200, "a request in flight was taken for an idle connection");
    // Idle from the end of the response.
    closed_one_idle_timeout_after(Instant::now(), &proxy, &mut stream).await;
}

/// The proxy (`--idle-timeout 1s`) closes `stream`, idle since `idle_since`, a whole timeout later: not earlier,
/// and not never; and counts it.
async fn closed_one_idle_timeout_after(idle_since: Instant, proxy: &Proxy, stream: &mut TcpStream) {
    let mut rest = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut rest)).await.expect("never closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let took = idle_since.elapsed();
    println!("idle connection closed {took:?} after its last response");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}, before the idle timeout");
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="idle"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_is_closed_after_the_idle_timeout_and_others_are_served() {
    let (proxy, _operator, _backend) = mesh(&["--idle-timeout", "1s"], "").await;
    // Until its first bytes, a connection is only waited on; the idle timeout still closes it.
    let mut silent = TcpStream::connect(proxy.outbound).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await.expect("never closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());
    // A client that waits before its first request is served as any other, HTTP/1 and HTTP/2 alike.
    let mut late = TcpStream::connect(proxy.outbound).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_head(&mut late).await.0, 200);
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://slow/").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), StatusCode::OK);
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="idle"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_and_long_uploads_are_not_taken_for_slow_headers() {
    let (proxy, _operator, _backend) = mesh(&["--request-headers-timeout", "1s"], "").await;
    // HTTP/2: control frames on a connection kept open past the header timeout start no timer.
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .keep_alive_interval(Duration::from_millis(200))
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    for round in 0..2 {
        let request = Request::get("http://slow/").body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        // Pings flow meanwhile; the wait is the condition under test (longer than the header timeout).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(!connection.is_finished(), "the HTTP/2 connection was closed");
    // HTTP/1: an upload that goes on after the upstream answered is not a slow request head.
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let head = "POST / HTTP/1.1\r\nhost: slow\r\nx-answer-early: 1\r\ncontent-length: 40\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"first half of the body..").await.unwrap();
    assert_eq!(read_response(&mut stream).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"...and the second").await.unwrap();
    // The end of the body is not the start of a request head, however long the next request takes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await, 200, "the connection survives the long upload");
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_timeouts_total{direction="outbound",kind="request_headers"}"#), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let (proxy, _operator, _backend) = mesh(&["--idle-timeout", "1s"], "").await;
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let response = sender.send_request(Request::get("http://slow/").body(Empty::<Bytes>::new()).unwrap()).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await.expect("never closed").unwrap();
    println!("idle HTTP/2 connection closed after {:?}: {ended:?}", started.elapsed());
    assert!(ended.is_ok(), "closed without GOAWAY: {ended:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(sender.send_request(Request::get("http://slow/").body(Empty::<Bytes>::new()).unwrap()).await.is_err());
}
