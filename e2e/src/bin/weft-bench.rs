//! `make bench`: latency and throughput through one Weft proxy versus straight to the backend, at a fixed
//! request rate (open loop: latency is measured from when each request was due, so a stalled proxy cannot hide
//! its queueing); then the two-proxy path between meshed pods, plaintext and with mutual TLS, with each
//! sidecar's CPU, and the mutual TLS path again with 50 AuthorizationPolicies of 10 rules each on the server.
//! In between, weft-proxy side by side with nginx and haproxy (one core each, pinned; the load generator and the
//! backend on the other): added latency at the fixed rate, CPU per 1000 requests/s, memory, and the most
//! requests/s each passes.
//! Reports ratios measured in one run; a benchmark, not a test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use weft_e2e::http_client::HttpClient;
use weft_e2e::mesh::{HOST, LocalMesh};
use weft_e2e::two_hop::TwoHopMesh;

#[derive(Debug, Parser)]
#[command(name = "weft-bench")]
struct Args {
    /// Requests per second offered in each run.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds per measured run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Only the side-by-side run (weft-proxy, nginx, haproxy), e.g. while working on the proxy's hot path.
    #[arg(long)]
    side_by_side_only: bool,
}

/// What one fixed-rate run measured.
struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0 && args.seconds > 0, "--rate and --seconds must be positive");
    println!("starting a local mesh (operator, proxy, echo backend) ...");
    let mesh = LocalMesh::start([100, 0]).await?;
    let direct = HttpClient::new(mesh.backend_addresses[0]);
    let proxied = mesh.client();
    println!(
        "offered load: {} req/s for {} s per run, HTTP/1.1 keep-alive, GET http://{HOST}/ (the policy runs add \
         `x-bench: policies`, routed with retries and request/response header operations, and `x-bench: guarded`, \
         sent to a cluster with outlier detection and a connection pool)\n",
        args.rate, args.seconds
    );
    if args.side_by_side_only {
        fixed_rate(&direct, args.rate, 1, &[]).await;
        let direct_run = fixed_rate(&direct, args.rate, args.seconds, &[]).await;
        return side_by_side(&args, &mesh, &direct_run).await;
    }
    let mut runs = Vec::new();
    let plain: &[(&str, &str)] = &[];
    let policies: &[(&str, &str)] = &[("x-bench", "policies")];
    let guarded: &[(&str, &str)] = &[("x-bench", "guarded")];
    let runs_of = [
        ("direct", &direct, plain),
        ("through proxy", &proxied, plain),
        ("+ route policies", &proxied, policies),
        ("+ cluster policies", &proxied, guarded),
    ];
    for (name, client, headers) in runs_of {
        fixed_rate(client, args.rate, 1, headers).await; // warm-up: connections, latency estimates
        let run = fixed_rate(client, args.rate, args.seconds, headers).await;
        println!(
            "{name:>14}: {:>7.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
            run.throughput(),
            ms(run.percentile(0.50)),
            ms(run.percentile(0.99)),
            run.errors
        );
        runs.push(run);
    }
    let (d, p, with_policies, with_cluster) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    print_ratios(d, p, with_policies, with_cluster);
    side_by_side(&args, &mesh, d).await?;
    drop(mesh);
    two_proxies(&args, d).await
}

