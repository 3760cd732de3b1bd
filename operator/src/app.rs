//! Wiring of the running operator: source -> index (debounced) -> published snapshots -> ADS server, plus the
//! health listener and, in Kubernetes mode, leader election and the status writer.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::ca::{Authenticator, Authority, CertificateService, Issuance};
use crate::debug::DebugState;
use crate::debug::registry::Registry;
use crate::health::{self, HealthState};
use crate::index::Index;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::source::kube::{Scope, SyncTracker};
use crate::source::{Event, file};
use crate::status::writer;
use crate::xds::AdsServer;
use weft_xds::ProxyScope;

pub use crate::index::published::{Published, SnapshotReceiver, SnapshotSender};

/// How bursts of changes are batched into one snapshot: a snapshot is built once no event has arrived for
/// `quiet`, or `max_delay` after the first event of the burst, whichever is first.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    pub quiet: Duration,
    pub max_delay: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Self { quiet: Duration::from_millis(20), max_delay: Duration::from_millis(200) }
    }
}

/// On shutdown, how long xDS connections get to close after their streams were ended.
pub const XDS_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// On shutdown, how long releasing the leader Lease may take (the API server may be slow or gone).
const LEASE_RELEASE_GRACE: Duration = Duration::from_millis(700);

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    FileSource(#[from] file::FileSourceError),
    #[error("xDS server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The listeners an operator serves on, bound before anything starts, and how much of the mesh each proxy is
/// sent before it asks for more.
pub struct Listeners {
    /// Plaintext ADS; `None` when only the TLS port serves config (see [`plaintext_xds_address`]).
    pub xds: Option<TcpListener>,
    pub health: TcpListener,
    pub proxy_scope: ProxyScope,
    /// The mesh's root namespace (Istio's `rootNamespace`): its DestinationRules and PeerAuthentications are the
    /// mesh-wide defaults. The operator's own namespace, normally.
    pub root_namespace: String,
    /// The TLS port (15012): certificates for proxies and ADS over TLS; `None`: no CA, no mutual TLS.
    pub secure: Option<SecurePort>,
}

/// Where plaintext ADS is served: where the operator was told to serve it; without a CA, the default
/// (`127.0.0.1:15010`); with a CA, nowhere unless asked. Plaintext ADS takes a proxy's node id at its word, so
/// anyone who reaches it can read any proxy's routes and endpoints: with mutual TLS it is an explicit opt-in
/// (standalone development, or proxies injected before mutual TLS was turned on).
pub fn plaintext_xds_address(asked: Option<SocketAddr>, mutual_tls: bool) -> Option<SocketAddr> {
    match (asked, mutual_tls) {
        (Some(address), _) => Some(address),
        (None, false) => Some(SocketAddr::from(([127, 0, 0, 1], 15010))),
        (None, true) => None,
    }
}

/// The CA's port: TLS with the operator's serving certificate, the certificate service and ADS.
pub struct SecurePort {
    pub listener: TcpListener,
    pub ca: CertificateAuthority,
}

/// The mesh's CA as the operator serves it: who may get which certificate, and its own serving certificate.
pub struct CertificateAuthority {
    pub serving: tonic::transport::Identity,
    pub authority: Arc<Authority>,
    pub authenticator: Authenticator,
    /// Includes the mesh's trust domain: sidecars talk mutual TLS with identities in it.
    pub issuance: Issuance,
}

/// Applies event batches to the index and publishes a snapshot per debounced burst of changes.
pub async fn run_index(
    mut index: Index,
    mut events: mpsc::Receiver<Vec<Event>>,
    snapshots: SnapshotSender,
    debounce: Debounce,
    metrics: Arc<Metrics>,
) {
    while let Some(batch) = events.recv().await {
        let mut changed = apply_all(&mut index, batch);
        let deadline = tokio::time::Instant::now() + debounce.max_delay;
        loop {
            let wait = debounce.quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(batch)) => changed |= apply_all(&mut index, batch),
                Ok(None) | Err(_) => break,
            }
        }
        if changed || snapshots.borrow().is_none() {
            let snapshot = index.snapshot();
            tracing::info!(
                services = snapshot.services.len(),
                virtual_services = snapshot.virtual_services.len(),
                destination_rules = snapshot.destination_rules.len(),
                rejected = snapshot.rejections.len(),
                "new snapshot"
            );
            metrics.snapshot_built();
            let published = Published::next(snapshot, snapshots.borrow().as_deref(), Instant::now());
            snapshots.send_replace(Some(Arc::new(published)));
        }
    }
}

fn apply_all(index: &mut Index, batch: Vec<Event>) -> bool {
    batch.into_iter().fold(false, |changed, event| index.apply(event) | changed)
}

