//! The ADS service as tonic's router sees it: requests decoded by tonic, responses framed here.
//!
//! tonic's own response encoder writes every message of a stream into one buffer, which grows to the largest
//! batch of messages the stream has sent and is kept for the stream's life. A proxy's first push
//! carries all of its config, so each connected proxy held that much for as long as it stayed connected: about
//! 130 KiB at 1000 Services, the largest single item of the operator's memory with 1000 proxies. Here each
//! message gets a buffer of its own size, freed once hyper has written it.

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::SERVICE_NAME;
use http::HeaderMap;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::server::NamedService;
use tonic_prost::ProstCodec;

use super::delta::DeltaStream;
use super::protocol::Protocol;
use super::server::{AdsServer, MAX_REQUEST_BYTES, Responses};
use super::sotw::AdsStream;

const STATE_OF_THE_WORLD: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const INCREMENTAL: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Length of gRPC's message prefix: a compression flag and a 32-bit big-endian length.
const PREFIX: usize = 5;

/// [`AdsServer`] behind tonic's router (`Server::add_service`).
#[derive(Clone)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub fn new(server: AdsServer) -> Self {
        Self { server }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

impl tower::Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = match method(&request) {
            Ok(Method::StateOfTheWorld) => self.stream::<AdsStream>(request),
            Ok(Method::Incremental) => self.stream::<DeltaStream>(request),
            Err(status) => {
                let mut refusal = status.into_http();
                // What gRPC's compression spec has a server say about the encodings it reads.
                refusal.headers_mut().insert("grpc-accept-encoding", http::HeaderValue::from_static("identity"));
                refusal
            }
        };
        std::future::ready(Ok(response))
    }
}

/// ADS's two methods.
#[derive(Debug, PartialEq)]
enum Method {
    StateOfTheWorld,
    Incremental,
}

/// The method a request calls, or why it cannot be served.
fn method<B>(request: &http::Request<B>) -> Result<Method, Status> {
    // None of Weft's or Envoy's ADS clients compress, and the operator does not decompress.
    let compressed = request.headers().get("grpc-encoding").is_some_and(|encoding| encoding != "identity");
    if compressed {
        return Err(Status::unimplemented("compressed requests are not supported: send grpc-encoding identity"));
    }
    match request.uri().path() {
        STATE_OF_THE_WORLD => Ok(Method::StateOfTheWorld),
        INCREMENTAL => Ok(Method::Incremental),
        path => Err(Status::unimplemented(format!("no method {}", weft_process::excerpt(path)))),
    }
}

impl AdsService {
    /// Starts serving a stream of protocol `P`: its requests decoded by tonic, its responses framed by [`frames`].
    fn stream<P: Protocol>(&self, request: http::Request<Body>) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        let mut codec = ProstCodec::<P::Response, P::Request>::default();
        let requests = Streaming::new_request(codec.decoder(), body, None, Some(MAX_REQUEST_BYTES));
        let responses = self.server.start::<P>(tonic::Request::from_http(http::Request::from_parts(parts, requests)));
        let mut response = http::Response::new(Body::new(StreamBody::new(frames(responses))));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        response
    }
}

/// The body of a stream: each response as one data frame, then trailers with the status the stream ended with
/// (OK unless the operator ended it).
fn frames<M: prost::Message + Send + 'static>(
    responses: Responses<M>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    futures_util::stream::unfold(Some(responses), |responses| async move {
        let mut responses = responses?;
        let status = match responses.messages.recv().await {
            Some(message) => match message_frame(&message) {
                Some(data) => return Some((Ok(Frame::data(data)), Some(responses))),
                None => Status::resource_exhausted("a response does not fit in a gRPC message (4 GiB)"),
            },
            None => responses.end.get().cloned().unwrap_or_else(|| Status::ok("")),
        };
        let frame = Frame::trailers(trailers(&status));
        Some((Ok(frame), None))
    })
}

/// One message with gRPC's prefix (uncompressed), in a buffer of exactly its size; `None` past gRPC's 4 GiB.
fn message_frame<M: prost::Message>(message: &M) -> Option<Bytes> {
    let length = message.encoded_len();
    let prefix_length = u32::try_from(length).ok()?;
    let mut buffer = BytesMut::with_capacity(PREFIX + length);
    buffer.put_u8(0);
    buffer.put_u32(prefix_length);
    message.encode_raw(&mut buffer);
    Some(buffer.freeze())
}

