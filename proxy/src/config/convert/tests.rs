//! Route conversion: what each policy field becomes, Envoy's defaults where a field is unset, and refusals
//! (NACKs) of what the proxy cannot honour.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderValue as PbHeaderValue, HeaderValueOption, header_value_option};
use envoy_types::pb::envoy::config::route::v3::{self as route, retry_policy::RetryHostPredicate, route_action};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay as PbDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{FaultAbort as PbAbort, HttpFault, fault_abort};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use weft_xds::filters::{CORS, FAULT, PREVIOUS_HOSTS};

use super::actions::{direct_response, route_action};
use super::policy::{filter_configs, header_ops, retry_policy};
use crate::config::policy::{AbortWith, Fraction, RetryOn};

fn ms(n: i64) -> PbDuration {
    PbDuration { seconds: n / 1000, nanos: ((n % 1000) * 1_000_000) as i32 }
}

fn percent(numerator: u32, denominator: DenominatorType) -> FractionalPercent {
    FractionalPercent { numerator, denominator: denominator as i32 }
}

#[test]
fn istios_retry_policy_converts_with_envoys_defaults() {
    let policy = route::RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        per_try_timeout: Some(ms(250)),
        retry_host_predicate: vec![RetryHostPredicate { name: PREVIOUS_HOSTS.into(), ..Default::default() }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    };
    let converted = retry_policy(&policy).unwrap().unwrap();
    assert_eq!(converted.retries, 2);
    assert!(converted.on.contains(RetryOn::RETRIABLE_STATUS_CODES) && converted.other_hosts);
    assert_eq!(converted.status_codes, [503]);
    assert_eq!(converted.per_try_timeout, Some(Duration::from_millis(250)));
    assert_eq!(
        (converted.backoff_base, converted.backoff_max),
        (Duration::from_millis(25), Duration::from_millis(250))
    );
    let unset = route::RetryPolicy { retry_on: "5xx".into(), ..Default::default() };
    assert_eq!(retry_policy(&unset).unwrap().unwrap().retries, 1, "Envoy retries once when num_retries is unset");
    let none = route::RetryPolicy {
        retry_on: "5xx".into(),
        num_retries: Some(UInt32Value { value: 0 }),
        ..Default::default()
    };
    assert!(retry_policy(&none).unwrap().is_none(), "zero retries: no policy");
    let odd = route::RetryPolicy {
        retry_on: "5xx".into(),
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(retry_policy(&odd).unwrap_err().contains("omit_canary_hosts"));
    assert!(retry_policy(&route::RetryPolicy { retry_on: "sometimes".into(), ..Default::default() }).is_err());
}

#[test]
fn faults_convert_and_an_unset_percentage_is_envoys_zero() {
    let config = HttpFault {
        delay: Some(PbDelay {
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(ms(5000))),
            percentage: Some(percent(100_000, DenominatorType::Million)),
        }),
        abort: Some(PbAbort { error_type: Some(fault_abort::ErrorType::GrpcStatus(14)), ..Default::default() }),
        ..Default::default()
    };
    let configs = HashMap::from([(FAULT.to_string(), weft_xds::pack(&config))]);
    let converted = filter_configs(&configs).unwrap().fault.unwrap();
    let delay = converted.delay.unwrap();
    assert_eq!(
        (delay.delay, delay.share),
        (Duration::from_secs(5), Fraction { numerator: 100_000, denominator: 1_000_000 })
    );
    let abort = converted.abort.unwrap();
    assert_eq!((abort.with, abort.share.numerator), (AbortWith::Grpc(14), 0));
    let unknown = HashMap::from([("envoy.filters.http.lua".to_string(), weft_xds::pack(&config))]);
    assert!(filter_configs(&unknown).unwrap_err().contains("not supported"), "a config the proxy cannot honour");
    let wrong = HashMap::from([(CORS.to_string(), weft_xds::pack(&config))]);
    assert!(filter_configs(&wrong).unwrap_err().contains("CORS config"), "a CORS key holding something else");
}

