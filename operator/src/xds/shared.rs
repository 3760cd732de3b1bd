//! Translations shared by every stream: for the current config, what proxies get alike is translated and encoded
//! once and shared (`Arc`), and a stream for a proxy then costs only the diff against what that proxy holds.
//!
//! - Per Service: its clusters and endpoint assignments, encoded, made with the DestinationRule most namespaces
//!   apply to it (`clusters`). A scope's are assembled from those; the whole mesh's only for streams that get it.
//! - Per namespace whose proxies apply other DestinationRules to some Services (a namespace with rules of its own,
//!   or named by a rule's `exportTo`; see [`crate::index::Snapshot::own_destination_rules`]): those Services'
//!   clusters made with the namespace's rules (`View`). Every other namespace shares the mesh-wide ones.
//! - Per namespace and scope (see [`translate::scope`]): the Services in scope, their clusters and endpoints, and
//!   the route configurations holding their virtual hosts (they differ by namespace through the short names).
//! - Per namespace, scope and set of on-demand names (replicas of one workload call the same Services, so they
//!   share it): the initial scope plus the virtual hosts asked for and the clusters and endpoints they route to;
//!   each answer translated once per namespace and name, whoever asks ([`answers`]).
//!
//! Translation is incremental: a new config is compared with the one translated before ([`changes`]), and every
//! piece whose inputs did not change is taken over from it (the same `Arc`, so the same version) instead of being
//! translated again. An edit of one VirtualService translates that Service's virtual hosts, the route
//! configurations holding them and the on-demand answers about it; an endpoint change, that Service's clusters.
//!
//! A stream without on-demand discovery (state of the world), or the `mesh` scope, gets the whole mesh.
//!
//! A proxy whose PeerAuthentication is not the default also gets its inbound listener, and a proxy that a tcp or
//! tls condition names (`sourceLabels`, `sourceNamespace`) its own listener for that port: the shared listeners
//! with those in place, one set per distinct combination. A proxy whose pod a DestinationRule selects
//! (`workloadSelector`) gets that rule's clusters in place of its namespace's. A proxy whose locality is known
//! gets the endpoints of clusters balanced by locality shaped for its locality (priorities, shares; one set per
//! namespace and locality).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};

use tokio::sync::Mutex;
use weft_crds::destination_rule::locality::Locality;
use weft_xds::inbound::{INBOUND_LISTENER, InboundPolicy};
use weft_xds::{ProxyNode, ResourceType};

use super::resources::{Encoded, EncodedResources, EncodedShared, TypeResources, encode_routes};
use crate::index::published::Published;
use crate::translate;
use crate::translate::changes::{self, Changes};
use crate::translate::scope::{self, ProxyScope, initial_scope};
use answers::Answers;
use clusters::{MeshClusters, Services, View, encoded_of};

mod answers;
mod clusters;

/// The cache of the current config's translations.
#[derive(Default)]
pub struct Translations {
    cache: Mutex<Cache>,
}

/// What one stream asks to be translated.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub node: &'a ProxyNode,
    pub scope: ProxyScope,
    /// The virtual hosts asked for on demand; `None` for a protocol without on-demand discovery.
    pub on_demand: Option<&'a BTreeSet<String>>,
    /// The proxy reads listeners declared TCP ([`weft_xds::detection::DECLARED_TCP_FEATURE`]).
    pub declared_tcp: bool,
    /// The stream proved it is the proxy's workload (TLS port, workload certificate): it may be sent the keys of
    /// `credentialName` Secrets. Otherwise they are sent only in a mesh without a CA, where nothing is secured.
    pub verified: bool,
}

/// A namespace and scope.
type ScopeKey = (String, ProxyScope);

#[derive(Default)]
struct Cache {
    current: Option<Generation>,
    /// The config translated before, which `current` takes unchanged pieces from and notes changes since.
    previous: Option<Generation>,
}

