//! The command line: `weft-proxy [run] ...` (the proxy; `run` is the default), `weft-proxy init ...` (iptables
//! capture rules), `weft-proxy wait ...` (block until ready). Parsing only; `main` runs the commands.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{Capture, ProxySettings};
use crate::capture::{CaptureSettings, Cidr};
use crate::config::Labels;
use crate::http::timeouts::{Timeouts, enabled};
use crate::identity::IdentitySettings;
use crate::telemetry::trace::TraceSettings;
use weft_process::parse_duration;
use weft_xds::ProxyScope;
use weft_xds::SpiffeId;

/// Istio's port numbers, familiar to users.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
pub const ADMIN_PORT: u16 = 15000;
pub const HEALTH_PORT: u16 = 15020;
pub const PROXY_UID: u32 = 1337;

/// Weft's sidecar proxy: takes config from the operator over xDS and routes the pod's traffic.
#[derive(Debug, Parser)]
#[command(name = "weft-proxy", version, after_help = "Without a subcommand, weft-proxy runs the proxy (`run`).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Install the iptables rules that send the pod's TCP through its proxy (root or CAP_NET_ADMIN; an init
    /// container). Safe to run again: the rules end up the same.
    Init(InitArgs),
    /// Wait until the proxy is ready (200 from its readiness URL); for a postStart hook.
    Wait(WaitArgs),
}

