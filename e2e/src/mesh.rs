//! A standalone mesh on loopback: a config directory, the operator reading it, two versions of the `reviews`
//! Service (echo backends on 127.0.10.1 and 127.0.10.2), and one client-side proxy. Pods are plain YAML here, as
//! standalone mode reads them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::binaries;
use crate::http_client::HttpClient;
use crate::net::{free_port, localhost, wait_for_port};
use crate::process::Process;
use crate::vip::Vip;

/// The Service the scenarios route to, as clients address it.
pub const HOST: &str = "reviews";
/// The versions behind it.
pub const VERSIONS: [&str; 2] = ["v1", "v2"];
const STARTUP: Duration = Duration::from_secs(15);

/// One operator replica and where it listens.
pub struct Operator {
    pub process: Process,
    pub xds: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub metrics: SocketAddr,
}

pub struct LocalMesh {
    dir: tempfile::TempDir,
    /// Operator replicas, all reading the same directory.
    pub operators: Vec<Operator>,
    /// With several replicas, the address proxies dial (forwarding to a live replica, like a Service); held for
    /// as long as the mesh lives.
    _vip: Option<Vip>,
    pub proxy: Process,
    pub backends: Vec<Process>,
    /// Where the backends listen (v1, v2): for measuring without the proxy.
    pub backend_addresses: Vec<SocketAddr>,
    /// The proxy's outbound listener: where the application sends requests.
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
    /// The xDS address the proxy dials.
    pub xds: SocketAddr,
}

impl LocalMesh {
    /// Starts everything with the canary at `weights` (v1, v2) and waits until traffic flows.
    pub async fn start(weights: [u32; 2]) -> anyhow::Result<Self> {
        Self::start_replicated(weights, 1).await
    }