/// The two-proxy path (client sidecar -> server sidecar -> backend), plaintext and mutual TLS, against `direct`.
async fn two_proxies(args: &Args, direct: &Run) -> anyhow::Result<()> {
    println!(
        "
starting the two-proxy path (client sidecar -> server sidecar -> backend), plaintext and mutual TLS ..."
    );
    let mesh = TwoHopMesh::start().await?;
    let mut measured = Vec::new();
    let hops = [
        ("2 proxies, plaintext", &mesh.plaintext),
        ("2 proxies, mTLS", &mesh.mutual_tls),
        ("mTLS + 50x10 authz rules", &mesh.authorized),
    ];
    for (name, hop) in hops {
        let client = hop.client();
        let host: &'static str = hop.host;
        fixed_rate_to(&client, host, args.rate, 1, &[]).await;
        let cpu_before = [cpu_of(&hop.client), cpu_of(&hop.server)];
        let run = fixed_rate_to(&client, host, args.rate, args.seconds, &[]).await;
        let cpu = [cpu_of(&hop.client) - cpu_before[0], cpu_of(&hop.server) - cpu_before[1]];
        // vCPU per 1000 requests/s: CPU seconds per second of run, per thousand requests per second.
        let per_krps = |used: Duration| used.as_secs_f64() / run.elapsed.as_secs_f64() / (run.throughput() / 1000.0);
        println!(
            "{name:>24}: {:>7.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}  vCPU per 1000 req/s: client {:.3}, server {:.3}",
            run.throughput(),
            ms(run.percentile(0.50)),
            ms(run.percentile(0.99)),
            run.errors,
            per_krps(cpu[0]),
            per_krps(cpu[1]),
        );
        measured.push(run);
    }
    let (plain, mtls, authorized) = (&measured[0], &measured[1], &measured[2]);
    println!(
        "
added latency over direct, measured in this run:"
    );
    for (name, run) in [("2 proxies, plaintext", plain), ("2 proxies, mTLS", mtls), ("mTLS + authz", authorized)] {
        println!(
            "  {name:>22}: p50 +{:.3} ms  p99 +{:.3} ms",
            ms(run.percentile(0.5)) - ms(direct.percentile(0.5)),
            ms(run.percentile(0.99)) - ms(direct.percentile(0.99))
        );
    }
    println!(
        "  mTLS over plaintext: p50 +{:.3} ms  p99 +{:.3} ms",
        ms(mtls.percentile(0.5)) - ms(plain.percentile(0.5)),
        ms(mtls.percentile(0.99)) - ms(plain.percentile(0.99))
    );
    println!(
        "  {} AuthorizationPolicies x {} rules over none (mTLS): throughput {:.3}x  p50 {:.2}x  p99 {:.2}x",
        weft_e2e::two_hop::AUTHZ_POLICIES,
        weft_e2e::two_hop::AUTHZ_RULES,
        authorized.throughput() / mtls.throughput(),
        ratio(authorized.percentile(0.5), mtls.percentile(0.5)),
        ratio(authorized.percentile(0.99), mtls.percentile(0.99)),
    );
    Ok(())
}

/// What one proxy measured in the side-by-side run.
struct Measured {
    name: &'static str,
    run: Run,
    vcpu_per_krps: f64,
    memory: Memory,
    max_rps: f64,
    /// The proxy's core's busy share during the max-rate run: under ~95 %, the load generator was the limit.
    max_busy: f64,
}

/// Resident memory, MB: after the load runs, with 5000 idle connections, 2 s and 12 s after a burst of 2500
/// connections has closed.
struct Memory {
    resident_mb: f64,
    idle_mb: f64,
    after_burst_mb: f64,
    later_mb: f64,
}

impl Measured {
    /// CPU per request while passing as many as it could: the cost of a request with the fixed costs (timers,
    /// idle wake-ups) spread thin.
    fn cpu_per_request_us(&self) -> f64 {
        self.max_busy / self.max_rps.max(1e-9) * 1e6
    }
}

