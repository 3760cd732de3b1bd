//! Locality failover, as Istio translates `localityLbSetting` to Envoy: a cluster whose policy has outlier
//! detection (without it a proxy never learns that a locality is failing) and does not turn locality balancing
//! off gets its endpoints grouped by locality ([`group`], the same for every proxy); each proxy then gets them
//! with priorities from its own locality ([`prioritize`]): 0 for its sub-zone, then its zone, its region, the
//! regions `failover` names for its region, and the rest — or by how many `failoverPriority` labels an
//! endpoint shares with it. Priorities are made consecutive, as Envoy wants them. Envoy (and the proxy) send to
//! priority 0 while it is healthy enough and spill over to the next ones as endpoints are ejected. Pure.

use envoy_types::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints};
use weft_crds::TrafficPolicy;
use weft_crds::destination_rule::locality::{Locality, LocalityLbSetting};

use crate::index::EndpointModel;

/// The locality setting in force for a cluster with `policy`, when its endpoints fail over by locality (Istio's
/// mesh default turns it on; a rule's `enabled: false` turns it off).
pub fn failover_setting(policy: Option<&TrafficPolicy>) -> Option<LocalityLbSetting> {
    let policy = policy?;
    policy.outlier_detection.as_ref()?;
    let setting = policy.load_balancer.as_ref().and_then(|lb| lb.locality_lb_setting.clone()).unwrap_or_default();
    (setting.enabled != Some(false)).then_some(setting)
}

/// Endpoints grouped by locality, each group at priority 0, in locality order.
pub fn group<'a>(endpoints: impl Iterator<Item = (&'a EndpointModel, LbEndpoint)>) -> Vec<LocalityLbEndpoints> {
    let mut groups: std::collections::BTreeMap<&Locality, Vec<LbEndpoint>> = Default::default();
    for (model, endpoint) in endpoints {
        groups.entry(&model.locality).or_default().push(endpoint);
    }
    groups
        .into_iter()
        .map(|(locality, lb_endpoints)| LocalityLbEndpoints {
            locality: Some(EnvoyLocality {
                region: locality.region.clone(),
                zone: locality.zone.clone(),
                sub_zone: locality.subzone.clone(),
            }),
            lb_endpoints,
            ..Default::default()
        })
        .collect()
}

/// `assignment` as a proxy in `proxy` gets it: each locality's priority set by `setting`.
pub fn prioritize(
    assignment: &ClusterLoadAssignment,
    setting: &LocalityLbSetting,
    proxy: &Locality,
) -> ClusterLoadAssignment {
    let raw: Vec<u32> = assignment
        .endpoints
        .iter()
        .map(|group| {
            let at = group.locality.as_ref().map(of_envoy).unwrap_or_default();
            raw_priority(setting, proxy, &at)
        })
        .collect();
    let mut levels = raw.clone();
    levels.sort_unstable();
    levels.dedup();
    let mut prioritized = assignment.clone();
    for (group, raw) in prioritized.endpoints.iter_mut().zip(raw) {
        group.priority = levels.iter().position(|level| *level == raw).unwrap_or_default() as u32;
    }
    prioritized
}

/// Istio's priority before it is made consecutive.
fn raw_priority(setting: &LocalityLbSetting, proxy: &Locality, endpoint: &Locality) -> u32 {
    if !setting.failover_priority.is_empty() {
        let labels = &setting.failover_priority;
        return (labels.len() - proxy.shared_prefix(endpoint, labels)) as u32;
    }
    if proxy.region != endpoint.region {
        let named = setting.failover.iter().any(|f| f.from == proxy.region && f.to == endpoint.region);
        // Without a rule for its region, every other region is one level (Istio's 3).
        let ruled = setting.failover.iter().any(|f| f.from == proxy.region);
        return if named || !ruled { 3 } else { 4 };
    }
    match (proxy.zone == endpoint.zone, proxy.subzone == endpoint.subzone) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    }
}

fn of_envoy(locality: &EnvoyLocality) -> Locality {
    Locality { region: locality.region.clone(), zone: locality.zone.clone(), subzone: locality.sub_zone.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::destination_rule::locality::LocalityFailover;

    fn at(region: &str, zone: &str) -> Locality {
        Locality { region: region.into(), zone: zone.into(), subzone: String::new() }
    }

    fn assignment(localities: &[Locality]) -> ClusterLoadAssignment {
        let endpoints = localities
            .iter()
            .map(|l| LocalityLbEndpoints {
                locality: Some(EnvoyLocality { region: l.region.clone(), zone: l.zone.clone(), ..Default::default() }),
                lb_endpoints: vec![LbEndpoint::default()],
                ..Default::default()
            })
            .collect();
        ClusterLoadAssignment { cluster_name: "c".into(), endpoints, ..Default::default() }
    }

    fn priorities(setting: &LocalityLbSetting, proxy: &Locality, localities: &[Locality]) -> Vec<u32> {
        prioritize(&assignment(localities), setting, proxy).endpoints.iter().map(|e| e.priority).collect()
    }

    #[test]
    fn istio_s_failover_table() {
        // Istio's locality failover task: the client in region1/zone1.
        let setting = LocalityLbSetting {
            failover: vec![LocalityFailover { from: "region1".into(), to: "region2".into() }],
            ..Default::default()
        };
        let localities =
            [at("region1", "zone1"), at("region1", "zone2"), at("region2", "zone3"), at("region3", "zone4")];
        assert_eq!(priorities(&setting, &at("region1", "zone1"), &localities), [0, 1, 2, 3]);
        // Without failover rules every other region is one level; from region2, region1's zones are alike.
        let none = LocalityLbSetting::default();
        assert_eq!(priorities(&none, &at("region1", "zone1"), &localities), [0, 1, 2, 2]);
        assert_eq!(priorities(&none, &at("region2", "zone3"), &localities), [1, 1, 0, 1]);
    }

    #[test]
    fn failover_priority_counts_shared_labels() {
        let setting = LocalityLbSetting {
            failover_priority: vec!["topology.kubernetes.io/region".into(), "topology.kubernetes.io/zone".into()],
            ..Default::default()
        };
        let localities = [at("r1", "z1"), at("r1", "z2"), at("r2", "z1")];
        assert_eq!(priorities(&setting, &at("r1", "z1"), &localities), [0, 1, 2]);
    }

    #[test]
    fn failover_needs_outlier_detection_and_can_be_turned_off() {
        let with = |yaml: &str| -> TrafficPolicy { serde_saphyr::from_str(yaml).unwrap() };
        assert!(failover_setting(Some(&with("{loadBalancer: {simple: RANDOM}}"))).is_none());
        assert!(failover_setting(Some(&with("{outlierDetection: {consecutive5xxErrors: 2}}"))).is_some());
        let off =
            with("{outlierDetection: {consecutive5xxErrors: 2}, loadBalancer: {localityLbSetting: {enabled: false}}}");
        assert!(failover_setting(Some(&off)).is_none());
    }
}
