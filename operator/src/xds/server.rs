//! The gRPC edge of the ADS server (tonic): one task per stream feeding the pure [`AdsStream`] state machine.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::{AggregatedDiscoveryService, AggregatedDiscoveryServiceServer},
};
use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weft_xds::ProxyNode;

use super::resources::EncodedResources;
use super::stream::{AdsStream, Answer};
use crate::index::Snapshot;
use crate::translate::translate;

/// The current snapshot; `None` until the sources have delivered their first complete state, so a restarting
/// operator never pushes an empty config over a proxy's good one.
pub type SnapshotReceiver = watch::Receiver<Option<Arc<Snapshot>>>;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: SnapshotReceiver,
}

impl AdsServer {
    pub fn new(snapshots: SnapshotReceiver) -> Self {
        Self { snapshots }
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
        tokio::spawn(serve_stream(request.into_inner(), self.snapshots.clone(), tx, peer));
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

type Outbox = mpsc::Sender<Result<DiscoveryResponse, Status>>;

async fn serve_stream(
    mut incoming: Streaming<DiscoveryRequest>,
    mut snapshots: SnapshotReceiver,
    outbox: Outbox,
    peer: String,
) {
    let mut state = AdsStream::default();
    let mut node: Option<ProxyNode> = None;
    loop {
        let responses = tokio::select! {
            message = incoming.message() => {
                let request = match message {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%peer, error = %status, "ADS stream broke");
                        break;
                    }
                };
                if node.is_none() {
                    match identify(&request) {
                        Ok(identified) => {
                            tracing::info!(%peer, proxy = %identified, "proxy connected");
                            if let Some(snapshot) = snapshots.borrow_and_update().clone() {
                                state.on_resources(resources_for(&snapshot, &identified));
                            }
                            node = Some(identified);
                        }
                        Err(message) => {
                            let _ = outbox.send(Err(Status::invalid_argument(message))).await;
                            break;
                        }
                    }
                }
                let step = state.on_request(&request);
                log_step(node.as_ref(), &step.answer, step.ignored.as_deref());
                step.responses
            }
            changed = snapshots.changed(), if node.is_some() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                match (snapshot, &node) {
                    (Some(snapshot), Some(node)) => state.on_resources(resources_for(&snapshot, node)),
                    _ => Vec::new(),
                }
            }
        };
        for response in responses {
            tracing::debug!(proxy = ?node, type_url = %response.type_url, version = %response.version_info, "push");
            if outbox.send(Ok(response)).await.is_err() {
                break;
            }
        }
    }
    if let Some(node) = node {
        tracing::info!(%peer, proxy = %node, "proxy disconnected");
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

fn log_step(node: Option<&ProxyNode>, answer: &Option<Answer>, ignored: Option<&str>) {
    let proxy = node.map(ToString::to_string).unwrap_or_default();
    match answer {
        Some(Answer::Ack { kind, version }) => tracing::debug!(%proxy, kind = kind.short_name(), %version, "ACK"),
        Some(Answer::Nack { kind, version, message }) => {
            tracing::warn!(%proxy, kind = kind.short_name(), %version, detail = %message, "proxy rejected config (NACK)")
        }
        None => {}
    }
    if let Some(reason) = ignored {
        tracing::debug!(%proxy, reason, "ignored request");
    }
}
