//! The proxy's runtime configuration: plain Rust types converted from xDS resources (see [`convert`]). Everything
//! the data plane reads comes from here; nothing downstream sees protobuf.

pub mod cluster;
pub mod convert;
pub mod l4;
pub mod matcher;
pub mod on_demand;
pub mod policy;
pub mod routes;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use weft_xds::inbound::InboundPolicy;
use weft_xds::lb::LbAlgorithm;
use weft_xds::on_demand_name;
use weft_xds::origination::Origination;

pub use on_demand::OnDemandHosts;
pub use routes::{
    Action, HeaderMatch, Labels, PathMatch, QueryMatch, RegexEq, RouteAction, RouteEntry, RouteTable, StringMatcher,
    VirtualHost, WeightedTarget,
};

/// The whole applied configuration. Serialized as the admin `/config_dump`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// Outbound listeners by name.
    pub listeners: BTreeMap<String, ListenerConfig>,
    /// Route tables by route configuration name.
    pub routes: BTreeMap<String, RouteTable>,
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Endpoints by cluster (EDS service) name.
    pub endpoints: BTreeMap<String, Vec<EndpointConfig>>,
    /// Virtual hosts asked for on demand, by resource name (`ROUTE_CONFIG/HOST`); `None`: the control plane
    /// knows no such host.
    pub on_demand: OnDemandHosts,
    /// What the inbound side accepts (PeerAuthentication); `None`: the default, `PERMISSIVE` on every port.
    pub inbound: Option<InboundPolicy>,
    /// Accepted xDS version per type (`CDS`, `EDS`, `LDS`, `RDS`, `VHDS`).
    pub versions: BTreeMap<String, String>,
}

/// An outbound listener: which route table serves HTTP for traffic to `port`, and which TCP and TLS routes take
/// connections to it before HTTP is looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub port: u16,
    pub route_config: String,
    pub l4_routes: Vec<l4::L4Route>,
    /// Whether a captured connection is peeked at for HTTP first (a port some Service does not declare HTTP on).
    pub detection: weft_xds::detection::Detection,
}

/// A cluster: how requests are balanced over its endpoints, and the limits and policies of its upstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    pub name: String,
    pub lb: LbAlgorithm,
    /// Consistent hashing's table: the smallest ring (`RING_HASH`) or the Maglev table's size (`MAGLEV`).
    pub hash_size: u64,
    #[serde(with = "duration_ms")]
    pub connect_timeout: Duration,
    /// Name of the endpoint assignment (EDS) that feeds it; empty for an original-destination cluster.
    pub eds_name: String,
    /// Envoy's `ORIGINAL_DST` (DestinationRule `loadBalancer.simple: PASSTHROUGH`): no endpoints and no
    /// balancing; each request or connection goes to the address its client dialled (captured traffic only).
    pub original_destination: bool,
    pub limits: cluster::Limits,
    /// `None`: retries are bounded by `limits.max_retries` alone.
    pub retry_budget: Option<cluster::BudgetConfig>,
    pub outlier: Option<cluster::OutlierPolicy>,
    /// Below this share of endpoints not ejected (percent), balance over all of them (Envoy's panic mode).
    pub panic_threshold: f64,
    pub connections: cluster::Connections,
    /// New endpoints' share grows over a window (round robin and least request balancers).
    pub slow_start: Option<cluster::SlowStart>,
    /// Each priority's traffic is split between localities by their weights (Envoy's locality-weighted balancing).
    pub locality_weighted: bool,
    /// Mutual TLS to the endpoints that run a sidecar (or every endpoint); `None`: no mesh mutual TLS.
    pub mtls: Option<cluster::MeshTls>,
    /// TLS origination with certificates from files to every endpoint (DestinationRule `SIMPLE`/`MUTUAL`).
    pub origination: Option<Origination>,
}

