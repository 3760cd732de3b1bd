//! The operator's health listener (:9090): `/healthz` (alive), `/readyz` (caches synced and a snapshot built),
//! `/metrics` (Prometheus), and the read-only debug API under `/debug` (see [`crate::debug`]).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::debug::{self, DebugState};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HealthState {
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    pub metrics: Arc<Metrics>,
}

pub async fn serve(
    listener: TcpListener,
    state: HealthState,
    debug: DebugState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(debug::router(debug));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    if (state.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
    }
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
