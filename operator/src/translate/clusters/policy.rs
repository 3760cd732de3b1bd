//! A DestinationRule's traffic policy as Envoy cluster fields, as Istio writes them: the connection pool as
//! circuit breaker thresholds (every limit written, unset ones at the maximum, so Envoy's low defaults never
//! apply), the retry budget, outlier detection (success-rate ejection off), the panic threshold, the upstream
//! idle timeout.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::UpstreamConnectionOptions;
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, circuit_breakers::Thresholds,
    circuit_breakers::thresholds::RetryBudget as EnvoyBudget, cluster::CommonLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions, TcpKeepalive,
};
use envoy_types::pb::envoy::config::route::v3::route_action;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{HttpProtocolOptions, http_protocol_options};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::TrafficPolicy;

use crate::translate::port_protocol::PortProtocol;
use weft_crds::destination_rule::policy::ConsistentHash;
use weft_crds::destination_rule::{ConnectionPoolSettings, OutlierDetection, RetryBudget};
use weft_crds::duration::parse_duration;
use weft_xds::{ClusterName, pack};

use crate::index::{DestinationRuleModel, Snapshot};

use super::super::duration;

/// Where Envoy reads upstream HTTP options (`typed_extension_protocol_options` key).
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Weft's retry budget where a DestinationRule sets none: Envoy's `retry_budget` defaults. (Istio leaves retries
/// unbounded then; Weft does not let retries multiply load during an outage.)
const DEFAULT_BUDGET_PERCENT: f64 = 20.0;
const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

/// A subset's policy over its rule's, as Istio merges them: each setting the subset has replaces the rule's whole
/// (load balancer, connection pool, outlier detection, retry budget, TLS); the others are the rule's.
fn merge(subset: &TrafficPolicy, rule: Option<&TrafficPolicy>) -> TrafficPolicy {
    let Some(rule) = rule else { return subset.clone() };
    TrafficPolicy {
        load_balancer: subset.load_balancer.clone().or_else(|| rule.load_balancer.clone()),
        connection_pool: subset.connection_pool.clone().or_else(|| rule.connection_pool.clone()),
        outlier_detection: subset.outlier_detection.clone().or_else(|| rule.outlier_detection.clone()),
        retry_budget: subset.retry_budget.clone().or_else(|| rule.retry_budget.clone()),
        tls: subset.tls.clone().or_else(|| rule.tls.clone()),
        port_level_settings: if subset.port_level_settings.is_empty() {
            rule.port_level_settings.clone()
        } else {
            subset.port_level_settings.clone()
        },
        ..subset.clone()
    }
}

/// The policy for one port: the settings of its `portLevelSettings` entry replace the policy's, as Istio applies
/// them after merging a subset's.
fn for_port(policy: Option<TrafficPolicy>, port: u16) -> Option<TrafficPolicy> {
    let mut policy = policy?;
    let level =
        policy.port_level_settings.iter().find(|l| l.port.is_some_and(|p| p.number == u32::from(port))).cloned();
    if let Some(level) = level {
        policy.load_balancer = level.load_balancer.or(policy.load_balancer);
        policy.connection_pool = level.connection_pool.or(policy.connection_pool);
        policy.outlier_detection = level.outlier_detection.or(policy.outlier_detection);
        policy.tls = level.tls.or(policy.tls);
    }
    Some(policy)
}

/// The route hash policies for requests to `cluster` (`outbound|PORT|SUBSET|HOST`) from proxies in `namespace`:
/// from the consistent hashing of the effective policy of the DestinationRule they apply, as Istio puts them on
/// routes; empty without one.
pub(in crate::translate) fn hash_policy(
    snapshot: &Snapshot,
    cluster: &str,
    namespace: &str,
) -> Vec<route_action::HashPolicy> {
    let Some(name) = ClusterName::parse(cluster) else { return Vec::new() };
    let Some(rule) = snapshot.destination_rule_for(&name.host, namespace) else { return Vec::new() };
    let policy = effective_policy(rule, &name);
    let Some(hash) = policy.as_ref().and_then(consistent_hash) else { return Vec::new() };
    use route_action::hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter};
    let specifier = if let Some(header) = &hash.http_header_name {
        PolicySpecifier::Header(Header { header_name: header.to_ascii_lowercase(), ..Default::default() })
    } else if let Some(cookie) = &hash.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone(),
            path: cookie.path.clone().unwrap_or_default(),
            ttl: cookie.ttl.as_deref().and_then(|t| parse_duration(t).ok()).map(duration),
            ..Default::default()
        })
    } else if let Some(query) = &hash.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: query.clone() })
    } else if hash.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else {
        return Vec::new();
    };
    vec![route_action::HashPolicy { policy_specifier: Some(specifier), ..Default::default() }]
}

