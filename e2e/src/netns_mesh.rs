//! The e2e suite's local backend: pods as network namespaces on this machine (root only), each captured by the
//! rules of `weft-proxy init` and running the sidecar as UID 1337, as the webhook injects it; the operator runs in
//! standalone mode on the "node" from the same YAML kinds a cluster has. The client pod calls the `reviews`
//! Service by a virtual cluster IP, as an application resolving `reviews` would.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::binaries;
use crate::canary::RolloutTarget;
use crate::mesh::{VERSIONS, replace_config_file};
use crate::netns::{Lab, Pod};
use crate::process::Process;
use crate::remote_load::RemoteLoad;
use crate::scenario::MeshUnderTest;
use crate::sidecar::{Sidecars, metric_sum, scrape};

/// The `reviews` Service as clients address it: a cluster IP nobody owns (the client's proxy catches it).
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 10);
const SERVICE_PORT: u16 = 9080;
/// Service `reviews-raw`: the same pods on a port not declared HTTP, so client sidecars detect its protocol.
const RAW_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 11);
const RAW_SERVICE_PORT: u16 = 7070;
const STARTUP: Duration = Duration::from_secs(30);

pub struct NetnsMesh {
    operator: Process,
    /// Echo apps and sidecars; dropped (killed) before the namespaces.
    processes: Vec<Process>,
    client: Pod,
    reviews: Vec<Pod>,
    lab: Lab,
    xds: SocketAddr,
    sidecars: Sidecars,
    dir: tempfile::TempDir,
    identity: MeshIdentity,
}

/// Mutual TLS for the lab: the operator's CA directory and flags, and the one workload token every pod's
/// sidecar presents (all pods run as the `default` service account).
pub(crate) struct MeshIdentity {
    operator_args: Vec<String>,
    bundle: PathBuf,
    token: PathBuf,
}

impl MeshIdentity {
    pub(crate) fn prepare(dir: &Path, lab: &Lab) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let tokens = dir.join("tokens/default");
        std::fs::create_dir_all(&tokens)?;
        let token = tokens.join("default");
        std::fs::write(&token, format!("e2e-{}", std::process::id()))?;
        // The sidecars run as UID 1337: the token must be readable by it (a projected token is, in a pod).
        for path in [dir.join("tokens"), tokens.clone()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644))?;
        let ca = dir.join("ca");
        let operator_args = [
            "--ca-dir",
            &ca.display().to_string(),
            "--workload-tokens",
            &dir.join("tokens").display().to_string(),
            "--secure-listen",
            &lab.secure_address().to_string(),
            "--serving-names",
            &lab.node_ip().to_string(),
        ]
        .map(String::from)
        .into();
        Ok(Self { operator_args, bundle: ca.join("root-cert.pem"), token })
    }

    /// Sidecars (their binary copied into `dir`) that get their certificates from this mesh's operator.
    pub(crate) fn sidecars(&self, dir: &Path, lab: &Lab) -> anyhow::Result<Sidecars> {
        let ca = format!("https://{}", lab.secure_address());
        Ok(Sidecars::prepare(dir)?.with_identity(&ca, &self.bundle, &self.token))
    }

    /// The operator on the node with this CA, reading `dir/config` and logging to `dir/operator.log`.
    pub(crate) fn start_operator(&self, lab: &Lab, dir: &Path) -> anyhow::Result<Process> {
        lab.start_operator_with(&dir.join("config"), &dir.join("operator.log"), &self.operator_args)
    }
}