/// Inserts `run` when the command line names no subcommand, so `weft-proxy --xds-address ...` keeps working.
pub fn with_default_subcommand(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let first = args.get(1).and_then(|a| a.to_str());
    let named = matches!(first, Some("run" | "init" | "wait" | "help" | "-h" | "--help" | "-V" | "--version"));
    if !named {
        args.insert(args.len().min(1), "run".into());
    }
    args
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The operator's xDS address, e.g. http://weft-operator.weft-system:15010.
    #[arg(long, env = "WEFT_XDS_ADDRESS", value_name = "URL")]
    pub xds_address: String,
    /// Name of the pod this proxy serves.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: String,
    /// Namespace of the pod this proxy serves.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: String,
    /// IP address of the pod.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<IpAddr>,
    /// Service account of the pod (sent to the control plane as node metadata).
    #[arg(long, env = "SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// Serve traffic redirected by `weft-proxy init` rules: outbound on :15001 (original destination from the
    /// kernel), inbound on :15006, health and metrics on :15020. Without it, applications send HTTP to the
    /// outbound listener on purpose (127.0.0.1:15001), routed by Host.
    #[arg(long)]
    pub transparent: bool,
    /// Outbound listener [default: 127.0.0.1:15001; with --transparent 0.0.0.0:15001].
    #[arg(long, env = "WEFT_OUTBOUND_LISTEN", value_name = "ADDR")]
    pub outbound_listen: Option<SocketAddr>,
    /// Inbound capture listener (--transparent only) [default: 0.0.0.0:15006].
    #[arg(long, env = "WEFT_INBOUND_LISTEN", value_name = "ADDR", requires = "transparent")]
    pub inbound_listen: Option<SocketAddr>,
    /// Health and metrics listener: GET /healthz/ready, GET /metrics [default: none; with --transparent
    /// 0.0.0.0:15020].
    #[arg(long, env = "WEFT_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
    /// Admin endpoint (config dump, readiness); keep it on localhost.
    #[arg(long, env = "WEFT_ADMIN_LISTEN", default_value = "127.0.0.1:15000", value_name = "ADDR")]
    pub admin_listen: SocketAddr,
    /// Threads that run the data path: 1 (a sidecar's default, as Envoy's and Linkerd's sidecars run: everything
    /// on one thread, no hand-offs; about 14 % less CPU per request than one worker of a multi-threaded
    /// runtime in `make bench`), or more for a proxy that must use several cores; 0: one per core.
    #[arg(long, env = "WEFT_WORKERS", default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests and connections may take to finish (e.g. 5s, 500ms).
    #[arg(long, env = "WEFT_DRAIN_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// An HTTP/1 request whose headers take longer than this from their first byte gets 408 (Envoy's
    /// `request_headers_timeout`); 0 turns it off.
    #[arg(long, env = "WEFT_REQUEST_HEADERS_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_headers_timeout: Duration,
    /// A request with no progress either way for this long gets 408 (its body stalled) or 504 (the upstream is
    /// silent), or is reset once its response started (Envoy's `stream_idle_timeout`); 0 turns it off.
    #[arg(long, env = "WEFT_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub stream_idle_timeout: Duration,
    /// A connection with no request in flight and no bytes either way for this long is closed (HTTP and TCP;
    /// Envoy's `idle_timeout`); 0 turns it off.
    #[arg(long, env = "WEFT_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// How much of the mesh to be sent before asking for more (the operator's default when unset): `namespace`
    /// (this namespace's Services and what its rules name), `on-demand` (only what its rules name) or `mesh`.
    /// Any other Service is asked for on demand by the first request to it.
    #[arg(long, env = "WEFT_PROXY_SCOPE", value_name = "namespace|on-demand|mesh")]
    pub proxy_scope: Option<ProxyScope>,
    /// The labels of the pod this proxy serves, as `key=value,key=value` (set by the injector from the pod's
    /// labels at admission); routes with `match[].sourceLabels` apply when the pod carries all of theirs.
    #[arg(long, env = "WEFT_POD_LABELS", default_value = "", value_parser = parse_labels, value_name = "KEY=VALUE,...")]
    pub pod_labels: Labels,
    /// The operator's certificate service (its TLS port), e.g. https://weft-operator.weft-system:15012. With it,
    /// the proxy gets a workload certificate for `spiffe://<trust domain>/ns/<pod namespace>/sa/<service
    /// account>` and talks mutual TLS with other sidecars.
    #[arg(long, env = "WEFT_CA_ADDRESS", value_name = "URL", requires_all = ["trust_bundle", "identity_token_file"])]
    pub ca_address: Option<String>,
    /// The mesh's trust bundle (PEM roots): the CA's, every peer's and (for an https:// --xds-address) the
    /// operator's certificates must chain to one of them.
    #[arg(long, env = "WEFT_TRUST_BUNDLE", value_name = "FILE")]
    pub trust_bundle: Option<std::path::PathBuf>,
    /// The workload's token, sent to the CA to prove who the pod is (on Kubernetes a projected ServiceAccount
    /// token; read again at each renewal).
    #[arg(long, env = "WEFT_IDENTITY_TOKEN_FILE", value_name = "FILE")]
    pub identity_token_file: Option<std::path::PathBuf>,
    /// The mesh's trust domain.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = weft_xds::identity::DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    pub trust_domain: String,
    /// Lifetime to ask the CA for; the certificate is renewed at half of what was granted.
    #[arg(long, env = "WEFT_CERTIFICATE_TTL", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub certificate_ttl: Duration,
    /// Without --transparent: serve mesh traffic for an application, `LISTEN=APP` (repeatable): connections to
    /// LISTEN (the address the Service's endpoints name) are taken as mutual TLS from other sidecars or as
    /// plaintext, and forwarded to the application at APP (a VM or laptop without iptables).
    #[arg(long = "inbound", value_parser = parse_inbound, value_name = "LISTEN=APP", conflicts_with = "transparent")]
    pub inbound: Vec<(SocketAddr, SocketAddr)>,
    /// The workload this pod belongs to (its Deployment, StatefulSet, ...), as metrics label it; the injector
    /// sets it from the pod's owner. Default: the pod name.
    #[arg(long, env = "WEFT_WORKLOAD", value_name = "NAME")]
    pub workload: Option<String>,
    /// `stdout`: one JSON line per request (inbound and outbound) on standard output; `off`: none.
    #[arg(long, env = "WEFT_ACCESS_LOG", value_enum, default_value_t = AccessLogTarget::Off)]
    pub access_log: AccessLogTarget,
    /// An OpenTelemetry collector's OTLP/gRPC address (`http://HOST:PORT`, e.g. port 4317): each request gets a
    /// span, its trace headers (W3C `traceparent`, B3) carry it on, and sampled spans are exported there.
    /// Without it, trace headers pass through untouched.
    #[arg(long, env = "WEFT_TRACE_COLLECTOR", value_name = "URL")]
    pub trace_collector: Option<String>,
    /// Percent of requests traced when the client sent no sampling decision (Istio's `sampling`), 0 to 100.
    #[arg(long, env = "WEFT_TRACE_SAMPLING", default_value_t = 1.0, value_parser = weft_process::telemetry::parse_percent, value_name = "PERCENT")]
    pub trace_sampling: f64,
    /// Log filter, e.g. `info` or `weft_proxy=debug` (RUST_LOG syntax).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    pub log: String,
}

/// Where access log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogTarget {
    Off,
    Stdout,
}

fn parse_inbound(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (listen, app) = text.split_once('=').ok_or("expected LISTEN=APP, e.g. 127.0.0.2:8080=127.0.0.1:18080")?;
    let address = |a: &str| a.parse::<SocketAddr>().map_err(|e| format!("{a:?}: {e}"));
    Ok((address(listen)?, address(app)?))
}

