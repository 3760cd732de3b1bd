//! One state-of-the-world ADS stream, as a pure state machine: requests and new resources in, responses out.
//!
//! - Per type: what the proxy subscribed to, what was last sent (version, nonce, content) and whether the proxy
//!   has answered it. Requests carrying a stale nonce are ignored, as the xDS protocol specifies.
//! - Pushes go in make-before-break order (CDS, EDS, LDS, RDS). Clusters (and their endpoints) that a change
//!   removes stay in what is sent until the proxy has answered the listener and route pushes of that change, so
//!   no route ever points at a cluster the proxy no longer has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use weft_xds::ResourceType;

use envoy_types::pb::google::protobuf::Any;

use super::protocol::{Answer, Protocol, Retained, Step, requested_type};
use super::resources::{EncodedResources, ResourceMap, TypeResources, names_digest, select, version_of};

/// Identifies this control plane in responses.
const CONTROL_PLANE: &str = "weft-operator";

#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// [`names_digest`] of `names`: when it matches the type's, the whole shared map is what is asked for.
    names_digest: u64,
    /// The last response of this type: nonce, version, content.
    sent: Option<Sent>,
    /// The nonce of `sent` is still waiting for an ACK or NACK.
    awaiting_answer: bool,
}

#[derive(Debug, Clone)]
struct Sent {
    nonce: String,
    version: String,
}

#[derive(Debug, Default)]
pub struct AdsStream {
    subscriptions: BTreeMap<ResourceType, Subscription>,
    current: Option<Arc<EncodedResources>>,
    /// Clusters/endpoints removed by the latest change, still sent until routes stop referring to them.
    retained: Retained,
    next_nonce: u64,
}

impl Protocol for AdsStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn node(request: &DiscoveryRequest) -> Option<&envoy_types::pb::envoy::config::core::v3::Node> {
        request.node.as_ref()
    }

    fn kind(response: &DiscoveryResponse) -> Option<ResourceType> {
        ResourceType::from_type_url(&response.type_url)
    }

    const ON_DEMAND: bool = false;
    const NAME: &'static str = "sotw";

    fn sent(response: &DiscoveryResponse) -> (&str, &str, usize) {
        (&response.nonce, &response.version_info, response.resources.len())
    }

    fn response_nonce(request: &DiscoveryRequest) -> &str {
        &request.response_nonce
    }

    fn on_request(&mut self, request: &DiscoveryRequest) -> Step<DiscoveryResponse> {
        let kind = match requested_type(&request.type_url) {
            Ok(kind) => kind,
            Err(ignored) => return ignored,
        };
        let mut step = Step::default();
        let sub = self.subscriptions.entry(kind).or_default();
        if !request.response_nonce.is_empty() {
            let Some(sent) = sub.sent.as_ref().filter(|s| s.nonce == request.response_nonce) else {
                step.ignored = Some(format!("stale nonce {:?} for {}", request.response_nonce, kind.short_name()));
                return step;
            };
            sub.awaiting_answer = false;
            step.answer = Some(match &request.error_detail {
                Some(status) => Answer::Nack { kind, version: sent.version.clone(), message: status.message.clone() },
                None => Answer::Ack { kind, version: sent.version.clone() },
            });
        }
        let names: BTreeSet<String> = request.resource_names.iter().filter(|n| *n != "*").cloned().collect();
        sub.wildcard = kind.is_wildcard_type() && names.is_empty();
        sub.names_digest = names_digest(names.iter());
        sub.names = names;
        step.responses = self.push();
        step
    }

    fn on_resources(&mut self, resources: Arc<EncodedResources>) -> Vec<DiscoveryResponse> {
        if let Some(previous) = &self.current {
            self.retained.note_removals(previous, &resources);
        }
        self.current = Some(resources);
        self.push()
    }
}

impl AdsStream {
    /// Sends what changed; once the proxy has answered the listener and route pushes, drops retained clusters.
    fn push(&mut self) -> Vec<DiscoveryResponse> {
        let mut responses = self.push_changed_types();
        let routes_awaiting = [ResourceType::Listener, ResourceType::Route]
            .iter()
            .any(|k| self.subscriptions.get(k).is_some_and(|s| s.awaiting_answer));
        if !routes_awaiting && !self.retained.is_empty() {
            self.retained.clear();
            responses.extend(self.push_changed_types());
        }
        responses
    }

