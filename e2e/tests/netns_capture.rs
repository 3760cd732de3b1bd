//! Tier 3: transparent capture with real iptables, in network namespaces (root only; skipped with a reason
//! otherwise). Two pods, `client` and `server`, each get `weft-proxy init` rules and a `weft-proxy run
//! --transparent` sidecar running as UID 1337, exactly as the webhook injects them; the operator runs in the "node"
//! namespace from YAML. The client talks to the server's pod IP directly, as an application would, and the
//! proxies' `/metrics` (scraped from the node, like Prometheus or kubelet) show which path each connection took.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_e2e::binaries;
use weft_e2e::netns::{self, Lab, Netns, Pod};
use weft_e2e::process::Process;
use weft_e2e::sidecar::{Sidecars, metric_sum, scrape};

const HTTP_PORT: u16 = 8080;
/// A port Service `web` declares HTTP on (`http-web`): served as HTTP without detection.
const DECLARED_HTTP_PORT: u16 = 8081;
/// A mesh port (Service `tcp-echo`) whose server speaks first.
const TCP_MESH_PORT: u16 = 9000;
const TCP_SERVICE: &str = "tcp-echo";
/// `tcp-echo`'s cluster IP: nobody has it, as in a cluster only kube-proxy's rules do.
const TCP_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 90, 0);
/// No Service: not a mesh port.
const TCP_OTHER_PORT: u16 = 9001;
/// A port Service `db` declares TCP on (`mysql`), whose server speaks first.
const DECLARED_TCP_PORT: u16 = 9002;
/// `db`'s cluster IP.
const DB_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 90, 1);
/// A port Service `store`, in namespace `data`, declares nothing on (`p9003`): outside the client's proxy's scope.
const UNDECLARED_PORT: u16 = 9003;
/// `store`'s cluster IP.
const STORE_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 90, 2);
/// The port of headless Service `brokers`, in namespace `data`, declaring nothing (`p9004`): its pods are dialled
/// by address, and no proxy of another namespace holds it.
const HEADLESS_PORT: u16 = 9004;
/// The port Service `api`, in namespace `data`, declares HTTP on (`http-api`), forwarding to the server pod's
/// echo: outside the client's proxy's scope.
const API_PORT: u16 = 8082;
/// `api`'s cluster IP.
const API_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 90, 3);
const API_CLUSTER: &str = "outbound|8082||api.data.svc.cluster.local";
/// Excluded from capture on both sides.
const EXCLUDED_PORT: u16 = 5432;
const GREETING: &[u8] = b"hello from 9000\n";
const STEP: Duration = Duration::from_secs(5);
const STARTUP: Duration = Duration::from_secs(30);
const ECHO_CLUSTER: &str = "outbound|8080||echo.default.svc.cluster.local";
const WEB_CLUSTER: &str = "outbound|8081||web.default.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_capture_between_two_pods() -> anyhow::Result<()> {
    if let Err(reason) = netns::preflight() {
        eprintln!("skipping: {reason}");
        return Ok(());
    }
    let mesh = Mesh::start().await?;
    let mut traffic = Traffic { last: Scrape::take(&mesh).await?, mesh: &mesh, report: String::new() };
    let steps = async {
        traffic.http_by_service_name().await?;
        traffic.http_by_pod_ip().await?;
        traffic.http_to_a_cluster_ip_out_of_scope().await?;
        traffic.http_from_a_client_that_waits().await?;
        traffic.http_from_a_silent_client_without_sidecar().await?;
        traffic.tcp_to_a_cluster_ip().await?;
        traffic.tcp_on_a_mesh_port().await?;
        traffic.tcp_on_a_declared_port().await?;
        traffic.tcp_to_a_cluster_ip_out_of_scope().await?;
        traffic.tcp_to_a_pod_out_of_scope().await?;
        traffic.tcp_on_another_port().await?;
        traffic.tcp_on_an_excluded_port().await
    };
    steps.await.with_context(|| mesh.diagnostics())?;
    println!(
        "netns capture: client {} -> server {}, operator {}; init twice gave the same nat table\n{}",
        mesh.client.ip, mesh.server.ip, mesh.xds, traffic.report
    );
    Ok(())
}

