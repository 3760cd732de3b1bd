//! Whether an attempt's outcome is retried under a policy, and how long to wait before the retry. Pure.

use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};

// Names made once: a lookup by `&str` parses the name first, and this runs for every answered attempt.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const RATE_LIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

use crate::config::policy::{RetryOn, RetryPolicy};

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived. `grpc` is the `grpc-status` of a trailers-only gRPC response.
    Answered { status: StatusCode, grpc: Option<u32>, rate_limited: bool },
    /// No connection could be made.
    ConnectFailure,
    /// The HTTP/2 stream was refused before the upstream processed it.
    RefusedStream,
    /// The connection or stream failed after the request was sent.
    Reset,
    /// The per-try timeout passed before the response head.
    Timeout,
    /// Not sent: no endpoint (Envoy's "no healthy upstream"), or over the cluster's limits (overflow). Never
    /// retried, as in Envoy.
    NotSent,
}

impl Outcome {
    pub fn answered(status: StatusCode, headers: &HeaderMap) -> Self {
        let grpc = headers.get(&GRPC_STATUS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Self::Answered { status, grpc, rate_limited: headers.contains_key(&RATE_LIMITED) }
    }
}

const GRPC_CANCELLED: u32 = 1;
const GRPC_DEADLINE_EXCEEDED: u32 = 4;
const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
const GRPC_INTERNAL: u32 = 13;
const GRPC_UNAVAILABLE: u32 = 14;

/// Whether `outcome` is one the policy retries, by Envoy's definitions of the `retry_on` conditions.
pub fn is_retriable(policy: &RetryPolicy, outcome: Outcome) -> bool {
    let on = policy.on;
    // Envoy: 5xx, gateway-error and reset all cover an upstream that did not answer at all.
    let no_answer = [RetryOn::STATUS_5XX, RetryOn::GATEWAY_ERROR, RetryOn::RESET];
    match outcome {
        Outcome::NotSent => false,
        Outcome::ConnectFailure => {
            on.any(&no_answer) || on.any(&[RetryOn::CONNECT_FAILURE, RetryOn::RESET_BEFORE_REQUEST])
        }
        Outcome::RefusedStream => {
            on.any(&no_answer) || on.any(&[RetryOn::REFUSED_STREAM, RetryOn::RESET_BEFORE_REQUEST])
        }
        Outcome::Reset | Outcome::Timeout => on.any(&no_answer),
        Outcome::Answered { status, grpc, rate_limited } => {
            let code = status.as_u16();
            (on.contains(RetryOn::STATUS_5XX) && status.is_server_error())
                || (on.contains(RetryOn::GATEWAY_ERROR) && (502..=504).contains(&code))
                || (on.contains(RetryOn::RETRIABLE_4XX) && code == 409)
                || (on.contains(RetryOn::RETRIABLE_STATUS_CODES) && policy.status_codes.contains(&code))
                || (on.contains(RetryOn::ENVOY_RATELIMITED) && rate_limited)
                || grpc.is_some_and(|g| grpc_retriable(on, g))
        }
    }
}

fn grpc_retriable(on: RetryOn, code: u32) -> bool {
    match code {
        GRPC_CANCELLED => on.contains(RetryOn::GRPC_CANCELLED),
        GRPC_DEADLINE_EXCEEDED => on.contains(RetryOn::GRPC_DEADLINE_EXCEEDED),
        GRPC_RESOURCE_EXHAUSTED => on.contains(RetryOn::GRPC_RESOURCE_EXHAUSTED),
        GRPC_INTERNAL => on.contains(RetryOn::GRPC_INTERNAL),
        GRPC_UNAVAILABLE => on.contains(RetryOn::GRPC_UNAVAILABLE),
        _ => false,
    }
}

/// The wait before retry number `retry` (1 for the first), Envoy's jittered exponential backoff: uniform in
/// `[0, (2^retry - 1) * base)`, at most `max`. `roll` is uniformly random.
pub fn backoff(policy: &RetryPolicy, retry: u32, roll: u64) -> Duration {
    let factor = (1u64 << retry.min(32)).saturating_sub(1).max(1);
    let ceiling =
        (policy.backoff_base.as_nanos() as u64).saturating_mul(factor).min(policy.backoff_max.as_nanos() as u64);
    Duration::from_nanos(if ceiling == 0 { 0 } else { roll % ceiling })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::DEFAULT_BACKOFF_BASE;

    fn policy(on: &str, codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            retries: 2,
            on: RetryOn::parse(on).unwrap(),
            status_codes: codes.to_vec(),
            per_try_timeout: None,
            other_hosts: true,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
        }
    }

    fn status(code: u16) -> Outcome {
        Outcome::Answered { status: StatusCode::from_u16(code).unwrap(), grpc: None, rate_limited: false }
    }

    #[test]
    fn istios_default_policy_retries_what_it_names() {
        let p = policy("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", &[503]);
        assert!(is_retriable(&p, status(503)));
        assert!(!is_retriable(&p, status(500)), "500 is not in the list");
        assert!(!is_retriable(&p, status(502)));
        assert!(is_retriable(&p, Outcome::ConnectFailure));
        assert!(is_retriable(&p, Outcome::RefusedStream));
        assert!(!is_retriable(&p, Outcome::Reset), "a reset after sending may have been processed");
        assert!(!is_retriable(&p, Outcome::Timeout));
        let unavailable = Outcome::Answered { status: StatusCode::OK, grpc: Some(14), rate_limited: false };
        assert!(is_retriable(&p, unavailable));
        let internal = Outcome::Answered { status: StatusCode::OK, grpc: Some(13), rate_limited: false };
        assert!(!is_retriable(&p, internal));
        assert!(!is_retriable(&p, Outcome::NotSent));
    }

    #[test]
    fn broad_conditions_cover_no_answer_at_all() {
        let p = policy("5xx", &[]);
        for outcome in [status(500), status(503), Outcome::ConnectFailure, Outcome::Reset, Outcome::Timeout] {
            assert!(is_retriable(&p, outcome), "{outcome:?}");
        }
        assert!(!is_retriable(&p, status(404)));
        let gateway = policy("gateway-error", &[]);
        assert!(is_retriable(&gateway, status(504)) && !is_retriable(&gateway, status(500)));
        assert!(is_retriable(&policy("retriable-4xx", &[]), status(409)));
        let limited = Outcome::Answered { status: StatusCode::TOO_MANY_REQUESTS, grpc: None, rate_limited: true };
        assert!(is_retriable(&policy("envoy-ratelimited", &[]), limited));
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_maximum() {
        let p = policy("5xx", &[]);
        let most = |retry| (0..2000u64).map(|r| backoff(&p, retry, r * 7_919_993)).max().unwrap();
        assert!(most(1) < Duration::from_millis(25));
        assert!(most(2) < Duration::from_millis(75) && most(2) > Duration::from_millis(25));
        assert!(most(30) <= Duration::from_millis(250), "capped at ten times the base");
        assert_eq!(backoff(&p, 1, 0), Duration::ZERO);
    }
}
