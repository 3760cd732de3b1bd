//! Per-route policies -> plain config: header operations, retry policies, fault injection, shares of requests.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderValueOption, header_value_option};
use envoy_types::pb::envoy::config::route::v3 as route;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::Any;
use http::{HeaderName, HeaderValue, StatusCode};
use weft_xds::filters::{CORS, FAULT, PREVIOUS_HOSTS};

use super::routes::string_matcher;
use super::to_duration;
use crate::config::policy::{
    AbortWith, Cors, DEFAULT_BACKOFF_BASE, Fault, FaultAbort, FaultDelay, Fraction, HeaderOps, RetryOn, RetryPolicy,
};

/// Header operations from Envoy's `*_headers_to_add` / `*_headers_to_remove`.
pub(super) fn header_ops(add: &[HeaderValueOption], remove: &[String]) -> Result<HeaderOps, String> {
    let mut ops = HeaderOps::default();
    for option in add {
        let header = option.header.as_ref().ok_or("a header to add needs a header")?;
        let name = header_name(&header.key)?;
        let raw = if header.raw_value.is_empty() { header.value.as_bytes() } else { &header.raw_value };
        let raw = unescape_percent(raw).ok_or_else(|| {
            format!("header {:?}: %VARIABLE% substitutions are not supported (a literal % is %%)", header.key)
        })?;
        let value = HeaderValue::from_bytes(&raw).map_err(|_| format!("header {:?}: invalid value", header.key))?;
        #[allow(deprecated)] // `append` is deprecated but still valid xDS.
        let append = match option.append.as_ref() {
            Some(append) => append.value,
            None => {
                use header_value_option::HeaderAppendAction as A;
                match A::try_from(option.append_action) {
                    Ok(A::AppendIfExistsOrAdd) => true,
                    Ok(A::OverwriteIfExistsOrAdd) => false,
                    _ => {
                        return Err(format!(
                            "header {:?}: only append and overwrite actions are supported",
                            header.key
                        ));
                    }
                }
            }
        };
        if append { ops.add.push((name, value)) } else { ops.set.push((name, value)) }
    }
    ops.remove = remove.iter().map(|n| header_name(n)).collect::<Result<_, _>>()?;
    Ok(ops)
}

/// Envoy's header values escape `%` as `%%`; a lone `%` starts a substitution, which the proxy does not do.
fn unescape_percent(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        if b == b'%' && bytes.next() != Some(b'%') {
            return None;
        }
        out.push(b);
    }
    Some(out)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.starts_with(':') {
        return Err(format!("header {name:?}: pseudo-headers cannot be modified"));
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))
}

/// A retry policy, or `None` when it retries nothing (no retries, or no conditions).
pub(super) fn retry_policy(p: &route::RetryPolicy) -> Result<Option<RetryPolicy>, String> {
    if p.retry_priority.is_some() || !p.retriable_headers.is_empty() || !p.retriable_request_headers.is_empty() {
        return Err("retry priorities and retriable headers are not supported".into());
    }
    if p.rate_limited_retry_back_off.is_some() || !p.retry_options_predicates.is_empty() {
        return Err("rate-limited backoff and retry option predicates are not supported".into());
    }
    let mut other_hosts = false;
    for predicate in &p.retry_host_predicate {
        if predicate.name != PREVIOUS_HOSTS {
            return Err(format!("retry host predicate {:?} is not supported", predicate.name));
        }
        other_hosts = true;
    }
    let on = RetryOn::parse(&p.retry_on)?;
    // Envoy retries once when `num_retries` is unset.
    let retries = p.num_retries.as_ref().map_or(1, |n| n.value);
    let status_codes =
        p.retriable_status_codes.iter().map(|c| status(*c).map(|s| s.as_u16())).collect::<Result<Vec<_>, _>>()?;
    let per_try_timeout = p.per_try_timeout.as_ref().map(to_duration).transpose()?.filter(|d| !d.is_zero());
    let backoff = p.retry_back_off.as_ref();
    let backoff_base = match backoff.and_then(|b| b.base_interval.as_ref()) {
        Some(d) => to_duration(d)?.max(Duration::from_millis(1)),
        None => DEFAULT_BACKOFF_BASE,
    };
    let backoff_max = match backoff.and_then(|b| b.max_interval.as_ref()) {
        Some(d) => to_duration(d)?.max(backoff_base),
        None => backoff_base * 10,
    };
    if retries == 0 || on == RetryOn::default() {
        return Ok(None);
    }
    Ok(Some(RetryPolicy { retries, on, status_codes, per_try_timeout, other_hosts, backoff_base, backoff_max }))
}

