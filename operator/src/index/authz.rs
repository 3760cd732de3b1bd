//! AuthorizationPolicy in the snapshot, and which policies apply to a workload, with Istio's scoping: a policy
//! with `targetRefs` applies to the pods its namespace's named Services select; one with a `selector`, to the
//! pods carrying those labels in its namespace (in every namespace, when it lives in the root namespace);
//! one with neither, to every pod of its namespace (of the mesh, in the root namespace). Pure.

use std::collections::BTreeMap;

use weft_crds::authorization_policy::{DRY_RUN_ANNOTATIONS, PolicyTargetReference, WorkloadPolicy};
use weft_crds::{AuthorizationPolicy, AuthorizationPolicySpec, WeftStatus};

use super::build::namespace_of;
use super::snapshot::{Snapshot, service_fqdn};

#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationPolicyModel {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status the object carries now.
    pub status: Option<WeftStatus>,
    /// Annotated `weft.dev/dry-run: "true"` (or Istio's `istio.io/dry-run`): evaluated and reported only.
    pub dry_run: bool,
    pub spec: AuthorizationPolicySpec,
}

impl AuthorizationPolicyModel {
    pub fn of(policy: &AuthorizationPolicy) -> Self {
        let annotations = policy.metadata.annotations.as_ref();
        let dry_run = DRY_RUN_ANNOTATIONS
            .iter()
            .any(|key| annotations.and_then(|a| a.get(*key)).is_some_and(|v| v.eq_ignore_ascii_case("true")));
        Self {
            namespace: namespace_of(&policy.metadata.namespace),
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            status: policy.status.clone(),
            dry_run,
            spec: policy.spec.clone(),
        }
    }

    /// Equal but for what only status reports (status, generation).
    pub fn same_config(&self, other: &Self) -> bool {
        (&self.namespace, &self.name, self.dry_run, &self.spec)
            == (&other.namespace, &other.name, other.dry_run, &other.spec)
    }
}

/// Where a workload policy (AuthorizationPolicy, HTTPLocalRateLimitPolicy) applies: its namespace, its
/// selector's labels, its target references.
pub struct PolicyScope<'a, T: Iterator<Item = &'a PolicyTargetReference> + Clone> {
    pub namespace: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub targets: T,
}

impl<'a, T: Iterator<Item = &'a PolicyTargetReference> + Clone> PolicyScope<'a, T> {
    /// Whether it covers a pod in `namespace` with `labels`: by target Services, else by selector (in every
    /// namespace from the root namespace), else every pod of its namespace (of the mesh, from the root).
    pub fn covers(&self, snapshot: &Snapshot, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        let here = self.namespace == namespace;
        let mesh_wide = self.namespace == snapshot.root_namespace();
        let selects = |wanted: &BTreeMap<String, String>| wanted.iter().all(|(k, v)| labels.get(k) == Some(v));
        if self.targets.clone().next().is_some() {
            let service_selects = |target: &PolicyTargetReference| {
                target_service(snapshot, self.namespace, target).is_some_and(|s| !s.is_empty() && selects(s))
            };
            return here && self.targets.clone().any(service_selects);
        }
        match self.labels {
            Some(wanted) => (here || mesh_wide) && selects(wanted),
            None => here || mesh_wide,
        }
    }
}

/// The selector of the Service `target` names, when it is a Service of `namespace` (the policy's).
pub fn target_service<'s>(
    snapshot: &'s Snapshot,
    namespace: &str,
    target: &PolicyTargetReference,
) -> Option<&'s BTreeMap<String, String>> {
    let target_namespace = target.namespace.as_deref().unwrap_or(namespace);
    if !target.is_service() || target_namespace != namespace {
        return None;
    }
    snapshot.services.get(&service_fqdn(&target.name, namespace)).map(|s| &s.selector)
}

/// The policies that apply to a pod in `namespace` with `labels`, in namespace/name order.
pub fn policies_for<'a>(
    snapshot: &'a Snapshot,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<&'a AuthorizationPolicyModel> {
    let covers = |p: &&AuthorizationPolicyModel| {
        let scope = PolicyScope {
            namespace: &p.namespace,
            labels: p.spec.workload_labels(),
            targets: p.spec.targets().map(|(_, t)| t),
        };
        scope.covers(snapshot, namespace, labels)
    };
    snapshot.authorization_policies.iter().filter(covers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ROOT_NAMESPACE, snapshot_of_yaml};

    fn policy(name: &str, namespace: &str, spec: &str) -> String {
        format!(
            "apiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\n\
             metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n---\n"
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn scoped_by_namespace_selector_root_namespace_and_target_service() {
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
                       spec: {selector: {app: db}, ports: [{port: 5432}]}\n---\n";
        let yaml = [
            policy("mesh", ROOT_NAMESPACE, "{action: DENY, rules: [{}]}"),
            policy("mesh-db", ROOT_NAMESPACE, "{selector: {matchLabels: {app: db}}}"),
            policy("shop-all", "shop", "{}"),
            policy("shop-web", "shop", "{selector: {matchLabels: {app: web}}}"),
            policy("shop-db-service", "shop", "{targetRefs: [{kind: Service, group: \"\", name: db}]}"),
            policy("shop-missing", "shop", "{targetRefs: [{kind: Service, group: \"\", name: gone}]}"),
            policy("other", "other", "{}"),
            service.to_string(),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&yaml);
        let names = |namespace: &str, pairs: &[(&str, &str)]| {
            policies_for(&snapshot, namespace, &labels(pairs)).iter().map(|p| p.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names("shop", &[("app", "db")]), ["shop-all", "shop-db-service", "mesh", "mesh-db"]);
        assert_eq!(names("shop", &[("app", "web")]), ["shop-all", "shop-web", "mesh"]);
        assert_eq!(names("other", &[("app", "db")]), ["other", "mesh", "mesh-db"]);
        assert_eq!(names("empty", &[]), ["mesh"]);
    }

    #[test]
    fn a_dry_run_annotation_is_read_from_either_key() {
        let yaml = "apiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a, \
                    namespace: shop, annotations: {istio.io/dry-run: \"true\"}}\nspec: {}\n";
        let snapshot = snapshot_of_yaml(yaml);
        assert!(snapshot.authorization_policies[0].dry_run);
        let plain = snapshot_of_yaml(&policy("b", "shop", "{}"));
        assert!(!plain.authorization_policies[0].dry_run);
    }
}
