//! `weft-webhook`: serves sidecar injection (`POST /inject`) and Weft CRD validation (`POST /validate`) over HTTPS.
//! Every flag and file is checked before the port is bound; a bad one ends the process with one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use weft_process::telemetry::parse_percent;
use weft_webhook::config::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_PROXY_CPU, DEFAULT_PROXY_CPU_LIMIT, DEFAULT_PROXY_MEMORY, DEFAULT_PROXY_MEMORY_LIMIT,
    DEFAULT_REQUEST_HEADERS_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT, ProxyTimeouts, default_xds_address, proxy_duration,
};
use weft_webhook::config::{DEFAULT_TRACE_SAMPLING, IdentityConfig, TracingConfig};
use weft_webhook::discover::NativeSidecars;
use weft_webhook::limits::Limits;
use weft_webhook::quantity::Quantity;
use weft_webhook::server::AppState;
use weft_webhook::tls::CertReloader;
use weft_webhook::{InjectConfig, ProxyResources};

/// Weft's admission webhook: injects the weft-proxy sidecar into pods and validates Weft's routing resources.
#[derive(Debug, Parser)]
#[command(name = "weft-webhook", version)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, env = "WEFT_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443", value_name = "ADDR")]
    listen: SocketAddr,
    /// PEM certificate chain to serve; re-read when it changes.
    #[arg(long, env = "WEFT_TLS_CERT", value_name = "FILE")]
    tls_cert: PathBuf,
    /// PEM private key of the certificate; re-read when it changes.
    #[arg(long, env = "WEFT_TLS_KEY", value_name = "FILE")]
    tls_key: PathBuf,
    /// How often to look for a new certificate, e.g. `10s`.
    #[arg(long, env = "WEFT_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    tls_reload_interval: Duration,
    /// Image of the injected weft-init and weft-proxy containers.
    #[arg(long, env = "WEFT_PROXY_IMAGE", value_name = "IMAGE")]
    proxy_image: String,
    /// xDS address the proxy connects to (`WEFT_XDS_ADDRESS` in the sidecar) [default: with --mtls true
    /// https://weft-operator.weft-system.svc:15012, else http://weft-operator.weft-system.svc:15010].
    #[arg(long, env = "WEFT_XDS_ADDRESS", value_name = "URL")]
    xds_address: Option<String>,
    /// Proxy CPU request; a pod's `weft.dev/proxy-cpu` annotation overrides it.
    #[arg(long, env = "WEFT_PROXY_CPU", default_value = DEFAULT_PROXY_CPU, value_name = "QUANTITY")]
    proxy_cpu: Quantity,
    /// Proxy memory request; `weft.dev/proxy-memory` overrides it.
    #[arg(long, env = "WEFT_PROXY_MEMORY", default_value = DEFAULT_PROXY_MEMORY, value_name = "QUANTITY")]
    proxy_memory: Quantity,
    /// Proxy CPU limit; `weft.dev/proxy-cpu-limit` overrides it.
    #[arg(long, env = "WEFT_PROXY_CPU_LIMIT", default_value = DEFAULT_PROXY_CPU_LIMIT, value_name = "QUANTITY")]
    proxy_cpu_limit: Quantity,
    /// Proxy memory limit; `weft.dev/proxy-memory-limit` overrides it.
    #[arg(long, env = "WEFT_PROXY_MEMORY_LIMIT", default_value = DEFAULT_PROXY_MEMORY_LIMIT, value_name = "QUANTITY")]
    proxy_memory_limit: Quantity,
    /// Proxy request-header timeout (408 for a client slower than this); `weft.dev/request-headers-timeout`
    /// overrides it. 0 turns it off.
    #[arg(long, env = "WEFT_PROXY_REQUEST_HEADERS_TIMEOUT", default_value = DEFAULT_REQUEST_HEADERS_TIMEOUT, value_parser = proxy_duration, value_name = "DURATION")]
    proxy_request_headers_timeout: String,
    /// Proxy stream idle timeout (no progress on a request either way); `weft.dev/stream-idle-timeout` overrides
    /// it. 0 turns it off.
    #[arg(long, env = "WEFT_PROXY_STREAM_IDLE_TIMEOUT", default_value = DEFAULT_STREAM_IDLE_TIMEOUT, value_parser = proxy_duration, value_name = "DURATION")]
    proxy_stream_idle_timeout: String,
    /// Proxy connection idle timeout (HTTP and TCP); `weft.dev/idle-timeout` overrides it. 0 turns it off.
    #[arg(long, env = "WEFT_PROXY_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = proxy_duration, value_name = "DURATION")]
    proxy_idle_timeout: String,
    /// Injected proxies write one JSON access log line per request on stdout; `weft.dev/access-log` overrides it.
    #[arg(long, env = "WEFT_PROXY_ACCESS_LOG", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    proxy_access_log: bool,
    /// An OpenTelemetry collector (OTLP/gRPC, `http://HOST:PORT`) injected proxies export request spans to;
    /// empty: no spans, trace headers pass through untouched.
    #[arg(long, env = "WEFT_PROXY_TRACE_COLLECTOR", default_value = "", value_name = "URL")]
    proxy_trace_collector: String,
    /// Percent of requests traced when the client made no decision; `weft.dev/trace-sampling` overrides it.
    #[arg(long, env = "WEFT_PROXY_TRACE_SAMPLING", default_value_t = DEFAULT_TRACE_SAMPLING, value_parser = parse_percent, value_name = "PERCENT")]
    proxy_trace_sampling: f64,
    /// Mutual TLS between sidecars: injected proxies get a workload certificate from the operator's CA (a
    /// projected ServiceAccount token for audience `weft-ca` and the trust bundle ConfigMap `weft-ca-root-cert`
    /// are mounted).
    #[arg(long, env = "WEFT_MTLS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    mtls: bool,
    /// The operator's certificate service, as proxies dial it (`WEFT_CA_ADDRESS` in the sidecar).
    #[arg(long, env = "WEFT_CA_ADDRESS", default_value = weft_webhook::config::DEFAULT_CA_ADDRESS, value_name = "URL")]
    ca_address: String,
    /// The mesh's trust domain.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = weft_xds::identity::DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    trust_domain: String,
    /// Native sidecars (Kubernetes >= 1.29): `auto` asks the API server at startup and falls back to classic
    /// sidecars, with a warning, when it cannot be reached.
    #[arg(long, env = "WEFT_NATIVE_SIDECARS", value_enum, default_value = "auto")]
    native_sidecars: NativeSidecars,
    /// Log filter, e.g. `info` or `weft_webhook=debug` (RUST_LOG syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    log: String,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = weft_process::parse_duration(text)?;
    if interval.is_zero() { Err("the interval must be more than zero".into()) } else { Ok(interval) }
}

