//! What every render of the Weft charts must satisfy, and the small JSON helpers the checks read manifests with;
//! the tests themselves are in `tests/chart.rs`.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use weft_e2e::chart::{Helm, Manifests, chart_dir, repo_root};

pub(crate) fn helm() -> Helm {
    Helm::find().unwrap_or_else(|err| panic!("{err:#}"))
}

/// What a render of charts/weft must show, from the values it was rendered with.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub(crate) namespace: &'static str,
    pub(crate) operator_replicas: i64,
    pub(crate) webhook_replicas: i64,
    pub(crate) operator_image: String,
    pub(crate) webhook_image: String,
    pub(crate) proxy_image: String,
    /// `--namespaces` of the operator; `None`: the flag is absent (all namespaces).
    pub(crate) watched: Option<&'static str>,
    pub(crate) native_sidecars: &'static str,
    pub(crate) injection: (&'static str, i64),
    pub(crate) validation: (&'static str, i64),
    pub(crate) cert_manager: bool,
    /// Issuer of the Certificate when cert_manager: (kind, name).
    pub(crate) issuer: (&'static str, &'static str),
    pub(crate) proxy_resources: [&'static str; 4],
    pub(crate) pdbs: bool,
    /// requestHeaders, streamIdle, idle.
    pub(crate) proxy_timeouts: [&'static str; 3],
    /// `--proxy-scope` of the operator.
    pub(crate) proxy_scope: &'static str,
    /// `operator.readSecrets`: the Secrets rule in the ClusterRole, no `--read-secrets false`.
    pub(crate) read_secrets: bool,
    /// `--proxy-access-log` of the webhook.
    pub(crate) proxy_access_log: &'static str,
    /// `--proxy-trace-collector` and `--proxy-trace-sampling` of the webhook.
    pub(crate) proxy_tracing: [&'static str; 2],
    /// `mtls.enabled`: the operator's TLS port (certificates, xDS), and proxies injected to dial it.
    pub(crate) mtls: bool,
    /// Whether the operator serves plaintext xDS on 15010: always without mutual TLS, else `mtls.plaintextXds`.
    pub(crate) plaintext_xds: bool,
}

pub(crate) fn defaults() -> Expect {
    Expect {
        namespace: "weft-system",
        operator_replicas: 2,
        webhook_replicas: 2,
        operator_image: "ghcr.io/weft-mesh/weft-operator:0.1.0".into(),
        webhook_image: "ghcr.io/weft-mesh/weft-webhook:0.1.0".into(),
        proxy_image: "ghcr.io/weft-mesh/weft-proxy:0.1.0".into(),
        watched: None,
        native_sidecars: "auto",
        injection: ("Fail", 10),
        validation: ("Fail", 10),
        cert_manager: false,
        issuer: ("Issuer", "weft-webhook-selfsigned"),
        proxy_resources: ["100m", "128Mi", "1000m", "512Mi"],
        pdbs: true,
        proxy_timeouts: ["10s", "5m", "1h"],
        proxy_access_log: "false",
        proxy_scope: "namespace",
        read_secrets: true,
        proxy_tracing: ["", "1"],
        mtls: true,
        plaintext_xds: false,
    }
}

/// Every value a user is likely to change, changed.
pub(crate) const CUSTOM_SETS: &[&str] = &[
    "--set",
    "operator.replicas=3,webhook.replicas=3",
    "--set",
    "operator.image.repository=registry.example.com/mesh/operator,operator.image.tag=1.2.3",
    "--set",
    "webhook.image.repository=registry.example.com/mesh/webhook,webhook.image.tag=1.2.4",
    "--set",
    "proxy.image.repository=registry.example.com/mesh/proxy,proxy.image.tag=1.2.5",
    "--set",
    "operator.namespaces={shop,payments}",
    "--set",
    "webhook.nativeSidecars=false",
    "--set",
    "webhook.injection.failurePolicy=Ignore,webhook.injection.timeoutSeconds=5",
    "--set",
    "webhook.validation.failurePolicy=Ignore,webhook.validation.timeoutSeconds=7",
    "--set",
    "certManager.enabled=true",
    "--set",
    "proxy.resources.requests.cpu=200m,proxy.resources.requests.memory=64Mi",
    "--set",
    "proxy.resources.limits.cpu=2,proxy.resources.limits.memory=1Gi",
    "--set",
    "operator.podDisruptionBudget.enabled=false,webhook.podDisruptionBudget.enabled=false",
    "--set",
    "proxy.timeouts.requestHeaders=2s,proxy.timeouts.streamIdle=30m,proxy.timeouts.idle=0",
    "--set",
    "operator.proxyScope=on-demand",
    "--set",
    "operator.readSecrets=false",
    "--set",
    "proxy.accessLog=true",
    "--set",
    "observability.tracing.collector=http://otel.observability:4317,observability.tracing.sampling=0.5",
    "--set",
    "mtls.plaintextXds=true",
];

pub(crate) fn custom() -> Expect {
    Expect {
        namespace: "mesh",
        operator_replicas: 3,
        webhook_replicas: 3,
        operator_image: "registry.example.com/mesh/operator:1.2.3".into(),
        webhook_image: "registry.example.com/mesh/webhook:1.2.4".into(),
        proxy_image: "registry.example.com/mesh/proxy:1.2.5".into(),
        watched: Some("shop,payments"),
        native_sidecars: "false",
        injection: ("Ignore", 5),
        validation: ("Ignore", 7),
        cert_manager: true,
        issuer: ("Issuer", "weft-webhook-selfsigned"),
        proxy_resources: ["200m", "64Mi", "2", "1Gi"],
        pdbs: false,
        proxy_timeouts: ["2s", "30m", "0"],
        proxy_scope: "on-demand",
        read_secrets: false,
        proxy_access_log: "true",
        proxy_tracing: ["http://otel.observability:4317", "0.5"],
        mtls: true,
        plaintext_xds: true,
    }
}

pub(crate) fn render(expect: &Expect, args: &[&str]) -> Manifests {
    helm().template("weft", &chart_dir("weft"), expect.namespace, args).unwrap_or_else(|err| panic!("{err:#}"))
}

// ---- small JSON helpers ------------------------------------------------------------------------------------------

pub(crate) fn s(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}"))
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().map(|v| s(v).to_string()).collect()).unwrap_or_default()
}

/// The value following `flag` in an args list.
pub(crate) fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

pub(crate) fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"].as_array().expect("containers")
}

pub(crate) fn only_container(deployment: &Value) -> &Value {
    let all = containers(deployment);
    assert_eq!(all.len(), 1, "{}", deployment["metadata"]["name"]);
    &all[0]
}

/// The number of a container port given by name or number.
pub(crate) fn resolve_port(container: &Value, port: &Value) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("container {} has no port {port}", container["name"]))
}

