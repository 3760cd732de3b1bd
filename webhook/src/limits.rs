//! What AdmissionReviews may cost the webhook: each one's size and how long its body may take to arrive, and the
//! bytes of all of them held at once. Together they bound the webhook's memory whatever clients send, so a flood
//! of slow or huge uploads cannot get the pod OOM-killed (with `failurePolicy: Fail`, that would stop pod
//! creation cluster-wide).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest AdmissionReview accepted. The API server stores objects of at most 1.5 MiB (etcd's default request
/// limit) and takes request bodies of at most 3 MiB; the largest review Weft is sent is an UPDATE of a
/// VirtualService or DestinationRule, carrying the object and the old object: about 3 MiB of JSON.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The limits, with the defaults used in production; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Bytes of review bodies held at once (the buffers' capacity), from their first byte until they are answered.
    /// Counted as bytes arrive, so clients that trickle or stall hold at most twice what they sent (no more than
    /// their declared length): they cannot lock out other reviews the way a count of slots taken before reading
    /// would allow.
    pub memory_budget_bytes: usize,
    /// From the start of a review to its last byte, waits for the memory budget included; the API server gives
    /// up after `timeoutSeconds` (10 s by default, at most 30 s) anyway.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_BODY_BYTES,
            memory_budget_bytes: 16 * MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Admits reviews under [`Limits`].
#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    budget: Arc<Semaphore>,
}

/// A review's body, and its share of the memory budget: hold it until the answer is encoded, so parsing counts
/// against the budget too.
pub struct Admitted {
    pub body: Bytes,
    _held: Option<OwnedSemaphorePermit>,
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
        let budget = limits.memory_budget_bytes.max(limits.max_body_bytes);
        Self { limits, budget: Arc::new(Semaphore::new(budget)) }
    }

    /// Reads the whole body within the limits, taking its buffer from the memory budget as it grows with the bytes
    /// that arrive.
    pub async fn read(&self, headers: &axum::http::HeaderMap, mut body: Body) -> Result<Admitted, Refusal> {
        let limit = self.limits.max_body_bytes;
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Refusal::TooLarge { limit });
        }
        let deadline = tokio::time::Instant::now() + self.limits.body_read_timeout;
        // Copied out of hyper's read buffers as it arrives, so the memory held is the body's, as counted.
        let mut received: Vec<u8> = Vec::new();
        let mut held = None::<OwnedSemaphorePermit>;
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| Refusal::BodyTimeout { limit: self.limits.body_read_timeout })?;
            let data = match frame {
                None => break,
                Some(Err(err)) => return Err(Refusal::BrokenBody(err.to_string())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let needed = received.len() + data.len();
            if needed > limit {
                return Err(Refusal::TooLarge { limit });
            }
            // The budget counts what the buffer holds, its capacity: growing it by doubling as `extend` would
            // (hidden from a count of bytes received) let the budget's bodies take up to twice their bytes.
            if needed > received.capacity() {
                // Never past the declared length, which hyper holds the body to.
                let ceiling = declared.map_or(limit, |length| usize::try_from(length).unwrap_or(limit)).min(limit);
                let capacity = needed.max((received.capacity() * 2).min(ceiling));
                let share = self.take_budget(capacity - received.capacity(), deadline).await?;
                match held.as_mut() {
                    Some(held) => held.merge(share),
                    None => held = Some(share),
                }
                received.reserve_exact(capacity - received.len());
            }
            received.extend_from_slice(&data);
        }
        Ok(Admitted { body: received.into(), _held: held })
    }

    async fn take_budget(&self, bytes: usize, deadline: tokio::time::Instant) -> Result<OwnedSemaphorePermit, Refusal> {
        let busy = Refusal::Busy { waited: self.limits.body_read_timeout };
        let permits = u32::try_from(bytes).map_err(|_| busy.clone())?;
        tokio::time::timeout_at(deadline, self.budget.clone().acquire_many_owned(permits))
            .await
            .map_err(|_| busy.clone())?
            .map_err(|_| busy)
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
            Refusal::Busy { waited } => {
                write!(f, "webhook busy: other reviews held its memory budget for {waited:?}")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_review_that_cannot_get_memory_in_time_is_busy() {
        let limits =
            Limits { max_body_bytes: 1024, memory_budget_bytes: 1024, body_read_timeout: Duration::from_millis(50) };
        let admission = Admission::new(limits);
        let hog = admission.budget.clone().try_acquire_many_owned(1000).unwrap();
        let refusal = admission.read(&Default::default(), Body::from(vec![b'x'; 100])).await.err();
        assert!(matches!(refusal, Some(Refusal::Busy { .. })), "{refusal:?}");
        drop(hog);
        let admitted = admission.read(&Default::default(), Body::from(vec![b'x'; 100])).await;
        assert_eq!(admitted.map(|a| a.body.len()).ok(), Some(100));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large_and_frees_what_it_held() {
        let limits = Limits { max_body_bytes: 10, memory_budget_bytes: 10, body_read_timeout: Duration::from_secs(1) };
        let admission = Admission::new(limits);
        let refusal = admission.read(&Default::default(), Body::from(vec![b'x'; 11])).await.err();
        assert_eq!(refusal, Some(Refusal::TooLarge { limit: 10 }));
        assert_eq!(admission.budget.available_permits(), 10);
    }
}