fn main() -> ExitCode {
    weft_webhook::install_crypto_provider();
    let args = match weft_process::parse_args::<Args>("weft-webhook", std::env::args_os()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    weft_process::exit_code("weft-webhook", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = InjectConfig {
        proxy_image: args.proxy_image,
        xds_address: args.xds_address.unwrap_or_else(|| default_xds_address(args.mtls).to_string()),
        resources: ProxyResources {
            cpu_request: args.proxy_cpu,
            memory_request: args.proxy_memory,
            cpu_limit: args.proxy_cpu_limit,
            memory_limit: args.proxy_memory_limit,
        },
        mode: weft_webhook::SidecarMode::Classic,
        timeouts: ProxyTimeouts {
            request_headers: args.proxy_request_headers_timeout,
            stream_idle: args.proxy_stream_idle_timeout,
            idle: args.proxy_idle_timeout,
        },
        access_log: args.proxy_access_log,
        tracing: (!args.proxy_trace_collector.trim().is_empty()).then(|| TracingConfig {
            collector: args.proxy_trace_collector.trim().to_string(),
            sampling_percent: args.proxy_trace_sampling,
        }),
        identity: args
            .mtls
            .then(|| IdentityConfig { ca_address: args.ca_address.clone(), trust_domain: args.trust_domain.clone() }),
    };
    config.check()?;
    weft_process::init_logging(&args.log)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let reloader = CertReloader::load(&args.tls_cert, &args.tls_key).await?;
        config.mode = weft_webhook::discover::sidecar_mode(args.native_sidecars).await;
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(listen = %args.listen, mode = %config.mode, image = %config.proxy_image, "serving");
        let tls = reloader.config();
        tokio::spawn(reloader.run(args.tls_reload_interval));
        let state = AppState::new(config, Limits::default());
        weft_webhook::server::serve(listener, tls, state, stop()).await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn stop() {
    let signal = weft_process::shutdown_signal().await;
    tracing::info!(signal, "stopping");
}
