//! Every API call the operator makes must be allowed by the RBAC rules the chart installs
//! (`charts/weft/files/operator-*-rules.yaml`). The watchers, the status writer and leader election run against a
//! fake API server; each request they send is mapped to (group, resource, verb, namespace) and checked.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde::Deserialize;
use support::{Recorded, fake_client, fake_cluster};
use tokio::sync::{mpsc, watch};
use weft_operator::ca::{Authenticator, bundle, secret};
use weft_operator::index::Index;
use weft_operator::leader::{self, LeaseConfig};
use weft_operator::metrics::Metrics;
use weft_operator::source::Event;
use weft_operator::source::file::parse_file;
use weft_operator::source::kube::{Scope, SyncTracker, run as run_watchers};
use weft_operator::status::{targets, writer};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn rules(file: &str) -> Vec<Rule> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/weft/files").join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What RBAC sees of a request: API group, resource (with subresource), verb, namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
}

fn access(r: &Recorded) -> Access {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest.to_vec()),
        _ => panic!("not an API path: {}", r.path),
    };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest.to_vec()),
        _ => (None, rest),
    };
    let (resource, named) = match rest.as_slice() {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("unexpected path {}", r.path),
    };
    let verb = match (&r.method, named) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if r.has_query("watch", "true") || r.has_query("watch", "1") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    Access { group, resource, verb: verb.into(), namespace }
}

fn allowed(rules: &[Rule], a: &Access) -> bool {
    rules
        .iter()
        .any(|r| r.api_groups.contains(&a.group) && r.resources.contains(&a.resource) && r.verbs.contains(&a.verb))
}