/// The policy a cluster gets: its subset's own (`None` for the whole Service) merged over the rule's, then its
/// port's settings.
pub(super) fn cluster_policy(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> Option<TrafficPolicy> {
    let merged = match subset {
        Some(own) => Some(merge(own, rule)),
        None => rule.cloned(),
    };
    for_port(merged, port)
}

/// The policy `rule` sets for the cluster `name`.
pub(super) fn effective_policy(rule: &DestinationRuleModel, name: &ClusterName) -> Option<TrafficPolicy> {
    let subset = rule.spec.subsets.iter().find(|s| s.name == name.subset).and_then(|s| s.traffic_policy.as_ref());
    cluster_policy(rule.spec.traffic_policy.as_ref(), subset, name.port)
}

/// The idle timeout of TCP connections to `cluster` (`connectionPool.tcp.idleTimeout`; `0s`: none), from the
/// DestinationRule of proxies without rules of their own: tcp and tls listeners are shared by every proxy.
pub(in crate::translate) fn tcp_idle_timeout(snapshot: &Snapshot, cluster: &str) -> Option<Duration> {
    let name = ClusterName::parse(cluster)?;
    let rule = snapshot.default_destination_rule(&name.host)?;
    let policy = effective_policy(rule, &name)?;
    let text = policy.connection_pool?.tcp?.idle_timeout?;
    parse_duration(&text).ok()
}

/// The policy's consistent hashing, if it balances that way.
pub(super) fn consistent_hash(policy: &TrafficPolicy) -> Option<&ConsistentHash> {
    policy.load_balancer.as_ref()?.consistent_hash.as_ref()
}

/// Sets the policy's fields on `cluster`.
pub(super) fn apply(cluster: &mut Cluster, policy: Option<&TrafficPolicy>, port: PortProtocol) {
    cluster.circuit_breakers = Some(circuit_breakers(policy));
    let pool = policy.and_then(|p| p.connection_pool.as_ref());
    let connect = pool.and_then(|p| p.tcp.as_ref()).and_then(|t| t.connect_timeout.as_deref());
    if let Some(timeout) = connect.and_then(|t| parse_duration(t).ok()) {
        cluster.connect_timeout = Some(duration(timeout));
    }
    if let Some(keepalive) = pool.and_then(|p| p.tcp.as_ref()).and_then(|t| t.tcp_keepalive.as_ref()) {
        cluster.upstream_connection_options =
            Some(UpstreamConnectionOptions { tcp_keepalive: Some(tcp_keepalive(keepalive)), ..Default::default() });
    }
    if let Some(options) = pool.and_then(|pool| http_options(pool, port)) {
        cluster.typed_extension_protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), pack(&options));
    }
    if let Some(outlier) = policy.and_then(|p| p.outlier_detection.as_ref()) {
        cluster.outlier_detection = Some(outlier_detection(outlier));
        // Istio: the panic threshold is `minHealthPercent`, 0 (never panic) when unset.
        let threshold = f64::from(outlier.min_health_percent.unwrap_or(0).max(0));
        cluster.common_lb_config =
            Some(CommonLbConfig { healthy_panic_threshold: Some(Percent { value: threshold }), ..Default::default() });
    }
}