/// Whether every label of `selector` is on `labels`.
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector labels");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(crate) fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

pub(crate) fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) const CLUSTER_SCOPED: [&str; 5] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "CustomResourceDefinition",
];

// ---- the checks every render of charts/weft must pass ------------------------------------------------------------

pub(crate) fn check_release(m: &Manifests, e: &Expect) {
    check_metadata(m, e);
    check_operator(m, e);
    check_webhook(m, e);
    check_webhook_configurations(m, e);
    check_tls(m, e);
    check_rbac(m, e);
    check_workloads(m);
    check_pdbs(m, e);
}

/// Standard labels on every object and on every pod; namespaced objects in the release namespace; no duplicates.
pub(crate) fn check_metadata(m: &Manifests, e: &Expect) {
    let mut seen = BTreeSet::new();
    for object in &m.objects {
        let kind = s(&object["kind"]);
        let name = s(&object["metadata"]["name"]);
        assert!(seen.insert((kind, name)), "{kind}/{name} rendered twice");
        let mut label_sets = vec![&object["metadata"]["labels"]];
        if kind == "Deployment" {
            label_sets.push(pod_labels(object));
        }
        for labels in label_sets {
            for key in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/component",
                "app.kubernetes.io/part-of",
                "app.kubernetes.io/managed-by",
                "helm.sh/chart",
            ] {
                assert!(labels[key].as_str().is_some_and(|v| !v.is_empty()), "{kind}/{name} lacks label {key}");
            }
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{kind}/{name}");
            assert_eq!(labels["app.kubernetes.io/instance"], "weft", "{kind}/{name}");
        }
        if CLUSTER_SCOPED.contains(&kind) {
            assert!(object["metadata"]["namespace"].is_null(), "cluster-scoped {kind}/{name} has a namespace");
        } else {
            assert_eq!(object["metadata"]["namespace"], e.namespace, "{kind}/{name} namespace");
        }
    }
}