fn status(code: u32) -> Result<StatusCode, String> {
    u16::try_from(code)
        .ok()
        .filter(|c| (100..600).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| format!("{code} is not an HTTP status code"))
}

/// A route's per-filter configs: fault injection and CORS; any other filter's config is refused.
#[derive(Debug, Default)]
pub(super) struct FilterConfigs {
    pub fault: Option<Fault>,
    pub cors: Option<Cors>,
}

pub(super) fn filter_configs(configs: &HashMap<String, Any>) -> Result<FilterConfigs, String> {
    let mut found = FilterConfigs::default();
    for (name, any) in configs {
        match name.as_str() {
            FAULT => {
                let config: HttpFault = weft_xds::unpack(any).map_err(|e| format!("fault config: {e}"))?;
                found.fault = Some(fault_of(&config)?);
            }
            CORS => {
                let config: CorsPolicy = weft_xds::unpack(any).map_err(|e| format!("CORS config: {e}"))?;
                found.cors = Some(cors_of(&config)?);
            }
            _ => return Err(format!("per-route config for filter {name:?} is not supported")),
        }
    }
    Ok(found)
}

fn cors_of(c: &CorsPolicy) -> Result<Cors, String> {
    if c.filter_enabled.is_some() || c.shadow_enabled.is_some() || c.allow_private_network_access.is_some() {
        return Err("CORS filter_enabled, shadow_enabled and private network access are not supported".into());
    }
    Ok(Cors {
        allow_origins: c.allow_origin_string_match.iter().map(string_matcher).collect::<Result<_, _>>()?,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.clone(),
        allow_credentials: c.allow_credentials.as_ref().is_some_and(|b| b.value),
        forward_unmatched_preflights: c.forward_not_matching_preflights.as_ref().is_none_or(|b| b.value),
    })
}

fn fault_of(config: &HttpFault) -> Result<Fault, String> {
    let delay = match &config.delay {
        None => None,
        Some(d) => match &d.fault_delay_secifier {
            Some(fault_delay::FaultDelaySecifier::FixedDelay(delay)) => {
                Some(FaultDelay { delay: to_duration(delay)?, share: optional_fraction(d.percentage.as_ref())? })
            }
            _ => return Err("a fault delay must be a fixed delay".into()),
        },
    };
    let abort = match &config.abort {
        None => None,
        Some(a) => {
            let with = match a.error_type {
                Some(fault_abort::ErrorType::HttpStatus(code)) => AbortWith::Http(
                    status(code)
                        .ok()
                        .filter(|s| s.as_u16() >= 200)
                        .ok_or_else(|| format!("fault abort status {code} is not in 200-599"))?,
                ),
                Some(fault_abort::ErrorType::GrpcStatus(code)) if code <= 16 => AbortWith::Grpc(code),
                Some(fault_abort::ErrorType::GrpcStatus(code)) => {
                    return Err(format!("fault abort gRPC status {code} is not a gRPC status code"));
                }
                _ => return Err("a fault abort must give an HTTP or gRPC status".into()),
            };
            Some(FaultAbort { with, share: optional_fraction(a.percentage.as_ref())? })
        }
    };
    Ok(Fault { delay, abort })
}

/// Envoy's reading of an unset percentage is its protobuf default: 0%.
fn optional_fraction(f: Option<&FractionalPercent>) -> Result<Fraction, String> {
    f.map_or(Ok(Fraction { numerator: 0, denominator: 100 }), fraction)
}

/// A share of requests; more than the whole is the whole, as Envoy clamps it.
pub(super) fn fraction(f: &FractionalPercent) -> Result<Fraction, String> {
    use fractional_percent::DenominatorType as D;
    let denominator = match D::try_from(f.denominator) {
        Ok(D::Hundred) => 100,
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        Err(_) => return Err(format!("unknown percentage denominator {}", f.denominator)),
    };
    Ok(Fraction { numerator: f.numerator.min(denominator), denominator })
}