/// Everything translated for one config.
struct Generation {
    published: Arc<Published>,
    /// What changed since the previous generation's config; `None`: translate everything.
    changes: Option<Changes>,
    /// Service FQDN -> its clusters and endpoint assignments.
    services: Option<Services>,
    /// The listeners every proxy shares.
    listeners: Option<Arc<TypeResources>>,
    /// The whole mesh's clusters and endpoint assignments, as proxies of a namespace with rules of its own
    /// (`Some`) or of any other namespace (`None`) apply them: made only for streams that get the whole mesh.
    mesh_clusters: HashMap<Option<String>, MeshClusters>,
    /// Namespace -> the clusters its proxies apply (the mesh-wide ones but where its DestinationRules differ).
    views: HashMap<String, View>,
    /// Namespace -> the Services to which its proxies apply another DestinationRule than the default one.
    own_rule_hosts: HashMap<String, Arc<BTreeSet<String>>>,
    scopes: HashMap<ScopeKey, Arc<BTreeSet<String>>>,
    mesh: HashMap<String, Arc<EncodedResources>>,
    scoped: HashMap<ScopeKey, Arc<EncodedResources>>,
    /// Held only while some stream uses them: a proxy asking for one host after another leaves no trail.
    extended: HashMap<(ScopeKey, Vec<String>), Weak<EncodedResources>>,
    /// The answers to the on-demand names of `extended`'s keys.
    answers: Answers,
    /// The shared listeners with a proxy's own in place (few distinct sets in a mesh).
    own_listeners: HashMap<OwnListeners, Arc<TypeResources>>,
    /// The ports where some proxies may get a listener of their own.
    ports_differing_by_client: Option<Arc<BTreeSet<u16>>>,
    /// The listeners of ports declared TCP, as the proxies that read them get them in place of the shared ones.
    declared_tcp_listeners: Option<Arc<Vec<Encoded>>>,
    /// The namespaces with DestinationRules for some pods only (`workloadSelector`).
    selecting_namespaces: Option<Arc<BTreeSet<String>>>,
    /// Per namespace and pod labels: what the inbound side of such a pod enforces (replicas share it).
    inbound: HashMap<WorkloadKey, Option<InboundPolicy>>,
    /// Per namespace and proxy locality: the locality-balanced assignments shaped for that locality.
    localized: HashMap<(String, Locality), Arc<Vec<Encoded>>>,
    /// Per namespace and proxy locality: endpoint sets with those in place, by the set they were made from.
    localized_sets: HashMap<(String, Locality), Vec<LocalizedSet>>,
}

/// A namespace and a pod's labels (`None`: the pod is not indexed).
type WorkloadKey = (String, Option<BTreeMap<String, String>>);

/// An endpoint set, and the same with some assignments prioritized for one locality.
type LocalizedSet = (Arc<TypeResources>, Arc<TypeResources>);

/// What makes a proxy's listeners its own: its inbound policy, and its own outbound listeners (name, version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnListeners {
    inbound: Option<InboundPolicy>,
    outbound: Vec<(String, u64)>,
}

impl Translations {
    /// The resources a proxy should hold under `published`. Waits (asynchronously) while another stream
    /// translates the same config.
    pub async fn for_proxy(&self, published: &Arc<Published>, wanted: Wanted<'_>) -> Arc<EncodedResources> {
        let mut cache = self.cache.lock().await;
        let cached = cache.current.as_ref().map(|g| g.published.config);
        if cached.is_some_and(|config| published.config < config) {
            // A stream still catching up with an older config: translate without disturbing the cache.
            drop(cache);
            return Generation::new(published.clone(), None).resources(wanted, None);
        }
        if cached != Some(published.config) {
            let previous = cache.current.take();
            let changes = previous.as_ref().map(|p| changes::between(&p.published.snapshot, &published.snapshot));
            cache.current = Some(Generation::new(published.clone(), changes));
            cache.previous = previous;
        }
        let Cache { current, previous } = &mut *cache;
        match current {
            Some(current) => current.resources(wanted, previous.as_ref()),
            None => Generation::new(published.clone(), None).resources(wanted, None),
        }
    }
}

