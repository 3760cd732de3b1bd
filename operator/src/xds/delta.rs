//! One incremental (delta) ADS stream, as a pure state machine: requests and new resources in, responses out.
//! Envoy's and gRPC's `DeltaAggregatedResources` as the xDS protocol defines it:
//!
//! - Per type, the proxy subscribes to resources by name, or to all of them (`*`, and, for clusters and
//!   listeners, a first request naming none), and unsubscribes; on a reconnect it says which versions it holds
//!   (`initial_resource_versions`), so nothing it has is sent again.
//! - The server tracks what the proxy holds, resource by resource, and sends only what changed, plus the names of
//!   removed resources. The first request of each type is answered even when there is nothing to send, so the
//!   proxy knows it is up to date. A NACK restores what the proxy held before that response.
//! - Pushes go in make-before-break order (CDS, EDS, LDS, RDS, VHDS), and removed clusters stay until the proxy
//!   has answered the listener and route pushes of that change (see [`Retained`]). A large change is split into
//!   responses of about [`RESPONSE_BYTES`], each answered on its own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use weft_xds::ResourceType;

use super::held::{Held, Names};
use super::protocol::{Answer, Protocol, Retained, Step, requested_type};
use super::resources::{EncodedResources, ResourceMap, TypeResources, names_digest, resource_hash, version_string};

/// Identifies this control plane in responses.
const CONTROL_PLANE: &str = "weft-operator";

/// Resource bytes per response, about: a large change goes out as several responses, so that what a stream has in
/// flight (each response is framed in a buffer of its own, held until written: see `xds::grpc`) stays small.
pub const RESPONSE_BYTES: usize = 16 * 1024;

/// Unanswered responses remembered per type; a proxy that answers none cannot grow this.
const MAX_AWAITING: usize = 1024;

/// Most virtual hosts one proxy may ask for on demand; beyond, names go unanswered (the proxy's wait for them
/// times out and it falls back), so a runaway client cannot make the operator translate without bound.
/// (A proxy asks for up to `MAX_ON_DEMAND_NAMES` hosts that exist and as many that do not, and as many addresses
/// of each.)
pub const MAX_ON_DEMAND: usize = 4 * weft_xds::MAX_ON_DEMAND_NAMES;

#[derive(Debug, Default)]
struct Subscription {
    /// Every resource of the type.
    wildcard: bool,
    /// Resources subscribed by name.
    names: Names,
    /// [`names_digest`] of `names`: when it matches the type's, the subscription is to all of it.
    names_digest: u64,
    /// What the proxy holds, as far as the server knows: name -> version.
    held: Held,
    /// The first request of this type has been answered.
    answered: bool,
    /// The version of the whole shared type the proxy holds exactly, when it does: nothing to compare then.
    in_sync_with: Option<String>,
    /// Responses not yet answered, oldest first, each with what `held` was before it (restored on a NACK).
    awaiting: VecDeque<Pending>,
    /// What the proxy rejected (name -> version sent, `None` for a removal): not sent again until it changes.
    rejected: BTreeMap<String, Option<u64>>,
    /// Names subscribed to that do not exist, and that the proxy has been told so (as removals, which is how the
    /// delta protocol says "no such resource"), so that it need not wait for them.
    told_absent: BTreeSet<String>,
    /// What the proxy may lack since it was last sent all it should hold.
    stale: Stale,
}

/// What may differ between what a proxy holds of a type and what it should, since it was last sent the difference.
///
/// The rule that keeps a proxy converging: whatever changes what it holds or should hold (the resources, the
/// retained clusters, a NACK, an unsubscription, a wildcard) makes the type [`Stale::Everything`]; only names newly
/// subscribed to may be compared alone, since all else was in step.
#[derive(Debug, Default, Clone, PartialEq)]
enum Stale {
    /// Nothing: a request that changes nothing (an ACK) costs no comparison.
    #[default]
    Nothing,
    /// Only these names, newly subscribed to: a proxy subscribing to the endpoints of the clusters it receives,
    /// a response at a time, costs what it adds rather than all it holds each time.
    Names(BTreeSet<String>),
    /// Anything (the resources, a NACK, an unsubscription): compare everything.
    Everything,
}

impl Stale {
    fn add(&mut self, name: &str) {
        match self {
            Stale::Nothing => *self = Stale::Names([name.to_string()].into()),
            Stale::Names(names) => {
                names.insert(name.to_string());
            }
            Stale::Everything => {}
        }
    }
}