pub(crate) fn check_operator(m: &Manifests, e: &Expect) {
    let deployment = m.get("Deployment", "weft-operator").unwrap();
    assert_eq!(deployment["spec"]["replicas"], e.operator_replicas);
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment)));
    let container = only_container(deployment);
    assert_eq!(container["image"], e.operator_image.as_str());
    let args = strings(&container["args"]);
    assert_eq!(flag(&args, "--xds-listen"), e.plaintext_xds.then_some("0.0.0.0:15010"), "{args:?}");
    assert_eq!(flag(&args, "--secure-listen"), e.mtls.then_some("0.0.0.0:15012"), "{args:?}");
    assert_eq!(flag(&args, "--metrics-listen"), Some("0.0.0.0:9090"), "{args:?}");
    assert_eq!(flag(&args, "--namespaces"), e.watched, "{args:?}");
    assert_eq!(flag(&args, "--proxy-scope"), Some(e.proxy_scope), "{args:?}");
    let read_secrets = if e.read_secrets { None } else { Some("false") };
    assert_eq!(flag(&args, "--read-secrets"), read_secrets, "{args:?}");
    assert!(!args.iter().any(|a| a == "--config-dir"), "Kubernetes mode, not standalone: {args:?}");

    // Leader election: identity and Lease namespace from the downward API.
    let env = container["env"].as_array().expect("operator env");
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = env.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("operator env lacks {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
    }

    // The listen ports, the container ports, the probes and the Service agree.
    let container_port = |name: &str| container["ports"].as_array().unwrap().iter().any(|p| p["name"] == name);
    assert_eq!(container_port("xds"), e.plaintext_xds, "plaintext xDS container port");
    assert_eq!(container_port("xds-tls"), e.mtls, "TLS xDS container port");
    assert_eq!(resolve_port(container, &json!("metrics")), 9090);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "operator {probe}");
        assert_eq!(resolve_port(container, &get["port"]), 9090, "operator {probe} port");
    }
    let service = m.get("Service", "weft-operator").unwrap();
    assert!(
        selects(&service["spec"]["selector"], pod_labels(deployment)),
        "Service weft-operator selects no operator pod"
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    let port = |name: &str| ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}"));
    let serves = |name: &str| ports.iter().any(|p| p["name"] == name);
    assert_eq!(serves("xds"), e.plaintext_xds, "Service weft-operator's plaintext xDS port");
    assert_eq!(serves("xds-tls"), e.mtls, "Service weft-operator's TLS xDS port");
    if e.plaintext_xds {
        assert_eq!(port("xds")["port"], 15010);
        assert_eq!(port("xds")["appProtocol"], "grpc");
        assert_eq!(resolve_port(container, &port("xds")["targetPort"]), 15010);
    }
    if e.mtls {
        assert_eq!(resolve_port(container, &port("xds-tls")["targetPort"]), 15012);
    }
    assert_eq!(port("metrics")["port"], 9090);
    assert_eq!(resolve_port(container, &port("metrics")["targetPort"]), 9090);
}

