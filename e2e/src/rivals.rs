//! nginx and haproxy as reverse proxies in front of a backend, for `make bench`'s side-by-side run: each started
//! in the foreground as one single-threaded process (nginx: one worker, no master; haproxy: one thread), with
//! keep-alive to the backend, so its CPU and memory compare with one weft-proxy's. Also pinning processes to a
//! core and reading their resident memory. Absent binaries are reported, not an error: the bench installs them
//! (`scripts/install-bench-deps.sh`) where it can.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::http_client::GRPC_PATH;
use crate::net::{free_port, localhost, wait_for_port};
use crate::process::Process;

/// A rival proxy, running.
pub struct Rival {
    pub name: &'static str,
    pub process: Process,
    /// Where clients send requests.
    pub listen: SocketAddr,
    /// Where clients send HTTP/2 with prior knowledge (h2c), gRPC included: plain requests go to the backend
    /// as HTTP/1.1, gRPC calls as HTTP/2.
    pub listen_h2: SocketAddr,
    _dir: tempfile::TempDir,
}

/// nginx 1 worker (no master process) proxying to `backend`; `None` when nginx is not installed.
pub async fn nginx(backend: SocketAddr) -> anyhow::Result<Option<Rival>> {
    let Some(program) = installed("nginx") else { return Ok(None) };
    let dir = tempfile::Builder::new().prefix("weft-bench-nginx-").tempdir()?;
    let listen = free_port(localhost())?;
    let listen_h2 = free_port(localhost())?;
    let root = dir.path().display();
    let http1_upstream = "proxy_pass http://backend;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_set_header Host $host;";
    let config = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log stderr warn;\npid {root}/nginx.pid;\n\
         worker_rlimit_nofile 20000;\nevents {{ worker_connections 12000; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  \
         fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n  \
         upstream backend {{ server {backend}; keepalive 64; }}\n  \
         server {{\n    listen {listen};\n    location / {{\n      {http1_upstream}\n    }}\n  }}\n  \
         server {{\n    listen {listen_h2} http2;\n    location / {{\n      {http1_upstream}\n    }}\n    \
         location {GRPC_PATH} {{\n      grpc_pass grpc://backend;\n    }}\n  }}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config)?;
    let args = ["-p".into(), root.to_string(), "-c".into(), path.display().to_string()];
    let process = Process::spawn("nginx", &program, &args, &dir.path().join("nginx.log"))?;
    wait_for_port(listen, std::time::Duration::from_secs(10)).await.with_context(|| process.tail(20))?;
    wait_for_port(listen_h2, std::time::Duration::from_secs(10)).await.with_context(|| process.tail(20))?;
    Ok(Some(Rival { name: "nginx", process, listen, listen_h2, _dir: dir }))
}

/// haproxy with one thread proxying to `backend`, reusing its connections; `None` when it is not installed.
pub async fn haproxy(backend: SocketAddr) -> anyhow::Result<Option<Rival>> {
    let Some(program) = installed("haproxy") else { return Ok(None) };
    let dir = tempfile::Builder::new().prefix("weft-bench-haproxy-").tempdir()?;
    let listen = free_port(localhost())?;
    let listen_h2 = free_port(localhost())?;
    let config = format!(
        "global\n  nbthread 1\n  maxconn 9000\n\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  \
         timeout server 30s\n  http-reuse always\n\nfrontend bench\n  bind {listen}\n  default_backend backend\n\n\
         frontend bench_h2\n  bind {listen_h2} proto h2\n  use_backend grpc if {{ path_beg {GRPC_PATH} }}\n  \
         default_backend backend\n\nbackend backend\n  server one {backend}\n\n\
         backend grpc\n  server one {backend} proto h2\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let args = ["-f".into(), path.display().to_string(), "-db".into()];
    let process = Process::spawn("haproxy", &program, &args, &dir.path().join("haproxy.log"))?;
    wait_for_port(listen, std::time::Duration::from_secs(10)).await.with_context(|| process.tail(20))?;
    wait_for_port(listen_h2, std::time::Duration::from_secs(10)).await.with_context(|| process.tail(20))?;
    Ok(Some(Rival { name: "haproxy", process, listen, listen_h2, _dir: dir }))
}

fn installed(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// What [`memory_probe`] read, and the reading still to come.
pub struct MemoryProbe {
    /// With the idle connections open.
    pub idle_mb: f64,
    /// 2 s after the burst closed.
    pub after_burst_mb: f64,
    /// 12 s after the burst closed (read by a task of its own, so the bench can go on meanwhile).
    pub later: tokio::task::JoinHandle<f64>,
}

/// Resident memory (MB) of process `pid`, a proxy listening on `listen`: with `idle` connections open and no
/// request on them, then once a burst of `burst` connections, all open at once and each sending one request for
/// `host`, has closed. A benchmark's probe: it waits fixed times for the proxy to take connections in and to
/// let them go; the last two readings are 2 s and 12 s after the burst, the last one by a task of its own.
pub async fn memory_probe(
    listen: SocketAddr,
    pid: u32,
    idle: usize,
    burst: usize,
    host: &str,
) -> anyhow::Result<MemoryProbe> {
    let mut open = Vec::with_capacity(idle);
    for _ in 0..idle {
        open.push(tokio::net::TcpStream::connect(listen).await?);
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let with_idle = resident_bytes(pid) as f64 / 1e6;
    drop(open);
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let calls: Vec<_> = (0..burst)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = tokio::net::TcpStream::connect(listen).await.map_err(|e| format!("connect: {e}"))?;
                stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
                let mut answer = [0u8; 512];
                let read = stream.read(&mut answer).await.map_err(|e| format!("read: {e}"))?;
                match answer[..read].starts_with(b"HTTP/1.1 200") {
                    true => Ok(stream),
                    false => {
                        Err(String::from_utf8_lossy(answer[..read].split(|b| *b == b'\r').next().unwrap_or_default())
                            .into_owned())
                    }
                }
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(burst);
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for call in calls {
        match call.await.map_err(|e| e.to_string()).and_then(|answer| answer) {
            Ok(stream) => streams.push(stream),
            Err(why) => *failures.entry(why).or_default() += 1,
        }
    }
    let answered = streams.len();
    anyhow::ensure!(
        answered * 10 >= burst * 9,
        "only {answered} of {burst} burst requests were answered; the others: {failures:?}"
    );
    drop(streams);
    let closed = tokio::time::Instant::now();
    tokio::time::sleep_until(closed + std::time::Duration::from_secs(2)).await;
    let after_burst_mb = resident_bytes(pid) as f64 / 1e6;
    let later = tokio::spawn(async move {
        tokio::time::sleep_until(closed + std::time::Duration::from_secs(12)).await;
        resident_bytes(pid) as f64 / 1e6
    });
    Ok(MemoryProbe { idle_mb: with_idle, after_burst_mb, later })
}

/// What a bench prints when [`pin_apart`] could not pin.
pub const NOT_PINNED: &str = "(not pinned: needs 2 CPUs and taskset; numbers share cores)";

/// This process (the load generator) pinned to CPU 0; dropping it lets the process run on every CPU again, so
/// what the bench starts afterwards does not inherit CPU 0 only.
pub struct Pinned(());

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Err(err) = unpin(std::process::id()) {
            eprintln!("the bench stays pinned to CPU 0: {err:#}");
        }
    }
}

/// Puts this process (the load generator) and `apps` on CPU 0 and `proxies` on CPU 1, so a proxy's CPU and
/// latency are not those of a core it shares with its load, until the returned guard is dropped; `None` (and this
/// process free to run anywhere) when the machine has fewer than 2 CPUs, a process is gone, or `taskset` fails.
pub fn pin_apart(apps: &[Option<u32>], proxies: &[Option<u32>]) -> Option<Pinned> {
    if cpus() < 2 || pin(std::process::id(), 0).is_err() {
        return None;
    }
    let pinned = Pinned(());
    let on = |pids: &[Option<u32>], cpu| pids.iter().all(|pid| pid.is_some_and(|pid| pin(pid, cpu).is_ok()));
    (on(apps, 0) && on(proxies, 1)).then_some(pinned)
}

/// How many CPUs the machine has online (not how many this process may use now: a pinned bench must still
/// know there are more, to unpin itself).
fn cpus() -> usize {
    let listed = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count());
    match listed {
        Ok(count) if count > 0 => count,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Pins every thread of process `pid` to `cpu` (`taskset`); a message when that fails.
pub fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    pin_to(pid, &cpu.to_string())
}

/// Lets every thread of process `pid` run on any CPU again (what it starts later inherits its affinity).
fn unpin(pid: u32) -> anyhow::Result<()> {
    pin_to(pid, &format!("0-{}", cpus().saturating_sub(1)))
}

fn pin_to(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset could not pin process {pid} to CPUs {cpus}");
    Ok(())
}

/// The resident memory of process `pid`, in bytes (0 when it cannot be read).
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}
