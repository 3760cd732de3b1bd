//! One real `weft-proxy` in a cell of the scale benchmark. It lives in a namespace of its own and calls a few
//! Services of another namespace, none of which it holds config for: the first request to each waits for
//! on-demand discovery, later ones do not. Measured: what the first request costs over later ones, how many
//! clusters the proxy then holds, and its memory; all of which should not grow with the size of the mesh.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::binaries;
use crate::http_client::HttpClient;
use crate::net::{free_port, localhost};
use crate::process::Process;

/// Services the probe calls.
pub const CALLED: usize = 5;
/// Requests to each Service after the first.
const LATER_REQUESTS: usize = 20;
const TARGET_NAMESPACE: &str = "probe-target";
const CLIENT_NAMESPACE: &str = "probe-client";

/// What the probe measured.
#[derive(Debug, Clone, Default)]
pub struct ProbeResult {
    /// The first request to each Service.
    pub first: Vec<Duration>,
    /// The median of every later request.
    pub later: Duration,
    /// Clusters the proxy holds once it has called them all.
    pub clusters: usize,
    pub rss_mib: f64,
}

/// The backend behind every called Service.
pub struct ProbeBackend {
    _echo: Process,
}

impl ProbeBackend {
    /// Starts the backend and writes the Services it serves into the mesh's `config` directory.
    pub fn start(dir: &Path, config: &Path) -> anyhow::Result<Self> {
        let address = free_port(localhost())?;
        let args = ["--listen", &address.to_string(), "--name", "probe", "--version", "v1"].map(String::from);
        let echo = Process::spawn("probe echo", &binaries::path("weft-echo")?, &args, &dir.join("probe-echo.log"))?;
        for k in 0..CALLED {
            std::fs::write(config.join(format!("probe-{k}.yaml")), target_yaml(k, address))?;
        }
        Ok(Self { _echo: echo })
    }

    /// Runs a proxy against `xds`, makes the calls, and stops the proxy.
    pub async fn measure(&self, dir: &Path, xds: SocketAddr, patience: Duration) -> anyhow::Result<ProbeResult> {
        let (outbound, admin) = (free_port(localhost())?, free_port(localhost())?);
        let args = [
            ("--xds-address", format!("http://{xds}")),
            ("--pod-name", "probe".into()),
            ("--pod-namespace", CLIENT_NAMESPACE.into()),
            ("--outbound-listen", outbound.to_string()),
            ("--admin-listen", admin.to_string()),
            ("--log", "warn".into()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect::<Vec<_>>();
        let proxy = Process::spawn("probe proxy", &binaries::path("weft-proxy")?, &args, &dir.join("probe.log"))?;
        let client = HttpClient::new(outbound);
        let admin = HttpClient::new(admin);
        let until = Instant::now() + patience;
        while !admin.get("admin", "/ready", &[]).await.is_ok_and(|r| r.is_success()) {
            anyhow::ensure!(Instant::now() < until, "probe proxy not ready; log:\n{}", proxy.tail(20));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The connection to the proxy open, as for the later requests: a host nobody serves is answered 404.
        let warm_up = client.get("nobody.invalid", "/", &[]).await?;
        anyhow::ensure!(warm_up.status == 404, "a host nobody serves: {}", warm_up.status);
        let mut result = ProbeResult::default();
        let mut later = Vec::new();
        for k in 0..CALLED {
            let host = format!("probe-{k}.{TARGET_NAMESPACE}");
            for i in 0..=LATER_REQUESTS {
                let started = Instant::now();
                let reply = client.get(&host, "/", &[]).await?;
                anyhow::ensure!(reply.is_success(), "{host}: {}; log:\n{}", reply.status, proxy.tail(20));
                if i == 0 { &mut result.first } else { &mut later }.push(started.elapsed());
            }
        }
        later.sort();
        result.later = later.get(later.len() / 2).copied().unwrap_or_default();
        let dump: serde_json::Value = serde_json::from_str(&admin.get("admin", "/config_dump", &[]).await?.body)?;
        result.clusters = dump["clusters"].as_object().map_or(0, |c| c.len());
        result.rss_mib = proxy.pid().map_or(0.0, |pid| super::operator::memory_mib(pid).0);
        Ok(result)
    }
}

fn target_yaml(k: usize, backend: SocketAddr) -> String {
    let name = format!("probe-{k}");
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {TARGET_NAMESPACE}}}\n\
         spec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-1, namespace: {TARGET_NAMESPACE}, labels: {{app: {name}}}}}\n\
         spec: {{containers: [{{name: app, image: weft-echo, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
         status: {{podIP: {}}}\n",
        backend.port(),
        backend.ip()
    )
}
