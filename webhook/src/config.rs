//! What injection needs to know (proxy image, xDS address, resources, sidecar mode), and the pure rule that picks
//! native or classic sidecars from the API server's version. Built from flags in `main`, checked before serving.

use std::fmt;

use crate::quantity::Quantity;

/// First Kubernetes minor version (1.x) where native sidecars (init containers with `restartPolicy: Always`) are
/// on by default (beta in 1.29; alpha behind a feature gate in 1.28).
pub const NATIVE_SIDECARS_MIN_MINOR: u32 = 29;

/// Default address of the operator's xDS server, as the proxy should dial it, without mutual TLS.
pub const DEFAULT_XDS_ADDRESS: &str = "http://weft-operator.weft-system.svc:15010";

/// The xDS address injected proxies dial unless told: with mutual TLS, the operator's TLS port (an operator
/// with a CA serves plaintext xDS only when asked to), else its plaintext one.
pub fn default_xds_address(mtls: bool) -> &'static str {
    if mtls { DEFAULT_CA_ADDRESS } else { DEFAULT_XDS_ADDRESS }
}

/// Default address of the operator's certificate service (its TLS port).
pub const DEFAULT_CA_ADDRESS: &str = "https://weft-operator.weft-system.svc:15012";

/// Workload identity for injected proxies: where they get certificates, and the mesh's trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Handed to the proxy as `WEFT_CA_ADDRESS`.
    pub ca_address: String,
    pub trust_domain: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { ca_address: DEFAULT_CA_ADDRESS.into(), trust_domain: weft_xds::identity::DEFAULT_TRUST_DOMAIN.into() }
    }
}

/// Everything `inject` needs besides the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectConfig {
    /// Image of both injected containers (`weft-proxy init` and `weft-proxy run`).
    pub proxy_image: String,
    /// Handed to the proxy as `WEFT_XDS_ADDRESS`.
    pub xds_address: String,
    /// Sidecar resources unless a pod's annotations override them.
    pub resources: ProxyResources,
    /// How the proxy is started before, and stopped after, the application.
    pub mode: SidecarMode,
    /// The proxy's timeouts unless a pod's annotations override them.
    pub timeouts: ProxyTimeouts,
    /// Mutual TLS: each proxy gets a workload certificate; `None`: plaintext mesh.
    pub identity: Option<IdentityConfig>,
    /// Proxies write an access log line per request unless a pod's annotation says otherwise.
    pub access_log: bool,
    /// Proxies export request spans to this collector; `None`: trace headers pass through untouched.
    pub tracing: Option<TracingConfig>,
}

/// Where injected proxies send spans, and how many requests they trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/gRPC, `http://HOST:PORT` (`WEFT_TRACE_COLLECTOR` in the sidecar).
    pub collector: String,
    /// Percent of requests traced when the client made no decision, unless a pod's annotation says otherwise.
    pub sampling_percent: f64,
}

/// Istio's default sampling rate (`meshConfig.defaultConfig.tracing.sampling`), percent.
pub const DEFAULT_TRACE_SAMPLING: f64 = 1.0;

/// The injected proxy's timeouts, as durations it parses (`10s`, `5m`, `1h`, `0` for off); see `weft-proxy
/// --help` for what each does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTimeouts {
    pub request_headers: String,
    pub stream_idle: String,
    pub idle: String,
}

/// The proxy's own defaults (Envoy's), also the defaults of the `--proxy-*-timeout` flags.
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: &str = "10s";
pub const DEFAULT_STREAM_IDLE_TIMEOUT: &str = "5m";
pub const DEFAULT_IDLE_TIMEOUT: &str = "1h";

impl Default for ProxyTimeouts {
    fn default() -> Self {
        Self {
            request_headers: DEFAULT_REQUEST_HEADERS_TIMEOUT.into(),
            stream_idle: DEFAULT_STREAM_IDLE_TIMEOUT.into(),
            idle: DEFAULT_IDLE_TIMEOUT.into(),
        }
    }
}

/// A duration the proxy accepts, trimmed; the error says why not.
pub fn proxy_duration(text: &str) -> Result<String, String> {
    weft_process::parse_duration(text).map(|_| text.trim().to_string())
}

