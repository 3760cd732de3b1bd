//! The health listener (:15020, reachable from outside the pod: `weft-proxy init` never captures it):
//! `GET /healthz/ready` (200 once a complete config is applied and the proxy is not draining, else 503; what
//! kubelet probes) and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::admin::{Readiness, reply, serve_local};
use crate::metrics::Metrics;

pub const READY_PATH: &str = "/healthz/ready";
pub const METRICS_PATH: &str = "/metrics";

#[derive(Clone)]
pub struct HealthState {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
}

pub async fn serve(listener: TcpListener, state: HealthState) {
    serve_local(listener, Arc::new(move |request| respond(request, &state))).await
}

fn respond(request: &Request<Incoming>, state: &HealthState) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, READY_PATH) => state.readiness.respond(),
        (&Method::GET, METRICS_PATH) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode().into_bytes(),
        ),
        _ => {
            reply(StatusCode::NOT_FOUND, "text/plain", b"health endpoints: GET /healthz/ready, GET /metrics\n".to_vec())
        }
    }
}
