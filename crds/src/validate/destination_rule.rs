//! Checks of a DestinationRule: its host (a Service or a wildcard), `exportTo`, `workloadSelector`,
//! subsets, and each traffic policy (the rule's and each subset's).

use std::collections::BTreeSet;

use super::client_tls::check_client_tls;
use super::labels::check_labels;
use super::{check_duration, check_export_entries, check_percentage, check_rule_host, is_dns_label, not_supported};
use crate::destination_rule::locality::{self, LocalityLbSetting};
use crate::destination_rule::policy::ConsistentHash;
use crate::destination_rule::{
    ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection, PortTrafficPolicy, RetryBudget, SimpleLb,
    TrafficPolicy,
};
use crate::field_path::Path;
use crate::{DestinationRuleSpec, FieldError};

/// Every problem in a DestinationRule spec; empty when it is valid.
pub fn validate_destination_rule(spec: &DestinationRuleSpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    check_rule_host(&root.field("host"), &spec.host, &mut errors);
    if let Some(policy) = &spec.traffic_policy {
        check_policy(&root.field("trafficPolicy"), policy, &mut errors);
    }
    let mut seen = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = root.field("subsets").index(i);
        if subset.name.is_empty() {
            errors.push(path.field("name").error("subset name is required"));
        } else if !is_dns_label(&subset.name) {
            errors.push(path.field("name").error(format!(
                "subset name {:?} must be a DNS label (lower-case letters, digits and '-')",
                subset.name
            )));
        } else if !seen.insert(subset.name.as_str()) {
            errors.push(path.field("name").error(format!("duplicate subset name {:?}", subset.name)));
        }
        check_labels(&path.field("labels"), &subset.labels, &mut errors);
        if let Some(policy) = &subset.traffic_policy {
            check_policy(&path.field("trafficPolicy"), policy, &mut errors);
        }
    }
    check_export_entries(&root.field("exportTo"), &spec.export_to, &mut errors);
    if let Some(selector) = &spec.workload_selector {
        check_labels(&root.field("workloadSelector").field("matchLabels"), &selector.match_labels, &mut errors);
    }
    if spec.workload_selector.is_none() {
        for (path, _) in spec.tls_settings().into_iter().filter(|(_, tls)| tls.credential_name.is_some()) {
            errors.push(path.field("credentialName").error(
                "credentialName applies at sidecars only when the DestinationRule has a workloadSelector (Istio's \
                 rule): the Secret is read in the rule's namespace, for the pods it selects",
            ));
        }
    }
    errors
}

fn check_policy(path: &Path, policy: &TrafficPolicy, errors: &mut Vec<FieldError>) {
    if let Some(lb) = &policy.load_balancer {
        let lb_path = path.field("loadBalancer");
        if let Some(hash) = &lb.consistent_hash {
            check_hash(&lb_path.field("consistentHash"), hash, errors);
            if lb.simple.is_some() {
                errors.push(lb_path.error("only one of simple or consistentHash may be set"));
            }
        }
        if let Some(locality) = &lb.locality_lb_setting {
            check_locality(&lb_path.field("localityLbSetting"), locality, errors);
        }
        check_warmup(&lb_path, lb, errors);
    }
    if let Some(pool) = &policy.connection_pool {
        check_pool(&path.field("connectionPool"), pool, errors);
    }
    if let Some(outlier) = &policy.outlier_detection {
        check_outlier(&path.field("outlierDetection"), outlier, errors);
    }
    if let Some(budget) = &policy.retry_budget {
        check_budget(&path.field("retryBudget"), budget, errors);
    }
    if let Some(tls) = &policy.tls {
        check_client_tls(&path.field("tls"), tls, errors);
    }
    let mut ports = BTreeSet::new();
    for (i, level) in policy.port_level_settings.iter().enumerate() {
        check_port_level(&path.field("portLevelSettings").index(i), level, &mut ports, errors);
    }
    for (field, set) in [("tunnel", policy.tunnel.is_some()), ("proxyProtocol", policy.proxy_protocol.is_some())] {
        if set {
            errors.push(not_supported(&path.field(field), field));
        }
    }
}

