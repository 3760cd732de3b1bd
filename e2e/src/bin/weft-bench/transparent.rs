//! The transparent path: requests from inside a pod (a network namespace captured by `weft-proxy init`'s rules, as
//! the webhook injects it) reach an app through the client's sidecar (outbound, original destination from
//! `SO_ORIGINAL_DST`), the server's (inbound), or both (mutual TLS between them), against the same route with no
//! proxy ([`weft_e2e::captured_path`]). HTTP/1.1 keep-alive on every path, HTTP/2 and unary gRPC straight and
//! through both sidecars: added latency at the fixed rate and each sidecar's vCPU per 1000 requests/s; then, for
//! HTTP/1.1 through a sidecar, flat out with each sidecar's CPU per request. The sidecars are pinned to CPU 1, the
//! load and the apps to CPU 0. Root only: elsewhere it says why it skipped.

use std::time::Duration;

use weft_e2e::captured_path::{CapturedPaths, Path};
use weft_e2e::http_client::Protocol;
use weft_e2e::process::{Process, cpu_split, cpu_time};
use weft_e2e::rivals;

use super::{Args, FLAT_OUT, FLAT_OUT_CONCURRENCY, Run, fixed_rate_to, flat_out, ms};

/// What one path measured; the CPU figures are the client's sidecar's then the server's.
struct Measured {
    path: Path,
    protocol: Protocol,
    /// The direct run of the same protocol: what the added latency is measured against.
    baseline: usize,
    run: Run,
    vcpu_per_krps: [f64; 2],
    /// Flat out (HTTP/1.1 through a sidecar only): requests/s, and each sidecar's CPU µs per request.
    max: Option<(f64, [f64; 2])>,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!(
        "\ntransparent path (pods as network namespaces, captured by iptables; from inside the client pod; HTTP/1.1, \
         and HTTP/2 and unary gRPC over one connection on the direct and mTLS paths):"
    );
    if let Err(why) = weft_e2e::netns::preflight() {
        println!("  skipped: {why}");
        return Ok(());
    }
    let paths = CapturedPaths::start().await?;
    let sidecars = [&paths.client_sidecar, &paths.server_sidecar];
    let apps: Vec<Option<u32>> = paths.apps().map(Process::pid).collect();
    let pinned = rivals::pin_apart(&apps, &sidecars.map(Process::pid));
    if pinned.is_none() {
        println!("  {}", rivals::NOT_PINNED);
    }
    // Half of `--seconds`, as the side-by-side run's HTTP/2 and gRPC, to keep the bench short.
    let seconds = (args.seconds / 2).max(1);
    println!(
        "  {} req/s for {seconds} s, then (HTTP/1.1 through a sidecar) {} s flat out with {FLAT_OUT_CONCURRENCY} connections; sidecars on one core{}",
        args.rate,
        FLAT_OUT.as_secs(),
        if pinned.is_some() { ", the load and the apps on the other" } else { "" }
    );
    let mut measured: Vec<Measured> = Vec::new();
    for (path, protocol) in RUNS {
        let baseline = measured.iter().position(|m| m.path == Path::Direct && m.protocol == protocol);
        let mut run = measure(args.rate, seconds, &paths, (path, protocol), sidecars).await;
        run.baseline = baseline.unwrap_or(measured.len());
        measured.push(run);
    }
    drop(pinned);
    print(&measured);
    let resident = sidecars.map(|s| s.pid().map_or(0.0, |pid| rivals::resident_bytes(pid) as f64 / 1e6));
    println!("  sidecars' resident memory after the runs: client {:.1} MB, server {:.1} MB", resident[0], resident[1]);
    let errors: usize = measured.iter().map(|m| m.run.errors).sum();
    anyhow::ensure!(errors == 0, "{errors} requests failed on the transparent path:\n{}", paths.diagnostics());
    Ok(())
}

/// Each path with HTTP/1.1; HTTP/2 and gRPC directly and through both sidecars (the mesh's own path), each after
/// its direct run.
const RUNS: [(Path, Protocol); 8] = [
    (Path::Direct, Protocol::Http1),
    (Path::Outbound, Protocol::Http1),
    (Path::Inbound, Protocol::Http1),
    (Path::Both, Protocol::Http1),
    (Path::Direct, Protocol::Http2),
    (Path::Both, Protocol::Http2),
    (Path::Direct, Protocol::Grpc),
    (Path::Both, Protocol::Grpc),
];

