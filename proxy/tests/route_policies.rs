//! VirtualService policies end to end on loopback: the real proxy, configured by the in-process standalone
//! operator from Istio-style YAML, in front of scripted backends. Each test shows what a user would see:
//! retries turning a flaky backend's 503s into successes and held to the retry budget when it is down, faults
//! in latency and status codes, mirrors receiving copies without slowing the original, and rewrites, header
//! operations, redirects and direct responses as the backend and client see them, and rules that apply only to
//! clients with some labels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::scripted::{Script, Scripted};
use support::{Operator, Proxy, free_port, sample, service_in};
use tokio::net::TcpStream;

/// A proxy whose mesh has Service `app` backed by `backend`, the `extra` YAML documents, and `rules`.
async fn mesh(backend: SocketAddr, extra: &str, rules: &str) -> (Proxy, Operator) {
    let xds = free_port();
    let documents = format!("{}---\n{extra}{rules}", service_in("app", "default", backend));
    let operator = Operator::start_with(xds, backend, &documents).await;
    (ready_proxy(xds, &[]).await, operator)
}

/// A proxy started with `args`, once it routes `app`.
async fn ready_proxy(xds: SocketAddr, args: &[&str]) -> Proxy {
    let proxy = Proxy::start(xds, args);
    proxy.wait_ready(StatusCode::OK).await;
    wait_for_app(&proxy).await;
    proxy
}

/// Ready means a whole config arrived, which may be from before the operator read every file: wait until the
/// proxy routes `app` and holds its endpoints.
async fn wait_for_app(proxy: &Proxy) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((_, dump)) = support::get(proxy.admin, "localhost", "/config_dump", &[]).await {
            let dump: serde_json::Value = serde_json::from_str(&dump).unwrap_or_default();
            let routed = dump.to_string().contains("app.default.svc.cluster.local:80");
            let endpoints = dump["endpoints"]["outbound|80||app.default.svc.cluster.local"]
                .as_array()
                .is_some_and(|e| !e.is_empty());
            if routed && endpoints {
                return;
            }
        }
        assert!(Instant::now() < until, "the proxy never got the app Service");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn virtual_service(http: &str) -> String {
    format!(
        "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: app, namespace: default}}\nspec:\n  hosts: [app]\n  http:\n{http}"
    )
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One request on a new connection.
async fn send(to: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path).header(http::header::HOST, "app");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
    Answer { status: parts.status, headers: parts.headers, body }
}

async fn get(to: SocketAddr, path: &str) -> Answer {
    send(to, Method::GET, path, &[], Bytes::new()).await
}

#[tokio::test]
async fn retries_turn_a_flaky_backends_503s_into_successes() {
    let backend = Scripted::start(Script::FailOdd).await;
    let rules = virtual_service("  - route: [{destination: {host: app}}]\n    retries: {attempts: 2, retryOn: 5xx}\n");
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    for _ in 0..20 {
        assert_eq!(get(proxy.outbound, "/").await.status, StatusCode::OK);
    }
    assert_eq!(backend.received(), 40, "each request failed once and succeeded on its retry");
    let metrics = proxy.metrics().await;
    let retries =
        r#"weft_proxy_route_events_total{cluster="outbound|80||app.default.svc.cluster.local",event="retry"}"#;
    assert_eq!(sample(&metrics, retries), 20.0);
}