impl NetnsMesh {
    /// Builds the pods, installs capture, starts everything and waits until every sidecar is ready.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("weft-e2e-").tempdir()?;
        let lab = Lab::new()?;
        let identity = MeshIdentity::prepare(dir.path(), &lab)?;
        let sidecars = identity.sidecars(dir.path(), &lab)?;
        let client = lab.pod("client")?;
        let reviews = VERSIONS.iter().map(|v| lab.pod(&format!("reviews-{v}"))).collect::<anyhow::Result<Vec<_>>>()?;
        std::fs::create_dir(dir.path().join("config"))?;
        std::fs::write(dir.path().join("config/cluster.yaml"), cluster_yaml(&client, &reviews))?;
        let xds = lab.xds_address();
        let operator = identity.start_operator(&lab, dir.path())?;
        let mut processes = Vec::new();
        for (pod, version) in reviews.iter().zip(VERSIONS) {
            sidecars.init(&pod.ns, &[])?;
            processes.push(spawn_echo(pod, version, dir.path())?);
        }
        sidecars.init(&client.ns, &[])?;
        for pod in reviews.iter().chain([&client]) {
            processes.push(sidecars.start(pod, "default", xds, &dir.path().join(format!("{}-proxy.log", pod.name)))?);
        }
        let mesh = Self { operator, processes, client, reviews, lab, xds, sidecars, dir, identity };
        mesh.wait_ready().await.with_context(|| mesh.diagnostics())?;
        Ok(mesh)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for echo in self.processes.iter().filter(|p| p.name().starts_with("echo")) {
            echo.wait_for_output("listening on", STARTUP).await?;
        }
        for pod in self.reviews.iter().chain([&self.client]) {
            self.sidecars.wait_ready(&pod.ns).await?;
        }
        Ok(())
    }

    /// Connections from the client to the `reviews` cluster IP, one request each: how many each version answered.
    /// Each is a new connection, so a TCP route's weights show per connection.
    pub async fn versions_per_connection(&self, connections: usize) -> anyhow::Result<[usize; 2]> {
        self.versions_answering(SocketAddr::new(IpAddr::V4(SERVICE_IP), SERVICE_PORT), connections).await
    }

    /// Requests from the client to the `reviews` pod of `version` (index in [`VERSIONS`]) by its own address, with
    /// `Host: reviews`: how many each version answered.
    pub async fn versions_from_pod_address(&self, version: usize, requests: usize) -> anyhow::Result<[usize; 2]> {
        let pod = self.reviews.get(version).context("no such version")?;
        self.versions_answering(SocketAddr::new(IpAddr::V4(pod.ip), SERVICE_PORT), requests).await
    }

    async fn versions_answering(&self, to: SocketAddr, connections: usize) -> anyhow::Result<[usize; 2]> {
        let mut counts = [0; 2];
        for _ in 0..connections {
            let (status, headers, _) = self.client.ns.http_get(to, "reviews", "/", Duration::from_secs(5)).await?;
            anyhow::ensure!(status == 200, "reviews answered {status}");
            let version = headers.get("x-echo-version").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let index = VERSIONS.iter().position(|v| *v == version).context("an answer without a known version")?;
            counts[index] += 1;
        }
        Ok(counts)
    }

    /// The status a request from the client to the `reviews` pod of `version` (index in [`VERSIONS`]) by its own
    /// address gets, with a `Host` no Service answers to (as a client of a headless Service's pod may send).
    pub async fn status_from_pod_address(&self, version: usize, host: &str) -> anyhow::Result<u16> {
        let pod = self.reviews.get(version).context("no such version")?;
        let to = SocketAddr::new(IpAddr::V4(pod.ip), SERVICE_PORT);
        Ok(self.client.ns.http_get(to, host, "/", Duration::from_secs(5)).await?.0.as_u16())
    }

    /// Opens a connection from the client to the `reviews` cluster IP, sends `first_bytes` (a TLS ClientHello,
    /// say), and returns the index in [`VERSIONS`] of the pod whose proxy took the connection inbound.
    pub async fn version_taking(&self, first_bytes: &[u8]) -> anyhow::Result<usize> {
        use tokio::io::AsyncWriteExt;
        let before = self.inbound_connections().await?;
        let to = SocketAddr::new(IpAddr::V4(SERVICE_IP), SERVICE_PORT);
        let mut stream = self.client.ns.connect(to, Duration::from_secs(5)).await?;
        stream.write_all(first_bytes).await?;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let after = self.inbound_connections().await?;
            if let Some(index) = (0..VERSIONS.len()).find(|i| after[*i] > before[*i]) {
                return Ok(index);
            }
            anyhow::ensure!(Instant::now() < until, "no reviews pod took the connection within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request the client sends to the `reviews-raw` cluster IP only once its sidecar's protocol detection has
    /// given up on the silent connection, so the sidecar forwards it as TCP: the answer's status and the version
    /// that answered. The cluster IP is nobody's: only a sidecar sending it to an endpoint gets an answer.
    pub async fn late_request_over_tcp(&self) -> anyhow::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let to = SocketAddr::new(IpAddr::V4(RAW_SERVICE_IP), RAW_SERVICE_PORT);
        let mut stream = self.client.ns.connect(to, Duration::from_secs(5)).await?;
        tokio::time::sleep(weft_xds::detection::DETECTION_TIMEOUT * 2).await;
        stream.write_all(b"GET /raw HTTP/1.1\r\nHost: reviews-raw\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .context("no answer within 5 s")??;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).context("no status line")?;
        let version =
            answer.lines().find_map(|line| line.strip_prefix("x-echo-version: ")).unwrap_or_default().to_string();
        Ok((status, version))
    }

    /// TCP connections the `reviews` sidecars forwarded inbound, counted under the Service `service` names
    /// (`unknown` when they could not tell).
    pub async fn inbound_tcp_for(&self, service: &str) -> anyhow::Result<f64> {
        let labels = [("reporter", "destination"), ("destination_service_name", service)];
        let mut total = 0.0;
        for pod in &self.reviews {
            total += metric_sum(&scrape(&self.lab.node, pod).await?, "weft_tcp_connections_opened_total", &labels);
        }
        Ok(total)
    }

    async fn inbound_connections(&self) -> anyhow::Result<Vec<f64>> {
        let mut counts = Vec::new();
        for pod in &self.reviews {
            let metrics = scrape(&self.lab.node, pod).await?;
            counts.push(metric_sum(&metrics, "weft_proxy_tcp_connections_total", &[("direction", "inbound")]));
        }
        Ok(counts)
    }

    /// Mutual TLS handshakes the reviews pods' sidecars accepted, in total.
    pub async fn inbound_mutual_tls_handshakes(&self) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for pod in &self.reviews {
            let metrics = scrape(&self.lab.node, pod).await?;
            let labels = [("direction", "inbound"), ("result", "ok")];
            total += metric_sum(&metrics, "weft_proxy_tls_handshakes_total", &labels);
        }
        Ok(total)
    }

    /// A plaintext GET from the node, which runs no sidecar, straight to the first reviews pod: whether the
    /// application answered.
    pub async fn answers_plaintext_from_outside(&self) -> bool {
        self.status_from_outside().await == Some(200)
    }

    /// The status a plaintext request from outside the mesh (the node) to a `reviews` pod gets; `None` when the
    /// connection gets no answer.
    pub async fn status_from_outside(&self) -> Option<u16> {
        let to = SocketAddr::new(IpAddr::V4(self.reviews[0].ip), SERVICE_PORT);
        self.lab
            .node
            .http_get(to, "reviews", "/", Duration::from_secs(2))
            .await
            .ok()
            .map(|(status, _, _)| status.as_u16())
    }

    /// The status the client's request to the `reviews` Service gets through its sidecar.
    pub async fn status_from_client(&self, path: &str) -> anyhow::Result<u16> {
        let to = SocketAddr::new(IpAddr::V4(SERVICE_IP), SERVICE_PORT);
        Ok(self.client.ns.http_get(to, "reviews", path, Duration::from_secs(5)).await?.0.as_u16())
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
}

impl RolloutTarget for NetnsMesh {
    async fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<Instant> {
        replace_config_file(&self.config_dir(), name, yaml)
    }

    async fn client_config_dump(&self) -> anyhow::Result<String> {
        let admin = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
        let (status, _, body) =
            self.client.ns.http_get(admin, "localhost", "/config_dump", Duration::from_secs(5)).await?;
        anyhow::ensure!(status == 200, "config_dump: {status}");
        Ok(body)
    }
}

impl MeshUnderTest for NetnsMesh {
    async fn start_load(&self, extra: &[&str]) -> anyhow::Result<RemoteLoad> {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", self.client.ns.name()]).arg(binaries::path("weft-load")?).args([
            "--url",
            &format!("http://{SERVICE_IP}:{SERVICE_PORT}/"),
            "--host",
            "reviews",
            "--concurrency",
            "2",
            "--until-stdin-closes",
        ]);
        command.args(extra);
        RemoteLoad::spawn(command)
    }

    async fn proxied_counts(&self) -> anyhow::Result<(f64, f64)> {
        let client = scrape(&self.lab.node, &self.client).await?;
        let outbound = metric_sum(&client, "weft_proxy_requests_total", &[("direction", "outbound")]);
        let mut inbound = 0.0;
        for pod in &self.reviews {
            let metrics = scrape(&self.lab.node, pod).await?;
            inbound += metric_sum(&metrics, "weft_proxy_tcp_connections_total", &[("direction", "inbound")]);
        }
        Ok((outbound, inbound))
    }

    async fn restart_operator(&mut self) -> anyhow::Result<()> {
        self.operator.kill();
        self.operator = self.identity.start_operator(&self.lab, self.dir.path())?;
        let until = Instant::now() + STARTUP;
        while self.lab.node.connect(self.xds, Duration::from_millis(200)).await.is_err() {
            anyhow::ensure!(Instant::now() < until, "the operator did not come back within {STARTUP:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn diagnostics(&self) -> String {
        std::iter::once(&self.operator)
            .chain(&self.processes)
            .map(|p| format!("--- {} ---\n{}\n", p.name(), p.tail(20)))
            .collect()
    }
}

fn spawn_echo(pod: &Pod, version: &str, dir: &Path) -> anyhow::Result<Process> {
    let args = [
        binaries::path("weft-echo")?.display().to_string(),
        "--listen".into(),
        SocketAddr::new(IpAddr::V4(pod.ip), SERVICE_PORT).to_string(),
        "--name".into(),
        "reviews".into(),
        "--version".into(),
        version.into(),
    ];
    pod.ns.spawn(&format!("echo {version}"), &args, &dir.join(format!("echo-{version}.log")))
}

/// What a cluster would hold: the `reviews` Service (with its cluster IP), `reviews-raw` on the same pods, the
/// pods, and the client pod.
fn cluster_yaml(client: &Pod, reviews: &[Pod]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: default}}\n\
         spec:\n  clusterIP: {SERVICE_IP}\n  selector: {{app: reviews}}\n  ports: [{{name: http, port: {SERVICE_PORT}, targetPort: http}}]\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: reviews-raw, namespace: default}}\n\
         spec:\n  clusterIP: {RAW_SERVICE_IP}\n  selector: {{app: reviews}}\n  ports: [{{name: raw, port: {RAW_SERVICE_PORT}, targetPort: http}}]\n"
    );
    for (pod, version) in reviews.iter().zip(VERSIONS) {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: default, labels: {{app: reviews, version: {version}, security.weft.dev/tlsMode: weft}}}}\n\
             spec: {{containers: [{{name: app, image: weft-echo, ports: [{{name: http, containerPort: {SERVICE_PORT}}}]}}]}}\n\
             status: {{podIP: {}}}\n",
            pod.name, pod.ip
        );
    }
    yaml += &format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: default, labels: {{app: client, security.weft.dev/tlsMode: weft}}}}\n\
         spec: {{containers: [{{name: app, image: weft-load}}]}}\nstatus: {{podIP: {}}}\n",
        client.ip
    );
    yaml
}