/// A status as gRPC trailers (`grpc-status`, `grpc-message`).
fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert("grpc-status", http::HeaderValue::from(tonic::Code::Internal as i32));
    }
    headers
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
    use envoy_types::pb::google::protobuf::Any;
    use std::sync::{Arc, OnceLock};

    use futures_util::StreamExt;
    use prost::Message;
    use tokio::sync::mpsc;

    use super::*;

    fn response(nonce: &str) -> DeltaDiscoveryResponse {
        let resource = Resource {
            name: "outbound|80||api.prod.svc.cluster.local".into(),
            version: "7".into(),
            resource: Some(Any {
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                value: vec![1; 300],
            }),
            ..Default::default()
        };
        DeltaDiscoveryResponse { nonce: nonce.into(), resources: vec![resource], ..Default::default() }
    }

    /// The frames of a stream whose task sent `sent` and then ended, with `end` when the operator ended it.
    async fn frames_of(sent: Vec<DeltaDiscoveryResponse>, end: Option<Status>) -> Vec<Frame<Bytes>> {
        let (tx, rx) = mpsc::channel(sent.len().max(1));
        for item in sent {
            tx.send(item).await.unwrap();
        }
        let ended = Arc::new(OnceLock::new());
        if let Some(status) = end {
            ended.set(status).unwrap();
        }
        drop(tx);
        frames(Responses { messages: rx, end: ended }).map(|frame| frame.unwrap()).collect().await
    }

    /// The message of a data frame, checking gRPC's prefix.
    fn message_of(frame: &Frame<Bytes>) -> DeltaDiscoveryResponse {
        let data = frame.data_ref().expect("a data frame");
        assert_eq!(data[0], 0, "not compressed");
        let length = u32::from_be_bytes(data[1..PREFIX].try_into().unwrap()) as usize;
        assert_eq!(length, data.len() - PREFIX, "the prefix gives the message's length");
        DeltaDiscoveryResponse::decode(&data[PREFIX..]).unwrap()
    }

    fn grpc_status(frame: &Frame<Bytes>) -> (String, Option<String>) {
        let trailers = frame.trailers_ref().expect("trailers");
        let text = |name: &str| trailers.get(name).map(|value| value.to_str().unwrap().to_string());
        (text("grpc-status").expect("grpc-status"), text("grpc-message"))
    }

    #[tokio::test]
    async fn each_response_is_a_grpc_message_and_the_stream_ends_ok() {
        let frames = frames_of(vec![response("1"), response("2")], None).await;
        assert_eq!(frames.len(), 3);
        assert_eq!(message_of(&frames[0]), response("1"));
        assert_eq!(message_of(&frames[1]), response("2"));
        assert_eq!(grpc_status(&frames[2]), ("0".to_string(), None));
    }

    #[tokio::test]
    async fn a_stream_the_operator_ends_ends_with_its_status_after_the_responses_waiting() {
        let unavailable = Status::unavailable("the operator is shutting down");
        // The outbox was full when the stream ended: the status still comes, after what was waiting.
        let frames = frames_of(vec![response("1"), response("2")], Some(unavailable)).await;
        assert_eq!(frames.len(), 3);
        assert_eq!(message_of(&frames[1]), response("2"));
        let (code, message) = grpc_status(&frames[2]);
        assert_eq!(code, (tonic::Code::Unavailable as i32).to_string());
        assert_eq!(message.as_deref(), Some("the%20operator%20is%20shutting%20down"));
    }

    fn request(path: &str, encoding: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::builder().uri(format!("http://operator{path}"));
        if let Some(encoding) = encoding {
            request = request.header("grpc-encoding", encoding);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn both_ads_methods_are_served_and_nothing_else() {
        assert_eq!(method(&request(STATE_OF_THE_WORLD, None)).unwrap(), Method::StateOfTheWorld);
        assert_eq!(method(&request(INCREMENTAL, Some("identity"))).unwrap(), Method::Incremental);
        let other = method(&request("/envoy.service.discovery.v3.AggregatedDiscoveryService/Other", None));
        assert_eq!(other.unwrap_err().code(), tonic::Code::Unimplemented);
        let compressed = method(&request(INCREMENTAL, Some("gzip"))).unwrap_err();
        assert_eq!(compressed.code(), tonic::Code::Unimplemented);
        assert!(compressed.message().contains("compressed"), "{}", compressed.message());
    }
}
