//! HTTPS edge, kept thin: `POST /inject`, `POST /validate`, `GET /healthz`. Bodies are read under
//! [`limits`](crate::limits) and parsed here, decisions are made by the pure [`inject`](crate::inject) and
//! [`validate`](crate::validate) modules, answers encoded by [`admission`](crate::admission). A body that is not an
//! AdmissionReview gets HTTP 400 with the reason; one too large 413, too slow 408.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::admission::{AdmissionRequest, AdmissionResponse, parse_review};
use crate::config::InjectConfig;
use crate::limits::{Admission, Limits};
use weft_process::excerpt;

/// How long in-flight reviews may take to finish on shutdown; connections still open then are closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may wait for, or take to send, a request's headers. hyper's timer also runs while a
/// kept-alive connection waits for its next request, so it must outlast the API server's idle connections (Go's
/// `IdleConnTimeout`, 90 s for Kubernetes clients), or it would close connections the API server is about to
/// reuse, failing that review.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub inject: Arc<InjectConfig>,
    pub admission: Admission,
}

impl AppState {
    pub fn new(inject: InjectConfig, limits: Limits) -> Self {
        Self { inject: Arc::new(inject), admission: Admission::new(limits) }
    }
}

/// The webhook's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/inject", post(inject))
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok\n" }))
        // Bodies are read, within their own limits, by the handlers.
        .layer(DefaultBodyLimit::disable())
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
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(RustlsAcceptor::new(tls).handshake_timeout(HANDSHAKE_TIMEOUT))
        .handle(handle);
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    server.serve(router(state).into_make_service()).await
}

async fn inject(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let admitted = match state.admission.read(&headers, body).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refused("inject", refusal),
    };
    answer("inject", &admitted.body, |request| crate::inject::review(request, &state.inject))
}

async fn validate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let admitted = match state.admission.read(&headers, body).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refused("validate", refusal),
    };
    answer("validate", &admitted.body, crate::validate::review)
}

fn refused(route: &str, refusal: crate::limits::Refusal) -> Response {
    tracing::warn!(route, status = refusal.status().as_u16(), reason = %refusal, "refused an AdmissionReview");
    refusal.into_response()
}

fn answer(route: &str, body: &[u8], decide: impl FnOnce(&AdmissionRequest) -> AdmissionResponse) -> Response {
    let request = match parse_review(body) {
        Ok(request) => request,
        Err(err) => {
            // serde's messages quote the offending value, which may be anything the client sent.
            let err = excerpt(&err.to_string()).into_owned();
            tracing::warn!(route, error = %err, "rejected a malformed AdmissionReview");
            return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response();
        }
    };
    let response = decide(&request);
    tracing::info!(
        route,
        uid = %excerpt(&request.uid),
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
