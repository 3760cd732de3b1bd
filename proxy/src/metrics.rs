//! The proxy's Prometheus metrics, served on `/metrics` of the health listener (:15020). Names start with
//! `weft_proxy_`; counters end in `_total`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weft_xds::ResourceType;

use crate::http::on_demand::Settled;
use crate::http::timeouts::TimeoutKind;
use crate::telemetry::{GoldenMetrics, ServiceLabels};

/// Which way traffic flows relative to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the pod's application to somewhere else.
    Outbound,
    /// From somewhere else to the pod's application.
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// How a connection is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Served as HTTP: every request routed by the mesh's rules.
    Http,
    /// A mesh port (it has routes), but the bytes are not HTTP: forwarded as TCP to the original destination.
    Tcp,
    /// Not a mesh port (no routes for it): forwarded as TCP to the original destination without looking.
    Passthrough,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Passthrough => "passthrough",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: &'static str,
    cluster: Arc<str>,
    code_class: &'static str,
}

/// An inbound request's caller and port. `source_principal` is the caller's SPIFFE id when it came over a
/// sidecar's mutual TLS, `unknown` otherwise (Istio's label and value).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InboundLabels {
    pub port: String,
    pub source_principal: String,
    code_class: &'static str,
}

impl InboundLabels {
    pub fn new(port: u16, source_principal: Option<&str>) -> Self {
        let principal = source_principal.unwrap_or("unknown").to_string();
        Self { port: port.to_string(), source_principal: principal, code_class: "" }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectionLabels {
    direction: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    /// `host` (a request's) or `address` (a TCP connection's, or a request's `Host` that is one).
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteEventLabels {
    cluster: String,
    event: &'static str,
}

/// Something a route's policy did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteEvent {
    /// A retry was sent.
    Retry,
    /// A retry was due but the cluster's retry budget was spent.
    RetryOverflow,
    /// A retry was due but the request body was too large to send again.
    RetryBodyTooLarge,
    /// A mirrored copy was sent, or failed before an answer.
    Mirror,
    MirrorFailed,
    FaultDelay,
    FaultAbort,
    /// Answered `503` at once: the cluster's limits were reached.
    Overflow,
}

impl RouteEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::RetryOverflow => "retry_overflow",
            Self::RetryBodyTooLarge => "retry_body_too_large",
            Self::Mirror => "mirror",
            Self::MirrorFailed => "mirror_failed",
            Self::FaultDelay => "fault_delay",
            Self::FaultAbort => "fault_abort",
            Self::Overflow => "overflow",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    direction: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

/// An authorization decision: the action of the layer (or rule) that decided, what it decided, and the
/// AuthorizationPolicy (`namespace/name`; empty when none matched).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    pub action: &'static str,
    pub result: &'static str,
    pub policy: Option<std::sync::Arc<str>>,
}

/// A request refused by a rate limit: the HTTPLocalRateLimitPolicy, and which of its limits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitedLabels {
    policy: std::sync::Arc<str>,
    limit: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    inbound_requests: Family<InboundLabels, Counter>,
    request_duration: Family<DirectionLabel, Histogram, fn() -> Histogram>,
    /// `request_duration`'s two series, found once.
    durations: [Histogram; 2],
    connections: Family<ConnectionLabels, Counter>,
    active: Family<DirectionLabel, Gauge>,
    received_bytes: Family<ConnectionLabels, Counter>,
    sent_bytes: Family<ConnectionLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    timeouts: Family<TimeoutLabels, Counter>,
    on_demand: Family<LookupLabels, Counter>,
    route_events: Family<RouteEventLabels, Counter>,
    xds_connected: Gauge,
    config_applied: Family<TypeLabel, Counter>,
    nacks: Family<TypeLabel, Counter>,
    ready: Gauge,
    draining: Gauge,
    certificate_requests: Family<ResultLabel, Counter>,
    certificate_expiry: Gauge,
    handshakes: Family<HandshakeLabels, Counter>,
    authz_decisions: Family<AuthzLabels, Counter>,
    rate_limited: Family<RateLimitedLabels, Counter>,
    access_log_dropped: Counter,
    trace_spans: Family<OutcomeLabel, Counter>,
    /// Requests by workload pair (`weft_requests_total`, ...).
    pub golden: GoldenMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("weft_proxy");
        let request_duration: Family<DirectionLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let durations = [Direction::Outbound, Direction::Inbound]
            .map(|direction| request_duration.get_or_create(&DirectionLabel { direction: direction.as_str() }).clone());
        let metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            inbound_requests: Family::default(),
            request_duration,
            durations,
            connections: Family::default(),
            active: Family::default(),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            refused: Family::default(),
            timeouts: Family::default(),
            on_demand: Family::default(),
            route_events: Family::default(),
            xds_connected: Gauge::default(),
            config_applied: Family::default(),
            nacks: Family::default(),
            ready: Gauge::default(),
            draining: Gauge::default(),
            certificate_requests: Family::default(),
            certificate_expiry: Gauge::default(),
            handshakes: Family::default(),
            authz_decisions: Family::default(),
            rate_limited: Family::default(),
            access_log_dropped: Counter::default(),
            trace_spans: Family::default(),
            golden: GoldenMetrics::default(),
        };
        let m = &metrics;
        registry.register(
            "requests",
            "HTTP requests, by direction, cluster and response code class",
            m.requests.clone(),
        );
        registry.register(
            "inbound_requests",
            "HTTP requests the inbound side forwarded to the application, by port, caller identity and response code class",
            m.inbound_requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From request to response headers, by direction",
            m.request_duration.clone(),
        );
        registry.register("tcp_connections", "Connections accepted, by direction and mode", m.connections.clone());
        registry.register("tcp_connections_active", "Connections open now, by direction", m.active.clone());
        registry.register("tcp_received_bytes", "Bytes received from downstream peers", m.received_bytes.clone());
        registry.register("tcp_sent_bytes", "Bytes sent to downstream peers", m.sent_bytes.clone());
        registry.register("tcp_refused", "Connections refused before reaching their destination, by direction and reason (inbound: plaintext_strict, no_config, authz_denied; outbound: no_healthy_upstream)", m.refused.clone());
        registry.register(
            "timeouts",
            "Requests and connections ended by a timeout, by direction and kind (request_headers, stream_idle, idle, route)",
            m.timeouts.clone(),
        );
        registry.register(
            "on_demand_lookups",
            "Requests by host (kind host), and TCP connections and requests sent to an address (kind address), that waited for a Service's config to be discovered on demand, by outcome (answered, timeout, not_asked)",
            m.on_demand.clone(),
        );
        registry.register(
            "route_events",
            "What routes' policies did, by cluster and event (retry, retry_overflow, retry_body_too_large, mirror, mirror_failed, fault_delay, fault_abort, overflow)",
            m.route_events.clone(),
        );
        registry.register(
            "xds_connected",
            "1 while the xDS stream to the control plane is open",
            m.xds_connected.clone(),
        );
        registry.register("xds_config_applied", "xDS responses accepted (ACK), by type", m.config_applied.clone());
        registry.register("xds_nacks", "xDS responses rejected (NACK), by type", m.nacks.clone());
        registry.register("ready", "1 once a complete config has been applied", m.ready.clone());
        registry.register("draining", "1 while shutting down", m.draining.clone());
        registry.register(
            "certificate_requests",
            "Workload certificate requests to the CA, by result (issued, failed)",
            m.certificate_requests.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the current workload certificate expires (Unix time; 0: none yet)",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Mutual TLS handshakes with other sidecars, by direction and result (ok, failed, wrong_peer)",
            m.handshakes.clone(),
        );
        registry.register(
            "authz_decisions",
            "Inbound authorization decisions, by action (allow, deny, audit), result (allowed, denied, audited, \
             dry_run_allowed, dry_run_denied) and the AuthorizationPolicy that decided",
            m.authz_decisions.clone(),
        );
        registry.register(
            "rate_limited",
            "Inbound requests refused by a rate limit (429), by HTTPLocalRateLimitPolicy and limit (total, identity, override)",
            m.rate_limited.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because standard output did not keep up",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "trace_spans",
            "Sampled request spans, by outcome (exported to the collector, failed: the export failed, dropped: the \
             queue to the exporter was full)",
            m.trace_spans.clone(),
        );
        metrics.golden.register(&mut root);
        Self { registry: root, ..metrics }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    pub fn trace_spans(&self, outcome: &'static str, count: u64) {
        self.trace_spans.get_or_create(&OutcomeLabel { outcome }).inc_by(count);
    }

    pub fn request(&self, direction: Direction, cluster: &str, status: StatusCode, took: Duration) {
        let labels =
            RequestLabels { direction: direction.as_str(), cluster: cluster.into(), code_class: code_class(status) };
        self.requests.get_or_create(&labels).inc();
        self.observe_duration(direction, took);
    }

    fn observe_duration(&self, direction: Direction, took: Duration) {
        self.durations[direction as usize].observe(took.as_secs_f64());
    }

    /// What an outbound request to `cluster` is counted under, found once per cluster rather than per request.
    pub fn outbound_cluster(&self, cluster: &str) -> ClusterTally {
        let (service, in_mesh) = self.golden.service_of_cluster(cluster);
        ClusterTally { name: Arc::from(cluster), service, in_mesh, counters: Default::default() }
    }

    /// Counts and times an outbound request to the cluster `tally` stands for.
    pub fn outbound_request(&self, tally: &ClusterTally, status: StatusCode, took: Duration) {
        let class = code_class_index(status);
        let counter = tally.counters[class].get_or_init(|| {
            let labels = RequestLabels {
                direction: Direction::Outbound.as_str(),
                cluster: tally.name.clone(),
                code_class: CODE_CLASSES[class],
            };
            self.requests.get_or_create(&labels).clone()
        });
        counter.inc();
        self.observe_duration(Direction::Outbound, took);
    }

    /// Counts an inbound request of the caller and port `labels` say.
    pub fn inbound_request(&self, labels: &InboundLabels, status: StatusCode) {
        let labels = InboundLabels { code_class: code_class(status), ..labels.clone() };
        self.inbound_requests.get_or_create(&labels).inc();
    }

    /// Counts a new connection; the returned handles count its bytes and keep it in the active gauge until dropped.
    pub fn connection(&self, direction: Direction, mode: Mode) -> ConnectionStats {
        let labels = ConnectionLabels { direction: direction.as_str(), mode: mode.as_str() };
        self.connections.get_or_create(&labels).inc();
        let active = self.active.get_or_create(&DirectionLabel { direction: direction.as_str() }).clone();
        active.inc();
        ConnectionStats {
            received: self.received_bytes.get_or_create(&labels).clone(),
            sent: self.sent_bytes.get_or_create(&labels).clone(),
            active,
        }
    }

    /// Counts an inbound authorization decision (the labels borrow the policy's name: no allocation).
    pub fn authz_decision(&self, labels: &AuthzLabels) {
        self.authz_decisions.get_or_create(labels).inc();
    }

    /// Counts an inbound request a rate limit refused.
    pub fn rate_limited(&self, policy: &std::sync::Arc<str>, limit: &'static str) {
        self.rate_limited.get_or_create(&RateLimitedLabels { policy: policy.clone(), limit }).inc();
    }

    pub fn refused(&self, direction: Direction, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { direction: direction.as_str(), reason }).inc();
    }

    pub fn timeout(&self, direction: Direction, kind: TimeoutKind) {
        self.timeouts.get_or_create(&TimeoutLabels { direction: direction.as_str(), kind: kind.as_str() }).inc();
    }

    /// A wait for an on-demand answer ended: `address` for an address (a TCP connection's, or a request's `Host`
    /// that is one), else a request's host.
    pub fn on_demand(&self, address: bool, settled: Settled) {
        let kind = if address { "address" } else { "host" };
        self.on_demand.get_or_create(&LookupLabels { kind, outcome: settled.as_str() }).inc();
    }

    pub fn route_event(&self, cluster: &str, event: RouteEvent) {
        self.route_events
            .get_or_create(&RouteEventLabels { cluster: cluster.to_string(), event: event.as_str() })
            .inc();
    }

    pub fn set_xds_connected(&self, connected: bool) {
        self.xds_connected.set(i64::from(connected));
    }

    /// Whether the xDS stream is up, as last set (an on-demand question asked now would be answered).
    pub fn xds_connected(&self) -> bool {
        self.xds_connected.get() == 1
    }

    pub fn config_applied(&self, kind: ResourceType, ready: bool) {
        self.config_applied.get_or_create(&TypeLabel { r#type: kind.short_name() }).inc();
        self.ready.set(i64::from(ready));
    }

    pub fn nack(&self, kind: ResourceType) {
        self.nacks.get_or_create(&TypeLabel { r#type: kind.short_name() }).inc();
    }

    /// A certificate request's outcome; the expiry of the certificate it brought, when it did.
    pub fn certificate(&self, issued: bool, expires: std::time::SystemTime) {
        let result = if issued { "issued" } else { "failed" };
        self.certificate_requests.get_or_create(&ResultLabel { result }).inc();
        if issued {
            let unix = expires.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            self.certificate_expiry.set(i64::try_from(unix).unwrap_or(i64::MAX));
        }
    }

    pub fn handshake(&self, direction: Direction, result: &'static str) {
        self.handshakes.get_or_create(&HandshakeLabels { direction: direction.as_str(), result }).inc();
    }

    pub fn set_draining(&self) {
        self.draining.set(1);
    }
}

/// Byte counters of one connection, and its place in the active gauge (released on drop).
pub struct ConnectionStats {
    pub received: Counter,
    pub sent: Counter,
    active: Gauge,
}

impl Drop for ConnectionStats {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// 1 ms .. ~16 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn code_class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

fn code_class(status: StatusCode) -> &'static str {
    CODE_CLASSES[code_class_index(status)]
}

/// An outbound cluster as requests to it are counted: its name, the Service it sends to (for the golden
/// metrics) and its `weft_proxy_requests_total` series, each created on its first request (a series appears
/// only once a request has been counted in it).
pub struct ClusterTally {
    pub name: Arc<str>,
    pub service: Arc<ServiceLabels>,
    /// Whether the Service is one of the mesh's.
    pub in_mesh: bool,
    /// By response code class; only the counters are kept (a mesh-wide proxy holds thousands of clusters).
    counters: [OnceLock<Counter>; 5],
}

impl std::fmt::Debug for ClusterTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTally").field("name", &self.name).field("in_mesh", &self.in_mesh).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_their_labels() {
        let metrics = Metrics::new();
        metrics.request(Direction::Outbound, "outbound|80||reviews", StatusCode::NOT_FOUND, Duration::from_millis(3));
        let stats = metrics.connection(Direction::Inbound, Mode::Tcp);
        stats.received.inc_by(10);
        metrics.config_applied(ResourceType::Cluster, true);
        let text = metrics.encode();
        for line in [
            r#"weft_proxy_requests_total{direction="outbound",cluster="outbound|80||reviews",code_class="4xx"} 1"#,
            r#"weft_proxy_tcp_connections_total{direction="inbound",mode="tcp"} 1"#,
            r#"weft_proxy_tcp_connections_active{direction="inbound"} 1"#,
            r#"weft_proxy_tcp_received_bytes_total{direction="inbound",mode="tcp"} 10"#,
            r#"weft_proxy_xds_config_applied_total{type="CDS"} 1"#,
            "weft_proxy_ready 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        drop(stats);
        assert!(metrics.encode().contains(r#"weft_proxy_tcp_connections_active{direction="inbound"} 0"#));
    }

    #[test]
    fn a_cluster_tally_counts_under_its_cluster_and_names_its_service() {
        let metrics = Metrics::new();
        let tally = metrics.outbound_cluster("outbound|80|v2|reviews.shop.svc.cluster.local");
        assert_eq!((&*tally.service.name, &*tally.service.namespace, tally.in_mesh), ("reviews", "shop", true));
        let series = r#"weft_proxy_requests_total{direction="outbound",cluster="outbound|80|v2|reviews.shop.svc.cluster.local",code_class="#;
        assert!(!metrics.encode().contains(series), "no series before a request is counted");
        for status in [StatusCode::OK, StatusCode::CREATED, StatusCode::SERVICE_UNAVAILABLE] {
            metrics.outbound_request(&tally, status, Duration::from_millis(2));
        }
        let text = metrics.encode();
        for line in [format!(r#"{series}"2xx"}} 2"#), format!(r#"{series}"5xx"}} 1"#)] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(&format!(r#"{series}"4xx""#)), "a class with no request has no series");
        assert!(text.contains(r#"weft_proxy_request_duration_seconds_count{direction="outbound"} 3"#), "{text}");
        let external = metrics.outbound_cluster("outbound|443||api.example.com");
        assert_eq!((&*external.service.host, external.in_mesh), ("unknown", false));
    }
}