/// Requests and limits of the proxy container.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyResources {
    pub cpu_request: Quantity,
    pub memory_request: Quantity,
    pub cpu_limit: Quantity,
    pub memory_limit: Quantity,
}

/// Default proxy resources (also the defaults of the `--proxy-*` flags).
pub const DEFAULT_PROXY_CPU: &str = "100m";
pub const DEFAULT_PROXY_MEMORY: &str = "128Mi";
pub const DEFAULT_PROXY_CPU_LIMIT: &str = "1000m";
pub const DEFAULT_PROXY_MEMORY_LIMIT: &str = "512Mi";

impl Default for ProxyResources {
    fn default() -> Self {
        Self {
            cpu_request: Quantity::from_static(DEFAULT_PROXY_CPU),
            memory_request: Quantity::from_static(DEFAULT_PROXY_MEMORY),
            cpu_limit: Quantity::from_static(DEFAULT_PROXY_CPU_LIMIT),
            memory_limit: Quantity::from_static(DEFAULT_PROXY_MEMORY_LIMIT),
        }
    }
}

impl InjectConfig {
    /// A config with the default xDS address and resources.
    pub fn with_defaults(proxy_image: &str, mode: SidecarMode) -> Self {
        Self {
            proxy_image: proxy_image.to_string(),
            xds_address: default_xds_address(true).to_string(),
            resources: ProxyResources::default(),
            mode,
            timeouts: ProxyTimeouts::default(),
            identity: Some(IdentityConfig::default()),
            access_log: false,
            tracing: None,
        }
    }
}

/// How the sidecar is ordered against the application's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarMode {
    /// Kubernetes >= 1.29: `weft-proxy` is an init container with `restartPolicy: Always` and a startup probe, so
    /// the kubelet starts it before the app and stops it after.
    Native,
    /// Older clusters: `weft-proxy` is the first app container with a `postStart` hook that blocks until it is ready.
    Classic,
}

impl SidecarMode {
    /// The value of the `weft.dev/injected` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Classic => "classic",
        }
    }
}

impl fmt::Display for SidecarMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A config problem found before the server starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--proxy-image must not be empty")]
    EmptyImage,
    #[error("--xds-address {0:?} must look like http://HOST:PORT or https://HOST:PORT")]
    BadXdsAddress(String),
    #[error("--proxy-trace-collector {0:?} must look like http://HOST:PORT (plaintext OTLP/gRPC)")]
    BadTraceCollector(String),
    #[error("{request_flag} {request} is more than {limit_flag} {limit}")]
    RequestAboveLimit { request_flag: &'static str, request: String, limit_flag: &'static str, limit: String },
}

impl InjectConfig {
    /// Checks what clap's value parsers cannot: the image, the xDS and trace collector URL shapes, requests not
    /// above limits.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.proxy_image.trim().is_empty() {
            return Err(ConfigError::EmptyImage);
        }
        check_xds_address(&self.xds_address)?;
        if let Some(tracing) = &self.tracing {
            // As the proxy checks it: a collector it would refuse would stop every injected pod.
            if weft_process::telemetry::collector_uri(&tracing.collector).is_err() {
                return Err(ConfigError::BadTraceCollector(tracing.collector.clone()));
            }
        }
        let r = &self.resources;
        if r.cpu_request.value() > r.cpu_limit.value() {
            return Err(ConfigError::RequestAboveLimit {
                request_flag: "--proxy-cpu",
                request: r.cpu_request.to_string(),
                limit_flag: "--proxy-cpu-limit",
                limit: r.cpu_limit.to_string(),
            });
        }
        if r.memory_request.value() > r.memory_limit.value() {
            return Err(ConfigError::RequestAboveLimit {
                request_flag: "--proxy-memory",
                request: r.memory_request.to_string(),
                limit_flag: "--proxy-memory-limit",
                limit: r.memory_limit.to_string(),
            });
        }
        Ok(())
    }
}

