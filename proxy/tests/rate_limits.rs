//! HTTPLocalRateLimitPolicy on a server sidecar, with real identities on loopback: a caller flooding the
//! workload is held to its per-identity limit (the rate admitted after the first second's burst within 5% of
//! the limit), answered `429` at once beyond it, while another caller's requests all get through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::mesh_tls::*;
use support::{get, sample};

const LIMIT: u32 = 100;

fn with_limit(listen: SocketAddr) -> String {
    format!(
        "{}---\napiVersion: security.weft.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\n\
         metadata: {{name: per-caller, namespace: default}}\n\
         spec: {{selector: {{matchLabels: {{app: slow}}}}, identity: {{requestsPerSecond: {LIMIT}}}}}\n",
        service_yaml(listen, "server")
    )
}

/// Requests from `connections` keep-alive connections to `to`, each paced to its share of `rate`, for
/// `seconds`: when each answer came (since the start) and its status.
async fn flood(to: SocketAddr, rate: u32, connections: u32, seconds: u64) -> Vec<(Duration, StatusCode)> {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let pace = Duration::from_secs(1) * connections / rate;
    let workers = (0..connections).map(|_| {
        tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(to).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let mut answers = Vec::new();
            let mut next = Instant::now();
            while Instant::now() < until {
                let request = Request::get("/").header("host", "slow").body(Empty::<Bytes>::new()).unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let _ = response.into_body().collect().await;
                answers.push((started.elapsed(), status));
                next += pace;
                tokio::time::sleep_until(next.into()).await;
            }
            answers
        })
    });
    let mut all = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        all.extend(worker.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_caller_is_held_to_its_limit_and_another_is_unaffected() {
    let pair = Pair::start(with_limit, Duration::from_secs(3600)).await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);
    let other = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(get(listen, "slow", "/", &[]).await.unwrap().0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    });
    let answers = flood(client.outbound, 1000, 10, 3).await;
    let admitted = |from: f64, to: f64| {
        let window = Duration::from_secs_f64(from)..Duration::from_secs_f64(to);
        answers.iter().filter(|(at, status)| window.contains(at) && *status == StatusCode::OK).count()
    };
    let limited = answers.iter().filter(|(_, status)| *status == StatusCode::TOO_MANY_REQUESTS).count();
    let offered = answers.len() as f64 / 3.0;
    println!(
        "offered {offered:.0} req/s; admitted after the first second: {} in 2 s; limited {limited}",
        admitted(1.0, 3.0)
    );
    assert!(offered > 2.0 * f64::from(LIMIT), "the flood must exceed the limit to test it: {offered:.0} req/s");
    let steady = admitted(1.0, 3.0) as f64 / 2.0;
    assert!((f64::from(LIMIT) * 0.95..=f64::from(LIMIT) * 1.05).contains(&steady), "admitted {steady} req/s");
    assert!(answers.iter().all(|(_, s)| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS));
    assert!(other.await.unwrap().iter().all(|s| *s == StatusCode::OK), "the caller without that identity");
    let counted = sample(
        &server.metrics().await,
        r#"weft_proxy_rate_limited_total{policy="default/per-caller",limit="identity"}"#,
    );
    assert_eq!(counted as usize, limited);
    let (status, body) = {
        let mut last = (StatusCode::OK, String::new());
        for _ in 0..(LIMIT * 2) {
            last = get(client.outbound, "slow", "/", &[]).await.unwrap();
            if last.0 == StatusCode::TOO_MANY_REQUESTS {
                break;
            }
        }
        last
    };
    assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "local_rate_limited\n"));
}