pub(crate) fn check_webhook(m: &Manifests, e: &Expect) {
    let deployment = m.get("Deployment", "weft-webhook").unwrap();
    assert_eq!(deployment["spec"]["replicas"], e.webhook_replicas);
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment)));
    let container = only_container(deployment);
    assert_eq!(container["image"], e.webhook_image.as_str());
    let args = strings(&container["args"]);
    assert_eq!(flag(&args, "--listen"), Some("0.0.0.0:9443"), "{args:?}");
    assert_eq!(flag(&args, "--proxy-image"), Some(e.proxy_image.as_str()), "{args:?}");
    assert_eq!(flag(&args, "--native-sidecars"), Some(e.native_sidecars), "{args:?}");
    let [cpu, memory, cpu_limit, memory_limit] = e.proxy_resources;
    assert_eq!(flag(&args, "--proxy-cpu"), Some(cpu), "{args:?}");
    assert_eq!(flag(&args, "--proxy-memory"), Some(memory), "{args:?}");
    assert_eq!(flag(&args, "--proxy-cpu-limit"), Some(cpu_limit), "{args:?}");
    assert_eq!(flag(&args, "--proxy-memory-limit"), Some(memory_limit), "{args:?}");
    let [request_headers, stream_idle, idle] = e.proxy_timeouts;
    assert_eq!(flag(&args, "--proxy-request-headers-timeout"), Some(request_headers), "{args:?}");
    assert_eq!(flag(&args, "--proxy-stream-idle-timeout"), Some(stream_idle), "{args:?}");
    assert_eq!(flag(&args, "--proxy-idle-timeout"), Some(idle), "{args:?}");
    assert_eq!(flag(&args, "--proxy-access-log"), Some(e.proxy_access_log), "{args:?}");
    let tracing = [flag(&args, "--proxy-trace-collector"), flag(&args, "--proxy-trace-sampling")];
    assert_eq!(tracing, e.proxy_tracing.map(Some), "{args:?}");

    // The proxies it injects dial the operator Service's xDS port: the TLS one (certificates and config) with
    // mutual TLS on, which it is by default, else the plaintext one.
    let operator_service = m.get("Service", "weft-operator").unwrap();
    let port_named =
        |name: &str| operator_service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
    let (scheme, port_name) = if e.mtls { ("https", "xds-tls") } else { ("http", "xds") };
    let port = port_named(port_name).unwrap_or_else(|| panic!("the Service has no port {port_name}"));
    let expected = format!("{scheme}://weft-operator.{}.svc:{}", e.namespace, port["port"]);
    assert_eq!(flag(&args, "--xds-address"), Some(expected.as_str()), "{args:?}");
    assert_eq!(flag(&args, "--mtls"), Some(if e.mtls { "true" } else { "false" }), "{args:?}");
    if e.mtls {
        assert_eq!(flag(&args, "--ca-address"), Some(expected.as_str()), "{args:?}");
    }

    // It serves HTTPS on 9443, probed there.
    assert_eq!(resolve_port(container, &json!("https")), 9443);
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "webhook {probe}");
        assert_eq!(get["scheme"], "HTTPS", "webhook {probe}");
        assert_eq!(resolve_port(container, &get["port"]), 9443, "webhook {probe} port");
    }

    // The certificate files it is told to read come from the TLS Secret's volume.
    let mounts = container["volumeMounts"].as_array().expect("webhook volumeMounts");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().expect("webhook volumes");
    for file_flag in ["--tls-cert", "--tls-key"] {
        let file = flag(&args, file_flag).unwrap_or_else(|| panic!("no {file_flag}"));
        let mount = mounts
            .iter()
            .find(|v| file.starts_with(&format!("{}/", s(&v["mountPath"]))))
            .unwrap_or_else(|| panic!("{file_flag} {file} is on no mounted volume"));
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("volume of the mount");
        assert_eq!(volume["secret"]["secretName"], "weft-webhook-tls");
        let key = file.rsplit('/').next().unwrap();
        assert!(["tls.crt", "tls.key"].contains(&key), "{file_flag} {file}");
    }
    let sa = s(&deployment["spec"]["template"]["spec"]["serviceAccountName"]);
    m.get("ServiceAccount", sa).unwrap();
    // Only `auto` asks the API server (/version); otherwise no token is mounted at all.
    let automount = deployment["spec"]["template"]["spec"]["automountServiceAccountToken"].as_bool();
    assert_eq!(automount, Some(e.native_sidecars == "auto"), "webhook automountServiceAccountToken");
}

