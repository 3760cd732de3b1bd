//! Golden metrics per workload pair: a client workload's sidecar and a server workload's sidecar (mutual TLS),
//! after a known mix of requests, each report them with both workloads' labels (learned from each other over
//! the `x-weft-peer` exchange), the Service, the response code and flags; the applications never see the
//! exchange, and an application cannot pass itself off as another workload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::mesh_tls::*;
use support::{Backend, Proxy, eventually, get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/server";

/// The labels of `weft_requests_total`, in the order the proxy writes them.
fn series(reporter: &str, destination: [&str; 4], service: &str, code: u16, flags: &str, security: &str) -> String {
    let [dest_workload, dest_principal, dest_app, dest_version] = destination;
    let (name, namespace) =
        service.split_once('.').map_or(("unknown", "unknown"), |(n, rest)| (n, rest.split('.').next().unwrap_or("")));
    format!(
        "weft_requests_total{{reporter=\"{reporter}\",source_workload=\"shop-web\",source_workload_namespace=\"default\",\
         source_principal=\"{CLIENT_ID}\",source_app=\"shop\",source_version=\"v1\",destination_workload=\"{dest_workload}\",\
         destination_workload_namespace=\"{}\",destination_principal=\"{dest_principal}\",destination_app=\"{dest_app}\",\
         destination_version=\"{dest_version}\",destination_service=\"{service}\",destination_service_name=\"{name}\",\
         destination_service_namespace=\"{namespace}\",request_protocol=\"http\",response_code=\"{code}\",\
         response_flags=\"{flags}\",connection_security_policy=\"{security}\"}}",
        if dest_workload == "unknown" { "unknown" } else { "default" }
    )
}

/// A POST of `body` through the client's sidecar; the response's status line and headers, as raw text.
async fn raw_post(client: &Proxy, host: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(client.outbound).await.unwrap();
    let length = body.len();
    let request =
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn both_sidecars_count_requests_by_workload_pair_service_and_code() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    let mesh = Mesh::start_with(&service_yaml(listen, "server"), Duration::from_secs(3600)).await;
    let with = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let server_args = with(
        mesh.identity_args("server"),
        &[
            "--inbound",
            &format!("{listen}={}", backend.address),
            "--pod-labels",
            "app=slow,version=v2",
            "--workload",
            "slow-v2",
        ],
    );
    let server = Proxy::start_as("slow-1", mesh.xds, &server_args.iter().map(String::as_str).collect::<Vec<_>>());
    let client_args = with(
        mesh.identity_args("client"),
        &[
            "--xds-address",
            &format!("https://127.0.0.1:{}", mesh.secure.port()),
            "--pod-labels",
            "app=shop,version=v1",
            "--workload",
            "shop-web",
        ],
    );
    let client = Proxy::start(mesh.xds, &client_args.iter().map(String::as_str).collect::<Vec<_>>());
    server.wait_ready(StatusCode::OK).await;
    client.wait_ready(StatusCode::OK).await;

    for _ in 0..3 {
        let (status, _) = get(client.outbound, "slow", "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK, "client log:\n{}", client.output());
    }
    // The application never sees the exchange, either way; one that sends the header itself is not believed.
    let (_, seen_by_app) = get(
        client.outbound,
        "slow",
        "/",
        &[("x-echo-header", "x-weft-peer"), ("x-weft-peer", "workload=forged,namespace=default,app=x,version=y")],
    )
    .await
    .unwrap();
    assert_eq!(seen_by_app, "(none)");
    let answer = raw_post(&client, "slow", "hello world").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("x-weft-peer"),
        "the response reached the app with the exchange:\n{answer}"
    );
    let (status, _) = get(client.outbound, "nowhere", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let server_side = ["slow-v2", SERVER_ID, "slow", "v2"];
    let client_metrics = client.metrics().await;
    // The client's sidecar knows the server's identity from the mutual TLS handshake (as Envoy reports it).
    let outbound = series("source", server_side, "slow.default.svc.cluster.local", 200, "-", "unknown");
    assert_eq!(sample(&client_metrics, &outbound), 5.0, "{outbound}\n{client_metrics}");
    let unknown = ["unknown", "unknown", "unknown", "unknown"];
    let no_route = series("source", unknown, "unknown", 404, "NR", "unknown");
    assert_eq!(sample(&client_metrics, &no_route), 1.0, "{no_route}\n{client_metrics}");
    assert!(!client_metrics.contains("forged"));

    let server_metrics = server.metrics().await;
    let inbound = series("destination", server_side, "slow.default.svc.cluster.local", 200, "-", "mutual_tls");
    assert_eq!(sample(&server_metrics, &inbound), 5.0, "{inbound}\n{server_metrics}");
    let durations = inbound.replace("weft_requests_total{", "weft_request_duration_milliseconds_count{");
    assert_eq!(sample(&server_metrics, &durations), 5.0, "{durations}");

    // Body sizes, once each request is over: 11 bytes posted; the backend answered 13 bytes four times and
    // echoed "(none)" once.
    for (proxy, series) in [(&client, &outbound), (&server, &inbound)] {
        let size = |metric: &str| series.replace("weft_requests_total{", &format!("{metric}{{"));
        let (requests, responses) = (size("weft_request_bytes_sum"), size("weft_response_bytes_sum"));
        eventually("every request's sizes are observed", || async {
            sample(&proxy.metrics().await, &size("weft_response_bytes_count")) == 5.0
        })
        .await;
        let metrics = proxy.metrics().await;
        assert_eq!((sample(&metrics, &requests), sample(&metrics, &responses)), (11.0, 58.0), "{metrics}");
    }

    check_dashboard(&format!("{client_metrics}{server_metrics}"));
}

/// The Grafana dashboard the chart ships, as Grafana reads it: its panels laid out on the 24-column grid
/// without overlap, every query on the dashboard's data source variable, and every PromQL expression valid and
/// about metrics and labels the sidecars really export (`scraped`: their /metrics text).
fn check_dashboard(scraped: &str) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weft/files/dashboards/weft-services.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for field in ["uid", "title"] {
        assert!(dashboard[field].as_str().is_some_and(|s| !s.is_empty()), "dashboard.{field}");
    }
    assert!(dashboard["schemaVersion"].is_u64(), "schemaVersion");
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
    let mut cells = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique");
        assert!(panel["type"].as_str().is_some() && panel["title"].as_str().is_some());
        let grid = |k: &str| panel["gridPos"][k].as_u64().unwrap();
        assert!(grid("x") + grid("w") <= 24 && grid("h") > 0, "{}", panel["title"]);
        for x in grid("x")..grid("x") + grid("w") {
            for y in grid("y")..grid("y") + grid("h") {
                assert!(cells.insert((x, y)), "panel {} overlaps another", panel["title"]);
            }
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}");
        for target in panel["targets"].as_array().unwrap() {
            assert!(target["refId"].as_str().is_some());
            expressions.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else { continue };
        // label_values(SELECTOR, LABEL): the selector must select series with that label.
        let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        expressions.push(format!("count by ({}) ({selector})", label.trim()));
    }
    assert!(!expressions.is_empty());
    for expression in expressions {
        let concrete =
            expression.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$service", ".*");
        let parsed = promql_parser::parser::parse(&concrete).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let mut used = Vec::new();
        selectors(&parsed, &mut Vec::new(), &mut used);
        assert!(!used.is_empty(), "{expression} selects no metric");
        for (metric, labels) in used {
            let series: Vec<&str> = scraped.lines().filter(|l| l.starts_with(&format!("{metric}{{"))).collect();
            assert!(!series.is_empty(), "{expression}: no metric {metric} is exported");
            for label in labels.iter().filter(|l| *l != "__name__") {
                assert!(
                    series.iter().any(|s| s.contains(&format!("{label}=\""))),
                    "{expression}: {metric} has no label {label}"
                );
            }
        }
    }
}

/// Every metric an expression selects, with the labels the expression matches or groups it by.
fn selectors(expr: &promql_parser::parser::Expr, grouping: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    use promql_parser::parser::{Expr, LabelModifier};
    match expr {
        Expr::Aggregate(aggregate) => {
            let mut inner = grouping.clone();
            if let Some(LabelModifier::Include(labels) | LabelModifier::Exclude(labels)) = &aggregate.modifier {
                inner.extend(labels.labels.iter().cloned());
            }
            selectors(&aggregate.expr, &mut inner, out);
        }
        Expr::Binary(binary) => {
            selectors(&binary.lhs, grouping, out);
            selectors(&binary.rhs, grouping, out);
        }
        Expr::Paren(paren) => selectors(&paren.expr, grouping, out),
        Expr::Unary(unary) => selectors(&unary.expr, grouping, out),
        Expr::Subquery(subquery) => selectors(&subquery.expr, grouping, out),
        Expr::Call(call) => call.args.args.iter().for_each(|arg| selectors(arg, grouping, out)),
        Expr::MatrixSelector(matrix) => vector(&matrix.vs, grouping, out),
        Expr::VectorSelector(vs) => vector(vs, grouping, out),
        _ => {}
    }
}

fn vector(vs: &promql_parser::parser::VectorSelector, grouping: &[String], out: &mut Vec<(String, Vec<String>)>) {
    let mut labels: Vec<String> = vs.matchers.matchers.iter().map(|m| m.name.clone()).collect();
    labels.extend(grouping.iter().cloned());
    out.push((vs.name.clone().unwrap_or_default(), labels));
}
