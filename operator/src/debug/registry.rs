//! Every proxy with an open ADS stream, as the debug API shows it: who it is, when it connected, and per xDS
//! type what it was last sent (nonce, version, when) and how it answered (ACK, or NACK with the proxy's message).
//! Streams register when their proxy has identified itself and are removed when the stream ends.
//!
//! The views are the debug API's wire format (`/debug/proxies`), read back by `weftctl`: plain serde types,
//! with times as Unix milliseconds and the operator's own clock in the answer, so a client computes ages
//! without trusting its own clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weft_xds::ResourceType;

use crate::xds::protocol::Answer;
use crate::xds::resources::EncodedResources;

/// One connected proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyView {
    /// The node id the proxy connected with.
    pub node: String,
    pub pod: String,
    pub namespace: String,
    /// The proxy's address as the operator sees it.
    pub peer: String,
    /// `sotw` or `delta`.
    pub protocol: String,
    /// How much of the mesh it is sent (`mesh`, `namespace`, `on-demand`).
    pub scope: String,
    /// Whether it came over the TLS port.
    pub tls: bool,
    pub connected_unix_ms: u64,
    /// The operator config last translated for it (it grows with every snapshot that changes config).
    pub config: u64,
    /// Per type, by short name (`CDS`, `EDS`, `LDS`, `RDS`, `VHDS`).
    pub types: BTreeMap<String, TypeView>,
}

/// What one type's last push and answer were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeView {
    pub sent: Option<Sent>,
    /// The nonce of the last response the proxy ACKed.
    pub acked_nonce: Option<String>,
    /// The last NACK.
    pub nack: Option<Nack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub nonce: String,
    /// The type's version (state of the world); empty over delta xDS, where each resource has its own.
    pub version: String,
    /// Resources in the response.
    pub resources: usize,
    pub unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    pub nonce: String,
    pub version: String,
    /// The proxy's `error_detail`.
    pub message: String,
    pub unix_ms: u64,
}

/// Where a proxy stands for one type, as `weftctl proxy-status` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Nothing of this type was sent.
    NotSent,
    /// The last response was ACKed.
    Synced,
    /// The last response has not been answered yet.
    Stale,
    /// The last response was NACKed.
    Nacked,
}

impl SyncState {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotSent => "NOT SENT",
            Self::Synced => "SYNCED",
            Self::Stale => "STALE",
            Self::Nacked => "NACKED",
        }
    }
}

impl TypeView {
    pub fn state(&self) -> SyncState {
        let Some(sent) = &self.sent else { return SyncState::NotSent };
        if self.nack.as_ref().is_some_and(|n| n.nonce == sent.nonce) {
            SyncState::Nacked
        } else if self.acked_nonce.as_deref() == Some(sent.nonce.as_str()) {
            SyncState::Synced
        } else {
            SyncState::Stale
        }
    }
}

/// The answer of `/debug/proxies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxiesView {
    /// The operator's clock when it answered.
    pub now_unix_ms: u64,
    /// The operator's newest config (compare with each proxy's `config`).
    pub config: u64,
    pub proxies: Vec<ProxyView>,
}

/// The connected proxies.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    proxies: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    view: ProxyView,
    /// What it was last given to hold: the exact config it is sent.
    resources: Option<Arc<EncodedResources>>,
}

impl Registry {
    /// Registers a stream's proxy; it stays registered until the returned value is dropped.
    pub fn register(self: &Arc<Self>, view: ProxyView) -> Registration {
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.proxies.insert(id, Entry { view, resources: None });
        Registration { registry: self.clone(), id }
    }

    /// Every connected proxy, ordered by namespace, pod and connect time.
    pub fn proxies(&self) -> Vec<ProxyView> {
        let mut views: Vec<ProxyView> = self.lock().proxies.values().map(|e| e.view.clone()).collect();
        views.sort_by(|a, b| {
            (&a.namespace, &a.pod, a.connected_unix_ms).cmp(&(&b.namespace, &b.pod, b.connected_unix_ms))
        });
        views
    }

