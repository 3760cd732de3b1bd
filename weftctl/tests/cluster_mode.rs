//! weftctl on Kubernetes, without a cluster: a fake API server (KUBECONFIG points at it) lists one running
//! operator pod and forwards its pod-proxy path to a real standalone operator, as the API server's proxy
//! would. weftctl must find the operator from the label selector and read the debug API through the proxy;
//! `weftctl check` reads the install (version, CRDs, pods, webhook configurations, namespaces) from it, and
//! `weftctl analyze -n/-A` the cluster's objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use weft_operator::app::{Listeners, serve_standalone};
use weft_xds::ProxyScope;

const POD_PREFIX: &str = "/api/v1/namespaces/mesh/pods";
const PROXY_PATH: &str = "/api/v1/namespaces/mesh/pods/weft-operator-7c9d:9090/proxy";

/// What the fake API server answers a path with (`debug`: the operator's debug address).
async fn answer(path_and_query: String, debug: SocketAddr) -> (u16, String) {
    if let Some(rest) = path_and_query.strip_prefix(PROXY_PATH) {
        let stream = tokio::net::TcpStream::connect(debug).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get(rest).header("host", "operator").body(Full::new(Bytes::new())).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        return (status, String::from_utf8_lossy(&body).into_owned());
    }
    let pod = |name: &str, phase: &str| {
        json!({"metadata": {"name": name, "namespace": "mesh"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let list = |kind: &str, items: Vec<serde_json::Value>| {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items}).to_string()
    };
    if path_and_query.starts_with(&format!("{POD_PREFIX}?")) {
        let selector = "labelSelector=app.kubernetes.io%2Fpart-of%3Dweft%2Capp.kubernetes.io%2Fcomponent%3D";
        assert!(path_and_query.contains(selector), "Weft's pods are found by the chart's labels: {path_and_query}");
        if path_and_query.ends_with("webhook") {
            return (200, list("PodList", Vec::new()));
        }
        return (200, list("PodList", vec![pod("weft-operator-7c9d", "Running"), pod("weft-operator-old", "Failed")]));
    }
    if let Some(found) = cluster_object(&path_and_query) {
        return (200, found.to_string());
    }
    if let Some(listed) = cluster_list(&path_and_query) {
        return (200, listed.to_string());
    }
    match path_and_query.as_str() {
        "/api/v1/namespaces?&labelSelector=weft.dev%2Finject%3Denabled"
        | "/api/v1/namespaces?labelSelector=weft.dev%2Finject%3Denabled" => {
            // Weft's own namespace is never injected, whatever its labels.
            let names = ["mesh", "shop"].map(|name| json!({"metadata": {"name": name}}));
            return (200, list("NamespaceList", names.to_vec()));
        }
        "/api/v1/namespaces/shop/pods?" | "/api/v1/namespaces/shop/pods" => {
            // Only the first lacks a sidecar the injector would give it.
            let mut host_network = pod("node-agent", "Running");
            host_network["spec"]["hostNetwork"] = json!(true);
            let mut opted_out = pod("batch", "Running");
            opted_out["metadata"]["annotations"] = json!({"weft.dev/inject": " False"});
            let items = vec![pod("legacy-0", "Running"), host_network, opted_out, pod("done", "Succeeded")];
            return (200, list("PodList", items));
        }
        _ => {}
    }
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
            .to_string(),
    )
}

/// The objects of the fake cluster `weftctl check` reads: a Kubernetes version, one established Weft CRD (the
/// others are missing) and the sidecar injector's configuration (the validator's is missing).
fn cluster_object(path: &str) -> Option<serde_json::Value> {
    const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/";
    match path {
        "/version" => {
            Some(json!({"major": "1", "minor": "29", "gitVersion": "v1.29.0", "gitCommit": "", "gitTreeState": "",
            "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"}))
        }
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/weft-sidecar-injector" => Some(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "weft-sidecar-injector"},
            "webhooks": [{"name": "sidecar-injector.weft.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"caBundle": "Y2E=", "service": {"name": "weft-webhook", "namespace": "mesh"}}}]})),
        _ if path == format!("{CRDS}virtualservices.networking.weft.dev") => Some(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "virtualservices.networking.weft.dev"},
            "spec": {"group": "networking.weft.dev", "scope": "Namespaced",
                "names": {"kind": "VirtualService", "plural": "virtualservices"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true}]},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}})),
        _ => None,
    }
}

