//! Clusters -> plain cluster config: balancing, connect timeout, circuit breakers (limits, retry budget),
//! outlier detection, panic threshold, upstream HTTP options. What the proxy cannot honour is refused.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, OutlierDetection, circuit_breakers, cluster};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::SlowStartConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, explicit_http_config,
};
use weft_xds::lb::{self, LbAlgorithm};

use super::{ConfigError, reject, to_duration};
use crate::config::ClusterConfig;
use crate::config::cluster::{
    BudgetConfig, Connections, ENVOY_DEFAULT_MAX, ENVOY_DEFAULT_MAX_RETRIES, Keepalive, Limits, OutlierPolicy,
    SlowStart, UpstreamProtocol,
};

/// Envoy's defaults where a field is unset.
const ENVOY_DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ENVOY_DEFAULT_PANIC_THRESHOLD: f64 = 50.0;
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

impl TryFrom<&Cluster> for ClusterConfig {
    type Error = ConfigError;

    fn try_from(c: &Cluster) -> Result<Self, ConfigError> {
        let err = |m: String| reject("cluster", &c.name, m);
        let of_type = |kind: cluster::DiscoveryType| matches!(c.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::Type(t)) if t == kind as i32);
        let original_destination = of_type(cluster::DiscoveryType::OriginalDst);
        if !of_type(cluster::DiscoveryType::Eds) && !original_destination {
            return Err(err("only EDS and ORIGINAL_DST clusters are supported".into()));
        }
        let connect_timeout = match &c.connect_timeout {
            Some(d) => to_duration(d).map_err(err)?,
            None => ENVOY_DEFAULT_CONNECT_TIMEOUT,
        };
        let eds_name = c.eds_cluster_config.as_ref().map(|e| e.service_name.clone()).unwrap_or_default();
        let eds_name = match (original_destination, eds_name.is_empty()) {
            (true, _) => String::new(),
            (false, true) => c.name.clone(),
            (false, false) => eds_name,
        };
        let (limits, retry_budget) = breakers(c).map_err(err)?;
        let lb = if original_destination { LbAlgorithm::PeakEwma } else { lb_algorithm(c).map_err(err)? };
        let panic_threshold = c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.healthy_panic_threshold.as_ref())
            .map_or(ENVOY_DEFAULT_PANIC_THRESHOLD, |p| p.value.clamp(0.0, 100.0));
        let (mtls, origination) = super::tls::transport(c).map_err(err)?;
        Ok(Self {
            name: c.name.clone(),
            lb,
            hash_size: hash_size(c, lb).map_err(err)?,
            connect_timeout,
            eds_name,
            limits,
            retry_budget,
            outlier: c.outlier_detection.as_ref().map(outlier).transpose().map_err(err)?,
            panic_threshold,
            connections: connections(c).map_err(err)?,
            slow_start: c
                .load_balancing_policy
                .as_ref()
                .and_then(LbAlgorithm::slow_start)
                .map(|s| slow_start(&s))
                .transpose()
                .map_err(err)?,
            locality_weighted: c.load_balancing_policy.as_ref().is_some_and(weft_xds::lb::is_locality_weighted),
            mtls,
            origination,
            original_destination,
        })
    }
}

fn upstream_protocol(options: Option<&UpstreamProtocolOptions>) -> Result<UpstreamProtocol, String> {
    use explicit_http_config::ProtocolConfig;
    match options {
        None | Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => Ok(UpstreamProtocol::Client),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => match &explicit.protocol_config {
            Some(ProtocolConfig::HttpProtocolOptions(_)) => Ok(UpstreamProtocol::Http1),
            Some(ProtocolConfig::Http2ProtocolOptions(_)) => Ok(UpstreamProtocol::Http2),
            _ => Err("explicit upstream protocols other than HTTP/1.1 and HTTP/2 are not supported".into()),
        },
        Some(_) => Err("only the client's or an explicit upstream protocol is supported".into()),
    }
}

