//! Kubernetes mode: the trust bundle reaches proxies as the ConfigMap `weft-ca-root-cert` (key
//! `root-cert.pem`) in every namespace with Services or Pods, like Istio's `istio-ca-root-cert`; the injector
//! mounts it into each sidecar, and the kubelet refreshes the mounted file when the bundle changes (a root
//! rotation publishes old and new roots together). Written with server-side apply, once per namespace and bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::app::SnapshotReceiver;

/// The ConfigMap's name and key (the injector mounts them).
pub const BUNDLE_CONFIG_MAP: &str = "weft-ca-root-cert";
pub const BUNDLE_KEY: &str = "root-cert.pem";
const FIELD_MANAGER: &str = "weft-operator";

/// Every namespace's ConfigMap is applied again this often, so one deleted by hand (or in a namespace that was
/// deleted and made again) comes back, and a failed write is retried.
const REFRESH: Duration = Duration::from_secs(60);

/// Keeps the bundle ConfigMap in every namespace the snapshots name, until the channel closes.
pub async fn run(client: kube::Client, roots_pem: String, mut snapshots: SnapshotReceiver) {
    let mut written = BTreeSet::new();
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let namespaces: BTreeSet<String> = match snapshots.borrow_and_update().as_ref() {
            Some(published) => namespaces_of(&published.snapshot),
            None => BTreeSet::new(),
        };
        // A namespace that went away is written again if it comes back.
        written.retain(|namespace| namespaces.contains(namespace));
        for namespace in namespaces.difference(&written.clone()) {
            match apply(&client, namespace, &roots_pem).await {
                Ok(()) => {
                    written.insert(namespace.clone());
                }
                Err(err) => tracing::warn!(%namespace, error = %err, "could not write the trust bundle ConfigMap"),
            }
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            _ = refresh.tick() => written.clear(),
        }
    }
}

/// The namespaces that hold Services or Pods.
fn namespaces_of(snapshot: &crate::index::Snapshot) -> BTreeSet<String> {
    let services = snapshot.services.values().map(|s| s.namespace.clone());
    let pods = snapshot.pod_labels.keys().filter_map(|key| key.split_once('/').map(|(ns, _)| ns.to_string()));
    services.chain(pods).collect()
}

pub async fn apply(client: &kube::Client, namespace: &str, roots_pem: &str) -> Result<(), kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = bundle_config_map(namespace, roots_pem);
    maps.patch(BUNDLE_CONFIG_MAP, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&map)).await?;
    Ok(())
}

pub fn bundle_config_map(namespace: &str, roots_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(BUNDLE_CONFIG_MAP.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "weft-operator".to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(BUNDLE_KEY.to_string(), roots_pem.to_string())])),
        ..ConfigMap::default()
    }
}