impl Generation {
    fn new(published: Arc<Published>, changes: Option<Changes>) -> Self {
        Self {
            published,
            changes,
            services: None,
            listeners: None,
            mesh_clusters: HashMap::new(),
            views: HashMap::new(),
            own_rule_hosts: HashMap::new(),
            scopes: HashMap::new(),
            mesh: HashMap::new(),
            scoped: HashMap::new(),
            extended: HashMap::new(),
            answers: Answers::default(),
            own_listeners: HashMap::new(),
            ports_differing_by_client: None,
            declared_tcp_listeners: None,
            selecting_namespaces: None,
            inbound: HashMap::new(),
            localized: HashMap::new(),
            localized_sets: HashMap::new(),
        }
    }

    /// What the stream's scope holds, with the proxy's own resources in place: the clusters of a DestinationRule
    /// selecting its pod, its inbound listener when its PeerAuthentication says more than the default, and the
    /// outbound listeners of ports where a tcp or tls condition (or a VirtualService exported to some namespaces
    /// only) may make its listener differ.
    fn resources(&mut self, wanted: Wanted<'_>, previous: Option<&Generation>) -> Arc<EncodedResources> {
        let scoped = self.scope_resources(wanted, previous);
        // Localities first: a DestinationRule selecting the pod then replaces its clusters' endpoints whole.
        let resources = match translate::proxy_locality(&self.published.snapshot, wanted.node).cloned() {
            Some(locality) => self.with_locality(scoped, &wanted.node.namespace, locality, previous),
            None => scoped,
        };
        let resources = match self.selecting_namespaces().contains(&wanted.node.namespace) {
            true => self.with_own_clusters(resources, wanted.node, wanted.verified),
            false => resources,
        };
        let ports = self.ports_differing_by_client();
        let inbound = self.inbound_policy(wanted.node);
        let declared_tcp = if wanted.declared_tcp { self.declared_tcp_listeners() } else { Arc::default() };
        let snapshot = &self.published.snapshot;
        let outbound = translate::own_listeners(snapshot, wanted.node, ports.iter().copied(), wanted.declared_tcp);
        if inbound.is_none() && outbound.is_empty() && declared_tcp.is_empty() {
            return resources;
        }
        let mut extras: Vec<Encoded> = outbound.iter().map(|l| Encoded::new(l.name.clone(), l)).collect();
        let own_names: BTreeSet<String> = extras.iter().map(|e| e.name.clone()).collect();
        extras.extend(declared_tcp.iter().filter(|l| !own_names.contains(&l.name)).cloned());
        let key = OwnListeners { inbound, outbound: extras.iter().map(|e| (e.name.clone(), e.hash)).collect() };
        let listeners = match self.own_listeners.get(&key) {
            Some(found) => found.clone(),
            None => {
                if let Some(policy) = &key.inbound {
                    extras.push(Encoded::new(INBOUND_LISTENER.to_string(), &weft_xds::inbound::listener(policy)));
                }
                let listeners = TypeResources::with_extras(&self.listeners(previous), &extras);
                self.own_listeners.insert(key, listeners.clone());
                listeners
            }
        };
        let mut own = (*resources).clone();
        own.by_type.insert(ResourceType::Listener, listeners);
        Arc::new(own)
    }

