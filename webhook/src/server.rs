//! HTTPS edge, kept thin: `POST /inject`, `POST /validate`, `GET /healthz`. Bodies are parsed here, decisions are
//! made by the pure [`inject`](crate::inject) and [`validate`](crate::validate) modules, answers encoded by
//! [`admission`](crate::admission). A body that is not an AdmissionReview gets HTTP 400 with the reason.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::admission::{AdmissionRequest, AdmissionResponse, parse_review};
use crate::config::InjectConfig;

/// Largest body accepted: an AdmissionReview of an UPDATE carries two objects of up to ~1.5 MiB each.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long in-flight reviews may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub inject: Arc<InjectConfig>,
}

/// The webhook's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/inject", post(inject))
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves HTTPS on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: RustlsConfig,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::<std::net::SocketAddr>::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    axum_server::Server::from_listener(listener)
        .acceptor(RustlsAcceptor::new(tls))
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
}

async fn inject(State(state): State<AppState>, body: Bytes) -> Response {
    answer("inject", &body, |request| crate::inject::review(request, &state.inject))
}

async fn validate(body: Bytes) -> Response {
    answer("validate", &body, crate::validate::review)
}

fn answer(route: &str, body: &[u8], decide: impl FnOnce(&AdmissionRequest) -> AdmissionResponse) -> Response {
    let request = match parse_review(body) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(route, error = %err, "rejected a malformed AdmissionReview");
            return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response();
        }
    };
    let response = decide(&request);
    tracing::info!(
        route,
        uid = %request.uid,
        operation = ?request.operation,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = request.name.as_deref().unwrap_or_default(),
        allowed = response.allowed,
        patch_ops = response.patch.as_ref().map_or(0, |p| p.0.len()),
        message = response.status.as_ref().map(|s| s.message.as_str()).unwrap_or_default(),
        "reviewed",
    );
    match response.to_review_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the response: {err}\n")).into_response(),
    }
}
