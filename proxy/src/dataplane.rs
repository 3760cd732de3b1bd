//! The live data plane: the accepted config plus one balancer per cluster, rebuilt as config arrives and read by
//! every request. Balancers are kept across updates when their settings are unchanged, so connection pools and
//! latency estimates survive endpoint and route edits; so are rate limiters, with their buckets. The runtime is rebuilt where config is accepted, before
//! the proxy says it is ready, so what `/ready` and `/config_dump` report is what requests use.

use std::collections::HashSet;

use crate::fast_hash::FastMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use weft_xds::ClusterName;
use weft_xds::detection::Detection;

use crate::config::ProxyConfig;
use crate::identity::CredentialsRx;
use crate::metrics::{ClusterTally, Metrics};
use crate::ratelimit::InboundLimits;
use crate::upstream::ClusterBalancer;

/// What a request reads: the config, a balancer per cluster name, and the inbound side's rate limiters.
#[derive(Default)]
pub struct Runtime {
    pub config: Arc<ProxyConfig>,
    pub clusters: FastMap<String, RuntimeCluster>,
    pub limits: InboundLimits,
    /// The hosts of the clusters: the Services the proxy knows (metrics name only those).
    pub services: HashSet<String>,
    /// The cluster of each Service endpoint address (a Service's whole-port cluster, not a subset's), for TCP and
    /// unclaimed HTTP that a client sends to a pod's address, and for the Service of inbound TCP.
    pub endpoint_clusters: FastMap<SocketAddr, Arc<str>>,
}

/// What a Service declares its port to carry (by the port's name, Istio's `<protocol>[-<suffix>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Http,
    Tcp,
}

impl From<weft_xds::mtls::Carried> for Declared {
    fn from(carried: weft_xds::mtls::Carried) -> Self {
        match carried {
            weft_xds::mtls::Carried::Http => Declared::Http,
            weft_xds::mtls::Carried::Tcp => Declared::Tcp,
        }
    }
}

impl Runtime {
    /// What the Service whose endpoint `destination` is (a pod's address and port, as an inbound connection was
    /// addressed) declares on that port, as its outbound listener says (HTTP at once, TCP at once, or detect);
    /// `None` when it declares nothing or the proxy holds no such endpoint. Every Service on the port declares
    /// the same, else the listener detects: the inbound side then tells by the first bytes, as before.
    pub fn declared_protocol(&self, destination: &SocketAddr) -> Option<Declared> {
        let cluster = self.endpoint_clusters.get(destination)?;
        let listener = self.config.listener_for_port(ClusterName::parse(cluster)?.port)?;
        match listener.detection {
            Detection::Off => Some(Declared::Http),
            Detection::Tcp => Some(Declared::Tcp),
            Detection::Within(_) => None,
        }
    }
}

/// One cluster as requests use it: its balancer, and what its requests are counted under.
#[derive(Clone)]
pub struct RuntimeCluster {
    pub balancer: Arc<ClusterBalancer>,
    pub tally: Arc<ClusterTally>,
}

/// Publishes a [`Runtime`] for each accepted config.
pub struct Publisher {
    runtimes: watch::Sender<Arc<Runtime>>,
    /// The workload certificate new upstream connections present; `None`: no identity, plaintext only.
    credentials: Option<CredentialsRx>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(credentials: Option<CredentialsRx>, metrics: Arc<Metrics>) -> (Self, watch::Receiver<Arc<Runtime>>) {
        let (runtimes, receiver) = watch::channel(Arc::new(Runtime::default()));
        (Self { runtimes, credentials, metrics }, receiver)
    }

    /// Builds and publishes the runtime for `config`; returns once requests see it.
    pub fn publish(&self, config: Arc<ProxyConfig>) {
        let previous = self.runtimes.borrow().clone();
        self.runtimes.send_replace(Arc::new(rebuild(&previous, config, self.credentials.as_ref(), &self.metrics)));
    }
}

fn rebuild(
    previous: &Runtime,
    config: Arc<ProxyConfig>,
    credentials: Option<&CredentialsRx>,
    metrics: &Metrics,
) -> Runtime {
    let clusters = config
        .clusters
        .values()
        .map(|cluster| {
            let existing = previous.clusters.get(&cluster.name);
            let balancer = match existing {
                Some(existing) if existing.balancer.fits(cluster) => {
                    existing.balancer.configure(cluster);
                    existing.balancer.clone()
                }
                _ => Arc::new(ClusterBalancer::new(cluster, credentials.cloned())),
            };
            balancer.set_endpoints(config.endpoints.get(&cluster.eds_name).map(Vec::as_slice).unwrap_or_default());
            // A cluster's name alone decides its tally: kept for as long as the name is.
            let tally = existing.map_or_else(|| Arc::new(metrics.outbound_cluster(&cluster.name)), |e| e.tally.clone());
            (cluster.name.clone(), RuntimeCluster { balancer, tally })
        })
        .collect();
    let limits = InboundLimits::rebuild(&previous.limits, config.inbound.as_ref());
    let services = config.clusters.keys().filter_map(|name| ClusterName::parse(name)).map(|c| c.host).collect();
    let endpoint_clusters = endpoint_clusters(&config);
    Runtime { config, clusters, limits, services, endpoint_clusters }
}