    /// `resources` with the clusters and endpoint assignments the proxy makes with a DestinationRule selecting its
    /// pod (`workloadSelector`) in place. Few proxies have any: the others get `resources` as they are.
    fn with_own_clusters(
        &self,
        resources: Arc<EncodedResources>,
        node: &ProxyNode,
        verified: bool,
    ) -> Arc<EncodedResources> {
        // A plaintext stream's node id is taken at its word: no Secret's key goes to it in a mesh with a CA.
        let keys = verified || self.published.snapshot.trust_domain.is_none();
        let own = translate::own_clusters(&self.published.snapshot, node, keys);
        if own.services.is_empty() {
            return resources;
        }
        let clusters: Vec<Encoded> = own.clusters.iter().map(|c| Encoded::new(c.name.clone(), c)).collect();
        let endpoints: Vec<Encoded> = own.endpoints.iter().map(|e| Encoded::new(e.cluster_name.clone(), e)).collect();
        let mut replaced = (*resources).clone();
        for (kind, extras) in [(ResourceType::Cluster, clusters), (ResourceType::Endpoint, endpoints)] {
            if let Some(base) = resources.of_type(kind) {
                replaced.by_type.insert(kind, TypeResources::replacing(base, |name| own.replaces(name), &extras));
            }
        }
        Arc::new(replaced)
    }

    /// The proxy's inbound policy ([`translate::inbound_policy`]), translated once per namespace and set of pod
    /// labels: the replicas of a workload share it.
    fn inbound_policy(&mut self, node: &ProxyNode) -> Option<InboundPolicy> {
        let snapshot = &self.published.snapshot;
        let labels = snapshot.pod_labels.get(&format!("{}/{}", node.namespace, node.pod_name)).cloned();
        let key = (node.namespace.clone(), labels);
        if let Some(found) = self.inbound.get(&key) {
            return found.clone();
        }
        let policy = translate::inbound_policy(snapshot, node);
        self.inbound.insert(key, policy.clone());
        policy
    }

    /// `resources` with the endpoints of clusters balanced by locality shaped for a proxy in
    /// `locality`. Proxies of one namespace and locality share the result.
    fn with_locality(
        &mut self,
        resources: Arc<EncodedResources>,
        namespace: &str,
        locality: Locality,
        previous: Option<&Generation>,
    ) -> Arc<EncodedResources> {
        let Some(base) = resources.of_type(ResourceType::Endpoint).cloned() else { return resources };
        let key = (namespace.to_string(), locality);
        let made =
            self.localized_sets.get(&key).and_then(|sets| sets.iter().find(|(from, _)| Arc::ptr_eq(from, &base)));
        let replaced = match made {
            Some((_, replaced)) => replaced.clone(),
            None => {
                let extras = self.localized(&key, previous);
                if extras.is_empty() {
                    return resources;
                }
                let present: Vec<Encoded> = extras.iter().filter(|e| base.map.contains_key(&e.name)).cloned().collect();
                let replaced = TypeResources::replacing(&base, |_| false, &present);
                self.localized_sets.entry(key).or_default().push((base, replaced.clone()));
                replaced
            }
        };
        let mut own = (*resources).clone();
        own.by_type.insert(ResourceType::Endpoint, replaced);
        Arc::new(own)
    }

    /// The locality-balanced assignments of a namespace's view, shaped for a locality.
    fn localized(&mut self, key: &(String, Locality), previous: Option<&Generation>) -> Arc<Vec<Encoded>> {
        if let Some(found) = self.localized.get(key) {
            return found.clone();
        }
        let View { services, .. } = self.view(&key.0, previous);
        let localized: Vec<Encoded> = services
            .values()
            .flat_map(|service| &service.by_locality)
            .map(|(assignment, setting)| {
                Encoded::new(assignment.cluster_name.clone(), &translate::localized(assignment, setting, &key.1))
            })
            .collect();
        let localized = Arc::new(localized);
        self.localized.insert(key.clone(), localized.clone());
        localized
    }

    fn selecting_namespaces(&mut self) -> Arc<BTreeSet<String>> {
        let snapshot = &self.published.snapshot;
        let selecting = || {
            let rules = snapshot.destination_rules.iter().filter(|dr| dr.spec.workload_selector.is_some());
            Arc::new(rules.map(|dr| dr.namespace.clone()).collect())
        };
        self.selecting_namespaces.get_or_insert_with(selecting).clone()
    }