/// Two pods with rules and sidecars, the server's applications, the operator on the node. Fields drop in order:
/// processes first, then the pods' namespaces, then the node's, then the files.
struct Mesh {
    processes: Vec<Process>,
    _tcp_servers: Vec<AbortOnDrop>,
    client: Pod,
    server: Pod,
    lab: Lab,
    xds: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mesh {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("weft-netns-").tempdir()?;
        let sidecars = Sidecars::prepare(dir.path())?;
        let lab = Lab::new()?;
        let (client, server) = (lab.pod("client")?, lab.pod("server")?);
        let xds = lab.xds_address();
        let mut processes = vec![start_operator(&lab, dir.path(), &client, &server)?];
        install_rules(&client, &server, &sidecars)?;
        let (echoes, tcp_servers) = start_server_apps(&server, dir.path())?;
        processes.extend(echoes);
        for pod in [&client, &server] {
            let log = dir.path().join(format!("{}-proxy.log", pod.name));
            processes.push(sidecars.start(pod, "default", xds, &log)?);
        }
        let mesh = Self { processes, _tcp_servers: tcp_servers, client, server, lab, xds, _dir: dir };
        mesh.wait_until_ready(&sidecars).await.with_context(|| mesh.diagnostics())?;
        Ok(mesh)
    }

    async fn wait_until_ready(&self, sidecars: &Sidecars) -> anyhow::Result<()> {
        for process in self.processes.iter().filter(|p| p.name() == "echo") {
            process.wait_for_output("listening on", STARTUP).await?;
        }
        for pod in [&self.client, &self.server] {
            sidecars.wait_ready(&pod.ns).await?;
        }
        Ok(())
    }

    fn to_server(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.server.ip), port)
    }

    /// What the client's sidecar does with a new connection to `port` (`/config_dump`, admin on the pod's
    /// localhost): `off`, `tcp`, or a detection time limit.
    async fn client_listener_detection(&self, port: u16) -> anyhow::Result<String> {
        let admin = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);
        let (status, _, body) = self.client.ns.http_get(admin, "localhost", "/config_dump", STEP).await?;
        anyhow::ensure!(status == 200, "config_dump: {status}");
        let dump: serde_json::Value = serde_json::from_str(&body)?;
        let detection = &dump["listeners"][format!("0.0.0.0_{port}")]["detection"];
        Ok(detection.as_str().map_or_else(|| detection.to_string(), str::to_string))
    }

    fn diagnostics(&self) -> String {
        self.processes.iter().map(|p| format!("--- {} ---\n{}\n", p.name(), p.tail(25))).collect()
    }
}

/// The operator on the node, reading the Services and both pods from YAML.
fn start_operator(lab: &Lab, dir: &Path, client: &Pod, server: &Pod) -> anyhow::Result<Process> {
    std::fs::create_dir(dir.join("config"))?;
    std::fs::write(dir.join("config/mesh.yaml"), mesh_yaml(client, server))?;
    lab.start_operator(&dir.join("config"), &dir.join("operator.log"))
}

/// `weft-proxy init` in both pods (port 5432 excluded outbound on the client and inbound on the server), and a
/// second run on the client that must leave the nat table as it was.
fn install_rules(client: &Pod, server: &Pod, sidecars: &Sidecars) -> anyhow::Result<()> {
    let client_rules = sidecars.init(&client.ns, &["--exclude-outbound-ports", "5432"])?;
    let server_rules = sidecars.init(&server.ns, &["--exclude-inbound-ports", "5432"])?;
    anyhow::ensure!(client_rules.contains("-A WEFT_OUTPUT -p tcp --dport 5432 -j RETURN"), "{client_rules}");
    anyhow::ensure!(server_rules.contains("-A WEFT_INBOUND -p tcp --dport 5432 -j RETURN"), "{server_rules}");
    init_twice_changes_nothing(&client.ns, sidecars)
}

