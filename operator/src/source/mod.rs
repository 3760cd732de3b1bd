//! Where cluster state comes from: a directory of YAML files (standalone mode) or, later, the Kubernetes API.
//! Every source speaks the same [`Event`] language to the index, so nothing downstream knows which one runs.

pub mod decode;
pub mod file;
pub mod kinds;
pub mod kube;
pub mod watch_state;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_crds::{
    AuthorizationPolicy, DestinationRule, FieldError, HttpLocalRateLimitPolicy, PeerAuthentication, VirtualService,
    WeftStatus,
};

/// The kinds of object the operator reads; what each is is registered in [`kinds::KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Pod,
    EndpointSlice,
    VirtualService,
    DestinationRule,
    PeerAuthentication,
    AuthorizationPolicy,
    HttpLocalRateLimitPolicy,
    /// Cluster-scoped; only its labels are read (the topology labels giving workloads their locality).
    Node,
    /// Only the certificates a DestinationRule's `credentialName` may name are kept ([`crate::index::credentials`]).
    Secret,
}

impl Kind {
    /// Every kind, in order.
    pub fn all() -> impl Iterator<Item = Kind> {
        kinds::KINDS.iter().map(|info| info.kind)
    }
}

/// One object of a watched kind. Shared (`Arc`): a watch's or a file's state and the index hold the same object,
/// and cloning one to send it as an event copies a pointer. Behind a pointer also because the index and the file
/// source keep objects in B-tree maps, whose nodes hold eleven values inline, and Kubernetes' types are large (a
/// `Pod` is 2 KiB before any of its contents).
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Service(Arc<Service>),
    Pod(Arc<Pod>),
    EndpointSlice(Arc<EndpointSlice>),
    VirtualService(Arc<VirtualService>),
    DestinationRule(Arc<DestinationRule>),
    PeerAuthentication(Arc<PeerAuthentication>),
    AuthorizationPolicy(Arc<AuthorizationPolicy>),
    HttpLocalRateLimitPolicy(Arc<HttpLocalRateLimitPolicy>),
    Node(Arc<Node>),
    /// Held as its TLS credential only (see [`crate::index::credentials::held`]).
    Secret(Arc<crate::index::credentials::HeldSecret>),
}

/// Identity of an object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::Pod(_) => Kind::Pod,
            Resource::EndpointSlice(_) => Kind::EndpointSlice,
            Resource::VirtualService(_) => Kind::VirtualService,
            Resource::DestinationRule(_) => Kind::DestinationRule,
            Resource::PeerAuthentication(_) => Kind::PeerAuthentication,
            Resource::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Resource::HttpLocalRateLimitPolicy(_) => Kind::HttpLocalRateLimitPolicy,
            Resource::Node(_) => Kind::Node,
            Resource::Secret(_) => Kind::Secret,
        }
    }

    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Resource::Service(o) => &o.metadata,
            Resource::Pod(o) => &o.metadata,
            Resource::EndpointSlice(o) => &o.metadata,
            Resource::VirtualService(o) => &o.metadata,
            Resource::DestinationRule(o) => &o.metadata,
            Resource::PeerAuthentication(o) => &o.metadata,
            Resource::AuthorizationPolicy(o) => &o.metadata,
            Resource::HttpLocalRateLimitPolicy(o) => &o.metadata,
            Resource::Node(o) => &o.metadata,
            Resource::Secret(o) => &o.metadata,
        }
    }

    pub fn key(&self) -> ResourceKey {
        let meta = self.metadata();
        ResourceKey {
            kind: self.kind(),
            namespace: meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Namespace of an object whose YAML names none, as `kubectl apply` would place it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Weft resource the API server holds but Weft cannot accept (it failed validation). Its last good version, if
/// any, stays in force; the rejection is what its status reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub key: ResourceKey,
    pub generation: Option<i64>,
    pub errors: Vec<FieldError>,
    /// The status the object carries now, so status is only written when it changes.
    pub status: Option<WeftStatus>,
}

/// A change to cluster state, as a watch reports it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The object was created or changed.
    Applied(Resource),
    /// The object is gone.
    Deleted(ResourceKey),
    /// The complete current set of one kind, in one namespace or (`None`) all of them: a watch (re)started or a
    /// directory was re-read. Everything of that kind and scope not in the list is gone, and so are its rejections.
    Restarted { kind: Kind, namespace: Option<String>, objects: Vec<Resource> },
    /// The current version of an object is invalid; its last good version (if any) stays in force.
    Rejected(Rejection),
}