    /// The newest connected proxy of pod `pod` in `namespace`: its node id, the config it was last translated
    /// from, and what it was given.
    pub fn resources_of(&self, namespace: &str, pod: &str) -> Option<(String, u64, Option<Arc<EncodedResources>>)> {
        let inner = self.lock();
        let newest = inner
            .proxies
            .values()
            .filter(|e| e.view.namespace == namespace && e.view.pod == pod)
            .max_by_key(|e| e.view.connected_unix_ms)?;
        Some((newest.view.node.clone(), newest.view.config, newest.resources.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock left plain data behind, still worth showing.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A stream's place in the registry; dropping it removes the proxy.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Registration {
    fn update(&self, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.registry.lock().proxies.get_mut(&self.id) {
            change(entry);
        }
    }

    /// The proxy was given `resources`, translated from `config`.
    pub fn translated(&self, config: u64, resources: Arc<EncodedResources>) {
        self.update(|entry| {
            entry.view.config = config;
            entry.resources = Some(resources);
        });
    }

    /// A response of `kind` went out.
    pub fn sent(&self, kind: ResourceType, sent: Sent) {
        self.update(|entry| entry.view.types.entry(kind.short_name().to_string()).or_default().sent = Some(sent));
    }

    /// The proxy answered the response with `nonce`.
    pub fn answered(&self, nonce: &str, answer: &Answer) {
        let unix_ms = unix_ms(SystemTime::now());
        self.update(|entry| match answer {
            Answer::Ack { kind, .. } => {
                let view = entry.view.types.entry(kind.short_name().to_string()).or_default();
                view.acked_nonce = Some(nonce.to_string());
            }
            Answer::Nack { kind, version, message } => {
                let view = entry.view.types.entry(kind.short_name().to_string()).or_default();
                let nack =
                    Nack { nonce: nonce.to_string(), version: version.clone(), message: message.clone(), unix_ms };
                view.nack = Some(nack);
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().proxies.remove(&self.id);
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(pod: &str) -> ProxyView {
        ProxyView {
            node: format!("sidecar~~{pod}.shop~shop.svc.cluster.local"),
            pod: pod.into(),
            namespace: "shop".into(),
            peer: String::new(),
            protocol: "sotw".into(),
            scope: "mesh".into(),
            tls: false,
            connected_unix_ms: 1,
            config: 0,
            types: BTreeMap::new(),
        }
    }

    fn sent(nonce: &str) -> Sent {
        Sent { nonce: nonce.into(), version: format!("v{nonce}"), resources: 1, unix_ms: 5 }
    }

    #[test]
    fn a_type_is_synced_stale_or_nacked_by_the_answer_to_its_last_push() {
        let registry = Arc::new(Registry::default());
        let proxy = registry.register(view("web-1"));
        let state = || registry.proxies()[0].types.get("CDS").map(TypeView::state);
        assert_eq!(state(), None, "nothing sent yet");
        proxy.sent(ResourceType::Cluster, sent("1"));
        assert_eq!(state(), Some(SyncState::Stale));
        proxy.answered("1", &Answer::Ack { kind: ResourceType::Cluster, version: "v1".into() });
        assert_eq!(state(), Some(SyncState::Synced));
        proxy.sent(ResourceType::Cluster, sent("2"));
        assert_eq!(state(), Some(SyncState::Stale), "a newer push not answered yet");
        let nack = Answer::Nack { kind: ResourceType::Cluster, version: "v2".into(), message: "bad lb".into() };
        proxy.answered("2", &nack);
        assert_eq!(state(), Some(SyncState::Nacked));
        assert_eq!(registry.proxies()[0].types["CDS"].nack.as_ref().map(|n| n.message.as_str()), Some("bad lb"));
        drop(proxy);
        assert!(registry.proxies().is_empty(), "a closed stream leaves the registry");
    }

    #[test]
    fn the_newest_stream_of_a_pod_is_the_one_shown() {
        let registry = Arc::new(Registry::default());
        let _old = registry.register(view("web-1"));
        let newer = registry.register(ProxyView { connected_unix_ms: 9, node: "newer".into(), ..view("web-1") });
        assert_eq!(registry.resources_of("shop", "web-1").map(|(node, ..)| node), Some("newer".to_string()));
        assert_eq!(registry.resources_of("shop", "web-2"), None);
        drop(newer);
        assert_ne!(registry.resources_of("shop", "web-1").map(|(node, ..)| node), Some("newer".to_string()));
    }
}