/// weft-echo on :8080 and :8081 and TCP echo servers on :9000, :9002 and :9004 (greeting first), :9001 and :5432,
/// in the server pod.
fn start_server_apps(server: &Pod, dir: &Path) -> anyhow::Result<(Vec<Process>, Vec<AbortOnDrop>)> {
    let mut echoes = Vec::new();
    for (name, port) in [("echo", HTTP_PORT), ("web", DECLARED_HTTP_PORT)] {
        let args = [
            binaries::path("weft-echo")?.display().to_string(),
            "--listen".into(),
            SocketAddr::new(IpAddr::V4(server.ip), port).to_string(),
            "--name".into(),
            name.into(),
        ];
        echoes.push(server.ns.spawn("echo", &args, &dir.join(format!("{name}.log")))?);
    }
    let tcp = vec![
        serve_tcp(server, TCP_MESH_PORT, Some(GREETING))?,
        serve_tcp(server, TCP_OTHER_PORT, None)?,
        serve_tcp(server, DECLARED_TCP_PORT, Some(GREETING))?,
        serve_tcp(server, HEADLESS_PORT, Some(GREETING))?,
        serve_tcp(server, EXCLUDED_PORT, None)?,
    ];
    Ok((echoes, tcp))
}

/// The client's traffic, one kind per step, each checked against both proxies' counters.
struct Traffic<'a> {
    mesh: &'a Mesh,
    last: Scrape,
    report: String,
}

