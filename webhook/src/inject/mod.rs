//! Sidecar injection. Pure: a pod and an [`InjectConfig`] in, the JSON Patch that adds `weft-init` and `weft-proxy`
//! out (or `None` when there is nothing to do). No clocks, no clients; the server only encodes the result.

pub mod annotations;
pub mod containers;
pub mod workload;

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Deserialize as _;
use serde_json::Value;

pub use annotations::InjectError;
use annotations::{DEFAULT_CONTAINER, INJECT, INJECTED};
use containers::{INIT_NAME, PROXY_NAME};

use crate::admission::{AdmissionRequest, AdmissionResponse, Operation};
use crate::config::{InjectConfig, SidecarMode};

/// Why a pod is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Annotated `weft.dev/inject: "false"`.
    OptedOut,
    /// `hostNetwork: true`: capturing traffic would rewrite the node's iptables.
    HostNetwork,
    /// A `weft-init` or `weft-proxy` container is already there.
    AlreadyInjected,
    /// The pod has no spec.
    NoSpec,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted out with weft.dev/inject: \"false\"",
            Self::HostNetwork => "uses the host network",
            Self::AlreadyInjected => "already injected",
            Self::NoSpec => "has no spec",
        }
    }
}

/// Why this pod gets no sidecar, if it gets none.
pub fn skip_reason(pod: &Pod) -> Option<Skip> {
    let opted_out = pod_annotations(pod).get(INJECT).is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let Some(spec) = &pod.spec else { return Some(Skip::NoSpec) };
    let ours = |c: &Container| c.name == INIT_NAME || c.name == PROXY_NAME;
    if opted_out {
        Some(Skip::OptedOut)
    } else if spec.host_network == Some(true) {
        Some(Skip::HostNetwork)
    } else if spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(ours) {
        Some(Skip::AlreadyInjected)
    } else {
        None
    }
}

