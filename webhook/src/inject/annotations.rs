//! Pod annotations that tune injection: traffic capture exclusions (flags of `weft-proxy init`), proxy resources,
//! proxy timeouts, the proxy's config scope, access log and trace sampling rate.
//! Each value is checked here; a malformed one rejects the pod with a message naming the annotation, rather than
//! letting `weft-init` fail inside the pod later.

use std::collections::BTreeMap;
use std::net::IpAddr;

use weft_process::telemetry::parse_percent;

use crate::config::{ProxyResources, ProxyTimeouts, proxy_duration};
use crate::quantity::Quantity;
use weft_xds::ProxyScope;

pub const INJECT: &str = "weft.dev/inject";
pub const INJECTED: &str = "weft.dev/injected";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "weft.dev/exclude-outbound-ports";
pub const EXCLUDE_INBOUND_PORTS: &str = "weft.dev/exclude-inbound-ports";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "weft.dev/exclude-outbound-ip-ranges";
pub const PROXY_CPU: &str = "weft.dev/proxy-cpu";
pub const PROXY_MEMORY: &str = "weft.dev/proxy-memory";
pub const PROXY_CPU_LIMIT: &str = "weft.dev/proxy-cpu-limit";
pub const PROXY_MEMORY_LIMIT: &str = "weft.dev/proxy-memory-limit";
pub const REQUEST_HEADERS_TIMEOUT: &str = "weft.dev/request-headers-timeout";
pub const STREAM_IDLE_TIMEOUT: &str = "weft.dev/stream-idle-timeout";
pub const IDLE_TIMEOUT: &str = "weft.dev/idle-timeout";
/// How much of the mesh the pod's proxy is sent before it asks (`namespace`, `on-demand`, `mesh`).
pub const PROXY_SCOPE: &str = "weft.dev/proxy-scope";
/// `"true"` or `"false"`: the sidecar's access log, overriding the chart's `proxy.accessLog`.
pub const ACCESS_LOG: &str = "weft.dev/access-log";
/// Percent of requests the sidecar traces (0-100), overriding the chart's `observability.tracing.sampling`.
pub const TRACE_SAMPLING: &str = "weft.dev/trace-sampling";
/// Which container `kubectl logs/exec` pick by default; set in classic mode, where `weft-proxy` comes first.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// Why a pod cannot be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("annotation {annotation}: {value:?} is invalid: {reason}")]
    InvalidAnnotation { annotation: &'static str, value: String, reason: String },
    #[error(
        "proxy {resource} request {request} (from {request_from}) is more than its limit {limit} (from {limit_from})"
    )]
    RequestAboveLimit {
        resource: &'static str,
        request: String,
        request_from: String,
        limit: String,
        limit_from: String,
    },
}

/// Extra flags of `weft-proxy init`, in the order they are passed.
pub fn exclusion_flags(annotations: &BTreeMap<String, String>) -> Result<Vec<String>, InjectError> {
    let mut flags = Vec::new();
    let lists = [
        (EXCLUDE_OUTBOUND_PORTS, "--exclude-outbound-ports", check_port as fn(&str) -> Result<(), String>),
        // The operator reads this flag back from the pod: clients' sidecars send these ports plaintext.
        (EXCLUDE_INBOUND_PORTS, weft_xds::mtls::EXCLUDE_INBOUND_PORTS_FLAG, check_port),
        (EXCLUDE_OUTBOUND_IP_RANGES, "--exclude-outbound-ip-ranges", check_cidr),
    ];
    for (annotation, flag, check) in lists {
        let Some(value) = annotations.get(annotation) else { continue };
        let items = comma_list(value);
        for item in &items {
            check(item).map_err(|reason| InjectError::InvalidAnnotation {
                annotation,
                value: value.clone(),
                reason,
            })?;
        }
        if !items.is_empty() {
            flags.push(flag.to_string());
            flags.push(items.join(","));
        }
    }
    Ok(flags)
}

/// `"a, b,,c "` -> `["a", "b", "c"]`.
fn comma_list(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).collect()
}

fn check_port(item: &str) -> Result<(), String> {
    match item.parse::<u16>() {
        Ok(port) if port > 0 && item.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("{item:?} is not a port number 1-65535")),
    }
}

fn check_cidr(item: &str) -> Result<(), String> {
    let err = || format!("{item:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8");
    let (address, prefix) = item.split_once('/').ok_or_else(err)?;
    let address: IpAddr = address.parse().map_err(|_| err())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    // Written plainly: digits only, no leading zero ("/08", "/+8" are what iptables would choke on).
    let plain = prefix.bytes().all(|b| b.is_ascii_digit()) && (prefix == "0" || !prefix.starts_with('0'));
    match prefix.parse::<u8>() {
        Ok(prefix) if plain && prefix <= max => Ok(()),
        _ => Err(err()),
    }
}