fn circuit_breakers(policy: Option<&TrafficPolicy>) -> CircuitBreakers {
    let pool = policy.and_then(|p| p.connection_pool.as_ref());
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    // Istio: unset or 0 is no limit (the largest value), never Envoy's defaults of 1024 and 3.
    let limit =
        |value: Option<i32>| Some(UInt32Value { value: value.filter(|v| *v > 0).map_or(u32::MAX, |v| v as u32) });
    let budget = policy.and_then(|p| p.retry_budget.as_ref());
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_retries: limit(http.and_then(|h| h.max_retries)),
            retry_budget: Some(retry_budget(budget)),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn retry_budget(budget: Option<&RetryBudget>) -> EnvoyBudget {
    let percent = budget.and_then(|b| b.percent).map_or(DEFAULT_BUDGET_PERCENT, |p| p.value);
    let min = budget.and_then(|b| b.min_retry_concurrency).unwrap_or(DEFAULT_MIN_RETRY_CONCURRENCY);
    EnvoyBudget {
        budget_percent: Some(Percent { value: percent }),
        min_retry_concurrency: Some(UInt32Value { value: min }),
        ..Default::default()
    }
}

/// As Istio's translation: each consecutive-error ejection enforced at 100% when its count is positive, success
/// rate ejection off; the deprecated `consecutiveErrors` counts gateway errors.
fn outlier_detection(o: &OutlierDetection) -> EnvoyOutlier {
    let count = |value: u32| Some(UInt32Value { value });
    let enforcing = |value: u32| Some(UInt32Value { value: if value > 0 { 100 } else { 0 } });
    let gateway = o.consecutive_gateway_errors.or(o.consecutive_errors.filter(|e| *e > 0).map(|e| e as u32));
    let mut out = EnvoyOutlier { enforcing_success_rate: count(0), ..Default::default() };
    if let Some(n) = o.consecutive_5xx_errors {
        (out.consecutive_5xx, out.enforcing_consecutive_5xx) = (count(n), enforcing(n));
    }
    if let Some(n) = gateway {
        (out.consecutive_gateway_failure, out.enforcing_consecutive_gateway_failure) = (count(n), enforcing(n));
    }
    if o.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(n) = o.consecutive_local_origin_failures.filter(|n| *n > 0) {
            (out.consecutive_local_origin_failure, out.enforcing_consecutive_local_origin_failure) =
                (count(n), enforcing(n));
        }
        out.enforcing_local_origin_success_rate = count(0);
    }
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| parse_duration(t).ok()).map(duration);
    out.interval = parse(&o.interval);
    out.base_ejection_time = parse(&o.base_ejection_time);
    if let Some(percent) = o.max_ejection_percent.filter(|p| *p > 0) {
        out.max_ejection_percent = count(percent as u32);
    }
    out
}

/// Envoy counts keepalive times in whole seconds.
fn tcp_keepalive(k: &weft_crds::destination_rule::policy::TcpKeepalive) -> TcpKeepalive {
    let seconds = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| parse_duration(t).ok())
            .map(|d| UInt32Value { value: d.as_secs().min(u64::from(u32::MAX)) as u32 })
    };
    TcpKeepalive {
        keepalive_probes: k.probes.map(|value| UInt32Value { value }),
        keepalive_time: seconds(&k.time),
        keepalive_interval: seconds(&k.interval),
    }
}

