//! Endpoints of a Service port, as the Kubernetes endpoint controller defines them: from the Service's
//! EndpointSlices when it has any, otherwise from the ready Pods its selector matches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use weft_crds::destination_rule::locality::{LOCALITY_OVERRIDE_LABEL, Locality};

use super::build::labels_of;
use super::snapshot::{EndpointModel, ServicePortModel};
use crate::source::DEFAULT_NAMESPACE;

/// The label the endpoint-slice controller puts on every slice of a Service.
pub(super) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Pods and EndpointSlices grouped for lookups, built once per snapshot: without it every Service would scan
/// every pod and slice of the mesh, and snapshots would cost S x pods.
#[derive(Default)]
pub(super) struct EndpointSources<'a> {
    /// `(namespace, label key, label value)` -> pods carrying that label.
    pods_by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
    /// `(namespace, pod name)` -> pod.
    pods_by_name: HashMap<(&'a str, &'a str), &'a Pod>,
    /// `(namespace, Service name)` -> the Service's slices.
    slices_by_service: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    /// Node name -> its locality.
    nodes: Option<&'a BTreeMap<String, Locality>>,
}

impl<'a> EndpointSources<'a> {
    pub(super) fn new(pods: &[&'a Pod], slices: &[&'a EndpointSlice], nodes: &'a BTreeMap<String, Locality>) -> Self {
        let mut sources = Self { nodes: Some(nodes), ..Self::default() };
        for pod in pods {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            sources.pods_by_name.insert((namespace, pod.metadata.name.as_deref().unwrap_or_default()), pod);
            for (key, value) in pod.metadata.labels.iter().flatten() {
                sources.pods_by_label.entry((namespace, key, value)).or_default().push(pod);
            }
        }
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            if let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                sources.slices_by_service.entry((namespace, service)).or_default().push(slice);
            }
        }
        sources
    }

    /// The pods of `namespace` that `selector` (not empty) matches.
    fn selected(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<&'a Pod> {
        let Some((key, value)) = selector.iter().next() else { return Vec::new() };
        let candidates = self.pods_by_label.get(&(namespace, key.as_str(), value.as_str()));
        candidates.into_iter().flatten().copied().filter(|p| selects(selector, p)).collect()
    }
}

pub(super) fn service_ports(
    service: &Service,
    namespace: &str,
    name: &str,
    sources: &EndpointSources<'_>,
) -> Vec<ServicePortModel> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let own_slices = sources.slices_by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
    let selected_pods: Vec<&Pod> = match &spec.selector {
        Some(selector) if !selector.is_empty() => sources.selected(namespace, selector),
        _ => Vec::new(),
    };
    spec.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|port| {
            let number = u16::try_from(port.port).ok()?;
            let nodes = sources.nodes.unwrap_or(&NO_NODES);
            let endpoints = if own_slices.is_empty() {
                endpoints_from_pods(port, &selected_pods, nodes)
            } else {
                let pod_named = |pod: &str| sources.pods_by_name.get(&(namespace, pod)).copied();
                endpoints_from_slices(port, own_slices, pod_named, nodes)
            };
            Some(ServicePortModel { name: port.name.clone().unwrap_or_default(), port: number, endpoints })
        })
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

static NO_NODES: BTreeMap<String, Locality> = BTreeMap::new();

/// Where a workload runs, as Istio reads it: the pod's `istio-locality` label, else its node's topology labels,
/// else the pod's own topology labels (Kubernetes copies the node's onto pods from 1.33), else the zone the
/// EndpointSlice controller wrote. Empty when none says.
pub(super) fn workload_locality(
    pod: Option<&Pod>,
    node: Option<&str>,
    slice_zone: Option<&str>,
    nodes: &BTreeMap<String, Locality>,
) -> Locality {
    let labels = pod.and_then(|p| p.metadata.labels.as_ref());
    if let Some(labels) = labels.filter(|l| l.contains_key(LOCALITY_OVERRIDE_LABEL)) {
        return Locality::from_labels(labels);
    }
    let node = node.or_else(|| pod.and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_deref()));
    if let Some(found) = node.and_then(|n| nodes.get(n)) {
        return found.clone();
    }
    let own = labels.map(Locality::from_labels).unwrap_or_default();
    if own.is_known() {
        return own;
    }
    Locality { zone: slice_zone.unwrap_or_default().to_string(), ..Locality::default() }
}

