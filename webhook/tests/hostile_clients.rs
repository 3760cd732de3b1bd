//! The webhook facing clients that send too much, too slowly, too many at once, or text meant for its log: each is
//! refused with the right status, memory stays bounded, and shutdown does not wait for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::json;
use support::binary::{Files, memory_kib, output, send_sigterm, start};
use support::{TestServer, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_webhook::limits::{Limits, MAX_BODY_BYTES};
use weft_webhook::server::SHUTDOWN_GRACE;

/// Opens an HTTP/1.1-over-TLS connection and sends `head` (request line and headers) and `body`.
async fn send_raw(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    head: &str,
    body: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut stream = connect(addr, ca, b"http/1.1").await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

fn post_head(addr: SocketAddr, length: usize) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nhost: localhost:{}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n",
        addr.port()
    )
}

/// The status code of the response on `stream`, read within 10 s.
async fn status_of(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "connection closed before a status line: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let line = String::from_utf8(head).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_review_declared_too_large_gets_413_without_being_read() {
    let server = TestServer::start_with_limits(Limits::default()).await;
    let mut stream = send_raw(server.addr, &server.pki.ca(), &post_head(server.addr, MAX_BODY_BYTES + 1), b"{").await;
    assert_eq!(status_of(&mut stream).await, 413);
}

#[tokio::test]
async fn a_chunked_review_that_grows_too_large_gets_413() {
    let limits = Limits { max_body_bytes: 64 * 1024, ..Limits::default() };
    let server = TestServer::start_with_limits(limits).await;
    let head = format!(
        "POST /inject HTTP/1.1\r\nhost: localhost:{}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        server.addr.port()
    );
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
    let mut stream = send_raw(server.addr, &server.pki.ca(), &head, chunk.repeat(5).as_bytes()).await;
    assert_eq!(status_of(&mut stream).await, 413);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let limits = Limits { body_read_timeout: Duration::from_millis(300), ..Limits::default() };
    let server = TestServer::start_with_limits(limits).await;
    let started = Instant::now();
    let mut stream = send_raw(server.addr, &server.pki.ca(), &post_head(server.addr, 1000), b"{\"apiVersion\":").await;
    assert_eq!(status_of(&mut stream).await, 408);
    println!("stalled body answered 408 after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_review_waits_for_memory_a_stalled_upload_holds_and_is_answered_when_it_is_freed() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        memory_budget_bytes: 64 * 1024,
        body_read_timeout: Duration::from_millis(800),
    };
    let server = TestServer::start_with_limits(limits).await;
    let mut holder = send_raw(server.addr, &server.pki.ca(), &post_head(server.addr, 60_000), &[b' '; 59_000]).await;
    // Once the webhook holds the stalled upload's bytes, a review that needs more waits for them.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let (status, _) = server.post("/validate", vec![b' '; 10_000]).await;
        if started.elapsed() >= Duration::from_millis(300) {
            assert_eq!(status.as_u16(), 400, "answered (the body is not JSON) once the stalled upload timed out");
            break;
        }
        assert!(Instant::now() < until, "a review never waited for the memory the stalled upload holds");
    }
    assert_eq!(status_of(&mut holder).await, 408);
}

#[tokio::test]
async fn clients_that_trickle_their_bodies_do_not_lock_out_real_reviews() {
    let server = TestServer::start_with_limits(Limits::default()).await;
    let mut tricklers = Vec::new();
    for _ in 0..64 {
        tricklers.push(send_raw(server.addr, &server.pki.ca(), &post_head(server.addr, 1_000_000), b"{").await);
    }
    let started = Instant::now();
    let (status, _) = server.post("/validate", "{}").await;
    assert_eq!(status.as_u16(), 400, "a real (if malformed) review is answered, not queued");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
}

