//! Fault injection (Istio's `fault`, Envoy's HTTP fault filter): delay a share of requests, and answer a share
//! with an error of the proxy's own instead of sending them on. Delayed requests still go through; an aborted one
//! never reaches the upstream.

use http::{Request, Response};
use tower::ServiceExt;

use super::grpc::{is_grpc, trailers_only};
use super::{Next, RouteFuture, RouteStep};
use crate::config::policy::{AbortWith, Fault};
use crate::http::Body;
use crate::http::local_reply::text_response;
use crate::metrics::{Metrics, RouteEvent};

#[derive(Clone, Copy)]
pub struct FaultLayer<'a> {
    fault: &'a Fault,
    cluster: &'a str,
    metrics: &'a Metrics,
}

impl<'a> FaultLayer<'a> {
    pub fn new(fault: &'a Fault, cluster: &'a str, metrics: &'a Metrics) -> Self {
        Self { fault, cluster, metrics }
    }
}

impl<'a> RouteStep<'a> for FaultLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, request: Request<Body>) -> RouteFuture<'a> {
        let FaultLayer { fault, cluster, metrics } = self;
        // Rolled apart, as Envoy does: a request may be both delayed and aborted.
        let delay = fault.delay.as_ref().filter(|d| d.share.contains(rand::random())).map(|d| d.delay);
        let abort = fault.abort.as_ref().filter(|a| a.share.contains(rand::random())).map(|a| a.with);
        let grpc = is_grpc(request.headers());
        // Boxed before the async block: rustc cannot yet prove the block `Send` when it holds `S::Future`.
        let next: Result<RouteFuture<'a>, AbortWith> = match abort {
            Some(with) => Err(with),
            None => Ok(Box::pin(next.oneshot(request))),
        };
        Box::pin(async move {
            if let Some(delay) = delay {
                metrics.route_event(cluster, RouteEvent::FaultDelay);
                tokio::time::sleep(delay).await;
            }
            match next {
                Ok(call) => call.await,
                Err(with) => {
                    metrics.route_event(cluster, RouteEvent::FaultAbort);
                    Ok(aborted(with, grpc))
                }
            }
        })
    }
}

/// The reply to an aborted request: the configured HTTP status, or for gRPC a trailers-only response with the
/// configured gRPC status (an HTTP status on a gRPC request becomes the gRPC status Envoy maps it to).
fn aborted(with: AbortWith, grpc: bool) -> Response<Body> {
    const MESSAGE: &str = "fault filter abort";
    match with {
        AbortWith::Grpc(code) => trailers_only(code, MESSAGE),
        AbortWith::Http(status) if grpc => trailers_only(super::grpc::status_for_http(status), MESSAGE),
        AbortWith::Http(status) => text_response(status, MESSAGE),
    }
}
