//! `weft-operator`: the Weft control plane. Kubernetes mode watches the cluster (in-cluster config or
//! KUBECONFIG); standalone mode (`--config-dir`) reads a directory of YAML files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpSocket;
use tonic::transport::Identity;
use weft_operator::app::{self, CertificateAuthority, Listeners, SecurePort};
use weft_operator::ca::{self, Authenticator, Issuance};
use weft_operator::leader::LeaseConfig;
use weft_operator::source::kube::Scope;
use weft_xds::ProxyScope;

/// Weft's control plane: watches routing rules and services, streams config to every proxy over xDS (ADS).
#[derive(Debug, Parser)]
#[command(name = "weft-operator", version)]
struct Args {
    /// Standalone mode: read Services, Pods, EndpointSlices and Weft resources (VirtualService, DestinationRule,
    /// PeerAuthentication) from the `*.yaml` files of this directory, and follow edits. Without it, the operator
    /// watches Kubernetes.
    #[arg(long, env = "WEFT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Address to serve plaintext xDS (gRPC ADS) on [default without a CA: 127.0.0.1:15010]. With mutual TLS
    /// (--ca-dir or --ca-secret) proxies take their config on --secure-listen, and plaintext xDS is served only
    /// when this flag is given: anyone reaching it can read any proxy's config.
    #[arg(long, env = "WEFT_XDS_LISTEN", value_name = "ADDR")]
    xds_listen: Option<SocketAddr>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "WEFT_METRICS_LISTEN", default_value = "127.0.0.1:9090", value_name = "ADDR")]
    metrics_listen: SocketAddr,
    /// Kubernetes mode: namespaces to watch, comma-separated (default: all).
    #[arg(long, env = "WEFT_NAMESPACES", value_delimiter = ',', value_name = "NS,NS")]
    namespaces: Vec<String>,
    /// Kubernetes mode: whether to watch Secrets, for DestinationRules' `tls.credentialName` (the operator's
    /// ClusterRole then needs `list` and `watch` on `secrets`). `false`: no Secret is read and a rule naming one
    /// reports `InvalidCredential`.
    #[arg(long, env = "WEFT_READ_SECRETS", default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    read_secrets: bool,
    /// Kubernetes mode: namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-system", value_name = "NS")]
    lease_namespace: String,
    /// The mesh's root namespace (Istio's `rootNamespace`): its DestinationRules and PeerAuthentications apply
    /// mesh-wide. Default: the operator's own namespace (POD_NAMESPACE), `weft-system` outside a pod.
    #[arg(long, env = "WEFT_ROOT_NAMESPACE", value_name = "NS")]
    root_namespace: Option<String>,
    /// Kubernetes mode: name of the leader-election Lease.
    #[arg(long, env = "WEFT_LEASE_NAME", default_value = "weft-operator", value_name = "NAME")]
    lease_name: String,
    /// Kubernetes mode: this replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    identity: Option<String>,
    /// How much of the mesh each proxy is sent, unless it says otherwise (pod annotation `weft.dev/proxy-scope`):
    /// `namespace` (its namespace's Services and what its rules name; every other Service it calls is asked for
    /// on demand over delta xDS), `on-demand` (only what its rules name) or `mesh` (everything).
    #[arg(long, env = "WEFT_PROXY_SCOPE", default_value = "namespace", value_name = "namespace|on-demand|mesh")]
    proxy_scope: ProxyScope,
    /// Mutual TLS: the CA's directory (Istio's plug-in CA names: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
    /// `cert-chain.pem`). A new self-signed root is written there when it holds no key. With it, the operator
    /// serves certificates and ADS over TLS on --secure-listen and sidecars talk mutual TLS to each other.
    #[arg(long, env = "WEFT_CA_DIR", value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Kubernetes mode: mutual TLS with the CA kept in this Secret of the operator's namespace (Istio's plug-in
    /// CA keys: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`), created with a new self-signed
    /// root when it does not exist. The trust bundle is published as the ConfigMap `weft-ca-root-cert` in every
    /// namespace with Services or Pods.
    #[arg(long, env = "WEFT_CA_SECRET", value_name = "NAME", conflicts_with = "ca_dir")]
    ca_secret: Option<String>,
    /// Address of the TLS port (certificates, ADS over TLS), served when --ca-dir or --ca-secret is set.
    #[arg(long, env = "WEFT_SECURE_LISTEN", default_value = "127.0.0.1:15012", value_name = "ADDR")]
    secure_listen: SocketAddr,
    /// Names (DNS names or IP addresses) the operator's serving certificate is valid for, comma-separated.
    #[arg(
        long,
        env = "WEFT_SERVING_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1",
        value_name = "NAME,NAME"
    )]
    serving_names: Vec<String>,
    /// The mesh's trust domain: identities are `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = weft_xds::identity::DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    trust_domain: String,
    /// Longest lifetime of a workload certificate (also the lifetime when a proxy asks for none).
    #[arg(long, env = "WEFT_CERTIFICATE_TTL", default_value = "24h", value_parser = weft_process::parse_duration, value_name = "DURATION")]
    certificate_ttl: std::time::Duration,
    /// Standalone mode: the directory of workload tokens, `DIR/<namespace>/<service account>` holding that
    /// workload's token (the text its proxy sends). Kubernetes mode checks ServiceAccount tokens with a
    /// TokenReview instead.
    #[arg(long, env = "WEFT_WORKLOAD_TOKENS", value_name = "DIR")]
    workload_tokens: Option<PathBuf>,
    /// Kubernetes mode: the audience workload tokens must be issued for.
    #[arg(long, env = "WEFT_TOKEN_AUDIENCE", default_value = weft_operator::ca::auth::DEFAULT_AUDIENCE, value_name = "AUDIENCE")]
    token_audience: String,
    /// Log filter, e.g. `info` or `weft_operator=debug` (RUST_LOG syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    match weft_process::parse_args::<Args>("weft-operator", std::env::args_os()) {
        Ok(args) => weft_process::exit_code("weft-operator", run(args)),
        Err(code) => code,
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    weft_process::init_logging(&args.log)?;
    if let Some(dir) = &args.config_dir
        && !dir.is_dir()
    {
        anyhow::bail!("--config-dir {}: not a directory", dir.display());
    }
    // kube's TLS uses rustls; exactly one crypto provider (ring) is compiled in, install it before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async {
        // Everything that can be wrong with the configuration is found before a port binds.
        let mode = match args.config_dir.clone() {
            Some(dir) => Mode::Standalone(dir),
            None => Mode::Kubernetes(kube::Client::try_default().await.context(
                "Kubernetes mode needs in-cluster config or KUBECONFIG (or pass --config-dir DIR for standalone mode)",
            )?),
        };
        let secure = match certificate_authority(&args, &mode).await? {
            Some(ca) => Some(SecurePort { listener: bind(args.secure_listen, "secure (TLS)")?, ca }),
            None => None,
        };
        let xds = match app::plaintext_xds_address(args.xds_listen, secure.is_some()) {
            Some(address) => Some(bind(address, "xDS")?),
            None => None,
        };
        let listeners = Listeners {
            xds,
            health: bind(args.metrics_listen, "metrics")?,
            proxy_scope: args.proxy_scope,
            root_namespace: args.root_namespace.clone().unwrap_or_else(|| args.lease_namespace.clone()),
            secure,
        };
        match mode {
            Mode::Standalone(dir) => {
                tracing::info!(dir = %dir.display(), "standalone mode");
                app::serve_standalone(dir, listeners, stop()).await?;
            }
            Mode::Kubernetes(client) => {
                let identity = args.identity.unwrap_or_else(hostname);
                tracing::info!(namespaces = ?args.namespaces, %identity, "Kubernetes mode");
                let lease = LeaseConfig::new(args.lease_namespace, args.lease_name, identity);
                let scope = Scope { namespaces: args.namespaces, without_secrets: !args.read_secrets };
                app::serve_kubernetes(client, scope, lease, listeners, stop()).await?;
            }
        }
        tracing::info!("stopped");
        Ok(())
    });
    // Whatever is still running (connections cut at the grace period) is abandoned, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// The configured CA, with the serving certificate of the TLS port; `None` without `--ca-dir`/`--ca-secret`.
