//! The two injected containers: `weft-init` (sets up iptables capture, then exits) and `weft-proxy` (the sidecar),
//! in their native (init container, `restartPolicy: Always`) or classic (first app container) form.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    Lifecycle, LifecycleHandler, ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use weft_xds::ProxyScope;

use crate::config::{InjectConfig, ProxyResources, ProxyTimeouts, SidecarMode, TracingConfig};

pub const INIT_NAME: &str = weft_xds::mtls::INIT_CONTAINER;
pub const PROXY_NAME: &str = "weft-proxy";
/// The proxy's UID and GID; `weft-proxy init` exempts this UID's traffic from capture.
pub const PROXY_UID: i64 = 1337;
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
pub const HEALTH_PORT: i32 = 15020;
pub const HEALTH_PORT_NAME: &str = "weft-health";
pub const READY_PATH: &str = "/healthz/ready";
/// How long the classic `postStart` hook waits for the proxy, and (at 1 s per probe) the native startup probe.
pub const STARTUP_TIMEOUT_SECONDS: i32 = 60;

/// Mutual TLS: the projected token volume (audience `weft-ca`) and the trust bundle ConfigMap volume, and where
/// the proxy finds them.
pub const TOKEN_VOLUME: &str = "weft-token";
pub const TOKEN_DIR: &str = "/var/run/secrets/weft";
pub const TOKEN_FILE: &str = "weft-token";
pub const TOKEN_AUDIENCE: &str = "weft-ca";
/// Kubernetes rotates the projected token at 80% of this; Istio's lifetime.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 43_200;
pub const BUNDLE_VOLUME: &str = "weft-ca-root-cert";
pub const BUNDLE_DIR: &str = "/var/run/weft/ca";
/// The operator's trust bundle ConfigMap (in every namespace) and its key.
pub const BUNDLE_CONFIG_MAP: &str = "weft-ca-root-cert";
pub const BUNDLE_KEY: &str = "root-cert.pem";

/// `weft-init`: runs `weft-proxy init` as root with just the capabilities iptables needs.
pub fn init_container(config: &InjectConfig, resources: &ProxyResources, exclusions: Vec<String>) -> Container {
    let mut command: Vec<String> = ["weft-proxy", "init", "--proxy-uid"].map(String::from).into();
    command.push(PROXY_UID.to_string());
    command.extend(["--outbound-capture-port".into(), OUTBOUND_CAPTURE_PORT.to_string()]);
    command.extend(["--inbound-capture-port".into(), INBOUND_CAPTURE_PORT.to_string()]);
    command.extend(exclusions);
    Container {
        name: INIT_NAME.into(),
        image: Some(config.proxy_image.clone()),
        command: Some(command),
        resources: Some(resource_requirements(resources)),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        }),
        // An iptables failure then shows in `kubectl describe pod`.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// `weft-proxy`: the sidecar, unprivileged, configured from the downward API.
/// What a pod's annotations and labels decide about its proxy.
#[derive(Debug, Clone, Copy)]
pub struct ProxyOptions<'a> {
    pub timeouts: &'a ProxyTimeouts,
    pub scope: Option<ProxyScope>,
    pub access_log: bool,
    /// The collector and the pod's sampling rate, when proxies trace.
    pub tracing: Option<(&'a TracingConfig, f64)>,
    pub labels: &'a BTreeMap<String, String>,
    /// The workload the pod belongs to (empty: the proxy uses the pod name).
    pub workload: &'a str,
}

