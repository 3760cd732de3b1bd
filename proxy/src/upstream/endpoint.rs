//! One upstream endpoint as a tower `Service`: HTTP/1.1 and HTTP/2 connection pools to a fixed address.
//!
//! The request URI keeps the authority the client used (so `:authority` and `Host` reach the application
//! unchanged); the connector ignores it and always dials the endpoint's address.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::cluster::{Connections, Keepalive};
use crate::http::Body;

/// Connections idle longer than this are closed, unless the cluster says otherwise (`connectionPool.http.idleTimeout`).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Endpoint {
    address: SocketAddr,
    http1: Client<FixedConnector, Body>,
    http2: Client<FixedConnector, Body>,
}

impl Endpoint {
    pub fn new(address: SocketAddr, connect_timeout: Duration, connections: Connections) -> Self {
        let (idle_timeout, keepalive) = (connections.idle_timeout, connections.keepalive);
        let connector = FixedConnector { address, connect_timeout, keepalive };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(idle_timeout.unwrap_or(POOL_IDLE_TIMEOUT));
        let http1 = builder.build(connector.clone());
        let http2 = builder.http2_only(true).build(connector);
        Self { address, http1, http2 }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl tower::Service<Request<Body>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The upstream protocol follows the downstream one: HTTP/2 in (gRPC included), HTTP/2 out.
    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.version() == Version::HTTP_2 { self.http2.request(request) } else { self.http1.request(request) }
    }
}

/// Dials one address whatever the URI says.
#[derive(Clone)]
pub struct FixedConnector {
    address: SocketAddr,
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
}

impl tower::Service<Uri> for FixedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (address, limit, keepalive) = (self.address, self.connect_timeout, self.keepalive);
        Box::pin(async move {
            let stream = tokio::time::timeout(limit, TcpStream::connect(address)).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {address} timed out"))
            })??;
            stream.set_nodelay(true)?;
            if let Some(keepalive) = keepalive {
                socket2::SockRef::from(&stream).set_tcp_keepalive(&tcp_keepalive(keepalive))?;
            }
            Ok(TokioIo::new(stream))
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
    use tower::ServiceExt;

    #[tokio::test]
    async fn upstream_connections_get_the_clusters_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let keepalive =
            Keepalive { probes: Some(4), time: Some(Duration::from_secs(10)), interval: Some(Duration::from_secs(3)) };
        let connector = FixedConnector { address, connect_timeout: Duration::from_secs(1), keepalive: Some(keepalive) };
        let io = connector.oneshot(Uri::from_static("http://ignored/")).await.unwrap();
        let socket = socket2::SockRef::from(io.inner());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(10));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
    }
}
