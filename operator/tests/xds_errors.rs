//! The ADS server facing bad clients, through the real `weft-operator` binary: malformed and over-size requests get
//! a proper gRPC status with a short message, client text is not echoed at length, a repeated NACK is one warning
//! (and counted every time), and a line break in a NACK cannot forge a log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use support::operator_process::Operator;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_xds::ResourceType;

const ADS_PATH: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const NODE_ID: &str = "sidecar~~client.default~default.svc.cluster.local";

const SERVICE: &[u8] =
    b"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {ports: [{port: 80}]}\n";

/// A gRPC length-prefixed message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// An ADS stream over plain HTTP/2: what the client sends is exactly the bytes given, as a client could.
struct RawStream {
    requests: mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>,
    response: hyper::body::Incoming,
    headers: http::HeaderMap,
    buffer: Vec<u8>,
}

impl RawStream {
    async fn open(address: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let (requests, rx) = mpsc::channel(16);
        let request = http::Request::post(format!("http://{address}{ADS_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(StreamBody::new(ReceiverStream::new(rx)))
            .unwrap();
        // tonic answers the headers of a streaming call at once, before any message.
        let response =
            tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await.unwrap().unwrap();
        let (parts, response) = response.into_parts();
        Self { requests, response, headers: parts.headers, buffer: Vec::new() }
    }

    async fn send(&self, bytes: Bytes) {
        self.requests.send(Ok(Frame::data(bytes))).await.unwrap();
    }

    async fn send_request(&self, request: &DiscoveryRequest) {
        self.send(frame(&request.encode_to_vec())).await;
    }

    /// The next response message, or the stream's final gRPC status (code, message) when it ends.
    async fn next(&mut self) -> Result<Vec<u8>, (String, String)> {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                if self.buffer.len() >= 5 + len {
                    let message = self.buffer[5..5 + len].to_vec();
                    self.buffer.drain(..5 + len);
                    return Ok(message);
                }
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.response.frame())
                .await
                .expect("no response within 10 s");
            match frame {
                Some(Ok(frame)) if frame.is_data() => self.buffer.extend_from_slice(&frame.into_data().unwrap()),
                Some(Ok(frame)) => return Err(status_of(frame.trailers_ref().unwrap())),
                Some(Err(err)) => panic!("stream broke: {err}"),
                None => return Err(status_of(&self.headers)),
            }
        }
    }
}

fn status_of(headers: &http::HeaderMap) -> (String, String) {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (get("grpc-status"), percent_decoded(&get("grpc-message")))
}

/// grpc-message is percent-encoded on the wire.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn subscribe(kind: ResourceType, nonce: &str, error: Option<&str>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node { id: NODE_ID.into(), ..Default::default() }),
        type_url: kind.type_url().into(),
        response_nonce: nonce.into(),
        error_detail: error.map(|message| Status { code: 3, message: message.into(), details: vec![] }),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_undecodable_request_ends_the_stream_with_invalid_argument() {
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    let mut stream = RawStream::open(operator.xds).await;
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
    let mut stream = RawStream::open(operator.xds).await;
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
    let mut stream = RawStream::open(operator.xds).await;
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
    let mut stream = RawStream::open(operator.xds).await;
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
