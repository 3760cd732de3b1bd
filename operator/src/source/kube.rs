//! Kubernetes mode: kube-runtime watchers for Services, EndpointSlices, Pods, Nodes' labels, Secrets (their TLS keys
//! only) and every Weft kind of
//! [`super::kinds`] (all namespaces, or a configured set), feeding the same index as the file source. Watch errors
//! back off and resume (kube-runtime's default backoff); a restarted watch relists, which [`WatchState`] turns into
//! an atomic replacement.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource as _};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use weft_crds::WeftStatus;

use super::decode::{Decoded as DecodedDocument, decode_document};
use super::kinds::KINDS;
use super::watch_state::{Decoded, WatchEvent, WatchState};
use super::{DEFAULT_NAMESPACE, Event, Kind, Rejection, Resource, ResourceKey};
use crate::metrics::Metrics;

/// Which namespaces to watch (empty means all), and whether to leave Secrets alone.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespaces: Vec<String>,
    /// Read no Secrets (`--read-secrets false`, for clusters that grant the operator none): a DestinationRule's
    /// `credentialName` then finds none.
    pub without_secrets: bool,
}

impl Scope {
    fn each(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() { vec![None] } else { self.namespaces.iter().cloned().map(Some).collect() }
    }
}

/// Counts watches that have not delivered a complete list yet; the operator is ready at zero.
#[derive(Debug, Default)]
pub struct SyncTracker(AtomicUsize);

impl SyncTracker {
    pub fn is_synced(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Starts every watch; runs until `events` closes.
pub async fn run(
    client: Client,
    scope: Scope,
    events: mpsc::Sender<Vec<Event>>,
    sync: Arc<SyncTracker>,
    metrics: Arc<Metrics>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    // Nodes are cluster-scoped: one watch whatever the namespaces, of their metadata only (a node's status is
    // large and of no use here).
    let cluster =
        WatchContext { events: events.clone(), sync: sync.clone(), metrics: metrics.clone(), namespace: None };
    sync.0.fetch_add(1, Ordering::Relaxed);
    tasks.spawn(cluster.watch_node_labels(client.clone()));
    for namespace in scope.each() {
        let ctx = WatchContext { events: events.clone(), sync: sync.clone(), metrics: metrics.clone(), namespace };
        // Every kind but Nodes (above), and Secrets when they are not read.
        let watched = KINDS.len() - 1 - usize::from(scope.without_secrets);
        sync.0.fetch_add(watched, Ordering::Relaxed);
        tasks.spawn(
            ctx.clone().watch_typed::<Service>(client.clone(), Kind::Service, |s| Resource::Service(Arc::new(s))),
        );
        tasks.spawn(ctx.clone().watch_typed::<EndpointSlice>(client.clone(), Kind::EndpointSlice, |s| {
            Resource::EndpointSlice(Arc::new(s))
        }));
        tasks.spawn(ctx.clone().watch_typed::<Pod>(client.clone(), Kind::Pod, |p| Resource::Pod(Arc::new(p))));
        if !scope.without_secrets {
            tasks.spawn(ctx.clone().watch_secrets(client.clone()));
        }
        for weft_kind in KINDS.iter().filter(|k| k.crd().is_some()) {
            tasks.spawn(ctx.clone().watch_crd(client.clone(), weft_kind.kind));
        }
    }
    while tasks.join_next().await.is_some() {}
}

#[derive(Clone)]
struct WatchContext {
    events: mpsc::Sender<Vec<Event>>,
    sync: Arc<SyncTracker>,
    metrics: Arc<Metrics>,
    namespace: Option<String>,
}

/// `object` without `metadata.managedFields`: server-side apply's bookkeeping, often the largest part of a small
/// object and never read by the operator, which holds every Pod, Service and EndpointSlice it watches.
fn without_managed_fields<K: kube::Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}

impl WatchContext {
    async fn watch_typed<K>(self, client: Client, kind: Kind, wrap: fn(K) -> Resource)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let api = match &self.namespace {
            Some(ns) => Api::<K>::namespaced(client, ns),
            None => Api::<K>::all(client),
        };
        self.follow(
            api,
            kind,
            move |object| Ok(wrap(object)),
            |o: &K| key_of(kind, o.meta()),
            watcher::Config::default(),
        )
        .await;
    }

