//! Wire tests: the real server over real TLS on loopback, fed the AdmissionReview requests a kube-apiserver (v1.24)
//! actually sent (`testdata/fixtures/`), answers decoded the way the API server decodes them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use support::{TestServer, presented_certificate, request, write_leaf};
use weft_webhook::SidecarMode;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {body:?}"))
}

/// Posts `review` to /inject and returns the request's pod with the response's patch applied.
async fn inject_over_the_wire(server: &TestServer, review: &Value, http2: bool) -> Value {
    let body = Bytes::from(serde_json::to_vec(review).unwrap());
    let (status, body) = request(server.addr, &server.pki.ca(), "POST", "/inject", body, http2).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let answer = json(&body);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], review["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let encoded = response["patch"].as_str().expect("patch must be a base64 string, not an array of numbers");
    let patch: json_patch::Patch =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

fn names(containers: &Value) -> Vec<&str> {
    containers.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_deployment_pod_is_injected_with_native_sidecars() {
    let server = TestServer::start(SidecarMode::Native).await;
    let review = fixture("pod-create-from-deployment.json");
    let pod = inject_over_the_wire(&server, &review, true).await;
    assert_eq!(names(&pod["spec"]["initContainers"]), ["weft-init", "weft-proxy"]);
    assert_eq!(names(&pod["spec"]["containers"]), ["reviews"]);
    assert_eq!(pod["spec"]["initContainers"][1]["restartPolicy"], "Always");
    let command: Vec<&str> =
        pod["spec"]["initContainers"][0]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(command.windows(2).any(|w| w == ["--exclude-outbound-ports", "5432"]), "{command:?}");
    assert_eq!(pod["metadata"]["annotations"]["weft.dev/injected"], "native");
    assert_eq!(pod["metadata"]["annotations"]["weft.dev/exclude-outbound-ports"], "5432");
    assert!(pod["metadata"].get("name").is_none(), "a generateName pod must stay nameless");
    // The ReplicaSet's labels, as the API server admitted them, reach the proxy (for `sourceLabels`).
    let env = pod["spec"]["initContainers"][1]["env"].as_array().unwrap();
    let labels = env.iter().find(|e| e["name"] == "WEFT_POD_LABELS").map(|e| e["value"].clone());
    assert_eq!(labels, Some(json!("app=reviews,pod-template-hash=666c787774,version=v2")));
    // Metrics name the Deployment the pod belongs to, from its ReplicaSet owner.
    let workload = env.iter().find(|e| e["name"] == "WEFT_WORKLOAD").map(|e| e["value"].clone());
    assert_eq!(workload, Some(json!("reviews-v2")));
}

#[tokio::test]
async fn a_deployment_pod_is_injected_with_classic_sidecars() {
    let server = TestServer::start(SidecarMode::Classic).await;
    let pod = inject_over_the_wire(&server, &fixture("pod-create-from-deployment.json"), false).await;
    assert_eq!(names(&pod["spec"]["initContainers"]), ["weft-init"]);
    assert_eq!(names(&pod["spec"]["containers"]), ["weft-proxy", "reviews"]);
    assert_eq!(
        pod["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["weft-proxy", "wait", "--timeout", "60s"])
    );
    assert_eq!(pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"], "reviews");
}

#[tokio::test]
async fn an_opted_out_pod_is_allowed_unchanged_in_the_exact_documented_shape() {
    let server = TestServer::start(SidecarMode::Native).await;
    let review = fixture("pod-create-opt-out.json");
    let (status, body) = server.post("/inject", serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"f161922f-8590-46f2-9424-fb2f81eff4a7","allowed":true}}"#
    );
}

#[tokio::test]
async fn a_malformed_annotation_denies_the_pod_naming_it() {
    let server = TestServer::start(SidecarMode::Native).await;
    let mut review = fixture("pod-create-from-deployment.json");
    review["request"]["object"]["metadata"]["annotations"]["weft.dev/exclude-outbound-ports"] = json!("postgres");
    let (status, body) = server.post("/inject", serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let response = &json(&body)["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("annotation weft.dev/exclude-outbound-ports"), "{message}");
    assert!(response.get("patch").is_none());
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_message() {
    let server = TestServer::start(SidecarMode::Native).await;
    let mut wrong_kind = fixture("pod-create-opt-out.json");
    wrong_kind["kind"] = json!("Pod");
    let cases = [
        (b"this is not json".to_vec(), "body is not JSON"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "AdmissionReview has no request",
        ),
        (
            serde_json::to_vec(&wrong_kind).unwrap(),
            "expected apiVersion \"admission.k8s.io/v1\" kind \"AdmissionReview\"",
        ),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#.to_vec(), "malformed"),
    ];
    for path in ["/inject", "/validate"] {
        for (body, expected) in &cases {
            let (status, answer) = server.post(path, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {expected}");
            let text = std::str::from_utf8(&answer).unwrap();
            assert!(text.contains(expected), "{path}: {text:?} should mention {expected:?}");
        }
    }
}

fn virtual_service_review(weight: i64) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3c5a7e0e-0b7c-4a4e-9d1e-2f0c6f1b9a11",
            "kind": {"group": "networking.weft.dev", "version": "v1alpha1", "kind": "VirtualService"},
            "resource": {"group": "networking.weft.dev", "version": "v1alpha1", "resource": "virtualservices"},
            "name": "reviews",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {
                "apiVersion": "networking.weft.dev/v1alpha1",
                "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}
                ]}]}
            },
            "oldObject": null,
            "dryRun": false
        }
    })
}

