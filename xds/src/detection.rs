//! How an outbound listener says whether the proxy must detect a connection's protocol from its first bytes, in
//! Envoy's own fields: a listener whose Services all declare HTTP (by port name) carries HTTP without looking;
//! one that must detect sets `continue_on_listener_filters_timeout` (a connection still silent after
//! `listener_filters_timeout` is not HTTP and goes on as TCP, as with Istio's `protocolDetectionTimeout`). Proxies
//! older than this convention ignore both fields and detect on every port, as they always did. A listener with
//! Envoy's `http_inspector` listener filter (Istio's shape for a port of unknown protocol) detects too; the
//! operator does not send that filter yet, because proxies older than this convention refuse listener filters
//! they do not know.
//!
//! A port every Service declares a protocol other than HTTP on (`tcp`, `tls`, `mysql`, ...) is TCP from the first
//! byte, with no detection (Istio's explicit protocol selection): Envoy's shape is a listener whose connections
//! pass through as TCP ([`declare_tcp`]: a `default_filter_chain`, and the HTTP chain matched on plaintext HTTP's
//! application protocols, which nothing names without an `http_inspector`). Proxies before this shape refuse a
//! matched HTTP chain, so the operator sends it only to proxies that announce [`DECLARED_TCP_FEATURE`].

use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

/// How long a connection on a detecting port may stay silent before it is taken for TCP (a server-first
/// protocol). Short, because such a protocol waits that long for its greeting.
pub const DETECTION_TIMEOUT: Duration = Duration::from_millis(200);

/// What a listener does with a new connection before choosing its filter chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Every Service on the port declares HTTP: serve HTTP at once.
    Off,
    /// Peek for HTTP; silence this long (none: no limit) means TCP.
    Within(Option<Duration>),
    /// Every Service on the port declares a protocol other than HTTP: TCP at once.
    Tcp,
}

/// The client feature (Envoy's `Node.client_features`) of a proxy that reads listeners made by [`declare_tcp`].
pub const DECLARED_TCP_FEATURE: &str = "dev.weft.listener.declared_tcp";

/// Istio's name for the cluster of connections that go on to their original destination.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// What Envoy's `http_inspector` calls plaintext HTTP: the only match an HTTP chain may have.
pub const PLAINTEXT_HTTP: [&str; 2] = ["http/1.1", "h2c"];

/// The match of an HTTP chain taken only for connections known to carry plaintext HTTP (Istio's: `raw_buffer`, so
/// that a TLS ClientHello offering `http/1.1`, which Envoy's `tls_inspector` reports, does not take it).
pub fn plaintext_http_match() -> FilterChainMatch {
    FilterChainMatch {
        transport_protocol: "raw_buffer".to_string(),
        application_protocols: PLAINTEXT_HTTP.map(String::from).to_vec(),
        ..Default::default()
    }
}

/// Makes `listener`, an outbound one whose HTTP chain is the default, a TCP one: its HTTP chain is matched on
/// [`plaintext_http_match`] (kept so the port's route configuration stays subscribed), and what no chain takes
/// passes through as TCP (Envoy's `default_filter_chain`, a TCP proxy to [`PASSTHROUGH_CLUSTER`]; Weft's proxy
/// sends such a connection to the Service whose address it is, as for detected TCP).
pub fn declare_tcp(listener: &mut Listener) {
    listener.continue_on_listener_filters_timeout = false;
    listener.listener_filters_timeout = None;
    for chain in listener.filter_chains.iter_mut().filter(|c| c.filter_chain_match.is_none()) {
        chain.filter_chain_match = Some(plaintext_http_match());
    }
    let passthrough = TcpProxy {
        stat_prefix: PASSTHROUGH_CLUSTER.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(PASSTHROUGH_CLUSTER.to_string())),
        ..Default::default()
    };
    listener.default_filter_chain = Some(FilterChain {
        name: PASSTHROUGH_CLUSTER.to_string(),
        filters: vec![Filter {
            name: crate::filters::TCP_PROXY.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(crate::pack(&passthrough))),
        }],
        ..Default::default()
    });
}