/// Envoy's defaults where unset: aggression 1, a 10 % minimum weight.
fn slow_start(s: &SlowStartConfig) -> Result<SlowStart, String> {
    let window = s.slow_start_window.as_ref().ok_or("slow start needs a window")?;
    let aggression = s.aggression.as_ref().map_or(1.0, |a| a.default_value);
    if !(aggression.is_finite() && aggression > 0.0) {
        return Err(format!("slow start aggression {aggression} must be greater than 0"));
    }
    let min_weight_percent = s.min_weight_percent.as_ref().map_or(10.0, |p| p.value.clamp(0.0, 100.0));
    Ok(SlowStart { window: to_duration(window)?, aggression, min_weight_percent })
}

/// Consistent hashing's table size: from the policy list, else from the legacy `lb_config`, else the algorithm's
/// default. A Maglev table must be a prime up to Envoy's largest (a stride through any other size can miss
/// slots); a ring no larger than Envoy's largest.
fn hash_size(c: &Cluster, lb: LbAlgorithm) -> Result<u64, String> {
    use cluster::LbConfig;
    let legacy = || match &c.lb_config {
        Some(LbConfig::RingHashLbConfig(ring)) => ring.minimum_ring_size.map(|s| s.value),
        Some(LbConfig::MaglevLbConfig(maglev)) => maglev.table_size.map(|s| s.value),
        _ => None,
    };
    let set = c.load_balancing_policy.as_ref().and_then(LbAlgorithm::hash_table_size).or_else(legacy);
    match lb {
        LbAlgorithm::Maglev => {
            let size = set.unwrap_or(lb::DEFAULT_MAGLEV_TABLE_SIZE);
            if !lb::is_valid_maglev_table_size(size) {
                return Err(format!("Maglev table size {size} is not a prime up to {}", lb::MAX_MAGLEV_TABLE_SIZE));
            }
            Ok(size)
        }
        _ => {
            let size = set.unwrap_or(lb::DEFAULT_RING_SIZE);
            if size > lb::MAX_RING_SIZE {
                return Err(format!("ring size {size} is over {}", lb::MAX_RING_SIZE));
            }
            Ok(size)
        }
    }
}

fn lb_algorithm(c: &Cluster) -> Result<LbAlgorithm, String> {
    match &c.load_balancing_policy {
        Some(policy) => LbAlgorithm::from_policy(policy)
            .ok_or_else(|| "none of the load_balancing_policy entries is supported".into()),
        None => match cluster::LbPolicy::try_from(c.lb_policy) {
            Ok(cluster::LbPolicy::RoundRobin) => Ok(LbAlgorithm::RoundRobin),
            Ok(cluster::LbPolicy::LeastRequest) => Ok(LbAlgorithm::LeastRequest),
            Ok(cluster::LbPolicy::Random) => Ok(LbAlgorithm::Random),
            Ok(cluster::LbPolicy::RingHash) => Ok(LbAlgorithm::RingHash),
            Ok(cluster::LbPolicy::Maglev) => Ok(LbAlgorithm::Maglev),
            other => Err(format!("lb_policy {other:?} is not supported")),
        },
    }
}

/// The default-priority thresholds (the only priority Weft routes with); Envoy's defaults when absent.
fn breakers(c: &Cluster) -> Result<(Limits, Option<BudgetConfig>), String> {
    let Some(breakers) = &c.circuit_breakers else { return Ok((Limits::default(), None)) };
    if !breakers.per_host_thresholds.is_empty() {
        return Err("per-host circuit breakers are not supported".into());
    }
    let default = breakers.thresholds.iter().find(|t| t.priority == RoutingPriority::Default as i32);
    let Some(t) = default else { return Ok((Limits::default(), None)) };
    let value = |v: &Option<envoy_types::pb::google::protobuf::UInt32Value>, default: u32| {
        v.as_ref().map_or(default, |v| v.value)
    };
    let limits = Limits {
        max_connections: value(&t.max_connections, ENVOY_DEFAULT_MAX),
        max_pending_requests: value(&t.max_pending_requests, ENVOY_DEFAULT_MAX),
        max_requests: value(&t.max_requests, ENVOY_DEFAULT_MAX),
        max_retries: value(&t.max_retries, ENVOY_DEFAULT_MAX_RETRIES),
    };
    Ok((limits, t.retry_budget.as_ref().map(budget)))
}