/// The pool's per-connection settings (`http.idleTimeout`, `http.maxRequestsPerConnection`,
/// `tcp.maxConnectionDuration`) and the upstream protocol as Envoy's upstream HTTP protocol options; `None` when
/// none is set. The protocol: the client's with `useClientProtocol: true`; HTTP/2 with `h2UpgradePolicy: UPGRADE`
/// (for a port not declared HTTP/2 already); with `useClientProtocol: false`, the one the port's name declares
/// (Istio's protocol selection), the client's when it declares none; unset, the client's (Weft's default).
/// `http.maxConcurrentStreams` goes in the HTTP/2 options of whichever protocol config: also for the client's
/// protocol and `h2UpgradePolicy: UPGRADE`, where Istio's translation drops it (it sets it on ports declared
/// HTTP/2 only).
fn http_options(pool: &ConnectionPoolSettings, port: PortProtocol) -> Option<HttpProtocolOptions> {
    let parsed = |text: Option<&String>| text.and_then(|t| parse_duration(t).ok()).map(duration);
    let http = pool.http.as_ref();
    let common = CommonHttpOptions {
        idle_timeout: parsed(http.and_then(|h| h.idle_timeout.as_ref())),
        // Istio: 0 means no limit, as unset.
        max_requests_per_connection: http
            .and_then(|h| h.max_requests_per_connection)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(|value| UInt32Value { value }),
        max_connection_duration: parsed(pool.tcp.as_ref().and_then(|t| t.max_connection_duration.as_ref())),
        ..Default::default()
    };
    // Istio: `useClientProtocol: true` makes the upgrade policy ineffective.
    let use_client = http.and_then(|h| h.use_client_protocol);
    let upgrade = http.is_some_and(|h| h.h2_upgrade_policy.as_deref() == Some("UPGRADE")) && use_client != Some(true);
    let declared = match use_client {
        Some(false) if upgrade => PortProtocol::Http2,
        Some(false) => port,
        _ if upgrade => PortProtocol::Http2,
        _ => PortProtocol::Undeclared,
    };
    // Istio: 0 means the default, no limit of the client's own.
    let max_streams =
        http.and_then(|h| h.max_concurrent_streams).and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
    if common == CommonHttpOptions::default() && declared == PortProtocol::Undeclared && max_streams.is_none() {
        return None;
    }
    use http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig, explicit_http_config::ProtocolConfig,
    };
    let explicit =
        |config| UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig { protocol_config: Some(config) });
    let http2 = || Http2ProtocolOptions {
        max_concurrent_streams: max_streams.map(|value| UInt32Value { value }),
        ..Default::default()
    };
    let protocol = match declared {
        PortProtocol::Http2 => explicit(ProtocolConfig::Http2ProtocolOptions(http2())),
        PortProtocol::Http1 => explicit(ProtocolConfig::HttpProtocolOptions(Default::default())),
        PortProtocol::Undeclared => UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
            http2_protocol_options: max_streams.map(|_| http2()),
            ..Default::default()
        }),
    };
    Some(HttpProtocolOptions {
        common_http_protocol_options: Some(common),
        upstream_protocol_options: Some(protocol),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    };

    /// The upstream protocol a pool says for a port named `port`: `h1`, `h2`, `client`, or `-` (no options).
    fn protocol(pool: &str, port: &str) -> &'static str {
        let pool: ConnectionPoolSettings = serde_saphyr::from_str(pool).unwrap();
        match http_options(&pool, PortProtocol::of(port)).and_then(|o| o.upstream_protocol_options) {
            None => "-",
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => "client",
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match e.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(_)) => "h2",
                _ => "h1",
            },
            Some(_) => "other",
        }
    }

    #[test]
    fn use_client_protocol_false_takes_the_port_s_declared_protocol() {
        let fixed = "http: {useClientProtocol: false}";
        assert_eq!(protocol(fixed, "grpc"), "h2");
        assert_eq!(protocol(fixed, "http2-api"), "h2");
        assert_eq!(protocol(fixed, "http-web"), "h1");
        assert_eq!(protocol(fixed, "db"), "-", "a port declaring nothing: the client's, as without the field");
        assert_eq!(protocol("http: {useClientProtocol: false, h2UpgradePolicy: UPGRADE}", "http"), "h2");
        assert_eq!(protocol("http: {useClientProtocol: true, h2UpgradePolicy: UPGRADE}", "http"), "-");
        assert_eq!(protocol("http: {h2UpgradePolicy: UPGRADE}", "http"), "h2");
        assert_eq!(protocol("http: {idleTimeout: 1s}", "grpc"), "client", "unset: the client's (Weft's default)");
    }

    /// The stream limit per HTTP/2 connection, wherever the upstream protocol is said; `0` is no limit.
    #[test]
    fn max_concurrent_streams_goes_in_the_http2_options() {
        let streams = |pool: &str, port: &str| -> Option<u32> {
            let pool: ConnectionPoolSettings = serde_saphyr::from_str(pool).unwrap();
            let options = http_options(&pool, PortProtocol::of(port))?.upstream_protocol_options?;
            let http2 = match options {
                UpstreamProtocolOptions::UseDownstreamProtocolConfig(client) => client.http2_protocol_options,
                UpstreamProtocolOptions::ExplicitHttpConfig(e) => match e.protocol_config {
                    Some(ProtocolConfig::Http2ProtocolOptions(h2)) => Some(h2),
                    _ => None,
                },
                _ => None,
            };
            http2?.max_concurrent_streams.map(|n| n.value)
        };
        assert_eq!(streams("http: {maxConcurrentStreams: 8}", "web"), Some(8), "the client's protocol");
        assert_eq!(streams("http: {maxConcurrentStreams: 8, h2UpgradePolicy: UPGRADE}", "http"), Some(8));
        assert_eq!(streams("http: {maxConcurrentStreams: 8, useClientProtocol: false}", "grpc"), Some(8));
        assert_eq!(streams("http: {maxConcurrentStreams: 0}", "web"), None);
        assert_eq!(protocol("http: {maxConcurrentStreams: 0}", "web"), "-", "no options at all");
    }
}
