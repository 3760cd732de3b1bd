//! A small HTTP/1.1 keep-alive client for sending requests through a proxy with a chosen `Host`.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    target: SocketAddr,
}

impl HttpClient {
    /// A client sending every request to `target` (a proxy's outbound listener or a backend).
    pub fn new(target: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector), target }
    }

    /// GET `path` with `Host: host` and extra headers.
    pub async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let mut request = Request::get(format!("http://{}{path}", self.target)).header(http::header::HOST, host);
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