/// The proxy's resources: the configured defaults, each overridable by its annotation.
pub fn proxy_resources(
    annotations: &BTreeMap<String, String>,
    defaults: &ProxyResources,
) -> Result<ProxyResources, InjectError> {
    let pick = |annotation: &'static str, default: &Quantity| -> Result<(Quantity, String), InjectError> {
        match annotations.get(annotation) {
            None => Ok((default.clone(), "the webhook's defaults".to_string())),
            Some(value) => {
                value.trim().parse::<Quantity>().map(|q| (q, format!("annotation {annotation}"))).map_err(|err| {
                    InjectError::InvalidAnnotation { annotation, value: value.clone(), reason: err.to_string() }
                })
            }
        }
    };
    let cpu = (pick(PROXY_CPU, &defaults.cpu_request)?, pick(PROXY_CPU_LIMIT, &defaults.cpu_limit)?);
    let memory = (pick(PROXY_MEMORY, &defaults.memory_request)?, pick(PROXY_MEMORY_LIMIT, &defaults.memory_limit)?);
    for (resource, ((request, request_from), (limit, limit_from))) in [("cpu", &cpu), ("memory", &memory)] {
        if request.value() > limit.value() {
            return Err(InjectError::RequestAboveLimit {
                resource,
                request: request.to_string(),
                request_from: request_from.clone(),
                limit: limit.to_string(),
                limit_from: limit_from.clone(),
            });
        }
    }
    Ok(ProxyResources {
        cpu_request: cpu.0.0,
        cpu_limit: cpu.1.0,
        memory_request: memory.0.0,
        memory_limit: memory.1.0,
    })
}

/// The proxy's timeouts: the configured defaults, each overridable by its annotation.
pub fn proxy_timeouts(
    annotations: &BTreeMap<String, String>,
    defaults: &ProxyTimeouts,
) -> Result<ProxyTimeouts, InjectError> {
    let pick = |annotation: &'static str, default: &String| match annotations.get(annotation) {
        None => Ok(default.clone()),
        Some(value) => proxy_duration(value).map_err(|reason| InjectError::InvalidAnnotation {
            annotation,
            value: value.clone(),
            reason,
        }),
    };
    Ok(ProxyTimeouts {
        request_headers: pick(REQUEST_HEADERS_TIMEOUT, &defaults.request_headers)?,
        stream_idle: pick(STREAM_IDLE_TIMEOUT, &defaults.stream_idle)?,
        idle: pick(IDLE_TIMEOUT, &defaults.idle)?,
    })
}

/// The proxy's own config scope, when the pod sets one (else the operator's default applies).
pub fn proxy_scope(annotations: &BTreeMap<String, String>) -> Result<Option<ProxyScope>, InjectError> {
    let Some(value) = annotations.get(PROXY_SCOPE) else { return Ok(None) };
    let scope = value.parse().map_err(|reason| InjectError::InvalidAnnotation {
        annotation: PROXY_SCOPE,
        value: value.clone(),
        reason,
    })?;
    Ok(Some(scope))
}

/// Whether the sidecar writes an access log: the pod's annotation, else `default`.
pub fn access_log(annotations: &BTreeMap<String, String>, default: bool) -> Result<bool, InjectError> {
    let Some(value) = annotations.get(ACCESS_LOG) else { return Ok(default) };
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(InjectError::InvalidAnnotation {
            annotation: ACCESS_LOG,
            value: value.clone(),
            reason: "expected \"true\" or \"false\"".into(),
        }),
    }
}

