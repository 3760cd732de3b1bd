//! Translations shared by every stream: for the current config, what proxies get alike is translated and encoded
//! once and shared (`Arc`), and a stream for a proxy then costs only the diff against what that proxy holds.
//!
//! - The whole mesh's clusters, endpoints and listeners, once per config.
//! - Per namespace and scope (see [`translate::scope`]): the clusters and endpoints of the Services in scope and
//!   the route configurations holding their virtual hosts (they differ by namespace through the short names).
//! - Per namespace, scope and set of on-demand names (replicas of one workload call the same Services, so they
//!   share it): the initial scope plus the virtual hosts asked for and the clusters and endpoints they route to.
//!
//! A stream without on-demand discovery (state of the world), or the `mesh` scope, gets the whole mesh.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use tokio::sync::Mutex;
use weft_xds::{ClusterName, ProxyNode, ResourceType, pack};

use super::resources::{EncodedResources, EncodedShared, ResourceMap, TypeResources, encode_routes};
use crate::index::Snapshot;
use crate::index::published::Published;
use crate::translate;
use crate::translate::scope::{self, ProxyScope, initial_scope, route_destinations};

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
}

/// A namespace and scope.
type ScopeKey = (String, ProxyScope);

#[derive(Default)]
struct Cache {
    /// [`Published::config`] of what is cached.
    config: u64,
    current: Generation,
    /// The previous config's, to note what changed since (delta streams in step send only that).
    previous: Generation,
}

/// Everything translated for one config.
#[derive(Default)]
struct Generation {
    shared: Option<EncodedShared>,
    /// Service FQDN -> its cluster names (also its endpoint assignments' names).
    clusters_by_host: Option<Arc<HashMap<String, Vec<String>>>>,
    mesh: HashMap<String, Arc<EncodedResources>>,
    scoped: HashMap<ScopeKey, Arc<EncodedResources>>,
    /// Held only while some stream uses them: a proxy asking for one host after another leaves no trail.
    extended: HashMap<(ScopeKey, Vec<String>), Weak<EncodedResources>>,
}

impl Translations {
    /// The resources a proxy should hold under `published`. Waits (asynchronously) while another stream
    /// translates the same config.
    pub async fn for_proxy(&self, published: &Published, wanted: Wanted<'_>) -> Arc<EncodedResources> {
        let mut cache = self.cache.lock().await;
        if published.config < cache.config {
            // A stream still catching up with an older config: translate without disturbing the cache.
            drop(cache);
            return Generation::default().resources(&published.snapshot, wanted, &Generation::default());
        }
        if published.config > cache.config {
            let previous = std::mem::take(&mut cache.current);
            *cache = Cache { config: published.config, current: Generation::default(), previous };
        }
        let Cache { current, previous, .. } = &mut *cache;
        current.resources(&published.snapshot, wanted, previous)
    }
}

impl Generation {
    fn resources(&mut self, snapshot: &Snapshot, wanted: Wanted<'_>, previous: &Generation) -> Arc<EncodedResources> {
        let scope: ScopeKey = (wanted.node.namespace.clone(), wanted.scope);
        match wanted.on_demand.filter(|_| wanted.scope != ProxyScope::Mesh) {
            None => self.mesh(snapshot, &scope.0, previous),
            Some(names) => {
                // Names nothing answers to change nothing: they are not part of the key.
                let found = names.iter().filter(|n| scope::on_demand_service(snapshot, &scope.0, n).is_some());
                let key = (scope.clone(), found.cloned().collect::<Vec<_>>());
                if key.1.is_empty() {
                    return self.scoped(snapshot, &scope, previous);
                }
                if let Some(found) = self.extended.get(&key).and_then(Weak::upgrade) {
                    return found;
                }
                let extended = self.extended(snapshot, &key, previous);
                self.extended.retain(|_, used| used.strong_count() > 0);
                self.extended.insert(key, Arc::downgrade(&extended));
                extended
            }
        }
    }

    fn shared(&mut self, snapshot: &Snapshot, previous: &Generation) -> EncodedShared {
        self.shared
            .get_or_insert_with(|| EncodedShared::since(&translate::shared(snapshot), previous.shared.as_ref()))
            .clone()
    }

    /// The whole mesh, with the routes of `namespace`.
    fn mesh(&mut self, snapshot: &Snapshot, namespace: &str, previous: &Generation) -> Arc<EncodedResources> {
        if let Some(found) = self.mesh.get(namespace) {
            return found.clone();
        }
        let shared = self.shared(snapshot, previous);
        let before = previous.mesh.get(namespace).and_then(|p| p.of_type(ResourceType::Route));
        let routes = encode_routes(&translate::routes_for(snapshot, namespace, None), before.map(|r| r.as_ref()));
        let resources = Arc::new(EncodedResources::assemble(&shared, routes));
        self.mesh.insert(namespace.to_string(), resources.clone());
        resources
    }