impl ClusterConfig {
    /// A cluster with Envoy's defaults for everything but its name, balancing and EDS name.
    pub fn new(name: impl Into<String>, lb: LbAlgorithm, eds_name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            lb,
            hash_size: weft_xds::lb::DEFAULT_RING_SIZE,
            connect_timeout: Duration::from_secs(5),
            eds_name: eds_name.into(),
            limits: cluster::Limits::default(),
            retry_budget: None,
            outlier: None,
            panic_threshold: 50.0,
            connections: cluster::Connections::default(),
            slow_start: None,
            locality_weighted: false,
            mtls: None,
            origination: None,
            original_destination: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EndpointConfig {
    pub address: SocketAddr,
    pub healthy: bool,
    /// The endpoint runs a sidecar: its cluster's mutual TLS applies.
    pub mtls: bool,
    /// Its priority level (0 first); see [`crate::upstream`].
    pub priority: u32,
    /// Its locality: the position of its group in the assignment.
    pub locality: u32,
    /// Its locality's weight, for locality-weighted clusters (0: none, the locality gets no traffic).
    pub locality_weight: u32,
}

impl ProxyConfig {
    /// The route table serving traffic addressed to `port`, through the listener for that port.
    pub fn route_table_for_port(&self, port: u16) -> Option<&RouteTable> {
        self.routes.get(&self.listener_for_port(port)?.route_config)
    }

    /// The listener for `port`, if some Service has that port: by its conventional name (`0.0.0.0_PORT`, what
    /// Weft's operator and Istio send), else the first listening on the port.
    pub fn listener_for_port(&self, port: u16) -> Option<&ListenerConfig> {
        let mut name = [0; LISTENER_NAME_MAX];
        match self.listeners.get(listener_name(port, &mut name)) {
            Some(named) if named.port == port => Some(named),
            _ => self.listeners.values().find(|l| l.port == port),
        }
    }

    /// The TCP and TLS routes of the listener for `port` (none when there is no such listener).
    pub fn l4_routes_for_port(&self, port: u16) -> &[l4::L4Route] {
        self.listener_for_port(port).map_or(&[], |l| l.l4_routes.as_slice())
    }

    /// The virtual host serving `host` (as sent) in `table`: one of its own, else one asked for on demand.
    pub fn virtual_host<'a>(&'a self, table: &'a RouteTable, host: &str) -> Lookup<'a> {
        if let Some(found) = table.virtual_host(host) {
            return Lookup::Found(found);
        }
        if !table.on_demand || is_ip_literal(host) {
            return Lookup::Unknown;
        }
        self.on_demand_lookup(on_demand_name(&table.name, host), false)
    }

    /// The virtual host of the Service whose cluster IP is `ip`, in `table`: one of its own, else one asked for on
    /// demand by that address (for traffic sent there; see [`weft_xds::on_demand_name`]). Only private addresses
    /// are asked for, where Kubernetes puts cluster IPs: TCP to the internet (say, to port 443, which the API
    /// server's own Service has in every cluster) never waits on the control plane. An answer naming the Service
    /// one of whose endpoints `ip` is (a pod) is no cluster IP's: `Unknown` here, the pod found by its endpoint.
    pub fn service_at<'a>(&'a self, table: &'a RouteTable, ip: IpAddr) -> Lookup<'a> {
        if let Some(found) = table.service_at(ip) {
            return Lookup::Found(found);
        }
        if !table.on_demand || !is_private(ip) {
            return Lookup::Unknown;
        }
        let domain = weft_xds::address_domain(ip);
        match self.on_demand_lookup(on_demand_name(&table.name, &domain), true) {
            Lookup::Found(host) if !host.domains.contains(&domain) => Lookup::Unknown,
            other => other,
        }
    }

    fn on_demand_lookup(&self, name: String, address: bool) -> Lookup<'_> {
        match self.on_demand.get(&name) {
            Some(Some(found)) => Lookup::Found(found),
            Some(None) => Lookup::Unknown,
            None if self.on_demand.full(address) => Lookup::Unknown,
            None => Lookup::Ask(name),
        }
    }

    /// Whether a request for the on-demand virtual host `name` can be routed: the control plane has answered,
    /// and every cluster its routes name that has arrived (the control plane sends them first) has its
    /// endpoints. A route to a cluster that does not exist (a missing subset) is not waited for.
    pub fn on_demand_settled(&self, name: &str) -> bool {
        match self.on_demand.get(name) {
            None => false,
            Some(None) => true,
            Some(Some(host)) => host
                .routes
                .iter()
                .flat_map(RouteEntry::cluster_names)
                .filter_map(|cluster| self.clusters.get(cluster))
                .all(|c| self.endpoints.contains_key(&c.eds_name)),
        }
    }
}

/// Which virtual host serves a request.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    Found(&'a VirtualHost),
    /// No virtual host claims it.
    Unknown,
    /// Not known yet: ask the control plane for this on-demand name.
    Ask(String),
}

