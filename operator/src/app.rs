//! Wiring of the running operator: source -> index (debounced) -> snapshot channel -> ADS server.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::index::{Index, Snapshot};
use crate::source::{Event, file};
use crate::xds::AdsServer;

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

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    FileSource(#[from] file::FileSourceError),
    #[error("xDS server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Applies event batches to the index and publishes a snapshot per debounced burst of changes.
pub async fn run_index(
    mut events: mpsc::Receiver<Vec<Event>>,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    debounce: Debounce,
) {
    let mut index = Index::default();
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
        let first = snapshots.borrow().is_none();
        if changed || first {
            let snapshot = Arc::new(index.snapshot());
            tracing::info!(
                services = snapshot.services.len(),
                virtual_services = snapshot.virtual_services.len(),
                destination_rules = snapshot.destination_rules.len(),
                "new snapshot"
            );
            snapshots.send_replace(Some(snapshot));
        }
    }
}

fn apply_all(index: &mut Index, batch: Vec<Event>) -> bool {
    batch.into_iter().fold(false, |changed, event| index.apply(event) | changed)
}

/// Standalone mode: serves xDS on `listener` from the YAML files in `dir` until `shutdown` completes.
pub async fn serve_standalone(
    dir: PathBuf,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OperatorError> {
    let (events_tx, events_rx) = mpsc::channel(16);
    let (snapshot_tx, snapshot_rx) = watch::channel(None);
    let source = tokio::spawn(file::watch_dir(dir, events_tx));
    let index = tokio::spawn(run_index(events_rx, snapshot_tx, Debounce::default()));
    let result = serve_xds(listener, snapshot_rx, shutdown).await;
    source.abort();
    index.abort();
    result
}

/// Serves ADS on `listener` from the snapshots published on `snapshots`.
pub async fn serve_xds(
    listener: TcpListener,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OperatorError> {
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving xDS (ADS)");
    tonic::transport::Server::builder()
        // Find proxies that vanished without closing their stream.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(AdsServer::new(snapshots).into_service())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
