//! A light, in-process stand-in for a proxy on the operator's ADS stream, incremental (as `weft-proxy`) or state
//! of the world: it subscribes as `weft-proxy` does (CDS and LDS wildcard, then EDS and RDS by the names those
//! carry), ACKs every response at once and records when each type arrived. Thousands fit in one process because
//! it decodes nothing but resource names.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_xds::{ON_DEMAND_METADATA_KEY, ON_DEMAND_VHDS, ResourceType};

type AdsClient = AggregatedDiscoveryServiceClient<tonic::transport::Channel>;

/// Largest response accepted: the whole mesh's clusters, at 5000 Services, are several MiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Resource types, as slots of [`Record`]'s arrays.
const TYPES: usize = ResourceType::ALL.len();

/// What one fake proxy has received.
#[derive(Debug, Default)]
pub struct Record {
    /// Responses per type, in [`ResourceType::ALL`] order.
    pub responses: [u64; TYPES],
    /// When each response arrived, per type.
    pub arrivals: [Vec<Instant>; TYPES],
    /// The version of the last response (state of the world) or resource (delta), per type.
    pub versions: [String; TYPES],
    /// The route configurations last received, kept only when asked (to check their content).
    pub last_routes: Vec<Any>,
    /// Clusters held now.
    pub clusters: usize,
    /// Why the stream ended, when it did.
    pub ended: Option<String>,
}

impl Record {
    /// Every type a proxy subscribes to from the start has arrived at least once.
    pub fn ready(&self) -> bool {
        [ResourceType::Cluster, ResourceType::Endpoint, ResourceType::Listener, ResourceType::Route]
            .iter()
            .all(|kind| self.responses[slot(*kind)] > 0)
    }

    /// When the first response of `kind` after `since` arrived.
    pub fn first_after(&self, kind: ResourceType, since: Instant) -> Option<Instant> {
        self.arrivals[slot(kind)].iter().copied().find(|at| *at > since)
    }

    /// Responses of `kind` that arrived after `since`.
    pub fn count_after(&self, kind: ResourceType, since: Instant) -> usize {
        self.arrivals[slot(kind)].iter().filter(|at| **at > since).count()
    }
}

pub fn slot(kind: ResourceType) -> usize {
    ResourceType::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Which ADS variant a fake proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Delta,
    StateOfTheWorld,
}

/// One fake proxy: pod `name` in `namespace`, dialling `address`.
pub struct FakeProxy {
    pub name: String,
    pub namespace: String,
    pub record: Arc<Mutex<Record>>,
    pub keep_routes: bool,
    pub protocol: Protocol,
}

impl FakeProxy {
    fn node_id(&self) -> String {
        format!("sidecar~~{}.{}~{}.svc.cluster.local", self.name, self.namespace, self.namespace)
    }

