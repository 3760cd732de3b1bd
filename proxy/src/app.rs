//! Wiring of a running proxy: xDS client -> config channel -> data plane -> listeners (explicit or transparent),
//! plus the admin and health listeners, until a shutdown signal; then a graceful drain.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Certificate;
use weft_xds::{ON_DEMAND_METADATA_KEY, ON_DEMAND_VHDS, ProxyNode, ProxyScope, SCOPE_METADATA_KEY};

use crate::admin::{self, AdminState, Readiness};
use crate::config::Labels;
use crate::dataplane::Publisher;
use crate::drain::Drain;
use crate::health::{self, HealthState};
use crate::http::access_log::AccessLog;
use crate::http::on_demand::{ON_DEMAND_TIMEOUT, OnDemand};
use crate::http::timeouts::Timeouts;
use crate::http::{Forwarder, Observers, outbound};
use crate::identity::{self, CredentialsRx, IdentitySettings};
use crate::inbound::Inbound;
use crate::inbound::http::InboundHttp;
use crate::listen::{BindError, bind};
use crate::metrics::Metrics;
use crate::telemetry::Workload;
use crate::telemetry::trace::{TraceSettings, Tracer, export};
use crate::transparent;
use crate::xds::client;
use crate::xds::dial::XdsDial;

/// How application traffic reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Applications send HTTP to the outbound listener on purpose; routing by `Host`, port 80 when it has none.
    Explicit,
    /// iptables (`weft-proxy init`) redirects the pod's TCP: outbound to the outbound listener, inbound here.
    Transparent { inbound_listen: SocketAddr },
}

/// Everything a proxy needs to start, validated.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub xds_address: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ip: Option<IpAddr>,
    pub service_account: Option<String>,
    /// Its own scope, sent as node metadata; `None`: the operator's default.
    pub proxy_scope: Option<ProxyScope>,
    /// The pod's labels, for routes matching on the client's labels.
    pub labels: Labels,
    pub capture: Capture,
    /// Workload identity and mutual TLS; `None`: plaintext.
    pub identity: Option<IdentitySettings>,
    /// Roots for an `https://` xDS address (and the identity's trust bundle).
    pub trust_bundle: Option<PathBuf>,
    /// Explicit mode's inbound ports: listen address and the application's address.
    pub inbound: Vec<(SocketAddr, SocketAddr)>,
    pub outbound_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// `/healthz/ready` and `/metrics`; `None`: not served.
    pub health_listen: Option<SocketAddr>,
    /// How long in-flight requests and connections may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// Request-header, stream idle and connection idle timeouts.
    pub timeouts: Timeouts,
    /// One JSON line per request on standard output.
    pub access_log: bool,
    /// The workload the pod belongs to, for metrics.
    pub workload: String,
    /// Spans exported to a collector; `None`: trace headers pass through untouched.
    pub tracing: Option<TraceSettings>,
}

/// The Service port meant by a request whose authority has no port (explicit mode).
const DEFAULT_HTTP_PORT: u16 = 80;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--xds-address {0:?}: {1}")]
    XdsAddress(String, String),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("starting the access log writer: {0}")]
    AccessLog(std::io::Error),
    #[error("--trace-collector {0:?}: {1}")]
    TraceCollector(String, String),
}

impl ProxySettings {
    fn node(&self) -> Node {
        let id = ProxyNode { pod_name: self.pod_name.clone(), namespace: self.pod_namespace.clone(), ip: self.pod_ip };
        let text = |value: &str| Value { kind: Some(value::Kind::StringValue(value.to_string())) };
        let labels = Struct { fields: self.labels.iter().map(|(k, v)| (k.clone(), text(v))).collect() };
        // SERVICE_ACCOUNT and LABELS: Istio's node metadata keys, for control planes that look at them.
        let fields: BTreeMap<String, Value> = [
            self.service_account.as_deref().map(|account| ("SERVICE_ACCOUNT".to_string(), text(account))),
            Some(("LABELS".to_string(), Value { kind: Some(value::Kind::StructValue(labels)) })),
            self.proxy_scope.map(|scope| (SCOPE_METADATA_KEY.to_string(), text(scope.as_str()))),
            Some((ON_DEMAND_METADATA_KEY.to_string(), text(ON_DEMAND_VHDS))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let metadata = Some(Struct { fields: fields.into_iter().collect() });
        Node {
            id: id.to_string(),
            cluster: format!("{}.{}", self.pod_name, self.pod_namespace),
            metadata,
            // What this proxy reads that proxies before it did not, so the control plane may send it.
            client_features: vec![weft_xds::detection::DECLARED_TCP_FEATURE.to_string()],
            ..Default::default()
        }
    }

    /// Checks what can be checked before any port binds.
    pub fn xds_endpoint(&self) -> Result<tonic::transport::Endpoint, StartError> {
        let bad = |m: String| StartError::XdsAddress(self.xds_address.clone(), m);
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(self.xds_address.clone()).map_err(|e| bad(e.to_string()))?;
        match (endpoint.uri().scheme_str(), &self.trust_bundle) {
            (Some("http"), _) => {}
            (Some("https"), Some(bundle)) => {
                let roots = std::fs::read(bundle).map_err(|e| bad(format!("{}: {e}", bundle.display())))?;
                let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(Certificate::from_pem(roots));
                endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
            }
            (Some("https"), None) => return Err(bad("https:// needs --trust-bundle".into())),
            _ => return Err(bad("must start with http:// or https://".into())),
        }
        Ok(endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10)))
    }
}