async fn measure(
    rate: u32,
    seconds: u32,
    paths: &CapturedPaths,
    (path, protocol): (Path, Protocol),
    sidecars: [&Process; 2],
) -> Measured {
    let (client, host) = (paths.client(path, protocol), path.host());
    fixed_rate_to(&client, host, rate, 1, &[]).await;
    let before = sidecars.map(cpu_of);
    let run = fixed_rate_to(&client, host, rate, seconds, &[]).await;
    let after = sidecars.map(cpu_of);
    let krps = run.throughput() / 1000.0;
    let vcpu_per_krps =
        [0, 1].map(|i| (after[i] - before[i]).as_secs_f64() / run.elapsed.as_secs_f64() / krps.max(1e-9));
    let measured = Measured { path, protocol, baseline: 0, run, vcpu_per_krps, max: None };
    if path == Path::Direct || protocol != Protocol::Http1 {
        // Flat out, what matters is the sidecars' CPU per request: none on the direct path, and HTTP/1.1's is
        // enough to keep the bench short.
        return measured;
    }
    let before = sidecars.map(busy_of);
    let (max_rps, took) = flat_out(&client, host, FLAT_OUT_CONCURRENCY, FLAT_OUT).await;
    let after = sidecars.map(busy_of);
    let requests = (max_rps * took.as_secs_f64()).max(1.0);
    let cpu_per_request_us = [0, 1].map(|i| (after[i] - before[i]).as_secs_f64() / requests * 1e6);
    Measured { max: Some((max_rps, cpu_per_request_us)), ..measured }
}

fn cpu_of(process: &Process) -> Duration {
    process.pid().map(cpu_time).unwrap_or_default()
}

/// User and kernel time together, read the way the side-by-side run reads them.
fn busy_of(process: &Process) -> Duration {
    process.pid().map(cpu_split).map(|t| t.user + t.system).unwrap_or_default()
}

fn print(measured: &[Measured]) {
    let added = |m: &Measured, p: f64| ms(m.run.percentile(p)) - ms(measured[m.baseline].run.percentile(p));
    println!(
        "  {:>27}  {:>8} {:>8} {:>9}  {:>15}  {:>9}  {:>15}",
        "path", "+p50 ms", "+p99 ms", "+p99.9 ms", "vCPU/1k rps", "max req/s", "CPU µs/req"
    );
    println!(
        "  {:>27}  {:>8} {:>8} {:>9}  {:>7} {:>7}  {:>9}  {:>7} {:>7}",
        "", "", "", "", "client", "server", "", "client", "server"
    );
    for m in measured {
        // A sidecar the path does not cross shows a dash.
        let each = |values: [f64; 2], decimals: usize| {
            [0, 1]
                .map(|i| if uses(m.path, i) { format!("{:>7.*}", decimals, values[i]) } else { format!("{:>7}", "-") })
        };
        let vcpu = each(m.vcpu_per_krps, 3);
        let (max_rps, per_request) = match m.max {
            Some((rps, us)) => (format!("{rps:>9.0}"), each(us, 1)),
            None => (format!("{:>9}", "-"), [format!("{:>7}", "-"), format!("{:>7}", "-")]),
        };
        println!(
            "  {:>27}  {:>8.3} {:>8.3} {:>9.3}  {} {}  {max_rps}  {} {}{}",
            describe(m),
            added(m, 0.5),
            added(m, 0.99),
            added(m, 0.999),
            vcpu[0],
            vcpu[1],
            per_request[0],
            per_request[1],
            if m.run.errors > 0 { format!("  errors {}", m.run.errors) } else { String::new() }
        );
    }
}

fn describe(m: &Measured) -> String {
    match m.protocol {
        Protocol::Http1 => m.path.describe().to_string(),
        Protocol::Http2 => format!("{}, h2", m.path.describe()),
        Protocol::Grpc => format!("{}, gRPC", m.path.describe()),
    }
}

/// Whether `path` goes through sidecar `index` (0: the client's, 1: the server's).
fn uses(path: Path, index: usize) -> bool {
    matches!((path, index), (Path::Outbound | Path::Both, 0) | (Path::Inbound | Path::Both, 1))
}
