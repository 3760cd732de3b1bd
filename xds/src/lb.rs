//! Load-balancing policies on the wire. Clusters carry Envoy's `load_balancing_policy` list, whose rule is "use
//! the first policy you support". Weft's default, power-of-two-choices over peak-EWMA latency, has no Envoy
//! extension, so it travels as Weft's own message first in the list, followed by Envoy's least-request (also P2C):
//! Envoy and gRPC skip the unknown first entry and still get the closest policy they have.

use envoy_types::pb::envoy::config::cluster::v3::{LoadBalancingPolicy, load_balancing_policy::Policy};
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::locality_lb_config::{
    LocalityConfigSpecifier, LocalityWeightedLbConfig,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::{LocalityLbConfig, SlowStartConfig};
use envoy_types::pb::envoy::extensions::load_balancing_policies::{
    least_request::v3::LeastRequest, maglev::v3::Maglev, random::v3::Random, ring_hash::v3::RingHash,
    round_robin::v3::RoundRobin,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Name;

use crate::pack;

/// Weft's peak-EWMA P2C policy; fields are Weft's defaults when zero.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PeakEwma {
    /// How fast old latency observations fade, in milliseconds (default 10 000).
    #[prost(uint64, tag = "1")]
    pub decay_ms: u64,
    /// Latency assumed for an endpoint before it has answered, in milliseconds (default 30).
    #[prost(uint64, tag = "2")]
    pub default_rtt_ms: u64,
}

impl Name for PeakEwma {
    const NAME: &'static str = "PeakEwma";
    const PACKAGE: &'static str = "weft.lb.v1alpha1";
}

/// The balancing algorithms a Weft proxy implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbAlgorithm {
    PeakEwma,
    LeastRequest,
    RoundRobin,
    Random,
    /// Consistent hashing over a ring (Istio's `consistentHash`): requests with the same hash key go to the same
    /// endpoint, and few keys move when endpoints change.
    RingHash,
    /// Consistent hashing by a Maglev lookup table (Istio's `consistentHash.maglev`): as even as a ring, with a
    /// constant-time lookup.
    Maglev,
}

/// Envoy's and Istio's default smallest ring.
pub const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's and Istio's default Maglev table size (a prime).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
/// Envoy's largest Maglev table.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;
/// Envoy's largest ring.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// Whether Envoy accepts a Maglev table of `size` slots: a prime (so every endpoint's stride visits every slot)
/// up to [`MAX_MAGLEV_TABLE_SIZE`].
pub fn is_valid_maglev_table_size(size: u64) -> bool {
    (2..=MAX_MAGLEV_TABLE_SIZE).contains(&size) && (2..).take_while(|d| d * d <= size).all(|d| !size.is_multiple_of(d))
}

impl LbAlgorithm {
    /// The `load_balancing_policy` list announcing this algorithm.
    pub fn to_policy(self) -> LoadBalancingPolicy {
        self.policy_with(None)
    }

    /// The list announcing this algorithm with slow start, on the entries that have it (round robin and least
    /// request; Weft's default carries it on its least-request entry).
    pub fn policy_with(self, slow_start: Option<SlowStartConfig>) -> LoadBalancingPolicy {
        let least_request = || LeastRequest { slow_start_config: slow_start.clone(), ..Default::default() };
        let entries: Vec<(&str, Any)> = match self {
            Self::PeakEwma => vec![
                ("weft.lb.peak_ewma", pack(&PeakEwma::default())),
                ("envoy.load_balancing_policies.least_request", pack(&least_request())),
            ],
            Self::LeastRequest => vec![("envoy.load_balancing_policies.least_request", pack(&least_request()))],
            Self::RoundRobin => vec![(
                "envoy.load_balancing_policies.round_robin",
                pack(&RoundRobin { slow_start_config: slow_start.clone(), ..Default::default() }),
            )],
            Self::Random => vec![("envoy.load_balancing_policies.random", pack(&Random::default()))],
            Self::RingHash => return ring_hash_policy(DEFAULT_RING_SIZE),
            Self::Maglev => return maglev_policy(DEFAULT_MAGLEV_TABLE_SIZE),
        };
        policy_list(entries)
    }

