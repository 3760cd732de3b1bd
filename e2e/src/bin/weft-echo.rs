//! `weft-echo`: the test backend of demos, tests and benchmarks. Answers every request (HTTP/1.1 or HTTP/2 with
//! prior knowledge) with its name and version, and can be told to be slow or to fail:
//!
//! - per process: `--delay-ms N`, `--fail-rate 0.1` (share of requests answered 503);
//! - per request: header `x-echo-delay-ms: N`, header `x-echo-status: 503`.
//!
//! The response carries `x-echo-name` and `x-echo-version` headers and a one-line JSON body; a gRPC request
//! (`content-type: application/grpc`) gets a gRPC answer instead: one empty message and `grpc-status: 0`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[derive(Debug, Parser)]
#[command(name = "weft-echo")]
struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Service name to report.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Version to report (e.g. v1, v2).
    #[arg(long, default_value = "v1")]
    version: String,
    /// Delay every response by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Share of requests (0.0-1.0) answered with 503.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!((0.0..=1.0).contains(&args.fail_rate), "--fail-rate must be between 0 and 1");
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let args = args.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let args = args.clone();
                async move { Ok::<_, Infallible>(answer(&args, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(args: &Args, request: Request<Incoming>) -> Response<Body> {
    let header_number =
        |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let delay = header_number("x-echo-delay-ms").unwrap_or(args.delay_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let forced =
        header_number("x-echo-status").and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let status = forced.unwrap_or(if args.fail_rate > 0.0 && rand::random::<f64>() < args.fail_rate {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    });
    let grpc = request.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc && status == StatusCode::OK {
        return grpc_answer(args);
    }
    let body = serde_json::json!({
        "name": args.name,
        "version": args.version,
        "path": request.uri().path(),
        "host": request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).or(request.uri().host()),
        "protocol": format!("{:?}", request.version()),
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))).boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    name_headers(args, headers);
    response
}

/// A unary gRPC call's answer: one empty message, then `grpc-status: 0` in the trailers.
fn grpc_answer(args: &Args) -> Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [Frame::data(Bytes::from_static(&[0; 5])), Frame::trailers(trailers)];
    let body = StreamBody::new(futures_util::stream::iter(frames.map(Ok::<_, Infallible>)));
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert("content-type", http::HeaderValue::from_static("application/grpc"));
    name_headers(args, headers);
    response
}

fn name_headers(args: &Args, headers: &mut http::HeaderMap) {
    if let Ok(v) = args.name.parse() {
        headers.insert("x-echo-name", v);
    }
    if let Ok(v) = args.version.parse() {
        headers.insert("x-echo-version", v);
    }
}