#[derive(Debug)]
struct Pending {
    nonce: String,
    /// Per name changed by the response: what the proxy held before, and what was sent (`None`: removed).
    changes: BTreeMap<String, (Option<u64>, Option<u64>)>,
}

#[derive(Debug, Default)]
pub struct DeltaStream {
    subscriptions: BTreeMap<ResourceType, Subscription>,
    current: Option<Arc<EncodedResources>>,
    retained: Retained,
    next_nonce: u64,
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&envoy_types::pb::envoy::config::core::v3::Node> {
        request.node.as_ref()
    }

    fn kind(response: &DeltaDiscoveryResponse) -> Option<ResourceType> {
        ResourceType::from_type_url(&response.type_url)
    }

    const ON_DEMAND: bool = true;
    const NAME: &'static str = "delta";

    fn sent(response: &DeltaDiscoveryResponse) -> (&str, &str, usize) {
        (&response.nonce, &response.system_version_info, response.resources.len())
    }

    fn response_nonce(request: &DeltaDiscoveryRequest) -> &str {
        &request.response_nonce
    }

    fn on_demand_after(&self, request: &DeltaDiscoveryRequest) -> Option<BTreeSet<String>> {
        if ResourceType::from_type_url(&request.type_url) != Some(ResourceType::VirtualHost) {
            return None;
        }
        let current = self.subscriptions.get(&ResourceType::VirtualHost).map(|s| s.names.to_set());
        let mut next = current.clone().unwrap_or_default();
        // As `subscribe` applies them: additions up to the limit, then removals.
        for name in request.resource_names_subscribe.iter().filter(|n| *n != "*") {
            if next.len() < MAX_ON_DEMAND {
                next.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            next.remove(name);
        }
        (Some(&next) != current.as_ref()).then_some(next)
    }

    fn on_request(&mut self, request: &DeltaDiscoveryRequest) -> Step<DeltaDiscoveryResponse> {
        let kind = match requested_type(&request.type_url) {
            Ok(kind) => kind,
            Err(ignored) => return ignored,
        };
        let mut step = Step::default();
        let first = !self.subscriptions.contains_key(&kind);
        let sub = self.subscriptions.entry(kind).or_default();
        if !request.response_nonce.is_empty() {
            // Answers come in order: responses older than the one answered will not be.
            match sub.awaiting.iter().position(|p| p.nonce == request.response_nonce) {
                Some(i) => {
                    let pending = sub.awaiting.drain(..=i).next_back();
                    if let Some(pending) = pending {
                        step.answer = Some(answer(kind, request, &pending, sub));
                    }
                }
                None => {
                    step.ignored = Some(format!("stale nonce {:?} for {}", request.response_nonce, kind.short_name()));
                }
            }
        }
        subscribe(sub, kind, request, first);
        // Names exactly those of the current resources (a proxy following the clusters it was sent): shared.
        if let Some(all) = self.current.as_ref().and_then(|c| c.of_type(kind))
            && !sub.wildcard
            && sub.names_digest == all.names
        {
            sub.names.share(all.clone());
        }
        step.responses = self.push();
        step
    }

    fn on_resources(&mut self, resources: Arc<EncodedResources>) -> Vec<DeltaDiscoveryResponse> {
        if let Some(previous) = &self.current {
            self.retained.note_removals(previous, &resources);
        }
        self.current = Some(resources);
        self.mark_stale();
        self.push()
    }
}

/// ACK or NACK of `pending`; a NACK puts back what the proxy held before it.
fn answer(kind: ResourceType, request: &DeltaDiscoveryRequest, pending: &Pending, sub: &mut Subscription) -> Answer {
    let version = pending.nonce.clone();
    let Some(status) = &request.error_detail else { return Answer::Ack { kind, version } };
    for (name, (before, sent)) in &pending.changes {
        match before {
            Some(hash) => sub.held.insert(name.clone(), *hash),
            None => sub.held.remove(name),
        };
        sub.rejected.insert(name.clone(), *sent);
        // A rejected "no such resource" is said again when it is still true.
        sub.told_absent.remove(name);
    }
    sub.in_sync_with = None;
    sub.stale = Stale::Everything;
    Answer::Nack { kind, version, message: status.message.clone() }
}

/// Applies a request's subscription changes and, on the first request of a type, the versions the proxy holds.
fn subscribe(sub: &mut Subscription, kind: ResourceType, request: &DeltaDiscoveryRequest, first: bool) {
    let changes = !request.resource_names_subscribe.is_empty() || !request.resource_names_unsubscribe.is_empty();
    for name in &request.resource_names_subscribe {
        match name.as_str() {
            "*" => {
                sub.wildcard = true;
                sub.stale = Stale::Everything;
            }
            _ if kind == ResourceType::VirtualHost && sub.names.len() >= MAX_ON_DEMAND => {}
            _ => {
                if sub.names.insert(name.clone()) {
                    sub.stale.add(name);
                }
            }
        }
    }
    for name in &request.resource_names_unsubscribe {
        match name.as_str() {
            "*" => sub.wildcard = false,
            _ => {
                sub.names.remove(name);
                sub.held.remove(name);
                sub.told_absent.remove(name);
            }
        }
        sub.stale = Stale::Everything;
    }
    if first {
        // A first request naming nothing is a wildcard subscription for the types that have one.
        sub.wildcard |= request.resource_names_subscribe.is_empty() && kind.is_wildcard_type();
        for (name, version) in &request.initial_resource_versions {
            if let Ok(hash) = u64::from_str_radix(version, 16) {
                sub.held.insert(name.clone(), hash);
            }
        }
        sub.stale = Stale::Everything;
    }
    if changes || first {
        sub.names_digest = names_digest(sub.names.iter());
        sub.in_sync_with = None;
    }
}

impl DeltaStream {
    /// Sends what changed; once the proxy has answered the listener and route pushes, drops retained clusters.
    fn push(&mut self) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = self.push_changed_types();
        let routes_awaiting = [ResourceType::Listener, ResourceType::Route, ResourceType::VirtualHost]
            .iter()
            .any(|k| self.subscriptions.get(k).is_some_and(|s| !s.awaiting.is_empty()));
        if !routes_awaiting && !self.retained.is_empty() {
            self.retained.clear();
            self.mark_stale();
            responses.extend(self.push_changed_types());
        }
        responses
    }

