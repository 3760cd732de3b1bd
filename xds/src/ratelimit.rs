//! A workload's inbound request rate limits (HTTPLocalRateLimitPolicy) as the proxy enforces them, and on the
//! wire as Envoy's local rate limit filter (`envoy.filters.http.local_ratelimit`) in the inbound listener's HTTP
//! chains: the total limit as the filter's token bucket; per calling identity, descriptors keyed
//! [`IDENTITY_KEY`]: one with the caller's SPIFFE id for each override, one with an empty value (Envoy's dynamic
//! descriptor: a bucket per distinct value) for the per-identity limit. Buckets hold one second of requests and
//! refill continuously. Over a limit: `429`, gRPC `RESOURCE_EXHAUSTED`. [`filter`] writes it, [`parse`] reads it
//! back, refusing what it does not enforce.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{LocalRateLimitDescriptor, rate_limit_descriptor};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpFilter, http_filter};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use serde::Serialize;

/// Envoy's name of the filter.
pub const LOCAL_RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";
/// The descriptor key whose value is the caller's SPIFFE id.
pub const IDENTITY_KEY: &str = "weft.client_identity";
/// How many callers get a bucket of their own under the per-identity limit; further ones share one.
pub const MAX_IDENTITIES: u32 = 10_000;
/// Stat prefix of the filter: `weft_ratelimit.<namespace>.<name>` names the policy.
const STAT_PREFIX: &str = "weft_ratelimit";

/// One policy's limits, in requests per second.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RateLimit {
    /// The HTTPLocalRateLimitPolicy, `namespace/name`.
    pub policy: Arc<str>,
    pub total: Option<u32>,
    /// Per calling identity (callers without one are held to `total` only).
    pub identity: Option<u32>,
    /// Per caller SPIFFE id, in place of `identity`.
    pub overrides: BTreeMap<String, u32>,
}

/// The filter enforcing `limit`, before the router.
pub fn filter(limit: &RateLimit) -> HttpFilter {
    let every_request = |key: &str| RuntimeFractionalPercent {
        default_value: Some(FractionalPercent { numerator: 100, denominator: DenominatorType::Hundred as i32 }),
        runtime_key: format!("{STAT_PREFIX}.{key}"),
    };
    let descriptor = |value: &str, rate: u32| LocalRateLimitDescriptor {
        entries: vec![rate_limit_descriptor::Entry { key: IDENTITY_KEY.to_string(), value: value.to_string() }],
        token_bucket: Some(bucket(rate)),
        ..Default::default()
    };
    let mut descriptors: Vec<_> = limit.overrides.iter().map(|(id, rate)| descriptor(id, *rate)).collect();
    descriptors.extend(limit.identity.map(|rate| descriptor("", rate)));
    let (namespace, name) = limit.policy.split_once('/').unwrap_or(("", &limit.policy));
    let config = LocalRateLimit {
        stat_prefix: format!("{STAT_PREFIX}.{namespace}.{name}"),
        token_bucket: limit.total.map(bucket),
        filter_enabled: Some(every_request("enabled")),
        filter_enforced: Some(every_request("enforced")),
        descriptors,
        max_dynamic_descriptors: limit.identity.map(|_| UInt32Value { value: MAX_IDENTITIES }),
        rate_limited_as_resource_exhausted: true,
        ..Default::default()
    };
    HttpFilter {
        name: LOCAL_RATE_LIMIT.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(crate::pack(&config))),
        ..Default::default()
    }
}

/// One second's worth of requests, refilled over that second.
fn bucket(rate: u32) -> TokenBucket {
    TokenBucket {
        max_tokens: rate,
        tokens_per_fill: Some(UInt32Value { value: rate }),
        fill_interval: Some(Duration { seconds: 1, nanos: 0 }),
    }
}