#[test]
fn header_operations_map_append_actions_and_refuse_pseudo_headers() {
    let option = |key: &str, action: header_value_option::HeaderAppendAction| HeaderValueOption {
        header: Some(PbHeaderValue { key: key.into(), value: "v".into(), ..Default::default() }),
        append_action: action as i32,
        ..Default::default()
    };
    use header_value_option::HeaderAppendAction as A;
    let ops = header_ops(
        &[option("x-set", A::OverwriteIfExistsOrAdd), option("x-add", A::AppendIfExistsOrAdd)],
        &["x-gone".into()],
    )
    .unwrap();
    assert_eq!((ops.set[0].0.as_str(), ops.add[0].0.as_str(), ops.remove[0].as_str()), ("x-set", "x-add", "x-gone"));
    assert!(header_ops(&[option(":path", A::OverwriteIfExistsOrAdd)], &[]).is_err());
    let percent = |value: &str| HeaderValueOption {
        header: Some(PbHeaderValue { key: "x-p".into(), value: value.into(), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(header_ops(&[percent("50%% off")], &[]).unwrap().add[0].1, "50% off", "%% is a literal %");
    assert!(header_ops(&[percent("%DOWNSTREAM_REMOTE_ADDRESS%")], &[]).is_err(), "substitutions are refused");
    assert!(header_ops(&[option("x-a", A::AddIfAbsent)], &[]).is_err());
}

#[test]
fn mirrors_default_to_every_request_and_rewrites_are_exclusive() {
    let action = route::RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("main".into())),
        request_mirror_policies: vec![route_action::RequestMirrorPolicy {
            cluster: "shadow".into(),
            ..Default::default()
        }],
        prefix_rewrite: "/new".into(),
        max_stream_duration: Some(route_action::MaxStreamDuration {
            grpc_timeout_header_max: Some(ms(0)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let converted = route_action(&action).unwrap();
    assert_eq!(converted.mirrors[0].share, Fraction::ALL);
    assert_eq!(converted.rewrite.prefix.as_deref(), Some("/new"));
    assert_eq!(converted.grpc_timeout, crate::config::policy::GrpcTimeout::Honoured { max: None });
    assert_eq!(converted.timeout, Some(Duration::from_secs(15)), "Envoy's default route timeout");
    let both = route::RouteAction {
        regex_rewrite: Some(envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute {
            pattern: Some(envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
                regex: "a".into(),
                ..Default::default()
            }),
            substitution: "b".into(),
        }),
        ..action
    };
    assert!(route_action(&both).unwrap_err().contains("exclusive"));
}

#[test]
fn direct_responses_need_a_real_status() {
    let answer = |status| route::DirectResponseAction { status, ..Default::default() };
    assert_eq!(direct_response(&answer(503)).unwrap().status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(direct_response(&answer(99)).is_err());
    assert!(direct_response(&answer(600)).is_err());
}

#[test]
fn tcp_and_tls_filter_chains_become_l4_routes_beside_the_http_chain() {
    use envoy_types::pb::envoy::config::core::v3::CidrRange;
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener, filter};
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
    use weft_xds::filters::TCP_PROXY;

    use crate::config::ListenerConfig;

    let http = crate::xds::testing::listener(3306, "3306");
    let mut listener: Listener = weft_xds::unpack(&http).unwrap();
    let weighted = tcp_proxy::WeightedCluster {
        clusters: vec![
            tcp_proxy::weighted_cluster::ClusterWeight { name: "v1".into(), weight: 80, ..Default::default() },
            tcp_proxy::weighted_cluster::ClusterWeight { name: "v2".into(), weight: 20, ..Default::default() },
        ],
    };
    let proxy = TcpProxy {
        stat_prefix: "weighted".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::WeightedClusters(weighted)),
        ..Default::default()
    };
    let chain = |server_names: Vec<String>, transport: &str| FilterChain {
        name: "tcp|default/db|0|0".into(),
        filter_chain_match: Some(FilterChainMatch {
            prefix_ranges: vec![CidrRange {
                address_prefix: "10.96.0.10".into(),
                prefix_len: Some(UInt32Value { value: 32 }),
            }],
            server_names,
            transport_protocol: transport.into(),
            ..Default::default()
        }),
        filters: vec![Filter {
            name: TCP_PROXY.into(),
            config_type: Some(filter::ConfigType::TypedConfig(weft_xds::pack(&proxy))),
        }],
        ..Default::default()
    };
    listener.filter_chains.insert(0, chain(Vec::new(), ""));
    let converted = ListenerConfig::try_from(&listener).unwrap();
    assert_eq!(converted.route_config, "3306");
    let route = &converted.l4_routes[0];
    assert_eq!((route.targets[1].cluster.as_str(), route.targets[1].weight, route.tls), ("v2", 20, false));
    assert_eq!(route.destinations[0].prefix, 32);
    listener.filter_chains[0] = chain(vec!["login.example.com".into()], "");
    let refused = ListenerConfig::try_from(&listener).unwrap_err().to_string();
    assert!(refused.contains("TLS connections only"), "{refused}");
    listener.filter_chains[0] = chain(vec!["login.example.com".into()], "tls");
    assert!(ListenerConfig::try_from(&listener).unwrap().l4_routes[0].tls);
}

#[test]
fn source_labels_are_read_and_a_label_matched_twice_is_refused() {
    use weft_xds::source::source_label_matcher;
    let labels = super::routes::source_labels(&[source_label_matcher("app", "web"), source_label_matcher("v", "2")]);
    assert_eq!(labels.unwrap().len(), 2);
    let twice = super::routes::source_labels(&[source_label_matcher("app", "web"), source_label_matcher("app", "api")]);
    assert_eq!(twice.unwrap_err(), "source label \"app\" is matched twice");
}

#[test]
fn an_original_destination_cluster_has_no_endpoint_assignment() {
    use crate::config::ClusterConfig;
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
    let original = Cluster {
        name: "outbound|80||db".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        ..Default::default()
    };
    let converted = ClusterConfig::try_from(&original).unwrap();
    assert!(converted.original_destination);
    assert_eq!(converted.eds_name, "");
    let mut config = crate::config::ProxyConfig::default();
    config.clusters.insert(converted.name.clone(), converted);
    assert!(crate::xds::resource::endpoint_names(&config).is_empty(), "nothing to subscribe to");
    let strict = Cluster {
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::StrictDns as i32)),
        ..original
    };
    assert!(ClusterConfig::try_from(&strict).unwrap_err().to_string().contains("only EDS and ORIGINAL_DST"));
}

#[test]
fn a_listener_detects_protocols_only_when_the_operator_marks_it() {
    use envoy_types::pb::envoy::config::listener::v3::{Listener, ListenerFilter};
    use weft_xds::detection::{DETECTION_TIMEOUT, Detection, detect};
    use weft_xds::filters::HTTP_INSPECTOR;

    use crate::config::ListenerConfig;

    let mut listener: Listener = weft_xds::unpack(&crate::xds::testing::listener(8080, "8080")).unwrap();
    assert_eq!(ListenerConfig::try_from(&listener).unwrap().detection, Detection::Off, "every Service declares HTTP");
    detect(&mut listener);
    let converted = ListenerConfig::try_from(&listener).unwrap();
    assert_eq!(converted.detection, Detection::Within(Some(DETECTION_TIMEOUT)));
    // Istio's shape for a port of unknown protocol: Envoy's HTTP inspector, no time limit.
    let mut istio: Listener = weft_xds::unpack(&crate::xds::testing::listener(8080, "8080")).unwrap();
    istio.listener_filters.push(ListenerFilter { name: HTTP_INSPECTOR.into(), ..Default::default() });
    istio.listener_filters_timeout = Some(Default::default());
    assert_eq!(ListenerConfig::try_from(&istio).unwrap().detection, Detection::Within(None));
}

#[test]
fn a_listener_declared_tcp_takes_connections_for_tcp_and_other_default_chains_are_refused() {
    use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
    use weft_xds::detection::{Detection, declare_tcp};

    use crate::config::ListenerConfig;

    let mut listener: Listener = weft_xds::unpack(&crate::xds::testing::listener(3306, "3306")).unwrap();
    declare_tcp(&mut listener);
    let converted = ListenerConfig::try_from(&listener).unwrap();
    assert_eq!((converted.detection, converted.route_config.as_str()), (Detection::Tcp, "3306"));
    let mut elsewhere = listener.clone();
    elsewhere.default_filter_chain = Some(FilterChain { name: "x".into(), ..Default::default() });
    let refused = ListenerConfig::try_from(&elsewhere).unwrap_err().to_string();
    assert!(refused.contains("must pass TCP through to PassthroughCluster"), "{refused}");
    let mut no_default = listener.clone();
    no_default.default_filter_chain = None;
    assert!(ListenerConfig::try_from(&no_default).unwrap_err().to_string().contains("needs a default_filter_chain"));
    let mut unmatched = listener;
    unmatched.filter_chains[0].filter_chain_match = None;
    assert!(ListenerConfig::try_from(&unmatched).unwrap_err().to_string().contains("the HTTP chain needs a match"));
}
