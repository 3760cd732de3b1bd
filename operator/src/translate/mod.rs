//! Translation: `(&Snapshot, &ProxyNode) -> ProxyResources`, the xDS v3 resources one proxy should hold. Pure.
//! What does not depend on the proxy ([`shared`]: clusters, endpoints, listeners) is apart from what depends on
//! its namespace ([`routes_for`]: the short-name domains), so the ADS server translates each once per snapshot;
//! only the inbound listener ([`inbound_policy`]) is the pod's own.
//!
//! Per Service port: a cluster `outbound|PORT||HOST` plus one per DestinationRule subset, each with an EDS
//! assignment; per port: a listener `0.0.0.0_PORT` whose HTTP connection manager takes routes from RDS config
//! `PORT`, holding one virtual host per Service on that port. The naming and shape follow Istio's sidecar config
//! so that Envoy itself could consume it.
//!
//! A new snapshot is translated incrementally by the ADS server: [`changes`] says which Services' pieces may
//! differ, and only those are translated again.

mod authz;
pub mod changes;
mod clusters;
mod listeners;
mod locality;
mod port_protocol;
mod rate_limit;
mod routes;
pub mod scope;

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{AggregatedConfigSource, ConfigSource, config_source};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use weft_crds::destination_rule::locality::{Locality, LocalityLbSetting};
use weft_xds::ProxyNode;
use weft_xds::inbound::InboundPolicy;

use crate::index::authz::policies_for;
use crate::index::rate_limits::rate_limits_for;
use crate::index::{DestinationRuleModel, ServiceModel, Snapshot};

/// Everything one proxy is sent, each list sorted by resource name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
}

/// The resources for one proxy, the whole mesh (the `mesh` scope), as every proxy reads them (ports declared TCP
/// detect; a proxy that reads [`declared_tcp_listeners`] gets those in their place).
pub fn translate(snapshot: &Snapshot, proxy: &ProxyNode) -> ProxyResources {
    let (mut clusters, mut endpoints) = clusters::build(snapshot, Some(&proxy.namespace));
    let own = own_clusters(snapshot, proxy, true);
    clusters.retain(|c| !own.replaces(&c.name));
    endpoints.retain(|e| !own.replaces(&e.cluster_name));
    replace_or_add(&mut clusters, own.clusters, |c| &c.name);
    replace_or_add(&mut endpoints, own.endpoints, |e| &e.cluster_name);
    let mut listeners = listeners(snapshot);
    for own in own_listeners(snapshot, proxy, ports(snapshot).into_iter(), false) {
        if let Some(shared) = listeners.iter_mut().find(|l| l.name == own.name) {
            *shared = own;
        }
    }
    // `virtualInbound` sorts after every `0.0.0.0_PORT`.
    if let Some(policy) = inbound_policy(snapshot, proxy) {
        listeners.push(weft_xds::inbound::listener(&policy));
    }
    ProxyResources { clusters, endpoints, listeners, routes: routes_for(snapshot, &proxy.namespace, None) }
}

/// Puts each of `own` in place of the one of the same name in `all`, or adds it, keeping `all` sorted by name.
fn replace_or_add<T>(all: &mut Vec<T>, own: Vec<T>, name: fn(&T) -> &String) {
    for item in own {
        match all.binary_search_by(|existing| name(existing).cmp(name(&item))) {
            Ok(at) => all[at] = item,
            Err(at) => all.insert(at, item),
        }
    }
}

/// The clusters and endpoint assignments a proxy makes with DestinationRules of its own.
#[derive(Debug, Default)]
pub struct OwnClusters {
    /// The Services (FQDN) whose clusters these replace, all of them (subsets of other rules included).
    pub services: BTreeSet<String>,
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
}

impl OwnClusters {
    /// Whether the cluster (or assignment) `name` is one of a Service these replace.
    pub fn replaces(&self, name: &str) -> bool {
        name.rsplit('|').next().is_some_and(|host| self.services.contains(host))
    }
}

