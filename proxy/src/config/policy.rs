//! What a route does besides choosing a cluster: retries, fault injection, mirroring, rewrites, header operations,
//! redirects and direct responses. Plain values converted from the route's xDS fields; the request path's layers
//! (`http::route`) are configured from them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Serialize, Serializer};

use super::duration_ms;
use super::matcher::StringMatcher;

/// A share of requests, `numerator / denominator` (xDS `FractionalPercent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const ALL: Self = Self { numerator: 1, denominator: 1 };

    /// Whether a request with this uniformly random `roll` is in the share.
    pub fn contains(self, roll: u64) -> bool {
        self.denominator > 0 && roll % u64::from(self.denominator) < u64::from(self.numerator)
    }
}

/// Request or response header operations, applied in this order: remove, set (replace), add (append).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOps {
    #[serde(serialize_with = "header_pairs")]
    pub set: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "header_pairs")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "header_names")]
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Which failures a retry policy retries (Envoy's `retry_on` conditions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const STATUS_5XX: Self = Self(1);
    pub const GATEWAY_ERROR: Self = Self(1 << 1);
    pub const RESET: Self = Self(1 << 2);
    pub const CONNECT_FAILURE: Self = Self(1 << 3);
    pub const RETRIABLE_4XX: Self = Self(1 << 4);
    pub const REFUSED_STREAM: Self = Self(1 << 5);
    pub const RETRIABLE_STATUS_CODES: Self = Self(1 << 6);
    pub const ENVOY_RATELIMITED: Self = Self(1 << 7);
    pub const GRPC_CANCELLED: Self = Self(1 << 8);
    pub const GRPC_DEADLINE_EXCEEDED: Self = Self(1 << 9);
    pub const GRPC_INTERNAL: Self = Self(1 << 10);
    pub const GRPC_RESOURCE_EXHAUSTED: Self = Self(1 << 11);
    pub const GRPC_UNAVAILABLE: Self = Self(1 << 12);
    pub const RESET_BEFORE_REQUEST: Self = Self(1 << 13);

    /// Envoy's condition names. `retriable-headers` and `http3-post-connect-failure` are known names that can
    /// never fire here (no retriable headers are configured; no HTTP/3), so they set nothing.
    pub const NAMES: [(&'static str, Self); 16] = [
        ("5xx", Self::STATUS_5XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("envoy-ratelimited", Self::ENVOY_RATELIMITED),
        ("cancelled", Self::GRPC_CANCELLED),
        ("deadline-exceeded", Self::GRPC_DEADLINE_EXCEEDED),
        ("internal", Self::GRPC_INTERNAL),
        ("resource-exhausted", Self::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", Self::GRPC_UNAVAILABLE),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("retriable-headers", Self(0)),
        ("http3-post-connect-failure", Self(0)),
    ];

    /// Parses Envoy's comma-separated `retry_on`; `Err` names the first unknown condition.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = Self::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (_, flag) = Self::NAMES
                .iter()
                .find(|(known, _)| *known == name)
                .ok_or_else(|| format!("unknown retry condition {name:?}"))?;
            set.0 |= flag.0;
        }
        Ok(set)
    }

    pub fn contains(self, other: Self) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    pub fn any(self, others: &[Self]) -> bool {
        others.iter().any(|o| self.contains(*o))
    }
}

impl Serialize for RetryOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = Self::NAMES.iter().filter(|(_, f)| self.contains(*f)).map(|(n, _)| *n).collect();
        names.serialize(s)
    }
}

/// Envoy's default backoff: 25 ms base interval, at most ten times that.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub on: RetryOn,
    pub status_codes: Vec<u16>,
    #[serde(serialize_with = "optional_ms")]
    pub per_try_timeout: Option<Duration>,
    /// Retries go to endpoints not tried yet for this request, when there are any.
    pub other_hosts: bool,
    #[serde(with = "duration_ms")]
    pub backoff_base: Duration,
    #[serde(with = "duration_ms")]
    pub backoff_max: Duration,
}

/// Where a request's consistent-hashing key comes from (Envoy's route `hash_policy`, from Istio's
/// `consistentHash`). Several combine, as in Envoy; none present: no key (a random pick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPolicy {
    Header(#[serde(serialize_with = "header_name")] HeaderName),
    Cookie(CookiePolicy),
    QueryParameter(String),
    /// The client's IP address.
    SourceIp,
}

