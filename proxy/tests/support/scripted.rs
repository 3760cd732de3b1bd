//! A backend whose answers the test scripts, for the route policy tests: it counts the requests it received,
//! fails when told to (always, or every other request), waits when told to, and echoes what it saw (path, host,
//! headers, body length) so tests can check what the proxy sent, and says who it is (`x-served-by`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// How the backend answers every request.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// 200, echoing what it saw.
    Echo,
    /// This status always.
    Fail(u16),
    /// 503 for the 1st, 3rd, 5th... request; 200 otherwise.
    FailOdd,
    /// 200 after this long.
    Slow(Duration),
}

pub struct Scripted {
    pub address: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl Scripted {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        answer(script, number, address, request)
                    });
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { address, received }
    }

    /// Requests received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

async fn answer(
    script: Script,
    number: usize,
    me: SocketAddr,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let length = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let status = match script {
        Script::Fail(code) => StatusCode::from_u16(code).unwrap(),
        Script::FailOdd if number % 2 == 1 => StatusCode::SERVICE_UNAVAILABLE,
        Script::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    };
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    let mut lines = vec![
        format!("path={}", parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        format!("host={}", host.unwrap_or_default()),
        format!("body={length}"),
    ];
    for (name, value) in &parts.headers {
        lines.push(format!("{name}={}", value.to_str().unwrap_or("?")));
    }
    let mut response = Response::new(Full::new(Bytes::from(lines.join("\n") + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert("x-backend-says", "hello".parse().unwrap());
    response.headers_mut().insert("x-served-by", me.to_string().parse().unwrap());
    Ok(response)
}
