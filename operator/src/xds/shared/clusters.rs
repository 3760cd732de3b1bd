//! The clusters and endpoint assignments of one config, as the streams' translations take them: per Service
//! (encoded once, taken over from the config before unless the Service or its rules changed), per namespace
//! whose proxies apply DestinationRules of their own, and the whole mesh's, which only streams that get the
//! whole mesh need. A proxy's scope is assembled from the per-Service pieces, so a change to one Service costs
//! that Service and the scopes holding it, not a pass over the whole mesh.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_crds::destination_rule::locality::LocalityLbSetting;
use weft_xds::{ResourceType, pack};

use super::Generation;
use crate::index::{DestinationRuleModel, Snapshot};
use crate::translate;
use crate::xds::resources::{Encoded, TypeResources};

/// One Service's clusters and endpoint assignments, encoded (an assignment is named as its cluster).
#[derive(Debug, Default)]
pub(super) struct ServiceClusters {
    pub clusters: Vec<Encoded>,
    pub endpoints: Vec<Encoded>,
    /// The assignments balanced by locality, as translated, with their settings: each proxy locality gets
    /// them with its own priorities.
    pub by_locality: Vec<(ClusterLoadAssignment, LocalityLbSetting)>,
}

impl ServiceClusters {
    pub(super) fn of(snapshot: &Snapshot, fqdn: &str, rule: Option<&DestinationRuleModel>) -> Arc<Self> {
        let Some(service) = snapshot.services.get(fqdn) else { return Arc::default() };
        let (clusters, endpoints) = translate::service_clusters(service, rule, snapshot);
        Arc::new(Self {
            clusters: clusters.iter().map(|c| Encoded::new(c.name.clone(), c)).collect(),
            endpoints: endpoints.iter().map(|e| Encoded::new(e.cluster_name.clone(), e)).collect(),
            by_locality: translate::locality_assignments(rule, &endpoints),
        })
    }
}

/// Service FQDN -> its clusters. Keys are shared pointers: copying the map for the next config copies no names.
pub(super) type Services = Arc<HashMap<Arc<str>, Arc<ServiceClusters>>>;

/// The clusters and endpoint assignments the proxies of one namespace apply, per Service.
#[derive(Clone)]
pub(super) struct View {
    pub services: Services,
    /// The namespace applies DestinationRules of its own to some Services (else `services` is the mesh-wide map).
    pub own: bool,
}

/// The whole mesh's clusters and endpoint assignments, as one namespace's proxies apply them.
#[derive(Clone)]
pub(super) struct MeshClusters {
    pub clusters: Arc<TypeResources>,
    pub endpoints: Arc<TypeResources>,
}

impl Generation {
    /// Every Service's clusters and endpoint assignments: the config before's map with those of the Services
    /// that changed (came, went, or had their model or a rule that may apply to them change) made again.
    pub(super) fn services(&mut self, previous: Option<&Generation>) -> Services {
        if let Some(services) = &self.services {
            return services.clone();
        }
        let snapshot = &self.published.snapshot;
        let encode = |fqdn: &str| ServiceClusters::of(snapshot, fqdn, snapshot.default_destination_rule(fqdn));
        let before = previous.and_then(|p| p.services.as_ref()).zip(self.changes.as_ref());
        let services = match before {
            Some((before, changes)) if changes.clusters.is_empty() => {
                return self.services.insert(before.clone()).clone();
            }
            Some((before, changes)) => {
                let mut services = (**before).clone();
                for fqdn in &changes.clusters {
                    match snapshot.services.contains_key(fqdn) {
                        true => services.insert(Arc::from(fqdn.as_str()), encode(fqdn)),
                        false => services.remove(fqdn.as_str()),
                    };
                }
                services
            }
            None => snapshot.services.keys().map(|fqdn| (Arc::from(fqdn.as_str()), encode(fqdn))).collect(),
        };
        self.services.insert(Arc::new(services)).clone()
    }

    /// The listeners every proxy shares: taken over from the config before when they cannot differ.
    pub(super) fn listeners(&mut self, previous: Option<&Generation>) -> Arc<TypeResources> {
        if let Some(listeners) = &self.listeners {
            return listeners.clone();
        }
        let before = previous.and_then(|p| p.listeners.as_ref());
        let same = self.changes.as_ref().is_some_and(|c| !c.listeners);
        let listeners = match before.filter(|_| same) {
            Some(before) => before.clone(),
            None => {
                let listeners = translate::listeners(&self.published.snapshot);
                let listeners = listeners.iter().map(|l| (l.name.clone(), Arc::new(pack(l)))).collect();
                TypeResources::new_since(listeners, before.map(|b| b.as_ref()))
            }
        };
        self.listeners.insert(listeners).clone()
    }