fn check_hash(path: &Path, hash: &ConsistentHash, errors: &mut Vec<FieldError>) {
    let keys = [
        hash.http_header_name.is_some(),
        hash.http_cookie.is_some(),
        hash.use_source_ip.is_some(),
        hash.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() != 1 {
        errors.push(
            path.error("exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required"),
        );
    }
    if let Some(name) = &hash.http_header_name
        && super::http_header_name_is_invalid(name)
    {
        errors.push(path.field("httpHeaderName").error(format!("{name:?} is not a valid HTTP header name")));
    }
    if let Some(cookie) = &hash.http_cookie {
        if cookie.name.is_empty() {
            errors.push(path.field("httpCookie").field("name").error("a cookie name is required"));
        } else if super::http_header_name_is_invalid(&cookie.name) {
            // Cookie names are HTTP tokens, as header names are.
            errors.push(
                path.field("httpCookie").field("name").error(format!("{:?} is not a valid cookie name", cookie.name)),
            );
        }
        if let Some(ttl) = &cookie.ttl {
            super::check_duration(&path.field("httpCookie").field("ttl"), ttl, errors);
        }
        if let Some(cookie_path) = &cookie.path
            && (!cookie_path.starts_with('/') || cookie_path.bytes().any(|b| b == b';' || b.is_ascii_control()))
        {
            errors.push(path.field("httpCookie").field("path").error(format!("{cookie_path:?} is not a cookie path")));
        }
    }
    if hash.use_source_ip == Some(false) {
        errors.push(path.field("useSourceIp").error("useSourceIp: false names no key; set it true or use another key"));
    }
    if let Some(size) = hash.maglev.as_ref().and_then(|m| m.table_size)
        && !(is_prime(size) && size <= MAX_MAGLEV_TABLE_SIZE)
    {
        errors.push(
            path.field("maglev")
                .field("tableSize")
                .error(format!("{size} is not a prime up to {MAX_MAGLEV_TABLE_SIZE}")),
        );
    }
    if hash.maglev.is_some() && (hash.ring_hash.is_some() || hash.minimum_ring_size.is_some()) {
        errors.push(path.field("maglev").error("only one of ringHash (or minimumRingSize) and maglev may be set"));
    }
    let size = hash.ring_hash.as_ref().and_then(|r| r.minimum_ring_size).or(hash.minimum_ring_size);
    if size.is_some_and(|s| s == 0 || s > 8 * 1024 * 1024) {
        errors.push(path.field("ringHash").field("minimumRingSize").error("must be between 1 and 8388608"));
    }
}

/// Istio's (and Envoy's) largest Maglev table.
const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

/// Istio's warmup (Envoy's slow start), which only weighted round robin and least request balancers have.
fn check_warmup(path: &Path, lb: &LoadBalancerSettings, errors: &mut Vec<FieldError>) {
    if let Some(duration) = &lb.warmup_duration_secs {
        check_positive_duration(&path.field("warmupDurationSecs"), duration, errors);
        if lb.warmup.is_some() {
            errors.push(path.field("warmupDurationSecs").error("only one of warmup and warmupDurationSecs may be set"));
        }
    }
    if let Some(warmup) = &lb.warmup {
        let path = path.field("warmup");
        check_positive_duration(&path.field("duration"), &warmup.duration, errors);
        if let Some(percent) = warmup.minimum_percent {
            check_percentage(&path.field("minimumPercent"), percent, errors);
        }
        if warmup.aggression.is_some_and(|a| !(a.is_finite() && a > 0.0)) {
            errors.push(path.field("aggression").error("must be greater than 0"));
        }
    }
    let hashing = lb.consistent_hash.is_some() || lb.simple == Some(SimpleLb::Random);
    if lb.warmup_settings().is_some() && hashing {
        let field = if lb.warmup.is_some() { "warmup" } else { "warmupDurationSecs" };
        errors.push(path.field(field).error(
            "warmup needs a ROUND_ROBIN, LEAST_REQUEST (LEAST_CONN) or the default balancer, not RANDOM or consistentHash",
        ));
    }
}

fn check_port_level(path: &Path, level: &PortTrafficPolicy, seen: &mut BTreeSet<u32>, errors: &mut Vec<FieldError>) {
    match level.port.map(|p| p.number) {
        None => errors.push(path.field("port").error("a port is required")),
        Some(n) if !(1..=65535).contains(&n) => {
            errors.push(path.field("port").field("number").error(format!("port {n} is out of range 1-65535")));
        }
        Some(n) if !seen.insert(n) => errors.push(path.field("port").error(format!("port {n} has settings already"))),
        Some(_) => {}
    }
    // The same checks as the enclosing policy's, field by field.
    let as_policy = TrafficPolicy {
        load_balancer: level.load_balancer.clone(),
        connection_pool: level.connection_pool.clone(),
        outlier_detection: level.outlier_detection.clone(),
        tls: level.tls.clone(),
        ..TrafficPolicy::default()
    };
    check_policy(path, &as_policy, errors);
}

fn check_pool(path: &Path, pool: &ConnectionPoolSettings, errors: &mut Vec<FieldError>) {
    if let Some(tcp) = &pool.tcp {
        let tcp_path = path.field("tcp");
        check_count(&tcp_path.field("maxConnections"), tcp.max_connections, errors);
        if let Some(timeout) = &tcp.connect_timeout {
            check_positive_duration(&tcp_path.field("connectTimeout"), timeout, errors);
        }
        if let Some(keepalive) = &tcp.tcp_keepalive {
            for (field, value) in [("time", &keepalive.time), ("interval", &keepalive.interval)] {
                if let Some(value) = value
                    && let Some(d) = check_duration(&tcp_path.field("tcpKeepalive").field(field), value, errors)
                    && d < std::time::Duration::from_secs(1)
                {
                    errors.push(tcp_path.field("tcpKeepalive").field(field).error("must be at least 1s"));
                }
            }
        }
        if let Some(duration) = &tcp.max_connection_duration {
            check_positive_duration(&tcp_path.field("maxConnectionDuration"), duration, errors);
        }
        if let Some(idle) = &tcp.idle_timeout {
            check_duration(&tcp_path.field("idleTimeout"), idle, errors);
        }
    }
    let Some(http) = &pool.http else { return };
    let http_path = path.field("http");
    check_count(&http_path.field("http1MaxPendingRequests"), http.http1_max_pending_requests, errors);
    check_count(&http_path.field("http2MaxRequests"), http.http2_max_requests, errors);
    check_count(&http_path.field("maxRetries"), http.max_retries, errors);
    if let Some(timeout) = &http.idle_timeout {
        check_positive_duration(&http_path.field("idleTimeout"), timeout, errors);
    }
    match http.h2_upgrade_policy.as_deref() {
        None | Some("DEFAULT" | "DO_NOT_UPGRADE" | "UPGRADE") => {}
        Some(other) => errors.push(
            http_path
                .field("h2UpgradePolicy")
                .error(format!("{other:?} is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE")),
        ),
    }
    check_count(&http_path.field("maxRequestsPerConnection"), http.max_requests_per_connection, errors);
    check_count(&http_path.field("maxConcurrentStreams"), http.max_concurrent_streams, errors);
}

fn check_outlier(path: &Path, outlier: &OutlierDetection, errors: &mut Vec<FieldError>) {
    check_count(&path.field("consecutiveErrors"), outlier.consecutive_errors, errors);
    for (field, value) in [("interval", &outlier.interval), ("baseEjectionTime", &outlier.base_ejection_time)] {
        if let Some(value) = value {
            check_positive_duration(&path.field(field), value, errors);
        }
    }
    for (field, value) in
        [("maxEjectionPercent", outlier.max_ejection_percent), ("minHealthPercent", outlier.min_health_percent)]
    {
        if let Some(value) = value
            && !(0..=100).contains(&value)
        {
            errors.push(path.field(field).error(format!("{value} is out of range 0-100")));
        }
    }
}

fn check_budget(path: &Path, budget: &RetryBudget, errors: &mut Vec<FieldError>) {
    if let Some(percent) = budget.percent {
        check_percentage(&path.field("percent").field("value"), percent.value, errors);
    }
    if budget.budget_interval.is_some() {
        errors.push(not_supported(&path.field("budgetInterval"), "a retry budget over an interval (budgetInterval)"));
    }
}

/// A count Istio takes as `int32`: not negative (`0` is Istio's "unset").
fn check_count(path: &Path, value: Option<i32>, errors: &mut Vec<FieldError>) {
    if let Some(value) = value
        && value < 0
    {
        errors.push(path.error(format!("{value} must not be negative")));
    }
}

fn check_positive_duration(path: &Path, text: &str, errors: &mut Vec<FieldError>) {
    if let Some(duration) = check_duration(path, text, errors)
        && duration < std::time::Duration::from_millis(1)
    {
        errors.push(path.error("must be at least 1ms"));
    }
}

/// Istio's checks of `localityLbSetting`: `distribute` or `failover`, patterns that parse, shares of 100,
/// failover between two different regions, `failoverPriority` on the topology labels.
fn check_locality(path: &Path, setting: &LocalityLbSetting, errors: &mut Vec<FieldError>) {
    if !setting.distribute.is_empty() && !setting.failover.is_empty() {
        errors.push(path.error("only one of distribute or failover may be set"));
    }
    for (i, rule) in setting.distribute.iter().enumerate() {
        let rule_path = path.field("distribute").index(i);
        if let Some(problem) = locality::pattern_problem(&rule.from) {
            errors.push(rule_path.field("from").error(problem));
        }
        for to in rule.to.keys().filter_map(|to| locality::pattern_problem(to)) {
            errors.push(rule_path.field("to").error(to));
        }
        let total: u64 = rule.to.values().map(|w| u64::from(*w)).sum();
        if total != 100 {
            errors.push(rule_path.field("to").error(format!("the shares add up to {total}, not 100")));
        }
    }
    for (i, failover) in setting.failover.iter().enumerate() {
        let failover_path = path.field("failover").index(i);
        for (field, region) in [("from", &failover.from), ("to", &failover.to)] {
            if region.is_empty() || region.contains('/') || region.contains('*') {
                errors.push(failover_path.field(field).error(format!("{region:?} is not a region")));
            }
        }
        if failover.from == failover.to {
            errors.push(failover_path.error("failover must be from one region to another"));
        }
    }
    let topology = [locality::REGION_LABEL, locality::ZONE_LABEL, locality::SUBZONE_LABEL, locality::NETWORK_LABEL];
    for (i, label) in setting.failover_priority.iter().enumerate() {
        if !topology.contains(&label.as_str()) {
            let message = format!(
                "{label:?}: failoverPriority on workload labels is not supported by Weft yet; use {}",
                topology.join(", ")
            );
            errors.push(path.field("failoverPriority").index(i).error(message));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::destination_rule_spec;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        destination_rule_spec(&spec).err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn istios_pool_outlier_and_budget_settings_are_accepted() {
        let errors = problems(
            r#"
host: "*.bank.svc.cluster.local"
exportTo: [".", web]
trafficPolicy:
  loadBalancer: {simple: LEAST_CONN}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {probes: 3, time: 10s, interval: 5s}, maxConnectionDuration: 10m}
    http: {http1MaxPendingRequests: 10, http2MaxRequests: 100, maxRetries: 3, idleTimeout: 30s, h2UpgradePolicy: DEFAULT, maxRequestsPerConnection: 10}
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 3
    consecutiveLocalOriginFailures: 2
    splitExternalLocalOriginErrors: true
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 100
    minHealthPercent: 50
  retryBudget: {percent: {value: 25}, minRetryConcurrency: 5}
  tls: {mode: DISABLE}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 1h, path: /}, ringHash: {minimumRingSize: 4096}}}
    connectionPool: {http: {http2MaxRequests: 20}}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 10}}}