/// Clients in the memory test, and how much of its body each sends before stalling.
const STALLED_CLIENTS: usize = 60;
const CHART_MEMORY_LIMIT_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_keep_the_webhook_far_below_its_memory_limit() {
    let files = Files::new();
    let (mut child, addr) = start(&files, &["--native-sidecars", "false"], &[]).await;
    let before = memory_kib(&child, "VmRSS");
    let written = Arc::new(AtomicUsize::new(0));
    let ca = files.pki.ca();
    let clients: Vec<_> = (0..STALLED_CLIENTS)
        .map(|_| {
            let (ca, written) = (ca.clone(), written.clone());
            tokio::spawn(async move {
                // The largest body allowed, minus its last byte: never complete.
                let mut stream = send_raw(addr, &ca, &post_head(addr, MAX_BODY_BYTES), b"").await;
                let chunk = vec![b' '; 64 * 1024];
                let mut left = MAX_BODY_BYTES - 1;
                while left > 0 {
                    let n = left.min(chunk.len());
                    stream.write_all(&chunk[..n]).await.unwrap();
                    stream.flush().await.unwrap();
                    written.fetch_add(n, Ordering::Relaxed);
                    left -= n;
                }
                std::future::pending::<()>().await;
            })
        })
        .collect();
    // Upload until the webhook takes no more: everything it reads, and what the kernel buffers for the others.
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = usize::MAX;
    loop {
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(Instant::now() < until, "uploads still moving after 60 s");
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await; // the quiet period that says the uploads stalled
    }
    let peak = memory_kib(&child, "VmHWM");
    clients.iter().for_each(|c| c.abort());
    for client in clients {
        let _ = client.await;
    }
    // The webhook still answers, and frees what it read once the clients are gone.
    let healthy = support::request(addr, &ca, "GET", "/healthz", bytes::Bytes::new(), false).await;
    let after = memory_kib(&child, "VmRSS");
    println!(
        "webhook RSS with {STALLED_CLIENTS} stalled {} MiB uploads ({} MiB sent in all): {} MiB before, peak {} MiB, {} MiB after they left (chart limit {} MiB)",
        MAX_BODY_BYTES / (1024 * 1024),
        last / (1024 * 1024),
        before / 1024,
        peak / 1024,
        after / 1024,
        CHART_MEMORY_LIMIT_KIB / 1024
    );
    assert_eq!(healthy.0.as_u16(), 200);
    assert!(peak < CHART_MEMORY_LIMIT_KIB / 2, "peak RSS {peak} KiB is not well under the chart's limit");
    send_sigterm(&child);
    child.0.wait().unwrap();
}

#[tokio::test]
async fn sigterm_with_idle_and_stalled_connections_exits_within_the_grace_period() {
    let files = Files::new();
    let (mut child, addr) = start(&files, &["--native-sidecars", "false"], &[]).await;
    let ca = files.pki.ca();
    let _silent_tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle_tls =
        send_raw(addr, &ca, &format!("GET /healthz HTTP/1.1\r\nhost: localhost:{}\r\n\r\n", addr.port()), b"").await;
    assert_eq!(status_of(&mut idle_tls).await, 200);
    let _stalled = send_raw(addr, &ca, &post_head(addr, 1000), b"{").await;
    let sent = Instant::now();
    send_sigterm(&child);
    let until = sent + SHUTDOWN_GRACE + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "the webhook did not exit within {SHUTDOWN_GRACE:?} of SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("webhook exited {:?} after SIGTERM with open connections ({status})", sent.elapsed());
    assert!(status.success(), "{}", output(&mut child));
}

#[tokio::test]
async fn a_line_break_in_a_request_uid_cannot_forge_a_log_line() {
    let files = Files::new();
    let (mut child, addr) = start(&files, &["--native-sidecars", "false"], &[]).await;
    let uid = "e911857d\n2026-12-03T00:00:00.000000Z  INFO weft_webhook::server: forged";
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.weft.dev", "version": "v1alpha1", "kind": "DestinationRule"},
            "operation": "CREATE",
            "namespace": "shop",
            "object": {"apiVersion": "networking.weft.dev/v1alpha1", "kind": "DestinationRule",
                       "metadata": {"name": "r", "namespace": "shop"}, "spec": {"host": "reviews"}}
        }
    });
    let (status, body) =
        support::request(addr, &files.pki.ca(), "POST", "/validate", serde_json::to_vec(&review).unwrap().into(), true)
            .await;
    assert_eq!(status.as_u16(), 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], uid, "the uid is echoed exactly in the response");
    send_sigterm(&child);
    child.0.wait().unwrap();
    let log = output(&mut child);
    assert!(log.contains("reviewed"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("2026-12-03T00:00:00.000000Z")), "a forged log line:\n{log}");
}
