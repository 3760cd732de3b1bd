//! Locality-aware balancing, as Istio translates `localityLbSetting` to Envoy. A cluster with `distribute`, or
//! whose policy has outlier detection (without it a proxy never learns that a locality is failing), and that does
//! not turn locality balancing off, gets its endpoints grouped by locality ([`group`], the same for every proxy,
//! each group weighted by its endpoint count). Each proxy then gets them shaped by its own locality
//! ([`localize`]):
//! - `distribute`: the first rule whose `from` covers the proxy gives each matching locality its share (split
//!   between the localities one pattern covers, by their endpoint counts); localities no pattern covers are left
//!   empty. The cluster balances by locality weights.
//! - failover: priorities — 0 for its sub-zone, then its zone, its region, the regions `failover` names for its
//!   region, and the rest — or by how many `failoverPriority` labels an endpoint shares with it, made consecutive
//!   as Envoy wants them. Envoy (and the proxy) send to priority 0 while it is healthy enough and spill over to
//!   the next ones as endpoints are ejected.
//!
//! Pure.

use envoy_types::pb::envoy::config::core::v3::Locality as EnvoyLocality;
use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints};
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::TrafficPolicy;
use weft_crds::destination_rule::locality::{Locality, LocalityLbSetting};

use crate::index::EndpointModel;

/// The locality setting in force for a cluster with `policy`, when its endpoints are balanced by locality
/// (Istio's mesh default turns it on; a rule's `enabled: false` turns it off).
pub fn locality_setting(policy: Option<&TrafficPolicy>) -> Option<LocalityLbSetting> {
    let policy = policy?;
    let setting = policy.load_balancer.as_ref().and_then(|lb| lb.locality_lb_setting.clone()).unwrap_or_default();
    let applies = !setting.distribute.is_empty() || policy.outlier_detection.is_some();
    (applies && setting.enabled != Some(false)).then_some(setting)
}

