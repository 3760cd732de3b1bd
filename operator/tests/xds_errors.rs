//! The ADS server facing bad clients, through the real `weft-operator` binary: malformed and over-size requests get
//! a proper gRPC status with a short message, client text is not echoed at length, a repeated NACK is one warning
//! (and counted every time), and a line break in a NACK cannot forge a log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Message;
use support::ads_client::{RawStream, frame, subscribe};
use support::operator_process::Operator;
use weft_xds::ResourceType;

const SERVICE: &[u8] =
    b"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {ports: [{port: 80}]}\n";

/// A gRPC length-prefixed message.
#[tokio::test]
async fn an_undecodable_request_ends_the_stream_with_invalid_argument() {
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    let mut stream = RawStream::open(operator.xds.unwrap()).await;
    // Field 1 with wire type 7 does not exist: not a protobuf message.
    stream.send(frame(&[0x0f, 0xff, 0xff, 0xff])).await;
    let (code, message) = stream.next().await.unwrap_err();
    assert_eq!(code, "3", "INVALID_ARGUMENT; message {message:?}");
    assert!(message.contains("malformed DiscoveryRequest"), "{message}");
    operator.wait_for_log("ending ADS stream").await;
}

#[tokio::test]
async fn an_over_size_request_ends_the_stream_with_resource_exhausted() {
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    let mut stream = RawStream::open(operator.xds.unwrap()).await;
    // Only the length prefix of a 5 MiB message: the limit is checked before the body is read.
    let mut header = vec![0u8];
    header.extend_from_slice(&(5u32 * 1024 * 1024).to_be_bytes());
    stream.send(header.into()).await;
    let (code, message) = stream.next().await.unwrap_err();
    assert_eq!(code, "8", "RESOURCE_EXHAUSTED; message {message:?}");
    assert!(message.contains("4 MiB"), "{message}");
}

#[tokio::test]
async fn a_huge_node_id_is_refused_without_being_echoed() {
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    let mut stream = RawStream::open(operator.xds.unwrap()).await;
    let mut request = subscribe(ResourceType::Cluster, "", None);
    request.node = Some(Node { id: "x".repeat(1024 * 1024), ..Default::default() });
    stream.send_request(&request).await;
    let (code, message) = stream.next().await.unwrap_err();
    assert_eq!(code, "3");
    assert!(message.len() < 512, "a {} byte status message", message.len());
    assert!(operator.log().lines().all(|l| l.len() < 2048), "a log line echoes the node id");
}

#[tokio::test]
async fn a_repeated_nack_is_one_warning_and_every_one_is_counted() {
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    let mut stream = RawStream::open(operator.xds.unwrap()).await;
    stream.send_request(&subscribe(ResourceType::Cluster, "", None)).await;
    let response =
        envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse::decode(&stream.next().await.unwrap()[..])
            .unwrap();
    let forged = "bad cluster\n2026-12-03T00:00:00.000000Z  INFO weft_operator: all proxies healthy";
    const NACKS: usize = 10_000;
    for _ in 0..NACKS {
        stream.send_request(&subscribe(ResourceType::Cluster, &response.nonce, Some(forged))).await;
    }
    let until = Instant::now() + Duration::from_secs(30);
    let counted = format!("weft_operator_xds_nacks_total{{type=\"CDS\"}} {NACKS}");
    while !operator.metrics().await.contains(&counted) {
        assert!(Instant::now() < until, "NACKs not counted:\n{}", operator.metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = operator.log();
    let warnings = log.lines().filter(|l| l.contains("proxy rejected config (NACK)")).count();
    assert_eq!(warnings, 1, "{NACKS} identical NACKs logged {warnings} times");
    assert!(!log.lines().any(|l| l.contains("all proxies healthy") && !l.contains("NACK")), "a forged line:\n{log}");
}
