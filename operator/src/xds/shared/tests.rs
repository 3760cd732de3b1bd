//! The translation cache: sharing between proxies, scopes, and incremental translation.

use super::*;
use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};

use crate::index::{EditedYaml, snapshot_of_yaml};
use crate::xds::protocol::Protocol;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

mod incremental;

fn published(config: u64, yaml: &str) -> Arc<Published> {
    Arc::new(Published { snapshot: snapshot_of_yaml(yaml), at: std::time::Instant::now(), config })
}

fn proxy(name: &str, namespace: &str) -> ProxyNode {
    ProxyNode { pod_name: name.into(), namespace: namespace.into(), ip: None }
}

fn mesh(node: &ProxyNode) -> Wanted<'_> {
    Wanted { node, scope: ProxyScope::Mesh, on_demand: None, declared_tcp: false, verified: false }
}

fn in_namespace<'a>(node: &'a ProxyNode, on_demand: &'a BTreeSet<String>) -> Wanted<'a> {
    Wanted { node, scope: ProxyScope::Namespace, on_demand: Some(on_demand), declared_tcp: false, verified: false }
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
async fn a_namespace_with_destination_rules_of_its_own_gets_its_clusters_the_others_share() {
    let rules = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: ledger, namespace: bank}\nspec: {host: ledger, subsets: [{name: v1, labels: {version: v1}}]}\n---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: ledger-for-shop, namespace: shop}\nspec: {host: ledger.bank, exportTo: [\".\"], trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n";
    let translations = Translations::default();
    let current = published(1, &(TWO_NAMESPACES.to_string() + rules));
    let (shop, bank, web) = (proxy("a", "shop"), proxy("b", "bank"), proxy("c", "web"));
    let [shop, bank, web] = [&shop, &bank, &web].map(|node| translations.for_proxy(&current, mesh(node)));
    let (shop, bank, web) = (shop.await, bank.await, web.await);
    let of = |r: &EncodedResources, kind| r.of_type(kind).cloned().unwrap();
    assert!(Arc::ptr_eq(&of(&bank, ResourceType::Cluster), &of(&web, ResourceType::Cluster)), "shared");
    assert_ne!(of(&shop, ResourceType::Cluster).version, of(&web, ResourceType::Cluster).version, "shop's own");
    let ledger = |r: &EncodedResources| names(r, ResourceType::Cluster).into_iter().filter(|n| n.contains("ledger"));
    assert_eq!(
        ledger(&web).collect::<Vec<_>>(),
        ["outbound|80|v1|ledger.bank.svc.cluster.local", "outbound|80||ledger.bank.svc.cluster.local"]
    );
    assert_eq!(
        ledger(&shop).collect::<Vec<_>>(),
        ["outbound|80||ledger.bank.svc.cluster.local"],
        "shop's rule has no subsets"
    );
    for (resources, node) in [(&shop, proxy("a", "shop")), (&web, proxy("c", "web"))] {
        assert_eq!(**resources, EncodedResources::from(&translate::translate(&current.snapshot, &node)));
    }
    let none = BTreeSet::new();
    let scoped = translations.for_proxy(&current, in_namespace(&proxy("d", "shop"), &none)).await;
    let random = |r: &EncodedResources| {
        let any = &r.of_type(ResourceType::Cluster).unwrap().map["outbound|80||ledger.bank.svc.cluster.local"];
        prost::Message::decode(any.value.as_slice())
            .map(|c: envoy_types::pb::envoy::config::cluster::v3::Cluster| format!("{:?}", c.load_balancing_policy))
            .unwrap()
    };
    assert_eq!(random(&scoped), random(&shop), "the scoped clusters are picked from the namespace's own");
    assert_ne!(random(&shop), random(&web));
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

/// An on-demand answer is translated once per config for every proxy asking for it (whatever else each asks for),
/// taken over by the next config while its Service's routes stand, and translated again when they change.
#[tokio::test]
async fn on_demand_answers_are_shared_and_taken_over_while_their_service_s_routes_stand() {
    let translations = Translations::default();
    let (a, b) = (proxy("a", "shop"), proxy("b", "shop"));
    let ledger: BTreeSet<String> = ["80/ledger.bank".to_string()].into();
    let both: BTreeSet<String> = ["80/ledger.bank".to_string(), "80/audit.bank".to_string()].into();
    let answer = |r: &EncodedResources| r.by_type[&ResourceType::VirtualHost].map["80/ledger.bank"].clone();
    let mut docs = base_mesh();
    let first = published_docs(1, &docs);
    let one = translations.for_proxy(&first, in_namespace(&a, &ledger)).await;
    let other = translations.for_proxy(&first, in_namespace(&b, &both)).await;
    assert!(Arc::ptr_eq(&answer(&one), &answer(&other)), "one translation for both proxies");

    docs[5] = docs[5].replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20");
    docs[3] = docs[3].replace("\"False\"", "\"True\"");
    let elsewhere = published_docs(2, &docs);
    let kept = translations.for_proxy(&elsewhere, in_namespace(&a, &ledger)).await;
    assert!(Arc::ptr_eq(&answer(&one), &answer(&kept)), "an edit of another Service's routes: taken over");

    docs[9] = docs[9].replace("host: audit}", "host: audit, port: {number: 81}}");
    let edited = published_docs(3, &docs);
    let redone = translations.for_proxy(&edited, in_namespace(&a, &ledger)).await;
    assert_ne!(answer(&kept), answer(&redone), "an edit of its own rule: translated again");
    let whole = Translations::default().for_proxy(&edited, in_namespace(&a, &ledger)).await;
    assert_eq!(answer(&redone), answer(&whole), "as a translation from scratch has it");

    drop((one, other, kept, redone));
    let audit: BTreeSet<String> = ["80/audit.bank".to_string()].into();
    let _held = translations.for_proxy(&edited, in_namespace(&a, &audit)).await;
    let cache = translations.cache.lock().await;
    let answers = cache.current.as_ref().map_or(0, |generation| generation.answers.len());
    assert_eq!(answers, 1, "answers no proxy holds any more are forgotten");
}

/// A mesh over three namespaces: a canary with subsets (shop), a route to a Service with two ports (bank), a
/// route to a Service that does not exist yet (web).
fn base_mesh() -> Vec<String> {
    let service = |name: &str, namespace: &str, ports: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{selector: {{app: {name}}}, ports: [{ports}]}}\n"
        )
    };
    let pod = |name: &str, namespace: &str, app: &str, version: &str, ip: &str, ready: bool| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}, version: {version}}}}}\nstatus: {{podIP: {ip}, conditions: [{{type: Ready, status: \"{}\"}}]}}\n",
            if ready { "True" } else { "False" }
        )
    };
    let rules = "apiVersion: networking.weft.dev/v1alpha1\nkind";
    vec![
        service("reviews", "shop", "{name: http, port: 9080}"),
        service("productpage", "shop", "{port: 80}"),
        pod("reviews-1", "shop", "reviews", "v1", "10.1.0.1", true),
        pod("reviews-2", "shop", "reviews", "v2", "10.1.0.2", false),
        format!(
            "{rules}: DestinationRule\nmetadata: {{name: reviews, namespace: shop}}\nspec: {{host: reviews, subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]}}\n"
        ),
        format!(
            "{rules}: VirtualService\nmetadata: {{name: reviews, namespace: shop}}\nspec: {{hosts: [reviews], http: [{{route: [{{destination: {{host: reviews, subset: v1}}, weight: 90}}, {{destination: {{host: reviews, subset: v2}}, weight: 10}}]}}]}}\n"
        ),
        service("ledger", "bank", "{port: 80}"),
        service("audit", "bank", "{name: a, port: 80}, {name: b, port: 81}"),
        pod("audit-1", "bank", "audit", "v1", "10.2.0.1", true),
        format!(
            "{rules}: VirtualService\nmetadata: {{name: ledger, namespace: bank}}\nspec: {{hosts: [ledger], http: [{{route: [{{destination: {{host: audit}}}}]}}]}}\n"
        ),
        format!(
            "{rules}: DestinationRule\nmetadata: {{name: audit, namespace: bank}}\nspec: {{host: audit, trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}}}\n"
        ),
        service("frontend", "web", "{port: 80}"),
        format!(
            "{rules}: VirtualService\nmetadata: {{name: frontend, namespace: web}}\nspec: {{hosts: [frontend], http: [{{route: [{{destination: {{host: payments.bank}}}}]}}]}}\n"
        ),
    ]
}

fn published_docs(config: u64, docs: &[String]) -> Arc<Published> {
    published(config, &docs.join("---\n"))
}

/// Every kind of proxy the cache serves, in every namespace.
fn every_wanted(nodes: &[ProxyNode], asked: &BTreeSet<String>) -> Vec<(String, ProxyScope, Option<BTreeSet<String>>)> {
    let mut wanted = Vec::new();
    for node in nodes {
        wanted.push((node.namespace.clone(), ProxyScope::Mesh, None));
        wanted.push((node.namespace.clone(), ProxyScope::Namespace, Some(BTreeSet::new())));
        wanted.push((node.namespace.clone(), ProxyScope::Namespace, Some(asked.clone())));
        wanted.push((node.namespace.clone(), ProxyScope::OnDemand, Some(BTreeSet::new())));
    }
    wanted
}

fn assert_same(incremental: &EncodedResources, whole: &EncodedResources, context: &str) {
    let kinds = |r: &EncodedResources| r.by_type.keys().copied().collect::<Vec<_>>();
    assert_eq!(kinds(incremental), kinds(whole), "{context}");
    for (kind, all) in &whole.by_type {
        let got = &incremental.by_type[kind];
        assert_eq!(got.map, all.map, "{context}: {kind:?}");
        assert_eq!(got.version, all.version, "{context}: {kind:?}");
    }
}

#[tokio::test]
async fn what_a_change_does_not_touch_is_taken_over_not_translated_again() {
    let translations = Translations::default();
    let (shop, bank) = (proxy("a", "shop"), proxy("b", "bank"));
    let none = BTreeSet::new();
    let mut docs = base_mesh();
    let first = published_docs(1, &docs);
    let shop_before = translations.for_proxy(&first, in_namespace(&shop, &none)).await;
    let bank_before = translations.for_proxy(&first, in_namespace(&bank, &none)).await;
    let mesh_before = translations.for_proxy(&first, mesh(&bank)).await;
    docs[5] = docs[5].replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20");
    let edited = published_docs(2, &docs);
    let shop_after = translations.for_proxy(&edited, in_namespace(&shop, &none)).await;
    let bank_after = translations.for_proxy(&edited, in_namespace(&bank, &none)).await;
    let mesh_after = translations.for_proxy(&edited, mesh(&bank)).await;
    let same = |a: &EncodedResources, b: &EncodedResources, kind| Arc::ptr_eq(&a.by_type[&kind], &b.by_type[&kind]);
    assert!(!same(&shop_before, &shop_after, ResourceType::Route), "the edited namespace's routes are new");
    assert!(same(&shop_before, &shop_after, ResourceType::Cluster), "a weight edit leaves clusters alone");
    assert!(same(&bank_before, &bank_after, ResourceType::Route), "another namespace's routes are taken over");
    assert!(same(&mesh_before, &mesh_after, ResourceType::Endpoint), "and so are the mesh's endpoints");
    docs[3] = docs[3].replace("\"False\"", "\"True\"");
    let ready = published_docs(3, &docs);
    let shop_ready = translations.for_proxy(&ready, in_namespace(&shop, &none)).await;
    let bank_ready = translations.for_proxy(&ready, in_namespace(&bank, &none)).await;
    assert!(same(&shop_after, &shop_ready, ResourceType::Route), "an endpoint change leaves routes alone");
    assert!(!same(&shop_after, &shop_ready, ResourceType::Endpoint), "and changes the endpoints in scope");
    assert!(same(&bank_after, &bank_ready, ResourceType::Endpoint), "not those of another scope");
    let endpoints = |r: &EncodedResources| r.by_type[&ResourceType::Endpoint].map.clone();
    let (was, is) = (endpoints(&shop_after), endpoints(&shop_ready));
    let kept: Vec<&String> = is.keys().filter(|name| Arc::ptr_eq(&was[*name], &is[*name])).collect();
    assert_eq!(kept, ["outbound|80||productpage.shop.svc.cluster.local"], "only the changed Service's are new");
}

#[tokio::test]
async fn which_services_a_namespace_has_rules_of_its_own_for_is_looked_up_again_only_when_rules_change() {
    let translations = Translations::default();
    let shop = proxy("a", "shop");
    let none = BTreeSet::new();
    let carried = |cache: &Cache| {
        let (current, previous) =
            (cache.current.as_ref().expect("current"), cache.previous.as_ref().expect("previous"));
        Arc::ptr_eq(&current.own_rule_hosts["shop"], &previous.own_rule_hosts["shop"])
    };
    let mut edited = EditedYaml::default();
    let mut publish = |config: u64, docs: &[String]| {
        Arc::new(Published { snapshot: edited.snapshot(&docs.join("---\n")), at: std::time::Instant::now(), config })
    };
    let mut docs = base_mesh();
    translations.for_proxy(&publish(1, &docs), in_namespace(&shop, &none)).await;
    docs[5] = docs[5].replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20");
    translations.for_proxy(&publish(2, &docs), in_namespace(&shop, &none)).await;
    assert!(carried(&*translations.cache.lock().await), "a VirtualService edit");
    docs[3] = docs[3].replace("\"False\"", "\"True\"");
    translations.for_proxy(&publish(3, &docs), in_namespace(&shop, &none)).await;
    assert!(carried(&*translations.cache.lock().await), "an endpoint change");
    docs[10] = docs[10].replace("{simple: RANDOM}", "{simple: LEAST_REQUEST}");
    translations.for_proxy(&publish(4, &docs), in_namespace(&shop, &none)).await;
    assert!(!carried(&*translations.cache.lock().await), "a DestinationRule edit");
    docs.push(
        "apiVersion: v1\nkind: Service\nmetadata: {name: safe, namespace: shop}\nspec: {ports: [{port: 80}]}\n".into(),
    );
    translations.for_proxy(&publish(5, &docs), in_namespace(&shop, &none)).await;
    assert!(!carried(&*translations.cache.lock().await), "a Service comes");
}

/// A delta client holding what it is sent, ACKing everything, subscribed as weft-proxy is (clusters and listeners
/// by wildcard, the endpoints of the clusters it holds, the route configurations named here).
struct Client {
    stream: crate::xds::delta::DeltaStream,
    held: BTreeMap<ResourceType, BTreeMap<String, Vec<u8>>>,
}

impl Client {
    fn request(kind: ResourceType, subscribe: Vec<String>, nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: subscribe,
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    /// Applies responses (and what answering them brings) until nothing more comes.
    fn settle(&mut self, mut responses: Vec<DeltaDiscoveryResponse>) {
        while let Some(response) = responses.pop() {
            let kind = ResourceType::from_type_url(&response.type_url).expect("a known type");
            let held = self.held.entry(kind).or_default();
            for resource in &response.resources {
                held.insert(resource.name.clone(), resource.resource.clone().unwrap_or_default().value);
            }
            for name in &response.removed_resources {
                held.remove(name);
            }
            responses.extend(self.stream.on_request(&Self::request(kind, Vec::new(), &response.nonce)).responses);
            if kind == ResourceType::Cluster {
                let clusters = self.held[&ResourceType::Cluster].keys().cloned().collect();
                responses
                    .extend(self.stream.on_request(&Self::request(ResourceType::Endpoint, clusters, "")).responses);
            }
        }
    }

    fn holds(&self, kind: ResourceType) -> BTreeMap<String, Vec<u8>> {
        self.held.get(&kind).cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn a_delta_client_following_incremental_configs_holds_what_a_whole_translation_gives() {
    let translations = Translations::default();
    let node = proxy("a", "shop");
    let none = BTreeSet::new();
    let mut docs = base_mesh();
    let first = translations.for_proxy(&published_docs(1, &docs), in_namespace(&node, &none)).await;
    let mut client = Client { stream: Default::default(), held: BTreeMap::new() };
    assert!(client.stream.on_resources(first.clone()).is_empty());
    let routes: Vec<String> = first.by_type[&ResourceType::Route].map.keys().cloned().collect();
    for (kind, names) in
        [(ResourceType::Cluster, Vec::new()), (ResourceType::Listener, Vec::new()), (ResourceType::Route, routes)]
    {
        let responses = client.stream.on_request(&Client::request(kind, names, "")).responses;
        client.settle(responses);
    }
    let edits: [fn(&mut Vec<String>); 4] = [
        |docs| docs[5] = docs[5].replace("weight: 90", "weight: 70").replace("weight: 10", "weight: 30"),
        |docs| docs[3] = docs[3].replace("\"False\"", "\"True\""),
        |docs| docs[9] = docs[9].replace("host: audit}", "host: ledger}"),
        |docs| docs[4] = docs[4].replace("subsets: [", "subsets: [{name: v3, labels: {version: v3}}, "),
    ];
    for (step, edit) in edits.into_iter().enumerate() {
        edit(&mut docs);
        let current = published_docs(step as u64 + 2, &docs);
        let next = translations.for_proxy(&current, in_namespace(&node, &none)).await;
        let responses = client.stream.on_resources(next);
        client.settle(responses);
        let whole = Translations::default().for_proxy(&current, in_namespace(&node, &none)).await;
        for kind in [ResourceType::Cluster, ResourceType::Endpoint, ResourceType::Listener, ResourceType::Route] {
            let expected: BTreeMap<String, Vec<u8>> =
                whole.by_type[&kind].map.iter().map(|(name, any)| (name.clone(), any.value.clone())).collect();
            assert_eq!(client.holds(kind), expected, "edit {step}: {kind:?}");
        }
    }
}

const PEER_POLICIES: &str = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: shop, labels: {app: db}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n---\n\
apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: db, namespace: shop}\n\
spec: {selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, portLevelMtls: {\"9090\": {mode: PERMISSIVE}}}\n";

#[tokio::test]
async fn a_proxy_whose_peer_authentication_is_not_the_default_gets_its_inbound_listener() {
    use weft_xds::inbound::{InboundPolicy, PeerMode};
    let translations = Translations::default();
    let mut snapshot = snapshot_of_yaml(&(MESH.to_string() + PEER_POLICIES));
    snapshot.trust_domain = Some("cluster.local".into());
    let current = Arc::new(Published { snapshot, at: std::time::Instant::now(), config: 1 });
    let (db, web) = (proxy("db-1", "shop"), proxy("web-1", "shop"));
    let none = BTreeSet::new();
    let db_mesh = translations.for_proxy(&current, mesh(&db)).await;
    let db_scoped = translations.for_proxy(&current, in_namespace(&db, &none)).await;
    let web_mesh = translations.for_proxy(&current, mesh(&web)).await;
    for resources in [&db_mesh, &db_scoped] {
        let listeners = resources.of_type(ResourceType::Listener).unwrap();
        let any = listeners.map.get(INBOUND_LISTENER).expect("the inbound listener");
        let listener = weft_xds::unpack(any).unwrap();
        let expected = InboundPolicy {
            mode: PeerMode::Strict,
            ports: BTreeMap::from([(9090, PeerMode::Permissive)]),
            ..Default::default()
        };
        assert_eq!(weft_xds::inbound::parse(&listener), Ok(expected));
        assert!(listeners.map.contains_key("0.0.0.0_80"), "the outbound listeners too");
    }
    assert!(!names(&web_mesh, ResourceType::Listener).contains(&INBOUND_LISTENER.to_string()), "web: the default");
    assert_eq!(*db_mesh, EncodedResources::from(&translate::translate(&current.snapshot, &db)));
    let without_ca = published(2, &(MESH.to_string() + PEER_POLICIES));
    let db_plain = translations.for_proxy(&without_ca, mesh(&db)).await;
    assert!(!names(&db_plain, ResourceType::Listener).contains(&INBOUND_LISTENER.to_string()), "no CA, no mTLS");
}

const CLIENT_NAMED: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
spec: {clusterIP: 10.96.0.5, selector: {app: db}, ports: [{port: 5432}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: batch-1, namespace: shop, labels: {app: batch}}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: db, namespace: shop}\n\
spec: {host: db, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: db, namespace: shop}\n\
spec: {hosts: [db], tcp: [{match: [{sourceLabels: {app: web}}], route: [{destination: {host: db, subset: v2}}]}, \
{route: [{destination: {host: db, subset: v1}}]}]}\n";

#[tokio::test]
async fn a_tcp_rule_naming_its_clients_is_on_their_listeners_only() {
    let translations = Translations::default();
    let current = published(1, CLIENT_NAMED);
    let (web, batch) = (proxy("web-1", "shop"), proxy("batch-1", "shop"));
    let routes_to = |resources: &EncodedResources, subset: &str| {
        let listener = &resources.of_type(ResourceType::Listener).unwrap().map["0.0.0.0_5432"];
        String::from_utf8_lossy(&listener.value).contains(&format!("outbound|5432|{subset}|db.shop.svc.cluster.local"))
    };
    let none = BTreeSet::new();
    for wanted in [mesh(&web), in_namespace(&web, &none)] {
        let resources = translations.for_proxy(&current, wanted).await;
        assert!(
            routes_to(&resources, "v2") && !routes_to(&resources, "v1"),
            "web's own listener: the first rule takes it"
        );
    }
    let shared = translations.for_proxy(&current, mesh(&batch)).await;
    assert!(routes_to(&shared, "v1") && !routes_to(&shared, "v2"), "batch is not named: the shared listener");
    assert_eq!(
        *translations.for_proxy(&current, mesh(&web)).await,
        EncodedResources::from(&translate::translate(&current.snapshot, &web))
    );
    let namespaced = CLIENT_NAMED.replace("sourceLabels: {app: web}", "sourceNamespace: shop");
    let current = published(2, &namespaced);
    assert!(routes_to(&*translations.for_proxy(&current, mesh(&batch)).await, "v2"), "every pod of shop is named");
    let elsewhere = proxy("a", "web");
    assert!(!routes_to(&*translations.for_proxy(&current, mesh(&elsewhere)).await, "v2"), "web's pods are not");
}

#[tokio::test]
async fn tcp_rules_exported_to_some_namespaces_are_on_their_proxies_listeners_only() {
    let translations = Translations::default();
    let private = CLIENT_NAMED
        .replace("{sourceLabels: {app: web}}", "{port: 5432}")
        .replace("spec: {hosts: [db], tcp:", "spec: {hosts: [db], exportTo: [\".\"], tcp:");
    let current = published(1, &private);
    let routes_to_v2 = |resources: &EncodedResources| {
        let listener = &resources.of_type(ResourceType::Listener).unwrap().map["0.0.0.0_5432"];
        String::from_utf8_lossy(&listener.value).contains("outbound|5432|v2|db.shop.svc.cluster.local")
    };
    let (own, other) = (proxy("batch-1", "shop"), proxy("a", "web"));
    assert!(routes_to_v2(&*translations.for_proxy(&current, mesh(&own)).await), "shop's proxies: the rule is theirs");
    assert!(!routes_to_v2(&*translations.for_proxy(&current, mesh(&other)).await), "web's: not exported there");
    assert_eq!(
        *translations.for_proxy(&current, mesh(&other)).await,
        EncodedResources::from(&translate::translate(&current.snapshot, &other))
    );
}

#[tokio::test]
async fn a_destination_rule_selecting_pods_gives_their_proxies_its_clusters_only() {
    let translations = Translations::default();
    let selecting = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: db-for-web, namespace: shop}\n\
spec: {host: db, workloadSelector: {matchLabels: {app: web}}, subsets: [{name: v3, labels: {version: v3}}]}\n";
    let current = published(1, &(CLIENT_NAMED.to_string() + selecting));
    let (web, batch) = (proxy("web-1", "shop"), proxy("batch-1", "shop"));
    let none = BTreeSet::new();
    let v3 = "outbound|5432|v3|db.shop.svc.cluster.local".to_string();
    for wanted in [mesh(&web), in_namespace(&web, &none)] {
        let resources = translations.for_proxy(&current, wanted).await;
        assert!(names(&resources, ResourceType::Cluster).contains(&v3), "web's rule: its subset's cluster");
        assert!(names(&resources, ResourceType::Endpoint).contains(&v3));
        assert!(
            !names(&resources, ResourceType::Cluster)
                .contains(&"outbound|5432|v1|db.shop.svc.cluster.local".to_string()),
            "not the namespace's rule"
        );
    }
    let shared = translations.for_proxy(&current, mesh(&batch)).await;
    assert!(!names(&shared, ResourceType::Cluster).contains(&v3), "batch is not selected");
    assert!(names(&shared, ResourceType::Cluster).contains(&"outbound|5432|v1|db.shop.svc.cluster.local".to_string()));
    assert_eq!(
        *translations.for_proxy(&current, mesh(&web)).await,
        EncodedResources::from(&translate::translate(&current.snapshot, &web))
    );
}

#[tokio::test]
async fn a_proxy_that_reads_declared_tcp_listeners_gets_them_for_tcp_ports_and_others_keep_detecting() {
    use weft_xds::detection::{Detection, detection_of};
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
                spec: {clusterIP: 10.96.0.20, ports: [{name: mysql, port: 3306}, {name: web, port: 8080}]}\n---\n\
                apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n\
                spec: {ports: [{name: http, port: 80}]}\n";
    let translations = Translations::default();
    let current = published(1, yaml);
    let node = proxy("web-1", "shop");
    let none = BTreeSet::new();
    let detection = |resources: &EncodedResources, port: u16| {
        let any = &resources.of_type(ResourceType::Listener).unwrap().map[&format!("0.0.0.0_{port}")];
        detection_of(&weft_xds::unpack::<envoy_types::pb::envoy::config::listener::v3::Listener>(any).unwrap())
    };
    for wanted in [mesh(&node), in_namespace(&node, &none)] {
        let old = translations.for_proxy(&current, wanted).await;
        let new = translations.for_proxy(&current, Wanted { declared_tcp: true, ..wanted }).await;
        assert!(matches!(detection(&old, 3306), Detection::Within(_)), "a proxy from before: detects, as always");
        assert_eq!(detection(&new, 3306), Detection::Tcp, "mysql: TCP at once");
        for port in [80, 8080] {
            assert_eq!(detection(&new, port), detection(&old, port), "port {port} is not declared TCP");
        }
    }
}

#[tokio::test]
async fn a_secret_s_key_goes_only_to_a_verified_stream_in_a_mesh_with_a_ca() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec: {ports: [{port: 443}]}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n---\n\
        apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: api, namespace: shop}\n\
        spec: {host: api, workloadSelector: {matchLabels: {app: web}}, trafficPolicy: {tls: {mode: MUTUAL, credentialName: c}}}\n---\n\
        apiVersion: v1\nkind: Secret\nmetadata: {name: c, namespace: shop}\nstringData: {tls.crt: CHAIN, tls.key: KEY}\n";
    let mut snapshot = snapshot_of_yaml(yaml);
    snapshot.trust_domain = Some("cluster.local".into());
    let current = Arc::new(Published { snapshot, at: std::time::Instant::now(), config: 1 });
    let web = proxy("web-1", "shop");
    let key_sent = |resources: &EncodedResources| {
        let any = &resources.of_type(ResourceType::Cluster).unwrap().map["outbound|443||api.shop.svc.cluster.local"];
        let cluster: envoy_types::pb::envoy::config::cluster::v3::Cluster = weft_xds::unpack(any).unwrap();
        let socket = cluster.transport_socket.unwrap();
        let context = weft_xds::origination::upstream_context(&socket).unwrap().unwrap();
        weft_xds::origination::parse(&context).unwrap().client_certificate.unwrap().1
    };
    let translations = Translations::default();
    let plaintext = translations.for_proxy(&current, mesh(&web)).await;
    assert_eq!(key_sent(&plaintext), weft_xds::origination::Pem::Inline(Vec::new()), "the node id is not proof");
    let verified = translations.for_proxy(&current, Wanted { verified: true, ..mesh(&web) }).await;
    assert_eq!(key_sent(&verified), weft_xds::origination::Pem::Inline(b"KEY".to_vec()));
}