/// Whether a cluster with `policy` splits traffic by locality weights (`distribute`).
pub fn distributes(policy: Option<&TrafficPolicy>) -> bool {
    locality_setting(policy).is_some_and(|s| !s.distribute.is_empty())
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
            load_balancing_weight: Some(UInt32Value { value: lb_endpoints.len() as u32 }),
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

/// `assignment` as a proxy in `proxy` gets it: split by `distribute`, or each locality's priority set.
pub fn localize(
    assignment: &ClusterLoadAssignment,
    setting: &LocalityLbSetting,
    proxy: &Locality,
) -> ClusterLoadAssignment {
    let mut localized = assignment.clone();
    if setting.distribute.is_empty() {
        prioritize(&mut localized, setting, proxy);
    } else if let Some(rule) = setting.distribute.iter().find(|rule| proxy.matches(&rule.from)) {
        distribute(&mut localized, &rule.to);
    }
    localized
}

fn prioritize(assignment: &mut ClusterLoadAssignment, setting: &LocalityLbSetting, proxy: &Locality) {
    let raw: Vec<u32> = assignment
        .endpoints
        .iter()
        .map(|group| raw_priority(setting, proxy, &group.locality.as_ref().map(of_envoy).unwrap_or_default()))
        .collect();
    let mut levels = raw.clone();
    levels.sort_unstable();
    levels.dedup();
    for (group, raw) in assignment.endpoints.iter_mut().zip(raw) {
        group.priority = levels.iter().position(|level| *level == raw).unwrap_or_default() as u32;
    }
}

/// Each share of `to` split between the localities its pattern covers (a locality counts for the first, most
/// specific, pattern covering it), by their weights; the localities no pattern covers are left empty.
fn distribute(assignment: &mut ClusterLoadAssignment, to: &BTreeMap<String, u32>) {
    let mut patterns: Vec<(&String, u32)> = to.iter().map(|(pattern, share)| (pattern, *share)).collect();
    // Most specific first: more parts, then no wildcard.
    patterns.sort_by_key(|(pattern, _)| (std::cmp::Reverse(pattern.split('/').count()), pattern.ends_with('*')));
    let mut unclaimed: Vec<bool> = vec![true; assignment.endpoints.len()];
    let mut weights: Vec<Option<u32>> = vec![None; assignment.endpoints.len()];
    for (pattern, share) in patterns {
        let covered: Vec<usize> = (0..assignment.endpoints.len())
            .filter(|i| unclaimed[*i])
            .filter(|i| assignment.endpoints[*i].locality.as_ref().map(of_envoy).unwrap_or_default().matches(pattern))
            .collect();
        let weight_of = |i: usize| assignment.endpoints[i].load_balancing_weight.map_or(1, |w| w.value);
        let total: u32 = covered.iter().map(|i| weight_of(*i)).sum();
        for i in covered {
            unclaimed[i] = false;
            let split = (u64::from(weight_of(i)) * u64::from(share)).div_ceil(u64::from(total.max(1)));
            weights[i] = u32::try_from(split).ok().filter(|split| *split > 0);
        }
    }
    for (group, weight) in assignment.endpoints.iter_mut().zip(weights) {
        match weight {
            Some(value) => group.load_balancing_weight = Some(UInt32Value { value }),
            None => group.lb_endpoints.clear(),
        }
    }
    assignment.endpoints.retain(|group| !group.lb_endpoints.is_empty());
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
        localize(&assignment(localities), setting, proxy).endpoints.iter().map(|e| e.priority).collect()
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
    fn distribute_gives_each_locality_its_share_and_leaves_the_others_out() {
        let setting: LocalityLbSetting = serde_saphyr::from_str(
            "{distribute: [{from: \"r1/z1/*\", to: {\"r1/z1/*\": 80, \"r1/*\": 20}}, {from: \"*\", to: {r2: 100}}]}",
        )
        .unwrap();
        let mut groups = assignment(&[at("r1", "z1"), at("r1", "z2"), at("r1", "z3"), at("r2", "z9")]);
        // Three endpoints in z2, one in z3: the 20 % of `r1/*` (z1 is claimed by the more specific pattern) splits
        // 15 / 5 (rounded up, as Istio does).
        groups.endpoints[1].load_balancing_weight = Some(UInt32Value { value: 3 });
        let shaped = localize(&groups, &setting, &at("r1", "z1"));
        let weights: Vec<(String, u32)> = shaped
            .endpoints
            .iter()
            .map(|g| (g.locality.as_ref().unwrap().zone.clone(), g.load_balancing_weight.unwrap().value))
            .collect();
        let expected = [("z1", 80), ("z2", 15), ("z3", 5)].map(|(z, w)| (z.to_string(), w));
        assert_eq!(weights, expected, "r2 is left out");
        let elsewhere = localize(&groups, &setting, &at("r2", "z9"));
        assert_eq!(elsewhere.endpoints.len(), 1, "from r2 only r2's endpoints");
        assert!(distributes(Some(
            &serde_saphyr::from_str(&format!(
                "{{loadBalancer: {{localityLbSetting: {}}}}}",
                "{distribute: [{from: r1, to: {r1: 100}}]}"
            ))
            .unwrap()
        )));
    }

    #[test]
    fn failover_needs_outlier_detection_and_can_be_turned_off() {
        let with = |yaml: &str| -> TrafficPolicy { serde_saphyr::from_str(yaml).unwrap() };
        assert!(locality_setting(Some(&with("{loadBalancer: {simple: RANDOM}}"))).is_none());
        assert!(locality_setting(Some(&with("{outlierDetection: {consecutive5xxErrors: 2}}"))).is_some());
        let off =
            with("{outlierDetection: {consecutive5xxErrors: 2}, loadBalancer: {localityLbSetting: {enabled: false}}}");
        assert!(locality_setting(Some(&off)).is_none());
    }
}