impl Traffic<'_> {
    /// Counter changes since the previous call.
    async fn delta(&mut self) -> anyhow::Result<Delta> {
        let now = Scrape::take(self.mesh).await?;
        Ok(Delta { before: std::mem::replace(&mut self.last, now.clone()), after: now })
    }

    async fn http_by_service_name(&mut self) -> anyhow::Result<()> {
        let to = self.mesh.to_server(HTTP_PORT);
        for _ in 0..3 {
            let (status, headers, body) = self.mesh.client.ns.http_get(to, "echo", "/hello", STEP).await?;
            anyhow::ensure!(
                status == 200 && headers.get("x-echo-name").is_some_and(|v| v == "echo"),
                "{status} {body}"
            );
        }
        let d = self.delta().await?;
        let (routed, http, inbound) = (d.requests(ECHO_CLUSTER), d.client_out("http"), d.server_in());
        anyhow::ensure!(routed == 3.0 && http == 3.0, "routed {routed}, client outbound http {http}");
        anyhow::ensure!(inbound >= 1.0, "the server proxy's inbound listener saw no connection");
        self.report += &format!(
            "  HTTP to {to} with Host echo: 3/3 answered 200 via {ECHO_CLUSTER}; client outbound http +{http}, \
             server inbound +{inbound}\n"
        );
        Ok(())
    }

    /// HTTP to the server pod's address with a Host no Service answers to: to that pod, through the cluster of the
    /// Service it is an endpoint of (so over mutual TLS, were it on), not passed through as dialled.
    async fn http_by_pod_ip(&mut self) -> anyhow::Result<()> {
        let to = self.mesh.to_server(HTTP_PORT);
        for _ in 0..2 {
            let (status, _, body) = self.mesh.client.ns.http_get(to, &to.to_string(), "/direct", STEP).await?;
            anyhow::ensure!(status == 200 && body.contains("\"name\":\"echo\""), "{status} {body}");
        }
        let d = self.delta().await?;
        // Over the cluster's pooled connection to the pod, which the requests by name opened.
        let (routed, passthrough) = (d.requests(ECHO_CLUSTER), d.requests("PassthroughCluster"));
        anyhow::ensure!(routed == 2.0 && passthrough == 0.0, "via {ECHO_CLUSTER} {routed}, passthrough {passthrough}");
        self.report += &format!("  HTTP to {to} with Host {to}: 2/2 answered 200 by that pod via {ECHO_CLUSTER}\n");
        Ok(())
    }

    /// HTTP to the cluster IP of a Service in another namespace, with that address as `Host` (as clients given an
    /// address instead of a name send): the client's proxy does not hold the Service, asks the operator which
    /// Service has the address, and routes the request by that Service's routes (as dialled it would reach nobody:
    /// only kube-proxy's rules have cluster IPs).
    async fn http_to_a_cluster_ip_out_of_scope(&mut self) -> anyhow::Result<()> {
        let to = SocketAddr::new(IpAddr::V4(API_SERVICE_IP), API_PORT);
        for _ in 0..2 {
            let (status, _, body) = self.mesh.client.ns.http_get(to, &to.to_string(), "/by-address", STEP).await?;
            anyhow::ensure!(status == 200 && body.contains("\"name\":\"echo\""), "{status} {body}");
        }
        let d = self.delta().await?;
        let (routed, answered) = (d.requests(API_CLUSTER), d.addresses_answered());
        anyhow::ensure!(routed == 2.0 && answered == 1.0, "via {API_CLUSTER} {routed}, addresses answered {answered}");
        self.report += &format!(
            "  HTTP to {to} with Host {to} (api in namespace data, out of the client's scope): asked for by address \
             once, 2/2 answered 200 via {API_CLUSTER}\n"
        );
        Ok(())
    }

    /// A client that connects, then takes longer than detection would wait before it sends its request (a pool
    /// that connects ahead, a busy client): on a port every Service declares HTTP on, it is still routed as HTTP.
    async fn http_from_a_client_that_waits(&mut self) -> anyhow::Result<()> {
        let to = self.mesh.to_server(DECLARED_HTTP_PORT);
        let mut stream = self.mesh.client.ns.connect(to, STEP).await?;
        tokio::time::sleep(weft_xds::detection::DETECTION_TIMEOUT * 2).await;
        stream.write_all(b"GET /late HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut answer)).await.context("no answer")??;
        let answer = String::from_utf8_lossy(&answer);
        anyhow::ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let d = self.delta().await?;
        let (routed, http, tcp) = (d.requests(WEB_CLUSTER), d.client_out("http"), d.client_out("tcp"));
        anyhow::ensure!(routed == 1.0 && http == 1.0 && tcp == 0.0, "routed {routed}, outbound http {http}, tcp {tcp}");
        self.report += &format!(
            "  HTTP to {to} (port declared http-web), sent {} ms after connecting: 200 via {WEB_CLUSTER}; client \
             outbound http +1\n",
            (weft_xds::detection::DETECTION_TIMEOUT * 2).as_millis()
        );
        Ok(())
    }

    /// A client without a sidecar (from the node) that connects to the server pod on a port its Service declares
    /// HTTP, and stays silent longer than the server's sidecar waits to tell mutual TLS from plaintext: its
    /// request is still served as HTTP there (HTTP metrics, rate limits, authorization by path), where the silence
    /// once made it TCP, passed through unread.
    async fn http_from_a_silent_client_without_sidecar(&mut self) -> anyhow::Result<()> {
        let to = self.mesh.to_server(DECLARED_HTTP_PORT);
        let mut stream = self.mesh.lab.node.connect(to, STEP).await?;
        let silence = Duration::from_millis(800);
        tokio::time::sleep(silence).await;
        stream.write_all(b"GET /quiet HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut answer)).await.context("no answer")??;
        let answer = String::from_utf8_lossy(&answer);
        anyhow::ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let d = self.delta().await?;
        let (http, tcp) = (d.server_in_as("http"), d.server_in_as("tcp"));
        anyhow::ensure!(http == 1.0 && tcp == 0.0, "server inbound http {http}, tcp {tcp}");
        self.report += &format!(
            "  HTTP from the node to {to} (declared http-web), sent {} ms after connecting: 200; server inbound \
             http +1, tcp +0\n",
            silence.as_millis()
        );
        Ok(())
    }

    /// TCP to the server pod's address on a Service's port: sent on to that endpoint through the Service's
    /// cluster (so counted under the Service), as a client of a headless Service dials it.
    async fn tcp_on_a_mesh_port(&mut self) -> anyhow::Result<()> {
        let (greeted, echoed) =
            tcp_exchange(&self.mesh.client.ns, self.mesh.to_server(TCP_MESH_PORT), Some(GREETING)).await?;
        self.delta().await?.one_tcp_connection_for(TCP_SERVICE)?;
        self.report += &format!(
            "  TCP to mesh port {TCP_MESH_PORT}, server speaks first: greeting after {:.0} ms (sniff timeout), \
             {echoed} bytes echoed; client outbound tcp +1 (for {TCP_SERVICE}), server inbound +1\n",
            greeted.as_secs_f64() * 1000.0
        );
        Ok(())
    }

    /// TCP to the Service's cluster IP, an address nobody has: only the client's sidecar, sending it to the
    /// Service's endpoint, gets it answered.
    async fn tcp_to_a_cluster_ip(&mut self) -> anyhow::Result<()> {
        let to = SocketAddr::new(IpAddr::V4(TCP_SERVICE_IP), TCP_MESH_PORT);
        let (_, echoed) = tcp_exchange(&self.mesh.client.ns, to, Some(GREETING)).await?;
        self.delta().await?.one_tcp_connection_for(TCP_SERVICE)?;
        self.report += &format!(
            "  TCP to {to} ({TCP_SERVICE}'s cluster IP): greeted, {echoed} bytes echoed by the server pod; client \
             outbound tcp +1 (for {TCP_SERVICE}), server inbound +1\n"
        );
        Ok(())
    }

    /// TCP to a port every Service declares TCP on (`mysql`), of a Service in another namespace, server speaking
    /// first: the client's sidecar holds that Service (its port is declared TCP) and takes the connection for TCP
    /// at once (its listener says so), with no detection to wait for.
    async fn tcp_on_a_declared_port(&mut self) -> anyhow::Result<()> {
        let to = SocketAddr::new(IpAddr::V4(DB_SERVICE_IP), DECLARED_TCP_PORT);
        let (greeted, echoed) = tcp_exchange(&self.mesh.client.ns, to, Some(GREETING)).await?;
        let d = self.delta().await?;
        let (tcp, for_service) = (d.client_out("tcp"), d.tcp_for("db"));
        anyhow::ensure!(tcp == 1.0 && for_service == 1.0, "client outbound tcp {tcp}, opened for db {for_service}");
        let detection = self.mesh.client_listener_detection(DECLARED_TCP_PORT).await?;
        anyhow::ensure!(detection == "tcp", "the client's listener of port {DECLARED_TCP_PORT}: {detection}");
        self.report += &format!(
            "  TCP to {to} (db in namespace data, port declared mysql), server speaks first: the client's listener \
             takes TCP at once; \
             greeting after {:.0} ms (the server's sidecar waits 0.5 s for a plaintext client), {echoed} bytes \
             echoed; client outbound tcp +1 (for db)\n",
            greeted.as_secs_f64() * 1000.0
        );
        Ok(())
    }

    /// TCP to the cluster IP of a Service in another namespace on a port it declares nothing on: the client's proxy
    /// does not hold it (its scope is its own namespace), asks the operator which Service has the address, and
    /// sends the connection to that Service's endpoint (as dialled it would reach nobody: only kube-proxy's rules
    /// have cluster IPs).
    async fn tcp_to_a_cluster_ip_out_of_scope(&mut self) -> anyhow::Result<()> {
        let to = SocketAddr::new(IpAddr::V4(STORE_SERVICE_IP), UNDECLARED_PORT);
        let (_, echoed) = tcp_exchange(&self.mesh.client.ns, to, Some(GREETING)).await?;
        let d = self.delta().await?;
        d.one_tcp_connection_for("store")?;
        anyhow::ensure!(d.addresses_answered() == 1.0, "addresses answered {}", d.addresses_answered());
        self.report += &format!(
            "  TCP to {to} (store in namespace data, port declaring nothing, out of the client's scope): asked for              by address, greeted, {echoed} bytes echoed; client outbound tcp +1 (for store), server inbound +1\n"
        );
        Ok(())
    }

    /// TCP to a pod of a headless Service in another namespace, by the pod's address (as clients of brokers and
    /// databases connect): asked for by address too, and sent to that very endpoint through its Service's cluster.
    async fn tcp_to_a_pod_out_of_scope(&mut self) -> anyhow::Result<()> {
        let to = self.mesh.to_server(HEADLESS_PORT);
        let (_, echoed) = tcp_exchange(&self.mesh.client.ns, to, Some(GREETING)).await?;
        let d = self.delta().await?;
        d.one_tcp_connection_for("brokers")?;
        anyhow::ensure!(d.addresses_answered() == 1.0, "addresses answered {}", d.addresses_answered());
        self.report += &format!(
            "  TCP to {to} (a pod of headless Service brokers in namespace data, out of the client's scope): asked \
             for by address, greeted, {echoed} bytes echoed; client outbound tcp +1 (for brokers), server inbound +1\n"
        );
        Ok(())
    }

    async fn tcp_on_another_port(&mut self) -> anyhow::Result<()> {
        let (_, echoed) = tcp_exchange(&self.mesh.client.ns, self.mesh.to_server(TCP_OTHER_PORT), None).await?;
        let d = self.delta().await?;
        let (passthrough, inbound) = (d.client_out("passthrough"), d.server_in());
        anyhow::ensure!(passthrough == 1.0 && inbound == 1.0, "passthrough {passthrough}, server inbound {inbound}");
        self.report += &format!(
            "  TCP to port {TCP_OTHER_PORT} (no Service): {echoed} bytes echoed; client outbound passthrough +1, \
             server inbound +1\n"
        );
        Ok(())
    }

    async fn tcp_on_an_excluded_port(&mut self) -> anyhow::Result<()> {
        let (_, echoed) = tcp_exchange(&self.mesh.client.ns, self.mesh.to_server(EXCLUDED_PORT), None).await?;
        let d = self.delta().await?;
        let (outbound, inbound) = (d.client_out_all(), d.server_in());
        anyhow::ensure!(outbound == 0.0 && inbound == 0.0, "excluded port reached a proxy: {outbound} / {inbound}");
        self.report += &format!(
            "  TCP to excluded port {EXCLUDED_PORT}: {echoed} bytes echoed; client outbound +0, server inbound +0 \
             (bypassed both proxies)\n"
        );
        Ok(())
    }
}

/// Both proxies' `/metrics`, scraped from the node namespace as Prometheus would (port 15020 is never captured).
#[derive(Clone)]
struct Scrape {
    client: String,
    server: String,
}

impl Scrape {
    async fn take(mesh: &Mesh) -> anyhow::Result<Self> {
        let client = scrape(&mesh.lab.node, &mesh.client).await?;
        Ok(Self { client, server: scrape(&mesh.lab.node, &mesh.server).await? })
    }

    fn requests(&self, cluster: &str) -> f64 {
        let labels = [("direction", "outbound"), ("cluster", cluster), ("code_class", "2xx")];
        metric_sum(&self.client, "weft_proxy_requests_total", &labels)
    }

    fn client_out(&self, mode: &str) -> f64 {
        metric_sum(&self.client, "weft_proxy_tcp_connections_total", &[("direction", "outbound"), ("mode", mode)])
    }

    fn client_out_all(&self) -> f64 {
        metric_sum(&self.client, "weft_proxy_tcp_connections_total", &[("direction", "outbound")])
    }

    /// The client's TCP connections whose address it asked the operator about and got an answer for.
    fn addresses_answered(&self) -> f64 {
        let labels = [("kind", "address"), ("outcome", "answered")];
        metric_sum(&self.client, "weft_proxy_on_demand_lookups_total", &labels)
    }

    fn server_in(&self) -> f64 {
        metric_sum(&self.server, "weft_proxy_tcp_connections_total", &[("direction", "inbound")])
    }

    fn server_in_as(&self, mode: &str) -> f64 {
        metric_sum(&self.server, "weft_proxy_tcp_connections_total", &[("direction", "inbound"), ("mode", mode)])
    }

    fn tcp_for(&self, service: &str) -> f64 {
        let labels = [("reporter", "source"), ("destination_service_name", service)];
        metric_sum(&self.client, "weft_tcp_connections_opened_total", &labels)
    }
}

/// How counters moved between two scrapes.
struct Delta {
    before: Scrape,
    after: Scrape,
}

impl Delta {
    fn requests(&self, cluster: &str) -> f64 {
        self.after.requests(cluster) - self.before.requests(cluster)
    }

    fn client_out(&self, mode: &str) -> f64 {
        self.after.client_out(mode) - self.before.client_out(mode)
    }

    fn client_out_all(&self) -> f64 {
        self.after.client_out_all() - self.before.client_out_all()
    }

    fn server_in(&self) -> f64 {
        self.after.server_in() - self.before.server_in()
    }

    fn server_in_as(&self, mode: &str) -> f64 {
        self.after.server_in_as(mode) - self.before.server_in_as(mode)
    }

    fn tcp_for(&self, service: &str) -> f64 {
        self.after.tcp_for(service) - self.before.tcp_for(service)
    }

    fn addresses_answered(&self) -> f64 {
        self.after.addresses_answered() - self.before.addresses_answered()
    }

    /// One connection went from the client's sidecar as TCP for `service` and arrived at the server's.
    fn one_tcp_connection_for(&self, service: &str) -> anyhow::Result<()> {
        let (tcp, inbound, for_service) = (self.client_out("tcp"), self.server_in(), self.tcp_for(service));
        anyhow::ensure!(
            tcp == 1.0 && inbound == 1.0 && for_service == 1.0,
            "client outbound tcp {tcp}, server inbound {inbound}, opened for {service} {for_service}"
        );
        Ok(())
    }
}

/// Connects from `ns`, reads `greeting` first if the server sends one, then checks a line is echoed. How long the
/// greeting took, and how many bytes were echoed.
async fn tcp_exchange(ns: &Netns, to: SocketAddr, greeting: Option<&[u8]>) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let mut stream = ns.connect(to, STEP).await?;
    let exchange = async {
        if let Some(greeting) = greeting {
            let mut got = vec![0; greeting.len()];
            stream.read_exact(&mut got).await?;
            anyhow::ensure!(got == greeting, "greeting {:?}", String::from_utf8_lossy(&got));
        }
        let greeted = started.elapsed();
        let line = format!("ping weft {to}\n");
        stream.write_all(line.as_bytes()).await?;
        let mut echoed = vec![0; line.len()];
        stream.read_exact(&mut echoed).await?;
        anyhow::ensure!(echoed == line.as_bytes(), "echo {:?}", String::from_utf8_lossy(&echoed));
        Ok((greeted, echoed.len()))
    };
    tokio::time::timeout(STEP, exchange).await.with_context(|| format!("TCP exchange with {to} timed out"))?
}