async fn certificate_authority(args: &Args, mode: &Mode) -> anyhow::Result<Option<CertificateAuthority>> {
    if args.ca_dir.is_none() && args.ca_secret.is_none() {
        return Ok(None);
    }
    if args.trust_domain.is_empty() || args.trust_domain.contains('/') {
        anyhow::bail!("--trust-domain {:?}: not a trust domain", args.trust_domain);
    }
    let authority = match (&args.ca_dir, &args.ca_secret, mode) {
        (Some(dir), _, _) => ca::store::load_or_create(dir, &args.trust_domain)?,
        (None, Some(name), Mode::Kubernetes(client)) => {
            ca::secret::load_or_create(client.clone(), &args.lease_namespace, name, &args.trust_domain).await?
        }
        (None, _, _) => anyhow::bail!("--ca-secret needs Kubernetes mode (use --ca-dir with --config-dir)"),
    };
    let authority = Arc::new(authority);
    let authenticator = match (mode, &args.workload_tokens) {
        (Mode::Standalone(_), Some(tokens)) if tokens.is_dir() => Authenticator::TokenFiles(tokens.clone()),
        (Mode::Standalone(_), Some(tokens)) => anyhow::bail!("--workload-tokens {}: not a directory", tokens.display()),
        (Mode::Standalone(_), None) => anyhow::bail!("--ca-dir in standalone mode needs --workload-tokens DIR"),
        (Mode::Kubernetes(_), Some(_)) => {
            anyhow::bail!("--workload-tokens is for standalone mode; Kubernetes mode checks ServiceAccount tokens")
        }
        (Mode::Kubernetes(client), None) => {
            Authenticator::TokenReview { client: client.clone(), audience: args.token_audience.clone() }
        }
    };
    let serving = authority.sign_server(&args.serving_names, SERVING_CERT_LIFETIME, SystemTime::now())?;
    let issuance = Issuance { trust_domain: args.trust_domain.clone(), max_lifetime: args.certificate_ttl };
    let serving = Identity::from_pem(serving.chain_pem, serving.key_pem);
    Ok(Some(CertificateAuthority { authority, authenticator, issuance, serving }))
}

/// The operator's serving certificate is made at each start; a year outlives any sensible pod.
const SERVING_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

enum Mode {
    Standalone(PathBuf),
    Kubernetes(kube::Client),
}

/// Connections a port holds before they are accepted: when a replica goes, every sidecar it served reconnects to
/// the others at once (tokio's default is 1024, which a thousand proxies overflowed on this machine; the kernel
/// caps it at `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(address: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listen = || {
        let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().with_context(|| format!("binding {what} address {address}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "weft-operator".into())
}

/// Completes on SIGTERM or Ctrl-C.
async fn stop() {
    let signal = weft_process::shutdown_signal().await;
    tracing::info!(signal, "stopping");
}