/// Whether `ip` is in a private range: RFC 1918, RFC 6598's shared space (some clusters' Service ranges), IPv6
/// unique local addresses.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v6) => v6.is_unique_local(),
    }
}

/// An address rather than a name (`10.0.0.5`, `10.0.0.5:80`, `[::1]:80`): a `Host` never asked for as a host
/// (a Service's cluster IP is a domain of its virtual host only where the proxy holds the Service); such traffic is
/// asked for by address instead ([`ProxyConfig::service_at`]).
fn is_ip_literal(host: &str) -> bool {
    ip_literal(host).is_some()
}

/// The address a `Host` is, if it is one (with or without a port; IPv6 in brackets).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.parse::<SocketAddr>() {
        Ok(address) => Some(address.ip()),
        Err(_) => weft_xds::domain_address(host),
    }
}

/// Durations in the config dump, as milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Longest conventional listener name: `0.0.0.0_65535`.
const LISTENER_NAME_MAX: usize = 13;

/// [`weft_xds::listener_name`] written into `buf` instead of a new `String`: it is looked up for every request.
fn listener_name(port: u16, buf: &mut [u8; LISTENER_NAME_MAX]) -> &str {
    const PREFIX: &[u8] = b"0.0.0.0_";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let digits = port.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut rest = port;
    for slot in buf[PREFIX.len()..PREFIX.len() + digits].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // ASCII digits after an ASCII prefix: always UTF-8.
    std::str::from_utf8(&buf[..PREFIX.len() + digits]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PathMatch, RouteAction, RouteEntry, WeightedTarget};

    #[test]
    fn listener_names_are_written_as_weft_xds_names_them() {
        for port in [0, 7, 10, 80, 443, 9080, 10000, 65535] {
            let mut buf = [0; LISTENER_NAME_MAX];
            assert_eq!(listener_name(port, &mut buf), weft_xds::listener_name(port));
        }
    }

    fn host(name: &str, cluster: &str) -> VirtualHost {
        let action = RouteAction::to_targets(vec![WeightedTarget::new(cluster, 1)]);
        let route = RouteEntry::forward("r", PathMatch::Prefix("/".into()), action);
        VirtualHost { name: name.into(), domains: vec![name.into()], routes: vec![route] }
    }

    #[test]
    fn a_host_is_looked_up_in_its_table_then_among_those_asked_for() {
        let table = RouteTable::new("80", vec![host("local", "c-local")], true);
        let mut config = ProxyConfig::default();
        assert_eq!(config.virtual_host(&table, "local"), Lookup::Found(&table.virtual_hosts()[0]));
        assert_eq!(config.virtual_host(&table, "Ledger.Bank"), Lookup::Ask("80/ledger.bank".into()));
        assert!(!config.on_demand_settled("80/ledger.bank"), "not answered yet");
        config.on_demand.insert("80/ledger.bank".into(), Some(host("ledger.bank", "c-ledger")));
        assert!(matches!(config.virtual_host(&table, "ledger.bank"), Lookup::Found(h) if h.name == "ledger.bank"));
        assert!(config.on_demand_settled("80/ledger.bank"), "a cluster that is not there is not waited for");
        let cluster = ClusterConfig::new("c-ledger", LbAlgorithm::RoundRobin, "c-ledger");
        config.clusters.insert("c-ledger".into(), cluster);
        assert!(!config.on_demand_settled("80/ledger.bank"), "nor its endpoints");
        config.endpoints.insert("c-ledger".into(), Vec::new());
        assert!(config.on_demand_settled("80/ledger.bank"));
        config.on_demand.insert("80/nowhere".into(), None);
        assert_eq!(config.virtual_host(&table, "nowhere"), Lookup::Unknown);
        assert!(config.on_demand_settled("80/nowhere"), "a known absence settles at once");
        assert_eq!(config.virtual_host(&table, "10.0.0.5:80"), Lookup::Unknown, "addresses are never asked for");
        assert_eq!(config.virtual_host(&table, "[::1]:80"), Lookup::Unknown);
        let fixed = RouteTable::new("80", table.virtual_hosts().to_vec(), false);
        assert_eq!(config.virtual_host(&fixed, "other"), Lookup::Unknown, "no on-demand discovery for this table");
    }

    /// TCP asks by address for the Service whose cluster IP it was sent to; absent addresses have a budget of
    /// their own, so clients dialling many addresses do not stop the proxy asking for hosts.
    #[test]
    fn a_cluster_ip_is_looked_up_in_its_table_then_asked_for_by_address() {
        let mut local = host("local", "c-local");
        local.domains.push("10.96.0.1".into());
        let table = RouteTable::new("5432", vec![local], true);
        let mut config = ProxyConfig::default();
        let v4: IpAddr = "10.96.0.1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert!(matches!(config.service_at(&table, v4), Lookup::Found(h) if h.name == "local"));
        let other: IpAddr = "10.96.0.9".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(config.service_at(&table, other), Lookup::Ask("5432/10.96.0.9".into()));
        let v6: IpAddr = "fd00::9".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(config.service_at(&table, v6), Lookup::Ask("5432/[fd00::9]".into()));
        let mut store = host("store.data.svc.cluster.local", "c-store");
        store.domains.push("10.96.0.9".into());
        config.on_demand.insert("5432/10.96.0.9".into(), Some(store.clone()));
        assert!(
            matches!(config.service_at(&table, other), Lookup::Found(h) if h.name == "store.data.svc.cluster.local")
        );
        config.on_demand.insert("5432/10.1.0.7".into(), Some(store));
        let pod: IpAddr = "10.1.0.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(config.service_at(&table, pod), Lookup::Unknown, "an answer for a pod is no cluster IP's");
        for i in 0..weft_xds::MAX_ON_DEMAND_NAMES {
            config.on_demand.insert(format!("5432/10.1.{}.{}", i / 256, i % 256), None);
        }
        assert_eq!(config.service_at(&table, v6), Lookup::Unknown, "as many addresses found absent as it may ask");
        assert_eq!(config.virtual_host(&table, "ledger.bank"), Lookup::Ask("5432/ledger.bank".into()), "hosts still");
        let fixed = RouteTable::new("5432", Vec::new(), false);
        assert_eq!(config.service_at(&fixed, other), Lookup::Unknown, "no on-demand discovery for this table");
        let fresh = ProxyConfig::default();
        for (address, asked) in [("93.184.216.34", false), ("2606:2800::1", false), ("100.64.0.9", true)] {
            let ip: IpAddr = address.parse().unwrap_or(IpAddr::from([0; 4]));
            assert_eq!(matches!(fresh.service_at(&table, ip), Lookup::Ask(_)), asked, "{address}");
        }
    }
}