/// The sidecar's trace sampling rate: the pod's annotation, else `default`.
pub fn trace_sampling(annotations: &BTreeMap<String, String>, default: f64) -> Result<f64, InjectError> {
    let Some(value) = annotations.get(TRACE_SAMPLING) else { return Ok(default) };
    parse_percent(value).map_err(|reason| InjectError::InvalidAnnotation {
        annotation: TRACE_SAMPLING,
        value: value.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_sampling_annotation_overrides_the_default_and_is_checked() {
        assert_eq!(trace_sampling(&annotations(&[]), 1.0), Ok(1.0));
        assert_eq!(trace_sampling(&annotations(&[(TRACE_SAMPLING, " 25.5 ")]), 1.0), Ok(25.5));
        let err = trace_sampling(&annotations(&[(TRACE_SAMPLING, "200")]), 1.0).unwrap_err();
        assert!(err.to_string().starts_with("annotation weft.dev/trace-sampling: \"200\" is invalid"), "{err}");
    }

    #[test]
    fn the_access_log_annotation_overrides_the_default_and_is_checked() {
        assert_eq!(access_log(&annotations(&[]), true), Ok(true));
        assert_eq!(access_log(&annotations(&[(ACCESS_LOG, "true")]), false), Ok(true));
        assert_eq!(access_log(&annotations(&[(ACCESS_LOG, "false")]), true), Ok(false));
        let err = access_log(&annotations(&[(ACCESS_LOG, "yes")]), false).unwrap_err();
        assert!(err.to_string().starts_with("annotation weft.dev/access-log: \"yes\" is invalid"), "{err}");
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn exclusions_become_flags_in_a_fixed_order() {
        let a = annotations(&[
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8, fd00::/8"),
            (EXCLUDE_INBOUND_PORTS, "8081"),
            (EXCLUDE_OUTBOUND_PORTS, " 5432 ,6379,"),
        ]);
        assert_eq!(
            exclusion_flags(&a).unwrap(),
            [
                "--exclude-outbound-ports",
                "5432,6379",
                "--exclude-inbound-ports",
                "8081",
                "--exclude-outbound-ip-ranges",
                "10.0.0.0/8,fd00::/8"
            ]
        );
        assert!(exclusion_flags(&annotations(&[(EXCLUDE_INBOUND_PORTS, " ")])).unwrap().is_empty());
    }

    #[test]
    fn a_bad_exclusion_names_its_annotation() {
        for (annotation, value) in [
            (EXCLUDE_OUTBOUND_PORTS, "5432,http"),
            (EXCLUDE_INBOUND_PORTS, "0"),
            (EXCLUDE_INBOUND_PORTS, "70000"),
            (EXCLUDE_INBOUND_PORTS, "+80"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/08"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "fd00::/129"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "example.com/8"),
        ] {
            let err = exclusion_flags(&annotations(&[(annotation, value)])).unwrap_err();
            assert!(err.to_string().starts_with(&format!("annotation {annotation}: ")), "{err}");
        }
    }

    fn defaults() -> ProxyResources {
        ProxyResources::default()
    }

    #[test]
    fn resource_annotations_override_defaults() {
        let r = proxy_resources(&annotations(&[(PROXY_CPU, "250m"), (PROXY_MEMORY_LIMIT, "1Gi")]), &defaults());
        let r = r.unwrap();
        assert_eq!(
            [r.cpu_request.as_str(), r.memory_request.as_str(), r.cpu_limit.as_str(), r.memory_limit.as_str()],
            ["250m", "128Mi", "1000m", "1Gi"]
        );
    }

    #[test]
    fn resource_annotations_are_checked() {
        let err = proxy_resources(&annotations(&[(PROXY_MEMORY, "lots")]), &defaults()).unwrap_err();
        assert!(err.to_string().starts_with("annotation weft.dev/proxy-memory: \"lots\" is invalid"), "{err}");
        let err = proxy_resources(&annotations(&[(PROXY_CPU, "2")]), &defaults()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "proxy cpu request 2 (from annotation weft.dev/proxy-cpu) is more than its limit 1000m (from the \
             webhook's defaults)"
        );
    }

    #[test]
    fn the_proxy_scope_annotation_is_checked() {
        assert_eq!(proxy_scope(&annotations(&[])), Ok(None), "unset: the operator's default");
        assert_eq!(proxy_scope(&annotations(&[(PROXY_SCOPE, "on-demand")])), Ok(Some(ProxyScope::OnDemand)));
        let err = proxy_scope(&annotations(&[(PROXY_SCOPE, "everything")])).unwrap_err();
        assert!(err.to_string().starts_with("annotation weft.dev/proxy-scope: \"everything\" is invalid"), "{err}");
    }

    #[test]
    fn timeout_annotations_override_defaults_and_are_checked() {
        let t =
            proxy_timeouts(&annotations(&[(STREAM_IDLE_TIMEOUT, " 30m "), (IDLE_TIMEOUT, "0")]), &Default::default());
        let t = t.unwrap();
        assert_eq!((t.request_headers.as_str(), t.stream_idle.as_str(), t.idle.as_str()), ("10s", "30m", "0"));
        let err = proxy_timeouts(&annotations(&[(REQUEST_HEADERS_TIMEOUT, "soon")]), &Default::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("annotation weft.dev/request-headers-timeout: \"soon\" is invalid"),
            "{err}"
        );
    }
}
