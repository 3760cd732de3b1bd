//! PeerAuthentication in the snapshot, and the inbound modes that apply to a workload, with Istio's precedence:
//! a policy of the pod's namespace whose selector matches its labels, else its namespace's policy without a
//! selector, else the mesh-wide one (no selector, in the root namespace, [`super::ROOT_NAMESPACE`] by default), else
//! `PERMISSIVE`. `UNSET` inherits
//! from the level above; a port-level `UNSET` inherits the workload's mode. Where several policies apply at one
//! level the oldest wins (creation time, then name). Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weft_crds::{MtlsMode, PeerAuthentication, PeerAuthenticationSpec, WeftStatus};
use weft_xds::inbound::{InboundPolicy, PeerMode};

use super::build::namespace_of;

#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthenticationModel {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status the object carries now.
    pub status: Option<WeftStatus>,
    /// `metadata.creationTimestamp`: the oldest of competing policies wins. None in standalone files.
    pub created: Option<Time>,
    pub spec: PeerAuthenticationSpec,
}

impl PeerAuthenticationModel {
    pub fn of(policy: &PeerAuthentication) -> Self {
        Self {
            namespace: namespace_of(&policy.metadata.namespace),
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            status: policy.status.clone(),
            created: policy.metadata.creation_timestamp.clone(),
            spec: policy.spec.clone(),
        }
    }

    /// Equal but for what only status reports (status, generation).
    pub fn same_config(&self, other: &Self) -> bool {
        (&self.namespace, &self.name, &self.created, &self.spec)
            == (&other.namespace, &other.name, &other.created, &other.spec)
    }

    fn age_key(&self) -> (Option<&Time>, &str) {
        (self.created.as_ref(), &self.name)
    }

    fn mode(&self) -> MtlsMode {
        self.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default()
    }
}

/// The PeerAuthentications in force for a pod, by level (Istio's precedence: workload over namespace over mesh;
/// the oldest of competing ones at a level).
#[derive(Debug, Clone, Copy, Default)]
pub struct Applicable<'a> {
    pub mesh: Option<&'a PeerAuthenticationModel>,
    pub namespace: Option<&'a PeerAuthenticationModel>,
    pub workload: Option<&'a PeerAuthenticationModel>,
}

/// The PeerAuthentications that apply to a pod in `namespace` with `labels` (mesh-wide ones in `root`).
pub fn applicable<'a>(
    policies: &'a [PeerAuthenticationModel],
    root: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Applicable<'a> {
    let oldest = |wanted: &dyn Fn(&PeerAuthenticationModel) -> bool| {
        policies.iter().filter(|p| wanted(p)).min_by(|a, b| a.age_key().cmp(&b.age_key()))
    };
    Applicable {
        mesh: oldest(&|p| p.namespace == root && p.spec.workload_labels().is_none()),
        namespace: oldest(&|p| p.namespace == namespace && p.spec.workload_labels().is_none()),
        workload: oldest(&|p| {
            p.namespace == namespace
                && p.spec.workload_labels().is_some_and(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
        }),
    }
}

