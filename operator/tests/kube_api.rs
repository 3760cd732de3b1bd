//! The status writer and leader election against an in-process fake API server: which requests they send
//! (method, path, body), not exact query strings.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use serde_json::{Value, json};
use support::{fake_client, status_error};
use weft_operator::index::Index;
use weft_operator::leader::{LeaseConfig, try_hold};
use weft_operator::metrics::Metrics;
use weft_operator::source::Event;
use weft_operator::source::file::parse_file;
use weft_operator::status::targets;
use weft_operator::status::writer::write_changed;

const RULES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  ports: [{port: 80}]\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop, generation: 3}\n\
spec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: canary}}]}]\n";

fn status_targets(yaml: &str) -> Vec<weft_operator::status::StatusTarget> {
    let mut index = Index::default();
    for r in parse_file(&PathBuf::from("t.yaml"), yaml).resources {
        index.apply(Event::Applied(r));
    }
    targets(&index.snapshot())
}

#[tokio::test]
async fn status_is_server_side_applied_to_the_status_subresource() {
    let (client, log) = fake_client(|r| {
        (
            StatusCode::OK,
            json!({"apiVersion": "networking.weft.dev/v1alpha1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "shop"}, "body": r.body}),
        )
    });
    let failed = write_changed(&client, &status_targets(RULES), &Metrics::new()).await;
    assert_eq!(failed, 0);
    let requests = log.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let patch = &requests[0];
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(patch.path, "/apis/networking.weft.dev/v1alpha1/namespaces/shop/virtualservices/reviews/status");
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert!(patch.has_query("fieldManager", "weft-operator"), "{}", patch.query);
    assert!(patch.has_query("force", "true"), "{}", patch.query);
    assert_eq!(patch.body["apiVersion"], "networking.weft.dev/v1alpha1");
    assert_eq!(patch.body["kind"], "VirtualService");
    let status = &patch.body["status"];
    assert_eq!(status["observedGeneration"], 3);
    let conditions = status["conditions"].as_array().unwrap();
    let by_type = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(by_type("Accepted")["status"], "True");
    assert_eq!(by_type("ResolvedRefs")["reason"], "UnknownSubset");
    assert!(by_type("ResolvedRefs")["lastTransitionTime"].is_string());
    assert!(patch.body.get("spec").is_none(), "only status is applied");
}

#[tokio::test]
async fn unchanged_status_is_not_written_and_failures_are_counted() {
    let written: Arc<Mutex<Option<Value>>> = Arc::default();
    let keep = written.clone();
    let (client, log) = fake_client(move |r| {
        *keep.lock().unwrap() = Some(r.body["status"].clone());
        (StatusCode::OK, json!({}))
    });
    let metrics = Metrics::new();
    let mut all = status_targets(RULES);
    write_changed(&client, &all, &metrics).await;
    // The object now carries what was written; a second pass has nothing to do.
    let status = written.lock().unwrap().clone().unwrap();
    for t in &mut all {
        t.current = Some(serde_json::from_value(status.clone()).unwrap());
    }
    write_changed(&client, &all, &metrics).await;
    assert_eq!(log.lock().unwrap().len(), 1, "the unchanged status was written again");

    let (failing, _) = fake_client(|_| status_error(500, "InternalError"));
    assert_eq!(write_changed(&failing, &status_targets(RULES), &metrics).await, 1);
    assert!(metrics.encode().contains("weft_operator_status_writes_total{kind=\"VirtualService\",result=\"error\"} 1"));
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig::new("weft-system".into(), "weft-operator".into(), identity.into())
}

fn lease_json(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "weft-operator", "namespace": "weft-system", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseTransitions": transitions}
    })
}

#[tokio::test]
async fn a_missing_lease_is_created_and_held() {
    let (client, log) = fake_client(|r| match r.method {
        Method::GET => status_error(404, "NotFound"),
        _ => (StatusCode::CREATED, r.body.clone()),
    });
    let api: Api<Lease> = Api::namespaced(client, "weft-system");
    assert!(try_hold(&api, &config("replica-a")).await.unwrap());
    let requests = log.lock().unwrap().clone();
    assert_eq!(requests.iter().map(|r| r.method.clone()).collect::<Vec<_>>(), [Method::GET, Method::POST]);
    assert_eq!(requests[0].path, "/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/weft-operator");
    assert_eq!(requests[1].path, "/apis/coordination.k8s.io/v1/namespaces/weft-system/leases");
    assert_eq!(requests[1].body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(requests[1].body["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_left_alone() {
    let (client, log) = fake_client(|_| (StatusCode::OK, lease_json("replica-b", Timestamp::now(), 0)));
    let api: Api<Lease> = Api::namespaced(client, "weft-system");
    assert!(!try_hold(&api, &config("replica-a")).await.unwrap());
    assert_eq!(log.lock().unwrap().len(), 1, "only the read");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_a_compare_and_swap() {
    let stale = Timestamp::from_second(Timestamp::now().as_second() - 60).unwrap();
    let (client, log) = fake_client(move |r| match r.method {
        Method::GET => (StatusCode::OK, lease_json("replica-b", stale, 2)),
        _ => (StatusCode::OK, r.body.clone()),
    });
    let api: Api<Lease> = Api::namespaced(client, "weft-system");
    assert!(try_hold(&api, &config("replica-a")).await.unwrap());
    let put = log.lock().unwrap()[1].clone();
    assert_eq!(put.method, Method::PUT);
    assert_eq!(put.path, "/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/weft-operator");
    assert_eq!(put.body["metadata"]["resourceVersion"], "41", "the write is conditional on what was read");
    assert_eq!(put.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(put.body["spec"]["leaseTransitions"], 3);
}

#[tokio::test]
async fn losing_the_race_for_the_lease_is_not_leadership() {
    let stale = Timestamp::from_second(Timestamp::now().as_second() - 60).unwrap();
    let (client, _) = fake_client(move |r| match r.method {
        Method::GET => (StatusCode::OK, lease_json("replica-b", stale, 2)),
        _ => status_error(409, "Conflict"),
    });
    let api: Api<Lease> = Api::namespaced(client, "weft-system");
    assert!(!try_hold(&api, &config("replica-a")).await.unwrap());
}
