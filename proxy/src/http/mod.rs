//! The HTTP data path: serving downstream connections, routing and forwarding each request, passthrough to
//! original destinations, and the proxy's own error replies.

mod forward;
mod headers;
pub mod local_reply;
pub mod outbound;
pub mod passthrough;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use forward::Destination;

use crate::dataplane::Runtime;
use crate::metrics::Metrics;
use passthrough::Passthrough;

/// Request and response bodies as they travel through the proxy.
pub type Body = BoxBody<Bytes, crate::BoxError>;

/// What forwarding a request reads: the live runtime, the passthrough connection pools, the metrics.
pub struct Forwarder {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub passthrough: Passthrough,
    pub metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(runtime: watch::Receiver<Arc<Runtime>>, metrics: Arc<Metrics>) -> Self {
        Self { runtime, passthrough: Passthrough::default(), metrics }
    }
}

/// Serves one downstream connection, HTTP/1.1 or HTTP/2 with prior knowledge (detected), forwarding each request
/// towards `destination`. The connection hears about a graceful shutdown through `watcher`.
pub async fn serve_connection<I>(io: I, forwarder: Arc<Forwarder>, destination: Destination, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let forwarder = forwarder.clone();
        async move { Ok::<_, Infallible>(forward::handle(request, &forwarder, destination).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(err) = watcher.watch(builder.serve_connection(TokioIo::new(io), service)).await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