    /// The size of a consistent-hash policy list's table (its first ring-hash or Maglev entry): the ring's
    /// minimum size, or the Maglev table's size; `None` for other policies.
    pub fn hash_table_size(policy: &LoadBalancingPolicy) -> Option<u64> {
        policy.policies.iter().find_map(|p| {
            let any = p.typed_extension_config.as_ref()?.typed_config.as_ref()?;
            if let Ok(ring) = crate::unpack::<RingHash>(any) {
                return Some(ring.minimum_ring_size.map_or(DEFAULT_RING_SIZE, |s| s.value));
            }
            let maglev: Maglev = crate::unpack(any).ok()?;
            Some(maglev.table_size.map_or(DEFAULT_MAGLEV_TABLE_SIZE, |s| s.value))
        })
    }

    /// The slow start of a policy list: from its first round-robin or least-request entry that has one.
    pub fn slow_start(policy: &LoadBalancingPolicy) -> Option<SlowStartConfig> {
        policy.policies.iter().find_map(|p| {
            let any = p.typed_extension_config.as_ref()?.typed_config.as_ref()?;
            match crate::unpack::<RoundRobin>(any) {
                Ok(round_robin) => round_robin.slow_start_config,
                Err(_) => crate::unpack::<LeastRequest>(any).ok()?.slow_start_config,
            }
        })
    }

    /// Whether requests pick endpoints by their hash key.
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, Self::RingHash | Self::Maglev)
    }

    /// The first policy of the list that Weft implements, as Envoy chooses; `None` when there is none.
    pub fn from_policy(policy: &LoadBalancingPolicy) -> Option<Self> {
        policy.policies.iter().find_map(|p| {
            let url = p.typed_extension_config.as_ref()?.typed_config.as_ref()?.type_url.as_str();
            Self::from_type_url(url)
        })
    }

    fn from_type_url(url: &str) -> Option<Self> {
        [
            (PeakEwma::type_url(), Self::PeakEwma),
            (LeastRequest::type_url(), Self::LeastRequest),
            (RoundRobin::type_url(), Self::RoundRobin),
            (Random::type_url(), Self::Random),
            (RingHash::type_url(), Self::RingHash),
            (Maglev::type_url(), Self::Maglev),
        ]
        .into_iter()
        .find_map(|(known, algo)| (known == url).then_some(algo))
    }
}

/// A ring-hash policy list with this smallest ring.
pub fn ring_hash_policy(minimum_ring_size: u64) -> LoadBalancingPolicy {
    let ring = RingHash {
        minimum_ring_size: Some(envoy_types::pb::google::protobuf::UInt64Value { value: minimum_ring_size }),
        ..Default::default()
    };
    policy_list(vec![("envoy.load_balancing_policies.ring_hash", pack(&ring))])
}

/// A Maglev policy list with this table size.
pub fn maglev_policy(table_size: u64) -> LoadBalancingPolicy {
    let maglev = Maglev {
        table_size: Some(envoy_types::pb::google::protobuf::UInt64Value { value: table_size }),
        ..Default::default()
    };
    policy_list(vec![("envoy.load_balancing_policies.maglev", pack(&maglev))])
}

/// The policy list with Envoy's locality-weighted balancing turned on in each entry that has it (round robin,
/// least request, random): the localities' `load_balancing_weight`s then split each priority's traffic.
pub fn with_locality_weights(mut policy: LoadBalancingPolicy) -> LoadBalancingPolicy {
    let weighted = || {
        Some(LocalityLbConfig {
            locality_config_specifier: Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
                LocalityWeightedLbConfig {},
            )),
        })
    };
    for entry in &mut policy.policies {
        let Some(any) = entry.typed_extension_config.as_mut().and_then(|c| c.typed_config.as_mut()) else { continue };
        if let Ok(mut round_robin) = crate::unpack::<RoundRobin>(any) {
            round_robin.locality_lb_config = weighted();
            *any = pack(&round_robin);
        } else if let Ok(mut least_request) = crate::unpack::<LeastRequest>(any) {
            least_request.locality_lb_config = weighted();
            *any = pack(&least_request);
        } else if let Ok(mut random) = crate::unpack::<Random>(any) {
            random.locality_lb_config = weighted();
            *any = pack(&random);
        }
    }
    policy
}