    /// The initial scope of proxies in a namespace, before anything is asked for.
    fn scoped(&mut self, snapshot: &Snapshot, key: &ScopeKey, previous: &Generation) -> Arc<EncodedResources> {
        if let Some(found) = self.scoped.get(key) {
            return found.clone();
        }
        let (namespace, scope) = key;
        let shared = self.shared(snapshot, previous);
        let scope = initial_scope(snapshot, namespace, *scope).unwrap_or_default();
        let by_host = self.clusters_by_host(&shared);
        let before = |kind| previous.scoped.get(key).and_then(|p| p.of_type(kind)).map(|r| r.as_ref());
        let subset = |all: &TypeResources, kind| TypeResources::subset(all, named(&by_host, &scope), before(kind));
        let routes = translate::routes_for(snapshot, namespace, Some(&scope));
        let resources = Arc::new(EncodedResources::of(
            subset(&shared.clusters, ResourceType::Cluster),
            subset(&shared.endpoints, ResourceType::Endpoint),
            shared.listeners.clone(),
            encode_routes(&routes, before(ResourceType::Route)),
        ));
        self.scoped.insert(key.clone(), resources.clone());
        resources
    }

    /// An initial scope plus the virtual hosts named `names` and the Services they route to.
    fn extended(
        &mut self,
        snapshot: &Snapshot,
        key: &(ScopeKey, Vec<String>),
        previous: &Generation,
    ) -> Arc<EncodedResources> {
        let (scope, names) = key;
        let namespace = &scope.0;
        let base = self.scoped(snapshot, scope, previous);
        let shared = self.shared(snapshot, previous);
        let by_host = self.clusters_by_host(&shared);
        let mut hosts = BTreeSet::new();
        let mut virtual_hosts = ResourceMap::new();
        for name in names {
            if let Some((host, fqdn)) = translate::on_demand_virtual_host(snapshot, namespace, name) {
                virtual_hosts.insert(name.clone(), Arc::new(pack(&host)));
                hosts.extend(route_destinations(snapshot, &fqdn));
                hosts.insert(fqdn);
            }
        }
        let before_all = previous.extended.get(key).and_then(Weak::upgrade);
        let before = |kind| before_all.as_ref().and_then(|p| p.of_type(kind)).map(|r| r.as_ref());
        let mut resources = (*base).clone();
        for kind in [ResourceType::Cluster, ResourceType::Endpoint] {
            let (Some(own), Some(all)) = (base.of_type(kind), shared.of_type(kind)) else { continue };
            let names = own.map.keys().chain(named(&by_host, &hosts));
            resources.by_type.insert(kind, TypeResources::subset(all, names, before(kind)));
        }
        let virtual_hosts = TypeResources::new_since(virtual_hosts, before(ResourceType::VirtualHost));
        resources.by_type.insert(ResourceType::VirtualHost, virtual_hosts);
        Arc::new(resources)
    }

    fn clusters_by_host(&mut self, shared: &EncodedShared) -> Arc<HashMap<String, Vec<String>>> {
        self.clusters_by_host
            .get_or_insert_with(|| {
                let mut by_host: HashMap<String, Vec<String>> = HashMap::new();
                for name in shared.clusters.map.keys() {
                    if let Some(parsed) = ClusterName::parse(name) {
                        by_host.entry(parsed.host).or_default().push(name.clone());
                    }
                }
                Arc::new(by_host)
            })
            .clone()
    }
}