/// Standalone mode: serves xDS from the YAML files in `dir` until `shutdown` completes.
pub async fn serve_standalone(
    dir: PathBuf,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let metrics = Arc::new(Metrics::new());
    let (events, snapshots, index) = start_index(metrics.clone(), &listeners, false);
    let source = tokio::spawn(file::watch_dir(dir, events, metrics.config_file_reads()));
    let warnings = tokio::spawn(warn_unresolved_refs(snapshots.clone()));
    let ready_rx = snapshots.clone();
    let ready = Arc::new(move || ready_rx.borrow().is_some());
    let result = serve_common(listeners, snapshots, HealthState { ready, metrics }, shutdown).await;
    source.abort();
    warnings.abort();
    index.abort();
    result
}

/// Standalone mode has no status to write: a rule naming a host, subset or port that does not exist is logged
/// instead, once per problem (again only after it was fixed and came back).
async fn warn_unresolved_refs(mut snapshots: SnapshotReceiver) {
    let mut reported = std::collections::BTreeSet::new();
    loop {
        let current = match snapshots.borrow_and_update().as_ref() {
            Some(published) => crate::status::unresolved_refs(&published.snapshot),
            None => Default::default(),
        };
        for (key, problem) in current.difference(&reported) {
            tracing::warn!(kind = ?key.kind, namespace = %key.namespace, name = %key.name, "{problem}; requests routed there get 503 (or 404)");
        }
        reported = current;
        tokio::time::sleep(crate::status::PASS_INTERVAL).await;
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Kubernetes mode: watches the cluster, serves xDS on every replica, writes status on the leader.
pub async fn serve_kubernetes(
    client: kube::Client,
    scope: Scope,
    lease: LeaseConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let metrics = Arc::new(Metrics::new());
    let (events, snapshots, index) = start_index(metrics.clone(), &listeners, scope.without_secrets);
    let (leader_tx, leader_rx) = watch::channel(false);
    let sync = Arc::new(SyncTracker::default());
    let stop = Stop::default();
    let mut tasks = vec![
        index,
        tokio::spawn(crate::source::kube::run(client.clone(), scope, events, sync.clone(), metrics.clone())),
        tokio::spawn(writer::run(client.clone(), snapshots.clone(), leader_rx, metrics.clone())),
    ];
    if let Some(secure) = &listeners.secure {
        let roots = secure.ca.authority.roots_pem().to_string();
        tasks.push(tokio::spawn(crate::ca::bundle::run(client.clone(), roots, snapshots.clone())));
    }
    let election = tokio::spawn(leader::run(client, lease, leader_tx, metrics.clone(), stop.waiter()));
    let ready_rx = snapshots.clone();
    let ready = Arc::new(move || sync.is_synced() && ready_rx.borrow().is_some());
    // The Lease is released as soon as the stop begins, while xDS connections close, so another replica takes
    // over at once.
    let release = stop.clone();
    let shutdown = async move {
        shutdown.await;
        release.trigger();
    };
    let result = serve_common(listeners, snapshots, HealthState { ready, metrics }, shutdown).await;
    if tokio::time::timeout(LEASE_RELEASE_GRACE, election).await.is_err() {
        tracing::warn!("the leader Lease was not released in time; it expires on its own");
    }
    tasks.iter().for_each(|t| t.abort());
    result
}

/// The index task, with the channel sources feed and the snapshots it publishes; `without_secrets`: Secrets are
/// not watched (so a rule's status can say why its Secret is not found).
fn start_index(
    metrics: Arc<Metrics>,
    listeners: &Listeners,
    without_secrets: bool,
) -> (mpsc::Sender<Vec<Event>>, SnapshotReceiver, tokio::task::JoinHandle<()>) {
    let (events_tx, events_rx) = mpsc::channel(64);
    let (snapshot_tx, snapshot_rx) = watch::channel(None);
    let trust_domain = listeners.secure.as_ref().map(|s| s.ca.issuance.trust_domain.clone());
    let mut index = Index::new(trust_domain, listeners.root_namespace.clone());
    if without_secrets {
        index = index.without_secrets();
    }
    let task = tokio::spawn(run_index(index, events_rx, snapshot_tx, Debounce::default(), metrics));
    (events_tx, snapshot_rx, task)
}

/// A one-way "stop now" that any number of tasks can wait for.
#[derive(Default, Clone)]
struct Stop(Arc<watch::Sender<bool>>);

impl Stop {
    fn waiter(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.0.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }

    fn trigger(&self) {
        self.0.send_replace(true);
    }
}

async fn serve_common(
    listeners: Listeners,
    snapshots: SnapshotReceiver,
    health: HealthState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let stop = Stop::default();
    let metrics = health.metrics.clone();
    let scope = listeners.proxy_scope;
    let registry = Arc::new(Registry::default());
    let debug = DebugState { registry: registry.clone(), snapshots: snapshots.clone(), default_scope: scope };
    let health_server = tokio::spawn(health::serve(listeners.health, health, debug, stop.waiter()));
    let xds = XdsContext { scope, snapshots, metrics, registry };
    let stopping = async {
        tokio::select! {
            () = shutdown => {}
            () = stop.waiter() => {}
        }
        stop.trigger();
    };
    // A port that fails stops the other and the operator, rather than leaving a replica that serves no config.
    let stopping_on_error = |result: Result<(), OperatorError>| {
        if result.is_err() {
            stop.trigger();
        }
        result
    };
    let plain = async {
        match listeners.xds {
            Some(listener) => stopping_on_error(serve_xds(listener, None, xds.clone(), stop.waiter()).await),
            None => Ok(()),
        }
    };
    let secure = async {
        match listeners.secure {
            Some(port) => {
                let (listener, tls) = port.tls(xds.metrics.clone());
                stopping_on_error(serve_xds(listener, Some(tls), xds.clone(), stop.waiter()).await)
            }
            None => Ok(()),
        }
    };
    let ((), plain, secure) = tokio::join!(stopping, plain, secure);
    let result = plain.and(secure);
    // The health listener stopped with the xDS server and had as long to finish; a slow scrape does not hold the
    // exit up.
    let _ = tokio::time::timeout(Duration::from_millis(100), health_server).await;
    result
}

/// What every xDS port serves from and reports to.
#[derive(Clone)]
pub struct XdsContext {
    /// The scope of proxies that state none.
    pub scope: ProxyScope,
    pub snapshots: SnapshotReceiver,
    pub metrics: Arc<Metrics>,
    /// The debug API's registry of connected proxies, shared by the ports.
    pub registry: Arc<Registry>,
}

/// TLS on an xDS port, with the certificate service beside ADS.
pub struct TlsPort {
    pub config: tonic::transport::ServerTlsConfig,
    pub certificates: CertificateService,
    /// Proxies on this port present a workload certificate of this trust domain for their own namespace.
    pub trust_domain: String,
}

impl SecurePort {
    fn tls(self, metrics: Arc<Metrics>) -> (TcpListener, TlsPort) {
        // A client certificate is optional at the handshake: a proxy asks for its first certificate here without
        // one. ADS then requires it (see `AdsServer::requiring_identity`).
        let ca = self.ca;
        let roots = tonic::transport::Certificate::from_pem(ca.authority.roots_pem());
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(ca.serving)
            .client_ca_root(roots)
            .client_auth_optional(true);
        let trust_domain = ca.issuance.trust_domain.clone();
        let certificates = CertificateService::new(ca.authority, ca.authenticator, ca.issuance, metrics);
        (self.listener, TlsPort { config, certificates, trust_domain })
    }
}

/// Serves ADS on `listener` from the snapshots published on `snapshots`, until `shutdown` completes. Then the
/// listener closes (a reconnecting proxy reaches another replica), every stream ends with `UNAVAILABLE`, and
/// connections get [`XDS_CLOSE_GRACE`] to finish before they are dropped, so that a client that does not read
/// cannot hold the operator up.
pub async fn serve_xds(
    listener: TcpListener,
    tls: Option<TlsPort>,
    xds: XdsContext,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OperatorError> {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let (closing_tx, closing) = watch::channel(false);
    let mut closed = closing.clone();
    let mut builder = tonic::transport::Server::builder()
        // Find proxies that vanished without closing their stream.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    let mut ads = AdsServer::new(xds.snapshots, xds.scope, xds.metrics, closing).registering_in(xds.registry);
    let certificates = match tls {
        Some(TlsPort { config, certificates, trust_domain }) => {
            tracing::info!(%address, "serving certificates and xDS (ADS) over TLS");
            builder = builder.tls_config(config)?;
            ads = ads.requiring_identity(trust_domain);
            Some(certificates)
        }
        None => {
            tracing::info!(%address, "serving xDS (ADS)");
            None
        }
    };
    let server = builder
        .add_service(ads.into_service())
        .add_optional_service(certificates)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            closing_tx.send_replace(true);
        });
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        _ = closed.wait_for(|closing| *closing) => {}
    }
    match tokio::time::timeout(XDS_CLOSE_GRACE, server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::info!(grace = ?XDS_CLOSE_GRACE, "dropping xDS connections that did not close in time");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_xds_is_served_where_asked_by_default_without_a_ca_and_not_by_default_with_one() {
        let asked: SocketAddr = "0.0.0.0:15010".parse().unwrap();
        assert_eq!(plaintext_xds_address(Some(asked), true), Some(asked));
        assert_eq!(plaintext_xds_address(Some(asked), false), Some(asked));
        assert_eq!(plaintext_xds_address(None, false), Some("127.0.0.1:15010".parse().unwrap()));
        assert_eq!(plaintext_xds_address(None, true), None);
    }
}