    /// Streams until the operator ends the stream or the task is dropped.
    pub async fn run(self, address: std::net::SocketAddr) -> anyhow::Result<()> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?;
        let client = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        match self.protocol {
            Protocol::Delta => self.run_delta(client).await,
            Protocol::StateOfTheWorld => self.run_sotw(client).await,
        }
    }

    async fn run_delta(self, mut client: AdsClient) -> anyhow::Result<()> {
        let (requests, outgoing) = mpsc::channel(16);
        // As weft-proxy, it says it could ask for virtual hosts on demand, so it is sent its scope only.
        let on_demand = Value { kind: Some(value::Kind::StringValue(ON_DEMAND_VHDS.into())) };
        let metadata = Struct { fields: [(ON_DEMAND_METADATA_KEY.to_string(), on_demand)].into_iter().collect() };
        let node = Some(Node { id: self.node_id(), metadata: Some(metadata), ..Default::default() });
        for (i, kind) in [ResourceType::Cluster, ResourceType::Listener].into_iter().enumerate() {
            let node = if i == 0 { node.clone() } else { None };
            requests
                .send(DeltaDiscoveryRequest { node, type_url: kind.type_url().into(), ..Default::default() })
                .await?;
        }
        let mut responses = client.delta_aggregated_resources(ReceiverStream::new(outgoing)).await?.into_inner();
        let mut held: [BTreeSet<String>; TYPES] = Default::default();
        while let Some(response) = responses.message().await? {
            let Some(kind) = ResourceType::from_type_url(&response.type_url) else { continue };
            let before = held[slot(kind)].clone();
            held[slot(kind)].extend(response.resources.iter().map(|r| r.name.clone()));
            for name in &response.removed_resources {
                held[slot(kind)].remove(name);
            }
            self.note_delta(kind, &response, held[slot(ResourceType::Cluster)].len());
            let ack = DeltaDiscoveryRequest {
                type_url: kind.type_url().into(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            };
            requests.send(ack).await?;
            let dependent = match kind {
                ResourceType::Cluster => Some((ResourceType::Endpoint, held[slot(kind)].clone(), before)),
                ResourceType::Listener => Some((ResourceType::Route, ports(&held[slot(kind)]), ports(&before))),
                _ => None,
            };
            if let Some((dependent, now, before)) = dependent
                && now != before
            {
                let change = DeltaDiscoveryRequest {
                    type_url: dependent.type_url().into(),
                    resource_names_subscribe: now.difference(&before).cloned().collect(),
                    resource_names_unsubscribe: before.difference(&now).cloned().collect(),
                    ..Default::default()
                };
                requests.send(change).await?;
            }
        }
        Ok(())
    }

    fn note_delta(&self, kind: ResourceType, response: &DeltaDiscoveryResponse, clusters: usize) {
        let Ok(mut record) = self.record.lock() else { return };
        record.clusters = clusters;
        record.responses[slot(kind)] += 1;
        record.arrivals[slot(kind)].push(Instant::now());
        if let Some(last) = response.resources.last() {
            record.versions[slot(kind)] = last.version.clone();
        }
        if kind == ResourceType::Route && self.keep_routes && !response.resources.is_empty() {
            record.last_routes = response.resources.iter().filter_map(|r| r.resource.clone()).collect();
        }
    }

    async fn run_sotw(self, mut client: AdsClient) -> anyhow::Result<()> {
        let (requests, outgoing) = mpsc::channel(16);
        let node = Some(Node { id: self.node_id(), ..Default::default() });
        for kind in [ResourceType::Cluster, ResourceType::Listener] {
            requests.send(request(kind, &[], "", "", node.clone())).await?;
        }
        let mut responses = client.stream_aggregated_resources(ReceiverStream::new(outgoing)).await?.into_inner();
        let mut subscribed: [Vec<String>; TYPES] = Default::default();
        let mut acked: [(String, String); TYPES] = Default::default();
        while let Some(response) = responses.message().await? {
            let Some(kind) = ResourceType::from_type_url(&response.type_url) else { continue };
            let names = names_of(kind, &response);
            if kind == ResourceType::Cluster
                && let Ok(mut record) = self.record.lock()
            {
                record.clusters = names.len();
            }
            acked[slot(kind)] = (response.version_info.clone(), response.nonce.clone());
            self.note(kind, response);
            let (version, nonce) = &acked[slot(kind)];
            requests.send(request(kind, &subscribed[slot(kind)], version, nonce, None)).await?;
            // A new set of clusters or listeners changes which endpoints and routes to ask for.
            let dependent = match kind {
                ResourceType::Cluster => Some(ResourceType::Endpoint),
                ResourceType::Listener => Some(ResourceType::Route),
                _ => None,
            };
            if let Some(dependent) = dependent
                && subscribed[slot(dependent)] != names
            {
                subscribed[slot(dependent)] = names;
                let (version, nonce) = &acked[slot(dependent)];
                requests.send(request(dependent, &subscribed[slot(dependent)], version, nonce, None)).await?;
            }
        }
        Ok(())
    }

    fn note(&self, kind: ResourceType, response: DiscoveryResponse) {
        let Ok(mut record) = self.record.lock() else { return };
        let at = Instant::now();
        record.responses[slot(kind)] += 1;
        record.arrivals[slot(kind)].push(at);
        record.versions[slot(kind)] = response.version_info.clone();
        if kind == ResourceType::Route && self.keep_routes {
            record.last_routes = response.resources;
        }
    }
}

fn request(kind: ResourceType, names: &[String], version: &str, nonce: &str, node: Option<Node>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node,
        resource_names: names.to_vec(),
        type_url: kind.type_url().to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

/// Route configuration names for listeners `0.0.0.0_PORT`: `PORT`.
fn ports(listeners: &BTreeSet<String>) -> BTreeSet<String> {
    listeners.iter().filter_map(|name| name.rsplit_once('_').map(|(_, port)| port.to_string())).collect()
}

/// The names EDS and RDS subscriptions need: cluster names from CDS, route configuration names from LDS.
fn names_of(kind: ResourceType, response: &DiscoveryResponse) -> Vec<String> {
    match kind {
        ResourceType::Cluster => response.resources.iter().filter_map(|any| first_string_field(&any.value)).collect(),
        // Listener `0.0.0.0_PORT` takes its routes from the route configuration named `PORT`.
        ResourceType::Listener => response
            .resources
            .iter()
            .filter_map(|any| first_string_field(&any.value))
            .filter_map(|name| name.rsplit_once('_').map(|(_, port)| port.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Field 1 of a protobuf message when it is a string: the `name` of a Cluster or Listener, which protobuf
/// encoders write first. Saves decoding whole resources a thousand times over.
fn first_string_field(message: &[u8]) -> Option<String> {
    let (&tag, rest) = message.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let (mut len, mut shift, mut used) = (0usize, 0, 0);
    for &byte in rest.iter().take(10) {
        len |= usize::from(byte & 0x7f) << shift;
        used += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let bytes = rest.get(used..used + len)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    #[test]
    fn the_name_is_read_without_decoding_the_resource() {
        let name = "outbound|80|v2|".to_string() + &"x".repeat(200);
        let cluster = Cluster { name: name.clone(), ..Default::default() };
        let any = weft_xds::pack(&cluster);
        assert_eq!(first_string_field(&any.value), Some(name));
        assert_eq!(first_string_field(&[0x12, 0x01, 0x00]), None);
    }
}