/// The listeners, all bound before anything starts, so a taken port fails the start.
struct Listeners {
    outbound: TcpListener,
    inbound: Option<TcpListener>,
    /// Explicit mode's inbound ports, with the application address of each.
    explicit_inbound: Vec<(TcpListener, SocketAddr)>,
    admin: TcpListener,
    health: Option<TcpListener>,
}

impl Listeners {
    async fn bind(settings: &ProxySettings) -> Result<Self, BindError> {
        let inbound = match settings.capture {
            Capture::Transparent { inbound_listen } => Some(bind("inbound listener", inbound_listen).await?),
            Capture::Explicit => None,
        };
        let health = match settings.health_listen {
            Some(address) => Some(bind("health listener", address).await?),
            None => None,
        };
        let mut explicit_inbound = Vec::new();
        for (listen, app) in &settings.inbound {
            explicit_inbound.push((bind("inbound listener", *listen).await?, *app));
        }
        Ok(Self {
            outbound: bind("outbound listener", settings.outbound_listen).await?,
            inbound,
            explicit_inbound,
            admin: bind("admin listener", settings.admin_listen).await?,
            health,
        })
    }
}

/// Runs the proxy until `shutdown` completes, then drains: listeners close, in-flight requests and connections
/// get up to the drain timeout to finish.
pub async fn run(settings: ProxySettings, shutdown: impl Future<Output = &'static str>) -> Result<(), StartError> {
    let endpoint = settings.xds_endpoint()?;
    let collector = match &settings.tracing {
        Some(tracing) => Some(
            export::collector_endpoint(&tracing.collector)
                .map_err(|e| StartError::TraceCollector(tracing.collector.clone(), e))?,
        ),
        None => None,
    };
    let listeners = Listeners::bind(&settings).await?;
    let readiness = Readiness::default();
    let metrics = Arc::new(Metrics::new());
    let own = Workload::own(&settings.workload, &settings.pod_namespace, &settings.labels);
    let principal = settings.identity.as_ref().map(|identity| identity.id.to_string());
    let (tracer, exporter) = start_tracing(&settings, collector, &own, &metrics).unzip();
    metrics.golden.identify(own, principal.as_deref());
    let access_log = match settings.access_log {
        true => Some(AccessLog::stdout(metrics.clone()).map_err(StartError::AccessLog)?),
        false => None,
    };
    let observers = Observers { access_log, tracer };
    let credentials = settings.identity.clone().map(|identity| start_identity(identity, &readiness, &metrics));
    let (publisher, runtime_rx) = Publisher::new(credentials.clone(), metrics.clone());
    tracing::info!(
        mode = if settings.capture == Capture::Explicit { "explicit" } else { "transparent" },
        outbound = %settings.outbound_listen,
        admin = %settings.admin_listen,
        xds = %settings.xds_address,
        node = %settings.node().id,
        service_account = settings.service_account.as_deref().unwrap_or(""),
        timeouts = ?settings.timeouts,
        "weft-proxy starting"
    );
    let node = settings.node();
    let complete = readiness.config_complete.clone();
    let (on_demand, questions) = OnDemand::new(ON_DEMAND_TIMEOUT);
    let dial = match (&credentials, &settings.trust_bundle) {
        (Some(credentials), Some(bundle)) if endpoint.uri().scheme_str() == Some("https") => {
            XdsDial::WithIdentity { endpoint, bundle: bundle.clone(), credentials: credentials.clone() }
        }
        _ => XdsDial::Fixed(endpoint),
    };
    tokio::spawn(client::run(dial, node, publisher, complete, metrics.clone(), questions));
    tokio::spawn(admin::serve(
        listeners.admin,
        AdminState { runtime: runtime_rx.clone(), readiness: readiness.clone(), credentials: credentials.clone() },
    ));
    if let Some(health) = listeners.health {
        tokio::spawn(health::serve(health, HealthState { readiness: readiness.clone(), metrics: metrics.clone() }));
    }
    let inbound = Inbound {
        metrics: metrics.clone(),
        idle: settings.timeouts.idle,
        credentials: credentials.clone(),
        runtime: runtime_rx.clone(),
        http: Arc::new(
            InboundHttp::new(metrics.clone(), settings.timeouts, runtime_rx.clone()).observed_by(observers.clone()),
        ),
    };
    let forwarder = Forwarder::new(runtime_rx, metrics.clone(), settings.timeouts, on_demand, settings.labels.clone());
    let forwarder = Arc::new(forwarder.observed_by(observers));
    let drain = Drain::new();
    let data = DataListeners {
        outbound: listeners.outbound,
        captured_inbound: listeners.inbound,
        explicit_inbound: listeners.explicit_inbound,
    };
    let signal = tokio::select! {
        () = serve_data(data, forwarder, inbound, &drain) => "listeners ended",
        signal = shutdown => signal,
    };
    readiness.draining.store(true, Ordering::Relaxed);
    metrics.set_draining();
    let open = drain.open();
    tracing::info!(signal, open_connections = open, timeout_ms = settings.drain_timeout.as_millis() as u64, "draining");
    if drain.finish(settings.drain_timeout).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(timeout_ms = settings.drain_timeout.as_millis() as u64, "drain timeout; closing what is left");
    }
    // The served connections are gone, and with them the tracer: the exporter sends what is queued and ends.
    if let Some(exporter) = exporter
        && tokio::time::timeout(export::FLUSH_TIMEOUT, exporter).await.is_err()
    {
        tracing::warn!("queued spans not sent in time; dropped");
    }
    Ok(())
}

