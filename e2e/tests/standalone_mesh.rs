//! The walking skeleton end to end, with real processes on loopback: YAML -> operator -> xDS -> proxy -> echo
//! backends. Scenarios run one at a time (they measure timing; sharing two cores would blur it).

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use weft_e2e::load::{LoadLoop, one, tally};
use weft_e2e::mesh::{HOST, LocalMesh, VERSIONS, virtual_service_yaml};
use weft_e2e::stats::binomial_band;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_rule_splits_traffic_within_a_5_sigma_band() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mesh = LocalMesh::start([90, 10]).await?;
    let load = LoadLoop::start(mesh.client(), HOST, 4, None);
    let client = mesh.client();
    // Count exactly 2000 requests from a separate sequence so the sample size is fixed.
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        samples.push(one(&client, HOST).await);
    }
    let background = load.stop().await;
    let (counts, failures) = tally(&samples, &VERSIONS);
    let (low, high) = binomial_band(2000, 0.10, 5.0);
    println!(
        "90/10 over 2000 requests: v1={} v2={} failed={failures} (v2 band {low:.0}..{high:.0})",
        counts[0], counts[1]
    );
    assert_eq!(failures + tally(&background, &VERSIONS).1, 0, "{}", mesh.diagnostics());
    assert!((low..=high).contains(&(counts[1] as f64)), "v2 got {} of 2000", counts[1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_edit_moves_all_traffic_within_a_second_without_failures() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mesh = LocalMesh::start([90, 10]).await?;
    let load = LoadLoop::start(mesh.client(), HOST, 4, None);
    tokio::time::sleep(Duration::from_millis(300)).await; // load before the edit, to observe the shift
    let edited = mesh.set_weights([0, 100])?;
    // Run until well past the 1 s bound, so a slow shift would be seen.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let samples = load.stop().await;
    let failed: Vec<_> = samples.iter().filter(|s| !s.ok).collect();
    let last_v1 =
        samples.iter().filter(|s| s.started >= edited && s.version.as_deref() == Some("v1")).map(|s| s.started).max();
    let shift = last_v1.map_or(Duration::ZERO, |t| t - edited);
    let after = samples.iter().filter(|s| s.started >= edited).count();
    println!(
        "edit 90/10 -> 0/100: all traffic on v2 {:.0} ms after the file changed ({} requests during the shift, {} failed)",
        shift.as_secs_f64() * 1000.0,
        after,
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {:?}\n{}", &failed[..failed.len().min(5)], mesh.diagnostics());
    assert!(
        shift < Duration::from_secs(1),
        "traffic still reached v1 {shift:?} after the edit\n{}",
        mesh.diagnostics()
    );
    assert!(samples.iter().any(|s| s.started >= edited + shift && s.version.as_deref() == Some("v2")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_keeps_working_while_the_operator_is_gone_and_resumes_when_it_returns() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut mesh = LocalMesh::start([0, 100]).await?;
    let load = LoadLoop::start(mesh.client(), HOST, 2, None);
    mesh.kill_operator();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let while_gone = load.stop().await;
    let (counts, failures) = tally(&while_gone, &VERSIONS);
    println!("operator killed: {} requests, v2={}, failed={failures}", while_gone.len(), counts[1]);
    assert!(while_gone.len() > 50, "too few requests to judge");
    assert_eq!(failures, 0, "{}", mesh.diagnostics());
    assert_eq!(counts[1], while_gone.len(), "the last config (all to v2) must stay in force");

    // The operator comes back; the proxy reconnects and follows new edits again.
    mesh.set_weights([100, 0])?;
    mesh.restart_operator().await?;
    let client = mesh.client();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if one(&client, HOST).await.version.as_deref() == Some("v1") {
            break;
        }
        assert!(Instant::now() < until, "proxy did not follow the restarted operator\n{}", mesh.diagnostics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_keeps_the_previous_routes_and_names_the_field() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mesh = LocalMesh::start([0, 100]).await?;
    let broken = virtual_service_yaml([100, 0]).replace("weight: 100", "weight: lots");
    mesh.write_config("reviews-vs.yaml", &broken)?;
    let line = mesh.operator().wait_for_output("reviews-vs.yaml", Duration::from_secs(5)).await?;
    println!("operator reported: {line}");
    let rules: serde_json::Value = serde_saphyr::from_str(&virtual_service_yaml([100, 0]))?;
    let canary = rules["spec"]["http"].as_array().and_then(|r| r.iter().position(|r| r["name"] == "canary"));
    let field = format!("spec.http[{}].route[0].weight", canary.unwrap_or_default());
    assert!(line.contains(&field), "error should name the field {field}: {line}");
    assert!(line.contains("document 1"), "error should name the document: {line}");
    let client = mesh.client();
    for _ in 0..200 {
        let sample = one(&client, HOST).await;
        assert!(sample.ok, "{}", sample.detail);
        assert_eq!(sample.version.as_deref(), Some("v2"), "the previous rule (all to v2) stays in force");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_grpc_clients_are_served_through_the_proxy_in_their_protocol() -> anyhow::Result<()> {
    use weft_e2e::http_client::{HttpClient, Protocol};
    let _serial = serial().await;
    let mesh = LocalMesh::start([100, 0]).await?;
    one(&mesh.client(), HOST).await; // the proxy has its routes
    let http2 = HttpClient::speaking(Protocol::Http2, mesh.outbound);
    let reply = http2.get(HOST, "/", &[]).await?;
    assert!(reply.is_success(), "{reply:?}");
    assert!(reply.body.contains(r#""protocol":"HTTP/2.0""#), "the backend got {}", reply.body);
    let grpc = HttpClient::speaking(Protocol::Grpc, mesh.outbound);
    let calls = futures_util::future::join_all((0..20).map(|_| grpc.call(HOST, &[]))).await;
    let answered = calls.into_iter().filter(|c| matches!(c, Ok(true))).count();
    assert_eq!(answered, 20, "unary gRPC calls answered with grpc-status 0\n{}", mesh.diagnostics());
    Ok(())
}
