//! The HTTP data path: serving downstream connections, routing and forwarding each request, passthrough to
//! original destinations, and the proxy's own error replies.

pub mod authority;
mod forward;
mod headers;
pub mod local_reply;
pub mod outbound;
pub mod passthrough;
pub mod timeouts;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
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
use timeouts::Timeouts;
use timeouts::connection::{Activity, InFlightBody, TimedIo};

/// Request and response bodies as they travel through the proxy.
pub type Body = BoxBody<Bytes, crate::BoxError>;

/// What forwarding a request reads: the live runtime, the passthrough connection pools, the metrics, the
/// timeouts.
pub struct Forwarder {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub passthrough: Passthrough,
    pub metrics: Arc<Metrics>,
    pub timeouts: Timeouts,
}

impl Forwarder {
    pub fn new(runtime: watch::Receiver<Arc<Runtime>>, metrics: Arc<Metrics>, timeouts: Timeouts) -> Self {
        Self { runtime, passthrough: Passthrough::default(), metrics, timeouts }
    }
}

/// Serves one downstream connection, HTTP/1.1 or HTTP/2 with prior knowledge (detected), forwarding each request
/// towards `destination`. The connection hears about a graceful shutdown through `watcher`.
pub async fn serve_connection<I>(io: I, forwarder: Arc<Forwarder>, destination: Destination, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TimedIo::http(io, activity.clone(), forwarder.timeouts, forwarder.metrics.clone());
    let service = service_fn(move |request| {
        let forwarder = forwarder.clone();
        let in_flight = activity.request_started();
        async move {
            let response = forward::handle(request, &forwarder, destination).await;
            // The request stays in flight (for the idle timeout) until its response body is done.
            Ok::<_, Infallible>(response.map(|body| InFlightBody::new(body, in_flight).boxed()))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(err) = watcher.watch(builder.serve_connection(TokioIo::new(io), service)).await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
