//! The ADS client's I/O: connect, stream, reconnect with backoff. While disconnected the proxy keeps serving the
//! last accepted config; the data plane never depends on the control plane being up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::state::{ClientState, Outcome};
use crate::config::ProxyConfig;
use crate::metrics::Metrics;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream that lived this long counts as healthy: the next reconnect starts from the shortest backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);

/// Streams config from `endpoint` forever, publishing each accepted config on `configs`.
pub async fn run(
    endpoint: Endpoint,
    mut state: ClientState,
    configs: watch::Sender<Arc<ProxyConfig>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = BACKOFF_START;
    let sink = Sink { configs, ready, metrics };
    loop {
        let started = Instant::now();
        let result = stream_once(&endpoint, &mut state, &sink).await;
        sink.metrics.set_xds_connected(false);
        match result {
            Ok(()) => tracing::warn!("xDS stream closed by the control plane; reconnecting"),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "xDS stream failed; keeping last config")
            }
        }
        if started.elapsed() >= HEALTHY_STREAM {
            backoff = BACKOFF_START;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Spreads reconnects of many proxies over time: 50-100 % of `base`.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
}

/// Where accepted config and its signs of life go.
struct Sink {
    configs: watch::Sender<Arc<ProxyConfig>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

async fn stream_once(endpoint: &Endpoint, state: &mut ClientState, sink: &Sink) -> Result<(), StreamError> {
    let channel = endpoint.connect().await?;
    let (requests, outgoing) = mpsc::channel(16);
    for request in state.on_connect() {
        let _ = requests.send(request).await;
    }
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut responses = client.stream_aggregated_resources(ReceiverStream::new(outgoing)).await?.into_inner();
    tracing::info!(address = %endpoint.uri(), "xDS stream open");
    sink.metrics.set_xds_connected(true);
    while let Some(response) = responses.message().await? {
        let reply = state.on_response(&response);
        match &reply.outcome {
            Outcome::Applied(kind) => {
                tracing::info!(kind = kind.short_name(), version = %response.version_info, "config applied");
                sink.configs.send_replace(Arc::new(state.config().clone()));
                sink.ready.store(state.is_ready(), Ordering::Relaxed);
                sink.metrics.config_applied(*kind, state.is_ready());
            }
            Outcome::Rejected { kind, error } => {
                sink.metrics.nack(*kind);
                tracing::warn!(kind = kind.short_name(), version = %response.version_info, %error, "config rejected (NACK); keeping last good config")
            }
            Outcome::Ignored(reason) => tracing::debug!(reason, "ignored response"),
        }
        for request in reply.requests {
            if requests.send(request).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
