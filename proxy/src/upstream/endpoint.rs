//! One upstream endpoint: its connection pool ([`super::pool`]) and the HTTP version requests go to it in.
//!
//! The request URI keeps the authority the client used (so `:authority` and `Host` reach the application
//! unchanged); the pool ignores it and always dials the endpoint's address. Connections are retired after the
//! cluster's per-connection limits ([`super::reuse`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Version};

use super::pool::{Dial, Pool, UpstreamBody};
use super::reuse::ReuseLimits;
use super::tls::ClusterTls;
use crate::BoxError;
use crate::config::cluster::{Connections, UpstreamProtocol};
use crate::http::Body;

/// Connections idle longer than this are closed, unless the cluster says otherwise (`connectionPool.http.idleTimeout`).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle HTTP/1.1 connections kept per endpoint beyond which a connection returned to the pool is closed (nginx's
/// `keepalive`): a burst of concurrent requests would otherwise leave as many idle connections, and their
/// buffers, until the idle timeout.
const MAX_IDLE_CONNECTIONS: usize = 64;

#[derive(Clone)]
pub struct Endpoint {
    pool: Arc<Pool>,
    protocol: UpstreamProtocol,
}

impl Endpoint {
    /// `tls`: the cluster's TLS, for an endpoint that runs a sidecar (or every endpoint of a cluster that says so).
    pub fn new(
        address: SocketAddr,
        connect_timeout: Duration,
        connections: Connections,
        tls: Option<Arc<ClusterTls>>,
    ) -> Self {
        let dial = Dial { address, timeout: connect_timeout, keepalive: connections.keepalive, tls };
        let idle_timeout = connections.idle_timeout.unwrap_or(POOL_IDLE_TIMEOUT);
        let pool = Pool::new(dial, ReuseLimits::of(&connections), idle_timeout, MAX_IDLE_CONNECTIONS)
            .with_max_streams(connections.max_streams);
        Self { pool: Arc::new(pool), protocol: connections.protocol }
    }

    pub fn address(&self) -> SocketAddr {
        self.pool.address()
    }

    /// Whether connections to it go through the cluster's TLS (it runs a sidecar, or the cluster reaches every
    /// endpoint over TLS).
    pub fn secured(&self) -> bool {
        self.pool.secured()
    }

    /// Sends `request`. The upstream protocol follows the downstream one (HTTP/2 in, gRPC included, HTTP/2 out)
    /// unless the cluster fixes it.
    pub fn send(
        &self,
        mut request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, BoxError>> + Send + 'static {
        let http2 = match self.protocol {
            UpstreamProtocol::Client => request.version() == Version::HTTP_2,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
        };
        // An HTTP/1.0 request stays one unless it goes upstream as HTTP/2.
        if http2 {
            *request.version_mut() = Version::HTTP_2;
        } else if request.version() == Version::HTTP_2 {
            *request.version_mut() = Version::HTTP_11;
        }
        self.pool.clone().send(request, http2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// An HTTP/1.1 server on loopback answering 200; counts the connections it accepted.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (address, accepted) = (listener.local_addr().unwrap(), Arc::new(AtomicUsize::new(0)));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                // Answers with the HTTP version it was asked in.
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let version = format!("{:?}", request.version());
                    Ok::<_, std::convert::Infallible>(
                        Response::builder().header("x-version", version).body(Empty::<Bytes>::new()).unwrap(),
                    )
                });
                tokio::spawn(async move {
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    server.serve_connection(TokioIo::new(stream), service).await
                });
            }
        });
        (address, accepted)
    }

    /// The HTTP version the server was asked in.
    async fn get_as(endpoint: &Endpoint, version: Version) -> String {
        let body = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        let request = Request::get("http://app/").version(version).body(body).unwrap();
        let response = endpoint.send(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        let asked_in = response.headers()["x-version"].to_str().unwrap().to_string();
        response.into_body().collect().await.unwrap();
        asked_in
    }

    async fn get(endpoint: &Endpoint) {
        get_as(endpoint, Version::HTTP_11).await;
    }

    #[tokio::test]
    async fn the_upstream_protocol_is_the_clients_unless_the_cluster_fixes_it() {
        let (address, _) = counting_server().await;
        let with = |protocol| {
            Endpoint::new(address, Duration::from_secs(1), Connections { protocol, ..Connections::default() }, None)
        };
        let client = with(UpstreamProtocol::Client);
        assert_eq!(get_as(&client, Version::HTTP_11).await, "HTTP/1.1");
        assert_eq!(get_as(&client, Version::HTTP_2).await, "HTTP/2.0");
        assert_eq!(get_as(&client, Version::HTTP_10).await, "HTTP/1.0", "an HTTP/1.0 request stays one");
        assert_eq!(get_as(&with(UpstreamProtocol::Http2), Version::HTTP_11).await, "HTTP/2.0", "upgraded");
        assert_eq!(get_as(&with(UpstreamProtocol::Http1), Version::HTTP_2).await, "HTTP/1.1");
    }

    async fn connections_for(requests: usize, connections: Connections) -> usize {
        let (address, accepted) = counting_server().await;
        let endpoint = Endpoint::new(address, Duration::from_secs(1), connections, None);
        for _ in 0..requests {
            get(&endpoint).await;
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_connection_carries_at_most_max_requests() {
        assert_eq!(connections_for(5, Connections::default()).await, 1, "kept alive without a limit");
        let two = Connections { max_requests: Some(2), ..Connections::default() };
        assert_eq!(connections_for(5, two).await, 3);
        let one = Connections { max_requests: Some(1), ..Connections::default() };
        assert_eq!(connections_for(4, one).await, 4, "1 turns keep-alive off");
    }

    #[tokio::test]
    async fn an_http2_connection_carries_at_most_max_requests() {
        let (address, accepted) = counting_server().await;
        let two = Connections { max_requests: Some(2), ..Connections::default() };
        let endpoint = Endpoint::new(address, Duration::from_secs(1), two, None);
        for _ in 0..6 {
            get_as(&endpoint, Version::HTTP_2).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_past_its_maximum_duration_is_not_reused() {
        let (address, accepted) = counting_server().await;
        let max = Duration::from_secs(1);
        let endpoint = Endpoint::new(
            address,
            Duration::from_secs(1),
            Connections { max_duration: Some(max), ..Connections::default() },
            None,
        );
        get(&endpoint).await;
        get(&endpoint).await;
        let first = accepted.load(Ordering::SeqCst);
        // Time passing is what is tested: the idle connection outlives its duration.
        tokio::time::sleep(max + Duration::from_millis(500)).await;
        get(&endpoint).await;
        assert_eq!((first, accepted.load(Ordering::SeqCst)), (1, 2));
    }
}
