//! Clusters (one per Service port and per DestinationRule subset) and their endpoint assignments; the traffic
//! policy's fields are in [`policy`].

mod policy;
mod tls;

pub(super) use policy::{hash_policy, tcp_idle_timeout};

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, LoadBalancingPolicy, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HealthStatus, RuntimeDouble, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::SlowStartConfig;
use envoy_types::pb::envoy::r#type::v3::Percent;
use weft_crds::destination_rule::locality::LocalityLbSetting;
use weft_crds::duration::parse_duration;
use weft_crds::{SimpleLb, TrafficPolicy};
use weft_xds::lb::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_RING_SIZE, LbAlgorithm, maglev_policy, ring_hash_policy, with_locality_weights,
};
use weft_xds::provenance::{ConfigKind, config_metadata};
use weft_xds::{ClusterName, cluster_name};

use super::locality::{distributes, locality_setting};
use super::port_protocol::PortProtocol;
use super::{ads_config_source, duration};
use crate::index::{DestinationRuleModel, EndpointModel, ServiceModel, ServicePortModel, Snapshot};

/// How long a proxy waits for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Every Service's clusters and endpoint assignments, each list sorted by name, as proxies in `namespace` see them
/// (the DestinationRule each applies); `None`: as most namespaces do (see [`Snapshot::default_destination_rule`]).
pub(super) fn build(snapshot: &Snapshot, namespace: Option<&str>) -> (Vec<Cluster>, Vec<ClusterLoadAssignment>) {
    let mut clusters = BTreeMap::new();
    let mut assignments = BTreeMap::new();
    for service in snapshot.services.values() {
        let fqdn = service.fqdn();
        let rule = match namespace {
            Some(namespace) => snapshot.destination_rule_for(&fqdn, namespace),
            None => snapshot.default_destination_rule(&fqdn),
        };
        let (own_clusters, own_assignments) = of_service(service, rule, snapshot, true);
        clusters.extend(own_clusters.into_iter().map(|c| (c.name.clone(), c)));
        assignments.extend(own_assignments.into_iter().map(|a| (a.cluster_name.clone(), a)));
    }
    (clusters.into_values().collect(), assignments.into_values().collect())
}

/// One Service's clusters (per port, and per port and subset of `rule`, the DestinationRule applied to it) and
/// their endpoint assignments. A wildcard rule's subsets are each matching Service's. When the mesh has a CA
/// (the snapshot's trust domain), endpoints that run a sidecar are reached over mutual TLS; a `credentialName`
/// is a Secret of the rule's namespace (left out without `keys`).
pub(super) fn of_service(
    service: &ServiceModel,
    rule: Option<&DestinationRuleModel>,
    snapshot: &Snapshot,
    keys: bool,
) -> (Vec<Cluster>, Vec<ClusterLoadAssignment>) {
    let fqdn = service.fqdn();
    let context = tls::TransportContext {
        trust_domain: snapshot.trust_domain.as_deref(),
        credentials: rule.filter(|_| keys).map(|r| (r.namespace.as_str(), snapshot.credentials.as_ref())),
    };
    let default_policy = rule.and_then(|r| r.spec.traffic_policy.as_ref());
    let origin = rule.map(|r| config_metadata(ConfigKind::DestinationRule, &r.namespace, &r.name));
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for port in &service.ports {
        let name = cluster_name(&fqdn, port.port, "");
        let own = policy::cluster_policy(default_policy, None, port.port);
        let (mut cluster, marks) = with_transport(&name, own.as_ref(), service, port, &context);
        cluster.metadata = origin.clone();
        let balanced = !is_original_destination(&cluster);
        clusters.push(cluster);
        if balanced {
            let by_locality = locality_setting(own.as_ref()).is_some();
            assignments.push(assignment(&name, port.endpoints.iter(), marks, by_locality));
        }
        for subset in rule.map(|r| r.spec.subsets.as_slice()).unwrap_or_default() {
            let name = cluster_name(&fqdn, port.port, &subset.name);
            let own = policy::cluster_policy(default_policy, subset.traffic_policy.as_ref(), port.port);
            let (mut cluster, marks) = with_transport(&name, own.as_ref(), service, port, &context);
            cluster.metadata = origin.clone();
            let balanced = !is_original_destination(&cluster);
            clusters.push(cluster);
            let members =
                port.endpoints.iter().filter(|e| subset.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)));
            if balanced {
                let by_locality = locality_setting(own.as_ref()).is_some();
                assignments.push(assignment(&name, members, marks, by_locality));
            }
        }
    }
    (clusters, assignments)
}

/// The cluster `name` under `policy`, with its transport; whether its endpoints that run a sidecar are marked.
fn with_transport(
    name: &str,
    policy: Option<&TrafficPolicy>,
    service: &ServiceModel,
    port: &ServicePortModel,
    context: &tls::TransportContext<'_>,
) -> (Cluster, bool) {
    let mut built = cluster(name, policy, PortProtocol::of(&port.name));
    let transport = tls::transport(service, port, context, policy.and_then(|p| p.tls.as_ref()));
    let marks = transport.marks_sidecars;
    transport.apply(&mut built);
    (built, marks)
}

