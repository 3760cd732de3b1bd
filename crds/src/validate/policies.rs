//! Checks of a rule's retry policy (`retries`) and injected faults (`fault`).

use super::{check_duration, check_percentage, not_supported};
use crate::FieldError;
use crate::field_path::Path;
use crate::virtual_service::actions::grpc_status_code;
use crate::virtual_service::{FaultAbort, FaultDelay, HttpFaultInjection, HttpRetry};

/// The retry conditions Istio passes to Envoy's `retry_on` (besides HTTP status numbers).
pub const RETRY_ON_CONDITIONS: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
    "http3-post-connect-failure",
    "reset-before-request",
];

pub(super) fn check_retries(path: &Path, retries: &HttpRetry, errors: &mut Vec<FieldError>) {
    if let Some(attempts) = retries.attempts
        && attempts < 0
    {
        errors.push(path.field("attempts").error(format!("attempts {attempts} must not be negative")));
    }
    if let Some(timeout) = &retries.per_try_timeout
        && let Some(duration) = check_duration(&path.field("perTryTimeout"), timeout, errors)
        && duration < std::time::Duration::from_millis(1)
    {
        errors.push(path.field("perTryTimeout").error("perTryTimeout must be at least 1ms (as in Istio)"));
    }
    if let Some(retry_on) = &retries.retry_on {
        for condition in retry_on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let status = condition.parse::<u32>().ok();
            if !RETRY_ON_CONDITIONS.contains(&condition) && !status.is_some_and(|s| (100..=599).contains(&s)) {
                errors.push(path.field("retryOn").error(format!(
                    "{condition:?} is neither a retry condition ({}) nor an HTTP status code",
                    RETRY_ON_CONDITIONS.join(", ")
                )));
            }
        }
    }
    if retries.retry_remote_localities == Some(true) {
        errors.push(not_supported(
            &path.field("retryRemoteLocalities"),
            "retrying in other localities (Envoy's previous_priorities)",
        ));
    }
    if let Some(backoff) = &retries.backoff
        && check_duration(&path.field("backoff"), backoff, errors).is_some_and(|d| d.is_zero())
    {
        errors.push(path.field("backoff").error("must be greater than 0"));
    }
}

pub(super) fn check_fault(path: &Path, fault: &HttpFaultInjection, errors: &mut Vec<FieldError>) {
    if fault.delay.is_none() && fault.abort.is_none() {
        errors.push(path.error("a fault needs a delay, an abort, or both"));
    }
    if let Some(delay) = &fault.delay {
        check_delay(&path.field("delay"), delay, errors);
    }
    if let Some(abort) = &fault.abort {
        check_abort(&path.field("abort"), abort, errors);
    }
}

fn check_delay(path: &Path, delay: &FaultDelay, errors: &mut Vec<FieldError>) {
    match (&delay.fixed_delay, &delay.exponential_delay) {
        (_, Some(_)) => {
            errors.push(not_supported(&path.field("exponentialDelay"), "an exponential delay (nor by Istio)"));
        }
        (Some(fixed), None) => {
            check_duration(&path.field("fixedDelay"), fixed, errors);
        }
        (None, None) => errors.push(path.field("fixedDelay").error("fixedDelay is required")),
    }
    if let Some(percentage) = delay.percentage {
        check_percentage(&path.field("percentage").field("value"), percentage.value, errors);
    }
    if let Some(percent) = delay.percent
        && !(0..=100).contains(&percent)
    {
        errors.push(path.field("percent").error(format!("percent {percent} is out of range 0-100")));
    }
}

fn check_abort(path: &Path, abort: &FaultAbort, errors: &mut Vec<FieldError>) {
    let kinds = [abort.http_status.is_some(), abort.grpc_status.is_some(), abort.http2_error.is_some()];
    match kinds.iter().filter(|k| **k).count() {
        0 => errors.push(path.error("one of httpStatus or grpcStatus is required")),
        1 => {}
        _ => errors.push(path.error("only one of httpStatus, grpcStatus or http2Error may be set")),
    }
    if let Some(status) = abort.http_status
        && !(200..=599).contains(&status)
    {
        errors.push(path.field("httpStatus").error(format!("HTTP status {status} is out of range 200-599")));
    }
    if let Some(name) = &abort.grpc_status
        && grpc_status_code(name).is_none()
    {
        errors.push(path.field("grpcStatus").error(format!(
            "{name:?} is not a gRPC status name (OK, CANCELLED, UNKNOWN, ..., UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED)"
        )));
    }
    if abort.http2_error.is_some() {
        errors.push(not_supported(&path.field("http2Error"), "aborting with an HTTP/2 error (http2Error)"));
    }
    if let Some(percentage) = abort.percentage {
        check_percentage(&path.field("percentage").field("value"), percentage.value, errors);
    }
}
