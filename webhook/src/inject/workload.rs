//! The workload a pod belongs to, as metrics name it (Istio's `workload` label): the Deployment of a pod a
//! ReplicaSet made (the ReplicaSet's name without the pod template hash), else the controller that owns it
//! (StatefulSet, DaemonSet, Job, ...), else the pod's own name (or its `generateName` without the dash).

use k8s_openapi::api::core::v1::Pod;

/// The label a Deployment's ReplicaSets and pods carry: the hash that ends the ReplicaSet's name.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

pub fn workload_name(pod: &Pod) -> String {
    let metadata = &pod.metadata;
    let controller = metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    if let Some(owner) = controller {
        let hash = metadata.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
        let deployment = hash
            .filter(|_| owner.kind == "ReplicaSet")
            .and_then(|hash| owner.name.strip_suffix(hash.as_str())?.strip_suffix('-'));
        return deployment.unwrap_or(&owner.name).to_string();
    }
    match (&metadata.name, &metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => prefix.trim_end_matches('-').to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: Option<&str>, generate: Option<&str>, owner: Option<(&str, &str)>, hash: Option<&str>) -> Pod {
        let owner_references = owner.map(|(kind, name)| {
            vec![OwnerReference { kind: kind.into(), name: name.into(), controller: Some(true), ..Default::default() }]
        });
        let labels = hash.map(|h| [(POD_TEMPLATE_HASH.to_string(), h.to_string())].into());
        let metadata = ObjectMeta {
            name: name.map(Into::into),
            generate_name: generate.map(Into::into),
            owner_references,
            labels,
            ..Default::default()
        };
        Pod { metadata, ..Default::default() }
    }

    #[test]
    fn a_pod_belongs_to_its_deployment_or_controller_or_itself() {
        let deployment = pod(
            None,
            Some("reviews-v2-666c787774-"),
            Some(("ReplicaSet", "reviews-v2-666c787774")),
            Some("666c787774"),
        );
        assert_eq!(workload_name(&deployment), "reviews-v2");
        let bare_replica_set = pod(None, Some("cache-x-"), Some(("ReplicaSet", "cache")), None);
        assert_eq!(workload_name(&bare_replica_set), "cache");
        assert_eq!(workload_name(&pod(Some("db-0"), None, Some(("StatefulSet", "db")), None)), "db");
        assert_eq!(workload_name(&pod(Some("debug"), None, None, None)), "debug");
        assert_eq!(workload_name(&pod(None, Some("runner-"), None, None)), "runner");
    }
}
