//! The published-snapshot contract between the index and its readers (the ADS server, the status writer, the
//! health check): the current snapshot, when it was published, and which config it carries.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::Snapshot;

/// A snapshot and when it was published (push latency is measured from here).
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub at: Instant,
    /// Changes exactly when translation could give a different result (not on status-only changes, such as the
    /// operator's own status writes coming back through the watch): readers translate again only then.
    pub config: u64,
}

impl Published {
    /// The next snapshot after `previous`: a new config number unless only status changed.
    pub fn next(snapshot: Snapshot, previous: Option<&Published>, at: Instant) -> Self {
        let config = match previous {
            Some(p) if p.snapshot.same_config(&snapshot) => p.config,
            Some(p) => p.config + 1,
            None => 1,
        };
        Self { snapshot, at, config }
    }
}

/// The current snapshot; `None` until the sources have delivered their first complete state, so a restarting
/// operator never pushes an empty config over a proxy's good one.
pub type SnapshotReceiver = watch::Receiver<Option<Arc<Published>>>;
pub type SnapshotSender = watch::Sender<Option<Arc<Published>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml as snapshot;

    const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop, generation: 1}\n\
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n";

    #[test]
    fn status_written_back_keeps_the_config_and_a_spec_change_does_not() {
        let first = Published::next(snapshot(MESH), None, Instant::now());
        assert_eq!(first.config, 1);
        let with_status = MESH.replace(
            "spec: {hosts",
            "status: {observedGeneration: 1, conditions: [{type: Accepted, status: \"True\", reason: Accepted, message: ok, lastTransitionTime: \"2026-12-03T00:00:00Z\"}]}\nspec: {hosts",
        );
        let status_only = Published::next(snapshot(&with_status), Some(&first), Instant::now());
        assert_ne!(status_only.snapshot, first.snapshot, "the status is in the snapshot, for the status writer");
        assert_eq!(status_only.config, 1, "but it is the same config");
        let edited = with_status.replace("host: reviews}", "host: reviews, port: {number: 80}}");
        assert_eq!(Published::next(snapshot(&edited), Some(&status_only), Instant::now()).config, 2);
    }

    #[test]
    fn a_secret_is_config_only_when_a_rule_names_it() {
        let rule = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\n\
            spec: {host: reviews, workloadSelector: {matchLabels: {app: web}}, trafficPolicy: {tls: {mode: SIMPLE, credentialName: roots}}}\n";
        let secret = |name: &str, ca: &str| {
            format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\nstringData: {{ca.crt: {ca}}}\n"
            )
        };
        let first = Published::next(snapshot(&format!("{MESH}{rule}{}", secret("other", "A"))), None, Instant::now());
        let other_changed = snapshot(&format!("{MESH}{rule}{}", secret("other", "B")));
        let same = Published::next(other_changed, Some(&first), Instant::now());
        assert_eq!(same.config, 1, "a Secret no rule names");
        let named = snapshot(&format!("{MESH}{rule}{}{}", secret("other", "B"), secret("roots-cacert", "R")));
        let named = Published::next(named, Some(&same), Instant::now());
        assert_eq!(named.config, 2, "the roots of the Secret the rule names, apart");
        let changed = snapshot(&format!("{MESH}{rule}{}{}", secret("other", "B"), secret("roots-cacert", "R2")));
        assert_eq!(Published::next(changed, Some(&named), Instant::now()).config, 3);
    }
}
