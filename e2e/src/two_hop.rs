//! The benchmark's two-proxy path, as traffic between two meshed pods takes it: client app -> client sidecar
//! (explicit outbound) -> server sidecar (explicit `--inbound`) -> backend, on loopback, twice side by side: once
//! in plaintext (sidecars without identity) and once with mutual TLS (sidecars with workload certificates from
//! the operator's CA); and a third time with mutual TLS and 50 AuthorizationPolicies of 10 rules each on the
//! server's pod, the client allowed by the last rule of the last one (every rule is evaluated per request). One
//! standalone operator serves all three.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::binaries;
use crate::http_client::HttpClient;
use crate::net::{free_port, localhost, wait_for_port};
use crate::process::Process;

const STARTUP: Duration = Duration::from_secs(30);

/// One client sidecar -> server sidecar pair and the Service name that routes through it.
pub struct Hop {
    pub host: &'static str,
    pub client: Process,
    pub server: Process,
    /// The client sidecar's outbound listener.
    pub outbound: SocketAddr,
}

impl Hop {
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.outbound)
    }
}

pub struct TwoHopMesh {
    _dir: tempfile::TempDir,
    _operator: Process,
    pub backend: Process,
    pub plaintext: Hop,
    pub mutual_tls: Hop,
    pub authorized: Hop,
}

/// How many AuthorizationPolicies, of how many rules each, the authorized hop's server evaluates.
pub const AUTHZ_POLICIES: usize = 50;
pub const AUTHZ_RULES: usize = 10;

impl TwoHopMesh {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("weft-two-hop-").tempdir()?;
        let backend_address = free_port(localhost())?;
        let args = ["--listen", &backend_address.to_string(), "--name", "hop", "--version", "v1"].map(String::from);
        let backend = Process::spawn("echo", &binaries::path("weft-echo")?, &args, &dir.path().join("echo.log"))?;
        let inbound = [free_port(pod_ip(21))?, free_port(pod_ip(22))?, free_port(pod_ip(23))?];
        std::fs::create_dir_all(dir.path().join("config"))?;
        let services = [("hop-plain", inbound[0]), ("hop-mtls", inbound[1]), ("hop-authz", inbound[2])]
            .map(|(name, endpoint)| service_yaml(name, endpoint))
            .join("---\n");
        std::fs::write(dir.path().join("config/hops.yaml"), services)?;
        std::fs::write(dir.path().join("config/policies.yaml"), authorization_policies("hop-authz"))?;
        for account in ["client", "server"] {
            std::fs::create_dir_all(dir.path().join("tokens/default"))?;
            std::fs::write(dir.path().join("tokens/default").join(account), format!("bench-{account}"))?;
        }
        let (xds, secure, metrics) = (free_port(localhost())?, free_port(localhost())?, free_port(localhost())?);
        let path = |p: &str| dir.path().join(p).display().to_string();
        let operator_args = [
            "--config-dir",
            &path("config"),
            "--xds-listen",
            &xds.to_string(),
            "--metrics-listen",
            &metrics.to_string(),
            "--ca-dir",
            &path("ca"),
            "--workload-tokens",
            &path("tokens"),
            "--secure-listen",
            &secure.to_string(),
            "--serving-names",
            "127.0.0.1",
        ]
        .map(String::from);
        let operator = Process::spawn(
            "operator",
            &binaries::path("weft-operator")?,
            &operator_args,
            &dir.path().join("operator.log"),
        )?;
        wait_for_port(xds, STARTUP).await?;
        wait_for_port(secure, STARTUP).await?;
        let identity = |account: &str| -> Vec<String> {
            [
                "--ca-address",
                &format!("https://{secure}"),
                "--trust-bundle",
                &path("ca/root-cert.pem"),
                "--identity-token-file",
                &path(&format!("tokens/default/{account}")),
                "--service-account",
                account,
            ]
            .map(String::from)
            .into()
        };
        let sidecar = |name: &str, mut extra: Vec<String>| -> anyhow::Result<(Process, SocketAddr)> {
            let outbound = free_port(localhost())?;
            let mut args: Vec<String> = [
                "--xds-address",
                &format!("http://{xds}"),
                "--pod-name",
                name,
                "--pod-namespace",
                "default",
                "--outbound-listen",
                &outbound.to_string(),
                "--admin-listen",
                &free_port(localhost())?.to_string(),
            ]
            .map(String::from)
            .into();
            args.append(&mut extra);
            let log = dir.path().join(format!("{name}.log"));
            Ok((Process::spawn(name, &binaries::path("weft-proxy")?, &args, &log)?, outbound))
        };
        let inbound_flag = |listen: SocketAddr| vec!["--inbound".to_string(), format!("{listen}={backend_address}")];
        let (server_a, _) = sidecar("server-plain", inbound_flag(inbound[0]))?;
        let (client_a, outbound_a) = sidecar("client-plain", Vec::new())?;
        let (server_b, _) = sidecar("server-mtls", [inbound_flag(inbound[1]), identity("server")].concat())?;
        let (client_b, outbound_b) = sidecar("client-mtls", identity("client"))?;
        let (server_c, _) = sidecar("hop-authz-1", [inbound_flag(inbound[2]), identity("server")].concat())?;
        let (client_c, outbound_c) = sidecar("client-authz", identity("client"))?;
        let plaintext = Hop { host: "hop-plain", client: client_a, server: server_a, outbound: outbound_a };
        let mutual_tls = Hop { host: "hop-mtls", client: client_b, server: server_b, outbound: outbound_b };
        let authorized = Hop { host: "hop-authz", client: client_c, server: server_c, outbound: outbound_c };
        let mesh = Self { _dir: dir, _operator: operator, backend, plaintext, mutual_tls, authorized };
        for hop in [&mesh.plaintext, &mesh.mutual_tls, &mesh.authorized] {
            wait_routing(hop).await.with_context(|| format!("{}\n{}", hop.client.tail(20), hop.server.tail(20)))?;
        }
        Ok(mesh)
    }
}

