//! Writes status onto Weft resources: only on the leader, only when it changes, with
//! server-side apply of the `status` subresource under one field manager.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::sync::watch;

use super::{StatusTarget, needs_write, render, targets};
use crate::app::SnapshotReceiver;
use crate::metrics::Metrics;
use crate::source::kube::crd_resource;

/// The field manager owning `status` of Weft resources.
pub const FIELD_MANAGER: &str = "weft-operator";
/// After a failed write, try again this soon even if nothing else changes.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Follows snapshots and leadership; writes what changed while leading.
pub async fn run(
    client: Client,
    mut snapshots: SnapshotReceiver,
    mut leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let mut retry = false;
    loop {
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
        if !*leader.borrow_and_update() {
            retry = false;
            continue;
        }
        let Some(published) = snapshots.borrow_and_update().clone() else { continue };
        let failed = write_changed(&client, &targets(&published.snapshot), &metrics).await;
        retry = failed > 0;
        tokio::time::sleep(super::PASS_INTERVAL).await;
    }
}

/// Writes every target whose status differs from what the object carries; returns how many writes failed.
pub async fn write_changed(client: &Client, targets: &[StatusTarget], metrics: &Metrics) -> usize {
    let now = Time(Timestamp::now());
    let mut failed = 0;
    for target in targets.iter().filter(|t| needs_write(t)) {
        match write(client, target, &now).await {
            Ok(()) => metrics.status_write(target.key.kind, true),
            Err(err) => {
                failed += 1;
                metrics.status_write(target.key.kind, false);
                tracing::warn!(kind = ?target.key.kind, namespace = %target.key.namespace, name = %target.key.name, error = %err, "status write failed");
            }
        }
    }
    failed
}

/// Server-side applies the target's status to its object.
pub async fn write(client: &Client, target: &StatusTarget, now: &Time) -> Result<(), kube::Error> {
    let resource = crd_resource(target.key.kind);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &target.key.namespace, &resource);
    let body = serde_json::json!({
        "apiVersion": target.key.kind.info().api_version,
        "kind": resource.kind,
        "status": render(target, now),
    });
    api.patch_status(&target.key.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
    tracing::info!(kind = ?target.key.kind, namespace = %target.key.namespace, name = %target.key.name, "status updated");
    Ok(())
}
