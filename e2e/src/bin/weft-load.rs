//! `weft-load`: the e2e client application. Sends GET requests in concurrent keep-alive loops and prints one JSON
//! line per request (`{"start_us":..,"end_us":..,"status":200,"version":"v1"}`, times since start), so a harness
//! can watch a split move from outside the pod or network namespace it runs in. Stops after `--duration-ms`, on
//! SIGTERM, or (`--until-stdin-closes`) when its stdin closes, so a `kubectl exec -i` session ends it cleanly.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;

#[derive(Debug, Parser)]
#[command(name = "weft-load")]
struct Args {
    /// Where to send requests, e.g. http://reviews.shop:9080/ (DNS) or http://10.96.0.10:9080/.
    #[arg(long)]
    url: http::Uri,
    /// `Host` header to send instead of the URL's authority.
    #[arg(long)]
    host: Option<String>,
    /// Extra header, `name: value`; may be repeated.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Concurrent request loops (keep-alive connections).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Stop after this long; 0 runs until SIGTERM (or stdin closes, with `--until-stdin-closes`).
    #[arg(long, default_value_t = 0)]
    duration_ms: u64,
    /// Also stop when stdin closes: a harness driving it through `kubectl exec -i` ends it by closing the pipe.
    #[arg(long)]
    until_stdin_closes: bool,
    /// Send one request and print its body instead (e.g. the sidecar's `/config_dump` or `/metrics`, from inside
    /// the pod); exits 1 unless the status is 2xx.
    #[arg(long)]
    print_body: bool,
    /// Pause between requests of one loop.
    #[arg(long, default_value_t = 0)]
    pace_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| h.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("--header must be `name: value`"))?;
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    if args.print_body {
        return print_body(&client, &args.url).await;
    }
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for _ in 0..args.concurrency.max(1) {
        let (client, tx, url, host, headers) =
            (client.clone(), tx.clone(), args.url.clone(), args.host.clone(), headers.clone());
        let pace = Duration::from_millis(args.pace_ms);
        tokio::spawn(async move {
            loop {
                let line = one(&client, &url, host.as_deref(), &headers, start).await;
                if tx.send(line).is_err() {
                    return;
                }
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        });
    }
    drop(tx);
    let stop = stop_signal(args.duration_ms, args.until_stdin_closes);
    let mut stop = std::pin::pin!(stop);
    let mut out = std::io::stdout().lock();
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            _ = &mut stop => return Ok(()),
        }
    }
}

async fn print_body(client: &Client<HttpConnector, Empty<Bytes>>, url: &http::Uri) -> anyhow::Result<()> {
    let response = client.request(Request::get(url.clone()).body(Empty::new())?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    std::io::stdout().write_all(&body)?;
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    Ok(())
}

async fn one(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &http::Uri,
    host: Option<&str>,
    headers: &[(String, String)],
    start: Instant,
) -> String {
    let started = start.elapsed().as_micros();
    let mut request = Request::get(url.clone());
    if let Some(host) = host {
        request = request.header(http::header::HOST, host);
    }
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let result = match request.body(Empty::new()) {
        Ok(request) => client.request(request).await.map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let line = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let version = response.headers().get("x-echo-version").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string());
            match body {
                Ok(_) => serde_json::json!({"status": status, "version": version}),
                Err(err) => serde_json::json!({"status": status, "error": err}),
            }
        }
        Err(err) => serde_json::json!({"error": err}),
    };
    let mut line = line;
    line["start_us"] = u64::try_from(started).unwrap_or(u64::MAX).into();
    line["end_us"] = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX).into();
    line.to_string()
}

/// Completes after `duration_ms` (if not 0), when stdin closes (if asked), or on SIGTERM.
async fn stop_signal(duration_ms: u64, until_stdin_closes: bool) {
    let timer = async {
        if duration_ms > 0 {
            tokio::time::sleep(Duration::from_millis(duration_ms)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = stdin_closed, if until_stdin_closes => {}
        _ = terminated => {}
    }
}