    /// Secrets, but for Helm releases and service-account tokens (large, many, never a certificate: Istio leaves
    /// them out the same way), each held as its TLS credential alone from its arrival.
    async fn watch_secrets(self, client: Client) {
        let api = match &self.namespace {
            Some(ns) => Api::<Secret>::namespaced(client, ns),
            None => Api::<Secret>::all(client),
        };
        let fields = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";
        let wrap = |secret: Secret| Ok(Resource::Secret(Arc::new(crate::index::credentials::held(secret))));
        let key = |o: &Secret| key_of(Kind::Secret, o.meta());
        self.follow(api, Kind::Secret, wrap, key, watcher::Config::default().fields(fields)).await;
    }

    async fn watch_node_labels(self, client: Client) {
        let api = Api::<PartialObjectMeta<Node>>::all(client);
        let wrap = |object: PartialObjectMeta<Node>| {
            Ok(Resource::Node(Arc::new(Node { metadata: object.metadata, ..Node::default() })))
        };
        let key = |o: &PartialObjectMeta<Node>| key_of(Kind::Node, o.meta());
        self.follow(api, Kind::Node, wrap, key, watcher::Config::default()).await;
    }

    async fn watch_crd(self, client: Client, kind: Kind) {
        let resource = crd_resource(kind);
        let api = match &self.namespace {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client, ns, &resource),
            None => Api::<DynamicObject>::all_with(client, &resource),
        };
        let key = move |o: &DynamicObject| key_of(kind, o.meta());
        self.follow(api, kind, move |object| decode_crd(kind, object), key, watcher::Config::default()).await;
    }

    /// Runs one watch forever, feeding decoded events through a [`WatchState`].
    async fn follow<K>(
        self,
        api: Api<K>,
        kind: Kind,
        decode: impl Fn(K) -> Decoded,
        key: impl Fn(&K) -> ResourceKey,
        config: watcher::Config,
    ) where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let mut state = WatchState::new(kind, self.namespace.clone());
        let mut counted = false;
        let stream = watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(watcher::Event::Init) => WatchEvent::Init,
                Ok(watcher::Event::InitApply(o)) => WatchEvent::InitApply(decode(without_managed_fields(o))),
                Ok(watcher::Event::InitDone) => WatchEvent::InitDone,
                Ok(watcher::Event::Apply(o)) => WatchEvent::Apply(decode(without_managed_fields(o))),
                Ok(watcher::Event::Delete(o)) => WatchEvent::Delete(key(&o)),
                Err(err) => {
                    tracing::warn!(?kind, namespace = ?self.namespace, error = %err, "watch failed; retrying with backoff");
                    self.metrics.reconcile_error(kind);
                    continue;
                }
            };
            let out = state.on(event);
            if !out.is_empty() && self.events.send(out).await.is_err() {
                return;
            }
            if state.is_synced() && !counted {
                counted = true;
                self.sync.0.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(?kind, namespace = ?self.namespace, "watch synced");
            }
        }
    }
}

/// The API resource of a kind: a Weft CRD's (the only ones watched untyped or written status to).
pub fn crd_resource(kind: Kind) -> ApiResource {
    let info = kind.info();
    match info.crd() {
        Some(crd) => {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(crd.group, crd.version, crd.kind), crd.plural)
        }
        // The core kinds (weftctl lists Services and Pods through this too).
        None => ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", info.name)),
    }
}

fn key_of(kind: Kind, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Decodes a Weft resource with field-path errors; list items carry no apiVersion/kind, so they are set here.
fn decode_crd(kind: Kind, object: DynamicObject) -> Decoded {
    let key = key_of(kind, &object.metadata);
    let generation = object.metadata.generation;
    let mut value = serde_json::to_value(&object).unwrap_or_default();
    let status = value.get("status").cloned().and_then(|s| serde_json::from_value::<WeftStatus>(s).ok());
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.info().api_version.into());
        map.insert("kind".into(), kind.info().name.into());
    }
    match decode_document(value) {
        Ok(DecodedDocument::Resources(mut resources)) if resources.len() == 1 => Ok(resources.remove(0)),
        Ok(_) => Err(Box::new(Rejection { key, generation, errors: Vec::new(), status })),
        Err(errors) => Err(Box::new(Rejection { key, generation, errors, status })),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;

    #[test]
    fn watched_objects_are_held_without_managed_fields_and_with_everything_else() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("reviews-v1".into()),
                labels: Some([("app".to_string(), "reviews".to_string())].into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        let held = without_managed_fields(pod.clone());
        assert_eq!(held.metadata.managed_fields, None);
        assert_eq!(Pod { metadata: ObjectMeta { managed_fields: None, ..pod.metadata }, ..pod }, held);
    }
}
