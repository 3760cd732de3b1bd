//! HTTPLocalRateLimitPolicies to the limits a workload's inbound side enforces ([`weft_xds::ratelimit`]): per
//! port the first policy (namespace/name order) that names the port, and for the other ports the first that
//! names none; callers named by ServiceAccount become SPIFFE ids of the mesh's trust domain (the first override
//! naming a caller wins). Pure.

use std::collections::BTreeMap;

use weft_crds::rate_limit::HttpLocalRateLimitPolicySpec;
use weft_xds::ratelimit::RateLimit;

use crate::index::rate_limits::RateLimitPolicyModel;

/// The limit for every port, and the ports with their own.
pub fn inbound_limits(
    policies: &[&RateLimitPolicyModel],
    trust_domain: &str,
) -> (Option<RateLimit>, BTreeMap<u16, RateLimit>) {
    let mut every_port = None;
    let mut ports = BTreeMap::new();
    for policy in policies {
        let limit = || rate_limit(policy, trust_domain);
        match policy.spec.port {
            Some(port) => {
                ports.entry(port).or_insert_with(limit);
            }
            None if every_port.is_none() => every_port = Some(limit()),
            None => {}
        }
    }
    (every_port, ports)
}

fn rate_limit(policy: &RateLimitPolicyModel, trust_domain: &str) -> RateLimit {
    let HttpLocalRateLimitPolicySpec { total, identity, overrides, .. } = &policy.spec;
    let mut by_identity = BTreeMap::new();
    for entry in overrides {
        for client in entry.client_refs.iter().filter(|c| c.is_service_account()) {
            let namespace = client.namespace.as_deref().unwrap_or(&policy.namespace);
            let id = format!("spiffe://{trust_domain}/ns/{namespace}/sa/{}", client.name);
            by_identity.entry(id).or_insert(entry.requests_per_second);
        }
    }
    RateLimit {
        policy: format!("{}/{}", policy.namespace, policy.name).into(),
        total: total.map(|l| l.requests_per_second),
        identity: identity.map(|l| l.requests_per_second),
        overrides: by_identity,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::index::rate_limits::rate_limits_for;
    use crate::index::snapshot_of_yaml;

    #[test]
    fn a_port_s_own_policy_wins_and_callers_become_spiffe_ids() {
        let policy = |name: &str, spec: &str| {
            format!(
                "apiVersion: security.weft.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {{name: {name}, \
                 namespace: shop}}\nspec: {spec}\n---\n"
            )
        };
        let yaml = [
            policy("a-all", "{total: {requestsPerSecond: 100}, overrides: [{requestsPerSecond: 50, clientRefs: \
                             [{kind: ServiceAccount, name: batch}, {kind: ServiceAccount, namespace: ops, name: cron}]}]}"),
            policy("b-all", "{total: {requestsPerSecond: 1}}"),
            policy("c-api", "{port: 8080, identity: {requestsPerSecond: 5}}"),
            policy("d-other", "{selector: {matchLabels: {app: other}}, total: {requestsPerSecond: 1}}"),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&yaml);
        assert!(snapshot.rejections.is_empty(), "{:?}", snapshot.rejections);
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let (every_port, ports) = inbound_limits(&rate_limits_for(&snapshot, "shop", &labels), "td");
        let every_port = every_port.unwrap();
        assert_eq!((&*every_port.policy, every_port.total), ("shop/a-all", Some(100)));
        assert_eq!(
            every_port.overrides,
            BTreeMap::from([
                ("spiffe://td/ns/ops/sa/cron".to_string(), 50),
                ("spiffe://td/ns/shop/sa/batch".to_string(), 50)
            ])
        );
        assert_eq!(ports.get(&8080).map(|l| (&*l.policy, l.identity)), Some(("shop/c-api", Some(5))));
        assert_eq!(ports.len(), 1);
    }
}
