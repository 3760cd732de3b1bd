//! Building a [`Snapshot`] from the objects the index holds: Services with their endpoints, the routing rules
//! with their hosts resolved, the per-pod maps and the credentials; and reading those objects' common fields.
//! The incremental update (`update.rs`) rebuilds parts with the same functions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use weft_crds::destination_rule::locality::Locality;
use weft_crds::{DestinationRule, HttpRoute, VirtualService};
use weft_xds::inbound::PeerMode;

use super::addresses::{AddressIndex, ServiceAddresses};
use super::authz::AuthorizationPolicyModel;
use super::delegate;
use super::endpoints::{EndpointSources, service_ports, workload_locality};
use super::peer_authn::{PeerAuthenticationModel, inbound_policy};
use super::rate_limits::RateLimitPolicyModel;
use super::snapshot::{DestinationRuleModel, RuleModel, ServiceModel, Snapshot, VirtualServiceModel};
use crate::source::{DEFAULT_NAMESPACE, Kind, Rejection, Resource, ResourceKey};

/// Builds a snapshot from every known object.
pub fn build<'a>(
    objects: impl Iterator<Item = &'a Resource>,
    rejections: &BTreeMap<ResourceKey, Rejection>,
    root_namespace: &str,
) -> Snapshot {
    let mut services = Vec::new();
    let mut pods = Vec::new();
    let mut slices = Vec::new();
    let mut virtual_services = Vec::new();
    let mut destination_rules = Vec::new();
    let mut peer_authentications = Vec::new();
    let mut authorization_policies = Vec::new();
    let mut rate_limit_policies = Vec::new();
    let mut nodes = Vec::new();
    let mut credentials = super::credentials::Credentials::new();
    for object in objects {
        match object {
            Resource::Service(s) => services.push(&**s),
            Resource::Pod(p) => pods.push(&**p),
            Resource::EndpointSlice(s) => slices.push(&**s),
            Resource::VirtualService(v) => virtual_services.push(&**v),
            Resource::DestinationRule(d) => destination_rules.push(&**d),
            Resource::PeerAuthentication(p) => peer_authentications.push(PeerAuthenticationModel::of(p)),
            Resource::AuthorizationPolicy(p) => authorization_policies.push(AuthorizationPolicyModel::of(p)),
            Resource::HttpLocalRateLimitPolicy(p) => rate_limit_policies.push(RateLimitPolicyModel::of(p)),
            Resource::Node(n) => nodes.push(&**n),
            Resource::Secret(secret) => {
                credentials.insert(secret_key(secret), secret.credential.clone());
            }
        }
    }
    let node_localities = node_localities(nodes.into_iter());
    let sources = EndpointSources::new(&pods, &slices, &node_localities);
    let models = |policies: &[PeerAuthenticationModel]| {
        let model = |s: &&Service| service_model(s, &sources, (policies, root_namespace));
        services.iter().map(model).map(|m| (m.fqdn(), Arc::new(m))).collect()
    };
    let services: BTreeMap<String, Arc<ServiceModel>> = models(&peer_authentications);
    let mut addresses = AddressIndex::default();
    for (fqdn, service) in &services {
        addresses.update(fqdn, ServiceAddresses::default(), ServiceAddresses::of(Some(service)));
    }
    let mut snapshot = Snapshot {
        services: Arc::new(services),
        addresses: Arc::new(addresses),
        peer_authentications: Arc::new(peer_authentications),
        authorization_policies: Arc::new(authorization_policies),
        rate_limit_policies: Arc::new(rate_limit_policies),
        pod_labels: Arc::new(pods.iter().map(|p| pod_labels_entry(p)).collect()),
        pod_accounts: Arc::new(pods.iter().map(|p| pod_account_entry(p)).collect()),
        pod_localities: Arc::new(pods.iter().filter_map(|p| pod_locality_entry(p, &node_localities)).collect()),
        node_localities: Arc::new(node_localities),
        credentials: Arc::new(credentials),
        rejections: rejections.clone(),
        root: root_namespace.to_string(),
        ..Snapshot::default()
    };
    set_rules(&mut snapshot, virtual_services.into_iter(), destination_rules.into_iter());
    snapshot
}

/// The `namespace/name` a Secret's credential is found by.
pub(super) fn secret_key(secret: &super::credentials::HeldSecret) -> String {
    let namespace = namespace_of(&secret.metadata.namespace);
    super::credentials::credential_key(&namespace, secret.metadata.name.as_deref().unwrap_or_default())
}

