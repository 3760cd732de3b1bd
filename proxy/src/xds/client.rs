//! The ADS client's I/O: connect, stream, reconnect with backoff. While disconnected the proxy keeps serving the
//! last accepted config; the data plane never depends on the control plane being up.
//!
//! The proxy speaks incremental (delta) xDS; a control plane that answers `UNIMPLEMENTED` (an older operator
//! during an upgrade) is spoken to in state of the world from then on, continuing from the config already held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use weft_xds::ResourceType;

use super::delta::DeltaState;
use super::dial::XdsDial;
use super::state::{ClientState, Outcome};
use crate::config::ProxyConfig;
use crate::dataplane::Publisher;
use crate::metrics::Metrics;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream that lived this long counts as healthy: the next reconnect starts from the shortest backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);
/// Largest response accepted: a mesh's full set of clusters can be several MiB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The protocol variant in use, with its state.
enum Session {
    Delta(DeltaState),
    StateOfTheWorld(ClientState),
}

/// Streams config from the control plane `dial` reaches, forever, publishing each accepted config through `configs`; asks for the
/// on-demand virtual hosts named on `questions` (delta xDS only).
pub async fn run(
    dial: XdsDial,
    node: Node,
    configs: Publisher,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    mut questions: mpsc::Receiver<String>,
) {
    let mut backoff = BACKOFF_START;
    let sink = Sink { configs, ready, metrics };
    let mut session = Session::Delta(DeltaState::new(node.clone()));
    loop {
        let endpoint = dial.endpoint().await;
        let started = Instant::now();
        let result = match &mut session {
            Session::Delta(state) => delta_once(&endpoint, state, &sink, &mut questions).await,
            Session::StateOfTheWorld(state) => sotw_once(&endpoint, state, &sink).await,
        };
        sink.metrics.set_xds_connected(false);
        if let (Session::Delta(state), Err(StreamError::Status(status))) = (&session, &result)
            && status.code() == tonic::Code::Unimplemented
        {
            tracing::info!("the control plane does not serve delta xDS; using state of the world");
            session = Session::StateOfTheWorld(ClientState::resume(node.clone(), state.config().clone()));
            continue;
        }
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
    configs: Publisher,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Sink {
    /// Publishes what a response led to.
    fn report(&self, outcome: &Outcome, version: &str, config: &ProxyConfig, ready: bool) {
        match outcome {
            Outcome::Applied(kind) => {
                tracing::info!(kind = kind.short_name(), %version, "config applied");
                self.configs.publish(Arc::new(config.clone()));
                self.ready.store(ready, Ordering::Relaxed);
                self.metrics.config_applied(*kind, ready);
            }
            Outcome::Rejected { kind, error } => {
                self.metrics.nack(*kind);
                // A rejected on-demand answer still settles the requests waiting for it (see `DeltaState`).
                if *kind == ResourceType::VirtualHost {
                    self.configs.publish(Arc::new(config.clone()));
                }
                tracing::warn!(kind = kind.short_name(), %version, %error, "config rejected (NACK); keeping last good config")
            }
            Outcome::Ignored(reason) => tracing::debug!(reason, "ignored response"),
        }
    }
}

fn client(channel: tonic::transport::Channel) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

async fn delta_once(
    endpoint: &Endpoint,
    state: &mut DeltaState,
    sink: &Sink,
    questions: &mut mpsc::Receiver<String>,
) -> Result<(), StreamError> {
    let channel = endpoint.connect().await?;
    let (requests, outgoing) = mpsc::channel(16);
    // Questions asked while no stream was open go with the first requests.
    while let Ok(name) = questions.try_recv() {
        let _ = state.ask(name);
    }
    for request in state.on_connect() {
        let _ = requests.send(request).await;
    }
    let mut responses = client(channel).delta_aggregated_resources(ReceiverStream::new(outgoing)).await?.into_inner();
    tracing::info!(address = %endpoint.uri(), protocol = "delta", "xDS stream open");
    sink.metrics.set_xds_connected(true);
    loop {
        let response = tokio::select! {
            response = responses.message() => match response? {
                Some(response) => response,
                None => return Ok(()),
            },
            Some(name) = questions.recv() => {
                if let Some(request) = state.ask(name)
                    && requests.send(request).await.is_err()
                {
                    return Ok(());
                }
                continue;
            }
        };
        let reply = state.on_response(&response);
        let kind = ResourceType::from_type_url(&response.type_url);
        let version = kind.and_then(|k| state.config().versions.get(k.short_name())).cloned().unwrap_or_default();
        sink.report(&reply.outcome, &version, state.config(), state.is_ready());
        for request in reply.requests {
            if requests.send(request).await.is_err() {
                return Ok(());
            }
        }
    }
}

async fn sotw_once(endpoint: &Endpoint, state: &mut ClientState, sink: &Sink) -> Result<(), StreamError> {
    let channel = endpoint.connect().await?;
    let (requests, outgoing) = mpsc::channel(16);
    for request in state.on_connect() {
        let _ = requests.send(request).await;
    }
    let mut responses = client(channel).stream_aggregated_resources(ReceiverStream::new(outgoing)).await?.into_inner();
    tracing::info!(address = %endpoint.uri(), protocol = "state of the world", "xDS stream open");
    sink.metrics.set_xds_connected(true);
    while let Some(response) = responses.message().await? {
        let reply = state.on_response(&response);
        sink.report(&reply.outcome, &response.version_info, state.config(), state.is_ready());
        for request in reply.requests {
            if requests.send(request).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
