//! The Helm charts, checked without a cluster: `helm lint --strict`, then `helm template` with default and with
//! non-default values, every rendered manifest parsed and the things that break an install checked: the webhook
//! Service against both webhook configurations, the generated certificate (a real TLS handshake trusting the
//! caBundle), the injection namespaceSelector, RBAC equal to the rule files the operator's own test checks, ports,
//! probes and args against each other, security contexts, resources, labels, the CRDs against `crds/manifests`,
//! and the values schema. Needs helm: `scripts/install-helm.sh` (run by `make test`).

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chart_checks;

use chart_checks::*;
use serde_json::json;
use weft_e2e::chart::{FakeApiServer, Manifests, chart_dir, template_against};

// ---- the tests ---------------------------------------------------------------------------------------------------

#[test]
fn manifests_parse_helm_output_and_skip_empty_documents() {
    let text = "---\n# Source: x/templates/a.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\n\
                # Source: x/templates/empty.yaml\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
    let manifests = Manifests::parse(text).unwrap();
    assert_eq!(manifests.summary(), "Service/a, ConfigMap/b");
    assert!(manifests.get("Service", "b").is_err());
    assert!(Manifests::parse("apiVersion: v1\nmetadata: {name: a}\n").is_err(), "a document without a kind");
}

#[test]
fn both_charts_pass_helm_lint_strict() {
    let helm = helm();
    helm.lint(&chart_dir("weft-crds"), &[]).unwrap();
    helm.lint(&chart_dir("weft-crds"), &["--set", "keepOnUninstall=false"]).unwrap();
    helm.lint(&chart_dir("weft"), &["--namespace", "weft-system"]).unwrap();
    let mut custom = vec!["--namespace", "mesh"];
    custom.extend_from_slice(CUSTOM_SETS);
    helm.lint(&chart_dir("weft"), &custom).unwrap();
}

#[test]
fn default_values_render_a_consistent_release() {
    let expect = defaults();
    check_release(&render(&expect, &[]), &expect);
}

#[test]
fn non_default_values_are_followed_everywhere() {
    let expect = custom();
    check_release(&render(&expect, CUSTOM_SETS), &expect);
}

#[test]
fn native_sidecars_true_and_an_existing_cert_manager_issuer() {
    let mut expect = defaults();
    expect.native_sidecars = "true";
    expect.cert_manager = true;
    expect.issuer = ("ClusterIssuer", "corp-ca");
    let args = [
        "--set",
        "webhook.nativeSidecars=true,certManager.enabled=true",
        "--set",
        "certManager.issuerRef.name=corp-ca,certManager.issuerRef.kind=ClusterIssuer",
    ];
    check_release(&render(&expect, &args), &expect);
}

#[test]
fn without_mutual_tls_proxies_take_their_config_over_plaintext_xds() {
    let mut expect = defaults();
    expect.mtls = false;
    expect.plaintext_xds = true;
    check_release(&render(&expect, &["--set", "mtls.enabled=false"]), &expect);
}

#[test]
fn an_operator_with_one_namespace_and_one_replica() {
    let mut expect = defaults();
    expect.namespace = "istio-free";
    expect.operator_replicas = 1;
    expect.watched = Some("shop");
    check_release(&render(&expect, &["--set", "operator.replicas=1", "--set", "operator.namespaces={shop}"]), &expect);
}