    /// The Services to which proxies in `namespace` apply another DestinationRule than the default one (see
    /// [`Snapshot::own_destination_rules`]): looked up in every rule, so taken over from the config before when
    /// neither the rules nor which Services exist changed (an edit of a VirtualService, an endpoint change).
    pub(super) fn own_rule_hosts(&mut self, namespace: &str, previous: Option<&Generation>) -> Arc<BTreeSet<String>> {
        if let Some(found) = self.own_rule_hosts.get(namespace) {
            return found.clone();
        }
        let snapshot = &self.published.snapshot;
        let same_inputs = |p: &&Generation| {
            Arc::ptr_eq(&p.published.snapshot.destination_rules, &snapshot.destination_rules)
                && self.changes.as_ref().is_some_and(|c| !c.scopes)
        };
        let kept = previous.filter(same_inputs).and_then(|p| p.own_rule_hosts.get(namespace)).cloned();
        let hosts = kept.unwrap_or_else(|| Arc::new(snapshot.own_destination_rules(namespace).into_keys().collect()));
        self.own_rule_hosts.insert(namespace.to_string(), hosts.clone());
        hosts
    }

    /// The clusters proxies in `namespace` apply: the mesh-wide ones, but for the Services to which the namespace
    /// applies other DestinationRules. Those are taken over from the previous config's view unless they changed.
    pub(super) fn view(&mut self, namespace: &str, previous: Option<&Generation>) -> View {
        if let Some(found) = self.views.get(namespace) {
            return found.clone();
        }
        let services = self.services(previous);
        let own = self.own_rule_hosts(namespace, previous);
        let snapshot = &self.published.snapshot;
        let before = previous.and_then(|p| p.views.get(namespace)).filter(|b| b.own && self.changes.is_some());
        let untouched = self.changes.as_ref().is_some_and(|c| c.clusters.is_empty());
        let view = if own.is_empty() {
            View { services, own: false }
        } else if let Some(before) = before.filter(|_| untouched) {
            // No Service's clusters changed (nor any rule, which would change some): the namespace's are as they were.
            before.clone()
        } else {
            let changed = |fqdn: &str| self.changes.as_ref().is_none_or(|c| c.clusters.contains(fqdn));
            let mut mine = (*services).clone();
            for fqdn in own.iter() {
                let kept = before.filter(|_| !changed(fqdn)).and_then(|b| b.services.get(fqdn.as_str())).cloned();
                let rule = snapshot.destination_rule_for(fqdn, namespace);
                let encoded = kept.unwrap_or_else(|| ServiceClusters::of(snapshot, fqdn, rule));
                mine.insert(Arc::from(fqdn.as_str()), encoded);
            }
            View { services: Arc::new(mine), own: true }
        };
        self.views.insert(namespace.to_string(), view.clone());
        view
    }

    /// The whole mesh's clusters and endpoint assignments as proxies in `namespace` apply them, versioned against
    /// what the same proxies held under the config before.
    pub(super) fn mesh_clusters(&mut self, namespace: &str, previous: Option<&Generation>) -> MeshClusters {
        let view = self.view(namespace, previous);
        let key = view.own.then(|| namespace.to_string());
        if let Some(found) = self.mesh_clusters.get(&key) {
            return found.clone();
        }
        let before = previous.and_then(|p| p.mesh_clusters.get(&key));
        let untouched = self.changes.as_ref().is_some_and(|c| c.clusters.is_empty());
        let encoded = match before.filter(|_| untouched) {
            Some(before) => before.clone(),
            None => {
                let all = || view.services.values().map(|s| s.as_ref());
                let since = |pick: fn(&MeshClusters) -> &Arc<TypeResources>| before.map(|b| pick(b).as_ref());
                MeshClusters {
                    clusters: TypeResources::of_encoded(all().flat_map(|s| &s.clusters), since(|b| &b.clusters)),
                    endpoints: TypeResources::of_encoded(all().flat_map(|s| &s.endpoints), since(|b| &b.endpoints)),
                }
            }
        };
        self.mesh_clusters.insert(key, encoded.clone());
        encoded
    }
}

/// The encoded clusters (or, for [`ResourceType::Endpoint`], endpoint assignments) of the Services `hosts`.
pub(super) fn encoded_of<'a>(
    services: &'a HashMap<Arc<str>, Arc<ServiceClusters>>,
    hosts: impl Iterator<Item = &'a String> + 'a,
    kind: ResourceType,
) -> impl Iterator<Item = &'a Encoded> + 'a {
    let of_kind = move |service: &'a Arc<ServiceClusters>| match kind {
        ResourceType::Endpoint => &service.endpoints,
        _ => &service.clusters,
    };
    hosts.filter_map(|host| services.get(host.as_str())).flat_map(of_kind)
}