/// The clusters (and endpoint assignments) this proxy makes with a DestinationRule of its own: one of its
/// namespace whose `workloadSelector` selects its pod. Empty for most proxies. Without `keys`, the Secrets of
/// `credentialName`s are left out (as if missing: nothing presented or trusted).
pub fn own_clusters(snapshot: &Snapshot, proxy: &ProxyNode, keys: bool) -> OwnClusters {
    let mut own = OwnClusters::default();
    for (fqdn, rule) in snapshot.workload_destination_rules(&proxy.namespace, pod_labels(snapshot, proxy)) {
        if let Some(service) = snapshot.services.get(&fqdn) {
            let (clusters, assignments) = clusters::of_service(service, Some(rule), snapshot, keys);
            own.clusters.extend(clusters);
            own.endpoints.extend(assignments);
            own.services.insert(fqdn);
        }
    }
    own
}

/// Where the proxy runs, when its pod is indexed and its locality known.
pub fn proxy_locality<'a>(snapshot: &'a Snapshot, proxy: &ProxyNode) -> Option<&'a Locality> {
    snapshot.pod_localities.get(&format!("{}/{}", proxy.namespace, proxy.pod_name))
}

/// The endpoint assignments among `assignments` (of clusters made with `rule`) balanced by locality, each
/// with its setting: what [`localized`] needs per proxy locality.
pub fn locality_assignments(
    rule: Option<&DestinationRuleModel>,
    assignments: &[ClusterLoadAssignment],
) -> Vec<(ClusterLoadAssignment, LocalityLbSetting)> {
    assignments
        .iter()
        .filter(|a| a.endpoints.iter().any(|group| group.locality.is_some()))
        .filter_map(|a| clusters::locality_setting_of(rule, &a.cluster_name).map(|setting| (a.clone(), setting)))
        .collect()
}

/// An assignment as a proxy in `proxy` gets it (see [`locality`]).
pub fn localized(
    assignment: &ClusterLoadAssignment,
    setting: &LocalityLbSetting,
    proxy: &Locality,
) -> ClusterLoadAssignment {
    locality::localize(assignment, setting, proxy)
}

/// The labels of the proxy's pod; none when the pod is not indexed (yet).
fn pod_labels<'a>(snapshot: &'a Snapshot, proxy: &ProxyNode) -> &'a BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    snapshot.pod_labels.get(&format!("{}/{}", proxy.namespace, proxy.pod_name)).unwrap_or(&NONE)
}

/// What the proxy's inbound side accepts, authorizes and limits, when that is more than the default
/// (`PERMISSIVE` everywhere, nothing to authorize or limit, which a proxy applies without an inbound listener):
/// PeerAuthentication modes when the mesh has mutual TLS, the AuthorizationPolicies and the
/// HTTPLocalRateLimitPolicies that apply to the pod. The proxy's pod may
/// not be indexed yet: then only the policies that select no labels apply.
pub fn inbound_policy(snapshot: &Snapshot, proxy: &ProxyNode) -> Option<InboundPolicy> {
    let labels = pod_labels(snapshot, proxy);
    let mut policy = match snapshot.trust_domain {
        Some(_) => snapshot.inbound_policy(&proxy.namespace, labels),
        None => InboundPolicy::default(),
    };
    policy.authz = authz::inbound_authz(&policies_for(snapshot, &proxy.namespace, labels));
    let trust_domain = snapshot.trust_domain.as_deref().unwrap_or(weft_xds::identity::DEFAULT_TRUST_DOMAIN);
    let limits = rate_limits_for(snapshot, &proxy.namespace, labels);
    (policy.rate_limit, policy.port_rate_limits) = rate_limit::inbound_limits(&limits, trust_domain);
    (!policy.is_default()).then_some(policy)
}

/// The resources every proxy gets alike.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedResources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
}

/// One Service's clusters and their endpoint assignments, made with `rule`, the DestinationRule applied to it.
pub fn service_clusters(
    service: &ServiceModel,
    rule: Option<&DestinationRuleModel>,
    snapshot: &Snapshot,
) -> (Vec<Cluster>, Vec<ClusterLoadAssignment>) {
    clusters::of_service(service, rule, snapshot, true)
}

/// The outbound listeners, one per Service port, with the tcp and tls rules' chains that name no clients, as every
/// proxy reads them (a port declared TCP detects: see [`declared_tcp_listeners`]).
pub fn listeners(snapshot: &Snapshot) -> Vec<Listener> {
    let kinds = PortKinds::new(snapshot, false);
    ports(snapshot).into_iter().map(|port| listeners::outbound(snapshot, port, None, kinds.of(port))).collect()
}

