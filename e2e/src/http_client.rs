//! A small keep-alive client for sending requests through a proxy with a chosen `Host`: HTTP/1.1, or HTTP/2 with
//! prior knowledge (one connection, requests as concurrent streams), plain or as unary gRPC calls.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    /// The echo backend's `x-echo-version`, if an echo backend answered.
    pub version: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// How a client's [`HttpClient::call`]s go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 GETs, one connection per concurrent request.
    Http1,
    /// HTTP/2 GETs (prior knowledge), all on one connection.
    Http2,
    /// Unary gRPC calls (an empty message to [`GRPC_PATH`]), all on one HTTP/2 connection.
    Grpc,
}

/// The method unary gRPC calls ask for; `weft-echo` answers it with an empty message and status 0.
pub const GRPC_PATH: &str = "/weft.bench.Echo/Call";

#[derive(Clone)]
pub struct HttpClient {
    client: Client<Dial, Empty<Bytes>>,
    /// For gRPC calls, which carry a body.
    grpc: Client<Dial, Full<Bytes>>,
    protocol: Protocol,
    target: SocketAddr,
}

impl HttpClient {
    /// An HTTP/1.1 client sending every request to `target` (a proxy's outbound listener or a backend).
    pub fn new(target: SocketAddr) -> Self {
        Self::speaking(Protocol::Http1, target)
    }

    /// A client whose [`HttpClient::call`]s go as `protocol` says.
    pub fn speaking(protocol: Protocol, target: SocketAddr) -> Self {
        Self::with_dial(protocol, Dial { target, namespace: None })
    }

    /// A client whose connections start inside network namespace `namespace` (a pod's), as its application's
    /// would: they are captured by the pod's iptables rules like the application's.
    pub fn from_namespace(protocol: Protocol, target: SocketAddr, namespace: &str) -> Self {
        Self::with_dial(protocol, Dial { target, namespace: Some(namespace.into()) })
    }

    fn with_dial(protocol: Protocol, connector: Dial) -> Self {
        let target = connector.target;
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(protocol != Protocol::Http1);
        Self { client: builder.build(connector.clone()), grpc: builder.build(connector), protocol, target }
    }

    /// One request as the client's protocol says: a GET of `/`, or a unary gRPC call. Success: a 2xx, and for
    /// gRPC also `grpc-status: 0`.
    pub async fn call(&self, host: &str, headers: &[(&str, &str)]) -> anyhow::Result<bool> {
        if self.protocol != Protocol::Grpc {
            return Ok(self.get(host, "/", headers).await?.is_success());
        }
        let mut request = Request::post(format!("http://{host}{GRPC_PATH}"))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // One uncompressed, empty message: the flag byte and a zero length.
        let response = self.grpc.request(request.body(Full::new(Bytes::from_static(&[0; 5])))?).await?;
        let status = response.status();
        let ended = response.into_body().collect().await?;
        let grpc_status = ended.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes().to_vec());
        Ok(status.is_success() && grpc_status.as_deref() == Some(b"0"))
    }

    /// GET `path` with `Host: host` and extra headers.
    pub async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        // HTTP/2 names the host in `:authority` (a `Host` header beside it would be a second, conflicting name).
        let mut request = match self.protocol {
            Protocol::Http1 => Request::get(format!("http://{}{path}", self.target)).header(http::header::HOST, host),
            Protocol::Http2 | Protocol::Grpc => Request::get(format!("http://{host}{path}")),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.client.request(request.body(Empty::new())?).await?;
        let status = response.status();
        let version = response.headers().get("x-echo-version").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, version, body: String::from_utf8_lossy(&body).into_owned() })
    }
}

/// Connects to the client's target whatever the URI names, from this process's network namespace or a pod's.
#[derive(Clone)]
pub struct Dial {
    target: SocketAddr,
    namespace: Option<std::sync::Arc<str>>,
}

/// How long connecting from inside a namespace may take (the host's own connects use the OS default).
const NAMESPACE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl tower::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (target, namespace) = (self.target, self.namespace.clone());
        Box::pin(async move {
            let stream = match namespace {
                None => TcpStream::connect(target).await?,
                Some(name) => crate::netns::connect_from(&name, target, NAMESPACE_CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))?,
            };
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}