/// The patch that injects the proxy into `pod`, or `None` when it is skipped (see [`skip_reason`]).
/// Errors name the pod annotation that is malformed.
pub fn inject(pod: &Pod, config: &InjectConfig) -> Result<Option<Patch>, InjectError> {
    if skip_reason(pod).is_some() {
        return Ok(None);
    }
    let annotations = pod_annotations(pod);
    let resources = annotations::proxy_resources(&annotations, &config.resources)?;
    let init = containers::init_container(config, &resources, annotations::exclusion_flags(&annotations)?);
    let timeouts = annotations::proxy_timeouts(&annotations, &config.timeouts)?;
    let scope = annotations::proxy_scope(&annotations)?;
    let access_log = annotations::access_log(&annotations, config.access_log)?;
    let tracing = match &config.tracing {
        Some(tracing) => Some((tracing, annotations::trace_sampling(&annotations, tracing.sampling_percent)?)),
        None => None,
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let workload = workload::workload_name(pod);
    let options = containers::ProxyOptions {
        timeouts: &timeouts,
        scope,
        access_log,
        tracing,
        labels: &labels,
        workload: &workload,
    };
    let proxy = containers::proxy_container(config, &resources, options);
    let spec = pod.spec.as_ref();
    let has_init_containers = spec.is_some_and(|s| s.init_containers.is_some());
    let mut ops = Vec::new();
    match config.mode {
        SidecarMode::Native => prepend(&mut ops, "initContainers", has_init_containers, [init, proxy]),
        SidecarMode::Classic => {
            prepend(&mut ops, "initContainers", has_init_containers, [init]);
            prepend(&mut ops, "containers", true, [proxy]);
        }
    }
    if config.identity.is_some() {
        let values: Vec<Value> = containers::identity_volumes().iter().map(to_json).collect();
        append(&mut ops, "volumes", spec.is_some_and(|s| s.volumes.is_some()), values);
        // What tells the operator (and other sidecars) that this pod speaks mutual TLS.
        let label = vec![(weft_xds::mtls::TLS_MODE_LABEL, weft_xds::mtls::TLS_MODE_MUTUAL.to_string())];
        add_metadata(&mut ops, "labels", pod.metadata.labels.is_some(), label);
    }
    let mut new_annotations = vec![(INJECTED, config.mode.as_str().to_string())];
    let first_app = spec.and_then(|s| s.containers.first()).map(|c| c.name.clone());
    if let (SidecarMode::Classic, None, Some(first)) = (config.mode, annotations.get(DEFAULT_CONTAINER), first_app) {
        new_annotations.push((DEFAULT_CONTAINER, first));
    }
    add_annotations(&mut ops, pod.metadata.annotations.is_some(), new_annotations);
    Ok(Some(Patch(ops)))
}

/// The mutating webhook's answer to one AdmissionReview request.
pub fn review(request: &AdmissionRequest, config: &InjectConfig) -> AdmissionResponse {
    let uid = request.uid.as_str();
    if request.operation != Operation::Create || !request.kind.group.is_empty() || request.kind.kind != "Pod" {
        return AdmissionResponse::allow(uid);
    }
    let Some(object) = &request.object else {
        return AdmissionResponse::deny(uid, 400, "pod CREATE request has no object");
    };
    let pod = match Pod::deserialize(object) {
        Ok(pod) => pod,
        Err(err) => return AdmissionResponse::deny(uid, 400, format!("cannot read the pod: {err}")),
    };
    match inject(&pod, config) {
        Ok(Some(patch)) => AdmissionResponse::patch(uid, patch),
        Ok(None) => AdmissionResponse::allow(uid),
        Err(err) => AdmissionResponse::deny(uid, 400, format!("weft sidecar injection: {err}")),
    }
}

fn pod_annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

/// Inserts `containers` at the front of `/spec/<field>`, creating the array when the pod has none.
fn prepend<const N: usize>(ops: &mut Vec<PatchOperation>, field: &str, exists: bool, containers: [Container; N]) {
    let values = containers.iter().map(to_value);
    if exists {
        for (i, value) in values.enumerate() {
            ops.push(add(PointerBuf::from_tokens(["spec", field, &i.to_string()]), value));
        }
    } else {
        ops.push(add(PointerBuf::from_tokens(["spec", field]), Value::Array(values.collect())));
    }
}

/// Appends `values` to `/spec/<field>`, creating the array when the pod has none.
fn append(ops: &mut Vec<PatchOperation>, field: &str, exists: bool, values: Vec<Value>) {
    if exists {
        for value in values {
            ops.push(add(PointerBuf::from_tokens(["spec", field, "-"]), value));
        }
    } else {
        ops.push(add(PointerBuf::from_tokens(["spec", field]), Value::Array(values)));
    }
}

/// Adds annotations one by one (keys escaped: `weft.dev~1injected`), or the whole map when the pod has none.
fn add_annotations(ops: &mut Vec<PatchOperation>, exists: bool, annotations: Vec<(&str, String)>) {
    add_metadata(ops, "annotations", exists, annotations);
}

/// Adds entries to `/metadata/<field>` (labels or annotations) one by one, or the whole map when there is none.
fn add_metadata(ops: &mut Vec<PatchOperation>, field: &str, exists: bool, entries: Vec<(&str, String)>) {
    if exists {
        for (key, value) in entries {
            ops.push(add(PointerBuf::from_tokens(["metadata", field, key]), Value::String(value)));
        }
    } else {
        let map = entries.into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect();
        ops.push(add(PointerBuf::from_tokens(["metadata", field]), Value::Object(map)));
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Serializing a k8s-openapi `Container` cannot fail: it has only strings, numbers, maps and lists.
fn to_value(container: &Container) -> Value {
    to_json(container)
}

fn to_json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::config::TracingConfig;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn annotation_keys_are_escaped() {
        let p = pod(json!({"metadata": {"annotations": {"a": "b"}}, "spec": {"containers": [{"name": "app"}]}}));
        let config = crate::testing::config(SidecarMode::Native);
        let patch = serde_json::to_value(inject(&p, &config).unwrap().unwrap()).unwrap();
        let paths: Vec<&str> = patch.as_array().unwrap().iter().map(|op| op["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["/spec/initContainers", "/spec/volumes", "/metadata/labels", "/metadata/annotations/weft.dev~1injected"]
        );
    }

    #[test]
    fn mutual_tls_adds_the_token_and_trust_bundle_volumes_after_the_pods_own() {
        let p = pod(json!({"spec": {"containers": [{"name": "app"}], "volumes": [{"name": "data", "emptyDir": {}}]}}));
        let config = crate::testing::config(SidecarMode::Native);
        let patch = inject(&p, &config).unwrap().unwrap();
        let mut injected = serde_json::to_value(&p).unwrap();
        json_patch::patch(&mut injected, &patch).unwrap();
        let volumes: Vec<&str> =
            injected["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(volumes, ["data", "weft-token", "weft-ca-root-cert"]);
        let token = &injected["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["audience"], "weft-ca");
        let plaintext = InjectConfig { identity: None, ..config };
        let patch = serde_json::to_value(inject(&p, &plaintext).unwrap().unwrap()).unwrap();
        assert!(!patch.to_string().contains("weft-token"), "no identity, no token: {patch}");
    }

    #[test]
    fn proxies_trace_when_a_collector_is_set_at_the_pods_rate() {
        let env_of = |annotations: Value, config: &InjectConfig| {
            let p = pod(json!({"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "app"}]}}));
            let mut injected = serde_json::to_value(&p).unwrap();
            json_patch::patch(&mut injected, &inject(&p, config).unwrap().unwrap()).unwrap();
            let env = injected["spec"]["initContainers"][1]["env"].as_array().unwrap().clone();
            let value = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
            (value("WEFT_TRACE_COLLECTOR"), value("WEFT_TRACE_SAMPLING"))
        };
        let off = crate::testing::config(SidecarMode::Native);
        assert_eq!(env_of(json!({"weft.dev/trace-sampling": "50"}), &off), (None, None), "no collector, no tracing");
        let tracing = TracingConfig { collector: "http://otel.observability:4317".into(), sampling_percent: 1.0 };
        let on = InjectConfig { tracing: Some(tracing), ..off };
        let collector = Some(json!("http://otel.observability:4317"));
        assert_eq!(env_of(json!({}), &on), (collector.clone(), Some(json!("1"))));
        assert_eq!(env_of(json!({"weft.dev/trace-sampling": "12.5"}), &on), (collector, Some(json!("12.5"))));
        let p = pod(
            json!({"metadata": {"annotations": {"weft.dev/trace-sampling": "all"}}, "spec": {"containers": [{"name": "app"}]}}),
        );
        assert!(inject(&p, &on).unwrap_err().to_string().contains("weft.dev/trace-sampling"));
    }

    #[test]
    fn skip_reasons() {
        let with = |extra: Value| {
            let mut p = json!({"metadata": {}, "spec": {"containers": [{"name": "app"}]}});
            json_patch::merge(&mut p, &extra);
            skip_reason(&pod(p))
        };
        assert_eq!(with(json!({})), None);
        assert_eq!(with(json!({"metadata": {"annotations": {"weft.dev/inject": "False"}}})), Some(Skip::OptedOut));
        assert_eq!(with(json!({"metadata": {"annotations": {"weft.dev/inject": "true"}}})), None);
        assert_eq!(with(json!({"spec": {"hostNetwork": true}})), Some(Skip::HostNetwork));
        assert_eq!(with(json!({"spec": {"initContainers": [{"name": "weft-init"}]}})), Some(Skip::AlreadyInjected));
        assert_eq!(skip_reason(&pod(json!({"metadata": {}}))), Some(Skip::NoSpec));
    }
}