    /// Sends, in make-before-break order, every subscribed type whose content differs from what was last sent.
    fn push_changed_types(&mut self) -> Vec<DiscoveryResponse> {
        let Some(current) = self.current.clone() else { return Vec::new() };
        let mut responses = Vec::new();
        for kind in ResourceType::ALL {
            let Some(sub) = self.subscriptions.get(&kind) else { continue };
            if sub.sent.is_none() && !sub.wildcard && sub.names.is_empty() {
                continue;
            }
            let Some(content) = self.content(&current, kind) else { continue };
            let Some(sub) = self.subscriptions.get_mut(&kind) else { continue };
            if sub.sent.as_ref().is_some_and(|s| s.version == content.version()) {
                continue;
            }
            self.next_nonce += 1;
            let sent = Sent { nonce: self.next_nonce.to_string(), version: content.version().to_string() };
            responses.push(DiscoveryResponse {
                version_info: sent.version.clone(),
                resources: content.into_resources(),
                type_url: kind.type_url().to_string(),
                nonce: sent.nonce.clone(),
                control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
                    identifier: CONTROL_PLANE.to_string(),
                }),
                ..Default::default()
            });
            sub.sent = Some(sent);
            sub.awaiting_answer = true;
        }
        responses
    }

    /// What the subscription to `kind` should hold. The common case, a subscription to everything of a shared
    /// type with no removed clusters retained, copies nothing until it is sent.
    fn content(&self, current: &EncodedResources, kind: ResourceType) -> Option<Content> {
        let sub = self.subscriptions.get(&kind)?;
        let all = current.of_type(kind).cloned().unwrap_or_default();
        let retained = self.retained.of_type(kind);
        if retained.is_none() && (sub.wildcard || sub.names_digest == all.names) {
            return Some(Content::Whole(all));
        }
        let mut merged = all.map.clone();
        for (name, any) in retained.into_iter().flatten() {
            merged.entry(name.clone()).or_insert_with(|| any.clone());
        }
        let selected = select(&merged, sub.wildcard, &sub.names);
        Some(Content::Selected { version: version_of(&selected), map: selected })
    }
}

/// The resources of one type a subscription should hold.
enum Content {
    /// All of a shared type, as encoded once for every proxy.
    Whole(Arc<TypeResources>),
    /// A selection made for this proxy.
    Selected { version: String, map: ResourceMap },
}

impl Content {
    fn version(&self) -> &str {
        match self {
            Content::Whole(all) => &all.version,
            Content::Selected { version, .. } => version,
        }
    }