/// The one port of Service weft-webhook, which targets the webhook's HTTPS port.
pub(crate) fn webhook_service_port(m: &Manifests) -> i64 {
    let service = m.get("Service", "weft-webhook").unwrap();
    let deployment = m.get("Deployment", "weft-webhook").unwrap();
    assert!(
        selects(&service["spec"]["selector"], pod_labels(deployment)),
        "Service weft-webhook selects no webhook pod"
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(resolve_port(only_container(deployment), &ports[0]["targetPort"]), 9443);
    ports[0]["port"].as_i64().unwrap()
}

pub(crate) fn check_webhook_configurations(m: &Manifests, e: &Expect) {
    let service_port = webhook_service_port(m);
    let mutating: Vec<&Value> = m.of_kind("MutatingWebhookConfiguration").collect();
    let validating: Vec<&Value> = m.of_kind("ValidatingWebhookConfiguration").collect();
    assert_eq!((mutating.len(), validating.len()), (1, 1), "{}", m.summary());
    for (configuration, path, (failure_policy, timeout)) in
        [(mutating[0], "/inject", e.injection), (validating[0], "/validate", e.validation)]
    {
        let hooks = configuration["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1);
        let hook = &hooks[0];
        assert_eq!(s(&hook["name"]).split('.').count(), 3, "webhook names are fully qualified");
        let service = &hook["clientConfig"]["service"];
        assert_eq!(service["name"], "weft-webhook", "{path}");
        assert_eq!(service["namespace"], e.namespace, "{path}");
        assert_eq!(service["port"], service_port, "{path}");
        assert_eq!(service["path"], path);
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{path}");
        assert_eq!(hook["sideEffects"], "None", "{path}");
        assert_eq!(hook["failurePolicy"], failure_policy, "{path}");
        assert_eq!(hook["timeoutSeconds"], timeout, "{path}");
    }

    let inject = &mutating[0]["webhooks"][0];
    assert_eq!(
        inject["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}])
    );
    assert_eq!(inject["reinvocationPolicy"], "Never");
    assert!(inject["objectSelector"].is_null(), "the webhook itself honours the opt-out annotation");
    let expressions = inject["namespaceSelector"]["matchExpressions"].as_array().expect("matchExpressions");
    assert!(inject["namespaceSelector"]["matchLabels"].is_null());
    assert!(
        expressions.contains(&json!({"key": "weft.dev/inject", "operator": "In", "values": ["enabled"]})),
        "injection must require weft.dev/inject=enabled: {expressions:?}"
    );
    let excluded = expressions
        .iter()
        .find(|x| x["key"] == "kubernetes.io/metadata.name" && x["operator"] == "NotIn")
        .map(|x| strings(&x["values"]))
        .expect("system namespaces excluded by name");
    for ns in ["kube-system", "kube-public", "kube-node-lease", e.namespace] {
        assert!(excluded.iter().any(|x| x == ns), "{ns} is not excluded from injection: {excluded:?}");
    }

    let validate = &validating[0]["webhooks"][0];
    let rules = validate["rules"].as_array().unwrap();
    let mut covered = BTreeSet::new();
    for rule in rules {
        assert_eq!(rule["apiVersions"], json!(["v1alpha1"]));
        let operations: BTreeSet<String> = strings(&rule["operations"]).into_iter().collect();
        assert_eq!(operations, BTreeSet::from(["CREATE".to_string(), "UPDATE".to_string()]));
        for group in strings(&rule["apiGroups"]) {
            covered.extend(strings(&rule["resources"]).into_iter().map(|plural| format!("{plural}.{group}")));
        }
    }
    let crds: BTreeSet<String> = crd_manifests().into_keys().collect();
    assert_eq!(covered, crds, "the validating webhook must cover every Weft CRD, each in its own group");
}

/// crds/manifests/*.yaml by CRD name.
pub(crate) fn crd_manifests() -> BTreeMap<String, Value> {
    let dir = repo_root().join("crds/manifests");
    let mut crds = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let crd = read_yaml(&path);
            crds.insert(s(&crd["metadata"]["name"]).to_string(), crd);
        }
    }
    assert!(!crds.is_empty(), "no CRDs in {}", dir.display());
    crds
}

pub(crate) fn b64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s(value)).unwrap_or_else(|e| panic!("not base64 ({e}): {value}"))
}

