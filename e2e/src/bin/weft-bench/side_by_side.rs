//! weft-proxy, nginx and haproxy in front of the same backend, pinned to CPU 1 (the bench and the backend to
//! CPU 0): for HTTP/1.1 keep-alive, HTTP/2 with prior knowledge (one connection, concurrent streams) and unary gRPC
//! calls (over one HTTP/2 connection), the added latency at a fixed rate and CPU per 1000 requests/s, then the most
//! requests/s each passes and its CPU per request there; for HTTP/1.1 also memory (idle connections, a burst).
//!
//! The runs take turns, one second each (at the fixed rate the backend alone, then each proxy; flat out each
//! proxy), round after round, so a noisy stretch of this shared machine falls on all of them alike: measured one
//! after the other, the added p50 of the same binaries moved between 0.9x and 2x nginx's from one run to the
//! next, and a proxy's CPU per request flat out by a third.
//!
//! Upstream, nginx and haproxy send plain HTTP/2 requests on as HTTP/1.1 (nginx cannot send HTTP/2 upstream but
//! for gRPC); weft-proxy keeps the client's protocol (Weft's default with `useClientProtocol` unset; Istio's sidecar
//! would send HTTP/1.1 on this `http`-named port, as nginx does).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use weft_e2e::http_client::{HttpClient, Protocol};
use weft_e2e::mesh::{HOST, LocalMesh};
use weft_e2e::process::{CoreTicks, Process, core_ticks, cpu_split, cpu_time};
use weft_e2e::rivals;

use super::{Args, FLAT_OUT, FLAT_OUT_CONCURRENCY, Run, fixed_rate, flat_out, ms};

/// HTTP/2 and gRPC runs at the fixed rate last this share of HTTP/1.1's (`--seconds`), to keep the bench short.
const SECOND_PROTOCOL_SHARE: u32 = 2;

/// One protocol through one proxy.
struct ProtocolRun {
    run: Run,
    vcpu_per_krps: f64,
    max_rps: f64,
    /// The proxy's core's busy share during the max-rate run: under ~95 %, the load generator was the limit.
    max_busy: f64,
    /// Of that, the share spent in the proxy's own code (user time), the rest in the kernel on its behalf.
    max_user_share: f64,
    /// The other core's busy share meanwhile (the load generator and the backend): near 100 %, they were the limit.
    load_busy: f64,
}

impl ProtocolRun {
    fn new(run: Run, vcpu_per_krps: f64, flat: FlatOut) -> Self {
        let took = flat.took.as_secs_f64().max(1e-9);
        let total = (flat.user + flat.system).as_secs_f64();
        let max_user_share = if total > 0.0 { flat.user.as_secs_f64() / total } else { 0.0 };
        let CoreTicks { busy, total: all } = flat.load;
        let load_busy = if all > 0 { busy as f64 / all as f64 } else { 0.0 };
        Self { run, vcpu_per_krps, max_rps: flat.requests / took, max_busy: total / took, max_user_share, load_busy }
    }

    /// CPU per request while passing as many as it could: the cost of a request with the fixed costs (timers,
    /// idle wake-ups) spread thin.
    fn cpu_per_request_us(&self) -> f64 {
        self.max_busy / self.max_rps.max(1e-9) * 1e6
    }

    /// The user (not kernel) part of [`Self::cpu_per_request_us`]: what the proxy's own code costs.
    fn user_per_request_us(&self) -> f64 {
        self.cpu_per_request_us() * self.max_user_share
    }
}

/// Resident memory, MB: after the load runs, with 5000 idle connections, 2 s and 12 s after a burst of 2500
/// connections has closed.
struct Memory {
    resident_mb: f64,
    idle_mb: f64,
    after_burst_mb: f64,
    later_mb: f64,
}

/// What one proxy measured.
struct Measured {
    name: &'static str,
    /// HTTP/1.1, HTTP/2, gRPC, in [`PROTOCOLS`]' order.
    runs: Vec<ProtocolRun>,
    memory: Memory,
}

const PROTOCOLS: [(Protocol, &str); 3] = [
    (Protocol::Http1, "HTTP/1.1 keep-alive, 16 connections flat out"),
    (Protocol::Http2, "HTTP/2 with prior knowledge, one connection, 16 streams flat out"),
    (Protocol::Grpc, "unary gRPC calls, one HTTP/2 connection, 16 streams flat out"),
];

/// A proxy under test: its name, process, and where it takes HTTP/1.1 and HTTP/2.
type UnderTest<'a> = (&'static str, &'a Process, SocketAddr, SocketAddr);