/// The inbound modes of a pod in `namespace` with `labels`, under `policies` (mesh-wide ones in `root`).
pub fn inbound_policy(
    policies: &[PeerAuthenticationModel],
    root: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> InboundPolicy {
    let Applicable { mesh, namespace: own, workload } = applicable(policies, root, namespace, labels);
    let mode = [mesh, own, workload]
        .into_iter()
        .flatten()
        .fold(PeerMode::Permissive, |inherited, policy| resolved(policy.mode(), inherited));
    let ports = workload
        .map(|policy| policy.spec.port_modes().map(|(port, level)| (port, resolved(level, mode))).collect())
        .unwrap_or_default();
    InboundPolicy { mode, ports, ..Default::default() }
}

fn resolved(mode: MtlsMode, inherited: PeerMode) -> PeerMode {
    match mode {
        MtlsMode::Unset => inherited,
        MtlsMode::Disable => PeerMode::Disable,
        MtlsMode::Permissive => PeerMode::Permissive,
        MtlsMode::Strict => PeerMode::Strict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ROOT_NAMESPACE, snapshot_of_yaml};

    fn policy(name: &str, namespace: &str, spec: &str) -> String {
        format!(
            "apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\n\
             metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n---\n"
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn workload_then_namespace_then_mesh_then_permissive() {
        let yaml = [
            policy("mesh", ROOT_NAMESPACE, "{mtls: {mode: STRICT}}"),
            policy("relaxed", "legacy", "{mtls: {mode: PERMISSIVE}}"),
            policy("db", "legacy", "{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, portLevelMtls: {\"9090\": {mode: DISABLE}, \"5432\": {}}}"),
            policy("unset", "shop", "{}"),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&yaml);
        let of = |namespace, pod_labels: &[(&str, &str)]| snapshot.inbound_policy(namespace, &labels(pod_labels));
        assert_eq!(of("shop", &[]).mode, PeerMode::Strict, "UNSET in shop inherits the mesh's STRICT");
        assert_eq!(of("other", &[]).mode, PeerMode::Strict, "no policy of its own: the mesh's");
        assert_eq!(of("legacy", &[("app", "web")]).mode, PeerMode::Permissive, "the namespace's overrides the mesh's");
        let db = of("legacy", &[("app", "db"), ("version", "v1")]);
        assert_eq!(db.mode, PeerMode::Strict, "the workload's overrides the namespace's");
        assert_eq!(db.mode_for(9090), PeerMode::Disable);
        assert_eq!(db.mode_for(5432), PeerMode::Strict, "a port-level UNSET inherits the workload's mode");
        assert!(snapshot_of_yaml("").inbound_policy("shop", &BTreeMap::new()).is_default());
    }

    #[test]
    fn the_root_namespace_is_the_configured_one() {
        let mut index = crate::index::Index::new(None, "mesh-root".into());
        let yaml = [
            policy("mesh", "mesh-root", "{mtls: {mode: STRICT}}"),
            policy("old", ROOT_NAMESPACE, "{mtls: {mode: DISABLE}}"),
        ]
        .concat();
        for resource in crate::source::file::parse_file(std::path::Path::new("t.yaml"), &yaml).resources {
            index.apply(crate::source::Event::Applied(resource));
        }
        let snapshot = index.snapshot();
        assert_eq!(snapshot.root_namespace(), "mesh-root");
        assert_eq!(
            snapshot.inbound_policy("shop", &BTreeMap::new()).mode,
            PeerMode::Strict,
            "mesh-root's policy is mesh-wide"
        );
        assert_eq!(
            snapshot.inbound_policy(ROOT_NAMESPACE, &BTreeMap::new()).mode,
            PeerMode::Disable,
            "weft-system is a namespace like others"
        );
    }

    #[test]
    fn the_oldest_of_competing_policies_wins() {
        let yaml =
            [policy("b", "shop", "{mtls: {mode: STRICT}}"), policy("a", "shop", "{mtls: {mode: DISABLE}}")].concat();
        let snapshot = snapshot_of_yaml(&yaml);
        assert_eq!(snapshot.inbound_policy("shop", &BTreeMap::new()).mode, PeerMode::Disable, "no timestamps: by name");
        let stamped = yaml
            .replacen("namespace: shop}", "namespace: shop, creationTimestamp: \"2026-01-01T00:00:00Z\"}", 1)
            .replacen(
                "name: a, namespace: shop}",
                "name: a, namespace: shop, creationTimestamp: \"2026-02-01T00:00:00Z\"}",
                1,
            );
        let snapshot = snapshot_of_yaml(&stamped);
        assert_eq!(snapshot.inbound_policy("shop", &BTreeMap::new()).mode, PeerMode::Strict, "b is older");
    }
}
