//! The operator's Prometheus metrics (served on `/metrics` of the health listener, :9090).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weft_xds::ResourceType;

use crate::source::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabel {
    kind: String,
    result: String,
}

pub struct Metrics {
    registry: Registry,
    connected_proxies: Gauge,
    plaintext_proxies: Gauge,
    pushes: Family<TypeLabel, Counter>,
    push_bytes: Family<TypeLabel, Counter>,
    push_latency: Histogram,
    nacks: Family<TypeLabel, Counter>,
    reconcile_errors: Family<KindLabel, Counter>,
    snapshots: Counter,
    status_writes: Family<WriteLabel, Counter>,
    leader: Gauge,
    config_file_reads: Counter,
    certificates: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft_operator");
        let metrics = Self {
            connected_proxies: Gauge::default(),
            plaintext_proxies: Gauge::default(),
            pushes: Family::default(),
            push_bytes: Family::default(),
            // 1 ms .. ~16 s
            push_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            nacks: Family::default(),
            reconcile_errors: Family::default(),
            snapshots: Counter::default(),
            status_writes: Family::default(),
            leader: Gauge::default(),
            config_file_reads: Counter::default(),
            certificates: Family::default(),
            registry: Registry::default(),
        };
        registry.register("connected_proxies", "Proxies with an open ADS stream", metrics.connected_proxies.clone());
        registry.register(
            "plaintext_proxies",
            "Of those, the proxies on the plaintext xDS port (none left: plaintext xDS can be turned off)",
            metrics.plaintext_proxies.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent, by type", metrics.pushes.clone());
        registry.register(
            "xds_pushed_bytes",
            "Encoded size of the xDS responses sent, by type",
            metrics.push_bytes.clone(),
        );
        registry.register(
            "xds_push_latency_seconds",
            "From a new snapshot to the push it caused reaching a proxy's stream",
            metrics.push_latency.clone(),
        );
        registry.register("xds_nacks", "Config rejected by proxies (NACK), by type", metrics.nacks.clone());
        registry.register("reconcile_errors", "Watch and status errors, by kind", metrics.reconcile_errors.clone());
        registry.register(
            "snapshots",
            "Snapshots built (one per debounced batch of changes)",
            metrics.snapshots.clone(),
        );
        registry.register("status_writes", "Status updates written, by kind and result", metrics.status_writes.clone());
        registry.register("leader", "1 while this replica holds the leader lease", metrics.leader.clone());
        registry.register(
            "config_file_reads",
            "Standalone mode: config files read (a file is read again only when it changed)",
            metrics.config_file_reads.clone(),
        );
        registry.register(
            "certificates",
            "Workload certificate requests, by result (issued, refused)",
            metrics.certificates.clone(),
        );
        Self { registry, ..metrics }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn certificate_issued(&self, result: &str) {
        self.certificates.get_or_create(&ResultLabel { result: result.to_string() }).inc();
    }

    /// A proxy's stream identified itself; `plaintext`: on the plaintext port.
    pub fn proxy_connected(&self, plaintext: bool) {
        self.connected_proxies.inc();
        if plaintext {
            self.plaintext_proxies.inc();
        }
    }

    pub fn proxy_disconnected(&self, plaintext: bool) {
        self.connected_proxies.dec();
        if plaintext {
            self.plaintext_proxies.dec();
        }
    }

    /// A response of `bytes` sent; `latency` when a new snapshot caused it (not when a proxy's request did).
    pub fn push(&self, kind: ResourceType, bytes: usize, latency: Option<Duration>) {
        let label = TypeLabel { r#type: kind.short_name().into() };
        self.pushes.get_or_create(&label).inc();
        self.push_bytes.get_or_create(&label).inc_by(bytes as u64);
        if let Some(latency) = latency {
            self.push_latency.observe(latency.as_secs_f64());
        }
    }

    pub fn nack(&self, kind: ResourceType) {
        self.nacks.get_or_create(&TypeLabel { r#type: kind.short_name().into() }).inc();
    }

    pub fn reconcile_error(&self, kind: Kind) {
        self.reconcile_errors.get_or_create(&KindLabel { kind: format!("{kind:?}") }).inc();
    }

    pub fn snapshot_built(&self) {
        self.snapshots.inc();
    }

    pub fn status_write(&self, kind: Kind, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.status_writes.get_or_create(&WriteLabel { kind: format!("{kind:?}"), result: result.into() }).inc();
        if !ok {
            self.reconcile_error(kind);
        }
    }

    /// The counter the standalone file source counts its reads on.
    pub fn config_file_reads(&self) -> Counter {
        self.config_file_reads.clone()
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}
