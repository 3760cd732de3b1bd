//! A cluster's plain config beyond balancing: its limits (Envoy's circuit breakers), retry budget, outlier
//! detection and upstream connection settings. Read by `upstream`.

use std::time::Duration;

use serde::Serialize;

use super::duration_ms;
use super::policy::optional_ms;

/// Envoy's circuit breaker defaults, where a cluster says nothing.
pub const ENVOY_DEFAULT_MAX: u32 = 1024;
pub const ENVOY_DEFAULT_MAX_RETRIES: u32 = 3;

/// How many requests and retries may be in flight to the cluster; beyond, the proxy answers `503` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: ENVOY_DEFAULT_MAX,
            max_pending_requests: ENVOY_DEFAULT_MAX,
            max_requests: ENVOY_DEFAULT_MAX,
            max_retries: ENVOY_DEFAULT_MAX_RETRIES,
        }
    }
}

impl Limits {
    /// Requests that may be in flight: for HTTP/2, `max_requests` (streams); for HTTP/1.1, one per connection
    /// plus those waiting for one (`max_connections + max_pending_requests`), as Envoy's breakers bound them.
    pub fn max_in_flight(&self, http2: bool) -> u64 {
        if http2 {
            u64::from(self.max_requests)
        } else {
            u64::from(self.max_connections) + u64::from(self.max_pending_requests)
        }
    }
}

/// Retries in flight may be `percent` of requests in flight, and at least `min_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetConfig {
    pub percent: f64,
    pub min_concurrency: u32,
}

/// Envoy's consecutive-error outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutlierPolicy {
    /// 5xx answers (and local-origin failures unless split) in a row that eject; `None`: off.
    pub consecutive_5xx: Option<u32>,
    /// 502/503/504 answers (and local-origin failures unless split) in a row that eject; `None`: off.
    pub consecutive_gateway: Option<u32>,
    /// Local-origin failures (connect failures, resets) counted apart, ejecting after this many; needs `split`.
    pub consecutive_local_origin: Option<u32>,
    pub split_local_origin: bool,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub base_ejection_time: Duration,
    #[serde(with = "duration_ms")]
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Upstream connection settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Connections {
    #[serde(serialize_with = "optional_ms")]
    pub idle_timeout: Option<Duration>,
    pub keepalive: Option<Keepalive>,
    /// Requests a connection carries before it is closed; `None`: no limit.
    pub max_requests: Option<u32>,
    /// How long from its opening a connection takes new requests; `None`: no limit.
    #[serde(serialize_with = "optional_ms")]
    pub max_duration: Option<Duration>,
    pub protocol: UpstreamProtocol,
    /// Requests at once on one HTTP/2 connection, beyond which another is opened (Envoy's
    /// `max_concurrent_streams`, Istio's `maxConcurrentStreams`); `None`: one connection, the server's limit.
    pub max_streams: Option<u32>,
}

/// The HTTP version requests go upstream in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// The client's (Envoy's `use_downstream_protocol_config`, Istio's `useClientProtocol`).
    #[default]
    Client,
    /// HTTP/1.1 whatever the client spoke.
    Http1,
    /// HTTP/2 whatever the client spoke (Istio's `h2UpgradePolicy: UPGRADE`).
    Http2,
}

/// TCP keepalive on upstream connections; unset parts are the system's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Keepalive {
    pub probes: Option<u32>,
    #[serde(serialize_with = "optional_ms")]
    pub time: Option<Duration>,
    #[serde(serialize_with = "optional_ms")]
    pub interval: Option<Duration>,
}

/// Slow start (Envoy's `slow_start_config`, Istio's `warmup`): an endpoint's weight grows over `window` from when
/// it joined the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SlowStart {
    #[serde(with = "duration_ms")]
    pub window: Duration,
    pub aggression: f64,
    pub min_weight_percent: f64,
}

/// A cluster's mutual TLS to sidecars (from its `transport_socket_matches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshTls {
    /// The destination's workload identities (SPIFFE ids); empty: any workload of the trust domain.
    pub identities: Vec<String>,
    /// The name sent as SNI.
    pub server_name: String,
    /// To every endpoint (`ISTIO_MUTUAL`), not only those that run a sidecar.
    pub every_endpoint: bool,
}