/// The names of the clusters (and endpoint assignments) of `hosts`.
fn named<'a>(
    by_host: &'a HashMap<String, Vec<String>>,
    hosts: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a String> + 'a {
    hosts.iter().flat_map(|host| by_host.get(host).into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::source::Event;
    use crate::source::file::parse_file;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

    fn published(config: u64, yaml: &str) -> Published {
        let mut index = Index::default();
        for resource in parse_file(std::path::Path::new("t.yaml"), yaml).resources {
            index.apply(Event::Applied(resource));
        }
        Published { snapshot: index.snapshot(), at: std::time::Instant::now(), config }
    }

    fn proxy(name: &str, namespace: &str) -> ProxyNode {
        ProxyNode { pod_name: name.into(), namespace: namespace.into(), ip: None }
    }

    fn mesh(node: &ProxyNode) -> Wanted<'_> {
        Wanted { node, scope: ProxyScope::Mesh, on_demand: None }
    }

    fn in_namespace<'a>(node: &'a ProxyNode, on_demand: &'a BTreeSet<String>) -> Wanted<'a> {
        Wanted { node, scope: ProxyScope::Namespace, on_demand: Some(on_demand) }
    }

    fn names(r: &EncodedResources, kind: ResourceType) -> Vec<String> {
        r.of_type(kind).map(|t| t.map.keys().cloned().collect()).unwrap_or_default()
    }

    const MESH: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";

    const TWO_NAMESPACES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ledger, namespace: bank}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: audit, namespace: bank}\nspec: {ports: [{port: 80}]}\n---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: ledger, namespace: bank}\nspec:\n  hosts: [ledger]\n  http:\n  - route:\n    - destination: {host: audit}\n";

    #[tokio::test]
    async fn proxies_share_one_translation_per_namespace_and_config() {
        let translations = Translations::default();
        let current = published(1, MESH);
        let (a, b, c) = (proxy("a", "shop"), proxy("b", "shop"), proxy("c", "web"));
        let a = translations.for_proxy(&current, mesh(&a)).await;
        let b = translations.for_proxy(&current, mesh(&b)).await;
        let c = translations.for_proxy(&current, mesh(&c)).await;
        let of = |r: &EncodedResources, kind| r.of_type(kind).cloned().unwrap();
        assert!(Arc::ptr_eq(&of(&a, ResourceType::Route), &of(&b, ResourceType::Route)), "same namespace, same routes");
        assert!(!Arc::ptr_eq(&of(&a, ResourceType::Route), &of(&c, ResourceType::Route)));
        assert_ne!(of(&a, ResourceType::Route).version, of(&c, ResourceType::Route).version, "short names differ");
        assert!(Arc::ptr_eq(&of(&a, ResourceType::Cluster), &of(&c, ResourceType::Cluster)), "clusters are shared");
        assert_eq!(*a, EncodedResources::from(&translate::translate(&current.snapshot, &proxy("a", "shop"))));
        let d = proxy("d", "shop");
        let next = published(2, &MESH.replace("port: 80", "port: 81"));
        let d = translations.for_proxy(&next, mesh(&d)).await;
        assert_ne!(of(&d, ResourceType::Cluster).version, of(&a, ResourceType::Cluster).version, "a new config");
    }

    #[tokio::test]
    async fn a_proxy_holds_its_namespace_and_what_it_asked_for() {
        let translations = Translations::default();
        let current = published(1, TWO_NAMESPACES);
        let shop = proxy("a", "shop");
        let none = BTreeSet::new();
        let scoped = translations.for_proxy(&current, in_namespace(&shop, &none)).await;
        assert_eq!(names(&scoped, ResourceType::Cluster), ["outbound|80||reviews.shop.svc.cluster.local"]);
        assert_eq!(names(&scoped, ResourceType::Endpoint), ["outbound|80||reviews.shop.svc.cluster.local"]);
        let asked: BTreeSet<String> = ["80/ledger.bank".to_string(), "80/nothing.bank".to_string()].into();
        let extended = translations.for_proxy(&current, in_namespace(&shop, &asked)).await;
        assert_eq!(
            names(&extended, ResourceType::Cluster),
            [
                "outbound|80||audit.bank.svc.cluster.local",
                "outbound|80||ledger.bank.svc.cluster.local",
                "outbound|80||reviews.shop.svc.cluster.local"
            ],
            "the asked-for Service and where its routes go"
        );
        assert_eq!(names(&extended, ResourceType::VirtualHost), ["80/ledger.bank"], "unknown names are absent");
        let replica = proxy("b", "shop");
        let again = translations.for_proxy(&current, in_namespace(&replica, &asked)).await;
        assert!(Arc::ptr_eq(&extended, &again), "replicas asking alike share one translation");
        let more: BTreeSet<String> = asked.iter().cloned().chain(["80/elsewhere.bank".to_string()]).collect();
        let same = translations.for_proxy(&current, in_namespace(&replica, &more)).await;
        assert!(Arc::ptr_eq(&extended, &same), "a name nothing answers to changes nothing");
        let whole = translations.for_proxy(&current, mesh(&shop)).await;
        assert_eq!(names(&whole, ResourceType::Cluster).len(), 3, "the mesh scope: everything");
        let sotw = translations.for_proxy(&current, Wanted { on_demand: None, ..in_namespace(&shop, &none) }).await;
        assert_eq!(names(&sotw, ResourceType::Cluster).len(), 3, "without on-demand discovery: the whole mesh");
        let routes = &scoped.of_type(ResourceType::Route).unwrap().map["80"];
        let routes: RouteConfiguration = weft_xds::unpack(routes).unwrap();
        let hosts: Vec<&str> = routes.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(hosts, ["reviews.shop.svc.cluster.local:80"], "the route table holds the scope only");
        assert!(routes.vhds.is_some(), "and says other hosts are asked for on demand");
        let lean = Wanted { scope: ProxyScope::OnDemand, ..in_namespace(&shop, &none) };
        let lean = translations.for_proxy(&current, lean).await;
        assert!(names(&lean, ResourceType::Cluster).is_empty(), "no rules in shop: nothing until asked");
    }
}