#[tokio::test]
async fn a_virtual_service_with_a_bad_weight_is_denied_naming_the_field() {
    let server = TestServer::start(SidecarMode::Native).await;
    let (status, body) = server.post("/validate", serde_json::to_vec(&virtual_service_review(-90)).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let response = &json(&body)["response"];
    assert_eq!(response["uid"], "3c5a7e0e-0b7c-4a4e-9d1e-2f0c6f1b9a11");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.http[0].route[0].weight"), "{message}");

    let (_, body) = server.post("/validate", serde_json::to_vec(&virtual_service_review(90)).unwrap()).await;
    assert_eq!(json(&body)["response"], json!({"uid": "3c5a7e0e-0b7c-4a4e-9d1e-2f0c6f1b9a11", "allowed": true}));
}

#[tokio::test]
async fn weights_adding_up_past_what_envoy_accepts_are_denied_naming_the_route() {
    let server = TestServer::start(SidecarMode::Native).await;
    let mut review = virtual_service_review(i64::from(i32::MAX));
    let route = &mut review["request"]["object"]["spec"]["http"][0]["route"];
    route[1]["weight"] = json!(i32::MAX);
    let third = json!({"destination": {"host": "reviews", "subset": "v3"}, "weight": i32::MAX});
    route.as_array_mut().unwrap().push(third);
    let (_, body) = server.post("/validate", serde_json::to_vec(&review).unwrap()).await;
    let response = &json(&body)["response"];
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.http[0].route: the weights add up to 6442450941, more than 4294967295"),
        "{message}"
    );
}

#[tokio::test]
async fn healthz_answers() {
    let server = TestServer::start(SidecarMode::Native).await;
    let (status, body) = request(server.addr, &server.pki.ca(), "GET", "/healthz", Bytes::new(), false).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"ok\n".as_ref()));
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_a_restart() {
    let server = TestServer::start(SidecarMode::Native).await;
    let ca = server.pki.ca();
    let before = presented_certificate(server.addr, &ca).await;
    let next = server.pki.leaf();
    assert_ne!(before, next.der);
    write_leaf(&next, &server.cert, &server.key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if presented_certificate(server.addr, &ca).await == next.der {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll pace, not synchronization
    }
}

#[tokio::test]
async fn a_broken_certificate_file_keeps_the_old_certificate_until_a_good_one_arrives() {
    let mut server = TestServer::start_manual_reload(SidecarMode::Native).await;
    let mut reloader = server.reloader.take().unwrap();
    let ca = server.pki.ca();
    let before = presented_certificate(server.addr, &ca).await;
    assert!(!reloader.check().await.unwrap(), "unchanged files are not reloaded");

    let next = server.pki.leaf();
    std::fs::write(&server.cert, &next.cert_pem).unwrap(); // the key is not replaced yet: they do not match
    let err = reloader.check().await.unwrap_err().to_string();
    assert!(err.starts_with("TLS certificate"), "{err}");
    assert!(!reloader.check().await.unwrap(), "the same broken content is reported once");
    assert_eq!(presented_certificate(server.addr, &ca).await, before);

    write_leaf(&next, &server.cert, &server.key);
    assert!(reloader.check().await.unwrap());
    assert_eq!(presented_certificate(server.addr, &ca).await, next.der);
}