impl RunArgs {
    /// The workload identity settings, when the proxy has a CA.
    fn identity(&self) -> Option<IdentitySettings> {
        let ca_address = self.ca_address.clone()?;
        // Kubernetes gives a pod without one the namespace's `default` ServiceAccount.
        let account = self.service_account.as_deref().filter(|s| !s.is_empty()).unwrap_or("default");
        Some(IdentitySettings {
            ca_address,
            roots_file: self.trust_bundle.clone()?,
            token_file: self.identity_token_file.clone()?,
            id: SpiffeId::new(&self.trust_domain, &self.pod_namespace, account),
            lifetime: self.certificate_ttl,
        })
    }

    /// The proxy's settings, with the defaults of the chosen mode filled in.
    pub fn settings(&self) -> ProxySettings {
        let any = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let (capture, outbound, health) = if self.transparent {
            let inbound_listen = self.inbound_listen.unwrap_or(any(INBOUND_CAPTURE_PORT));
            (Capture::Transparent { inbound_listen }, any(OUTBOUND_CAPTURE_PORT), Some(any(HEALTH_PORT)))
        } else {
            (Capture::Explicit, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), OUTBOUND_CAPTURE_PORT), None)
        };
        ProxySettings {
            xds_address: self.xds_address.clone(),
            pod_name: self.pod_name.clone(),
            pod_namespace: self.pod_namespace.clone(),
            pod_ip: self.pod_ip,
            service_account: self.service_account.clone().filter(|s| !s.is_empty()),
            proxy_scope: self.proxy_scope,
            labels: self.pod_labels.clone(),
            capture,
            identity: self.identity(),
            trust_bundle: self.trust_bundle.clone(),
            inbound: self.inbound.clone(),
            outbound_listen: self.outbound_listen.unwrap_or(outbound),
            admin_listen: self.admin_listen,
            health_listen: self.health_listen.or(health),
            drain_timeout: self.drain_timeout,
            timeouts: Timeouts {
                request_headers: enabled(self.request_headers_timeout),
                stream_idle: enabled(self.stream_idle_timeout),
                idle: enabled(self.idle_timeout),
            },
            access_log: self.access_log == AccessLogTarget::Stdout,
            workload: self.workload.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| self.pod_name.clone()),
            tracing: self
                .trace_collector
                .clone()
                .filter(|c| !c.is_empty())
                .map(|collector| TraceSettings { collector, sampling_percent: self.trace_sampling }),
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// UID the proxy runs as; its own traffic is never captured.
    #[arg(long, default_value_t = PROXY_UID, value_name = "UID")]
    pub proxy_uid: u32,
    /// Where outbound TCP is redirected.
    #[arg(long, default_value_t = OUTBOUND_CAPTURE_PORT, value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT")]
    pub outbound_capture_port: u16,
    /// Where inbound TCP is redirected.
    #[arg(long, default_value_t = INBOUND_CAPTURE_PORT, value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT")]
    pub inbound_capture_port: u16,
    /// The proxy's health port, left reachable from outside the pod (kubelet probes, metrics scrapes).
    #[arg(long, default_value_t = HEALTH_PORT, value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT")]
    pub health_port: u16,
    /// Destination ports whose outbound traffic bypasses the proxy, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT,...")]
    pub exclude_outbound_ports: Vec<u16>,
    /// Pod ports whose inbound traffic bypasses the proxy, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT,...")]
    pub exclude_inbound_ports: Vec<u16>,
    /// Destination ranges whose outbound traffic bypasses the proxy, comma-separated CIDRs (IPv4; IPv6 is not
    /// captured at all).
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...")]
    pub exclude_outbound_ip_ranges: Vec<Cidr>,
    /// Print the rules without installing them.
    #[arg(long)]
    pub dry_run: bool,
}

impl InitArgs {
    pub fn settings(&self) -> CaptureSettings {
        CaptureSettings {
            proxy_uid: self.proxy_uid,
            outbound_capture_port: self.outbound_capture_port,
            inbound_capture_port: self.inbound_capture_port,
            health_port: self.health_port,
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ip_ranges: self.exclude_outbound_ip_ranges.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Give up after this long (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// The readiness URL to poll.
    #[arg(long, default_value = "http://127.0.0.1:15020/healthz/ready", value_name = "URL")]
    pub url: http::Uri,
}

#[cfg(test)]
mod tests;

/// `key=value,key=value` (empty: no labels). Kubernetes label keys and values hold no `,` or `=`.
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
        if key.is_empty() || value.contains('=') {
            return Err(format!("{pair:?} is not key=value"));
        }
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("label {key:?} is given twice"));
        }
    }
    Ok(labels)
}
