//! Istio's `localityLbSetting`: how a client's locality (region/zone/subzone of its node) shapes which
//! endpoints it sends to — failover from the nearest locality outward (by priority), or an explicit split
//! (`distribute`) — and the locality value type with Istio's patterns (`region/zone/*`).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `loadBalancer.localityLbSetting`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLbSetting {
    /// Explicit shares per destination locality, by the client's locality. Not with `failover`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    /// Which region a client's region fails over to once its own has no healthy endpoint left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Topology labels, most important first: an endpoint matching the client on all of them is preferred, then
    /// one matching all but the last, and so on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// `false` turns locality load balancing off for this rule (it is on by default, as in Istio's mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// The clients' locality, `region/zone/subzone`; `*` stands for any remaining part.
    pub from: String,
    /// Destination locality pattern -> percent of the traffic (the percents add up to 100).
    pub to: BTreeMap<String, u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// The clients' region.
    pub from: String,
    /// The region to fail over to.
    pub to: String,
}

/// The topology labels `failoverPriority` may name: they compare the client's and the endpoint's locality.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Istio's sub-zone label (Kubernetes has no sub-zone).
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// Istio's network label: Weft runs one network, where every endpoint matches.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// Istio's pod label overriding the node's locality, `region.zone.subzone` (a label value cannot hold `/`).
pub const LOCALITY_OVERRIDE_LABEL: &str = "istio-locality";

/// Where a workload runs. Empty parts are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// From node (or pod) labels: Istio's override label first, else the topology labels.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        if let Some(written) = labels.get(LOCALITY_OVERRIDE_LABEL) {
            let mut parts = written.splitn(3, '.').map(str::to_string);
            let (region, zone, subzone) = (parts.next(), parts.next(), parts.next());
            return Self {
                region: region.unwrap_or_default(),
                zone: zone.unwrap_or_default(),
                subzone: subzone.unwrap_or_default(),
            };
        }
        let get = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Self { region: get(REGION_LABEL), zone: get(ZONE_LABEL), subzone: get(SUBZONE_LABEL) }
    }

    pub fn is_known(&self) -> bool {
        !self.region.is_empty() || !self.zone.is_empty()
    }

    /// Whether a pattern (`region`, `region/zone/*`, `*`) covers this locality: each part given must be equal,
    /// `*` matches whatever remains.
    pub fn matches(&self, pattern: &str) -> bool {
        let mine = [&self.region, &self.zone, &self.subzone];
        for (i, part) in pattern.split('/').enumerate() {
            if part == "*" {
                return true;
            }
            match mine.get(i) {
                Some(own) if *own == part => {}
                _ => return false,
            }
        }
        true
    }

    /// How many of the `failoverPriority` labels, counted from the first, this and `other` share.
    pub fn shared_prefix(&self, other: &Self, labels: &[String]) -> usize {
        labels
            .iter()
            .take_while(|label| match label.as_str() {
                REGION_LABEL => self.region == other.region,
                ZONE_LABEL => self.region == other.region && self.zone == other.zone,
                SUBZONE_LABEL => self == other,
                _ => true,
            })
            .count()
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

/// A problem with a locality pattern (`region/zone/subzone`, `*` only as a whole last part).
pub fn pattern_problem(pattern: &str) -> Option<String> {
    let parts: Vec<&str> = pattern.split('/').collect();
    if pattern.is_empty() || parts.len() > 3 {
        return Some(format!("{pattern:?} is not a locality (region, region/zone or region/zone/subzone)"));
    }
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || (part.contains('*') && (*part != "*" || i != last)) {
            return Some(format!("{pattern:?}: a part may not be empty, and '*' may only be the whole last part"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(region: &str, zone: &str, subzone: &str) -> Locality {
        Locality { region: region.into(), zone: zone.into(), subzone: subzone.into() }
    }

    #[test]
    fn patterns_match_from_the_region_down() {
        let here = at("us-west", "zone1", "rack1");
        for pattern in ["*", "us-west", "us-west/*", "us-west/zone1", "us-west/zone1/*", "us-west/zone1/rack1"] {
            assert!(here.matches(pattern), "{pattern}");
        }
        for pattern in ["us-east", "us-west/zone2", "us-west/zone1/rack2", "us-west/zone1/rack1/x"] {
            assert!(!here.matches(pattern), "{pattern}");
        }
        assert_eq!(
            pattern_problem("us-west/*/rack"),
            Some("\"us-west/*/rack\": a part may not be empty, and '*' may only be the whole last part".into())
        );
        assert!(
            pattern_problem("a/b/c/d").is_some() && pattern_problem("").is_some() && pattern_problem("a/z*").is_some()
        );
        assert_eq!(pattern_problem("us-west/zone1/*"), None);
    }

    #[test]
    fn the_override_label_wins_over_the_topology_labels() {
        let labels =
            BTreeMap::from([(REGION_LABEL.to_string(), "r1".to_string()), (ZONE_LABEL.to_string(), "z1".to_string())]);
        assert_eq!(Locality::from_labels(&labels), at("r1", "z1", ""));
        let mut overridden = labels.clone();
        overridden.insert(LOCALITY_OVERRIDE_LABEL.into(), "r2.z2.s2".into());
        assert_eq!(Locality::from_labels(&overridden), at("r2", "z2", "s2"));
        assert!(!Locality::default().is_known());
    }

    #[test]
    fn failover_priority_counts_the_labels_shared_in_order() {
        let labels: Vec<String> = [REGION_LABEL, ZONE_LABEL].map(String::from).to_vec();
        let me = at("r1", "z1", "");
        assert_eq!(me.shared_prefix(&at("r1", "z1", "s"), &labels), 2);
        assert_eq!(me.shared_prefix(&at("r1", "z2", ""), &labels), 1);
        assert_eq!(me.shared_prefix(&at("r2", "z1", ""), &labels), 0, "a zone of another region is not the same zone");
    }
}
