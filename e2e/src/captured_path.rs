//! The benchmark's transparent path (root only): pods as network namespaces captured by `weft-proxy init`'s
//! iptables rules, their sidecars run exactly as the webhook injects them (`--transparent`, UID 1337, mutual TLS
//! from the operator's CA), and requests sent from inside the client pod as its application would send them. Three
//! pods: `client` (a sidecar; port [`UNCAPTURED_PORT`] excluded from its outbound capture), `server` (a sidecar,
//! everything inbound captured) and `plain` (no sidecar). Each of [`Path`]'s routes through them crosses the same
//! veth pairs and bridge, so the direct one is the baseline of the others.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path as FsPath;
use std::time::Duration;

use anyhow::Context;

use crate::binaries;
use crate::http_client::{HttpClient, Protocol};
use crate::netns::{Lab, Pod};
use crate::netns_mesh::MeshIdentity;
use crate::process::Process;
use crate::sidecar::Sidecars;

/// The port Services name and sidecars capture.
const SERVICE_PORT: u16 = 9080;
/// The port the client pod's outbound capture leaves alone: requests to it go straight out of the pod.
pub const UNCAPTURED_PORT: u16 = 9081;
/// Cluster IPs nobody owns: the client's sidecar catches connections to them.
const SERVER_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 78, 10);
const PLAIN_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 78, 11);

/// One way a request from the client pod's application reaches an echo app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// To the `plain` pod on the uncaptured port: no proxy anywhere.
    Direct,
    /// To the `plain` Service: the client's sidecar only (original destination from `SO_ORIGINAL_DST`, plaintext
    /// on, as to any endpoint without a sidecar).
    Outbound,
    /// To the `server` pod's address on the uncaptured port: the server's sidecar only (a plaintext caller,
    /// accepted under the default `PERMISSIVE` mode).
    Inbound,
    /// To the `server` Service: the client's sidecar, mutual TLS, the server's sidecar.
    Both,
}

impl Path {
    /// The `Host` requests on this path name: the Service they go to (the client's sidecar routes by it, as
    /// Istio's do on a port several Services share); the echo apps answer any.
    pub fn host(self) -> &'static str {
        match self {
            Path::Direct | Path::Outbound => "plain",
            Path::Inbound | Path::Both => "server",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Path::Direct => "direct (not captured)",
            Path::Outbound => "outbound capture only",
            Path::Inbound => "inbound capture only",
            Path::Both => "both sidecars, mTLS",
        }
    }
}

pub struct CapturedPaths {
    /// Echo apps and sidecars; dropped (killed) before the namespaces.
    processes: Vec<Process>,
    pub client_sidecar: Process,
    pub server_sidecar: Process,
    operator: Process,
    client: Pod,
    server: Pod,
    plain: Pod,
    _lab: Lab,
    _dir: tempfile::TempDir,
}

impl CapturedPaths {
    /// Builds the three pods, installs capture, starts the operator, apps and sidecars, and waits until both
    /// sidecars are ready.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("weft-bench-captured-").tempdir()?;
        let lab = Lab::new()?;
        let identity = MeshIdentity::prepare(dir.path(), &lab)?;
        let sidecars = identity.sidecars(dir.path(), &lab)?;
        let (client, server, plain) = (lab.pod("client")?, lab.pod("server")?, lab.pod("plain")?);
        std::fs::create_dir(dir.path().join("config"))?;
        std::fs::write(dir.path().join("config/cluster.yaml"), cluster_yaml(&client, &server, &plain))?;
        let operator = identity.start_operator(&lab, dir.path())?;
        let mut processes = Vec::new();
        for pod in [&server, &plain] {
            for port in [SERVICE_PORT, UNCAPTURED_PORT] {
                processes.push(spawn_echo(pod, port, dir.path())?);
            }
        }
        sidecars.init(&server.ns, &[])?;
        sidecars.init(&client.ns, &["--exclude-outbound-ports", &UNCAPTURED_PORT.to_string()])?;
        let xds = lab.xds_address();
        let server_sidecar = sidecars.start(&server, "default", xds, &dir.path().join("server-proxy.log"))?;
        let client_sidecar = sidecars.start(&client, "default", xds, &dir.path().join("client-proxy.log"))?;
        let paths =
            Self { processes, client_sidecar, server_sidecar, operator, client, server, plain, _lab: lab, _dir: dir };
        paths.wait_ready(&sidecars).await.with_context(|| paths.diagnostics())?;
        Ok(paths)
    }

    async fn wait_ready(&self, sidecars: &Sidecars) -> anyhow::Result<()> {
        for echo in &self.processes {
            echo.wait_for_output("listening on", Duration::from_secs(30)).await?;
        }
        for pod in [&self.server, &self.client] {
            sidecars.wait_ready(&pod.ns).await?;
        }
        Ok(())
    }

    /// A client in the client pod's namespace sending every request along `path`.
    pub fn client(&self, path: Path, protocol: Protocol) -> HttpClient {
        let to = |ip: Ipv4Addr, port| SocketAddr::new(IpAddr::V4(ip), port);
        let target = match path {
            Path::Direct => to(self.plain.ip, UNCAPTURED_PORT),
            Path::Outbound => to(PLAIN_SERVICE_IP, SERVICE_PORT),
            Path::Inbound => to(self.server.ip, UNCAPTURED_PORT),
            Path::Both => to(SERVER_SERVICE_IP, SERVICE_PORT),
        };
        HttpClient::from_namespace(protocol, target, self.client.ns.name())
    }

    /// The echo apps, which a bench pins away from the sidecars.
    pub fn apps(&self) -> impl Iterator<Item = &Process> {
        self.processes.iter()
    }

    /// The last lines of every process's output, for a failure's message.
    pub fn diagnostics(&self) -> String {
        [&self.operator, &self.client_sidecar, &self.server_sidecar]
            .into_iter()
            .chain(&self.processes)
            .map(|p| format!("--- {} ---\n{}\n", p.name(), p.tail(20)))
            .collect()
    }
}

fn spawn_echo(pod: &Pod, port: u16, dir: &FsPath) -> anyhow::Result<Process> {
    let args = [
        binaries::path("weft-echo")?.display().to_string(),
        "--listen".into(),
        SocketAddr::new(IpAddr::V4(pod.ip), port).to_string(),
        "--name".into(),
        pod.name.clone(),
    ];
    pod.ns.spawn(&format!("echo {} {port}", pod.name), &args, &dir.join(format!("echo-{}-{port}.log", pod.name)))
}

/// What a cluster would hold: the `server` and `plain` Services with their cluster IPs, and the three pods (the
/// client and server labelled as running a sidecar, so the client's sidecar originates mutual TLS to the server).
fn cluster_yaml(client: &Pod, server: &Pod, plain: &Pod) -> String {
    let service = |name: &str, ip: Ipv4Addr| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  clusterIP: {ip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {SERVICE_PORT}, targetPort: {SERVICE_PORT}}}]\n"
        )
    };
    let pod = |pod: &Pod, meshed: bool| {
        let mode = if meshed { ", security.weft.dev/tlsMode: weft" } else { "" };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {0}, namespace: default, labels: {{app: {0}{mode}}}}}\n\
             spec: {{containers: [{{name: app, image: weft-echo}}]}}\nstatus: {{podIP: {1}}}\n",
            pod.name, pod.ip
        )
    };
    [
        service("server", SERVER_SERVICE_IP),
        service("plain", PLAIN_SERVICE_IP),
        pod(server, true),
        pod(plain, false),
        pod(client, true),
    ]
    .join("---\n")
}
