//! `weft-proxy`: the Weft sidecar.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use weft_proxy::app::ProxySettings;

/// Weft's sidecar proxy: takes config from the operator over xDS and routes the pod's HTTP traffic.
#[derive(Debug, Parser)]
#[command(name = "weft-proxy", version)]
struct Args {
    /// The operator's xDS address, e.g. http://weft-operator.weft-system:15010.
    #[arg(long, env = "WEFT_XDS_ADDRESS", value_name = "URL")]
    xds_address: String,
    /// Name of the pod this proxy serves.
    #[arg(long, env = "POD_NAME")]
    pod_name: String,
    /// Namespace of the pod this proxy serves.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: String,
    /// IP address of the pod.
    #[arg(long, env = "POD_IP")]
    pod_ip: Option<IpAddr>,
    /// Where applications send outbound HTTP.
    #[arg(long, env = "WEFT_OUTBOUND_LISTEN", default_value = "127.0.0.1:15001", value_name = "ADDR")]
    outbound_listen: SocketAddr,
    /// Admin endpoint (config dump, readiness); keep it on localhost.
    #[arg(long, env = "WEFT_ADMIN_LISTEN", default_value = "127.0.0.1:15000", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// Log filter, e.g. `info` or `weft_proxy=debug` (RUST_LOG syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            eprintln!("weft-proxy: {}", text.lines().next().unwrap_or_default().trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weft-proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .init();
    let settings = ProxySettings {
        xds_address: args.xds_address,
        pod_name: args.pod_name,
        pod_namespace: args.pod_namespace,
        pod_ip: args.pod_ip,
        outbound_listen: args.outbound_listen,
        admin_listen: args.admin_listen,
    };
    settings.xds_endpoint()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(weft_proxy::app::run(settings))?;
    Ok(())
}