/// The lists `weftctl analyze` reads, of every namespace: a namespace without the injection label that has a
/// pod, an injected one with a pod without a sidecar, kube-system's pods (never judged), a VirtualService
/// routing to a subset no DestinationRule defines, and one in another namespace with an invalid timeout. Items
/// come without `apiVersion`/`kind`, as the API server sends them. HTTPLocalRateLimitPolicies are not served
/// (404), as on a cluster whose CRDs predate them.
fn cluster_list(path: &str) -> Option<serde_json::Value> {
    let (path, query) = path.split_once('?')?;
    // weftctl pages through lists; one page holds everything here.
    if query.split('&').any(|param| !param.is_empty() && !param.starts_with("limit=")) {
        return None;
    }
    let object = |namespace: &str, name: &str, rest: serde_json::Value| {
        let mut object = json!({"metadata": {"name": name, "namespace": namespace}});
        json_merge(&mut object, rest);
        object
    };
    let items = match path {
        "/api/v1/namespaces" => ["shop", "legacy", "kube-system", "mesh"]
            .map(|name| {
                let injected = name == "shop";
                json!({"metadata": {"name": name, "labels": if injected { json!({"weft.dev/inject": "enabled"}) } else { json!({}) }}})
            })
            .to_vec(),
        "/api/v1/services" => vec![object("shop", "reviews", json!({"spec": {"ports": [{"port": 9080}]}}))],
        "/api/v1/pods" => ["shop/reviews-1", "legacy/old-app", "kube-system/coredns", "mesh/weft-operator-7c9d"]
            .map(|pod| {
                let (namespace, name) = pod.split_once('/').unwrap();
                object(namespace, name, json!({"spec": {"containers": [{"name": "app"}]}}))
            })
            .to_vec(),
        "/apis/networking.weft.dev/v1alpha1/virtualservices" => vec![
            object("shop", "reviews", json!({"spec": {"hosts": ["reviews"],
                "http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]}})),
            object("other", "broken", json!({"spec": {"hosts": ["x"], "http": [{"timeout": "soon",
                "route": [{"destination": {"host": "x"}}]}]}})),
        ],
        _ if path.ends_with("/httplocalratelimitpolicies") => return None,
        _ if path.starts_with("/apis/") && path.matches('/').count() == 4 => Vec::new(),
        _ => return None,
    };
    Some(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}))
}

fn json_merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

async fn fake_api_server(debug: SocketAddr, asked: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let asked = asked.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                    asked.lock().unwrap().push(path.clone());
                    async move {
                        let (status, body) = answer(path, debug).await;
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    address
}

/// A standalone operator behind a fake API server, and a KUBECONFIG pointing at it; the paths asked of it.
async fn cluster() -> (tempfile::TempDir, std::path::PathBuf, Arc<Mutex<Vec<String>>>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let service =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    std::fs::write(config.join("mesh.yaml"), service).unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let debug = health.local_addr().unwrap();
    let listeners = Listeners {
        xds: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        health,
        proxy_scope: ProxyScope::Mesh,
        root_namespace: "mesh".into(),
        secure: None,
    };
    tokio::spawn(async move {
        let _ = serve_standalone(config, listeners, std::future::pending()).await;
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let api = fake_api_server(debug, asked.clone()).await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://{api}\"}}}}]\n\
             users: [{{name: fake, user: {{token: fake}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n"
        ),
    )
    .unwrap();

    wait_until_answering(debug).await;
    (dir, kubeconfig, asked)
}

/// Waits until the operator's debug API answers, so that weftctl's first run finds it.
async fn wait_until_answering(debug: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(debug).await {
            let _ = stream.write_all(b"GET /debug/proxies HTTP/1.0\r\nhost: operator\r\n\r\n").await;
            let mut head = [0u8; 12];
            if stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the operator's debug API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs weftctl against the fake cluster: its exit code and output (standard output, then standard error).
async fn weftctl(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("WEFT_OPERATOR")
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), format!("{out}{}", String::from_utf8_lossy(&output.stderr)))
}

#[tokio::test]
async fn check_reads_the_install_through_the_api_server_and_says_what_is_wrong() {
    let (_dir, kubeconfig, _asked) = cluster().await;
    let (code, out) = weftctl(&kubeconfig, &["--weft-namespace", "mesh", "check"]).await;
    for line in [
        "[ok  ] can reach the Kubernetes API (v1.29.0)",
        "[ok  ] virtualservices.networking.weft.dev is established",
        "[FAIL] destinationrules.networking.weft.dev is missing",
        "[ok  ] weft-operator is running (1 of 2 pods ready)",
        "[FAIL] no weft-webhook pod",
        "[ok  ] weft-sidecar-injector is configured with a CA bundle",
        "[FAIL] weft-validator is missing",
        "[ok  ] injection is on in shop",
        "[WARN] pods without a sidecar in injected namespaces: legacy-0.shop",
        "[WARN] no proxy is connected to the operators",
    ] {
        assert!(out.lines().any(|l| l.trim() == line), "missing {line:?} in\n{out}");
    }
    assert_eq!(code, 1, "failures exit 1\n{out}");
    let (code, out) = weftctl(&kubeconfig, &["check", "--pre"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("All checks passed.\n"), "{out}");
}

#[tokio::test]
async fn proxy_status_finds_the_operator_pods_and_reads_them_through_the_api_server() {
    let (_dir, kubeconfig, asked) = cluster().await;
    let (code, out) = weftctl(&kubeconfig, &["--weft-namespace", "mesh", "proxy-status"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "no proxies are connected\n", "an answer from the operator, through the API server");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().any(|p| p == &format!("{PROXY_PATH}/debug/proxies")), "{asked:?}");
    assert!(
        !asked.iter().any(|p| p.contains("weft-operator-old")),
        "a pod that is not running is not asked: {asked:?}"
    );
}

#[tokio::test]
async fn analyze_reads_the_clusters_objects_and_reports_one_namespace_or_all() {
    let (dir, kubeconfig, _asked) = cluster().await;
    let (code, out) = weftctl(&kubeconfig, &["--weft-namespace", "mesh", "analyze", "-n", "shop"]).await;
    let expected = [
        "Warning (Pod shop/reviews-1) pod has no weft-proxy sidecar although namespace shop is labelled weft.dev/inject=enabled",
        "Warning (VirtualService shop/reviews) spec.http[0].route[0].destination.subset: reviews.shop.svc.cluster.local has no subset \"v3\"",
    ];
    for line in expected {
        assert!(out.lines().any(|l| l.starts_with(line)), "missing {line:?} in\n{out}");
    }
    assert_eq!(out.lines().count(), expected.len(), "only shop's problems:\n{out}");
    assert_eq!(code, 0, "warnings only: exit 0\n{out}");

    let (code, out) = weftctl(&kubeconfig, &["--weft-namespace", "mesh", "analyze", "-A"]).await;
    assert!(out.contains("Error (VirtualService other/broken) spec.http[0].timeout"), "{out}");
    assert!(out.contains("namespace legacy has 1 pod(s) but no weft.dev/inject=enabled label"), "{out}");
    assert!(!out.contains("kube-system") && !out.contains("weft-operator"), "never-injected namespaces:\n{out}");
    assert_eq!(code, 1, "errors: exit 1\n{out}");

    // A file fixing the VirtualService (no namespace: -n's, as kubectl apply -n), analyzed as if applied over
    // the cluster; a broken file's error shows whatever its namespace.
    let fixed = dir.path().join("fixed.yaml");
    let vs = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews}\n\
              spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n";
    std::fs::write(&fixed, vs).unwrap();
    let args = ["--weft-namespace", "mesh", "analyze", "-n", "shop", "-f", fixed.to_str().unwrap()];
    let (code, out) = weftctl(&kubeconfig, &args).await;
    assert!(!out.contains("subset"), "the file replaces the cluster's object:\n{out}");
    assert_eq!((out.lines().count(), code), (1, 0), "{out}");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: [unclosed\n").unwrap();
    let args = ["--weft-namespace", "mesh", "analyze", "-n", "shop", "-f", broken.to_str().unwrap()];
    let (code, out) = weftctl(&kubeconfig, &args).await;
    assert!(out.lines().any(|l| l.starts_with("Error [") && l.contains("invalid YAML")), "{out}");
    assert_eq!(code, 1, "{out}");
}