/// The tracer and its exporter's task, when a collector is set.
fn start_tracing(
    settings: &ProxySettings,
    collector: Option<tonic::transport::Endpoint>,
    own: &Workload,
    metrics: &Arc<Metrics>,
) -> Option<(Arc<Tracer>, tokio::task::JoinHandle<()>)> {
    let (tracing, collector) = (settings.tracing.as_ref()?, collector?);
    let (spans, queue) = Tracer::queue();
    let exporter = export::start(collector, queue, export::resource(own, &settings.pod_name), metrics.clone());
    let tracer = Tracer::new(tracing.sampling_percent, spans, metrics.clone(), &settings.node().id);
    Some((Arc::new(tracer), exporter))
}

/// Starts getting and renewing the workload certificate; the proxy is not ready until the first arrives.
fn start_identity(identity: IdentitySettings, readiness: &Readiness, metrics: &Arc<Metrics>) -> CredentialsRx {
    let (published, credentials) = watch::channel(None);
    readiness.identity_pending.store(true, Ordering::Relaxed);
    tokio::spawn(identity::client::run(identity, published, metrics.clone()));
    let (pending, mut arrived) = (readiness.identity_pending.clone(), credentials.clone());
    tokio::spawn(async move {
        if arrived.wait_for(Option::is_some).await.is_ok() {
            pending.store(false, Ordering::Relaxed);
        }
    });
    credentials
}

/// The listeners application traffic comes through.
struct DataListeners {
    outbound: TcpListener,
    captured_inbound: Option<TcpListener>,
    explicit_inbound: Vec<(TcpListener, SocketAddr)>,
}

/// The data listeners; runs until dropped (which closes them).
async fn serve_data(listeners: DataListeners, forwarder: Arc<Forwarder>, inbound: Inbound, drain: &Drain) {
    let explicit_inbound = futures_util::future::join_all(
        listeners.explicit_inbound.into_iter().map(|(listener, app)| inbound.serve(listener, Some(app), drain)),
    );
    match listeners.captured_inbound {
        Some(captured) => {
            tokio::join!(
                transparent::outbound::serve(listeners.outbound, forwarder, drain),
                inbound.serve(captured, None, drain),
            );
        }
        None => {
            tokio::join!(outbound::serve(listeners.outbound, forwarder, DEFAULT_HTTP_PORT, drain), explicit_inbound);
        }
    }
}
