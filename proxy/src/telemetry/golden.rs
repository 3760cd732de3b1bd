//! `weft_requests_total`, `weft_request_duration_milliseconds`, `weft_request_bytes` and `weft_response_bytes`:
//! Istio's standard request metrics (same labels, same meaning; sizes are body sizes, as Istio documents them)
//! under Weft's prefix, reported by the client's sidecar (`reporter="source"`) and by the server's
//! (`reporter="destination"`). Counts and durations are recorded when the response head is back, sizes when the
//! request is over ([`BodySizes`]).
//!
//! Cardinality is bounded by the mesh, not by traffic: workloads come from this sidecar's own settings or from a
//! peer sidecar's checked header, Services from the proxy's config (a `Host` naming no known Service counts as
//! `unknown`), response codes and flags from small fixed sets. A proxy holds about (peer workloads × Services ×
//! codes seen) series per reporter.

use crate::fast_hash::FastMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use weft_xds::{CLUSTER_DOMAIN, ClusterName};

use super::peer::{PeerCache, UNKNOWN, Workload};

/// Istio's buckets for request durations, in milliseconds.
const DURATION_BUCKETS_MS: [f64; 18] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];
/// Istio's buckets for body sizes, in bytes: 1 to 10^9 by factors of 10.
const SIZE_BUCKETS: [f64; 10] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Services remembered at most (by cluster name or host); past it, the cache starts over.
const SERVICE_CACHE_LIMIT: usize = 4096;

/// Which sidecar reports a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client's (outbound).
    Source,
    /// The server's (inbound).
    Destination,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Who sent a request or connection and who answered it, as Istio's standard metrics label them (shared by the
/// HTTP and TCP metrics).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PartyLabels {
    reporter: &'static str,
    source_workload: Arc<str>,
    source_workload_namespace: Arc<str>,
    source_principal: Arc<str>,
    source_app: Arc<str>,
    source_version: Arc<str>,
    destination_workload: Arc<str>,
    destination_workload_namespace: Arc<str>,
    destination_principal: Arc<str>,
    destination_app: Arc<str>,
    destination_version: Arc<str>,
    destination_service: Arc<str>,
    destination_service_name: Arc<str>,
    destination_service_namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GoldenLabels {
    #[prometheus(flatten)]
    parties: PartyLabels,
    request_protocol: &'static str,
    response_code: u16,
    response_flags: &'static str,
    connection_security_policy: &'static str,
}

/// A Service as the labels name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLabels {
    pub host: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// Tells this value apart from every other one made (0: `unknown`), so a request's series is found by
    /// numbers rather than by hashing the labels' text.
    id: u64,
}

/// The next [`ServiceLabels::id`].
static NEXT_SERVICE_ID: AtomicU64 = AtomicU64::new(1);

impl ServiceLabels {
    fn unknown() -> Arc<Self> {
        let unknown: Arc<str> = Arc::from(UNKNOWN);
        Arc::new(Self { host: unknown.clone(), name: unknown.clone(), namespace: unknown, id: 0 })
    }

