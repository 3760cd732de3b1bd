//! The next snapshot from the last one and what changed since, so that a change costs what it touches rather
//! than the mesh: a Service's model is built again only when the Service, its EndpointSlices or the pods of its
//! namespace changed; a rule's model only when it changed, every rule's when a Service came or went (hosts
//! resolve against the Services) or a delegate changed (its roots' rules in force are its own). Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::addresses::ServiceAddresses;
use super::authz::AuthorizationPolicyModel;
use super::build::{
    node_localities, pod_account_entry, pod_labels_entry, pod_locality_entry, secret_key, service_model, set_rules,
    update_rules,
};
use super::endpoints::{EndpointSources, SERVICE_NAME_LABEL};
use super::peer_authn::PeerAuthenticationModel;
use super::rate_limits::RateLimitPolicyModel;
use super::snapshot::{Snapshot, service_fqdn};
use crate::source::{Kind, Resource, ResourceKey};

/// What changed since the last snapshot was built.
#[derive(Debug, Default, Clone)]
pub(super) struct Dirty {
    /// Build everything again (a relist, or no snapshot yet).
    pub everything: bool,
    /// Services (namespace, name) whose model may differ.
    pub services: BTreeSet<(String, String)>,
    /// Namespaces whose pods changed: the endpoints of their Services and the pods' labels may differ.
    pub pod_namespaces: BTreeSet<String>,
    /// A Service came or went: every rule's hosts are resolved again.
    pub rules: bool,
    /// VirtualServices and DestinationRules that came, went or changed.
    pub rule_objects: BTreeSet<ResourceKey>,
    /// A PeerAuthentication changed: every Service's endpoints may differ (which ones take mutual TLS).
    pub peer_policies: bool,
    /// An AuthorizationPolicy changed: only the list itself (proxies look up what applies to them).
    pub authz_policies: bool,
    /// An HTTPLocalRateLimitPolicy changed: only the list itself.
    pub rate_limit_policies: bool,
    /// A node came, went or was relabelled: every endpoint's and pod's locality may differ.
    pub nodes: bool,
    /// Secrets (namespace/name) that came, went or changed: only their credentials.
    pub secrets: BTreeSet<(String, String)>,
}

impl Dirty {
    /// Notes that the object `key` went from `old` to `new`.
    pub fn note(&mut self, key: &ResourceKey, old: Option<&Resource>, new: Option<&Resource>) {
        match key.kind {
            Kind::Service => {
                self.services.insert((key.namespace.clone(), key.name.clone()));
                self.rules |= old.is_some() != new.is_some();
            }
            Kind::EndpointSlice => {
                for resource in [old, new].into_iter().flatten() {
                    if let Resource::EndpointSlice(slice) = resource
                        && let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL))
                    {
                        self.services.insert((key.namespace.clone(), service.clone()));
                    }
                }
            }
            Kind::Pod => {
                self.pod_namespaces.insert(key.namespace.clone());
            }
            Kind::VirtualService | Kind::DestinationRule => {
                self.rule_objects.insert(key.clone());
            }
            Kind::PeerAuthentication => self.peer_policies = true,
            Kind::AuthorizationPolicy => self.authz_policies = true,
            Kind::HttpLocalRateLimitPolicy => self.rate_limit_policies = true,
            Kind::Node => self.nodes = true,
            Kind::Secret => {
                self.secrets.insert((key.namespace.clone(), key.name.clone()));
            }
        }
    }
}

