//! The proxy's connection pools to an endpoint after a burst: every concurrent request gets a connection, and
//! once the burst is over at most 64 idle ones stay open (nginx's `keepalive`), the rest are closed instead of
//! holding their buffers until the idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{Operator, Proxy, free_port};
use tokio::net::TcpListener;

/// A backend answering every request after `delay`; counts the connections open to it now and at most.
async fn counting_backend(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (open_, peak_) = (open.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let now = open_.fetch_add(1, Ordering::SeqCst) + 1;
            peak_.fetch_max(now, Ordering::SeqCst);
            let open = open_.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (address, open, peak)
}

#[tokio::test]
async fn after_a_burst_at_most_64_idle_connections_stay_open_to_an_endpoint() {
    let (backend, open, peak) = counting_backend(Duration::from_millis(300)).await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    support::eventually("the proxy routes slow", || async {
        support::get(proxy.outbound, "slow", "/", &[]).await.is_ok_and(|(status, _)| status == StatusCode::OK)
    })
    .await;
    let burst: Vec<_> = (0..150).map(|_| tokio::spawn(support::get(proxy.outbound, "slow", "/", &[]))).collect();
    for call in burst {
        assert_eq!(call.await.unwrap().unwrap().0, StatusCode::OK);
    }
    let most = peak.load(Ordering::SeqCst);
    assert!(most > 100, "the burst needed more connections than stay idle: {most} at most");
    let until = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::SeqCst) > 64 {
        assert!(Instant::now() < until, "{} connections still open after the burst", open.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