/// Whether a cluster sends each request where its client dialled (`PASSTHROUGH`): it has no endpoint assignment.
fn is_original_destination(cluster: &Cluster) -> bool {
    cluster.cluster_discovery_type
        == Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32))
}

fn cluster(name: &str, policy: Option<&TrafficPolicy>, port: PortProtocol) -> Cluster {
    if lb_algorithm(policy).is_none() {
        // `PASSTHROUGH`: Envoy's original-destination cluster, no endpoints, no balancing.
        let mut cluster = Cluster {
            name: name.to_string(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            )),
            lb_policy: cluster::LbPolicy::ClusterProvided as i32,
            connect_timeout: Some(duration(CONNECT_TIMEOUT)),
            ..Default::default()
        };
        policy::apply(&mut cluster, policy, port);
        return cluster;
    }
    let mut cluster = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        load_balancing_policy: Some(match distributes(policy) {
            true => with_locality_weights(load_balancing(policy)),
            false => load_balancing(policy),
        }),
        ..Default::default()
    };
    policy::apply(&mut cluster, policy, port);
    cluster
}

/// Consistent hashing as Envoy's Maglev or ring hash with its table size; else the `simple` algorithm.
fn load_balancing(policy: Option<&TrafficPolicy>) -> LoadBalancingPolicy {
    match policy.and_then(policy::consistent_hash) {
        Some(hash) => match &hash.maglev {
            Some(maglev) => maglev_policy(maglev.table_size.unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE)),
            None => {
                let size = hash.ring_hash.as_ref().and_then(|r| r.minimum_ring_size).or(hash.minimum_ring_size);
                ring_hash_policy(size.unwrap_or(DEFAULT_RING_SIZE))
            }
        },
        None => lb_algorithm(policy).unwrap_or(LbAlgorithm::PeakEwma).policy_with(policy.and_then(slow_start)),
    }
}

/// Istio's warmup as Envoy's slow start; Istio's defaults (10 %, aggression 1) written out.
fn slow_start(policy: &TrafficPolicy) -> Option<SlowStartConfig> {
    let (window, minimum_percent, aggression) = policy.load_balancer.as_ref()?.warmup_settings()?;
    Some(SlowStartConfig {
        slow_start_window: Some(duration(parse_duration(window).ok()?)),
        aggression: Some(RuntimeDouble { default_value: aggression.unwrap_or(1.0), runtime_key: String::new() }),
        min_weight_percent: Some(Percent { value: minimum_percent.unwrap_or(10.0) }),
    })
}

/// The balancer of `simple`; `None` for `PASSTHROUGH`, which does not balance.
fn lb_algorithm(policy: Option<&TrafficPolicy>) -> Option<LbAlgorithm> {
    match policy.and_then(|p| p.load_balancer.as_ref()).and_then(|lb| lb.simple) {
        None | Some(SimpleLb::Unspecified) => Some(LbAlgorithm::PeakEwma),
        Some(SimpleLb::RoundRobin) => Some(LbAlgorithm::RoundRobin),
        Some(SimpleLb::LeastRequest | SimpleLb::LeastConn) => Some(LbAlgorithm::LeastRequest),
        Some(SimpleLb::Random) => Some(LbAlgorithm::Random),
        Some(SimpleLb::Passthrough) => None,
    }
}

/// How the endpoints of `cluster` (made with `rule`) are balanced by locality; `None` when they are not.
pub(super) fn locality_setting_of(rule: Option<&DestinationRuleModel>, cluster: &str) -> Option<LocalityLbSetting> {
    let name = ClusterName::parse(cluster)?;
    let policy = rule.and_then(|rule| policy::effective_policy(rule, &name));
    locality_setting(policy.as_ref())
}

/// `mtls`: endpoints that run a sidecar are marked so (their cluster's mutual TLS socket applies);
/// `by_locality`: grouped by locality, for locality-aware balancing (see [`super::locality`]).
fn assignment<'a>(
    name: &str,
    endpoints: impl Iterator<Item = &'a EndpointModel>,
    mtls: bool,
    by_locality: bool,
) -> ClusterLoadAssignment {
    let endpoints = endpoints.map(|e| (e, lb_endpoint(e, mtls)));
    let groups = if by_locality {
        super::locality::group(endpoints)
    } else {
        let lb_endpoints: Vec<LbEndpoint> = endpoints.map(|(_, endpoint)| endpoint).collect();
        if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }]
        }
    };
    ClusterLoadAssignment { cluster_name: name.to_string(), endpoints: groups, ..Default::default() }
}

fn lb_endpoint(e: &EndpointModel, mtls: bool) -> LbEndpoint {
    LbEndpoint {
        metadata: (mtls && e.sidecar_account.is_some()).then(weft_xds::mtls::meshed_endpoint_metadata),
        health_status: if e.ready { HealthStatus::Healthy } else { HealthStatus::Unhealthy } as i32,
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: e.address.to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(e.port))),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}
