//! The gRPC edge of the ADS server (tonic): one task per stream feeding the pure [`AdsStream`] state machine.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::{AggregatedDiscoveryService, AggregatedDiscoveryServiceServer},
};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weft_xds::ProxyNode;

use super::resources::EncodedResources;
use super::stream::{AdsStream, Answer};
use crate::app::SnapshotReceiver;
use crate::index::Snapshot;
use crate::metrics::Metrics;
use crate::translate::translate;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: SnapshotReceiver,
    metrics: Arc<Metrics>,
}

impl AdsServer {
    pub fn new(snapshots: SnapshotReceiver, metrics: Arc<Metrics>) -> Self {
        Self { snapshots, metrics }
    }

    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }
}

type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let (tx, rx) = mpsc::channel(16);
        let stream =
            StreamContext { snapshots: self.snapshots.clone(), outbox: tx, peer, metrics: self.metrics.clone() };
        tokio::spawn(stream.serve(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "weft-operator serves state-of-the-world ADS; incremental (delta) xDS is not supported",
        ))
    }
}

struct StreamContext {
    snapshots: SnapshotReceiver,
    outbox: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    peer: String,
    metrics: Arc<Metrics>,
}

impl StreamContext {
    async fn serve(mut self, mut incoming: Streaming<DiscoveryRequest>) {
        let mut state = AdsStream::default();
        let mut node: Option<ProxyNode> = None;
        loop {
            let (responses, published_at) = tokio::select! {
                message = incoming.message() => {
                    let request = match message {
                        Ok(Some(request)) => request,
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(peer = %self.peer, error = %status, "ADS stream broke");
                            break;
                        }
                    };
                    if node.is_none() {
                        match identify(&request) {
                            Ok(identified) => {
                                tracing::info!(peer = %self.peer, proxy = %identified, "proxy connected");
                                self.metrics.proxy_connected();
                                if let Some(published) = self.snapshots.borrow_and_update().clone() {
                                    state.on_resources(resources_for(&published.snapshot, &identified));
                                }
                                node = Some(identified);
                            }
                            Err(message) => {
                                let _ = self.outbox.send(Err(Status::invalid_argument(message))).await;
                                break;
                            }
                        }
                    }
                    let step = state.on_request(&request);
                    self.log_step(node.as_ref(), &step.answer, step.ignored.as_deref());
                    (step.responses, None)
                }
                changed = self.snapshots.changed(), if node.is_some() => {
                    if changed.is_err() {
                        break;
                    }
                    let published = self.snapshots.borrow_and_update().clone();
                    match (published, &node) {
                        (Some(p), Some(node)) => (state.on_resources(resources_for(&p.snapshot, node)), Some(p.at)),
                        _ => (Vec::new(), None),
                    }
                }
            };
            if !self.send_all(node.as_ref(), responses, published_at).await {
                break;
            }
        }
        if let Some(node) = node {
            tracing::info!(peer = %self.peer, proxy = %node, "proxy disconnected");
            self.metrics.proxy_disconnected();
        }
    }

    /// Sends responses in order; false when the proxy is gone.
    async fn send_all(
        &self,
        node: Option<&ProxyNode>,
        responses: Vec<DiscoveryResponse>,
        since: Option<std::time::Instant>,
    ) -> bool {
        for response in responses {
            let kind = weft_xds::ResourceType::from_type_url(&response.type_url);
            tracing::debug!(proxy = ?node, type_url = %response.type_url, version = %response.version_info, "push");
            if self.outbox.send(Ok(response)).await.is_err() {
                return false;
            }
            if let Some(kind) = kind {
                self.metrics.push(kind, since.map(|s| s.elapsed()));
            }
        }
        true
    }

    fn log_step(&self, node: Option<&ProxyNode>, answer: &Option<Answer>, ignored: Option<&str>) {
        let proxy = node.map(ToString::to_string).unwrap_or_default();
        match answer {
            Some(Answer::Ack { kind, version }) => tracing::debug!(%proxy, kind = kind.short_name(), %version, "ACK"),
            Some(Answer::Nack { kind, version, message }) => {
                self.metrics.nack(*kind);
                tracing::warn!(%proxy, kind = kind.short_name(), %version, detail = %message, "proxy rejected config (NACK)")
            }
            None => {}
        }
        if let Some(reason) = ignored {
            tracing::debug!(%proxy, reason, "ignored request");
        }
    }
}

fn identify(request: &DiscoveryRequest) -> Result<ProxyNode, String> {
    let id = request.node.as_ref().map(|n| n.id.as_str()).unwrap_or_default();
    if id.is_empty() {
        return Err("the first request of an ADS stream must carry node.id".to_string());
    }
    ProxyNode::parse(id)
}

fn resources_for(snapshot: &Snapshot, node: &ProxyNode) -> Arc<EncodedResources> {
    Arc::new(EncodedResources::from(&translate(snapshot, node)))
}