    /// Like [`LocalMesh::start`], with `replicas` operators behind one address.
    pub async fn start_replicated(weights: [u32; 2], replicas: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("weft-mesh-").tempdir()?;
        let mut backends = Vec::new();
        let mut backend_addresses = Vec::new();
        for (i, version) in VERSIONS.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 10, i as u8 + 1));
            let address = free_port(ip)?;
            let args = ["--listen", &address.to_string(), "--name", HOST, "--version", version].map(String::from);
            let log = dir.path().join(format!("echo-{version}.log"));
            backends.push(Process::spawn(&format!("echo {version}"), &binaries::path("weft-echo")?, &args, &log)?);
            backend_addresses.push(address);
        }
        let config = dir.path().join("config");
        std::fs::create_dir(&config)?;
        std::fs::write(config.join("reviews.yaml"), reviews_yaml(&backend_addresses))?;
        std::fs::write(config.join("reviews-vs.yaml"), virtual_service_yaml(weights))?;
        let mut operators = Vec::new();
        for i in 0..replicas.max(1) {
            let (xds, metrics) = (free_port(localhost())?, free_port(localhost())?);
            operators.push(Operator { process: spawn_operator(&dir, i, xds, metrics)?, xds, metrics });
        }
        // Every replica listens before the proxy dials: behind the VIP it must reach the first one.
        for operator in &operators {
            wait_for_port(operator.xds, STARTUP).await?;
        }
        let vip =
            if operators.len() > 1 { Some(Vip::start(operators.iter().map(|o| o.xds).collect()).await?) } else { None };
        let xds = vip.as_ref().map_or(operators[0].xds, |v| v.address);
        let (proxy, outbound, admin) = spawn_proxy(&dir, "client", xds)?;
        for address in &backend_addresses {
            wait_for_port(*address, STARTUP).await?;
        }
        let mesh = Self { dir, operators, _vip: vip, proxy, backends, backend_addresses, outbound, admin, xds };
        mesh.wait_until_routing().await.with_context(|| mesh.diagnostics())?;
        Ok(mesh)
    }

    /// Starts another client proxy (pod `name`) dialling the mesh's xDS address; its process and outbound listener.
    pub fn spawn_proxy(&self, name: &str) -> anyhow::Result<(Process, SocketAddr)> {
        let (process, outbound, _admin) = spawn_proxy(&self.dir, name, self.xds)?;
        Ok((process, outbound))
    }

    /// The directory the operator reads.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Replaces a config file (see [`replace_config_file`]) and returns when it took place.
    pub fn write_config(&self, name: &str, content: &str) -> anyhow::Result<Instant> {
        replace_config_file(&self.config_dir(), name, content)
    }

    /// Moves the canary to `weights` (v1, v2).
    pub fn set_weights(&self, weights: [u32; 2]) -> anyhow::Result<Instant> {
        self.write_config("reviews-vs.yaml", &virtual_service_yaml(weights))
    }

    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.outbound)
    }

    /// The first operator replica's process.
    pub fn operator(&self) -> &Process {
        &self.operators[0].process
    }

    /// Kills the first operator replica (SIGKILL).
    pub fn kill_operator(&mut self) {
        self.operators[0].process.kill();
    }

    /// Starts the first operator replica again (after [`LocalMesh::kill_operator`]) on the same addresses.
    pub async fn restart_operator(&mut self) -> anyhow::Result<()> {
        let (xds, metrics) = (self.operators[0].xds, self.operators[0].metrics);
        self.operators[0].process = spawn_operator(&self.dir, 0, xds, metrics)?;
        wait_for_port(xds, STARTUP).await
    }

    /// Log tails of the control and data plane, for failure messages.
    pub fn diagnostics(&self) -> String {
        let operators: String = self
            .operators
            .iter()
            .map(|o| format!("--- {} log ---\n{}\n", o.process.name(), o.process.tail(30)))
            .collect();
        format!("{operators}--- proxy log ---\n{}", self.proxy.tail(30))
    }

    async fn wait_until_routing(&self) -> anyhow::Result<()> {
        let client = self.client();
        let until = Instant::now() + STARTUP;
        loop {
            if let Ok(reply) = client.get(HOST, "/", &[]).await
                && reply.is_success()
                && reply.version.is_some()
            {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < until, "no successful request through the proxy within {STARTUP:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Replaces `dir/name` the way editors and `kubectl`-like tools do (write a hidden file aside, which the operator
/// ignores, then rename it into place), so the operator never reads half a file; returns when it took place.
pub fn replace_config_file(dir: &std::path::Path, name: &str, content: &str) -> anyhow::Result<Instant> {
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, content)?;
    std::fs::rename(&aside, dir.join(name))?;
    Ok(Instant::now())
}

/// A client proxy for pod `name` in `default`: the process, its outbound and admin listeners.
fn spawn_proxy(
    dir: &tempfile::TempDir,
    name: &str,
    xds: SocketAddr,
) -> anyhow::Result<(Process, SocketAddr, SocketAddr)> {
    let (outbound, admin) = (free_port(localhost())?, free_port(localhost())?);
    let args = [
        "--xds-address".to_string(),
        format!("http://{xds}"),
        "--pod-name".into(),
        name.into(),
        "--pod-namespace".into(),
        "default".into(),
        "--outbound-listen".into(),
        outbound.to_string(),
        "--admin-listen".into(),
        admin.to_string(),
    ];
    let log = dir.path().join(format!("proxy-{name}.log"));
    let process = Process::spawn(&format!("proxy {name}"), &binaries::path("weft-proxy")?, &args, &log)?;
    Ok((process, outbound, admin))
}

fn spawn_operator(
    dir: &tempfile::TempDir,
    replica: usize,
    xds: SocketAddr,
    metrics: SocketAddr,
) -> anyhow::Result<Process> {
    let args = [
        "--config-dir".to_string(),
        dir.path().join("config").display().to_string(),
        "--xds-listen".into(),
        xds.to_string(),
        "--metrics-listen".into(),
        metrics.to_string(),
    ];
    let log = dir.path().join(format!("operator-{replica}.log"));
    Process::spawn(&format!("operator-{replica}"), &binaries::path("weft-operator")?, &args, &log)
}

/// The `reviews` Service, one pod per version (standalone mode reads pods from YAML) and the subsets.
pub fn reviews_yaml(backends: &[SocketAddr]) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n\
         spec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    for (version, address) in VERSIONS.iter().zip(backends) {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: reviews-{version}, namespace: default, labels: {{app: reviews, version: {version}}}}}\n\
             spec: {{containers: [{{name: app, image: weft-echo, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
             status: {{podIP: {}}}\n",
            address.port(),
            address.ip()
        );
    }
    yaml += "---\n";
    yaml += DESTINATION_RULE_YAML;
    yaml
}

/// The routing rules of the scenarios: requests with `x-debug: 1` go to v2, those with `x-bench: policies` to v1
/// through a route with retries and header operations, those with `x-bench: guarded` to v1 through a cluster with
/// outlier detection and a connection pool (the benchmark's policy rows), the rest split at `weights` (v1, v2).
pub fn virtual_service_yaml(weights: [u32; 2]) -> String {
    format!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
         spec:\n  hosts: [reviews]\n  http:\n\
         \x20 - name: debug\n    match:\n    - headers: {{x-debug: {{exact: \"1\"}}}}\n    route:\n\
         \x20   - destination: {{host: reviews, subset: v2}}\n\
         \x20 - name: policies\n    match:\n    - headers: {{x-bench: {{exact: policies}}}}\n    route:\n\
         \x20   - destination: {{host: reviews, subset: v1}}\n\
         \x20   retries: {{attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,connect-failure\"}}\n\
         \x20   headers:\n      request: {{set: {{x-env: bench}}, add: {{x-trace: weft}}, remove: [x-internal]}}\n\
         \x20     response: {{set: {{x-served-by: weft}}}}\n\
         \x20 - name: guarded\n    match:\n    - headers: {{x-bench: {{exact: guarded}}}}\n    route:\n\
         \x20   - destination: {{host: reviews, subset: v1-guarded}}\n\
         \x20 - name: canary\n    route:\n\
         \x20   - destination: {{host: reviews, subset: v1}}\n      weight: {}\n\
         \x20   - destination: {{host: reviews, subset: v2}}\n      weight: {}\n",
        weights[0], weights[1]
    )
}

/// The subsets the rules use.
pub const DESTINATION_RULE_YAML: &str = concat!(
    "apiVersion: networking.weft.dev/v1alpha1\n",
    "kind: DestinationRule\n",
    "metadata: {name: reviews}\n",
    "spec:\n",
    "  host: reviews\n",
    "  subsets:\n",
    "  - {name: v1, labels: {version: v1}}\n",
    "  - {name: v2, labels: {version: v2}}\n",
    "  - name: v1-guarded\n",
    "    labels: {version: v1}\n",
    "    trafficPolicy:\n",
    "      connectionPool: {tcp: {maxConnections: 1000}, http: {http1MaxPendingRequests: 1000, http2MaxRequests: 1000}}\n",
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n",
);

impl crate::canary::RolloutTarget for LocalMesh {
    async fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<Instant> {
        self.write_config(name, yaml)
    }

    async fn client_config_dump(&self) -> anyhow::Result<String> {
        Ok(HttpClient::new(self.admin).get("localhost", "/config_dump", &[]).await?.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_rules_are_the_yaml_they_mean() {
        let dr: serde_json::Value = serde_saphyr::from_str(DESTINATION_RULE_YAML).unwrap();
        assert_eq!(dr["spec"]["subsets"][1]["labels"]["version"], "v2");
        let vs: serde_json::Value = serde_saphyr::from_str(&virtual_service_yaml([90, 10])).unwrap();
        let http = &vs["spec"]["http"];
        assert_eq!(http[0]["match"][0]["headers"]["x-debug"]["exact"], "1");
        assert_eq!(http[1]["retries"]["attempts"], 3);
        assert_eq!(http[2]["route"][0]["destination"]["subset"], "v1-guarded");
        assert_eq!(http[3]["route"][0]["weight"], 90);
        assert_eq!(http[3]["route"][1]["destination"]["subset"], "v2");
        assert!(dr["spec"]["subsets"][2]["trafficPolicy"]["outlierDetection"].is_object());
    }
}
