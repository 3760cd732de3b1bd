//! `weftctl proxy-status` and `proxy-config` against a real standalone operator (in this process, on loopback)
//! and real ADS streams: a proxy that ACKs is SYNCED, one that never answers is STALE, one that NACKs is NACKED
//! with its message; the config tables name the VirtualService and DestinationRule each route and cluster came
//! from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use weft_operator::app::{Listeners, serve_standalone};
use weft_xds::{ProxyScope, ResourceType};

const MESH: &str = "\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews, version: v1}}
status: {podIP: 10.0.0.1}
---
apiVersion: networking.weft.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.weft.dev/v1alpha1
kind: VirtualService
metadata: {name: reviews-canary, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
";

/// How a test proxy answers the operator's pushes.
#[derive(Clone, Copy)]
enum Answers {
    Ack,
    Nothing,
    Nack,
}

/// A proxy's ADS stream subscribed to clusters, answering as told; dropped with its task.
struct Proxy {
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn connect(xds: SocketAddr, pod: &str, answers: Answers) -> Self {
        let (first_tx, first_rx) = oneshot::channel();
        let node = Node { id: format!("sidecar~~{pod}.shop~shop.svc.cluster.local"), ..Default::default() };
        let task = tokio::spawn(async move {
            let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}")).await.unwrap();
            let (tx, rx) = mpsc::channel(8);
            let request = |nonce: &str, error: Option<Status>| DiscoveryRequest {
                node: Some(node.clone()),
                type_url: ResourceType::Cluster.type_url().into(),
                response_nonce: nonce.into(),
                error_detail: error,
                ..Default::default()
            };
            tx.send(request("", None)).await.unwrap();
            let mut responses = client.stream_aggregated_resources(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let mut first = Some(first_tx);
            while let Ok(Some(response)) = responses.message().await {
                let DiscoveryResponse { nonce, .. } = response;
                let answer = match answers {
                    Answers::Ack => Some(request(&nonce, None)),
                    Answers::Nothing => None,
                    Answers::Nack => {
                        let status = Status {
                            code: 3,
                            message: "cluster outbound|80||x: bad lb policy".into(),
                            details: vec![],
                        };
                        Some(request(&nonce, Some(status)))
                    }
                };
                if let Some(answer) = answer {
                    let _ = tx.send(answer).await;
                }
                if let Some(first) = first.take() {
                    let _ = first.send(());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), first_rx).await.expect("no push within 10 s").unwrap();
        Self { _task: task }
    }
}

struct Operator {
    xds: SocketAddr,
    debug: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_operator(config: &str) -> Operator {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), config).unwrap();
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (xds_address, debug) = (xds.local_addr().unwrap(), health.local_addr().unwrap());
    let listeners = Listeners {
        xds: Some(xds),
        health,
        proxy_scope: ProxyScope::Mesh,
        root_namespace: "weft-system".into(),
        secure: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let path = dir.path().to_path_buf();
    tokio::spawn(async move {
        let _ = serve_standalone(path, listeners, async {
            let _ = stopped.await;
        })
        .await;
    });
    Operator { xds: xds_address, debug, _stop: stop, _dir: dir }
}

/// Runs weftctl against the operator: exit code and stdout.
async fn weftctl(operator: &Operator, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--operator")
        .arg(operator.debug.to_string())
        .args(args)
        .output()
        .await
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// Polls `weftctl args` until its output satisfies `done` (the operator answers as streams progress).
async fn weftctl_until(operator: &Operator, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, out, err) = weftctl(operator, args).await;
        if code == 0 && done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "weftctl {args:?} never gave the expected output:\n{out}{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn line_of<'a>(text: &'a str, pod: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(pod)).unwrap_or_default()
}

#[tokio::test]
async fn proxy_status_tells_synced_stale_and_nacked_proxies_apart() {
    let operator = start_operator(MESH).await;
    let _synced = Proxy::connect(operator.xds, "web-1", Answers::Ack).await;
    let _stale = Proxy::connect(operator.xds, "web-2", Answers::Nothing).await;
    let _nacked = Proxy::connect(operator.xds, "web-3", Answers::Nack).await;
    let out = weftctl_until(&operator, &["proxy-status"], |out| {
        line_of(out, "web-1.shop").contains("SYNCED") && line_of(out, "web-3.shop").contains("NACKED")
    })
    .await;
    let cds = |pod: &str| line_of(&out, pod).split_whitespace().nth(1).unwrap_or_default().to_string();
    assert_eq!(cds("web-1.shop"), "SYNCED", "{out}");
    assert_eq!(cds("web-2.shop"), "STALE", "{out}");
    assert_eq!(cds("web-3.shop"), "NACKED", "{out}");
    assert!(out.contains("web-3.shop CDS NACKED: cluster outbound|80||x: bad lb policy"), "{out}");
    assert!(line_of(&out, "web-1.shop").contains(&operator.debug.to_string()), "the operator is named: {out}");

    let (code, one, _) = weftctl(&operator, &["proxy-status", "web-2.shop"]).await;
    assert_eq!((code, one.lines().count()), (0, 2), "one proxy asked for: {one}");
}

#[tokio::test]
async fn proxy_config_shows_what_a_proxy_is_sent_and_where_it_came_from() {
    let operator = start_operator(MESH).await;
    let _proxy = Proxy::connect(operator.xds, "web-1", Answers::Ack).await;
    let clusters =
        weftctl_until(&operator, &["proxy-config", "clusters", "web-1.shop"], |o| o.contains("reviews")).await;
    let v1 = clusters.lines().find(|l| l.contains(" v1 ")).unwrap_or_default();
    assert!(v1.starts_with("reviews.shop.svc.cluster.local   80"), "{clusters}");
    assert!(v1.ends_with("destination-rule/shop/reviews"), "the subset's cluster names its rule: {clusters}");

    let (code, routes, err) = weftctl(&operator, &["proxy-config", "routes", "web-1", "-n", "shop"]).await;
    assert_eq!(code, 0, "{err}");
    let route = routes.lines().find(|l| l.contains("reviews.shop.svc.cluster.local:80")).unwrap_or_default();
    assert!(route.contains("outbound|80|v1|reviews.shop.svc.cluster.local"), "{routes}");
    assert!(route.ends_with("virtual-service/shop/reviews-canary"), "{routes}");

    let (code, endpoints, _) = weftctl(&operator, &["proxy-config", "endpoints", "web-1.shop"]).await;
    assert_eq!(code, 0);
    assert!(
        endpoints
            .lines()
            .any(|l| l.starts_with("10.0.0.1:80") && l.ends_with("outbound|80|v1|reviews.shop.svc.cluster.local")),
        "{endpoints}"
    );

    // A pod that is not connected: what it would be sent.
    let (code, raw, err) = weftctl(&operator, &["proxy-config", "clusters", "reviews-1.shop", "-o", "raw"]).await;
    assert_eq!(code, 0, "{err}");
    let view: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(view["connected"], false);
    assert!(
        view["resources"].as_array().is_some_and(|r| r.iter().all(|r| r["type"] == "CDS") && r.len() >= 2),
        "{raw}"
    );
    // Envoy's JSON, as istioctl prints it, and the same as YAML.
    let (code, json, err) = weftctl(&operator, &["proxy-config", "clusters", "reviews-1.shop", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let clusters: serde_json::Value = serde_json::from_str(&json).unwrap();
    let v1 = clusters.as_array().unwrap().iter().find(|c| c["name"] == "outbound|80|v1|reviews.shop.svc.cluster.local");
    let v1 = v1.unwrap_or_else(|| panic!("{json}"));
    assert_eq!(v1["type"], "EDS", "{v1}");
    assert!(v1["edsClusterConfig"].is_object(), "{v1}");
    let (code, yaml, _) = weftctl(&operator, &["proxy-config", "clusters", "reviews-1.shop", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, clusters);
    for section in ["endpoints", "listeners", "routes"] {
        let (code, json, err) = weftctl(&operator, &["proxy-config", section, "web-1.shop", "-o", "json"]).await;
        assert_eq!(code, 0, "{section}: {err}");
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(list.as_array().is_some_and(|l| !l.is_empty()), "{section}: {json}");
    }

    let (code, _, err) = weftctl(&operator, &["proxy-config", "clusters", "nobody.shop"]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("weftctl: ") && err.contains("404") && err.lines().count() == 1, "one line: {err}");
}

#[tokio::test]
async fn route_explains_which_route_a_request_takes_and_why() {
    let operator = start_operator(MESH).await;
    let _proxy = Proxy::connect(operator.xds, "web-1", Answers::Ack).await;
    let args = ["route", "web-1.shop", "http://reviews/ratings?x=1"];
    let canary = weftctl_until(&operator, &args, |o| o.contains("matched")).await;
    let lines: Vec<&str> = canary.lines().collect();
    assert_eq!(
        lines[0], "route configuration 80, virtual host reviews.shop.svc.cluster.local:80 (domain \"reviews\")",
        "{canary}"
    );
    assert!(lines[1].starts_with("  route 1 of 2 ") && lines[1].contains("not matched: header end-user"), "{canary}");
    assert!(lines[2].starts_with("  route 2 of 2 ") && lines[2].ends_with(": matched"), "{canary}");
    assert_eq!(lines[3], "=> outbound|80|v1|reviews.shop.svc.cluster.local (weight 90, 90%)");
    assert_eq!(lines[4], "   outbound|80|v2|reviews.shop.svc.cluster.local (weight 10, 10%)");

    let (code, jason, _) =
        weftctl(&operator, &["route", "web-1.shop", "http://reviews/", "-H", "End-User: jason"]).await;
    assert_eq!(code, 0);
    assert!(jason.contains("route 1 of 2 \"reviews-canary.shop.http[0]\": matched"), "{jason}");
    assert!(jason.contains("=> outbound|80|v1|reviews.shop.svc.cluster.local (weight"), "{jason}");

    let (_, unknown, _) = weftctl(&operator, &["route", "web-1.shop", "http://ratings/"]).await;
    assert!(unknown.contains("no virtual host has the domain \"ratings\""), "{unknown}");
    let (_, other_port, _) = weftctl(&operator, &["route", "web-1.shop", "http://reviews:5432/"]).await;
    assert!(other_port.starts_with("no route configuration for port 5432"), "{other_port}");
    let (code, _, err) = weftctl(&operator, &["route", "web-1.shop", "/reviews/1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("is not a URL with a host"), "{err}");
}

#[tokio::test]
async fn describe_pod_lists_the_services_rules_and_policies_of_a_pod() {
    let operator = start_operator(MESH).await;
    let out =
        weftctl_until(&operator, &["describe", "pod", "reviews-1", "-n", "shop"], |o| o.starts_with("Pod:")).await;
    for line in [
        "Pod: reviews-1.shop",
        "   Labels: app=reviews, version=v1",
        "Service: reviews.shop.svc.cluster.local (ports 80)",
        "   VirtualService: shop/reviews-canary",
        "   DestinationRule: shop/reviews",
        "   Subsets this pod is in: v1",
        "Inbound: mutual TLS PERMISSIVE",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing from:\n{out}");
    }
    let (code, _, err) = weftctl(&operator, &["describe", "pod", "ghost.shop"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("knows no pod shop/ghost"), "{err}");
}

#[test]
fn a_bad_operator_address_is_one_line_and_exit_2_for_a_bad_flag() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_weftctl")).args(args).output().unwrap();
    let bad_flag = run(&["proxy-status", "--no-such-flag"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let bad_address = run(&["--operator", "ftp://x", "proxy-status"]);
    assert_eq!(bad_address.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_address.stderr);
    assert_eq!(err.trim(), "weftctl: \"ftp://x\" is not an operator address (HOST:PORT or http://HOST:PORT)");
    // Nobody listens on port 1: the reason, on one line.
    let unreachable = run(&["--operator", "127.0.0.1:1", "proxy-status"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(err.starts_with("weftctl: 127.0.0.1:1: ") && err.contains("refused") && err.lines().count() == 1, "{err}");
}
