//! Responses the proxy writes itself (no route, no upstream, timeout), with Envoy's status codes and wording, so
//! users see the same errors they know from Istio.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::Body;
use super::access_log::ResponseFlag;
use super::authority::AuthorityError;

/// gRPC's status for a call refused for want of a resource (a rate limit).
const RESOURCE_EXHAUSTED: u32 = 8;

/// Why the proxy answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    MissingHost,
    BadAuthority(AuthorityError),
    NoRoute,
    NoCluster,
    NoHealthyUpstream,
    ConnectFailure,
    /// The cluster's limits (connection pool, requests in flight) were reached.
    Overflow,
    /// The route's timeout passed before the response head.
    Timeout,
    /// No progress for the stream idle timeout while waiting for the upstream.
    UpstreamStreamTimeout,
    /// No progress for the stream idle timeout while the client's request body stalled.
    ClientStreamTimeout,
    /// An AuthorizationPolicy denied the request.
    AccessDenied,
    /// An HTTPLocalRateLimitPolicy's limit was reached.
    RateLimited,
    /// The request asked to switch to a protocol the proxy does not carry.
    UpgradeRefused,
}

impl LocalReply {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingHost | Self::BadAuthority(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoCluster | Self::NoHealthyUpstream | Self::ConnectFailure | Self::Overflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout | Self::UpstreamStreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ClientStreamTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::AccessDenied | Self::UpgradeRefused => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::MissingHost => "missing Host header",
            Self::BadAuthority(err) => err.message(),
            Self::NoRoute => "no route",
            Self::NoCluster => "cluster not found",
            Self::NoHealthyUpstream => "no healthy upstream",
            Self::ConnectFailure => "upstream connect error or disconnect/reset before headers",
            Self::Overflow => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            Self::Timeout => "upstream request timeout",
            Self::UpstreamStreamTimeout | Self::ClientStreamTimeout => "stream timeout",
            Self::AccessDenied => "RBAC: access denied",
            Self::RateLimited => "local_rate_limited",
            Self::UpgradeRefused => "upgrade not allowed",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = text_response(self.status(), self.message());
        if self == Self::Overflow {
            // As Envoy marks answers its circuit breakers gave.
            response.headers_mut().insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        response
    }

    /// The reply in the shape the client expects: for a gRPC request, a trailers-only gRPC response with the
    /// gRPC status Envoy maps the HTTP status to.
    /// Envoy's response flag for this reply, for the access log.
    pub fn flag(self) -> &'static str {
        match self {
            Self::MissingHost | Self::BadAuthority(_) => "DPE",
            Self::NoRoute => "NR",
            Self::NoCluster => "NC",
            Self::NoHealthyUpstream => "UH",
            Self::ConnectFailure => "UF",
            Self::Overflow => "UO",
            Self::Timeout => "UT",
            Self::UpstreamStreamTimeout | Self::ClientStreamTimeout => "SI",
            Self::AccessDenied => "RBAC",
            Self::RateLimited => "RL",
            Self::UpgradeRefused => "-",
        }
    }

    pub fn into_response_for(self, grpc: bool) -> Response<Body> {
        let mut response = self.unflagged_response(grpc);
        response.extensions_mut().insert(ResponseFlag(self.flag()));
        response
    }

    fn unflagged_response(self, grpc: bool) -> Response<Body> {
        if grpc {
            // Rate limits answer gRPC with RESOURCE_EXHAUSTED (Envoy's `rate_limited_as_resource_exhausted`).
            let code = match self {
                Self::RateLimited => RESOURCE_EXHAUSTED,
                other => super::route::grpc::status_for_http(other.status()),
            };
            super::route::grpc::trailers_only(code, self.message())
        } else {
            self.into_response()
        }
    }
}

/// A plain-text reply of the proxy's own, marked as such.
pub fn text_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{message}\n"))).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response.headers_mut().insert("x-weft-local-reply", HeaderValue::from_static("true"));
    response
}
