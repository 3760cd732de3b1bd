//! The admin listener (localhost only): `GET /config_dump` (the applied config and its xDS versions, as JSON) and
//! `GET /ready` (200 once the first complete config has arrived). Also the small HTTP plumbing the admin and
//! health listeners share.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::identity::CredentialsRx;

use crate::dataplane::Runtime;
use crate::listen::accept;

/// Whether the proxy should receive traffic: a complete config has arrived and it is not shutting down.
#[derive(Clone, Default)]
pub struct Readiness {
    pub config_complete: Arc<AtomicBool>,
    pub draining: Arc<AtomicBool>,
    /// True while a proxy with a CA waits for its first workload certificate.
    pub identity_pending: Arc<AtomicBool>,
}

impl Readiness {
    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining\n")
        } else if !self.config_complete.load(Ordering::Relaxed) {
            Err("waiting for config\n")
        } else if self.identity_pending.load(Ordering::Relaxed) {
            Err("waiting for the workload certificate\n")
        } else {
            Ok(())
        }
    }

    /// `/ready` and `/healthz/ready`: 200 or 503 with the reason.
    pub fn respond(&self) -> Response<Full<Bytes>> {
        match self.check() {
            Ok(()) => reply(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", why.as_bytes().to_vec()),
        }
    }
}

#[derive(Clone)]
pub struct AdminState {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub readiness: Readiness,
    pub credentials: Option<CredentialsRx>,
}

pub async fn serve(listener: TcpListener, state: AdminState) {
    serve_local(listener, Arc::new(move |request| respond(request, &state))).await
}

fn respond(request: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/config_dump") => {
            let config = state.runtime.borrow().config.clone();
            match serde_json::to_vec_pretty(&*config) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(err) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", err.to_string().into_bytes()),
            }
        }
        (&Method::GET, "/ready") => state.readiness.respond(),
        (&Method::GET, "/certificate") => certificate(state.credentials.as_ref()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"admin endpoints: GET /config_dump, GET /ready, GET /certificate\n".to_vec(),
        ),
    }
}

/// `/certificate`: the workload identity and its certificate's validity (never the key).
fn certificate(credentials: Option<&CredentialsRx>) -> Response<Full<Bytes>> {
    let unix = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = match credentials.map(|rx| rx.borrow().clone()) {
        None => serde_json::json!({"mtls": false}),
        Some(None) => serde_json::json!({"mtls": true, "identity": null}),
        Some(Some(c)) => serde_json::json!({
            "mtls": true,
            "identity": c.id.to_string(),
            "not_before": unix(c.not_before),
            "not_after": unix(c.not_after),
        }),
    };
    reply(StatusCode::OK, "application/json", body.to_string().into_bytes())
}

/// A handler of the proxy's own small HTTP endpoints.
pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `listener` with `handler` (HTTP/1.1 or HTTP/2) for as long as the process runs.
pub async fn serve_local(listener: TcpListener, handler: Handler) {
    loop {
        let (stream, _) = accept(&listener).await;
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = handler(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

pub fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}