"#,
        );
        assert_eq!(errors, Vec::<String>::new());
    }

    #[test]
    fn the_schema_knows_the_scope_fields() {
        assert_eq!(
            problems("host: reviews\nworkloadSelector: {matchLabels: {app: a}, other: 1}"),
            ["spec.workloadSelector.other: not supported by Weft",]
        );
    }

    #[test]
    fn what_weft_cannot_do_yet_is_refused_by_name_with_every_problem() {
        let errors = problems(
            r#"
host: reviews
trafficPolicy:
  loadBalancer: {simple: PASSTHROUGH, consistentHash: {useSourceIp: true}}
  connectionPool:
    tcp: {maxConnections: -1, connectTimeout: 0s, tcpKeepalive: {time: 500ms}}
    http: {h2UpgradePolicy: SOMETIMES, maxRequestsPerConnection: -1, maxConcurrentStreams: -8, useClientProtocol: false}
  outlierDetection: {maxEjectionPercent: 120, interval: soon}
  retryBudget: {percent: {value: 150}, budgetInterval: 1s}
  tls: {mode: ISTIO_MUTUAL, sni: reviews, caCertificates: /etc/ca.pem, credentialName: reviews-tls}
  portLevelSettings: [{port: {number: 80}, tls: {mode: MUTUAL, caCrl: /crl.pem}}, {port: {number: 80}, connectionPool: {http: {http2MaxRequests: -2}}}]
"#,
        );
        let expected = [
            "spec.trafficPolicy.loadBalancer: only one of simple or consistentHash may be set",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: -1 must not be negative",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout: must be at least 1ms",
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time: must be at least 1s",
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: \"SOMETIMES\" is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE",
            "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection: -1 must not be negative",
            "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: -8 must not be negative",
            "spec.trafficPolicy.outlierDetection.interval: duration \"soon\" does not start with a non-negative number",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 120 is out of range 0-100",
            "spec.trafficPolicy.retryBudget.percent.value: percentage 150 is out of range 0-100",
            "spec.trafficPolicy.retryBudget.budgetInterval: a retry budget over an interval (budgetInterval) is not supported by Weft yet",
            "spec.trafficPolicy.tls.caCertificates: caCertificates cannot be set with mode ISTIO_MUTUAL: the mesh's own certificates are used",
            "spec.trafficPolicy.tls.credentialName: credentialName cannot be set with mode ISTIO_MUTUAL: the mesh's own certificates are used",
            "spec.trafficPolicy.portLevelSettings[0].tls.caCrl: caCrl needs caCertificates: the lists are for those roots' chains",
            "spec.trafficPolicy.portLevelSettings[0].tls.clientCertificate: clientCertificate is required with mode MUTUAL",
            "spec.trafficPolicy.portLevelSettings[0].tls.privateKey: privateKey is required with mode MUTUAL",
            "spec.trafficPolicy.portLevelSettings[1].port: port 80 has settings already",
            "spec.trafficPolicy.portLevelSettings[1].connectionPool.http.http2MaxRequests: -2 must not be negative",
            "spec.trafficPolicy.tls.credentialName: credentialName applies at sidecars only when the DestinationRule has a workloadSelector (Istio's rule): the Secret is read in the rule's namespace, for the pods it selects",
        ];
        assert_eq!(errors, expected);
    }

    #[test]
    fn credential_name_names_a_secret_for_the_pods_the_rule_selects() {
        let selected = "host: reviews\nworkloadSelector: {matchLabels: {app: web}}\n";
        let mutual = format!(
            "{selected}trafficPolicy: {{tls: {{mode: MUTUAL, credentialName: api-client}}, portLevelSettings: \
             [{{port: {{number: 443}}, tls: {{mode: SIMPLE, credentialName: api.ca}}}}]}}\n"
        );
        assert_eq!(problems(&mutual), Vec::<String>::new(), "no files needed with the Secret");
        let both = format!(
            "{selected}subsets: [{{name: v1, trafficPolicy: {{tls: {{mode: MUTUAL, credentialName: Api_Client, \
             clientCertificate: /c.pem, caCertificates: /ca.pem, caCrl: /crl.pem}}}}}}]\n"
        );
        assert_eq!(
            problems(&both),
            [
                "spec.subsets[0].trafficPolicy.tls.credentialName: \"Api_Client\" is not a Secret name",
                "spec.subsets[0].trafficPolicy.tls.clientCertificate: clientCertificate cannot be set with credentialName: the certificates come from the Secret",
                "spec.subsets[0].trafficPolicy.tls.caCertificates: caCertificates cannot be set with credentialName: the certificates come from the Secret",
                "spec.subsets[0].trafficPolicy.tls.caCrl: caCrl cannot be set with credentialName: the certificates come from the Secret",
            ]
        );
        let unselected = "host: reviews\nsubsets: [{name: v1, trafficPolicy: {portLevelSettings: [{port: {number: 443}, \
                          tls: {mode: MUTUAL, credentialName: api-client}}]}}]\n";
        assert_eq!(
            problems(unselected),
            [
                "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.credentialName: credentialName applies at sidecars only when the DestinationRule has a workloadSelector (Istio's rule): the Secret is read in the rule's namespace, for the pods it selects"
            ]
        );
    }

    #[test]
    fn warmup_needs_a_duration_and_a_weighted_balancer() {
        let ok = problems("host: reviews\ntrafficPolicy: {loadBalancer: {warmupDurationSecs: 30s}}\n");
        assert_eq!(ok, Vec::<String>::new(), "the deprecated form, with the default balancer");
        let errors = problems(
            "host: reviews\ntrafficPolicy: {loadBalancer: {simple: RANDOM, warmupDurationSecs: 30s, warmup: {duration: 0s, minimumPercent: 120, aggression: 0}}}\n",
        );
        assert_eq!(
            errors,
            [
                "spec.trafficPolicy.loadBalancer.warmupDurationSecs: only one of warmup and warmupDurationSecs may be set",
                "spec.trafficPolicy.loadBalancer.warmup.duration: must be at least 1ms",
                "spec.trafficPolicy.loadBalancer.warmup.minimumPercent: percentage 120 is out of range 0-100",
                "spec.trafficPolicy.loadBalancer.warmup.aggression: must be greater than 0",
                "spec.trafficPolicy.loadBalancer.warmup: warmup needs a ROUND_ROBIN, LEAST_REQUEST (LEAST_CONN) or the default balancer, not RANDOM or consistentHash",
            ]
        );
    }

    #[test]
    fn a_maglev_table_is_a_prime_and_excludes_a_ring() {
        let ok = problems(
            "host: reviews\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 251}}}}\n",
        );
        assert_eq!(ok, Vec::<String>::new());
        let errors = problems(
            "host: reviews\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}, ringHash: {minimumRingSize: 64}}}}\n",
        );
        assert_eq!(
            errors,
            [
                "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 1000 is not a prime up to 5000011",
                "spec.trafficPolicy.loadBalancer.consistentHash.maglev: only one of ringHash (or minimumRingSize) and maglev may be set",
            ]
        );
        assert!(super::is_prime(65537) && super::is_prime(5_000_011) && !super::is_prime(1) && !super::is_prime(65535));
    }

    #[test]
    fn a_hash_cookie_needs_a_token_name_a_duration_and_a_path() {
        let errors = problems(
            "host: reviews\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: \"my user\", ttl: forever, path: shop}}}}\n",
        );
        assert_eq!(
            errors,
            [
                "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: \"my user\" is not a valid cookie name",
                "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl: duration \"forever\" does not start with a non-negative number",
                "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.path: \"shop\" is not a cookie path",
            ]
        );
    }
}