    fn mark_stale(&mut self) {
        for sub in self.subscriptions.values_mut() {
            sub.stale = Stale::Everything;
        }
    }

    /// For every subscribed type, in make-before-break order: the resources whose version the proxy does not
    /// hold, and the removals.
    fn push_changed_types(&mut self) -> Vec<DeltaDiscoveryResponse> {
        let Some(current) = self.current.clone() else { return Vec::new() };
        let mut responses = Vec::new();
        for kind in ResourceType::ALL {
            let Some(sub) = self.subscriptions.get_mut(&kind) else { continue };
            let only = match std::mem::take(&mut sub.stale) {
                Stale::Nothing => continue,
                Stale::Names(names) => Some(names),
                Stale::Everything => None,
            };
            let all = current.of_type(kind).cloned().unwrap_or_default();
            let retained = self.retained.of_type(kind).cloned().unwrap_or_default();
            let whole = retained.is_empty() && (sub.wildcard || sub.names_digest == all.names);
            let in_sync = |version: &str| whole && sub.answered && sub.in_sync_with.as_deref() == Some(version);
            if in_sync(&all.version) {
                continue;
            }
            let (changed, removed) = match &all.since {
                // The proxy holds the previous version exactly: what changed since is what to send.
                Some(since) if in_sync(&since.version) => since_previous(&all, since),
                _ => differences(sub, &all, &retained, only.as_ref()),
            };
            // Once this is applied, a proxy subscribed to the whole type holds exactly `all`.
            let target = whole.then(|| all.clone());
            if changed.is_empty() && removed.is_empty() && sub.answered {
                sub.in_sync_with = whole.then(|| all.version.clone());
                if let Some(all) = target {
                    sub.held = Held::shared(all);
                }
                continue;
            }
            let mut chunks = chunks(changed);
            let last = chunks.pop().unwrap_or_default();
            for chunk in chunks {
                self.next_nonce += 1;
                responses.push(record(sub, kind, self.next_nonce.to_string(), (chunk, Vec::new()), None));
            }
            self.next_nonce += 1;
            responses.push(record(sub, kind, self.next_nonce.to_string(), (last, removed), target));
            sub.in_sync_with = whole.then(|| all.version.clone());
        }
        responses
    }
}

/// A resource to send: name, version, encoding.
type Change = (String, u64, Arc<Any>);