/// The outbound listeners of the ports every Service declares a protocol other than HTTP on, as proxies that
/// announce [`weft_xds::detection::DECLARED_TCP_FEATURE`] get them in place of those of [`listeners`]: TCP at once.
pub fn declared_tcp_listeners(snapshot: &Snapshot) -> Vec<Listener> {
    let tcp = port_protocol::tcp_ports(snapshot);
    tcp.into_iter().map(|port| listeners::outbound(snapshot, port, None, listeners::PortKind::Tcp)).collect()
}

/// The outbound listeners of `ports` that may differ for this proxy from the shared ones: those of the ports where
/// a tcp or tls condition names this proxy's pod (`sourceLabels`) or namespace (`sourceNamespace`), or where a
/// VirtualService exported to its namespace but not to every one names a Service. `declared_tcp`: the proxy
/// reads listeners declared TCP.
pub fn own_listeners(
    snapshot: &Snapshot,
    proxy: &ProxyNode,
    ports: impl Iterator<Item = u16>,
    declared_tcp: bool,
) -> Vec<Listener> {
    let source = listeners::Source { namespace: &proxy.namespace, labels: pod_labels(snapshot, proxy) };
    let own: Vec<u16> = ports.filter(|port| listeners::needs_own_listener(snapshot, *port, &source)).collect();
    if own.is_empty() {
        return Vec::new(); // the usual case: no pass over the Services for this proxy
    }
    let kinds = PortKinds::new(snapshot, declared_tcp);
    own.into_iter().map(|port| listeners::outbound(snapshot, port, Some(&source), kinds.of(port))).collect()
}

/// What each port's Services declare, for its listener.
struct PortKinds {
    http: BTreeSet<u16>,
    /// Empty for a proxy that does not read listeners declared TCP.
    tcp: BTreeSet<u16>,
}

impl PortKinds {
    fn new(snapshot: &Snapshot, declared_tcp: bool) -> Self {
        let tcp = if declared_tcp { port_protocol::tcp_ports(snapshot) } else { BTreeSet::new() };
        Self { http: port_protocol::http_ports(snapshot), tcp }
    }

    fn of(&self, port: u16) -> listeners::PortKind {
        match (self.http.contains(&port), self.tcp.contains(&port)) {
            (true, _) => listeners::PortKind::Http,
            (false, true) => listeners::PortKind::Tcp,
            (false, false) => listeners::PortKind::Detect,
        }
    }
}

/// The ports whose listeners may differ between proxies (so some proxies may get their own listener there).
pub fn ports_differing_by_client(snapshot: &Snapshot) -> BTreeSet<u16> {
    ports(snapshot).into_iter().filter(|port| listeners::differs_by_client(snapshot, *port)).collect()
}

/// The route configurations of proxies in `namespace`: with a `scope`, the virtual hosts of those Services only,
/// the others asked for on demand; else every Service's.
pub fn routes_for(snapshot: &Snapshot, namespace: &str, scope: Option<&BTreeSet<String>>) -> Vec<RouteConfiguration> {
    let services = || -> Box<dyn Iterator<Item = &ServiceModel>> {
        match scope {
            Some(scope) => Box::new(scope.iter().filter_map(|fqdn| snapshot.services.get(fqdn).map(|s| s.as_ref()))),
            None => Box::new(snapshot.services.values().map(|s| s.as_ref())),
        }
    };
    ports(snapshot)
        .into_iter()
        .map(|port| routes::route_configuration(snapshot, namespace, port, services(), scope.is_some()))
        .collect()
}

/// The virtual host of `service`'s `port` answering the on-demand resource name `name` for proxies in `namespace`
/// (the Service [`scope::on_demand_service`] resolves it to), named by it.
pub fn on_demand_virtual_host(
    snapshot: &Snapshot,
    (service, port): (&ServiceModel, u16),
    namespace: &str,
    name: &str,
) -> VirtualHost {
    let mut host = routes::virtual_host(snapshot, service, port, namespace);
    host.name = name.to_string();
    host
}

/// Every port some Service has.
pub(crate) fn ports(snapshot: &Snapshot) -> BTreeSet<u16> {
    snapshot.services.values().flat_map(|s| s.ports.iter().map(|p| p.port)).collect()
}

/// "Get this resource over the ADS stream itself."
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn duration(d: std::time::Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