/// weft-proxy, nginx and haproxy in front of the same backend, each pinned alone to CPU 1 (the bench and the
/// backend to CPU 0), one after the other: fixed-rate latency and CPU, then a closed loop of 16 connections.
async fn side_by_side(args: &Args, mesh: &weft_e2e::mesh::LocalMesh, direct: &Run) -> anyhow::Result<()> {
    use weft_e2e::rivals;
    println!(
        "\nside by side (one core per proxy, pinned; HTTP/1.1 keep-alive; {} req/s, then 16 connections flat out):",
        args.rate
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cpus >= 2
        && rivals::pin(std::process::id(), 0).is_ok()
        && mesh.backends[0].pid().is_some_and(|pid| rivals::pin(pid, 0).is_ok());
    if !pinned {
        println!("  (not pinned: needs 2 CPUs and taskset; numbers share cores)");
    }
    let backend = mesh.backend_addresses[0];
    let (nginx, haproxy) = (rivals::nginx(backend).await?, rivals::haproxy(backend).await?);
    let mut under_test: Vec<(&'static str, &weft_e2e::process::Process, SocketAddr)> =
        vec![("weft-proxy", &mesh.proxy, mesh.outbound)];
    for rival in [&nginx, &haproxy] {
        match rival {
            Some(rival) => under_test.push((rival.name, &rival.process, rival.listen)),
            None => println!("  (not installed, skipped: run scripts/install-bench-deps.sh)"),
        }
    }
    let mut measured = Vec::new();
    for (name, process, listen) in under_test {
        let client = HttpClient::new(listen);
        let pid = process.pid().context("proxy not running")?;
        if pinned {
            rivals::pin(pid, 1)?;
        }
        fixed_rate(&client, args.rate, 1, &[]).await;
        let before = weft_e2e::process::cpu_time(pid);
        let run = fixed_rate(&client, args.rate, args.seconds, &[]).await;
        let used = weft_e2e::process::cpu_time(pid) - before;
        let vcpu_per_krps = used.as_secs_f64() / run.elapsed.as_secs_f64() / (run.throughput() / 1000.0);
        let before = weft_e2e::process::cpu_time(pid);
        let (max_rps, took) = flat_out(&client, 16, Duration::from_secs(3)).await;
        let max_busy = (weft_e2e::process::cpu_time(pid) - before).as_secs_f64() / took.as_secs_f64();
        let resident_mb = rivals::resident_bytes(pid) as f64 / 1e6;
        let (idle_mb, after_burst_mb, later_mb) = rivals::memory_probe(listen, pid, 5000, 2500, HOST).await?;
        let memory = Memory { resident_mb, idle_mb, after_burst_mb, later_mb };
        measured.push(Measured { name, run, vcpu_per_krps, memory, max_rps, max_busy });
    }
    if pinned {
        // What the bench starts next (the two-proxy path) must not inherit CPU 0 only.
        rivals::unpin(std::process::id(), cpus)?;
    }
    print_side_by_side(&measured, direct);
    Ok(())
}

fn print_side_by_side(measured: &[Measured], direct: &Run) {
    let added = |run: &Run, p: f64| ms(run.percentile(p)) - ms(direct.percentile(p));
    println!(
        "  {:>10}  {:>9} {:>9} {:>9}  {:>12}  {:>7}  {:>10}  {:>13}",
        "proxy", "+p50 ms", "+p99 ms", "+p99.9 ms", "vCPU/1k rps", "RSS MB", "max req/s", "CPU µs/req"
    );
    for m in measured {
        println!(
            "  {:>10}  {:>9.3} {:>9.3} {:>9.3}  {:>12.3}  {:>7.1}  {:>10.0}  {:>13.1}  (core {:.0} % busy){}",
            m.name,
            added(&m.run, 0.5),
            added(&m.run, 0.99),
            added(&m.run, 0.999),
            m.vcpu_per_krps,
            m.memory.resident_mb,
            m.max_rps,
            m.cpu_per_request_us(),
            m.max_busy * 100.0,
            if m.run.errors > 0 { format!("  errors {}", m.run.errors) } else { String::new() }
        );
    }
    println!(
        "  resident memory, MB: after the load / with 5000 idle connections / 2 s and 12 s after a burst of 2500 closed"
    );
    for m in measured {
        let Memory { resident_mb, idle_mb, after_burst_mb, later_mb } = m.memory;
        println!("  {:>10}  {resident_mb:>6.1} / {idle_mb:>6.1} / {after_burst_mb:>6.1} / {later_mb:>6.1}", m.name);
    }
    let (Some(weft), Some(nginx)) =
        (measured.iter().find(|m| m.name == "weft-proxy"), measured.iter().find(|m| m.name == "nginx"))
    else {
        return;
    };
    println!(
        "  weft-proxy / nginx: added p50 {}  added p99 {}  vCPU {:.2}x  max req/s {:.2}x  CPU per request at max {:.2}x",
        added_ratio(added(&weft.run, 0.5), added(&nginx.run, 0.5)),
        added_ratio(added(&weft.run, 0.99), added(&nginx.run, 0.99)),
        weft.vcpu_per_krps / nginx.vcpu_per_krps.max(1e-9),
        weft.max_rps / nginx.max_rps.max(1e-9),
        weft.cpu_per_request_us() / nginx.cpu_per_request_us().max(1e-9),
    );
}

/// One added latency over another, when the other is large enough to divide by (under 10 µs it is noise).
fn added_ratio(ours: f64, theirs: f64) -> String {
    if theirs < 0.01 { "n/a (nginx added under 0.01 ms)".to_string() } else { format!("{:.2}x", ours / theirs) }
}

/// `connections` requests at a time, each sent as soon as the previous one answered, for `length`: requests
/// per second answered, and how long it really ran.
async fn flat_out(client: &HttpClient, connections: usize, length: Duration) -> (f64, Duration) {
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut answered = 0u64;
                while start.elapsed() < length {
                    answered += u64::from(client.get(HOST, "/", &[]).await.is_ok_and(|r| r.is_success()));
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for worker in workers {
        answered += worker.await.unwrap_or(0);
    }
    let took = start.elapsed();
    (answered as f64 / took.as_secs_f64(), took)
}

fn cpu_of(process: &weft_e2e::process::Process) -> Duration {
    process.pid().map(weft_e2e::process::cpu_time).unwrap_or_default()
}

fn print_ratios(d: &Run, p: &Run, with_policies: &Run, with_cluster: &Run) {
    println!("\nratios (through proxy / direct), measured in this run:");
    println!("  throughput  {:.3}", p.throughput() / d.throughput());
    println!(
        "  p50 latency {:.2}x  (+{:.3} ms)",
        ratio(p.percentile(0.5), d.percentile(0.5)),
        ms(p.percentile(0.5)) - ms(d.percentile(0.5))
    );
    println!(
        "  p99 latency {:.2}x  (+{:.3} ms)",
        ratio(p.percentile(0.99), d.percentile(0.99)),
        ms(p.percentile(0.99)) - ms(d.percentile(0.99))
    );
    println!("\nratios (route with retries and header operations / plain route), measured in this run:");
    println!("  throughput  {:.3}", with_policies.throughput() / p.throughput());
    println!("  p50 latency {:.2}x", ratio(with_policies.percentile(0.5), p.percentile(0.5)));
    println!("  p99 latency {:.2}x", ratio(with_policies.percentile(0.99), p.percentile(0.99)));
    println!("\nratios (cluster with outlier detection and a connection pool / plain cluster), measured in this run:");
    println!("  throughput  {:.3}", with_cluster.throughput() / p.throughput());
    println!("  p50 latency {:.2}x", ratio(with_cluster.percentile(0.5), p.percentile(0.5)));
    println!("  p99 latency {:.2}x", ratio(with_cluster.percentile(0.99), p.percentile(0.99)));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// Offers `rate` requests per second for `seconds`, each started when due whatever the others are doing. A
/// thread paces the schedule (OS sleeps are far finer than the async timer's millisecond ticks, which would
/// otherwise be measured as latency).
async fn fixed_rate(
    client: &HttpClient,
    rate: u32,
    seconds: u32,
    headers: &'static [(&'static str, &'static str)],
) -> Run {
    fixed_rate_to(client, HOST, rate, seconds, headers).await
}

/// [`fixed_rate`] to `host`.
async fn fixed_rate_to(
    client: &HttpClient,
    host: &'static str,
    rate: u32,
    seconds: u32,
    headers: &'static [(&'static str, &'static str)],
) -> Run {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = u64::from(rate) * u64::from(seconds);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if due_tx.send(due).is_err() {
                return;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(due) = due_rx.recv().await {
        let client = client.clone();
        tasks.spawn(async move {
            let ok = client.get(host, "/", headers).await.is_ok_and(|r| r.is_success());
            (due.elapsed(), ok)
        });
    }
    let mut run = Run { latencies: Vec::with_capacity(total as usize), errors: 0, elapsed: Duration::ZERO };
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok((latency, true)) => run.latencies.push(latency),
            _ => run.errors += 1,
        }
    }
    run.elapsed = start.elapsed();
    run.latencies.sort();
    run
}
