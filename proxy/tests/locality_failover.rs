//! Locality failover end to end on loopback: the standalone operator reads where pods run (Nodes' topology
//! labels) and a DestinationRule with outlier detection; the real proxy then keeps a client's requests in its
//! own zone while that zone is healthy, and moves them to the next zone once its endpoints are ejected. Without
//! outlier detection there is no failover, as in Istio: requests go to every zone. `distribute` splits a zone's
//! requests by the shares it names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::scripted::{Script, Scripted};
use support::{Operator, Proxy, free_port};

/// Nodes in two zones of one region, the client pod on the first, and Service `app` with one pod per backend,
/// each on the node named beside it.
fn mesh_yaml(backends: &[(SocketAddr, &str)], traffic_policy: &str) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a, labels: {topology.kubernetes.io/region: r1, \
         topology.kubernetes.io/zone: z1}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: node-b, labels: {topology.kubernetes.io/region: r1, \
         topology.kubernetes.io/zone: z2}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: default}\nspec: {nodeName: node-a, \
         containers: [{name: c, image: c}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: default}\n\
         spec: {selector: {app: app}, ports: [{name: http, port: 80, targetPort: http}]}\n",
    );
    for (i, (backend, node)) in backends.iter().enumerate() {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: app-{i}, namespace: default, labels: {{app: app}}}}\n\
             spec: {{nodeName: {node}, containers: [{{name: app, image: app, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
             status: {{podIP: {}}}\n",
            backend.port(),
            backend.ip()
        );
    }
    yaml + &format!(
        "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: app, namespace: default}}\n\
         spec: {{host: app, trafficPolicy: {traffic_policy}}}\n---\n\
         apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: app, namespace: default}}\n\
         spec: {{hosts: [app], http: [{{route: [{{destination: {{host: app}}}}], retries: {{attempts: 0}}}}]}}\n"
    )
}

/// The client's proxy, once it holds every backend of `app`.
async fn client_proxy(backends: &[(SocketAddr, &str)], traffic_policy: &str) -> (Proxy, Operator) {
    let xds = free_port();
    let operator = Operator::start_with(xds, backends[0].0, &mesh_yaml(backends, traffic_policy)).await;
    let proxy = Proxy::start_as("client", xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let dump = support::get(proxy.admin, "localhost", "/config_dump", &[]).await.map(|(_, d)| d);
        let dump: serde_json::Value = serde_json::from_str(&dump.unwrap_or_default()).unwrap_or_default();
        let held = dump["endpoints"]["outbound|80||app.default.svc.cluster.local"].as_array().map_or(0, Vec::len);
        if held == backends.len() {
            return (proxy, operator);
        }
        assert!(Instant::now() < until, "the proxy never got every endpoint of app:\n{}", proxy.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn statuses(proxy: &Proxy, count: usize) -> Vec<StatusCode> {
    let mut seen = Vec::new();
    for _ in 0..count {
        seen.push(support::get(proxy.outbound, "app", "/", &[]).await.unwrap().0);
    }
    seen
}

const OUTLIERS: &str = "outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, \
                        maxEjectionPercent: 100}";

#[tokio::test]
async fn requests_stay_in_the_client_s_zone_while_it_is_healthy() {
    let (near, far) = (Scripted::start(Script::Echo).await, Scripted::start(Script::Echo).await);
    let (proxy, _operator) =
        client_proxy(&[(near.address, "node-a"), (far.address, "node-b")], &format!("{{{OUTLIERS}}}")).await;
    let answered = statuses(&proxy, 40).await;
    assert!(answered.iter().all(|s| *s == StatusCode::OK), "{answered:?}");
    assert_eq!((near.received(), far.received()), (40, 0), "every request stays in zone z1");
}

#[tokio::test]
async fn once_the_zone_s_endpoints_are_ejected_requests_fail_over_to_the_next_zone() {
    let (sick, far) = (Scripted::start(Script::Fail(503)).await, Scripted::start(Script::Echo).await);
    let (proxy, _operator) =
        client_proxy(&[(sick.address, "node-a"), (far.address, "node-b")], &format!("{{{OUTLIERS}}}")).await;
    let answered = statuses(&proxy, 33).await;
    let failed = answered.iter().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert_eq!((sick.received(), failed), (3, 3), "three 503s in zone z1, then it is ejected");
    assert_eq!(far.received(), 30, "the rest went to zone z2");
}

#[tokio::test]
async fn without_outlier_detection_there_is_no_failover_and_every_zone_gets_requests() {
    let (near, far) = (Scripted::start(Script::Echo).await, Scripted::start(Script::Echo).await);
    let (proxy, _operator) =
        client_proxy(&[(near.address, "node-a"), (far.address, "node-b")], "{loadBalancer: {simple: ROUND_ROBIN}}")
            .await;
    statuses(&proxy, 40).await;
    assert_eq!((near.received(), far.received()), (20, 20), "round robin over both zones");
}

#[tokio::test]
async fn distribute_splits_a_zone_s_requests_by_the_shares_it_names() {
    let (near, far) = (Scripted::start(Script::Echo).await, Scripted::start(Script::Echo).await);
    let policy = "{loadBalancer: {localityLbSetting: {distribute: [{from: \"r1/z1/*\", to: {\"r1/z1/*\": 80, \
                  \"r1/z2/*\": 20}}]}}}";
    let (proxy, _operator) = client_proxy(&[(near.address, "node-a"), (far.address, "node-b")], policy).await;
    let answered = statuses(&proxy, 400).await;
    assert!(answered.iter().all(|s| *s == StatusCode::OK));
    // 80 expected in z2; an even split would send 200. The bounds are over five standard deviations wide.
    assert_eq!(near.received() + far.received(), 400);
    assert!((40..=120).contains(&far.received()), "z2 got {} of 400, not about 20 %", far.received());
}