/// Brings `snapshot` (built from the objects before the changes `dirty` notes) up to `objects`.
pub(super) fn update(snapshot: &mut Snapshot, objects: &BTreeMap<ResourceKey, Resource>, dirty: &Dirty) {
    let mut namespaces: BTreeSet<String> =
        dirty.services.iter().map(|(ns, _)| ns).chain(&dirty.pod_namespaces).cloned().collect();
    if dirty.peer_policies {
        let policies = all_of_kind(objects, Kind::PeerAuthentication).filter_map(|r| match r {
            Resource::PeerAuthentication(policy) => Some(PeerAuthenticationModel::of(policy)),
            _ => None,
        });
        snapshot.peer_authentications = Arc::new(policies.collect());
        namespaces.extend(snapshot.services.values().map(|s| s.namespace.clone()));
    }
    if dirty.nodes {
        let nodes =
            all_of_kind(objects, Kind::Node).filter_map(|r| if let Resource::Node(n) = r { Some(&**n) } else { None });
        snapshot.node_localities = Arc::new(node_localities(nodes));
        // Node labels change rarely: rebuilding every namespace's endpoints is simpler than tracking which pods
        // run where.
        namespaces.extend(snapshot.services.values().map(|s| s.namespace.clone()));
        namespaces.extend(snapshot.pod_labels.keys().filter_map(|k| k.split_once('/')).map(|(ns, _)| ns.to_string()));
    }
    if dirty.authz_policies {
        let policies = all_of_kind(objects, Kind::AuthorizationPolicy).filter_map(|r| match r {
            Resource::AuthorizationPolicy(policy) => Some(AuthorizationPolicyModel::of(policy)),
            _ => None,
        });
        snapshot.authorization_policies = Arc::new(policies.collect());
    }
    if dirty.rate_limit_policies {
        let policies = all_of_kind(objects, Kind::HttpLocalRateLimitPolicy).filter_map(|r| match r {
            Resource::HttpLocalRateLimitPolicy(policy) => Some(RateLimitPolicyModel::of(policy)),
            _ => None,
        });
        snapshot.rate_limit_policies = Arc::new(policies.collect());
    }
    for namespace in &namespaces {
        let pods: Vec<&Pod> = of_kind(objects, Kind::Pod, namespace)
            .filter_map(|r| if let Resource::Pod(p) = r { Some(&**p) } else { None })
            .collect();
        let slices: Vec<&EndpointSlice> = of_kind(objects, Kind::EndpointSlice, namespace)
            .filter_map(|r| if let Resource::EndpointSlice(s) = r { Some(&**s) } else { None })
            .collect();
        let nodes = snapshot.node_localities.clone();
        let sources = EndpointSources::new(&pods, &slices, &nodes);
        let mut names: BTreeSet<&String> =
            dirty.services.iter().filter(|(ns, _)| ns == namespace).map(|(_, name)| name).collect();
        let pods_changed = dirty.pod_namespaces.contains(namespace) || dirty.nodes;
        if pods_changed || dirty.peer_policies {
            let all = of_kind(objects, Kind::Service, namespace).filter_map(|r| match r {
                Resource::Service(s) => s.metadata.name.as_ref(),
                _ => None,
            });
            names.extend(all);
        }
        if pods_changed {
            let labels = pods.iter().map(|p| pod_labels_entry(p));
            replace_namespace(Arc::make_mut(&mut snapshot.pod_labels), namespace, labels);
            let accounts = pods.iter().map(|p| pod_account_entry(p));
            replace_namespace(Arc::make_mut(&mut snapshot.pod_accounts), namespace, accounts);
            let localities = pods.iter().filter_map(|p| pod_locality_entry(p, &nodes));
            replace_namespace(Arc::make_mut(&mut snapshot.pod_localities), namespace, localities);
        }
        for name in names {
            let key = ResourceKey { kind: Kind::Service, namespace: namespace.clone(), name: name.clone() };
            let fqdn = service_fqdn(name, namespace);
            match objects.get(&key) {
                Some(Resource::Service(service)) => {
                    let policies = (snapshot.peer_authentications.as_slice(), snapshot.root_namespace());
                    let model = service_model(service, &sources, policies);
                    // An unchanged model keeps its pointer: what follows can tell at a glance.
                    if snapshot.services.get(&fqdn).is_none_or(|m| **m != model) {
                        let after = ServiceAddresses::of(Some(&model));
                        let old = Arc::make_mut(&mut snapshot.services).insert(fqdn.clone(), Arc::new(model));
                        reindex(snapshot, &fqdn, ServiceAddresses::of(old.as_deref()), after);
                    }
                }
                _ if snapshot.services.contains_key(&fqdn) => {
                    let old = Arc::make_mut(&mut snapshot.services).remove(&fqdn);
                    reindex(snapshot, &fqdn, ServiceAddresses::of(old.as_deref()), ServiceAddresses::default());
                }
                _ => {}
            }
        }
    }
    for (namespace, name) in &dirty.secrets {
        let key = ResourceKey { kind: Kind::Secret, namespace: namespace.clone(), name: name.clone() };
        let credentials = Arc::make_mut(&mut snapshot.credentials);
        match objects.get(&key) {
            Some(Resource::Secret(secret)) => {
                credentials.insert(secret_key(secret), secret.credential.clone());
            }
            _ => drop(credentials.remove(&super::credentials::credential_key(namespace, name))),
        }
    }
    let rules_changed = dirty.rules || !dirty.rule_objects.is_empty();
    if rules_changed && (dirty.rules || !update_rules(snapshot, objects, &dirty.rule_objects)) {
        let virtual_services = all_of_kind(objects, Kind::VirtualService).filter_map(|r| match r {
            Resource::VirtualService(vs) => Some(&**vs),
            _ => None,
        });
        let destination_rules = all_of_kind(objects, Kind::DestinationRule).filter_map(|r| match r {
            Resource::DestinationRule(dr) => Some(&**dr),
            _ => None,
        });
        set_rules(snapshot, virtual_services, destination_rules);
    }
}

