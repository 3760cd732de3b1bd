//! `weft-operator`: the Weft control plane. Kubernetes mode watches the cluster (in-cluster config or
//! KUBECONFIG); standalone mode (`--config-dir`) reads a directory of YAML files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use weft_operator::app::{self, Listeners};
use weft_operator::leader::LeaseConfig;
use weft_operator::source::kube::Scope;
use weft_xds::ProxyScope;

/// Weft's control plane: watches routing rules and services, streams config to every proxy over xDS (ADS).
#[derive(Debug, Parser)]
#[command(name = "weft-operator", version)]
struct Args {
    /// Standalone mode: read Services, Pods, EndpointSlices, VirtualServices and DestinationRules from the
    /// `*.yaml` files of this directory, and follow edits. Without it, the operator watches Kubernetes.
    #[arg(long, env = "WEFT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Address to serve xDS (gRPC ADS) on.
    #[arg(long, env = "WEFT_XDS_LISTEN", default_value = "127.0.0.1:15010", value_name = "ADDR")]
    xds_listen: SocketAddr,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "WEFT_METRICS_LISTEN", default_value = "127.0.0.1:9090", value_name = "ADDR")]
    metrics_listen: SocketAddr,
    /// Kubernetes mode: namespaces to watch, comma-separated (default: all).
    #[arg(long, env = "WEFT_NAMESPACES", value_delimiter = ',', value_name = "NS,NS")]
    namespaces: Vec<String>,
    /// Kubernetes mode: namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-system", value_name = "NS")]
    lease_namespace: String,
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
        let mode = match args.config_dir {
            Some(dir) => Mode::Standalone(dir),
            None => Mode::Kubernetes(kube::Client::try_default().await.context(
                "Kubernetes mode needs in-cluster config or KUBECONFIG (or pass --config-dir DIR for standalone mode)",
            )?),
        };
        let listeners = Listeners {
            xds: bind(args.xds_listen, "xDS").await?,
            health: bind(args.metrics_listen, "metrics").await?,
            proxy_scope: args.proxy_scope,
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
                app::serve_kubernetes(client, Scope { namespaces: args.namespaces }, lease, listeners, stop()).await?;
            }
        }
        tracing::info!("stopped");
        Ok(())
    });
    // Whatever is still running (connections cut at the grace period) is abandoned, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

enum Mode {
    Standalone(PathBuf),
    Kubernetes(kube::Client),
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {what} address {address}"))
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