pub async fn run(args: &Args, mesh: &LocalMesh) -> anyhow::Result<()> {
    println!(
        "\nside by side (proxies pinned to one core; {} req/s for {} s each (HTTP/2, gRPC: {} s), in 1 s turns with the backend alone and each other; then 3 s flat out, in turns too; `--seconds 10` for steadier tails):",
        args.rate,
        args.seconds,
        seconds_for(args, Protocol::Http2)
    );
    let pinned = rivals::pin_apart(&[mesh.backends[0].pid()], &[]);
    if pinned.is_none() {
        println!("  {}", rivals::NOT_PINNED);
    }
    let backend = mesh.backend_addresses[0];
    let (nginx, haproxy) = (rivals::nginx(backend).await?, rivals::haproxy(backend).await?);
    // weft-proxy's outbound listener tells HTTP/1.1 from HTTP/2 itself.
    let mut under_test: Vec<UnderTest<'_>> = vec![("weft-proxy", &mesh.proxy, mesh.outbound, mesh.outbound)];
    for rival in [&nginx, &haproxy] {
        match rival {
            Some(rival) => under_test.push((rival.name, &rival.process, rival.listen, rival.listen_h2)),
            None => println!("  (not installed, skipped: run scripts/install-bench-deps.sh)"),
        }
    }
    let mut pids = Vec::new();
    for (_, process, _, _) in &under_test {
        let pid = process.pid().context("proxy not running")?;
        if pinned.is_some() {
            rivals::pin(pid, 1)?;
        }
        pids.push(pid);
    }
    let mut directs = Vec::new();
    let mut runs: Vec<Vec<ProtocolRun>> = under_test.iter().map(|_| Vec::new()).collect();
    for (protocol, _) in PROTOCOLS {
        let clients: Vec<HttpClient> = under_test
            .iter()
            .map(|(_, _, listen, listen_h2)| {
                HttpClient::speaking(protocol, if protocol == Protocol::Http1 { *listen } else { *listen_h2 })
            })
            .collect();
        let (direct, fixed) = taking_turns(
            args.rate,
            seconds_for(args, protocol),
            &HttpClient::speaking(protocol, backend),
            &clients,
            &pids,
        )
        .await;
        directs.push(direct);
        let flat = flat_out_in_turns(&clients, &pids).await;
        for (i, ((run, vcpu_per_krps), flat)) in fixed.into_iter().zip(flat).enumerate() {
            runs[i].push(ProtocolRun::new(run, vcpu_per_krps, flat));
        }
    }
    // Each proxy's last memory reading comes 12 s after its burst, while the next proxy is measured.
    let mut probed = Vec::new();
    for (((name, _, listen, _), pid), runs) in under_test.into_iter().zip(pids).zip(runs) {
        let resident_mb = rivals::resident_bytes(pid) as f64 / 1e6;
        let probe = rivals::memory_probe(listen, pid, 5000, 2500, HOST)
            .await
            .with_context(|| format!("{name}'s memory probe"))?;
        probed.push((name, runs, resident_mb, probe));
    }
    let mut measured = Vec::new();
    for (name, runs, resident_mb, probe) in probed {
        let (idle_mb, after_burst_mb, later_mb) = (probe.idle_mb, probe.after_burst_mb, probe.later.await?);
        measured.push(Measured { name, runs, memory: Memory { resident_mb, idle_mb, after_burst_mb, later_mb } });
    }
    // What the bench starts next (the two-proxy path) must not inherit CPU 0 only.
    drop(pinned);
    for (index, (_, title)) in PROTOCOLS.iter().enumerate() {
        print_protocol(title, &measured, index, &directs[index]);
    }
    print_memory(&measured);
    Ok(())
}

/// The fixed-rate runs of one protocol: the backend alone (`direct`, what added latency is measured against) and
/// each proxy, taking turns a second at a time for `seconds` rounds after a warm-up round. Returns the direct run
/// and, per proxy, its run and CPU per 1000 requests/s (its CPU over the whole phase: it idles while the others
/// take their turns).
async fn taking_turns(
    rate: u32,
    seconds: u32,
    direct: &HttpClient,
    proxies: &[HttpClient],
    pids: &[u32],
) -> (Run, Vec<(Run, f64)>) {
    let targets: Vec<&HttpClient> = std::iter::once(direct).chain(proxies).collect();
    for client in &targets {
        fixed_rate(client, rate, 1, &[]).await;
    }
    let before: Vec<_> = pids.iter().map(|pid| cpu_time(*pid)).collect();
    let mut turns: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..seconds {
        for (client, runs) in targets.iter().zip(&mut turns) {
            runs.push(fixed_rate(client, rate, 1, &[]).await);
        }
    }
    let mut pooled = turns.into_iter().map(Run::pooled);
    let direct = pooled.next().unwrap_or_else(Run::empty);
    let fixed = pooled
        .zip(pids.iter().zip(before))
        .map(|(run, (pid, before))| {
            let used = cpu_time(*pid) - before;
            let vcpu_per_krps = used.as_secs_f64() * 1000.0 / run.latencies.len().max(1) as f64;
            (run, vcpu_per_krps)
        })
        .collect();
    (direct, fixed)
}

