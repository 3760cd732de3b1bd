//! Golden metrics per workload pair: a client workload's sidecar and a server workload's sidecar (mutual TLS),
//! after a known mix of requests, each report them with both workloads' labels (learned from each other over
//! the `x-weft-peer` exchange), the Service, the response code and flags; the applications never see the
//! exchange, and an application cannot pass itself off as another workload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::mesh_tls::*;
use support::{Backend, Proxy, get, sample};
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

/// A GET through the client's sidecar with `headers`; the response's status line and headers, as raw text.
async fn raw_get(client: &Proxy, host: &str, headers: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(client.outbound).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
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
    let answer = raw_get(&client, "slow", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("x-weft-peer"),
        "the response reached the app with the exchange:\n{answer}"
    );
    let (status, _) = get(client.outbound, "nowhere", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let server_side = ["slow-v2", SERVER_ID, "slow", "v2"];
    let client_metrics = client.metrics().await;
    let outbound = series("source", server_side, "slow.default.svc.cluster.local", 200, "-", "unknown")
        .replace(&format!("destination_principal=\"{SERVER_ID}\""), "destination_principal=\"unknown\"");
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
}