fn endpoints_from_slices<'a>(
    port: &ServicePort,
    slices: &[&EndpointSlice],
    pod_named: impl Fn(&str) -> Option<&'a Pod>,
    nodes: &BTreeMap<String, Locality>,
) -> Vec<EndpointModel> {
    let wanted_name = port.name.clone().unwrap_or_default();
    let mut endpoints = BTreeSet::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4" || s.address_type == "IPv6") {
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == wanted_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| pod_named(r.name.as_deref().unwrap_or_default()));
            let labels = pod.map(labels_of).unwrap_or_default();
            let sidecar_account = pod.and_then(|pod| sidecar_account(pod, number));
            let locality = workload_locality(pod, endpoint.node_name.as_deref(), endpoint.zone.as_deref(), nodes);
            for address in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let (labels, sidecar_account, locality) = (labels.clone(), sidecar_account.clone(), locality.clone());
                endpoints.insert(EndpointModel { address, port: number, ready, labels, sidecar_account, locality });
            }
        }
    }
    endpoints.into_iter().collect()
}

fn endpoints_from_pods(port: &ServicePort, pods: &[&Pod], nodes: &BTreeMap<String, Locality>) -> Vec<EndpointModel> {
    let mut endpoints = BTreeSet::new();
    for pod in pods {
        let status = pod.status.as_ref();
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(address) = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse::<IpAddr>().ok()) else {
            continue;
        };
        let Some(number) = target_port(port, pod) else { continue };
        let not_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "False"));
        let (labels, sidecar_account) = (labels_of(pod), sidecar_account(pod, number));
        let locality = workload_locality(Some(pod), None, None, nodes);
        let ready = !not_ready;
        endpoints.insert(EndpointModel { address, port: number, ready, labels, sidecar_account, locality });
    }
    endpoints.into_iter().collect()
}

/// The service account of a pod whose sidecar speaks mutual TLS on `port` (labelled so by the injector,
/// [`weft_xds::mtls::TLS_MODE_LABEL`], and `port` not excluded from its inbound capture by its init container);
/// `None` for any other pod, one injected before mutual TLS was on included. Istio marks the whole pod, so its
/// clients send mutual TLS to an excluded port, which the application then cannot read.
pub(super) fn sidecar_account(pod: &Pod, port: u16) -> Option<String> {
    use weft_xds::mtls::{INIT_CONTAINER, TLS_MODE_LABEL, TLS_MODE_MUTUAL, inbound_port_excluded};
    let labels = pod.metadata.labels.as_ref()?;
    if labels.get(TLS_MODE_LABEL).map(String::as_str) != Some(TLS_MODE_MUTUAL) {
        return None;
    }
    let mut init_containers = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
    if let Some(init) = init_containers.find(|c| c.name == INIT_CONTAINER) {
        let command = init.command.iter().flatten().chain(init.args.iter().flatten()).map(String::as_str);
        if inbound_port_excluded(command, port) {
            return None;
        }
    }
    Some(super::build::service_account_of(pod))
}

/// The pod port a Service port forwards to: `targetPort` as a number, or the container port of that name.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => u16::try_from(port.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

#[cfg(test)]
mod tests {
    /// Against pods as the injector writes them (its golden outputs, both sidecar modes): the port the pod's
    /// annotation excluded is plaintext, the others mutual TLS.
    #[test]
    fn an_injected_pod_s_excluded_inbound_port_is_not_meshed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webhook/testdata/inject");
        for mode in ["native", "classic"] {
            let text = std::fs::read_to_string(dir.join(format!("exclusions.{mode}.injected"))).unwrap_or_default();
            let pod: k8s_openapi::api::core::v1::Pod = match serde_saphyr::from_str(&text) {
                Ok(pod) => pod,
                Err(err) => panic!("{mode}: {err}"),
            };
            assert_eq!(super::sidecar_account(&pod, 9090), None, "{mode}: excluded by the annotation as admitted");
            assert!(super::sidecar_account(&pod, 9080).is_some(), "{mode}: any other port");
        }
    }
}