pub fn proxy_container(config: &InjectConfig, resources: &ProxyResources, options: ProxyOptions<'_>) -> Container {
    let mut container = Container {
        name: PROXY_NAME.into(),
        image: Some(config.proxy_image.clone()),
        command: Some(["weft-proxy", "run", "--transparent"].map(String::from).into()),
        env: Some(proxy_env(config, options)),
        ports: Some(vec![ContainerPort {
            name: Some(HEALTH_PORT_NAME.into()),
            container_port: HEALTH_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(ready_probe(2, 3)),
        volume_mounts: config.identity.as_ref().map(|_| identity_mounts()),
        resources: Some(resource_requirements(resources)),
        security_context: Some(SecurityContext {
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { add: None, drop: Some(vec!["ALL".into()]) }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    match config.mode {
        SidecarMode::Native => {
            container.restart_policy = Some("Always".into());
            container.startup_probe = Some(ready_probe(1, STARTUP_TIMEOUT_SECONDS));
        }
        SidecarMode::Classic => {
            let wait = ["weft-proxy", "wait", "--timeout"].map(String::from).into_iter();
            container.lifecycle = Some(Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(wait.chain([format!("{STARTUP_TIMEOUT_SECONDS}s")]).collect()),
                    }),
                    ..LifecycleHandler::default()
                }),
                ..Lifecycle::default()
            });
        }
    }
    container
}

fn proxy_env(config: &InjectConfig, options: ProxyOptions<'_>) -> Vec<EnvVar> {
    let ProxyOptions { timeouts, scope, access_log, tracing, labels, workload } = options;
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { api_version: None, field_path: path.into() }),
            ..EnvVarSource::default()
        }),
    };
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
        field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        value("WEFT_XDS_ADDRESS", &config.xds_address),
        value("WEFT_REQUEST_HEADERS_TIMEOUT", &timeouts.request_headers),
        value("WEFT_STREAM_IDLE_TIMEOUT", &timeouts.stream_idle),
        value("WEFT_IDLE_TIMEOUT", &timeouts.idle),
    ];
    env.extend(scope.map(|scope| value("WEFT_PROXY_SCOPE", scope.as_str())));
    if access_log {
        env.push(value("WEFT_ACCESS_LOG", "stdout"));
    }
    if let Some((tracing, sampling)) = tracing {
        env.push(value("WEFT_TRACE_COLLECTOR", &tracing.collector));
        env.push(value("WEFT_TRACE_SAMPLING", &sampling.to_string()));
    }
    if !workload.is_empty() {
        env.push(value("WEFT_WORKLOAD", workload));
    }
    if let Some(identity) = &config.identity {
        env.push(value("WEFT_CA_ADDRESS", &identity.ca_address));
        env.push(value("WEFT_TRUST_DOMAIN", &identity.trust_domain));
        env.push(value("WEFT_TRUST_BUNDLE", &format!("{BUNDLE_DIR}/{BUNDLE_KEY}")));
        env.push(value("WEFT_IDENTITY_TOKEN_FILE", &format!("{TOKEN_DIR}/{TOKEN_FILE}")));
    }
    // The pod's labels as admitted (the downward API gives all labels only as a file), for `sourceLabels`.
    if !labels.is_empty() {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(value("WEFT_POD_LABELS", &pairs.join(",")));
    }
    env
}

fn identity_mounts() -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    vec![mount(TOKEN_VOLUME, TOKEN_DIR), mount(BUNDLE_VOLUME, BUNDLE_DIR)]
}

/// The pod volumes mutual TLS needs: the workload's token for the CA (audience Weft's only, short-lived,
/// rotated by the kubelet) and the trust bundle.
pub fn identity_volumes() -> Vec<Volume> {
    let token = ServiceAccountTokenProjection {
        audience: Some(TOKEN_AUDIENCE.into()),
        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
        path: TOKEN_FILE.into(),
    };
    vec![
        Volume {
            name: TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(token),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: BUNDLE_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: BUNDLE_CONFIG_MAP.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

/// GET :15020/healthz/ready every `period` seconds, failing after `failures` misses.
fn ready_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(READY_PATH.into()),
            port: IntOrString::Int(HEALTH_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn resource_requirements(r: &ProxyResources) -> ResourceRequirements {
    let quantity = |q: &crate::quantity::Quantity| K8sQuantity(q.as_str().to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(&r.cpu_request)),
            ("memory".to_string(), quantity(&r.memory_request)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(&r.cpu_limit)),
            ("memory".to_string(), quantity(&r.memory_limit)),
        ])),
        ..ResourceRequirements::default()
    }
}