fn pod_ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 11, host))
}

/// A Service `name` whose one pod, with a sidecar running as `server`, is reached at `endpoint`.
fn service_yaml(name: &str, endpoint: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: {port}}}]\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-1, namespace: default, labels: {{app: {name}, security.weft.dev/tlsMode: weft}}}}\n\
         spec:\n  serviceAccountName: server\n  containers: [{{name: app, image: weft-echo}}]\n\
         status: {{podIP: {ip}}}\n",
        port = endpoint.port(),
        ip = endpoint.ip(),
    )
}

/// [`AUTHZ_POLICIES`] policies of [`AUTHZ_RULES`] rules selecting the pods of `app`: half `DENY` policies whose
/// rules never match the client (other namespaces, other paths), half `ALLOW` policies whose rules name other
/// identities, but for the very last rule, which allows the client's identity.
fn authorization_policies(app: &str) -> String {
    let mut yaml = String::new();
    for policy in 0..AUTHZ_POLICIES {
        let deny = policy % 2 == 0;
        let rules: Vec<String> = (0..AUTHZ_RULES)
            .map(|rule| {
                let last = policy + 1 == AUTHZ_POLICIES && rule + 1 == AUTHZ_RULES;
                match (deny, last) {
                    (true, _) => format!(
                        "{{from: [{{source: {{namespaces: [ns-{policy}-{rule}]}}}}], \
                         to: [{{operation: {{paths: [\"/deny-{policy}-{rule}*\"], methods: [POST, PUT]}}}}]}}"
                    ),
                    (false, false) => format!(
                        "{{from: [{{source: {{principals: [cluster.local/ns/other-{policy}/sa/caller-{rule}]}}}}], \
                         to: [{{operation: {{methods: [GET], paths: [\"/api/{rule}/*\"]}}}}]}}"
                    ),
                    (false, true) => "{from: [{source: {principals: [cluster.local/ns/default/sa/client]}}], \
                         to: [{operation: {methods: [GET]}}]}"
                        .to_string(),
                }
            })
            .collect();
        yaml.push_str(&format!(
            "---\napiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\n\
             metadata: {{name: bench-{policy:02}, namespace: default}}\n\
             spec: {{selector: {{matchLabels: {{app: {app}}}}}, action: {action}, rules: [{rules}]}}\n",
            action = if deny { "DENY" } else { "ALLOW" },
            rules = rules.join(", "),
        ));
    }
    yaml
}

async fn wait_routing(hop: &Hop) -> anyhow::Result<()> {
    let client = hop.client();
    let until = Instant::now() + STARTUP;
    loop {
        if client.get(hop.host, "/", &[]).await.is_ok_and(|reply| reply.is_success()) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "no request through {} within {STARTUP:?}", hop.host);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