/// Hashing by a cookie; with a `ttl`, the proxy sets the cookie on a client that lacks it (Envoy's generated
/// cookie; a zero `ttl`: a session cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CookiePolicy {
    pub name: String,
    #[serde(serialize_with = "optional_ms")]
    pub ttl: Option<Duration>,
    /// The generated cookie's `Path`; empty: none.
    pub path: String,
}

impl CookiePolicy {
    /// A cookie that is only read, never set.
    pub fn read_only(name: impl Into<String>) -> Self {
        Self { name: name.into(), ttl: None, path: String::new() }
    }
}

fn header_name<S: Serializer>(name: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

/// How a gRPC client's `grpc-timeout` header bounds the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrpcTimeout {
    /// Not looked at.
    Ignored,
    /// Honoured as a deadline, never longer than `max` (when set).
    Honoured {
        #[serde(serialize_with = "optional_ms")]
        max: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    pub cluster: String,
    pub share: Fraction,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rewrite {
    /// Replaces the part of the path the route's prefix (or exact path) matched.
    pub prefix: Option<String>,
    /// Replaces every match of the pattern in the path; the substitution in `regex` crate syntax (`${1}`).
    pub regex: Option<RegexRewrite>,
    pub authority: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegexRewrite {
    #[serde(serialize_with = "super::matcher::regex_text")]
    pub pattern: regex::Regex,
    pub substitution: String,
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Self) -> bool {
        let regex =
            |r: &Option<RegexRewrite>| r.as_ref().map(|r| (r.pattern.as_str().to_string(), r.substitution.clone()));
        self.prefix == other.prefix && self.authority == other.authority && regex(&self.regex) == regex(&other.regex)
    }
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.prefix.is_none() && self.regex.is_none() && self.authority.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultDelay {
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    pub share: Fraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortWith {
    #[serde(serialize_with = "status_code")]
    Http(StatusCode),
    /// A gRPC status code, answered as a trailers-only gRPC response.
    Grpc(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultAbort {
    pub with: AbortWith,
    pub share: Fraction,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

/// A redirect the proxy answers with; unset parts keep the request's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// Drop the request's query string (else it is kept, unless `path` has one).
    pub strip_query: bool,
    #[serde(serialize_with = "status_code")]
    pub status: StatusCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectResponse {
    #[serde(serialize_with = "status_code")]
    pub status: StatusCode,
    #[serde(serialize_with = "bytes_text")]
    pub body: Bytes,
}

/// A route's CORS policy (Istio's `corsPolicy`, Envoy's CORS filter per route).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: bool,
    /// Preflight requests from origins not allowed go on to the upstream (else they are answered without CORS
    /// headers). Envoy's default: forwarded.
    pub forward_unmatched_preflights: bool,
}

fn header_pairs<S: Serializer>(pairs: &[(HeaderName, HeaderValue)], s: S) -> Result<S::Ok, S::Error> {
    let text: Vec<(&str, String)> =
        pairs.iter().map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    text.serialize(s)
}

fn header_names<S: Serializer>(names: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    names.iter().map(HeaderName::as_str).collect::<Vec<_>>().serialize(s)
}

fn status_code<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

fn bytes_text<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

pub(crate) fn optional_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_millis()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_conditions_parse_by_envoys_names() {
        let on =
            RetryOn::parse("connect-failure, refused-stream,unavailable,cancelled,retriable-status-codes").unwrap();
        assert!(on.contains(RetryOn::CONNECT_FAILURE) && on.contains(RetryOn::GRPC_UNAVAILABLE));
        assert!(!on.contains(RetryOn::STATUS_5XX));
        assert_eq!(serde_json::to_value(on).unwrap()[0], "connect-failure");
        assert_eq!(RetryOn::parse("5xx,bogus").unwrap_err(), "unknown retry condition \"bogus\"");
        assert!(!RetryOn::parse("retriable-headers").unwrap().contains(RetryOn(0)), "a no-op name sets nothing");
    }

    #[test]
    fn a_fraction_takes_its_share_of_rolls() {
        let tenth = Fraction { numerator: 100_000, denominator: 1_000_000 };
        assert_eq!((0..1_000_000u64).filter(|r| tenth.contains(*r)).count(), 100_000);
        assert!(Fraction::ALL.contains(12345));
        assert!(!Fraction { numerator: 0, denominator: 100 }.contains(0));
        assert!(!Fraction { numerator: 1, denominator: 0 }.contains(0), "a zero denominator takes nothing");
    }
}