/// Whether a policy list balances by locality weights (its first entry that can say so does).
pub fn is_locality_weighted(policy: &LoadBalancingPolicy) -> bool {
    let config = |any: &Any| {
        if let Ok(p) = crate::unpack::<RoundRobin>(any) {
            return Some(p.locality_lb_config);
        }
        if let Ok(p) = crate::unpack::<LeastRequest>(any) {
            return Some(p.locality_lb_config);
        }
        crate::unpack::<Random>(any).ok().map(|p| p.locality_lb_config)
    };
    let first = policy.policies.iter().find_map(|p| config(p.typed_extension_config.as_ref()?.typed_config.as_ref()?));
    first.flatten().is_some_and(|c| {
        matches!(c.locality_config_specifier, Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_)))
    })
}

fn policy_list(entries: Vec<(&str, Any)>) -> LoadBalancingPolicy {
    LoadBalancingPolicy {
        policies: entries
            .into_iter()
            .map(|(name, config)| Policy {
                typed_extension_config: Some(TypedExtensionConfig {
                    name: name.to_string(),
                    typed_config: Some(config),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips() {
        for algo in [
            LbAlgorithm::PeakEwma,
            LbAlgorithm::LeastRequest,
            LbAlgorithm::RoundRobin,
            LbAlgorithm::Random,
            LbAlgorithm::RingHash,
            LbAlgorithm::Maglev,
        ] {
            assert_eq!(LbAlgorithm::from_policy(&algo.to_policy()), Some(algo));
        }
    }

    #[test]
    fn locality_weights_are_turned_on_in_every_entry_that_has_them() {
        for algo in [LbAlgorithm::PeakEwma, LbAlgorithm::LeastRequest, LbAlgorithm::RoundRobin, LbAlgorithm::Random] {
            assert!(!is_locality_weighted(&algo.to_policy()));
            let weighted = with_locality_weights(algo.to_policy());
            assert!(is_locality_weighted(&weighted), "{algo:?}");
            assert_eq!(LbAlgorithm::from_policy(&weighted), Some(algo));
        }
    }

    #[test]
    fn a_ring_carries_its_size() {
        assert_eq!(LbAlgorithm::hash_table_size(&ring_hash_policy(4096)), Some(4096));
        assert_eq!(LbAlgorithm::hash_table_size(&maglev_policy(251)), Some(251));
        assert_eq!(LbAlgorithm::hash_table_size(&LbAlgorithm::Random.to_policy()), None);
        let warmup = SlowStartConfig { slow_start_window: Some(Default::default()), ..Default::default() };
        for algo in [LbAlgorithm::PeakEwma, LbAlgorithm::LeastRequest, LbAlgorithm::RoundRobin] {
            let policy = algo.policy_with(Some(warmup.clone()));
            assert_eq!(LbAlgorithm::slow_start(&policy), Some(warmup.clone()), "{algo:?}");
            assert_eq!(LbAlgorithm::from_policy(&policy), Some(algo));
        }
        assert_eq!(LbAlgorithm::slow_start(&LbAlgorithm::RoundRobin.to_policy()), None);
        assert!(is_valid_maglev_table_size(DEFAULT_MAGLEV_TABLE_SIZE) && is_valid_maglev_table_size(251));
        assert!(
            !is_valid_maglev_table_size(1024)
                && !is_valid_maglev_table_size(1)
                && !is_valid_maglev_table_size(5_000_012)
        );
    }

    #[test]
    fn peak_ewma_falls_back_to_least_request_for_other_clients() {
        let policy = LbAlgorithm::PeakEwma.to_policy();
        let urls: Vec<_> = policy
            .policies
            .iter()
            .map(|p| p.typed_extension_config.as_ref().unwrap().typed_config.as_ref().unwrap().type_url.clone())
            .collect();
        assert_eq!(urls, [PeakEwma::type_url(), LeastRequest::type_url()]);
    }

    #[test]
    fn unknown_policies_are_skipped_and_none_known_is_none() {
        let only_unknown = LoadBalancingPolicy {
            policies: vec![Policy {
                typed_extension_config: Some(TypedExtensionConfig {
                    name: "x".into(),
                    typed_config: Some(Any { type_url: "type.googleapis.com/x.Maglev".into(), value: vec![] }),
                }),
            }],
        };
        assert_eq!(LbAlgorithm::from_policy(&only_unknown), None);
    }
}