    /// `name.namespace.svc.cluster.local`'s labels; `None` for another kind of host.
    fn of_host(host: &str) -> Option<Self> {
        let (name, rest) = host.split_once('.')?;
        let namespace = rest.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
        (!name.is_empty() && !namespace.is_empty() && !namespace.contains('.')).then(|| Self {
            host: host.into(),
            name: name.into(),
            namespace: namespace.into(),
            id: NEXT_SERVICE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// What tells one series from another for this sidecar, cheaply: its own workload is fixed, a peer is the
/// address of its decoded workload (the peer cache keeps every one it hands out), a Service its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    reporter: Reporter,
    peer: usize,
    peer_principal: Option<Arc<str>>,
    service: u64,
    grpc: bool,
    code: u16,
    flags: &'static str,
}

/// Series handles at most; past it the map starts over (the series themselves stay).
const HANDLE_LIMIT: usize = 65_536;

/// This sidecar: its workload, its SPIFFE id (`unknown` without one), and the header telling peers who it is.
#[derive(Debug)]
struct Own {
    workload: Arc<Workload>,
    principal: Arc<str>,
    header: HeaderValue,
}

/// One request, as one sidecar saw it.
#[derive(Debug, Clone, Copy)]
pub struct RequestReport<'a> {
    pub reporter: Reporter,
    /// The other side's workload, when its sidecar said.
    pub peer: Option<&'a Workload>,
    /// The other side's SPIFFE id, when it proved one (inbound).
    pub peer_principal: Option<&'a Arc<str>>,
    pub service: &'a ServiceLabels,
    pub grpc: bool,
    pub code: u16,
    pub flags: &'static str,
    pub took: Duration,
}

/// A request's series for its body sizes, observed once the request is over.
#[derive(Debug, Clone)]
pub struct BodySizes {
    request: Histogram,
    response: Histogram,
}

impl BodySizes {
    pub fn observe(&self, request_bytes: u64, response_bytes: u64) {
        self.request.observe(request_bytes as f64);
        self.response.observe(response_bytes as f64);
    }
}

/// One series' handles: requests, durations, body sizes.
#[derive(Debug, Clone)]
struct Series {
    requests: Counter,
    duration: Histogram,
    sizes: BodySizes,
}

pub struct GoldenMetrics {
    requests: Family<GoldenLabels, Counter>,
    durations: Family<GoldenLabels, Histogram, fn() -> Histogram>,
    request_sizes: Family<GoldenLabels, Histogram, fn() -> Histogram>,
    response_sizes: Family<GoldenLabels, Histogram, fn() -> Histogram>,
    own: ArcSwap<Own>,
    unknown: Arc<Workload>,
    unknown_text: Arc<str>,
    unknown_service: Arc<ServiceLabels>,
    services: Mutex<FastMap<String, Arc<ServiceLabels>>>,
    /// Each series' handles, found without building its labels.
    handles: Mutex<FastMap<SeriesKey, Series>>,
    pub peers: PeerCache,
    /// The TCP metrics, with the same parties.
    pub(super) tcp: super::tcp::TcpGolden,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

impl Default for GoldenMetrics {
    fn default() -> Self {
        let unknown = Arc::new(Workload::unknown());
        let own = Own { workload: unknown.clone(), principal: Arc::from(UNKNOWN), header: unknown.header() };
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            request_sizes: Family::new_with_constructor(size_histogram),
            response_sizes: Family::new_with_constructor(size_histogram),
            own: ArcSwap::from_pointee(own),
            unknown,
            unknown_text: Arc::from(UNKNOWN),
            unknown_service: ServiceLabels::unknown(),
            services: Mutex::default(),
            handles: Mutex::default(),
            peers: PeerCache::default(),
            tcp: super::tcp::TcpGolden::default(),
        }
    }
}

impl GoldenMetrics {
    /// Registers the metrics in `registry` (the root one: these names carry no `weft_proxy_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weft_requests",
            "Requests, by reporter and source and destination workload, Service, protocol, response code and flags (Istio's istio_requests_total)",
            self.requests.clone(),
        );
        registry.register(
            "weft_request_duration_milliseconds",
            "From request to response headers, with the labels of weft_requests_total (Istio's istio_request_duration_milliseconds)",
            self.durations.clone(),
        );
        registry.register(
            "weft_request_bytes",
            "Request body sizes, with the labels of weft_requests_total (Istio's istio_request_bytes)",
            self.request_sizes.clone(),
        );
        registry.register(
            "weft_response_bytes",
            "Response body sizes, with the labels of weft_requests_total (Istio's istio_response_bytes)",
            self.response_sizes.clone(),
        );
        self.tcp.register(registry);
    }

