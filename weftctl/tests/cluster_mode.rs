//! weftctl on Kubernetes, without a cluster: a fake API server (KUBECONFIG points at it) lists one running
//! operator pod and forwards its pod-proxy path to a real standalone operator, as the API server's proxy
//! would. weftctl must find the operator from the label selector and read the debug API through the proxy.

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
    if path_and_query.starts_with(POD_PREFIX) {
        let selector = "labelSelector=app.kubernetes.io%2Fpart-of%3Dweft%2Capp.kubernetes.io%2Fcomponent%3Doperator";
        assert!(
            path_and_query.contains(selector),
            "the operator pods are found by the chart's labels: {path_and_query}"
        );
        let pod = |name: &str, phase: &str| json!({"metadata": {"name": name, "namespace": "mesh"}, "status": {"phase": phase}});
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [pod("weft-operator-7c9d", "Running"), pod("weft-operator-old", "Failed")]});
        return (200, list.to_string());
    }
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
            .to_string(),
    )
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

#[tokio::test]
async fn proxy_status_finds_the_operator_pods_and_reads_them_through_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let service =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    std::fs::write(config.join("mesh.yaml"), service).unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let debug = health.local_addr().unwrap();
    let listeners = Listeners {
        xds: TcpListener::bind("127.0.0.1:0").await.unwrap(),
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

    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
            .args(["--weft-namespace", "mesh", "proxy-status"])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("WEFT_OPERATOR")
            .output()
            .await
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        if output.status.success() {
            break out;
        }
        assert!(Instant::now() < deadline, "weftctl failed: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(out, "no proxies are connected\n", "an answer from the operator, through the API server");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().any(|p| p == &format!("{PROXY_PATH}/debug/proxies")), "{asked:?}");
    assert!(
        !asked.iter().any(|p| p.contains("weft-operator-old")),
        "a pod that is not running is not asked: {asked:?}"
    );
}
