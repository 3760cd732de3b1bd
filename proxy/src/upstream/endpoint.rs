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
    pub fn new(address: SocketAddr, connect_timeout: Duration, idle_timeout: Option<Duration>) -> Self {
        let connector = FixedConnector { address, connect_timeout };
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
}

impl tower::Service<Uri> for FixedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (address, limit) = (self.address, self.connect_timeout);
        Box::pin(async move {
            let stream = tokio::time::timeout(limit, TcpStream::connect(address)).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {address} timed out"))
            })??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}