#[tokio::test]
async fn without_retries_the_503s_reach_the_client() {
    let backend = Scripted::start(Script::FailOdd).await;
    let rules = virtual_service("  - route: [{destination: {host: app}}]\n    retries: {attempts: 0}\n");
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let mut failed = 0;
    for _ in 0..20 {
        failed += usize::from(get(proxy.outbound, "/").await.status == StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!((failed, backend.received()), (10, 20), "every other request fails, none is retried");
}

#[tokio::test]
async fn istios_default_retries_cover_503_and_replay_the_request_body() {
    let backend = Scripted::start(Script::FailOdd).await;
    let rules = virtual_service("  - route: [{destination: {host: app}}]\n");
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let body = Bytes::from(vec![b'x'; 100_000]);
    for _ in 0..5 {
        let answer = send(proxy.outbound, Method::POST, "/upload", &[], body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(answer.body.contains("body=100000"), "the retry carried the whole body: {}", answer.body);
    }
    assert_eq!(backend.received(), 10);
}

#[tokio::test]
async fn a_retry_goes_to_an_endpoint_not_tried_yet() {
    let dead = Scripted::start(Script::Fail(503)).await;
    let alive = Scripted::start(Script::Echo).await;
    let second_pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: app-2, namespace: default, labels: {{app: app}}}}\n\
         spec: {{containers: [{{name: app, image: app, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
         status: {{podIP: {}}}\n",
        alive.address.port(),
        alive.address.ip()
    );
    // Istio's default retries: 503 retried twice, never on an endpoint already tried (`previous_hosts`).
    let rules = virtual_service("  - route: [{destination: {host: app}}]\n");
    let (proxy, _operator) = mesh(dead.address, &second_pod, &rules).await;
    wait_for_endpoints(&proxy, 2).await;
    for _ in 0..30 {
        let before = dead.received();
        assert_eq!(get(proxy.outbound, "/").await.status, StatusCode::OK);
        assert!(dead.received() - before <= 1, "a retry went back to the endpoint that had just failed");
    }
    assert!(alive.received() >= 30);
}

/// Waits until the proxy holds `count` endpoints of `app`.
async fn wait_for_endpoints(proxy: &Proxy, count: usize) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((_, dump)) = support::get(proxy.admin, "localhost", "/config_dump", &[]).await {
            let dump: serde_json::Value = serde_json::from_str(&dump).unwrap_or_default();
            let held = dump["endpoints"]["outbound|80||app.default.svc.cluster.local"].as_array().map_or(0, Vec::len);
            if held == count {
                return;
            }
        }
        assert!(Instant::now() < until, "the proxy never held {count} endpoints of app");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_retry_budget_keeps_a_dead_backend_from_getting_triple_load() {
    let backend = Scripted::start(Script::Fail(503)).await;
    let rules = virtual_service("  - route: [{destination: {host: app}}]\n    retries: {attempts: 2, retryOn: 5xx}\n");
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let (clients, each) = (20, 20);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let to = proxy.outbound;
            tokio::spawn(async move {
                for _ in 0..each {
                    assert_eq!(get(to, "/").await.status, StatusCode::SERVICE_UNAVAILABLE);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let requests = clients * each;
    let attempts = backend.received();
    // Unbudgeted, every request would be tried 3 times (1200 attempts for 400 requests).
    assert!(attempts < requests * 2, "{attempts} attempts for {requests} requests");
    let metrics = proxy.metrics().await;
    let overflow =
        r#"weft_proxy_route_events_total{cluster="outbound|80||app.default.svc.cluster.local",event="retry_overflow"}"#;
    assert!(sample(&metrics, overflow) > 0.0, "retries were refused by the budget");
}

#[tokio::test]
async fn a_delay_fault_shows_in_latency_and_an_abort_in_status_codes() {
    let backend = Scripted::start(Script::Echo).await;
    let rules = virtual_service(concat!(
        "  - match: [{uri: {prefix: /slow}}]\n",
        "    route: [{destination: {host: app}}]\n",
        "    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n",
        "  - route: [{destination: {host: app}}]\n",
        "    fault: {abort: {httpStatus: 418, percentage: {value: 30}}}\n",
    ));
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let started = Instant::now();
    assert_eq!(get(proxy.outbound, "/slow").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed by the fault: {:?}", started.elapsed());
    let n = 400;
    let mut aborted = 0.0_f64;
    for _ in 0..n {
        let answer = get(proxy.outbound, "/").await;
        if answer.status == StatusCode::IM_A_TEAPOT {
            aborted += 1.0;
        } else {
            assert_eq!(answer.status, StatusCode::OK);
        }
    }
    // 30% of 400 is 120; five standard deviations (sqrt(400 * 0.3 * 0.7) = 9.2) either side.
    assert!((120.0 - aborted).abs() < 5.0 * 9.2, "{aborted} of {n} aborted");
    assert_eq!(backend.received() as f64, 1.0 + n as f64 - aborted, "aborted requests never reach the backend");
}

#[tokio::test]
async fn a_mirror_gets_a_copy_without_slowing_the_original() {
    let backend = Scripted::start(Script::Echo).await;
    let shadow = Scripted::start(Script::Slow(Duration::from_secs(2))).await;
    let rules = virtual_service(concat!(
        "  - route: [{destination: {host: app}}]\n",
        "    mirror: {host: shadow}\n",
        "    mirrorPercentage: {value: 100}\n",
    ));
    let (proxy, _operator) =
        mesh(backend.address, &format!("{}---\n", service_in("shadow", "default", shadow.address)), &rules).await;
    let started = Instant::now();
    for _ in 0..5 {
        let answer = send(proxy.outbound, Method::POST, "/orders", &[], Bytes::from_static(b"{}")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the originals did not wait for the 2 s mirror");
    let until = Instant::now() + Duration::from_secs(10);
    while shadow.received() < 5 {
        assert!(Instant::now() < until, "the mirror received {} of 5 copies", shadow.received());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.received(), 5);
}

#[tokio::test]
async fn rewrites_and_header_operations_reach_the_backend_and_the_client() {
    let backend = Scripted::start(Script::Echo).await;
    let rules = virtual_service(concat!(
        "  - match: [{uri: {prefix: /old}}]\n",
        "    rewrite: {uri: /new, authority: app.internal}\n",
        "    headers:\n",
        "      request: {set: {x-env: canary}, add: {x-trace: two}, remove: [x-secret]}\n",
        "      response: {set: {x-served-by: weft}, remove: [x-backend-says]}\n",
        "    route: [{destination: {host: app}, headers: {request: {set: {x-dest: app}}}}]\n",
    ));
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let headers = [("x-env", "prod"), ("x-secret", "s3cr3t"), ("x-trace", "one")];
    let answer = send(proxy.outbound, Method::GET, "/old/items?page=2", &headers, Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = |line: &str| answer.body.lines().any(|l| l == line);
    assert!(seen("path=/new/items?page=2"), "{}", answer.body);
    assert!(seen("host=app.internal"), "{}", answer.body);
    assert!(seen("x-env=canary") && !seen("x-env=prod"), "{}", answer.body);
    assert!(seen("x-trace=one") && seen("x-trace=two"), "{}", answer.body);
    assert!(seen("x-dest=app") && !answer.body.contains("x-secret"), "{}", answer.body);
    assert_eq!(answer.headers["x-served-by"], "weft");
    assert!(!answer.headers.contains_key("x-backend-says"));
}

#[tokio::test]
async fn redirects_and_direct_responses_are_answered_by_the_proxy() {
    let backend = Scripted::start(Script::Echo).await;
    let rules = virtual_service(concat!(
        "  - match: [{uri: {exact: /v1/getProductRatings}}]\n",
        "    redirect: {uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local}\n",
        "  - match: [{uri: {prefix: /maintenance}}]\n",
        "    directResponse: {status: 503, body: {string: \"down for maintenance\"}}\n",
        "  - route: [{destination: {host: app}}]\n",
    ));
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let moved = get(proxy.outbound, "/v1/getProductRatings?id=7").await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        moved.headers[http::header::LOCATION],
        "http://newratings.default.svc.cluster.local/v1/bookRatings?id=7"
    );
    let down = get(proxy.outbound, "/maintenance/now").await;
    assert_eq!((down.status, down.body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance"));
    assert_eq!(backend.received(), 0, "neither reached the backend");
    assert_eq!(get(proxy.outbound, "/other").await.status, StatusCode::OK);
}

#[tokio::test]
async fn source_labels_apply_a_rule_only_to_clients_carrying_them() {
    let backend = Scripted::start(Script::Echo).await;
    let rules = virtual_service(concat!(
        "  - match: [{sourceLabels: {app: web, version: v2}}]\n",
        "    directResponse: {status: 200, body: {string: \"for the v2 clients\"}}\n",
        "  - route: [{destination: {host: app}}]\n",
    ));
    let xds = free_port();
    let documents = format!("{}---\n{rules}", service_in("app", "default", backend.address));
    let _operator = Operator::start_with(xds, backend.address, &documents).await;
    let v2 = ready_proxy(xds, &["--pod-labels", "app=web,version=v2,pod-template-hash=5d7c"]).await;
    let v1 = ready_proxy(xds, &["--pod-labels", "app=web,version=v1"]).await;
    let unlabelled = ready_proxy(xds, &[]).await;
    assert_eq!(get(v2.outbound, "/").await.body, "for the v2 clients");
    assert_eq!(backend.received(), 0);
    for proxy in [&v1, &unlabelled] {
        let answer = get(proxy.outbound, "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_ne!(answer.body, "for the v2 clients");
    }
    assert_eq!(backend.received(), 2, "the other clients reach the backend");
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_proxy_and_responses_carry_the_headers() {
    let backend = Scripted::start(Script::Echo).await;
    let rules = virtual_service(concat!(
        "  - route: [{destination: {host: app}}]\n",
        "    corsPolicy:\n",
        "      allowOrigins: [{exact: \"https://shop.example.com\"}]\n",
        "      allowMethods: [POST, GET]\n",
        "      exposeHeaders: [x-backend-says]\n",
        "      maxAge: 24h\n",
        "      unmatchedPreflights: IGNORE\n",
    ));
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let preflight = |origin: &'static str| async move {
        let headers = [("origin", origin), ("access-control-request-method", "POST")];
        send(proxy.outbound, Method::OPTIONS, "/cart", &headers, Bytes::new()).await
    };
    let allowed = preflight("https://shop.example.com").await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.headers["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(allowed.headers["access-control-allow-methods"], "POST,GET");
    assert_eq!(allowed.headers["access-control-max-age"], "86400");
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(!refused.headers.contains_key("access-control-allow-origin"));
    assert_eq!(backend.received(), 0, "preflights are the proxy's to answer");
    let headers = [("origin", "https://shop.example.com")];
    let actual = send(proxy.outbound, Method::GET, "/cart", &headers, Bytes::new()).await;
    assert_eq!(actual.headers["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(actual.headers["access-control-expose-headers"], "x-backend-says");
}

/// One gRPC-shaped call over HTTP/2 (prior knowledge) on a new connection: the response head and how long it took.
async fn grpc_call(to: SocketAddr, headers: &[(&str, &str)]) -> (HeaderMap, Duration) {
    let started = Instant::now();
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request =
        Request::post("http://app/weft.Echo/Say").header("content-type", "application/grpc").header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let message = Bytes::from_static(&[0, 0, 0, 0, 0]);
    let response = sender.send_request(request.body(Full::new(message)).unwrap()).await.unwrap();
    (response.headers().clone(), started.elapsed())
}

#[tokio::test]
async fn grpc_clients_get_grpc_statuses_and_their_deadline() {
    let backend = Scripted::start(Script::Slow(Duration::from_secs(3))).await;
    let rules = virtual_service(concat!(
        "  - match: [{headers: {x-case: {exact: abort}}}]\n",
        "    route: [{destination: {host: app}}]\n",
        "    fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}\n",
        "  - route: [{destination: {host: app}}]\n",
        "    timeout: 10s\n",
    ));
    let (proxy, _operator) = mesh(backend.address, "", &rules).await;
    let (aborted, _) = grpc_call(proxy.outbound, &[("x-case", "abort")]).await;
    assert_eq!(aborted["grpc-status"], "8", "the fault's gRPC status, as a trailers-only response");
    let (late, took) = grpc_call(proxy.outbound, &[("grpc-timeout", "300m")]).await;
    assert_eq!(late["grpc-status"], "14", "a passed deadline is the proxy's timeout, in gRPC's shape");
    assert!(took < Duration::from_secs(3), "the client's 300 ms deadline, not the backend's 3 s: {took:?}");
}

/// A Service `app` whose pods are `backends` (one pod each, on their own ports).
fn service_with_pods(backends: &[SocketAddr]) -> String {
    let mut yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: default}\n\
                    spec:\n  selector: {app: app}\n  ports: [{name: http, port: 80, targetPort: http}]\n"
        .to_string();
    for (i, backend) in backends.iter().enumerate() {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: app-{i}, namespace: default, labels: {{app: app}}}}\n\
             spec: {{containers: [{{name: app, image: app, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
             status: {{podIP: {}}}\n",
            backend.port(),
            backend.ip()
        );
    }
    yaml
}

async fn mesh_of(backends: &[SocketAddr], rules: &str) -> (Proxy, Operator) {
    let xds = free_port();
    let operator =
        Operator::start_with(xds, backends[0], &format!("{}---\n{rules}", service_with_pods(backends))).await;
    (ready_proxy(xds, &[]).await, operator)
}

const NO_RETRIES: &str = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: app, namespace: default}\nspec:\n  hosts: [app]\n  http: [{route: [{destination: {host: app}}], retries: {attempts: 0}}]\n";

#[tokio::test]
async fn a_failing_endpoint_is_ejected_then_comes_back_after_its_ejection_time() {
    let sick = Scripted::start(Script::Fail(503)).await;
    let healthy = Scripted::start(Script::Echo).await;
    let rules = concat!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: app, namespace: default}\n",
        "spec:\n  host: app\n  trafficPolicy:\n",
        "    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 100}\n",
    )
    .to_string()
        + NO_RETRIES;
    let (proxy, _operator) = mesh_of(&[sick.address, healthy.address], &rules).await;
    let mut failed = 0;
    for _ in 0..40 {
        failed += usize::from(get(proxy.outbound, "/").await.status == StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        (sick.received(), failed),
        (3, 3),
        "three 503s in a row, then ejected: the rest went to the healthy one"
    );
    let ejected_at = Instant::now();
    let until = ejected_at + Duration::from_secs(15);
    while sick.received() == 3 {
        assert!(Instant::now() < until, "the ejected endpoint never came back");
        get(proxy.outbound, "/").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ejected_at.elapsed() >= Duration::from_millis(1900), "back only after the base ejection time");
}

#[tokio::test]
async fn a_connection_pool_limit_turns_excess_concurrency_into_fast_503s() {
    let backend = Scripted::start(Script::Slow(Duration::from_millis(600))).await;
    let rules = concat!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: app, namespace: default}\n",
        "spec:\n  host: app\n  trafficPolicy:\n",
        "    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n",
    )
    .to_string()
        + NO_RETRIES;
    let (proxy, _operator) = mesh_of(&[backend.address], &rules).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let to = proxy.outbound;
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = get(to, "/").await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let (mut admitted, mut overflowed) = (0, 0);
    for call in calls {
        let (answer, took) = call.await.unwrap();
        if answer.status == StatusCode::OK {
            admitted += 1;
            assert!(took >= Duration::from_millis(600));
        } else {
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(answer.headers["x-envoy-overloaded"], "true");
            assert!(took < Duration::from_millis(600), "refused at once, not queued: {took:?}");
            overflowed += 1;
        }
    }
    assert_eq!((admitted, overflowed), (2, 8), "one connection plus one pending request in flight");
    let metrics = proxy.metrics().await;
    let overflow =
        r#"weft_proxy_route_events_total{cluster="outbound|80||app.default.svc.cluster.local",event="overflow"}"#;
    assert_eq!(sample(&metrics, overflow), 8.0);
}

/// Three backends behind Service `app`, whose DestinationRule balances by `consistent_hash` (a YAML flow map).
async fn hashing_mesh(consistent_hash: &str) -> (Proxy, Operator, [Scripted; 3]) {
    let backends =
        [Scripted::start(Script::Echo).await, Scripted::start(Script::Echo).await, Scripted::start(Script::Echo).await];
    let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.address).collect();
    let rules = format!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: app, namespace: default}}\n\
         spec:\n  host: app\n  trafficPolicy:\n    loadBalancer: {{consistentHash: {consistent_hash}}}\n"
    );
    let (proxy, operator) = mesh_of(&addresses, &rules).await;
    (proxy, operator, backends)
}

/// 1000 requests of 100 users through a cluster hashing by `x-user` with `consistent_hash`'s table: each user
/// stays on one backend, and the users spread over all three.
async fn each_user_stays_on_one_backend(consistent_hash: &str) {
    let (proxy, _operator, _backends) = hashing_mesh(consistent_hash).await;
    let mut served_by = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for i in 0..1000 {
        let user = format!("user-{}", i % 100);
        let answer = send(proxy.outbound, Method::GET, "/", &[("x-user", &user)], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::OK, "request {i}: {}", answer.body);
        let backend = answer.headers["x-served-by"].to_str().unwrap().to_string();
        served_by.entry(user).or_default().insert(backend);
    }
    assert!(served_by.values().all(|b| b.len() == 1), "every user stays on one backend");
    let used: std::collections::BTreeSet<&String> = served_by.values().flatten().collect();
    assert_eq!(used.len(), 3, "the users spread over all three backends");
}

#[tokio::test]
async fn a_consistent_hash_keeps_each_user_on_one_backend() {
    each_user_stays_on_one_backend("{httpHeaderName: x-user}").await;
}

#[tokio::test]
async fn hashing_on_the_source_address_keeps_a_client_on_one_backend() {
    let (proxy, _operator, _backends) = hashing_mesh("{useSourceIp: true}").await;
    let mut served_by = std::collections::BTreeSet::new();
    // Every connection comes from 127.0.0.1, whatever its port: one client, one backend (retries included).
    for _ in 0..60 {
        let answer = get(proxy.outbound, "/").await;
        served_by.insert(answer.headers["x-served-by"].to_str().unwrap().to_string());
    }
    assert_eq!(served_by.len(), 1, "{served_by:?}");
}

#[tokio::test]
async fn a_maglev_table_keeps_each_user_on_one_backend() {
    each_user_stays_on_one_backend("{httpHeaderName: x-user, maglev: {tableSize: 251}}").await;
}

#[tokio::test]
async fn a_hash_cookie_the_client_lacks_is_set_and_keeps_it_on_one_backend() {
    let (proxy, _operator, _backends) = hashing_mesh("{httpCookie: {name: user, ttl: 600s, path: /}}").await;
    let served = |answer: &Answer| answer.headers["x-served-by"].to_str().unwrap().to_string();
    let mut first_backends = std::collections::BTreeSet::new();
    for client in 0..30 {
        let first = get(proxy.outbound, "/").await;
        let set_cookie = first.headers[http::header::SET_COOKIE].to_str().unwrap().to_string();
        assert!(set_cookie.ends_with("; Max-Age=600; Path=/; HttpOnly"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        first_backends.insert(served(&first));
        for _ in 0..5 {
            let again = send(proxy.outbound, Method::GET, "/", &[("cookie", &cookie)], Bytes::new()).await;
            assert_eq!(served(&again), served(&first), "client {client} ({cookie}) stays on its backend");
            assert!(!again.headers.contains_key(http::header::SET_COOKIE), "a client with the cookie keeps it");
        }
    }
    assert!(first_backends.len() > 1, "new clients spread over the backends: {first_backends:?}");
    // Envoy's generated value hashes the client's address: two cookie-less requests on one connection get one.
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut values = Vec::new();
    for _ in 0..2 {
        let request = Request::get("/").header(http::header::HOST, "app").body(Full::new(Bytes::new())).unwrap();
        let response = sender.send_request(request).await.unwrap();
        values.push(response.headers()[http::header::SET_COOKIE].clone());
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(values[0], values[1]);
}
