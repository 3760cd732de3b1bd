//! Shared test support: an in-process fake Kubernetes API server that records every request.

// Not every test file uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod ads_client;
pub mod operator_process;

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// One request the code under test sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    /// Whether the query string has `key=value` (order and other parameters do not matter).
    pub fn has_query(&self, key: &str, value: &str) -> bool {
        self.query.split('&').any(|pair| pair == format!("{key}={value}"))
    }
}

pub type Log = Arc<Mutex<Vec<Recorded>>>;

/// A kube client whose requests are answered by `route` (status code and JSON body) and recorded in the log.
pub fn fake_client(route: impl Fn(&Recorded) -> (StatusCode, Value) + Send + Sync + 'static) -> (kube::Client, Log) {
    let log: Log = Arc::default();
    let route = Arc::new(route);
    let recorder = log.clone();
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let (route, log) = (route.clone(), recorder.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let recorded = Recorded {
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, body) = route(&recorded);
            log.lock().unwrap().push(recorded);
            let response = Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    (kube::Client::new(service, "default"), log)
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason}),
    )
}

/// An empty list of `kind` at resourceVersion 1.
pub fn empty_list(kind: &str) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}),
    )
}

/// Answers lists with empty lists, watches with an empty stream, status writes with success, and keeps the one
/// Lease it is given.
pub fn fake_cluster() -> impl Fn(&Recorded) -> (StatusCode, serde_json::Value) + Send + Sync + 'static {
    let lease: Mutex<Option<serde_json::Value>> = Mutex::default();
    move |r| {
        let is_watch = r.has_query("watch", "true") || r.has_query("watch", "1");
        match (&r.method, r.path.contains("/leases")) {
            (&Method::GET, true) => match lease.lock().unwrap().clone() {
                Some(stored) => (StatusCode::OK, stored),
                None => status_error(404, "NotFound"),
            },
            (_, true) => {
                let mut stored = r.body.clone();
                stored["metadata"]["resourceVersion"] = json!("7");
                *lease.lock().unwrap() = Some(stored.clone());
                (StatusCode::OK, stored)
            }
            (&Method::GET, false) if is_watch => (StatusCode::OK, json!(null)),
            (&Method::GET, false) => empty_list("Thing"),
            _ => (StatusCode::OK, r.body.clone()),
        }
    }
}
