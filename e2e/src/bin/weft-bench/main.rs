//! `make bench`: latency and throughput through one Weft proxy versus straight to the backend, at a fixed
//! request rate (open loop: latency is measured from when each request was due, so a stalled proxy cannot hide
//! its queueing); then the two-proxy path between meshed pods, plaintext and with mutual TLS, with each
//! sidecar's CPU, and the mutual TLS path again with 50 AuthorizationPolicies of 10 rules each on the server.
//! In between, weft-proxy side by side with nginx and haproxy (one core each, pinned; the load generator and the
//! backend on the other) for HTTP/1.1, HTTP/2 and gRPC ([`side_by_side`]). Last, the transparent path in network
//! namespaces, as the webhook injects sidecars ([`transparent`]; root only). First, the proxy's route lookup time
//! as its route table grows.
//! Reports ratios measured in one run; a benchmark, not a test.

use std::time::{Duration, Instant};

use clap::Parser;
use weft_e2e::http_client::HttpClient;
use weft_e2e::mesh::{HOST, LocalMesh};
use weft_e2e::two_hop::TwoHopMesh;

mod side_by_side;
mod transparent;

#[derive(Debug, Parser)]
#[command(name = "weft-bench")]
struct Args {
    /// Requests per second offered in each run.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds per measured run (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Only the side-by-side run (weft-proxy, nginx, haproxy), e.g. while working on the proxy's hot path.
    #[arg(long)]
    side_by_side_only: bool,
    /// Only the transparent path (root only: pods as network namespaces).
    #[arg(long, conflicts_with = "side_by_side_only")]
    transparent_only: bool,
}

/// What one fixed-rate run measured.
#[derive(Clone)]
struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn empty() -> Self {
        Self { latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO }
    }

    /// Runs taken in turns, as one: their latencies, errors and time together.
    fn pooled(runs: Vec<Run>) -> Self {
        let mut pooled = Self::empty();
        for run in runs {
            pooled.latencies.extend(run.latencies);
            pooled.errors += run.errors;
            pooled.elapsed += run.elapsed;
        }
        pooled.latencies.sort();
        pooled
    }

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
    if args.transparent_only {
        return transparent::run(&args).await;
    }
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
    route_lookup();
    if args.side_by_side_only {
        return side_by_side::run(&args, &mesh).await;
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
    side_by_side::run(&args, &mesh).await?;
    drop(mesh);
    two_proxies(&args, d).await?;
    transparent::run(&args).await
}

/// The proxy's route lookup as its table grows (pure: no proxy process).
fn route_lookup() {
    use weft_e2e::route_lookup::{SIZES, nanos_per_lookup};
    println!("route lookup (the proxy's own table and matching; one virtual host per 2 routes):");
    let smallest = nanos_per_lookup(SIZES[0]);
    for routes in SIZES {
        let ns = nanos_per_lookup(routes);
        println!("  {routes:>6} routes: {ns:>7.1} ns per lookup  ({:.2}x the {}-route table)", ns / smallest, SIZES[0]);
    }
    println!();
}

/// The two-proxy path (client sidecar -> server sidecar -> backend), plaintext and mutual TLS, against `direct`.
async fn two_proxies(args: &Args, direct: &Run) -> anyhow::Result<()> {
    println!(
        "
starting the two-proxy path (client sidecar -> server sidecar -> backend), plaintext and mutual TLS ..."
    );
    let mesh = TwoHopMesh::start().await?;
    let sidecars: Vec<Option<u32>> = [&mesh.plaintext, &mesh.mutual_tls, &mesh.authorized]
        .iter()
        .flat_map(|hop| [hop.client.pid(), hop.server.pid()])
        .collect();
    let pinned = weft_e2e::rivals::pin_apart(&[mesh.backend.pid()], &sidecars);
    let placement = "sidecars on one core, the load and the backend on the other";
    println!("  {}", if pinned.is_some() { placement } else { weft_e2e::rivals::NOT_PINNED });
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
    drop(pinned);
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

/// Concurrent requests in the flat-out runs: connections for HTTP/1.1, streams on one connection for HTTP/2.
const FLAT_OUT_CONCURRENCY: usize = 16;
/// How long each flat-out run lasts.
const FLAT_OUT: Duration = Duration::from_secs(3);

/// A request that takes longer than this counts as failed (and a proxy that stops answering cannot hang the bench).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn answered_in_time(client: &HttpClient, host: &str, headers: &[(&str, &str)]) -> bool {
    tokio::time::timeout(REQUEST_TIMEOUT, client.call(host, headers)).await.is_ok_and(|r| r.unwrap_or(false))
}

/// `connections` requests at a time, each sent as soon as the previous one answered, for `length`: requests
/// per second answered, and how long it really ran.
async fn flat_out(client: &HttpClient, host: &'static str, connections: usize, length: Duration) -> (f64, Duration) {
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut answered = 0u64;
                while start.elapsed() < length {
                    answered += u64::from(answered_in_time(&client, host, &[]).await);
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
            let ok = answered_in_time(&client, host, headers).await;
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