async fn exercise_watchers(scope: Scope) -> Vec<Recorded> {
    let (client, log) = fake_client(fake_cluster());
    let (events, mut received) = mpsc::channel(64);
    let sync = Arc::new(SyncTracker::default());
    let task = tokio::spawn(run_watchers(client, scope, events, sync.clone(), Arc::new(Metrics::new())));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(sync.is_synced() && log.lock().unwrap().iter().filter(|r| r.has_query("watch", "true")).count() >= 5) {
        assert!(Instant::now() < deadline, "watchers did not list and watch every kind");
        let _ = tokio::time::timeout(Duration::from_millis(20), received.recv()).await;
    }
    task.abort();
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn every_api_call_of_the_operator_is_covered_by_the_chart_rbac() {
    // The chart adds the Secrets rule unless `operator.readSecrets` is false.
    let mut cluster_rules = rules("operator-clusterrole-rules.yaml");
    cluster_rules.extend(rules("operator-secrets-rules.yaml"));
    let namespace_rules = rules("operator-role-rules.yaml");
    let mut requests = exercise_watchers(Scope::default()).await;
    requests.extend(exercise_watchers(Scope { namespaces: vec!["shop".into()], without_secrets: false }).await);

    // Status writes for every Weft kind.
    let yaml = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n---\n\
                apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: a, namespace: shop}\nspec: {host: a}\n---\n\
                apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n---\n\
                apiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\nspec: {}\n---\n\
                apiVersion: security.weft.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: a, namespace: shop}\nspec: {total: {requestsPerSecond: 1}}\n";
    let mut index = Index::default();
    for r in parse_file(&PathBuf::from("t.yaml"), yaml).resources {
        index.apply(Event::Applied(r));
    }
    let (client, log) = fake_client(fake_cluster());
    writer::write_changed(&client, &targets(&index.snapshot()), &Metrics::new()).await;
    requests.extend(log.lock().unwrap().clone());

    // Leader election: create, renew, release on shutdown.
    let (client, log) = fake_client(fake_cluster());
    let mut config = LeaseConfig::new("weft-system".into(), "weft-operator".into(), "replica-a".into());
    config.retry_period = Duration::from_millis(10);
    let (leader_tx, mut leader_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let election = tokio::spawn(leader::run(client, config, leader_tx, Arc::new(Metrics::new()), async {
        let _ = stop_rx.await;
    }));
    tokio::time::timeout(Duration::from_secs(5), leader_rx.wait_for(|l| *l)).await.unwrap().unwrap();
    stop_tx.send(()).unwrap();
    election.await.unwrap();
    requests.extend(log.lock().unwrap().clone());

    // Mutual TLS: the CA Secret created on first start, a workload token checked, the trust bundle published.
    let (client, log) = fake_client(fake_ca_cluster());
    let authority = secret::load_or_create(client.clone(), "weft-system", "weft-ca", "cluster.local").await.unwrap();
    let tokens = Authenticator::TokenReview { client: client.clone(), audience: "weft-ca".into() };
    let caller = tokens.authenticate("a-projected-token").await.unwrap();
    assert_eq!((caller.namespace.as_str(), caller.service_account.as_str()), ("shop", "reviews"));
    bundle::apply(&client, "shop", authority.roots_pem()).await.unwrap();
    requests.extend(log.lock().unwrap().clone());

    // A server-side apply creates the object when it is missing, and the API server then checks `create` too
    // (not for a subresource: its object exists).
    let applies: Vec<Access> = requests
        .iter()
        .filter(|r| r.content_type.starts_with("application/apply-patch"))
        .map(|r| Access { verb: "create".into(), ..access(r) })
        .filter(|a| !a.resource.contains('/'))
        .collect();
    let mut seen: Vec<Access> = requests.iter().map(access).chain(applies).collect();
    seen.sort();
    seen.dedup();
    let mut denied = Vec::new();
    for a in &seen {
        let ok = match &a.namespace {
            Some(ns) if ns == "weft-system" => allowed(&namespace_rules, a) || allowed(&cluster_rules, a),
            _ => allowed(&cluster_rules, a),
        };
        if !ok {
            denied.push(format!("{a:?}"));
        }
    }
    println!("API calls made: {seen:#?}");
    assert!(denied.is_empty(), "not allowed by charts/weft/files RBAC:\n{}", denied.join("\n"));
    let weft_kinds = weft_crds::kinds::ALL.iter().map(|k| k.plural);
    for kind in ["services", "pods", "endpointslices", "nodes"].into_iter().chain(weft_kinds) {
        assert!(seen.iter().any(|a| a.resource == kind && a.verb == "watch"), "no watch of {kind}");
    }
    for kind in &weft_crds::kinds::ALL {
        let status = format!("{}/status", kind.plural);
        assert!(seen.iter().any(|a| a.resource == status && a.verb == "patch"), "no status write of {}", kind.plural);
    }
    assert!(seen.iter().any(|a| a.resource == "leases" && a.verb == "update"), "lease release/renew");
    for (resource, verb) in [("secrets", "create"), ("tokenreviews", "create"), ("configmaps", "patch")] {
        assert!(seen.iter().any(|a| a.resource == resource && a.verb == verb), "no {verb} of {resource}");
    }
    assert!(seen.iter().any(|a| a.resource == "secrets" && a.verb == "watch"), "no watch of secrets");
}

#[tokio::test]
async fn without_secrets_the_watchers_need_no_secrets_rule() {
    let cluster_rules = rules("operator-clusterrole-rules.yaml");
    let requests = exercise_watchers(Scope { namespaces: Vec::new(), without_secrets: true }).await;
    let seen: Vec<Access> = requests.iter().map(access).collect();
    assert!(seen.iter().all(|a| a.resource != "secrets"), "{seen:#?}");
    let denied: Vec<&Access> = seen.iter().filter(|a| !allowed(&cluster_rules, a)).collect();
    assert!(denied.is_empty(), "not allowed without operator-secrets-rules.yaml: {denied:#?}");
}

/// An API server with no CA Secret yet, that authenticates every token as `shop/reviews` for audience `weft-ca`.
fn fake_ca_cluster() -> impl Fn(&Recorded) -> (http::StatusCode, serde_json::Value) + Send + Sync + 'static {
    move |r| match (&r.method, r.path.as_str()) {
        (&Method::GET, path) if path.contains("/secrets/") => support::status_error(404, "NotFound"),
        (&Method::POST, path) if path.ends_with("/tokenreviews") => {
            let mut review = r.body.clone();
            review["status"] = serde_json::json!({
                "authenticated": true,
                "audiences": ["weft-ca"],
                "user": {"username": "system:serviceaccount:shop:reviews"},
            });
            (http::StatusCode::CREATED, review)
        }
        _ => (http::StatusCode::OK, r.body.clone()),
    }
}