/// Brings the snapshot's address index from a Service's addresses `before` to those `after`, copying the index
/// (shared with earlier snapshots) only when they differ.
fn reindex(snapshot: &mut Snapshot, fqdn: &str, before: ServiceAddresses, after: ServiceAddresses) {
    if before != after {
        Arc::make_mut(&mut snapshot.addresses).update(fqdn, before, after);
    }
}

/// The objects of one kind in one namespace (keys sort by kind, then namespace).
fn of_kind<'a>(
    objects: &'a BTreeMap<ResourceKey, Resource>,
    kind: Kind,
    namespace: &'a str,
) -> impl Iterator<Item = &'a Resource> + 'a {
    let from = ResourceKey { kind, namespace: namespace.to_string(), name: String::new() };
    objects
        .range((Bound::Included(from), Bound::Unbounded))
        .take_while(move |(key, _)| key.kind == kind && key.namespace == namespace)
        .map(|(_, resource)| resource)
}

fn all_of_kind(objects: &BTreeMap<ResourceKey, Resource>, kind: Kind) -> impl Iterator<Item = &Resource> {
    let from = ResourceKey { kind, namespace: String::new(), name: String::new() };
    objects
        .range((Bound::Included(from), Bound::Unbounded))
        .take_while(move |(key, _)| key.kind == kind)
        .map(|(_, resource)| resource)
}

/// Replaces the entries of `namespace` in a per-pod map (keyed `namespace/name`) with `entries`.
fn replace_namespace<V>(map: &mut BTreeMap<String, V>, namespace: &str, entries: impl Iterator<Item = (String, V)>) {
    map.retain(|pod, _| pod.split_once('/').is_none_or(|(ns, _)| ns != namespace));
    map.extend(entries);
}

#[cfg(test)]
mod tests {
    use super::super::Index;
    use super::super::build::build;
    use crate::source::file::parse_file;
    use crate::source::{Event, Kind, Rejection, Resource, ResourceKey};

    fn resources(yaml: &str) -> Vec<Resource> {
        parse_file(std::path::Path::new("t.yaml"), yaml).resources
    }

    /// Real objects from a cluster (a Service with EndpointSlices and pods) and a few rules and Services around.
    fn start() -> Vec<Resource> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/cluster-fixtures");
        let mut objects: Vec<Resource> = ["service-reviews.yaml", "endpointslices-reviews.yaml", "pods-reviews.yaml"]
            .iter()
            .flat_map(|f| resources(&std::fs::read_to_string(dir.join(f)).unwrap_or_default()))
            .collect();
        objects.extend(resources(RULES));
        objects
    }

    const RULES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\nspec: {selector: {app: ratings}, ports: [{port: 80}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: ratings-1, namespace: shop, labels: {app: ratings, version: v1, security.weft.dev/tlsMode: weft}}\nstatus: {podIP: 10.9.0.1}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: ratings, namespace: shop}\n\
spec: {hosts: [ratings, reviews.default], http: [{route: [{destination: {host: reviews.default}}]}]}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: shop}\n\
spec: {host: ratings, subsets: [{name: v1, labels: {version: v1}}]}\n";

    /// Port 80 of ratings' pods in plaintext: clients must not originate mutual TLS to it.
    const PEER_POLICY: &str = "apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\n\
metadata: {name: plain, namespace: shop}\nspec: {selector: {matchLabels: {app: ratings}}, portLevelMtls: {\"80\": {mode: DISABLE}}}\n";

    /// A rule sorting before the others, then a delegate it hands its requests to.
    const ALPHA: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: alpha, namespace: a}\n\
spec: {hosts: [ratings.shop], http: [{route: [{destination: {host: ratings.shop}}]}]}\n";
    const DELEGATING: &str = "{match: [{uri: {prefix: /api}}], delegate: {name: api, namespace: shop}}, ";
    const DELEGATE: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: api, namespace: shop}\n\