/// Envoy's retry budget defaults: 20%, at least 3.
fn budget(b: &circuit_breakers::thresholds::RetryBudget) -> BudgetConfig {
    BudgetConfig {
        percent: b.budget_percent.as_ref().map_or(20.0, |p| p.value.clamp(0.0, 100.0)),
        min_concurrency: b.min_retry_concurrency.as_ref().map_or(3, |m| m.value),
    }
}

/// Consecutive-error ejection, with Envoy's defaults (5 5xx enforced, 5 gateway errors not enforced, 10 s, 30 s,
/// 10%, at most 300 s); success-rate and failure-percentage ejection must be off.
fn outlier(o: &OutlierDetection) -> Result<OutlierPolicy, String> {
    let value = |v: &Option<envoy_types::pb::google::protobuf::UInt32Value>, default: u32| {
        v.as_ref().map_or(default, |v| v.value)
    };
    if value(&o.enforcing_success_rate, 100) > 0 || value(&o.enforcing_failure_percentage, 0) > 0 {
        return Err("success-rate and failure-percentage outlier detection are not supported".into());
    }
    // A count ejects when positive and enforced.
    let ejecting = |count: u32, enforcing: u32| (count > 0 && enforcing > 0).then_some(count);
    let split = o.split_external_local_origin_errors;
    let duration = |d: &Option<envoy_types::pb::google::protobuf::Duration>, default: Duration| {
        d.as_ref().map_or(Ok(default), to_duration)
    };
    let base = duration(&o.base_ejection_time, Duration::from_secs(30))?;
    Ok(OutlierPolicy {
        consecutive_5xx: ejecting(value(&o.consecutive_5xx, 5), value(&o.enforcing_consecutive_5xx, 100)),
        consecutive_gateway: ejecting(
            value(&o.consecutive_gateway_failure, 5),
            value(&o.enforcing_consecutive_gateway_failure, 0),
        ),
        consecutive_local_origin: ejecting(
            value(&o.consecutive_local_origin_failure, 5),
            value(&o.enforcing_consecutive_local_origin_failure, 100),
        )
        .filter(|_| split),
        split_local_origin: split,
        interval: duration(&o.interval, Duration::from_secs(10))?,
        base_ejection_time: base,
        max_ejection_time: duration(&o.max_ejection_time, Duration::from_secs(300))?.max(base),
        max_ejection_percent: value(&o.max_ejection_percent, 10).min(100),
    })
}

fn connections(c: &Cluster) -> Result<Connections, String> {
    let keepalive = c.upstream_connection_options.as_ref().and_then(|o| o.tcp_keepalive.as_ref()).map(|k| Keepalive {
        probes: k.keepalive_probes.as_ref().map(|p| p.value),
        time: k.keepalive_time.as_ref().map(|t| Duration::from_secs(u64::from(t.value))),
        interval: k.keepalive_interval.as_ref().map(|i| Duration::from_secs(u64::from(i.value))),
    });
    let mut connections = Connections { keepalive, ..Connections::default() };
    for (name, any) in &c.typed_extension_protocol_options {
        if name != HTTP_PROTOCOL_OPTIONS {
            return Err(format!("protocol options {name:?} are not supported"));
        }
        let options: HttpProtocolOptions = weft_xds::unpack(any).map_err(|e| e.to_string())?;
        let common = options.common_http_protocol_options.unwrap_or_default();
        connections.idle_timeout = common.idle_timeout.as_ref().map(to_duration).transpose()?;
        connections.max_duration = common.max_connection_duration.as_ref().map(to_duration).transpose()?;
        // Envoy: 0 is as unset, no limit.
        connections.max_requests = common.max_requests_per_connection.map(|n| n.value).filter(|n| *n > 0);
        connections.protocol = upstream_protocol(options.upstream_protocol_options.as_ref())?;
        connections.max_streams = max_streams(options.upstream_protocol_options.as_ref())?;
    }
    Ok(connections)
}