/// Each healthy endpoint's whole-Service cluster. When Services share a pod's port, the first Service by FQDN
/// (then by port): the one the operator answers with when a proxy asks by that address, so a connection is
/// counted under the Service whose config the answer brought, whichever Services the proxy already held. (The
/// operator counts not-ready endpoints too: while the pod is not ready in the first Service only, the two differ.)
fn endpoint_clusters(config: &ProxyConfig) -> FastMap<SocketAddr, Arc<str>> {
    let mut whole: Vec<_> = config
        .clusters
        .values()
        .filter_map(|c| ClusterName::parse(&c.name).filter(|n| n.subset.is_empty()).map(|n| (n, c)))
        .collect();
    whole.sort_by(|(a, _), (b, _)| (&a.host, a.port).cmp(&(&b.host, b.port)));
    let mut clusters = FastMap::default();
    for (_, cluster) in whole {
        let name: Arc<str> = Arc::from(cluster.name.as_str());
        let endpoints = config.endpoints.get(&cluster.eds_name).map(Vec::as_slice).unwrap_or_default();
        for endpoint in endpoints.iter().filter(|e| e.healthy) {
            clusters.entry(endpoint.address).or_insert_with(|| name.clone());
        }
    }
    clusters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterConfig, EndpointConfig, ListenerConfig};

    #[test]
    fn an_endpoint_s_declared_protocol_is_its_service_port_s() {
        let mut config = ProxyConfig::default();
        let ports = [(80, "10.0.0.5:8080", Detection::Off), (3306, "10.0.0.6:3306", Detection::Tcp)];
        let detecting = (9000, "10.0.0.7:9000", Detection::Within(None));
        for (port, endpoint, detection) in ports.into_iter().chain([detecting]) {
            let cluster = format!("outbound|{port}||svc-{port}.shop.svc.cluster.local");
            config
                .clusters
                .insert(cluster.clone(), ClusterConfig::new(&cluster, weft_xds::lb::LbAlgorithm::RoundRobin, &cluster));
            let address = endpoint.parse().unwrap();
            let endpoint =
                EndpointConfig { address, healthy: true, mtls: false, priority: 0, locality: 0, locality_weight: 0 };
            config.endpoints.insert(cluster, vec![endpoint]);
            let name = weft_xds::listener_name(port);
            let listener = ListenerConfig {
                name: name.clone(),
                port,
                route_config: port.to_string(),
                l4_routes: Vec::new(),
                detection,
            };
            config.listeners.insert(name, listener);
        }
        let runtime =
            Runtime { endpoint_clusters: endpoint_clusters(&config), config: Arc::new(config), ..Runtime::default() };
        let declared = |address: &str| runtime.declared_protocol(&address.parse().unwrap());
        assert_eq!(declared("10.0.0.5:8080"), Some(Declared::Http), "the target port of an HTTP port");
        assert_eq!(declared("10.0.0.6:3306"), Some(Declared::Tcp));
        assert_eq!(declared("10.0.0.7:9000"), None, "a port that detects");
        assert_eq!(declared("10.0.0.5:9999"), None, "no Service's endpoint");
    }

    #[test]
    fn a_pod_port_in_two_services_counts_under_the_first_service_by_fqdn_as_the_operator_answers() {
        let mut config = ProxyConfig::default();
        // By cluster name `outbound|80||b…` sorts first; by Service, `a` does.
        for (port, host) in [(80, "b.shop.svc.cluster.local"), (9090, "a.shop.svc.cluster.local")] {
            let cluster = weft_xds::cluster_name(host, port, "");
            config
                .clusters
                .insert(cluster.clone(), ClusterConfig::new(&cluster, weft_xds::lb::LbAlgorithm::RoundRobin, &cluster));
            let address = "10.0.0.5:8080".parse().unwrap();
            let endpoint =
                EndpointConfig { address, healthy: true, mtls: false, priority: 0, locality: 0, locality_weight: 0 };
            config.endpoints.insert(cluster, vec![endpoint]);
        }
        let clusters = endpoint_clusters(&config);
        let pod = "10.0.0.5:8080".parse().unwrap();
        assert_eq!(clusters.get(&pod).map(|c| &**c), Some("outbound|9090||a.shop.svc.cluster.local"));
    }
}