pub(crate) fn check_tls(m: &Manifests, e: &Expect) {
    let configurations: Vec<&Value> =
        m.of_kind("MutatingWebhookConfiguration").chain(m.of_kind("ValidatingWebhookConfiguration")).collect();
    let deployment = m.get("Deployment", "weft-webhook").unwrap();
    let checksum = &deployment["spec"]["template"]["metadata"]["annotations"]["checksum/webhook-tls"];
    if e.cert_manager {
        assert!(m.find("Secret", "weft-webhook-tls").is_none(), "cert-manager owns the Secret");
        assert!(checksum.is_null(), "with cert-manager the webhook reloads renewed files; no restart annotation");
        let certificate = m.get("Certificate", "weft-webhook").unwrap();
        assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
        assert_eq!(certificate["spec"]["secretName"], "weft-webhook-tls");
        let names = strings(&certificate["spec"]["dnsNames"]);
        assert!(names.contains(&format!("weft-webhook.{}.svc", e.namespace)), "{names:?}");
        let (kind, name) = e.issuer;
        assert_eq!(certificate["spec"]["issuerRef"]["kind"], kind);
        assert_eq!(certificate["spec"]["issuerRef"]["name"], name);
        assert_eq!(m.find("Issuer", "weft-webhook-selfsigned").is_some(), name == "weft-webhook-selfsigned");
        let inject_from = format!("{}/weft-webhook", e.namespace);
        for configuration in configurations {
            assert_eq!(
                configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                inject_from.as_str()
            );
            assert!(configuration["webhooks"][0]["clientConfig"]["caBundle"].is_null(), "cainjector fills caBundle");
        }
        return;
    }
    assert!(m.of_kind("Certificate").next().is_none() && m.of_kind("Issuer").next().is_none());
    let secret = m.get("Secret", "weft-webhook-tls").unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let data = &secret["data"];
    for configuration in &configurations {
        assert_eq!(
            configuration["webhooks"][0]["clientConfig"]["caBundle"], data["ca.crt"],
            "caBundle is the Secret's CA"
        );
        assert!(configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_null());
    }
    // The pods' checksum is of exactly this material (Helm's toJson: sorted keys, no spaces), so it changes only
    // when the Secret does.
    let material: BTreeMap<&str, &Value> =
        ["ca.crt", "tls.crt", "tls.key"].into_iter().map(|k| (k, &data[k])).collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, serde_json::to_string(&material).unwrap().as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(s(checksum), hex, "checksum/webhook-tls");

    // The API server dials weft-webhook.<ns>.svc and trusts caBundle: a real handshake must succeed with that name
    // (and fail with another, so the check means something).
    let (ca, cert, key) = (b64(&data["ca.crt"]), b64(&data["tls.crt"]), b64(&data["tls.key"]));
    let host = format!("weft-webhook.{}.svc", e.namespace);
    handshake(&ca, &cert, &key, &host).unwrap_or_else(|err| panic!("TLS to {host} trusting caBundle: {err}"));
    assert!(handshake(&ca, &cert, &key, "weft-webhook.elsewhere.svc").is_err(), "the certificate must name its host");
}