    fn into_resources(self) -> Vec<Any> {
        let map = match &self {
            Content::Whole(all) => &all.map,
            Content::Selected { map, .. } => map,
        };
        map.values().map(|any| Any::clone(any)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::rpc::Status;

    fn resources(clusters: &[&str], routes: &[(&str, &str)]) -> Arc<EncodedResources> {
        let any = |kind: ResourceType, body: &str| {
            Arc::new(Any { type_url: kind.type_url().into(), value: body.as_bytes().to_vec() })
        };
        let mut by_type = BTreeMap::new();
        by_type.insert(
            ResourceType::Cluster,
            TypeResources::new(clusters.iter().map(|c| (c.to_string(), any(ResourceType::Cluster, c))).collect()),
        );
        by_type.insert(
            ResourceType::Endpoint,
            TypeResources::new(clusters.iter().map(|c| (c.to_string(), any(ResourceType::Endpoint, c))).collect()),
        );
        by_type.insert(
            ResourceType::Listener,
            TypeResources::new([("l".to_string(), any(ResourceType::Listener, "l"))].into()),
        );
        by_type.insert(
            ResourceType::Route,
            TypeResources::new(routes.iter().map(|(n, to)| (n.to_string(), any(ResourceType::Route, to))).collect()),
        );
        Arc::new(EncodedResources { by_type })
    }

    fn request(kind: ResourceType, names: &[&str], nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn names(response: &DiscoveryResponse) -> Vec<String> {
        response.resources.iter().map(|a| String::from_utf8(a.value.clone()).unwrap()).collect()
    }

    fn kinds(responses: &[DiscoveryResponse]) -> Vec<&'static str> {
        responses.iter().map(|r| ResourceType::from_type_url(&r.type_url).unwrap().short_name()).collect()
    }

    /// A stream where the proxy subscribed to everything and acknowledged it all.
    fn settled_stream(initial: Arc<EncodedResources>) -> AdsStream {
        let mut stream = AdsStream::default();
        assert!(stream.on_resources(initial).is_empty(), "nothing is sent before the proxy asks");
        for (kind, subscribe) in [
            (ResourceType::Cluster, vec![]),
            (ResourceType::Endpoint, vec!["c1", "c2"]),
            (ResourceType::Listener, vec![]),
            (ResourceType::Route, vec!["r"]),
        ] {
            let step = stream.on_request(&request(kind, &subscribe, ""));
            assert_eq!(step.responses.len(), 1, "{kind:?} answered at once");
            let ack = stream.on_request(&request(kind, &subscribe, &step.responses[0].nonce));
            assert!(matches!(ack.answer, Some(Answer::Ack { .. })));
            assert!(ack.responses.is_empty(), "an ACK causes no push");
        }
        stream
    }

    #[test]
    fn subscriptions_get_what_they_name_and_acks_are_recognised() {
        let mut stream = AdsStream::default();
        stream.on_resources(resources(&["c1", "c2"], &[("r", "c1")]));
        let step = stream.on_request(&request(ResourceType::Endpoint, &["c2"], ""));
        assert_eq!(names(&step.responses[0]), ["c2"]);
        let wildcard = stream.on_request(&request(ResourceType::Cluster, &[], ""));
        assert_eq!(names(&wildcard.responses[0]), ["c1", "c2"]);
    }

    #[test]
    fn stale_nonces_are_ignored() {
        let mut stream = settled_stream(resources(&["c1"], &[("r", "c1")]));
        let step = stream.on_request(&request(ResourceType::Cluster, &[], "999"));
        assert!(step.ignored.is_some() && step.answer.is_none() && step.responses.is_empty());
    }

    #[test]
    fn a_nack_is_reported_and_not_answered_with_the_same_config() {
        let mut stream = settled_stream(resources(&["c1"], &[("r", "c1")]));
        let push = stream.on_resources(resources(&["c1"], &[("r", "bad")]));
        assert_eq!(kinds(&push), ["RDS"]);
        let mut nack = request(ResourceType::Route, &["r"], &push[0].nonce);
        nack.error_detail = Some(Status { code: 3, message: "route r: bad regex".into(), details: vec![] });
        let step = stream.on_request(&nack);
        assert!(matches!(&step.answer, Some(Answer::Nack { message, .. }) if message.contains("bad regex")));
        assert!(step.responses.is_empty());
        let fixed = stream.on_resources(resources(&["c1"], &[("r", "c1")]));
        assert_eq!(kinds(&fixed), ["RDS"], "a corrected config is pushed again");
    }

    #[test]
    fn removed_clusters_outlive_the_routes_that_used_them() {
        let mut stream = settled_stream(resources(&["c1"], &[("r", "c1")]));
        let push = stream.on_resources(resources(&["c2"], &[("r", "c2")]));
        assert_eq!(kinds(&push), ["CDS", "EDS", "RDS"]);
        assert_eq!(names(&push[0]), ["c1", "c2"], "c1 stays while routes may still use it");
        assert_eq!(names(&push[1]), ["c1", "c2"]);
        let cds_ack = stream.on_request(&request(ResourceType::Cluster, &[], &push[0].nonce));
        assert!(cds_ack.responses.is_empty(), "routes have not been answered yet");
        let rds_ack = stream.on_request(&request(ResourceType::Route, &["r"], &push[2].nonce));
        assert_eq!(kinds(&rds_ack.responses), ["CDS", "EDS"]);
        assert_eq!(names(&rds_ack.responses[0]), ["c2"], "c1 is removed once routes moved away");
    }

    #[test]
    fn unchanged_content_is_not_pushed_again() {
        let mut stream = settled_stream(resources(&["c1"], &[("r", "c1")]));
        assert!(stream.on_resources(resources(&["c1"], &[("r", "c1")])).is_empty());
    }
}
