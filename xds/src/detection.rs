//! How an outbound listener says whether the proxy must detect a connection's protocol from its first bytes, in
//! Envoy's own fields: a listener whose Services all declare HTTP (by port name) carries HTTP without looking;
//! one that must detect sets `continue_on_listener_filters_timeout` (a connection still silent after
//! `listener_filters_timeout` is not HTTP and goes on as TCP, as with Istio's `protocolDetectionTimeout`). Proxies
//! older than this convention ignore both fields and detect on every port, as they always did. A listener with
//! Envoy's `http_inspector` listener filter (Istio's shape for a port of unknown protocol) detects too; the
//! operator does not send that filter yet, because proxies older than this convention refuse listener filters
//! they do not know.

use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::Listener;

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
pub fn detection_of(listener: &Listener) -> Detection {
    let inspects_http = listener.listener_filters.iter().any(|f| f.name == crate::filters::HTTP_INSPECTOR);
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
    fn envoys_http_inspector_asks_for_detection_too() {
        use envoy_types::pb::envoy::config::listener::v3::ListenerFilter;
        let inspector = ListenerFilter { name: crate::filters::HTTP_INSPECTOR.into(), ..Default::default() };
        let mut listener = Listener { listener_filters: vec![inspector], ..Default::default() };
        assert_eq!(detection_of(&listener), Detection::Within(Some(ENVOY_DEFAULT)));
        listener.listener_filters_timeout = Some(Default::default());
        assert_eq!(detection_of(&listener), Detection::Within(None), "Istio's default: no limit");
    }
}