spec: {http: [{route: [{destination: {host: reviews.default}}]}]}\n";

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: client, namespace: shop}\nstringData: {tls.crt: C1, tls.key: K}\n";

    fn key(kind: Kind, namespace: &str, name: &str) -> ResourceKey {
        ResourceKey { kind, namespace: namespace.into(), name: name.into() }
    }

    fn find(objects: &[Resource], kind: Kind) -> Resource {
        objects.iter().find(|r| r.kind() == kind).cloned().expect("a fixture of that kind")
    }

    /// Every kind of event, each after the previous ones.
    fn events(objects: &[Resource]) -> Vec<Event> {
        let mut relabelled = find(objects, Kind::Pod);
        if let Resource::Pod(pod) = &mut relabelled {
            std::sync::Arc::make_mut(pod).metadata.labels.get_or_insert_default().insert("version".into(), "v9".into());
        }
        let slice = find(objects, Kind::EndpointSlice);
        let pod = find(objects, Kind::Pod).key();
        let rejection = Rejection {
            key: key(Kind::VirtualService, "shop", "ratings"),
            generation: None,
            errors: Vec::new(),
            status: None,
        };
        vec![
            Event::Applied(relabelled),
            Event::Deleted(slice.key()),
            Event::Applied(slice),
            Event::Deleted(pod.clone()),
            Event::Deleted(key(Kind::Service, "default", "reviews")),
            Event::Applied(find(objects, Kind::Service)),
            Event::Applied(resources(&RULES.replace("10.9.0.1", "10.9.0.2")).remove(1)),
            Event::Applied(resources(&RULES.replace("[ratings, reviews.default]", "[ratings]")).remove(2)),
            Event::Deleted(key(Kind::DestinationRule, "shop", "ratings")),
            Event::Applied(resources(PEER_POLICY).remove(0)),
            Event::Applied(resources(&PEER_POLICY.replace("DISABLE", "STRICT")).remove(0)),
            Event::Deleted(key(Kind::PeerAuthentication, "shop", "plain")),
            Event::Applied(resources(PEER_POLICY).remove(0)),
            Event::Rejected(rejection),
            Event::Deleted(key(Kind::Service, "shop", "ratings")),
            Event::Restarted { kind: Kind::Pod, namespace: Some("shop".into()), objects: Vec::new() },
            Event::Applied(resources(RULES).remove(0)),
            Event::Deleted(key(Kind::Pod, "nowhere", "nothing")),
            Event::Applied(resources(ALPHA).remove(0)),
            Event::Applied(resources(DELEGATE).remove(0)),
            Event::Applied(resources(&ALPHA.replace("http: [", &format!("http: [{DELEGATING}"))).remove(0)),
            Event::Applied(resources(&DELEGATE.replace("reviews.default", "ratings")).remove(0)),
            Event::Applied(resources(&ALPHA.replace("ratings.shop}", "reviews.default}")).remove(0)),
            Event::Deleted(key(Kind::VirtualService, "shop", "api")),
            Event::Deleted(key(Kind::VirtualService, "a", "alpha")),
            Event::Applied(resources(SECRET).remove(0)),
            Event::Applied(resources(&SECRET.replace("C1", "C2")).remove(0)),
            Event::Deleted(key(Kind::Secret, "shop", "client")),
            Event::Applied(resources(SECRET).remove(0)),
        ]
    }

    #[test]
    fn a_snapshot_brought_up_to_date_equals_one_built_anew() {
        let objects = start();
        for every in [1, 2, 3] {
            let mut index = Index::default();
            for object in &objects {
                index.apply(Event::Applied(object.clone()));
            }
            index.snapshot();
            for (i, event) in events(&objects).into_iter().enumerate() {
                let what = format!("{event:?}");
                index.apply(event);
                if i % every == 0 {
                    let snapshot = index.snapshot();
                    assert_eq!(
                        snapshot,
                        build(index.objects.values(), &index.rejections, super::super::ROOT_NAMESPACE),
                        "after {what}"
                    );
                    assert_ne!(snapshot.services.len() + snapshot.virtual_services.len(), 0);
                }
            }
            let last = index.snapshot();
            assert_eq!(last, build(index.objects.values(), &index.rejections, super::super::ROOT_NAMESPACE));
            assert_eq!(last.services.len(), 2, "reviews and ratings are back");
        }
    }

    /// A Secret's certificates are held once: the snapshot's credential is the index's, built anew or brought up
    /// to date.
    #[test]
    fn a_secret_s_credential_is_shared_by_the_index_and_the_snapshot() {
        let mut index = Index::default();
        index.apply(Event::Applied(resources(SECRET).remove(0)));
        let held = |index: &Index| match index.objects.get(&key(Kind::Secret, "shop", "client")) {
            Some(Resource::Secret(secret)) => secret.credential.clone(),
            other => panic!("no Secret held: {other:?}"),
        };
        let shared =
            |index: &mut Index| std::sync::Arc::ptr_eq(&index.snapshot().credentials["shop/client"], &held(index));
        assert!(shared(&mut index), "built anew");
        index.apply(Event::Applied(resources(&SECRET.replace("C1", "C2")).remove(0)));
        assert!(shared(&mut index), "brought up to date");
        assert_eq!(held(&index).certificate.as_deref(), Some(&b"C2"[..]));
    }

    /// An index holding [`start`]'s objects.
    fn started() -> Index {
        let mut index = Index::default();
        for object in start() {
            index.apply(Event::Applied(object));
        }
        index
    }

    /// Whether clients would send `ratings`' endpoints mutual TLS.
    fn meshed(index: &mut Index) -> bool {
        let snapshot = index.snapshot();
        let ratings = &snapshot.services["ratings.shop.svc.cluster.local"];
        ratings.ports[0].endpoints.iter().all(|e| e.sidecar_account.is_some())
    }

    #[test]
    fn a_disabling_peer_authentication_takes_the_port_s_endpoints_out_of_mutual_tls() {
        let mut index = started();
        assert!(meshed(&mut index), "the pod runs a sidecar");
        index.apply(Event::Applied(resources(PEER_POLICY).remove(0)));
        assert!(!meshed(&mut index), "DISABLE on its port");
        index.apply(Event::Applied(resources(&PEER_POLICY.replace("\"80\"", "\"81\"")).remove(0)));
        assert!(meshed(&mut index), "DISABLE on another port");
        index.apply(Event::Deleted(key(Kind::PeerAuthentication, "shop", "plain")));
        assert!(meshed(&mut index));
    }

    /// The pod's sidecar never sees a port its init container excluded from inbound capture: clients must send it
    /// plaintext. The annotation the exclusion came from is not read: edited later, it changes no capture rule.
    #[test]
    fn a_port_excluded_from_the_pod_s_inbound_capture_is_sent_plaintext() {
        let mut index = started();
        let pod = RULES.split("---\n").nth(1).unwrap_or_default();
        let injected = |ports: &str| {
            let init = format!(
                "spec: {{initContainers: [{{name: weft-init, command: [weft-proxy, init, --exclude-inbound-ports, \"{ports}\"]}}]}}\nstatus:"
            );
            Event::Applied(resources(&pod.replace("status:", &init)).remove(0))
        };
        assert!(meshed(&mut index), "the pod runs a sidecar");
        index.apply(injected("8081,80"));
        assert!(!meshed(&mut index), "its port 80 bypasses the sidecar");
        index.apply(injected("8081,8080"));
        assert!(meshed(&mut index), "other ports excluded");
        let annotations = "namespace: shop, annotations: {weft.dev/exclude-inbound-ports: \"80\"},";
        index.apply(Event::Applied(resources(&pod.replace("namespace: shop,", annotations)).remove(0)));
        assert!(meshed(&mut index), "an annotation alone changes no capture rule");
    }

    #[test]
    fn a_changed_service_is_built_again_and_the_others_are_kept() {
        let mut index = Index::default();
        for object in start() {
            index.apply(Event::Applied(object));
        }
        let before = index.snapshot();
        index.apply(Event::Applied(resources(&RULES.replace("10.9.0.1", "10.9.0.3")).remove(1)));
        let after = index.snapshot();
        let kept = |fqdn: &str| std::sync::Arc::ptr_eq(&before.services[fqdn], &after.services[fqdn]);
        assert!(!kept("ratings.shop.svc.cluster.local"), "its pod changed");
        assert!(kept("reviews.default.svc.cluster.local"), "another namespace's Service is the same model");
        assert!(std::sync::Arc::ptr_eq(&before.virtual_services, &after.virtual_services), "and the rules");
    }

    #[test]
    fn a_changed_rule_is_built_again_and_the_others_are_kept() {
        let mut index = Index::default();
        for object in start().into_iter().chain(resources(ALPHA)) {
            index.apply(Event::Applied(object));
        }
        let before = index.snapshot();
        index.apply(Event::Applied(resources(&ALPHA.replace("ratings.shop}", "reviews.default}")).remove(0)));
        let after = index.snapshot();
        use std::sync::Arc;
        let (was, is) = (&before.virtual_services, &after.virtual_services);
        assert!(!Arc::ptr_eq(&was[0], &is[0]), "the edited rule is new");
        assert_eq!(is[0].name, "alpha");
        assert!(Arc::ptr_eq(&was[1], &is[1]), "another rule is the same model");
        assert!(Arc::ptr_eq(&before.destination_rules, &after.destination_rules), "and so are the policies");
        assert_eq!(after, build(index.objects.values(), &index.rejections, super::super::ROOT_NAMESPACE));
    }
}
