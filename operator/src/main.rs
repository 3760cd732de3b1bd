//! `weft-operator`: the Weft control plane. Standalone mode reads a directory of YAML files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Weft's control plane: watches routing rules and services, streams config to every proxy over xDS (ADS).
#[derive(Debug, Parser)]
#[command(name = "weft-operator", version)]
struct Args {
    /// Standalone mode: read Services, Pods, EndpointSlices, VirtualServices and DestinationRules from the
    /// `*.yaml` files of this directory, and follow edits.
    #[arg(long, env = "WEFT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Address to serve xDS (gRPC ADS) on.
    #[arg(long, env = "WEFT_XDS_LISTEN", default_value = "127.0.0.1:15010", value_name = "ADDR")]
    xds_listen: SocketAddr,
    /// Log filter, e.g. `info` or `weft_operator=debug` (RUST_LOG syntax).
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
            eprintln!("weft-operator: {}", text.lines().next().unwrap_or_default().trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weft-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .init();
    let Some(dir) = args.config_dir else {
        anyhow::bail!("Kubernetes mode is not available yet; pass --config-dir DIR to run standalone");
    };
    if !dir.is_dir() {
        anyhow::bail!("--config-dir {}: not a directory", dir.display());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.xds_listen)
            .await
            .with_context(|| format!("binding xDS address {}", args.xds_listen))?;
        tracing::info!(dir = %dir.display(), "standalone mode");
        weft_operator::app::serve_standalone(dir, listener, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