    fn declared_tcp_listeners(&mut self) -> Arc<Vec<Encoded>> {
        let snapshot = &self.published.snapshot;
        let listeners = self.declared_tcp_listeners.get_or_insert_with(|| {
            let listeners = translate::declared_tcp_listeners(snapshot);
            Arc::new(listeners.iter().map(|l| Encoded::new(l.name.clone(), l)).collect())
        });
        listeners.clone()
    }

    fn ports_differing_by_client(&mut self) -> Arc<BTreeSet<u16>> {
        let snapshot = &self.published.snapshot;
        self.ports_differing_by_client
            .get_or_insert_with(|| Arc::new(translate::ports_differing_by_client(snapshot)))
            .clone()
    }

    fn scope_resources(&mut self, wanted: Wanted<'_>, previous: Option<&Generation>) -> Arc<EncodedResources> {
        let scope: ScopeKey = (wanted.node.namespace.clone(), wanted.scope);
        match wanted.on_demand.filter(|_| wanted.scope != ProxyScope::Mesh) {
            None => self.mesh(&scope.0, previous),
            Some(names) => {
                // Names nothing answers to change nothing: they are not part of the key.
                let snapshot = &self.published.snapshot;
                let found = names.iter().filter(|n| scope::on_demand_service(snapshot, &scope.0, n).is_some());
                let key = (scope.clone(), found.cloned().collect::<Vec<_>>());
                if key.1.is_empty() {
                    return self.scoped(&scope, previous);
                }
                if let Some(found) = self.extended.get(&key).and_then(Weak::upgrade) {
                    return found;
                }
                let extended = self.extended(&key, previous);
                let held_before = self.extended.len();
                self.extended.retain(|_, used| used.strong_count() > 0);
                let dropped = self.extended.len() < held_before;
                self.extended.insert(key, Arc::downgrade(&extended));
                // The answers hold only names of keys held since one last went: forget theirs now (not at every
                // new key, which would cost every key's names each time).
                if dropped {
                    let mut held: HashSet<(&str, &str)> = HashSet::new();
                    for ((namespace, _), names) in self.extended.keys() {
                        held.extend(names.iter().map(|name| (namespace.as_str(), name.as_str())));
                    }
                    self.answers.retain(|namespace, name| held.contains(&(namespace, name)));
                }
                extended
            }
        }
    }

    /// The whole mesh, with the routes of `namespace`.
    fn mesh(&mut self, namespace: &str, previous: Option<&Generation>) -> Arc<EncodedResources> {
        if let Some(found) = self.mesh.get(namespace) {
            return found.clone();
        }
        let MeshClusters { clusters, endpoints } = self.mesh_clusters(namespace, previous);
        let shared = EncodedShared { clusters, endpoints, listeners: self.listeners(previous) };
        let before = previous.and_then(|p| p.mesh.get(namespace)).and_then(|p| p.of_type(ResourceType::Route));
        let untouched = self.changes.as_ref().is_some_and(|c| c.routes.is_empty() && !c.ports);
        let routes = match before.filter(|_| untouched) {
            Some(before) => before.clone(),
            None => {
                let routes = translate::routes_for(&self.published.snapshot, namespace, None);
                encode_routes(&routes, before.map(|r| r.as_ref()))
            }
        };
        let resources = Arc::new(EncodedResources::assemble(&shared, routes));
        self.mesh.insert(namespace.to_string(), resources.clone());
        resources
    }

    /// The Services proxies in a namespace hold before asking for more.
    fn scope(&mut self, key: &ScopeKey, previous: Option<&Generation>) -> Arc<BTreeSet<String>> {
        if let Some(found) = self.scopes.get(key) {
            return found.clone();
        }
        let kept =
            previous.and_then(|p| p.scopes.get(key)).filter(|_| self.changes.as_ref().is_some_and(|c| !c.scopes));
        let scope = match kept {
            Some(kept) => kept.clone(),
            None => Arc::new(initial_scope(&self.published.snapshot, &key.0, key.1).unwrap_or_default()),
        };
        self.scopes.insert(key.clone(), scope.clone());
        scope
    }