/// A TCP echo server inside the server pod (optionally greeting first), as a task of this test.
fn serve_tcp(pod: &Pod, port: u16, greeting: Option<&'static [u8]>) -> anyhow::Result<AbortOnDrop> {
    let listener = pod.ns.listen(SocketAddr::new(IpAddr::V4(pod.ip), port))?;
    Ok(AbortOnDrop(tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Some(greeting) = greeting {
                    let _ = stream.write_all(greeting).await;
                }
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    })))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the same `init` again and compares the nat table (without counters) before and after.
fn init_twice_changes_nothing(ns: &Netns, sidecars: &Sidecars) -> anyhow::Result<()> {
    let table = || -> anyhow::Result<String> {
        let saved = String::from_utf8(ns.exec(Path::new("iptables-save"), &["-t", "nat"])?.stdout)?;
        Ok(saved.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"))
    };
    let before = table()?;
    sidecars.init(ns, &["--exclude-outbound-ports", "5432"])?;
    let after = table()?;
    anyhow::ensure!(before == after, "init is not idempotent:\n--- before\n{before}\n--- after\n{after}");
    Ok(())
}

/// Services `echo` (8080), `web` (8081, declared HTTP), `tcp-echo` (9000, with a cluster IP) and, in namespace
/// `data`, `db` (9002, declared TCP), `store` (9003, to the server pod's 9000), `api` (8082, declared HTTP, to
/// the server pod's 8080) and headless `brokers` (9004) on
/// the server pod, and both pods, as standalone mode reads them.
fn mesh_yaml(client: &Pod, server: &Pod) -> String {
    let service = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  selector: {{app: server}}\n  ports: [{{name: p{port}, port: {port}, targetPort: {port}}}]\n---\n"
        )
    };
    let pod = |pod: &Pod, ports: &[u16]| {
        let ports: Vec<String> = ports.iter().map(|p| format!("{{name: p{p}, containerPort: {p}}}")).collect();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {0}, namespace: default, labels: {{app: {0}}}}}\n\
             spec: {{containers: [{{name: app, image: app, ports: [{1}]}}]}}\nstatus: {{podIP: {2}}}\n---\n",
            pod.name,
            ports.join(", "),
            pod.ip
        )
    };
    let web = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  selector: {{app: server}}\n  ports: [{{name: http-web, port: {DECLARED_HTTP_PORT}, targetPort: {DECLARED_HTTP_PORT}}}]\n---\n"
    );
    let tcp_echo =
        service(TCP_SERVICE, TCP_MESH_PORT).replace("spec:\n", &format!("spec:\n  clusterIP: {TCP_SERVICE_IP}\n"));
    // In another namespace than the client's (whose proxy's scope then holds it only because its port is declared
    // TCP), with the server pod as its endpoint by an EndpointSlice, as for a Service without a selector.
    let db = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: data}}\n\
         spec:\n  clusterIP: {DB_SERVICE_IP}\n  ports: [{{name: mysql, port: {DECLARED_TCP_PORT}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: db-1, namespace: data, labels: {{kubernetes.io/service-name: db}}}}\n\
         addressType: IPv4\nports: [{{name: mysql, port: {DECLARED_TCP_PORT}, protocol: TCP}}]\n\
         endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
        server.ip
    );
    // Also in `data`, on a port whose name declares no protocol: no proxy of another namespace holds it.
    let store = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: store, namespace: data}}\n\
         spec:\n  clusterIP: {STORE_SERVICE_IP}\n  ports: [{{name: p{UNDECLARED_PORT}, port: {UNDECLARED_PORT}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: store-1, namespace: data, labels: {{kubernetes.io/service-name: store}}}}\n\
         addressType: IPv4\nports: [{{name: p{UNDECLARED_PORT}, port: {TCP_MESH_PORT}, protocol: TCP}}]\n\
         endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
        server.ip
    );
    let api = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: data}}\n\
         spec:\n  clusterIP: {API_SERVICE_IP}\n  ports: [{{name: http-api, port: {API_PORT}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: api-1, namespace: data, labels: {{kubernetes.io/service-name: api}}}}\n\
         addressType: IPv4\nports: [{{name: http-api, port: {HTTP_PORT}, protocol: TCP}}]\n\
         endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
        server.ip
    );
    let brokers = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: brokers, namespace: data}}\n\
         spec:\n  clusterIP: None\n  ports: [{{name: p{HEADLESS_PORT}, port: {HEADLESS_PORT}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: brokers-1, namespace: data, labels: {{kubernetes.io/service-name: brokers}}}}\n\
         addressType: IPv4\nports: [{{name: p{HEADLESS_PORT}, port: {HEADLESS_PORT}, protocol: TCP}}]\n\
         endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
        server.ip
    );
    let yaml = service("echo", HTTP_PORT)
        + &web
        + &tcp_echo
        + &db
        + &store
        + &api
        + &brokers
        + &pod(server, &[HTTP_PORT, DECLARED_HTTP_PORT, TCP_MESH_PORT, DECLARED_TCP_PORT])
        + &pod(client, &[]);
    yaml.trim_end_matches("---\n").to_string()
}