fn check_xds_address(address: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadXdsAddress(address.to_string());
    let rest = address.strip_prefix("http://").or_else(|| address.strip_prefix("https://")).ok_or_else(bad)?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', ' ']) || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// Whether a Kubernetes server of this version runs native sidecars, from the `/version` fields: `major` and
/// `minor` (which some distributions decorate, `"29+"`, and some leave empty), else `gitVersion`
/// (`v1.29.3-gke.1282001`). `None` when neither says.
pub fn native_sidecars_supported(major: &str, minor: &str, git_version: &str) -> Option<bool> {
    let number = |text: &str| -> Option<u32> {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let from_git = || {
        let mut parts = git_version.strip_prefix('v').unwrap_or(git_version).split('.');
        Some((number(parts.next()?)?, number(parts.next()?)?))
    };
    let (major, minor) = match (number(major), number(minor)) {
        (Some(major), Some(minor)) => (major, minor),
        _ => from_git()?,
    };
    Some(major > 1 || (major == 1 && minor >= NATIVE_SIDECARS_MIN_MINOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InjectConfig {
        InjectConfig::with_defaults("weft-proxy:test", SidecarMode::Native)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().check(), Ok(()));
    }

    /// An operator with a CA serves config on its TLS port only (plaintext xDS is opt-in there): proxies with a
    /// certificate dial that one unless told otherwise.
    #[test]
    fn proxies_dial_the_tls_port_by_default_with_mutual_tls() {
        assert_eq!(default_xds_address(true), DEFAULT_CA_ADDRESS);
        assert!(default_xds_address(true).starts_with("https://"));
        assert_eq!(default_xds_address(false), DEFAULT_XDS_ADDRESS);
        assert_eq!(config().xds_address, default_xds_address(config().identity.is_some()));
    }

    #[test]
    fn xds_address_needs_scheme_host_and_port() {
        for good in ["http://weft-operator.weft-system.svc:15010", "https://10.0.0.1:15012", "http://[::1]:15010"] {
            assert_eq!(check_xds_address(good), Ok(()), "{good}");
        }
        for bad in ["weft-operator:15010", "http://weft-operator", "http://:15010", "http://h:0", "grpc://h:1"] {
            assert!(check_xds_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trace_collector_the_proxy_would_refuse_is_refused_at_startup() {
        let with = |collector: &str| InjectConfig {
            tracing: Some(TracingConfig { collector: collector.into(), sampling_percent: 1.0 }),
            ..config()
        };
        assert_eq!(with("otel.observability:4317").check(), Ok(()));
        assert_eq!(with("http://10.0.0.9:4317").check(), Ok(()));
        for bad in ["https://otel:4317", "otel", "http://otel"] {
            let err = with(bad).check().unwrap_err().to_string();
            assert!(err.starts_with("--proxy-trace-collector"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_request_above_its_limit_names_both_flags() {
        let mut c = config();
        c.resources.memory_request = "1Gi".parse().unwrap();
        assert_eq!(c.check().unwrap_err().to_string(), "--proxy-memory 1Gi is more than --proxy-memory-limit 512Mi");
    }

    #[test]
    fn native_sidecars_from_1_29() {
        assert_eq!(native_sidecars_supported("1", "28", ""), Some(false));
        assert_eq!(native_sidecars_supported("1", "29", ""), Some(true));
        assert_eq!(native_sidecars_supported("1", "31+", ""), Some(true));
        assert_eq!(native_sidecars_supported("1", "24", ""), Some(false));
        assert_eq!(native_sidecars_supported("2", "0", ""), Some(true));
        assert_eq!(native_sidecars_supported("", "x", ""), None);
        // Some distributions leave major/minor empty; gitVersion still says.
        assert_eq!(native_sidecars_supported("", "", "v1.29.3-gke.1282001"), Some(true));
        assert_eq!(native_sidecars_supported("", "", "v1.27.16+k3s1"), Some(false));
        assert_eq!(native_sidecars_supported("1", "", "v1.30.0"), Some(true));
        assert_eq!(native_sidecars_supported("", "", "unknown"), None);
    }
}

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn built_in_resource_defaults_are_quantities_with_requests_under_limits() {
        for text in [DEFAULT_PROXY_CPU, DEFAULT_PROXY_MEMORY, DEFAULT_PROXY_CPU_LIMIT, DEFAULT_PROXY_MEMORY_LIMIT] {
            assert!(text.parse::<Quantity>().is_ok(), "{text}");
        }
        assert!(InjectConfig::with_defaults("weft-proxy:test", SidecarMode::Native).check().is_ok());
    }
}