/// Puts these rules in, their hosts resolved against the snapshot's Services, and indexes them by host.
pub(super) fn set_rules<'a>(
    snapshot: &mut Snapshot,
    virtual_services: impl Iterator<Item = &'a VirtualService>,
    destination_rules: impl Iterator<Item = &'a DestinationRule>,
) {
    let mut virtual_services: Vec<VirtualServiceModel> =
        virtual_services.map(|vs| virtual_service_model(snapshot, vs)).collect();
    let effective: Vec<Vec<HttpRoute>> = {
        let delegates = delegate::delegates(virtual_services.iter());
        let find = |namespace: &str, name: &str| delegates.get(&(namespace, name)).copied();
        let qualify = |host: &str, namespace: &str| snapshot.resolve_host(host, namespace);
        virtual_services.iter().map(|vs| delegate::effective_rules(vs, find, qualify)).collect()
    };
    for (vs, http) in virtual_services.iter_mut().zip(effective) {
        vs.http = http;
    }
    let destination_rules = destination_rules.map(|dr| Arc::new(destination_rule_model(snapshot, dr))).collect();
    snapshot.virtual_services = Arc::new(virtual_services.into_iter().map(Arc::new).collect());
    snapshot.destination_rules = Arc::new(destination_rules);
    snapshot.index_virtual_service_hosts();
    snapshot.index_destination_rule_hosts();
}

/// Brings the rules up to date with the VirtualServices and DestinationRules `changed` names (that came, went or
/// changed), every other rule keeping its model (the same `Arc`): an edit builds that rule's model, not every
/// rule's; a list the change touched and its host lookup are made anew, the other kind's kept. Does nothing and
/// says `false` when a delegate (a VirtualService without hosts, before or after) is among them: the rules in
/// force of its roots change too, and the caller puts every rule in again ([`set_rules`]).
pub(super) fn update_rules(
    snapshot: &mut Snapshot,
    objects: &BTreeMap<ResourceKey, Resource>,
    changed: &BTreeSet<ResourceKey>,
) -> bool {
    let was_delegate = |key: &ResourceKey| {
        let place = place_of(&snapshot.virtual_services, key);
        place.is_ok_and(|i| snapshot.virtual_services[i].spec.hosts.is_empty())
    };
    let is_delegate = |key| matches!(objects.get(key), Some(Resource::VirtualService(vs)) if vs.spec.hosts.is_empty());
    if changed.iter().any(|key| key.kind == Kind::VirtualService && (was_delegate(key) || is_delegate(key))) {
        return false;
    }
    let mut virtual_services = (*snapshot.virtual_services).clone();
    let mut destination_rules = (*snapshot.destination_rules).clone();
    {
        let delegates = delegate::delegates(snapshot.virtual_services.iter().map(Arc::as_ref));
        let find = |namespace: &str, name: &str| delegates.get(&(namespace, name)).copied();
        let qualify = |host: &str, namespace: &str| snapshot.resolve_host(host, namespace);
        for key in changed {
            match (key.kind, objects.get(key)) {
                (Kind::VirtualService, Some(Resource::VirtualService(vs))) => {
                    let mut model = virtual_service_model(snapshot, vs);
                    model.http = delegate::effective_rules(&model, find, qualify);
                    splice(&mut virtual_services, key, Some(Arc::new(model)));
                }
                (Kind::VirtualService, _) => splice(&mut virtual_services, key, None),
                (Kind::DestinationRule, Some(Resource::DestinationRule(dr))) => {
                    let model = Arc::new(destination_rule_model(snapshot, dr));
                    splice(&mut destination_rules, key, Some(model));
                }
                (Kind::DestinationRule, _) => splice(&mut destination_rules, key, None),
                _ => {}
            }
        }
    }
    // A list no change touched keeps its pointer too.
    let touched = |kind| changed.iter().any(|key| key.kind == kind);
    if touched(Kind::VirtualService) {
        snapshot.virtual_services = Arc::new(virtual_services);
        snapshot.index_virtual_service_hosts();
    }
    if touched(Kind::DestinationRule) {
        snapshot.destination_rules = Arc::new(destination_rules);
        snapshot.index_destination_rule_hosts();
    }
    true
}

/// Where the rule `key` names is, or would go, in a list in namespace/name order.
fn place_of<T: RuleModel>(list: &[Arc<T>], key: &ResourceKey) -> Result<usize, usize> {
    list.binary_search_by(|model| model.namespace_name().cmp(&(key.namespace.as_str(), key.name.as_str())))
}

/// Puts `model` in `list` at the place of `key`, replacing the rule there, or takes that rule out (`None`).
fn splice<T: RuleModel>(list: &mut Vec<Arc<T>>, key: &ResourceKey, model: Option<Arc<T>>) {
    match (place_of(list, key), model) {
        (Ok(i), Some(model)) => list[i] = model,
        (Err(i), Some(model)) => list.insert(i, model),
        (Ok(i), None) => drop(list.remove(i)),
        (Err(_), None) => {}
    }
}

