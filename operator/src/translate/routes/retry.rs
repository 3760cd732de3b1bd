//! `retries` as an Envoy `RetryPolicy`, with Istio's defaults (pilot's `route/retry` package): a rule without
//! `retries` still retries twice on connection failures, refused streams, `unavailable`, `cancelled` and 503.

use envoy_types::pb::envoy::config::route::v3::retry_policy::RetryBackOff as BackOff;
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, retry_policy};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::duration::parse_duration;
use weft_crds::virtual_service::HttpRetry;
use weft_xds::filters::PREVIOUS_HOSTS;
use weft_xds::pack;

use super::super::duration;

/// Istio's `retry_on` when a rule does not say.
pub const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's number of retries when a rule does not say.
pub const DEFAULT_ATTEMPTS: u32 = 2;
const STATUS_CONDITION: &str = "retriable-status-codes";

/// The policy of a rule: Istio's default when `retries` is unset, none when it sets no attempts.
pub(super) fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let mut policy = default_policy();
    let Some(retries) = retries else { return Some(policy) };
    let attempts = u32::try_from(retries.attempts.unwrap_or(0)).unwrap_or(0);
    if attempts == 0 {
        return None;
    }
    policy.num_retries = Some(UInt32Value { value: attempts });
    if let Some(retry_on) = retries.retry_on.as_deref().filter(|r| !r.is_empty()) {
        let (mut conditions, codes) = parse_retry_on(retry_on);
        // Status codes alone would never be retried without the condition that enables them.
        if !codes.is_empty() && !conditions.iter().any(|c| c == STATUS_CONDITION) {
            conditions.push(STATUS_CONDITION.to_string());
        }
        policy.retry_on = conditions.join(",");
        policy.retriable_status_codes = codes;
    }
    if let Some(timeout) = retries.per_try_timeout.as_deref().and_then(|t| parse_duration(t).ok()) {
        policy.per_try_timeout = Some(duration(timeout));
    }
    if retries.retry_ignore_previous_hosts == Some(false) {
        policy.retry_host_predicate.clear();
        policy.host_selection_retry_max_attempts = 0;
    }
    if let Some(base) = retries.backoff.as_deref().and_then(|b| parse_duration(b).ok()) {
        // Envoy's max_interval defaults to ten times the base.
        policy.retry_back_off = Some(BackOff { base_interval: Some(duration(base)), max_interval: None });
    }
    Some(policy)
}

fn default_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value { value: DEFAULT_ATTEMPTS }),
        retriable_status_codes: vec![503],
        // A retry goes to another endpoint when there is one (Istio's previous-hosts predicate).
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_string(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(pack(
                &PreviousHostsPredicate {},
            ))),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// Splits `retryOn` into condition names and HTTP status codes (entries that are numbers).
fn parse_retry_on(retry_on: &str) -> (Vec<String>, Vec<u32>) {
    let mut conditions = Vec::new();
    let mut codes = Vec::new();
    for entry in retry_on.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) => conditions.push(entry.to_string()),
        }
    }
    (conditions, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retries(attempts: Option<i32>, retry_on: Option<&str>) -> HttpRetry {
        HttpRetry { attempts, retry_on: retry_on.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn istios_defaults_and_overrides() {
        let default = retry_policy(None).unwrap();
        assert_eq!((default.retry_on.as_str(), default.num_retries.unwrap().value), (DEFAULT_RETRY_ON, 2));
        assert_eq!(default.retriable_status_codes, [503]);
        assert_eq!(retry_policy(Some(&retries(None, Some("5xx")))), None, "retries without attempts: none");
        assert_eq!(retry_policy(Some(&retries(Some(0), None))), None);
        let kept = retry_policy(Some(&retries(Some(4), None))).unwrap();
        assert_eq!((kept.retry_on.as_str(), kept.retriable_status_codes.as_slice()), (DEFAULT_RETRY_ON, &[503][..]));
        let names = retry_policy(Some(&retries(Some(3), Some("gateway-error,reset")))).unwrap();
        assert_eq!((names.retry_on.as_str(), names.retriable_status_codes.len()), ("gateway-error,reset", 0));
        let codes = retry_policy(Some(&retries(Some(3), Some("5xx, 429,503")))).unwrap();
        assert_eq!(codes.retry_on, "5xx,retriable-status-codes");
        assert_eq!(codes.retriable_status_codes, [429, 503]);
        assert_eq!(retry_policy(Some(&retries(Some(1), Some("503")))).unwrap().retry_on, "retriable-status-codes");
    }
}
