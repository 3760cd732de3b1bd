//! The admin listener (localhost only): `GET /config_dump` (the applied config and its xDS versions, as JSON) and
//! `GET /ready` (200 once the first complete config has arrived).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ProxyConfig;

#[derive(Clone)]
pub struct AdminState {
    pub config: watch::Receiver<Arc<ProxyConfig>>,
    pub ready: Arc<AtomicBool>,
}

pub async fn serve(listener: TcpListener, state: AdminState) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&request, &state)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn respond<B>(request: &Request<B>, state: &AdminState) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/config_dump") => {
            let config = state.config.borrow().clone();
            match serde_json::to_vec_pretty(&*config) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(err) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", err.to_string().into_bytes()),
            }
        }
        (&Method::GET, "/ready") => {
            if state.ready.load(Ordering::Relaxed) {
                reply(StatusCode::OK, "text/plain", b"ready\n".to_vec())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", b"waiting for config\n".to_vec())
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"admin endpoints: GET /config_dump, GET /ready\n".to_vec()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}