fn seconds_for(args: &Args, protocol: Protocol) -> u32 {
    match protocol {
        Protocol::Http1 => args.seconds,
        Protocol::Http2 | Protocol::Grpc => (args.seconds / SECOND_PROTOCOL_SHARE).max(1),
    }
}

/// What one proxy passed flat out, over its turns, and what that cost.
#[derive(Default)]
struct FlatOut {
    requests: f64,
    took: Duration,
    user: Duration,
    system: Duration,
    /// The load's core (CPU 0) meanwhile.
    load: CoreTicks,
}

/// Each proxy flat out for [`FLAT_OUT`], taking turns a second at a time, as the fixed-rate runs do.
async fn flat_out_in_turns(clients: &[HttpClient], pids: &[u32]) -> Vec<FlatOut> {
    let mut outs: Vec<FlatOut> = clients.iter().map(|_| FlatOut::default()).collect();
    for _ in 0..FLAT_OUT.as_secs().max(1) {
        for ((client, pid), out) in clients.iter().zip(pids).zip(&mut outs) {
            let (before, load_before) = (cpu_split(*pid), core_ticks(0));
            let (rps, took) = flat_out(client, HOST, FLAT_OUT_CONCURRENCY, Duration::from_secs(1)).await;
            let (used, load) = (cpu_split(*pid) - before, core_ticks(0));
            out.requests += rps * took.as_secs_f64();
            out.took += took;
            out.user += used.user;
            out.system += used.system;
            out.load.busy += load.busy.saturating_sub(load_before.busy);
            out.load.total += load.total.saturating_sub(load_before.total);
        }
    }
    outs
}

fn print_protocol(title: &str, measured: &[Measured], index: usize, direct: &Run) {
    let added = |run: &Run, p: f64| ms(run.percentile(p)) - ms(direct.percentile(p));
    println!("  {title}:");
    println!(
        "  {:>10}  {:>9} {:>9} {:>9}  {:>12}  {:>10}  {:>13}  {:>10}",
        "proxy", "+p50 ms", "+p99 ms", "+p99.9 ms", "vCPU/1k rps", "max req/s", "CPU µs/req", "of it user"
    );
    for m in measured {
        let r = &m.runs[index];
        println!(
            "  {:>10}  {:>9.3} {:>9.3} {:>9.3}  {:>12.3}  {:>10.0}  {:>13.1}  {:>10.1}  (core {:.0} % busy, load's {:.0} %){}",
            m.name,
            added(&r.run, 0.5),
            added(&r.run, 0.99),
            added(&r.run, 0.999),
            r.vcpu_per_krps,
            r.max_rps,
            r.cpu_per_request_us(),
            r.user_per_request_us(),
            r.max_busy * 100.0,
            r.load_busy * 100.0,
            if r.run.errors > 0 { format!("  errors {}", r.run.errors) } else { String::new() }
        );
    }
    let (Some(weft), Some(nginx)) =
        (measured.iter().find(|m| m.name == "weft-proxy"), measured.iter().find(|m| m.name == "nginx"))
    else {
        return;
    };
    let (weft, nginx) = (&weft.runs[index], &nginx.runs[index]);
    println!(
        "  weft-proxy / nginx: added p50 {}  added p99 {}  vCPU {:.2}x  max req/s {:.2}x  CPU per request at max {:.2}x \
         (user {:.2}x)",
        added_ratio(added(&weft.run, 0.5), added(&nginx.run, 0.5)),
        added_ratio(added(&weft.run, 0.99), added(&nginx.run, 0.99)),
        weft.vcpu_per_krps / nginx.vcpu_per_krps.max(1e-9),
        weft.max_rps / nginx.max_rps.max(1e-9),
        weft.cpu_per_request_us() / nginx.cpu_per_request_us().max(1e-9),
        weft.user_per_request_us() / nginx.user_per_request_us().max(1e-9),
    );
}

fn print_memory(measured: &[Measured]) {
    println!(
        "  resident memory, MB: after the load / with 5000 idle connections / 2 s and 12 s after a burst of 2500 closed"
    );
    for m in measured {
        let Memory { resident_mb, idle_mb, after_burst_mb, later_mb } = m.memory;
        println!("  {:>10}  {resident_mb:>6.1} / {idle_mb:>6.1} / {after_burst_mb:>6.1} / {later_mb:>6.1}", m.name);
    }
}

/// One added latency over another, when the other is large enough to divide by (under 10 µs it is noise).
fn added_ratio(ours: f64, theirs: f64) -> String {
    if theirs < 0.01 { "n/a (nginx added under 0.01 ms)".to_string() } else { format!("{:.2}x", ours / theirs) }
}
