//! What one AdmissionReview may cost the webhook: its size, how long its body may take to arrive, and how many
//! are read at once. Together they bound the webhook's memory whatever clients send, so a flood of slow or huge
//! uploads cannot get the pod OOM-killed (with `failurePolicy: Fail`, that would stop pod creation cluster-wide).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest AdmissionReview accepted. The API server stores objects of at most 1.5 MiB (etcd's default request
/// limit) and takes request bodies of at most 3 MiB; the largest review Weft is sent is an UPDATE of a
/// VirtualService or DestinationRule, carrying the object and the old object: about 3 MiB of JSON.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The limits, with the defaults used in production; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// From the moment a review may be read to its last byte; the API server gives up after `timeoutSeconds`
    /// (10 s by default, at most 30 s) anyway.
    pub body_read_timeout: Duration,
    /// Reviews read and decided at once; the others wait.
    pub max_concurrent: usize,
    /// How long a review waits for its turn before it is answered 503.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
            max_concurrent: 16,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Admits reviews under [`Limits`].
#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    slots: Arc<Semaphore>,
}

/// A review's body, and its slot: hold it until the answer is encoded, so parsing counts against the limit too.
pub struct Admitted {
    pub body: Bytes,
    _slot: OwnedSemaphorePermit,
}

/// Why a request was not read, as the HTTP answer it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooLarge { limit: usize },
    BodyTimeout { limit: Duration },
    Busy { waited: Duration },
    BrokenBody(String),
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self { limits, slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))) }
    }

    /// Waits for a slot, then reads the whole body within the limits.
    pub async fn read(&self, headers: &axum::http::HeaderMap, body: Body) -> Result<Admitted, Refusal> {
        let limit = self.limits.max_body_bytes;
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Refusal::TooLarge { limit });
        }
        let waited = self.limits.queue_timeout;
        let slot = tokio::time::timeout(waited, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::Busy { waited })?
            .map_err(|_| Refusal::Busy { waited })?;
        let read = tokio::time::timeout(self.limits.body_read_timeout, Limited::new(body, limit).collect()).await;
        match read {
            Err(_) => Err(Refusal::BodyTimeout { limit: self.limits.body_read_timeout }),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Refusal::TooLarge { limit }),
            Ok(Err(err)) => Err(Refusal::BrokenBody(err.to_string())),
            Ok(Ok(collected)) => Ok(Admitted { body: collected.to_bytes(), _slot: slot }),
        }
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BrokenBody(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge { limit } => write!(f, "AdmissionReview larger than {limit} bytes"),
            Refusal::BodyTimeout { limit } => write!(f, "AdmissionReview body not received within {limit:?}"),
            Refusal::Busy { waited } => write!(f, "webhook busy: no review slot free within {waited:?}"),
            Refusal::BrokenBody(err) => write!(f, "reading the AdmissionReview body: {err}"),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if matches!(self, Refusal::TooLarge { .. } | Refusal::BodyTimeout { .. }) {
            // The rest of the body is not wanted: do not keep the connection for it.
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        response
    }
}