/// `changed` in responses of about [`RESPONSE_BYTES`] each (at least one resource each).
fn chunks(changed: Vec<Change>) -> Vec<Vec<Change>> {
    let mut chunks = vec![Vec::new()];
    let mut bytes = 0;
    for change in changed {
        let size = change.2.value.len() + change.0.len();
        if bytes + size > RESPONSE_BYTES
            && let Some(current) = chunks.last()
            && !current.is_empty()
        {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(current) = chunks.last_mut() {
            current.push(change);
        }
    }
    chunks
}

/// What the proxy should be sent: resources it does not hold at their current version, and names it holds that
/// are gone; of the names in `only`, when given (the rest being known to be in step).
fn differences(
    sub: &Subscription,
    all: &TypeResources,
    retained: &ResourceMap,
    only: Option<&BTreeSet<String>>,
) -> (Vec<Change>, Vec<String>) {
    let lookup = |name: &str| -> Option<(u64, &Arc<Any>)> {
        match (all.hashes.get(name), all.map.get(name)) {
            (Some(hash), Some(any)) => Some((*hash, any)),
            _ => retained.get(name).map(|any| (resource_hash(any), any)),
        }
    };
    let wanted: Box<dyn Iterator<Item = &String>> = match only {
        Some(names) => Box::new(names.iter()),
        None if sub.wildcard => Box::new(
            all.map.keys().chain(retained.keys().filter(|n| !all.map.contains_key(*n))).chain(sub.names.iter()),
        ),
        None => Box::new(sub.names.iter()),
    };
    let rejected = |name: &String, sent: Option<u64>| sub.rejected.get(name) == Some(&sent);
    let mut changed = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        if !seen.insert(name.as_str()) {
            continue;
        }
        if let Some((hash, any)) = lookup(name)
            && sub.held.get(name) != Some(hash)
            && !rejected(name, Some(hash))
        {
            changed.push((name.clone(), hash, any.clone()));
        }
    }
    let held: Box<dyn Iterator<Item = &String>> = match only {
        Some(names) => Box::new(names.iter().filter(|name| sub.held.contains(name))),
        None => sub.held.names(),
    };
    let mut removed: Vec<String> =
        held.filter(|name| lookup(name).is_none() && !rejected(name, None)).cloned().collect();
    let subscribed: Box<dyn Iterator<Item = &String>> = match only {
        Some(names) => Box::new(names.iter()),
        None => sub.names.iter(),
    };
    let absent = subscribed
        .filter(|name| !sub.held.contains(name) && !sub.told_absent.contains(*name) && lookup(name).is_none());
    removed.extend(absent.cloned());
    (changed, removed)
}

/// What changed since the previous version, for a proxy that holds it exactly: computed once for all proxies.
fn since_previous(all: &TypeResources, since: &super::resources::Since) -> (Vec<Change>, Vec<String>) {
    let changed = since
        .changed
        .iter()
        .filter_map(|name| Some((name.clone(), *all.hashes.get(name)?, all.map.get(name)?.clone())))
        .collect();
    (changed, since.removed.clone())
}

/// The response for `changed` and `removed`, noting what the proxy will hold once it applies it: `target`
/// exactly, when given, else what it held with these changes.
fn record(
    sub: &mut Subscription,
    kind: ResourceType,
    nonce: String,
    (changed, removed): (Vec<Change>, Vec<String>),
    target: Option<Arc<TypeResources>>,
) -> DeltaDiscoveryResponse {
    let mut changes = BTreeMap::new();
    let mut resources = Vec::with_capacity(changed.len());
    for (name, hash, any) in changed {
        let before = if target.is_some() { sub.held.get(&name) } else { sub.held.insert(name.clone(), hash) };
        changes.insert(name.clone(), (before, Some(hash)));
        sub.rejected.remove(&name);
        sub.told_absent.remove(&name);
        let resource = Some(Any::clone(&any));
        resources.push(Resource { name, version: version_string(hash), resource, ..Default::default() });
    }
    for name in &removed {
        let before = if target.is_some() { sub.held.get(name) } else { sub.held.remove(name) };
        changes.insert(name.clone(), (before, None));
        sub.rejected.remove(name);
        if sub.names.contains(name) {
            sub.told_absent.insert(name.clone());
        }
    }
    if let Some(all) = target {
        sub.held = Held::shared(all);
    }
    sub.answered = true;
    if sub.awaiting.len() >= MAX_AWAITING {
        sub.awaiting.pop_front();
    }
    sub.awaiting.push_back(Pending { nonce: nonce.clone(), changes });
    DeltaDiscoveryResponse {
        system_version_info: String::new(),
        resources,
        type_url: kind.type_url().to_string(),
        removed_resources: removed,
        nonce,
        control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
            identifier: CONTROL_PLANE.to_string(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