/// The limits a filter built by [`filter`] enforces; a message naming what is not of that shape.
pub fn parse(config: &LocalRateLimit) -> Result<RateLimit, String> {
    let unsupported = [
        (config.status.is_some(), "status"),
        (!config.response_headers_to_add.is_empty(), "response_headers_to_add"),
        (!config.request_headers_to_add_when_not_enforced.is_empty(), "request_headers_to_add_when_not_enforced"),
        (config.local_rate_limit_per_downstream_connection, "local_rate_limit_per_downstream_connection"),
        (config.local_cluster_rate_limit.is_some(), "local_cluster_rate_limit"),
        (!config.rate_limits.is_empty(), "rate_limits"),
        (config.stage != 0, "stage"),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("local rate limit: {field} is not supported"));
    }
    let all = |p: &Option<RuntimeFractionalPercent>| {
        p.as_ref().and_then(|p| p.default_value).is_some_and(|f| {
            let whole = match DenominatorType::try_from(f.denominator) {
                Ok(DenominatorType::Hundred) => 100,
                Ok(DenominatorType::TenThousand) => 10_000,
                Ok(DenominatorType::Million) => 1_000_000,
                Err(_) => return false,
            };
            f.numerator >= whole
        })
    };
    if !all(&config.filter_enabled) || !all(&config.filter_enforced) {
        return Err("local rate limit: only a filter enabled and enforced for every request is supported".to_string());
    }
    let total = config.token_bucket.as_ref().map(rate_of).transpose()?;
    let (mut identity, mut overrides) = (None, BTreeMap::new());
    for descriptor in &config.descriptors {
        let [entry] = descriptor.entries.as_slice() else {
            return Err("local rate limit: a descriptor must have exactly one entry".to_string());
        };
        if entry.key != IDENTITY_KEY {
            return Err(format!("local rate limit: descriptor key {:?} is not supported", entry.key));
        }
        let bucket = descriptor.token_bucket.as_ref().ok_or("local rate limit: a descriptor without a token bucket")?;
        let rate = rate_of(bucket)?;
        if entry.value.is_empty() {
            identity = Some(rate);
        } else {
            overrides.insert(entry.value.clone(), rate);
        }
    }
    let policy = config.stat_prefix.strip_prefix(&format!("{STAT_PREFIX}.")).unwrap_or(&config.stat_prefix);
    let policy = policy.split_once('.').map_or(policy.to_string(), |(ns, name)| format!("{ns}/{name}"));
    Ok(RateLimit { policy: policy.into(), total, identity, overrides })
}

/// The rate of a bucket of one second's requests; a message for any other shape.
fn rate_of(bucket: &TokenBucket) -> Result<u32, String> {
    let one_second = bucket.fill_interval.as_ref().is_some_and(|d| d.seconds == 1 && d.nanos == 0);
    let refill = bucket.tokens_per_fill.as_ref().map_or(1, |t| t.value);
    if !one_second || refill != bucket.max_tokens || bucket.max_tokens == 0 {
        return Err("local rate limit: only token buckets of one second's requests (max_tokens = tokens_per_fill, \
                    fill_interval 1s) are supported"
            .to_string());
    }
    Ok(bucket.max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_back_as_written_and_other_shapes_are_refused() {
        let limit = RateLimit {
            policy: "shop/web".into(),
            total: Some(100),
            identity: Some(20),
            overrides: BTreeMap::from([("spiffe://cluster.local/ns/shop/sa/batch".to_string(), 50)]),
        };
        let Some(http_filter::ConfigType::TypedConfig(any)) = filter(&limit).config_type else { panic!("typed") };
        let config: LocalRateLimit = crate::unpack(&any).unwrap();
        assert_eq!(parse(&config), Ok(limit.clone()));
        let only_identity = RateLimit { total: None, overrides: BTreeMap::new(), ..limit };
        let Some(http_filter::ConfigType::TypedConfig(any)) = filter(&only_identity).config_type else { panic!() };
        let mut config: LocalRateLimit = crate::unpack(&any).unwrap();
        assert_eq!(parse(&config), Ok(only_identity));
        config.descriptors[0].token_bucket.as_mut().unwrap().fill_interval = Some(Duration { seconds: 60, nanos: 0 });
        assert!(parse(&config).unwrap_err().contains("one second"));
        config.filter_enforced = None;
        assert!(parse(&config).unwrap_err().contains("enforced"));
    }
}
