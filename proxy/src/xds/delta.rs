//! The proxy's side of an incremental (delta) ADS stream, as a pure state machine: responses in; ACK/NACK and
//! subscription changes out; the accepted config kept, resource by resource. A response whose resources cannot
//! all be converted is NACKed with the conversion error and changes nothing. Clusters and listeners are
//! subscribed to as wildcards; endpoints and routes by the names those carry, following them as they change;
//! virtual hosts by name as requests ask for them (on-demand discovery). On a reconnect the proxy tells the
//! server which versions it holds, so nothing it has is sent again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use envoy_types::pb::google::rpc::Status;
use weft_xds::ResourceType;

use super::resource::{Converted, convert, dependent_names, insert, remove};
use super::state::{INVALID_ARGUMENT, Outcome};
use crate::config::ProxyConfig;

/// What a response leads to: requests to send (ACK or NACK, subscription changes) and what happened.
#[derive(Debug)]
pub struct DeltaReply {
    pub requests: Vec<DeltaDiscoveryRequest>,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub struct DeltaState {
    node: Node,
    config: ProxyConfig,
    /// Per type: name -> version of every resource held.
    held: BTreeMap<ResourceType, BTreeMap<String, String>>,
    /// Endpoints and routes subscribed to by name.
    subscribed: BTreeMap<ResourceType, BTreeSet<String>>,
    received: BTreeSet<ResourceType>,
}

impl DeltaState {
    pub fn new(node: Node) -> Self {
        Self {
            node,
            config: ProxyConfig::default(),
            held: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            received: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Ready once clusters and listeners have been answered and every route table and endpoint set they name
    /// has arrived.
    pub fn is_ready(&self) -> bool {
        let has = |kind, present: &dyn Fn(&str) -> bool| {
            self.subscribed.get(&kind).into_iter().flatten().all(|name| present(name))
        };
        self.received.contains(&ResourceType::Cluster)
            && self.received.contains(&ResourceType::Listener)
            && has(ResourceType::Route, &|n| self.config.routes.contains_key(n))
            && has(ResourceType::Endpoint, &|n| self.config.endpoints.contains_key(n))
    }

    /// The requests that open a new stream: every subscription, with the versions already held. Virtual hosts
    /// asked for on demand go first: the server then knows, before it answers the clusters, that those the
    /// proxy holds for them are still wanted (else it would remove them, and send them again).
    pub fn on_connect(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let node = Some(self.node.clone());
        let order = std::iter::once(ResourceType::VirtualHost)
            .chain(ResourceType::ALL.into_iter().filter(|k| *k != ResourceType::VirtualHost));
        order
            .filter(|kind| kind.is_wildcard_type() || self.subscribed.get(kind).is_some_and(|n| !n.is_empty()))
            .enumerate()
            .map(|(i, kind)| DeltaDiscoveryRequest {
                node: if i == 0 { node.clone() } else { None },
                type_url: kind.type_url().to_string(),
                resource_names_subscribe: self.subscribed.get(&kind).into_iter().flatten().cloned().collect(),
                initial_resource_versions: self
                    .held
                    .get(&kind)
                    .into_iter()
                    .flatten()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
                ..Default::default()
            })
            .collect()
    }

    pub fn on_response(&mut self, response: &DeltaDiscoveryResponse) -> DeltaReply {
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            let outcome = Outcome::Ignored(format!("unknown type {}", response.type_url));
            return DeltaReply { requests: Vec::new(), outcome };
        };
        let converted = response
            .resources
            .iter()
            .filter_map(|r| r.resource.as_ref().map(|any| (r, any)))
            .map(|(r, any)| convert(kind, any).map(|(name, value)| (name, r.version.clone(), value)))
            .collect::<Result<Vec<(String, String, Converted)>, String>>();
        let converted = match converted {
            Ok(converted) => converted,
            Err(error) => {
                if kind == ResourceType::VirtualHost {
                    self.give_up_on(response);
                }
                let nack = answer(kind, &response.nonce, Some(error.clone()));
                return DeltaReply { requests: vec![nack], outcome: Outcome::Rejected { kind, error } };
            }
        };
        let forgotten = self.apply(kind, converted, &response.removed_resources);
        let mut requests = vec![answer(kind, &response.nonce, None)];
        requests.extend(self.follow_subscriptions(kind));
        requests.extend(self.stop_following(forgotten));
        DeltaReply { requests, outcome: Outcome::Applied(kind) }
    }

    /// Applies a response; the on-demand names forgotten rather than remembered as absent.
    fn apply(
        &mut self,
        kind: ResourceType,
        converted: Vec<(String, String, Converted)>,
        removed: &[String],
    ) -> Vec<String> {
        // An on-demand name this proxy no longer follows (forgotten, its unsubscribe still on its way) is not
        // taken back: nothing would keep it up to date.
        let subscribed = self.subscribed.get(&ResourceType::VirtualHost);
        let followed = |name: &str| kind != ResourceType::VirtualHost || subscribed.is_some_and(|s| s.contains(name));
        let held = self.held.entry(kind).or_default();
        for (name, version, value) in converted.into_iter().filter(|(name, _, _)| followed(name)) {
            held.insert(name.clone(), version);
            insert(&mut self.config, name, value);
        }
        let mut forgotten = Vec::new();
        for name in removed.iter().filter(|name| followed(name)) {
            held.remove(name);
            if kind != ResourceType::VirtualHost {
                remove(&mut self.config, kind, name);
            } else if self.config.on_demand.answer_removed(name) {
                forgotten.push(name.clone());
            }
        }
        self.config.versions.insert(kind.short_name().to_string(), digest(held));
        self.received.insert(kind);
        forgotten
    }

    /// Unsubscribes from on-demand names the proxy forgot, so the control plane forgets them too.
    fn stop_following(&mut self, names: Vec<String>) -> Option<DeltaDiscoveryRequest> {
        if names.is_empty() {
            return None;
        }
        let subscribed = self.subscribed.entry(ResourceType::VirtualHost).or_default();
        for name in &names {
            subscribed.remove(name);
        }
        Some(DeltaDiscoveryRequest {
            type_url: ResourceType::VirtualHost.type_url().to_string(),
            resource_names_unsubscribe: names,
            ..Default::default()
        })
    }

    /// After a rejected on-demand answer: the hosts it named count as unknown, so requests for them stop waiting
    /// (they go on as for any unknown host until the control plane sends something this proxy can apply).
    fn give_up_on(&mut self, response: &DeltaDiscoveryResponse) {
        let named = response.resources.iter().map(|r| &r.name).chain(&response.removed_resources);
        for name in named {
            self.config.on_demand.absent_unless_known(name);
        }
    }

    /// Subscribes to the on-demand virtual host `name` (VHDS); `None` when already subscribed.
    pub fn ask(&mut self, name: String) -> Option<DeltaDiscoveryRequest> {
        if !self.subscribed.entry(ResourceType::VirtualHost).or_default().insert(name.clone()) {
            return None;
        }
        Some(DeltaDiscoveryRequest {
            type_url: ResourceType::VirtualHost.type_url().to_string(),
            resource_names_subscribe: vec![name],
            ..Default::default()
        })
    }

    /// After clusters or listeners changed: subscribe to the endpoints and routes they name, drop the rest.
    fn follow_subscriptions(&mut self, kind: ResourceType) -> Option<DeltaDiscoveryRequest> {
        let (dependent, wanted) = dependent_names(&self.config, kind)?;
        let current = self.subscribed.entry(dependent).or_default();
        let subscribe: Vec<String> = wanted.difference(current).cloned().collect();
        let unsubscribe: Vec<String> = current.difference(&wanted).cloned().collect();
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return None;
        }
        for name in &unsubscribe {
            remove(&mut self.config, dependent, name);
            self.held.entry(dependent).or_default().remove(name);
        }
        *current = wanted;
        Some(DeltaDiscoveryRequest {
            type_url: dependent.type_url().to_string(),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            ..Default::default()
        })
    }
}

/// An ACK (or, with `error`, a NACK) of the response with `nonce`.
fn answer(kind: ResourceType, nonce: &str, error: Option<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: kind.type_url().to_string(),
        response_nonce: nonce.to_string(),
        error_detail: error.map(|message| Status { code: INVALID_ARGUMENT, message, details: Vec::new() }),
        ..Default::default()
    }
}

/// One version for a whole type (for the config dump): a digest of what is held.
fn digest(held: &BTreeMap<String, String>) -> String {
    let mut hasher = DefaultHasher::new();
    held.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests;