    /// Says who this sidecar is: its workload and SPIFFE id.
    pub fn identify(&self, workload: Workload, principal: Option<&str>) {
        let header = workload.header();
        let principal = Arc::from(principal.unwrap_or(UNKNOWN));
        self.own.store(Arc::new(Own { workload: Arc::new(workload), principal, header }));
        self.lock_handles().clear();
    }

    fn lock_handles(&self) -> std::sync::MutexGuard<'_, FastMap<SeriesKey, Series>> {
        self.handles.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The labels of a Service the proxy cannot name.
    pub fn unknown_service(&self) -> Arc<ServiceLabels> {
        self.unknown_service.clone()
    }

    /// The header telling a peer who this sidecar is.
    pub fn own_header(&self) -> HeaderValue {
        self.own.load().header.clone()
    }

    /// This sidecar's namespace.
    pub fn own_namespace(&self) -> Arc<str> {
        self.own.load().workload.namespace.clone()
    }

    /// The Service a cluster (`outbound|PORT|SUBSET|HOST`) sends to; `unknown` for another cluster. Whether it is
    /// a Service of the mesh (its host is `NAME.NAMESPACE.svc.cluster.local`).
    pub fn service_of_cluster(&self, cluster: &str) -> (Arc<ServiceLabels>, bool) {
        let found = self.cached(cluster, || ClusterName::parse(cluster).and_then(|c| ServiceLabels::of_host(&c.host)));
        let in_mesh = !Arc::ptr_eq(&found, &self.unknown_service);
        (found, in_mesh)
    }

    /// The Service a request's authority names, from a sidecar in `namespace` (short names resolve there); only
    /// hosts `known` says are Services count, others are `unknown`.
    /// Known Services are remembered by authority; other hosts are not (a client sending many cannot grow the
    /// cache, and a Service that appears later is found).
    pub fn service_of_authority(
        &self,
        authority: &str,
        namespace: &str,
        known: impl Fn(&str) -> bool,
    ) -> Arc<ServiceLabels> {
        if let Some(found) = self.lock_services().get(authority) {
            return found.clone();
        }
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(h, _)| h);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let fqdn = match host.matches('.').count() {
            0 => format!("{host}.{namespace}.{CLUSTER_DOMAIN}"),
            1 => format!("{host}.{CLUSTER_DOMAIN}"),
            _ if host.ends_with(".svc") => format!("{host}.cluster.local"),
            _ => host,
        };
        match ServiceLabels::of_host(&fqdn).filter(|_| known(&fqdn)) {
            Some(labels) => self.cached(authority, || Some(labels)),
            None => self.unknown_service.clone(),
        }
    }

    fn lock_services(&self) -> std::sync::MutexGuard<'_, FastMap<String, Arc<ServiceLabels>>> {
        self.services.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, key: &str, labels: impl FnOnce() -> Option<ServiceLabels>) -> Arc<ServiceLabels> {
        let mut services = self.lock_services();
        if let Some(found) = services.get(key) {
            return found.clone();
        }
        if services.len() >= SERVICE_CACHE_LIMIT {
            services.clear();
        }
        let found = labels().map(Arc::new).unwrap_or_else(|| self.unknown_service.clone());
        services.insert(key.to_string(), found.clone());
        found
    }

    /// Counts and times one request; its series for the body sizes, to observe when the request is over.
    pub fn record(&self, report: RequestReport<'_>) -> BodySizes {
        let key = SeriesKey {
            reporter: report.reporter,
            peer: report.peer.map_or(0, |p| p as *const Workload as usize),
            peer_principal: report.peer_principal.cloned(),
            service: report.service.id,
            grpc: report.grpc,
            code: report.code,
            flags: report.flags,
        };
        let millis = report.took.as_secs_f64() * 1000.0;
        if let Some(series) = self.lock_handles().get(&key) {
            series.duration.observe(millis);
            series.requests.inc();
            return series.sizes.clone();
        }
        let labels = self.labels(&report);
        let series = Series {
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.durations.get_or_create(&labels).clone(),
            sizes: BodySizes {
                request: self.request_sizes.get_or_create(&labels).clone(),
                response: self.response_sizes.get_or_create(&labels).clone(),
            },
        };
        series.duration.observe(millis);
        series.requests.inc();
        let sizes = series.sizes.clone();
        let mut handles = self.lock_handles();
        if handles.len() >= HANDLE_LIMIT {
            handles.clear();
        }
        handles.insert(key, series);
        sizes
    }

    /// The labels of a request's series.
    fn labels(&self, report: &RequestReport<'_>) -> GoldenLabels {
        GoldenLabels {
            parties: self.parties(report.reporter, report.peer, report.peer_principal, report.service),
            request_protocol: if report.grpc { "grpc" } else { "http" },
            response_code: report.code,
            response_flags: report.flags,
            connection_security_policy: security_policy(report.reporter, report.peer_principal),
        }
    }

    /// This sidecar and its peer (`unknown` where not known) as source and destination, by `reporter`.
    pub(super) fn parties(
        &self,
        reporter: Reporter,
        peer: Option<&Workload>,
        peer_principal: Option<&Arc<str>>,
        service: &ServiceLabels,
    ) -> PartyLabels {
        let own = self.own.load();
        let peer = peer.unwrap_or(&self.unknown);
        let peer_principal = peer_principal.unwrap_or(&self.unknown_text).clone();
        let (source, source_principal, destination, destination_principal) = match reporter {
            Reporter::Source => (&*own.workload, own.principal.clone(), peer, peer_principal),
            Reporter::Destination => (peer, peer_principal, &*own.workload, own.principal.clone()),
        };
        PartyLabels {
            reporter: reporter.as_str(),
            source_workload: source.workload.clone(),
            source_workload_namespace: source.namespace.clone(),
            source_principal,
            source_app: source.app.clone(),
            source_version: source.version.clone(),
            destination_workload: destination.workload.clone(),
            destination_workload_namespace: destination.namespace.clone(),
            destination_principal,
            destination_app: destination.app.clone(),
            destination_version: destination.version.clone(),
            destination_service: service.host.clone(),
            destination_service_name: service.name.clone(),
            destination_service_namespace: service.namespace.clone(),
        }
    }
}