    /// The initial scope of proxies in a namespace, before anything is asked for.
    fn scoped(&mut self, key: &ScopeKey, previous: Option<&Generation>) -> Arc<EncodedResources> {
        if let Some(found) = self.scoped.get(key) {
            return found.clone();
        }
        let scope = self.scope(key, previous);
        let View { services, .. } = self.view(&key.0, previous);
        let listeners = self.listeners(previous);
        let before = previous.and_then(|p| p.scoped.get(key));
        let same_scope = previous.and_then(|p| p.scopes.get(key)).is_some_and(|s| Arc::ptr_eq(s, &scope));
        let earlier = |kind| before.and_then(|b| b.of_type(kind));
        let spared = |spares: fn(&Changes, &BTreeSet<String>) -> bool| {
            same_scope && self.changes.as_ref().is_some_and(|changes| spares(changes, &scope))
        };
        let (clusters_kept, routes_kept) = (spared(Changes::spares_clusters_of), spared(Changes::spares_routes_of));
        let kept = |kind, spared: bool| earlier(kind).filter(|_| spared);
        let subset = |kind| match kept(kind, clusters_kept) {
            Some(kept) => kept.clone(),
            None => {
                TypeResources::of_encoded(encoded_of(&services, scope.iter(), kind), earlier(kind).map(|e| e.as_ref()))
            }
        };
        let routes = match kept(ResourceType::Route, routes_kept) {
            Some(kept) => kept.clone(),
            None => {
                let routes = translate::routes_for(&self.published.snapshot, &key.0, Some(&scope));
                encode_routes(&routes, earlier(ResourceType::Route).map(|e| e.as_ref()))
            }
        };
        let resources = Arc::new(EncodedResources::of(
            subset(ResourceType::Cluster),
            subset(ResourceType::Endpoint),
            listeners,
            routes,
        ));
        self.scoped.insert(key.clone(), resources.clone());
        resources
    }

    /// An initial scope plus the virtual hosts named `names` and the Services they route to.
    fn extended(&mut self, key: &(ScopeKey, Vec<String>), previous: Option<&Generation>) -> Arc<EncodedResources> {
        let (scope, names) = key;
        let namespace = &scope.0;
        let base = self.scoped(scope, previous);
        let initial = self.scope(scope, previous);
        let View { services, .. } = self.view(namespace, previous);
        let snapshot = &self.published.snapshot;
        let answered_before =
            previous.zip(self.changes.as_ref()).map(|(previous, changes)| (&previous.answers, changes));
        let mut hosts = BTreeSet::new();
        let mut virtual_hosts = Vec::new();
        for name in names {
            if let Some(answer) = self.answers.answer(snapshot, namespace, name, answered_before) {
                hosts.extend(answer.hosts.iter().cloned());
                virtual_hosts.push(answer);
            }
        }
        let before_all = previous.and_then(|p| p.extended.get(key)).and_then(Weak::upgrade);
        let before = |kind| before_all.as_ref().and_then(|p| p.of_type(kind)).map(|r| r.as_ref());
        let mut resources = (*base).clone();
        for kind in [ResourceType::Cluster, ResourceType::Endpoint] {
            let held = encoded_of(&services, initial.iter().chain(&hosts), kind);
            resources.by_type.insert(kind, TypeResources::of_encoded(held, before(kind)));
        }
        let encoded = virtual_hosts.iter().map(|answer| &answer.virtual_host);
        let virtual_hosts = TypeResources::of_encoded(encoded, before(ResourceType::VirtualHost));
        resources.by_type.insert(ResourceType::VirtualHost, virtual_hosts);
        Arc::new(resources)
    }
}

#[cfg(test)]
mod tests;
