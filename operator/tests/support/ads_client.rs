//! A raw ADS client over HTTP/2: it sends exactly the bytes a test gives it, as a misbehaving client could, and can
//! refuse to read anything (a zero flow-control window).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_xds::ResourceType;

const ADS_PATH: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const NODE_ID: &str = "sidecar~~client.default~default.svc.cluster.local";

pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// An ADS stream over plain HTTP/2: what the client sends is exactly the bytes given, as a client could.
pub struct RawStream {
    requests: mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>,
    response: hyper::body::Incoming,
    headers: http::HeaderMap,
    buffer: Vec<u8>,
}

impl RawStream {
    pub async fn open(address: SocketAddr) -> Self {
        Self::open_with_window(address, 65_535).await
    }

    /// A client that never reads: not even the end of its stream can reach it.
    pub async fn open_stuck(address: SocketAddr) -> Self {
        Self::open_with_window(address, 0).await
    }

    async fn open_with_window(address: SocketAddr, window: u32) -> Self {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(window)
            .handshake(TokioIo::new(stream))
            .await
            .unwrap();
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

    pub async fn send(&self, bytes: Bytes) {
        self.requests.send(Ok(Frame::data(bytes))).await.unwrap();
    }

    pub async fn send_request(&self, request: &DiscoveryRequest) {
        self.send(frame(&request.encode_to_vec())).await;
    }

    /// The next response message, or the stream's final gRPC status (code, message) when it ends.
    pub async fn next(&mut self) -> Result<Vec<u8>, (String, String)> {
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

pub fn subscribe(kind: ResourceType, nonce: &str, error: Option<&str>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node { id: NODE_ID.into(), ..Default::default() }),
        type_url: kind.type_url().into(),
        response_nonce: nonce.into(),
        error_detail: error.map(|message| Status { code: 3, message: message.into(), details: vec![] }),
        ..Default::default()
    }
}