/// Envoy's largest stream limit, its default: no limit of the proxy's own.
const ENVOY_MAX_STREAMS: u32 = 2_147_483_647;

/// The HTTP/2 stream limit per connection, from the HTTP/2 options of the protocol config (explicit HTTP/2, or the
/// client's protocol when it is HTTP/2); 1 to 2^31-1 as Envoy validates it, the largest being no limit.
fn max_streams(options: Option<&UpstreamProtocolOptions>) -> Result<Option<u32>, String> {
    use explicit_http_config::ProtocolConfig;
    let http2 = match options {
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(client)) => client.http2_protocol_options.as_ref(),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => match &explicit.protocol_config {
            Some(ProtocolConfig::Http2ProtocolOptions(http2)) => Some(http2),
            _ => None,
        },
        _ => None,
    };
    match http2.and_then(|o| o.max_concurrent_streams.as_ref()).map(|n| n.value) {
        None | Some(ENVOY_MAX_STREAMS) => Ok(None),
        Some(n @ 1..ENVOY_MAX_STREAMS) => Ok(Some(n)),
        Some(n) => Err(format!("max_concurrent_streams {n} is out of range 1-{ENVOY_MAX_STREAMS}")),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{LbConfig, MaglevLbConfig};
    use envoy_types::pb::google::protobuf::UInt64Value;

    use super::*;

    fn maglev(lb_config: Option<LbConfig>) -> Cluster {
        Cluster {
            name: "c".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
            lb_policy: cluster::LbPolicy::Maglev as i32,
            lb_config,
            ..Default::default()
        }
    }

    #[test]
    fn a_maglev_table_is_a_prime_envoy_accepts() {
        let default = ClusterConfig::try_from(&maglev(None)).unwrap();
        assert_eq!((default.lb, default.hash_size), (LbAlgorithm::Maglev, lb::DEFAULT_MAGLEV_TABLE_SIZE));
        let sized = |size| {
            maglev(Some(LbConfig::MaglevLbConfig(MaglevLbConfig { table_size: Some(UInt64Value { value: size }) })))
        };
        assert_eq!(ClusterConfig::try_from(&sized(251)).unwrap().hash_size, 251);
        for bad in [1024, 5_000_012, u64::MAX] {
            let err = ClusterConfig::try_from(&sized(bad)).unwrap_err().to_string();
            assert!(err.contains("is not a prime"), "{bad}: {err}");
        }
        let policy = Cluster { load_balancing_policy: Some(lb::maglev_policy(4)), ..maglev(None) };
        assert!(ClusterConfig::try_from(&policy).is_err(), "the policy list is checked too");
    }

    /// Envoy's stream limit per HTTP/2 connection, from explicit HTTP/2 options or the client's protocol's.
    #[test]
    fn max_concurrent_streams_is_read_from_either_http2_options_and_checked() {
        use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
        use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
            ExplicitHttpConfig, UseDownstreamHttpConfig, explicit_http_config::ProtocolConfig,
        };
        use envoy_types::pb::google::protobuf::UInt32Value;
        let http2 = |n: Option<u32>| Http2ProtocolOptions {
            max_concurrent_streams: n.map(|value| UInt32Value { value }),
            ..Default::default()
        };
        let explicit = |n| {
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(http2(n))),
            })
        };
        let client = |n| {
            UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
                http2_protocol_options: Some(http2(n)),
                ..Default::default()
            })
        };
        assert_eq!(max_streams(Some(&explicit(Some(8)))), Ok(Some(8)));
        assert_eq!(max_streams(Some(&client(Some(8)))), Ok(Some(8)));
        assert_eq!(max_streams(Some(&client(None))), Ok(None));
        assert_eq!(max_streams(Some(&explicit(Some(ENVOY_MAX_STREAMS)))), Ok(None), "Envoy's default");
        assert_eq!(max_streams(None), Ok(None));
        let refused = max_streams(Some(&explicit(Some(0)))).unwrap_err();
        assert!(refused.contains("out of range 1-2147483647"), "{refused}");
    }
}