/// `helm template` cannot look the existing Secret up, so each render generates a new CA and certificate (a real
/// install or upgrade reuses the Secret: see `weft.webhookTLS` in charts/weft/templates/_helpers.tpl). Everything
/// else must be byte-for-byte stable, or every `helm upgrade` would roll the pods.
#[test]
fn two_renders_differ_only_in_the_generated_certificates() {
    let helm = helm();
    let render = || helm.template_text("weft", &chart_dir("weft"), "weft-system", &[]).unwrap();
    let mask = |text: String| -> String {
        text.lines()
            .map(|line| {
                let trimmed = line.trim_start();
                for key in ["ca.crt: ", "tls.crt: ", "tls.key: ", "caBundle: ", "checksum/webhook-tls: "] {
                    if trimmed.starts_with(key) {
                        return format!("{}{key}<generated>", &line[..line.len() - trimmed.len()]);
                    }
                }
                line.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (first, second) = (render(), render());
    assert_ne!(first, second, "helm template generates new certificates on every render");
    assert_eq!(mask(first), mask(second));
    // With cert-manager nothing is generated: the renders are identical.
    let cm = || helm.template_text("weft", &chart_dir("weft"), "weft-system", &["--set", "certManager.enabled=true"]);
    assert_eq!(cm().unwrap(), cm().unwrap());
}

/// On `helm upgrade` the chart finds the webhook's Secret (`lookup`) and keeps its CA and certificate: the
/// caBundle the API server trusts stays valid and the pods' checksum does not change, so nothing restarts. Rendered
/// with `--dry-run=server` against a fake API server holding the Secret an earlier install made.
#[test]
fn an_upgrade_reuses_the_webhook_certificate() {
    let helm = helm();
    let expect = defaults();
    let chart = chart_dir("weft");
    let secret_path = format!("/api/v1/namespaces/{}/secrets/weft-webhook-tls", expect.namespace);
    let mut installed = render(&expect, &[]).get("Secret", "weft-webhook-tls").unwrap().clone();
    // What helm itself puts on the objects it installs; without it helm refuses to take the Secret over.
    installed["metadata"]["annotations"] =
        json!({"meta.helm.sh/release-name": "weft", "meta.helm.sh/release-namespace": expect.namespace});

    let api = FakeApiServer::start(std::slice::from_ref(&installed)).unwrap();
    let upgrade = template_against(&helm, &api, "weft", &chart, expect.namespace, &[]).unwrap();
    assert!(api.requests().contains(&secret_path), "the chart never looked the Secret up: {:?}", api.requests());
    check_release(&upgrade, &expect);
    let reused = &upgrade.get("Secret", "weft-webhook-tls").unwrap()["data"];
    assert!(*reused == installed["data"], "the upgrade generated new certificates instead of reusing the Secret's");
    let again = template_against(&helm, &api, "weft", &chart, expect.namespace, &[]).unwrap();
    assert_eq!(again.objects, upgrade.objects, "two upgrades with the same Secret must render the same objects");

    // No Secret yet (a first install against a cluster): new certificates.
    let api = FakeApiServer::start(&[]).unwrap();
    let install = template_against(&helm, &api, "weft", &chart, expect.namespace, &[]).unwrap();
    assert!(api.requests().contains(&secret_path));
    check_release(&install, &expect);
    assert!(install.get("Secret", "weft-webhook-tls").unwrap()["data"] != installed["data"]);

    // A Secret that lost its CA is not half-reused: everything is made anew, consistently.
    let mut broken = installed.clone();
    broken["data"].as_object_mut().unwrap().remove("ca.crt");
    let api = FakeApiServer::start(&[broken]).unwrap();
    let repaired = template_against(&helm, &api, "weft", &chart, expect.namespace, &[]).unwrap();
    check_release(&repaired, &expect);
    let data = &repaired.get("Secret", "weft-webhook-tls").unwrap()["data"];
    assert!(data["tls.key"] != installed["data"]["tls.key"], "a broken Secret must be replaced as a whole");
}

/// The args the chart renders must be ones the binaries accept: each is run with them (from `cargo build
/// --workspace --bins`, as `make test` does first) and must get past argument parsing (clap exits 2) and the
/// webhook's config check, to fail only where a cluster is needed: no Kubernetes config for the operator, no
/// certificate files for the webhook.
#[test]
fn the_rendered_args_are_accepted_by_the_binaries() {
    for (expect, args) in [(defaults(), &[][..]), (custom(), CUSTOM_SETS)] {
        let m = render(&expect, args);
        for (deployment, binary, expected_failure) in [
            ("weft-operator", "weft-operator", "Kubernetes mode needs in-cluster config or KUBECONFIG"),
            ("weft-webhook", "weft-webhook", "/etc/weft/tls/tls.crt"),
        ] {
            let args = strings(&only_container(m.get("Deployment", deployment).unwrap())["args"]);
            let path = weft_e2e::binaries::path(binary).unwrap_or_else(|e| panic!("{e:#}"));
            let mut child = std::process::Command::new(path)
                .args(&args)
                .env_clear()
                .env("KUBECONFIG", "/nonexistent/weft-chart-checks")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{binary} {args:?} kept running: it should have stopped for lack of a cluster");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_ne!(output.status.code(), Some(2), "{binary} refused the chart's args {args:?}: {stderr}");
            assert!(stderr.contains(expected_failure), "{binary} {args:?} failed unexpectedly: {stderr}");
        }
    }
}

#[test]
fn the_values_schema_refuses_wrong_values() {
    let helm = helm();
    for bad in [
        "operator.replicas=two",
        "webhook.replicas=-1",
        "webhook.injection.failurePolicy=Sometimes",
        "webhook.validation.timeoutSeconds=60",
        "webhook.nativeSidecars=maybe",
        "webhook.injection.reinvocationPolicy=Always",
        "certManager.enabled=yes-please",
        "operator.namespaces=shop",
        "operator.namespaces={Shop_Floor}",
        "operator.image.pullPolicy=Sometimes",
        "operator.replicaCount=3",
        "proxy.timeouts.idle=an hour",
        "proxy.accessLog=yes",
        "mtls.plaintextXds=yes",
        "observability.tracing.sampling=101",
        "observability.tracing.collector=https://otel:4317",
    ] {
        let result = helm.template_text("weft", &chart_dir("weft"), "weft-system", &["--set", bad]);
        let err = result.err().unwrap_or_else(|| panic!("--set {bad} was accepted"));
        assert!(format!("{err:#}").contains("schema"), "--set {bad}: {err:#}");
    }
    let crds =
        helm.template_text("weft-crds", &chart_dir("weft-crds"), "weft-system", &["--set", "keepOnUninstall=no"]);
    assert!(crds.is_err(), "weft-crds accepted keepOnUninstall=no");
}

/// The weft-crds chart renders exactly crds/manifests (what crdgen generates from the Rust types), plus labels and
/// the keep-on-uninstall annotation.
#[test]
fn the_crds_chart_renders_the_generated_crds() {
    let helm = helm();
    let expected = crd_manifests();
    for keep in [true, false] {
        let args = if keep { vec![] } else { vec!["--set", "keepOnUninstall=false"] };
        let m = helm.template("weft-crds", &chart_dir("weft-crds"), "weft-system", &args).unwrap();
        assert_eq!(m.objects.len(), expected.len(), "{}", m.summary());
        for object in &m.objects {
            let name = s(&object["metadata"]["name"]);
            let mut stripped = object.clone();
            let metadata = stripped["metadata"].as_object_mut().unwrap();
            let labels = metadata.remove("labels").expect("labels");
            let annotations = metadata.remove("annotations");
            assert_eq!(labels["app.kubernetes.io/name"], "weft-crds", "{name}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{name}");
            assert!(labels["helm.sh/chart"].is_string(), "{name}");
            let policy = annotations.as_ref().map(|a| a["helm.sh/resource-policy"].clone());
            assert_eq!(policy, keep.then(|| json!("keep")), "{name} with keepOnUninstall={keep}");
            assert_eq!(Some(&stripped), expected.get(name), "{name} differs from crds/manifests/{name}.yaml");
        }
    }
}

#[test]
fn notes_tell_the_next_commands_and_their_example_is_valid() {
    let helm = helm();
    let chart = chart_dir("weft");
    let out = helm
        .run([
            "install".as_ref(),
            "weft".as_ref(),
            chart.as_os_str(),
            "-n".as_ref(),
            "weft-system".as_ref(),
            "--dry-run=client".as_ref(),
        ])
        .unwrap();
    assert!(out.success, "{}", out.stderr);
    let notes = out.stdout.split_once("NOTES:").map(|(_, notes)| notes).expect("NOTES printed");
    for needle in
        ["kubectl label namespace <ns> weft.dev/inject=enabled", "kubectl apply -n <ns> -f -", "kubectl get vs"]
    {
        assert!(notes.contains(needle), "NOTES lack `{needle}`:\n{notes}");
    }
    // The heredoc example parses as Weft resources and passes Weft's validation.
    let example = notes.split_once("<<'YAML'\n").and_then(|(_, rest)| rest.split_once("YAML\n")).expect("example").0;
    let example: String = example.lines().map(|l| l.get(7..).unwrap_or("")).collect::<Vec<_>>().join("\n");
    let docs = weft_crds::parse::yaml_documents(&example);
    assert_eq!(docs.len(), 2, "{example}");
    for doc in docs {
        let value = doc.value.unwrap();
        match s(&value["kind"]) {
            "VirtualService" => {
                let vs: weft_crds::VirtualService = weft_crds::parse::from_value(value).unwrap();
                assert_eq!(weft_crds::validate::validate_virtual_service(&vs.spec), vec![]);
            }
            "DestinationRule" => {
                let dr: weft_crds::DestinationRule = weft_crds::parse::from_value(value).unwrap();
                assert_eq!(weft_crds::validate::validate_destination_rule(&dr.spec), vec![]);
            }
            other => panic!("unexpected kind {other}"),
        }
    }
}

/// The image tags default to the charts' appVersion (and `make images` tags with it): it must be the version the
/// workspace builds.
#[test]
fn chart_app_versions_are_the_workspace_version() {
    for chart in ["weft-crds", "weft"] {
        let meta = read_yaml(&chart_dir(chart).join("Chart.yaml"));
        assert_eq!(meta["appVersion"], env!("CARGO_PKG_VERSION"), "charts/{chart}/Chart.yaml appVersion");
        assert_eq!(meta["apiVersion"], "v2", "charts/{chart}");
    }
}

#[test]
fn scraping_and_the_dashboard_are_off_by_default_and_install_what_prometheus_and_grafana_read() {
    let helm = helm();
    let chart = chart_dir("weft");
    let plain = helm.template("weft", &chart, "weft-system", &[]).unwrap();
    assert_eq!(plain.of_kind("PodMonitor").count() + plain.of_kind("ServiceMonitor").count(), 0);
    assert!(plain.find("ConfigMap", "weft-grafana-dashboards").is_none());

    let sets = "observability.podMonitor.enabled=true,observability.grafanaDashboard.enabled=true,\
                observability.grafanaDashboard.namespace=monitoring";
    let m = helm.template("weft", &chart, "weft-system", &["--set", sets]).unwrap();
    let pods = m.get("PodMonitor", "weft-proxies").unwrap();
    assert_eq!(pods["spec"]["namespaceSelector"]["any"], true);
    let endpoint = &pods["spec"]["podMetricsEndpoints"][0];
    // The port the injector names on every sidecar (weft-webhook's HEALTH_PORT_NAME), where /metrics is served.
    assert_eq!((endpoint["port"].as_str(), endpoint["path"].as_str()), (Some("weft-health"), Some("/metrics")));
    let operator = m.get("ServiceMonitor", "weft-operator").unwrap();
    let service = m.get("Service", "weft-operator").unwrap();
    assert!(
        selects(&operator["spec"]["selector"]["matchLabels"], &service["metadata"]["labels"]),
        "selects the operator's Service"
    );
    let port = operator["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port),
        "the Service has port {port}"
    );

    let dashboards = m.get("ConfigMap", "weft-grafana-dashboards").unwrap();
    assert_eq!(dashboards["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value =
        serde_json::from_str(dashboards["data"]["weft-services.json"].as_str().unwrap()).unwrap();
    let source = std::fs::read_to_string(chart.join("files/dashboards/weft-services.json")).unwrap();
    assert_eq!(shipped, serde_json::from_str::<serde_json::Value>(&source).unwrap(), "the dashboard file, unchanged");
}
