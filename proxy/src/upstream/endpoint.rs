//! One upstream endpoint as a tower `Service`: HTTP/1.1 and HTTP/2 connection pools to a fixed address.
//!
//! The request URI keeps the authority the client used (so `:authority` and `Host` reach the application
//! unchanged); the connector ignores it and always dials the endpoint's address. Connections are retired after
//! the cluster's per-connection limits ([`super::reuse`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::TryFutureExt;
use futures_util::future::{Either, MapErr};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::origination::Alpn;
use super::reuse::{ReuseLimits, TrackedStream};
use super::tls::{ClusterTls, UpstreamIo};
use crate::BoxError;
use crate::config::cluster::{Connections, Keepalive, UpstreamProtocol};
use crate::http::Body;

/// Connections idle longer than this are closed, unless the cluster says otherwise (`connectionPool.http.idleTimeout`).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle HTTP/1.1 connections kept per endpoint (and authority) beyond which a connection returned to the pool is
/// closed (nginx's `keepalive`): a burst of concurrent requests would otherwise leave as many idle connections,
/// and their buffers, until the idle timeout.
const MAX_IDLE_CONNECTIONS: usize = 64;

#[derive(Clone)]
pub struct Endpoint {
    address: SocketAddr,
    http1: Client<FixedConnector, Body>,
    http2: Client<FixedConnector, Body>,
    reuse: Option<ReuseLimits>,
    protocol: UpstreamProtocol,
    secured: bool,
}

impl Endpoint {
    /// `tls`: the cluster's TLS, for an endpoint that runs a sidecar (or every endpoint of a cluster that says so).
    pub fn new(
        address: SocketAddr,
        connect_timeout: Duration,
        connections: Connections,
        tls: Option<Arc<ClusterTls>>,
    ) -> Self {
        let (idle_timeout, keepalive) = (connections.idle_timeout, connections.keepalive);
        let secured = tls.is_some();
        let connector = FixedConnector { address, connect_timeout, keepalive, tls, alpn: Alpn::Http1 };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(idle_timeout.unwrap_or(POOL_IDLE_TIMEOUT))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS);
        let http1 = builder.build(connector.clone());
        let http2 = builder.http2_only(true).build(FixedConnector { alpn: Alpn::Http2, ..connector });
        Self { address, http1, http2, reuse: ReuseLimits::of(&connections), protocol: connections.protocol, secured }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether connections to it go through the cluster's TLS (it runs a sidecar, or the cluster reaches every
    /// endpoint over TLS).
    pub fn secured(&self) -> bool {
        self.secured
    }
}

/// An endpoint's response on its way.
pub type EndpointFuture = Either<
    MapErr<ResponseFuture, fn(hyper_util::client::legacy::Error) -> BoxError>,
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>,
>;

impl tower::Service<Request<Body>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.send(request)
    }
}

impl Endpoint {
    /// Sends `request` (without a clone of the endpoint and its pools, as a tower `oneshot` would need). The
    /// upstream protocol follows the downstream one (HTTP/2 in, gRPC included, HTTP/2 out) unless the cluster
    /// fixes it.
    pub fn send(&self, mut request: Request<Body>) -> EndpointFuture {
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
        let client = if http2 { &self.http2 } else { &self.http1 };
        let Some(reuse) = self.reuse else {
            // No per-connection limits: the pool's own future, without another allocation.
            return Either::Left(client.request(request).map_err(BoxError::from as fn(_) -> _));
        };
        let mut capture = capture_connection(&mut request);
        let response = client.request(request);
        Either::Right(Box::pin(async move {
            let mut response = std::pin::pin!(response);
            // Counted when the pool hands the connection out, before the request goes (as Envoy counts streams),
            // so concurrent HTTP/2 requests do not all slip onto a connection before the first answer.
            let finished = tokio::select! {
                result = &mut response => Some(result),
                _ = capture.wait_for_connection_metadata() => None,
            };
            reuse.account(capture);
            Ok(match finished {
                Some(result) => result?,
                None => response.await?,
            })
        }))
    }
}

/// Dials one address whatever the URI says.
#[derive(Clone)]
pub struct FixedConnector {
    address: SocketAddr,
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
    tls: Option<Arc<ClusterTls>>,
    /// What the pool's connections carry (TLS origination offers it as ALPN).
    alpn: Alpn,
}

impl tower::Service<Uri> for FixedConnector {
    type Response = TokioIo<TrackedStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (address, limit, keepalive, tls) = (self.address, self.connect_timeout, self.keepalive, self.tls.clone());
        let alpn = self.alpn;
        Box::pin(async move {
            let stream = tokio::time::timeout(limit, TcpStream::connect(address)).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {address} timed out"))
            })??;
            stream.set_nodelay(true)?;
            if let Some(keepalive) = keepalive {
                socket2::SockRef::from(&stream).set_tcp_keepalive(&tcp_keepalive(keepalive))?;
            }
            let io = match tls {
                Some(tls) => tls.secure(stream, limit, alpn).await?,
                None => UpstreamIo::Plain(stream),
            };
            Ok(TokioIo::new(TrackedStream::new(io)))
        })
    }
}

/// The socket option for a cluster's keepalive settings (unset parts: the system's).
fn tcp_keepalive(k: Keepalive) -> socket2::TcpKeepalive {
    let mut keepalive = socket2::TcpKeepalive::new();
    if let Some(time) = k.time {
        keepalive = keepalive.with_time(time);
    }
    if let Some(interval) = k.interval {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(probes) = k.probes {
        keepalive = keepalive.with_retries(probes);
    }
    keepalive
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use tower::ServiceExt;

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
        let response = endpoint.clone().oneshot(request).await.unwrap();
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

    #[tokio::test]
    async fn upstream_connections_get_the_clusters_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let keepalive =
            Keepalive { probes: Some(4), time: Some(Duration::from_secs(10)), interval: Some(Duration::from_secs(3)) };
        let connector = FixedConnector {
            address,
            connect_timeout: Duration::from_secs(1),
            keepalive: Some(keepalive),
            tls: None,
            alpn: Alpn::Http1,
        };
        let io = connector.oneshot(Uri::from_static("http://ignored/")).await.unwrap();
        let socket = socket2::SockRef::from(io.inner().tcp());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(10));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
    }
}
