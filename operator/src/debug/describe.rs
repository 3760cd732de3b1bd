//! `GET /debug/describe?pod=POD.NAMESPACE`: which Services, rules and policies apply to a pod, from the
//! operator's current snapshot, and where its own requests are routed by rules; what `weftctl describe pod`
//! prints. Pure: a snapshot and a pod in, a description out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weft_crds::AuthorizationAction;

use crate::index::Snapshot;
use crate::index::authz::policies_for;
use crate::index::peer_authn::{applicable, inbound_policy};
use crate::index::rate_limits::rate_limits_for;

/// A pod as the mesh sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodDescription {
    pub pod: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub locality: Option<String>,
    /// The Services whose selector picks the pod: requests to them may reach it.
    pub services: Vec<ServiceDescription>,
    pub inbound: InboundDescription,
    /// The hosts this pod's requests are routed to by a rule (a VirtualService or DestinationRule its
    /// namespace sees); other Services are reached plainly.
    pub outbound: Vec<HostRules>,
}

/// A Service the pod serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDescription {
    pub host: String,
    pub ports: Vec<u16>,
    /// The rules clients in the pod's own namespace use for it (`namespace/name`).
    pub rules: HostRules,
    /// The subsets of that DestinationRule the pod is in.
    pub subsets: Vec<String>,
}

/// The VirtualService and DestinationRule that apply to a host for clients in one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRules {
    pub host: String,
    pub virtual_service: Option<String>,
    pub destination_rule: Option<String>,
}

/// What the pod's inbound side enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundDescription {
    /// `PERMISSIVE`, `STRICT` or `DISABLE`, and the ports that differ.
    pub mtls: String,
    pub port_mtls: BTreeMap<u16, String>,
    /// The PeerAuthentications in force: mesh-wide, namespace, workload (`namespace/name`).
    pub peer_authentications: Vec<String>,
    /// `namespace/name (ACTION)`, with `dry-run` when only reported.
    pub authorization_policies: Vec<String>,
    pub rate_limits: Vec<String>,
}

/// The pod `namespace/pod`, or `None` when the snapshot does not know it.
pub fn describe(snapshot: &Snapshot, namespace: &str, pod: &str) -> Option<PodDescription> {
    let key = format!("{namespace}/{pod}");
    let labels = snapshot.pod_labels.get(&key)?.clone();
    let rules = |host: &str| HostRules {
        host: host.to_string(),
        virtual_service: snapshot
            .virtual_service_for(host, namespace)
            .map(|vs| format!("{}/{}", vs.namespace, vs.name)),
        destination_rule: snapshot
            .destination_rule_for(host, namespace)
            .map(|dr| format!("{}/{}", dr.namespace, dr.name)),
    };
    let selected = |selector: &BTreeMap<String, String>| {
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let services = snapshot
        .services
        .values()
        .filter(|s| s.namespace == namespace && selected(&s.selector))
        .map(|service| {
            let host = service.fqdn();
            let subsets = snapshot
                .destination_rule_for(&host, namespace)
                .map(|dr| dr.spec.subsets.iter().filter(|s| s.labels.iter().all(|(k, v)| labels.get(k) == Some(v))))
                .into_iter()
                .flatten()
                .map(|s| s.name.clone())
                .collect();
            let ports = service.ports.iter().map(|p| p.port).collect();
            ServiceDescription { rules: rules(&host), host, ports, subsets }
        })
        .collect();
    let outbound = snapshot
        .services
        .values()
        .map(|s| rules(&s.fqdn()))
        .filter(|r| r.virtual_service.is_some() || r.destination_rule.is_some())
        .collect();
    Some(PodDescription {
        pod: pod.to_string(),
        namespace: namespace.to_string(),
        service_account: snapshot.pod_accounts.get(&key).cloned(),
        locality: snapshot.pod_localities.get(&key).map(ToString::to_string),
        inbound: inbound(snapshot, namespace, &labels),
        labels,
        services,
        outbound,
    })
}

fn inbound(snapshot: &Snapshot, namespace: &str, labels: &BTreeMap<String, String>) -> InboundDescription {
    let policies = snapshot.peer_authentications.as_slice();
    let root = snapshot.root_namespace();
    let modes = inbound_policy(policies, root, namespace, labels);
    let in_force = applicable(policies, root, namespace, labels);
    let mode = |m: weft_xds::inbound::PeerMode| format!("{m:?}").to_ascii_uppercase();
    let peer_authentications =
        [("mesh", in_force.mesh), ("namespace", in_force.namespace), ("workload", in_force.workload)]
            .into_iter()
            .filter_map(|(level, p)| p.map(|p| format!("{}/{} ({level})", p.namespace, p.name)))
            .collect();
    let authorization_policies = policies_for(snapshot, namespace, labels)
        .into_iter()
        .map(|p| {
            let action = match p.spec.action {
                AuthorizationAction::Allow => "ALLOW",
                AuthorizationAction::Deny => "DENY",
                AuthorizationAction::Audit => "AUDIT",
                AuthorizationAction::Custom => "CUSTOM",
            };
            let dry_run = if p.dry_run { ", dry-run" } else { "" };
            format!("{}/{} ({action}{dry_run})", p.namespace, p.name)
        })
        .collect();
    let rate_limits = rate_limits_for(snapshot, namespace, labels)
        .into_iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    InboundDescription {
        mtls: mode(modes.mode),
        port_mtls: modes.ports.iter().map(|(port, m)| (*port, mode(*m))).collect(),
        peer_authentications,
        authorization_policies,
        rate_limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml;

    const MESH: &str = "\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, ports: [{port: 9080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-2, namespace: shop, labels: {app: reviews, version: v2}}
spec: {serviceAccountName: reviews}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.weft.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.weft.dev/v1alpha1
kind: VirtualService
metadata: {name: ratings, namespace: shop}
spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}], timeout: 1s}]}
---
apiVersion: security.weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, rules: [{from: [{source: {namespaces: [shop]}}]}]}
";

    #[test]
    fn a_pod_is_described_by_the_services_rules_and_policies_that_apply_to_it() {
        let snapshot = snapshot_of_yaml(MESH);
        let pod = describe(&snapshot, "shop", "reviews-2").unwrap();
        assert_eq!(pod.service_account.as_deref(), Some("reviews"));
        let [service] = pod.services.as_slice() else { panic!("{:?}", pod.services) };
        assert_eq!((service.host.as_str(), service.ports.as_slice()), ("reviews.shop.svc.cluster.local", &[9080][..]));
        assert_eq!(service.rules.destination_rule.as_deref(), Some("shop/reviews"));
        assert_eq!(service.subsets, ["v2"], "only the subset whose labels the pod has");
        assert_eq!(pod.inbound.mtls, "STRICT");
        assert_eq!(pod.inbound.peer_authentications, ["shop/strict (namespace)"]);
        assert_eq!(pod.inbound.authorization_policies, ["shop/allow-frontend (ALLOW)"]);
        let hosts: Vec<&str> = pod.outbound.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, ["ratings.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"]);
        assert_eq!(pod.outbound[0].virtual_service.as_deref(), Some("shop/ratings"));
        assert!(describe(&snapshot, "shop", "nobody").is_none());
    }
}
