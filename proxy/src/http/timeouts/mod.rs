//! Timeouts of the data path, with Envoy's names and (where Envoy has one) defaults, so that no client, backend or
//! connection can hold the proxy's resources forever:
//!
//! | setting | Envoy | default | what happens |
//! |---|---|---|---|
//! | `request_headers` | HCM `request_headers_timeout` | 10 s (Envoy: off; its edge best practice) | an HTTP/1 request whose headers are not all in this long after their first byte gets `408` and the connection closes |
//! | `stream_idle` | HCM `stream_idle_timeout` | 5 min | a request with no progress either way for this long gets `408` (its body stalled) or `504` (the upstream is silent); after the response has started it is reset |
//! | `idle` | HCM `common_http_protocol_options.idle_timeout`, TCP proxy `idle_timeout` | 1 h | a connection with no request in flight and no bytes either way for this long is closed |
//!
//! The route's own `timeout` (a VirtualService's `http[].timeout`) is a deadline on the whole response, see
//! [`stream`]. `None` disables a timeout (a zero flag value).

pub mod connection;
pub mod stream;

use std::time::Duration;

/// The data path's timeouts (the route timeout comes with each route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub request_headers: Option<Duration>,
    pub stream_idle: Option<Duration>,
    pub idle: Option<Duration>,
}

pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request_headers: Some(DEFAULT_REQUEST_HEADERS_TIMEOUT),
            stream_idle: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            idle: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

/// A flag value as a timeout: zero turns it off.
pub fn enabled(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// Which timeout fired, as counted in `weft_proxy_timeouts_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    RequestHeaders,
    StreamIdle,
    Idle,
    Route,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestHeaders => "request_headers",
            Self::StreamIdle => "stream_idle",
            Self::Idle => "idle",
            Self::Route => "route",
        }
    }
}