/// A VirtualService's model, its hosts resolved; its rules in force (`http`) are filled in after.
fn virtual_service_model(snapshot: &Snapshot, vs: &VirtualService) -> VirtualServiceModel {
    let namespace = namespace_of(&vs.metadata.namespace);
    VirtualServiceModel {
        hosts: vs.spec.hosts.iter().map(|h| snapshot.resolve_host(h, &namespace)).collect(),
        name: name_of(&vs.metadata.name),
        namespace,
        generation: vs.metadata.generation,
        status: vs.status.clone(),
        spec: vs.spec.clone(),
        http: Vec::new(),
    }
}

fn destination_rule_model(snapshot: &Snapshot, dr: &DestinationRule) -> DestinationRuleModel {
    let namespace = namespace_of(&dr.metadata.namespace);
    DestinationRuleModel {
        host: snapshot.resolve_host(&dr.spec.host, &namespace),
        name: name_of(&dr.metadata.name),
        namespace,
        generation: dr.metadata.generation,
        status: dr.status.clone(),
        spec: dr.spec.clone(),
    }
}

/// A pod's key in the per-pod maps: `namespace/name`.
fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", namespace_of(&pod.metadata.namespace), name_of(&pod.metadata.name))
}

/// A pod's entry in [`Snapshot::pod_labels`].
pub(super) fn pod_labels_entry(pod: &Pod) -> (String, BTreeMap<String, String>) {
    (pod_key(pod), labels_of(pod))
}

/// A pod's entry in [`Snapshot::pod_accounts`].
pub(super) fn pod_account_entry(pod: &Pod) -> (String, String) {
    (pod_key(pod), service_account_of(pod))
}

/// A pod's entry in [`Snapshot::pod_localities`], when its locality is known.
pub(super) fn pod_locality_entry(pod: &Pod, nodes: &BTreeMap<String, Locality>) -> Option<(String, Locality)> {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let locality = workload_locality(Some(pod), node, None, nodes);
    locality.is_known().then(|| (pod_key(pod), locality))
}

/// The nodes' localities, from their topology labels; nodes without any are left out.
pub(super) fn node_localities<'a>(nodes: impl Iterator<Item = &'a Node>) -> BTreeMap<String, Locality> {
    nodes
        .filter_map(|node| {
            let locality = Locality::from_labels(node.metadata.labels.as_ref()?);
            locality.is_known().then(|| (name_of(&node.metadata.name), locality))
        })
        .collect()
}

/// The pod's service account; Kubernetes gives a pod that names none the namespace's `default`.
pub(super) fn service_account_of(pod: &Pod) -> String {
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).filter(|a| !a.is_empty());
    account.unwrap_or_else(|| "default".into())
}

/// A Service's model. Its endpoints whose pod's PeerAuthentication says `DISABLE` for the port are taken as
/// without a sidecar: clients send them plaintext, as Istio's do (pilot's mTLS checker for auto mTLS).
pub(super) fn service_model(
    service: &Service,
    sources: &EndpointSources<'_>,
    (policies, root_namespace): (&[PeerAuthenticationModel], &str),
) -> ServiceModel {
    let namespace = namespace_of(&service.metadata.namespace);
    let name = name_of(&service.metadata.name);
    let mut ports = service_ports(service, &namespace, &name, sources);
    if !policies.is_empty() {
        for endpoint in ports.iter_mut().flat_map(|p| p.endpoints.iter_mut()) {
            let mode =
                || inbound_policy(policies, root_namespace, &namespace, &endpoint.labels).mode_for(endpoint.port);
            if endpoint.sidecar_account.is_some() && mode() == PeerMode::Disable {
                endpoint.sidecar_account = None;
            }
        }
    }
    let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    ServiceModel { ports, cluster_ips: cluster_ips(service), name, namespace, selector }
}

/// A Service's `spec.clusterIPs` (dual-stack: one per family, the primary first), or its `spec.clusterIP` where
/// the list is absent; only addresses (headless Services say `None`).
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let listed = spec.cluster_ips.as_deref().filter(|ips| !ips.is_empty());
    let written: Vec<&str> = match listed {
        Some(ips) => ips.iter().map(String::as_str).collect(),
        None => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    written.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

pub(super) fn namespace_of(namespace: &Option<String>) -> String {
    namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

fn name_of(name: &Option<String>) -> String {
    name.clone().unwrap_or_default()
}

pub(super) fn labels_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}