/// A TLS 1.3 handshake in memory: a server with `cert`/`key`, a client trusting only `ca`, dialling `host`.
pub(crate) fn handshake(ca: &[u8], cert: &[u8], key: &[u8], host: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca) {
        roots.add(der.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let mut client = rustls::ClientConnection::new(Arc::new(client), name).map_err(|e| e.to_string())?;
    let mut server = rustls::ServerConnection::new(Arc::new(server)).map_err(|e| e.to_string())?;
    for _ in 0..10 {
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).map_err(|e| e.to_string())?;
        server.read_tls(&mut bytes.as_slice()).map_err(|e| e.to_string())?;
        server.process_new_packets().map_err(|e| format!("server: {e}"))?;
        let mut bytes = Vec::new();
        server.write_tls(&mut bytes).map_err(|e| e.to_string())?;
        client.read_tls(&mut bytes.as_slice()).map_err(|e| e.to_string())?;
        client.process_new_packets().map_err(|e| format!("client: {e}"))?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

pub(crate) fn check_rbac(m: &Manifests, e: &Expect) {
    let files = chart_dir("weft").join("files");
    let deployment = m.get("Deployment", "weft-operator").unwrap();
    let sa = s(&deployment["spec"]["template"]["spec"]["serviceAccountName"]);
    m.get("ServiceAccount", sa).unwrap();
    let subject = json!({"kind": "ServiceAccount", "name": sa, "namespace": e.namespace});

    for (role_kind, binding_kind, file) in [
        ("ClusterRole", "ClusterRoleBinding", "operator-clusterrole-rules.yaml"),
        ("Role", "RoleBinding", "operator-role-rules.yaml"),
    ] {
        let mut expected = read_yaml(&files.join(file));
        assert!(expected.as_array().is_some_and(|r| !r.is_empty()), "{file} is not a list of rules");
        if role_kind == "ClusterRole" && e.read_secrets {
            let secrets = read_yaml(&files.join("operator-secrets-rules.yaml"));
            let (Some(all), Some(more)) = (expected.as_array_mut(), secrets.as_array()) else {
                panic!("operator-secrets-rules.yaml is not a list of rules")
            };
            all.extend(more.iter().cloned());
        }
        // Bound to the operator's ServiceAccount, by exactly one binding of the right kind.
        let bindings: Vec<&Value> =
            m.of_kind(binding_kind).filter(|b| b["subjects"].as_array().unwrap().contains(&subject)).collect();
        assert_eq!(bindings.len(), 1, "{binding_kind}s of {sa}: {}", m.summary());
        let role_ref = &bindings[0]["roleRef"];
        assert_eq!(role_ref["kind"], role_kind);
        assert_eq!(role_ref["apiGroup"], "rbac.authorization.k8s.io");
        let role = m.get(role_kind, s(&role_ref["name"])).unwrap();
        assert_eq!(role["rules"], expected, "{role_kind} rules must be {file} verbatim (and the Secrets rule)");
        if role_kind == "Role" {
            assert_eq!(bindings[0]["metadata"]["namespace"], e.namespace);
        }
    }
    // The webhook needs no API access beyond /version (open to every authenticated client): nothing is bound to it.
    let webhook_sa = json!({"kind": "ServiceAccount", "name": "weft-webhook", "namespace": e.namespace});
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in m.of_kind(kind) {
            assert!(!binding["subjects"].as_array().unwrap().contains(&webhook_sa), "{kind} grants the webhook access");
        }
    }
}

/// Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp, requests and limits everywhere.
pub(crate) fn check_workloads(m: &Manifests) {
    let deployments: Vec<&Value> = m.of_kind("Deployment").collect();
    assert_eq!(deployments.len(), 2, "{}", m.summary());
    for deployment in deployments {
        let name = s(&deployment["metadata"]["name"]);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(pod["securityContext"]["runAsUser"].as_i64().is_some_and(|u| u > 0), "{name} runs as root");
        assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null(), "{name}");
        let all = containers(deployment).iter().chain(pod["initContainers"].as_array().into_iter().flatten());
        for container in all {
            let c = s(&container["name"]);
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}/{c}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}/{c}");
            assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}/{c}");
            assert!(security["capabilities"]["add"].is_null(), "{name}/{c}");
            assert!(security["privileged"].is_null() || security["privileged"] == false, "{name}/{c}");
            assert!(security["runAsUser"].is_null() || security["runAsUser"].as_i64() > Some(0), "{name}/{c}");
            let seccomp = security["seccompProfile"]["type"]
                .as_str()
                .or(pod["securityContext"]["seccompProfile"]["type"].as_str());
            assert_eq!(seccomp, Some("RuntimeDefault"), "{name}/{c}");
            for side in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(!container["resources"][side][resource].is_null(), "{name}/{c} has no {side}.{resource}");
                }
            }
            let pull = s(&container["imagePullPolicy"]);
            assert!(["IfNotPresent", "Always", "Never"].contains(&pull), "{name}/{c}");
        }
    }
}

pub(crate) fn check_pdbs(m: &Manifests, e: &Expect) {
    let pdbs: Vec<&Value> = m.of_kind("PodDisruptionBudget").collect();
    if !e.pdbs {
        assert!(pdbs.is_empty(), "{}", m.summary());
        return;
    }
    for name in ["weft-operator", "weft-webhook"] {
        let deployment = m.get("Deployment", name).unwrap();
        let covering: Vec<&&Value> =
            pdbs.iter().filter(|p| selects(&p["spec"]["selector"]["matchLabels"], pod_labels(deployment))).collect();
        assert_eq!(covering.len(), 1, "PodDisruptionBudgets of {name}");
        assert_eq!(covering[0]["spec"]["maxUnavailable"], 1, "{name}: one replica at a time");
    }
}