/// Whether `chain` is the pass-through default chain [`declare_tcp`] writes.
pub fn is_passthrough_chain(chain: &FilterChain) -> bool {
    let [only] = chain.filters.as_slice() else { return false };
    let Some(filter::ConfigType::TypedConfig(any)) = &only.config_type else { return false };
    let proxy: Option<TcpProxy> = (only.name == crate::filters::TCP_PROXY).then(|| crate::unpack(any).ok()).flatten();
    chain.filter_chain_match.is_none()
        && proxy.is_some_and(|p| {
            p.cluster_specifier == Some(tcp_proxy::ClusterSpecifier::Cluster(PASSTHROUGH_CLUSTER.to_string()))
        })
}

/// Marks `listener` as detecting its protocol within [`DETECTION_TIMEOUT`].
pub fn detect(listener: &mut Listener) {
    listener.continue_on_listener_filters_timeout = true;
    listener.listener_filters_timeout = Some(envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(DETECTION_TIMEOUT.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(DETECTION_TIMEOUT.subsec_nanos()).unwrap_or(0),
    });
}

/// What `listener` asks for. Envoy's zero `listener_filters_timeout` means no limit; an unset one its default, 15 s.
/// A listener with a default chain and no `http_inspector` never learns a connection is HTTP: TCP.
pub fn detection_of(listener: &Listener) -> Detection {
    let inspects_http = listener.listener_filters.iter().any(|f| f.name == crate::filters::HTTP_INSPECTOR);
    if listener.default_filter_chain.is_some() && !inspects_http {
        return Detection::Tcp;
    }
    if !listener.continue_on_listener_filters_timeout && !inspects_http {
        return Detection::Off;
    }
    let Some(timeout) = &listener.listener_filters_timeout else { return Detection::Within(Some(ENVOY_DEFAULT)) };
    let (seconds, nanos) = (u64::try_from(timeout.seconds).unwrap_or(0), u32::try_from(timeout.nanos).unwrap_or(0));
    let timeout = Duration::new(seconds, nanos);
    Detection::Within((!timeout.is_zero()).then_some(timeout))
}

/// Envoy's `listener_filters_timeout` when unset.
const ENVOY_DEFAULT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_listener_reads_back_as_detecting_within_the_timeout() {
        let mut listener = Listener::default();
        assert_eq!(detection_of(&listener), Detection::Off);
        detect(&mut listener);
        assert_eq!(detection_of(&listener), Detection::Within(Some(DETECTION_TIMEOUT)));
        listener.listener_filters_timeout = Some(Default::default());
        assert_eq!(detection_of(&listener), Detection::Within(None), "zero is no limit, as in Envoy");
        listener.listener_filters_timeout = None;
        assert_eq!(detection_of(&listener), Detection::Within(Some(ENVOY_DEFAULT)));
    }

    #[test]
    fn a_declared_tcp_listener_reads_back_as_tcp_and_keeps_its_http_chain_for_plaintext_http_only() {
        let http = FilterChain { name: "http".into(), ..Default::default() };
        let mut listener = Listener { filter_chains: vec![http], ..Default::default() };
        detect(&mut listener);
        declare_tcp(&mut listener);
        assert_eq!(detection_of(&listener), Detection::Tcp, "the detection marks are gone");
        assert_eq!(listener.filter_chains[0].filter_chain_match, Some(plaintext_http_match()));
        assert!(listener.default_filter_chain.as_ref().is_some_and(is_passthrough_chain));
        // Istio's shape for a port of unknown protocol: the same chains, with an http_inspector to name HTTP.
        use envoy_types::pb::envoy::config::listener::v3::ListenerFilter;
        let inspector = ListenerFilter { name: crate::filters::HTTP_INSPECTOR.into(), ..Default::default() };
        listener.listener_filters.push(inspector);
        assert_eq!(detection_of(&listener), Detection::Within(Some(ENVOY_DEFAULT)));
        assert!(!is_passthrough_chain(&listener.filter_chains[0]));
    }

    #[test]
    fn envoys_http_inspector_asks_for_detection_too() {
        use envoy_types::pb::envoy::config::listener::v3::ListenerFilter;
        let inspector = ListenerFilter { name: crate::filters::HTTP_INSPECTOR.into(), ..Default::default() };
        let mut listener = Listener { listener_filters: vec![inspector], ..Default::default() };
        assert_eq!(detection_of(&listener), Detection::Within(Some(ENVOY_DEFAULT)));
        listener.listener_filters_timeout = Some(Default::default());
        assert_eq!(detection_of(&listener), Detection::Within(None), "Istio's default: no limit");
    }
}
