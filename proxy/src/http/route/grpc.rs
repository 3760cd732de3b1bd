//! gRPC on the request path: the client's `grpc-timeout` deadline, and replies of the proxy's own in gRPC's
//! shape (a trailers-only response carrying `grpc-status`), as Envoy sends them to gRPC clients.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};

use crate::config::policy::GrpcTimeout;
use crate::http::Body;

/// Whether the request is gRPC (by its content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `grpc-timeout` header's value (`1-8 digits` + unit `H M S m u n`), if well-formed.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline header of gRPC requests.
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The timeout a request gets: the route's, or for a gRPC request (`grpc`: its content type says so; Envoy
/// reads the header of gRPC requests only) with `grpc-timeout` when the route honours it, that deadline capped
/// by the route's maximum (Envoy's `grpc_timeout_header_max`; none: uncapped).
pub fn request_timeout(
    route: Option<Duration>,
    honouring: GrpcTimeout,
    (headers, grpc): (&HeaderMap, bool),
) -> Option<Duration> {
    let GrpcTimeout::Honoured { max } = honouring else { return route };
    if !grpc {
        return route;
    }
    let asked = headers.get(&GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse_timeout);
    match (asked, max) {
        (Some(asked), Some(max)) => Some(asked.min(max)),
        (Some(asked), None) => Some(asked),
        (None, _) => route,
    }
}

/// A trailers-only gRPC response: HTTP 200 with `grpc-status` and `grpc-message` in the head.
pub fn trailers_only(code: u32, message: &str) -> Response<Body> {
    let mut response = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", message);
    }
    headers.insert("x-weft-local-reply", HeaderValue::from_static("true"));
    response
}

/// The gRPC status Envoy gives a local reply with this HTTP status (gRPC's HTTP-to-status mapping).
pub fn status_for_http(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("123456789n"), None, "at most 8 digits");
        assert_eq!(parse_timeout("5x"), None);
        assert_eq!(parse_timeout("m"), None);
        assert_eq!(parse_timeout(""), None);
    }

    #[test]
    fn a_grpc_deadline_is_capped_by_the_route() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static("10S"));
        let route = Some(Duration::from_secs(2));
        let honoured = GrpcTimeout::Honoured { max: route };
        assert_eq!(request_timeout(route, honoured, (&headers, true)), route, "capped");
        headers.insert("grpc-timeout", HeaderValue::from_static("500m"));
        assert_eq!(request_timeout(route, honoured, (&headers, true)), Some(Duration::from_millis(500)));
        assert_eq!(request_timeout(route, GrpcTimeout::Ignored, (&headers, true)), route);
        let uncapped = GrpcTimeout::Honoured { max: None };
        assert_eq!(request_timeout(None, uncapped, (&headers, true)), Some(Duration::from_millis(500)));
        assert_eq!(request_timeout(route, honoured, (&HeaderMap::new(), true)), route, "no header: the route's");
        let not_grpc = request_timeout(route, honoured, (&headers, false));
        assert_eq!(not_grpc, route, "not a gRPC request: the header is not gRPC's, as Envoy reads it");
    }
}