/// As Istio: the server's sidecar knows how the request came; the client's reports `unknown`.
pub(super) fn security_policy(reporter: Reporter, peer_principal: Option<&Arc<str>>) -> &'static str {
    match (reporter, peer_principal) {
        (Reporter::Source, _) => "unknown",
        (Reporter::Destination, Some(_)) => "mutual_tls",
        (Reporter::Destination, None) => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_from_clusters_and_known_hosts_only() {
        let golden = GoldenMetrics::default();
        let (service, in_mesh) = golden.service_of_cluster("outbound|80|v1|reviews.shop.svc.cluster.local");
        assert_eq!(
            (&*service.host, &*service.name, &*service.namespace, in_mesh),
            ("reviews.shop.svc.cluster.local", "reviews", "shop", true)
        );
        let (external, in_mesh) = golden.service_of_cluster("outbound|443||api.example.com");
        assert_eq!((&*external.host, in_mesh), (UNKNOWN, false));
        let known = |host: &str| host == "reviews.shop.svc.cluster.local";
        for authority in
            ["reviews", "reviews:9080", "reviews.shop", "reviews.shop.svc", "Reviews.shop.svc.cluster.local."]
        {
            assert_eq!(&*golden.service_of_authority(authority, "shop", known).name, "reviews", "{authority}");
        }
        assert_eq!(&*golden.service_of_authority("attacker-chosen-1", "shop", known).host, UNKNOWN);
        let elsewhere = GoldenMetrics::default();
        assert_eq!(
            &*elsewhere.service_of_authority("reviews", "other", known).host,
            UNKNOWN,
            "a short name is its namespace's"
        );
    }
}
