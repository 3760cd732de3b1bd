//! The examples of Istio's VirtualService reference (`testdata/istio-examples/`, only `apiVersion` changed) are
//! accepted, or refused only for what Weft documents as not supported yet, with exactly these messages.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use weft_crds::parse::{from_value, yaml_documents};
use weft_crds::validate::validate_virtual_service;
use weft_crds::{API_VERSION, VirtualServiceSpec};

const GATEWAY: &str = "is not supported by Weft yet: Weft has only the mesh (\"mesh\"), no gateways yet";

/// File name -> every error it must get (none: accepted).
fn expected() -> Vec<(&'static str, Vec<String>)> {
    let gateway = |path: &str, name: &str| format!("{path}: gateway \"{name}\" {GATEWAY}");
    vec![
        ("01-rewrite-and-subsets.yaml", vec![]),
        ("02-weighted-versions.yaml", vec![]),
        ("03-gateway-and-mesh.yaml", vec![gateway("spec.gateways[0]", "some-config-namespace/my-gateway")]),
        ("04-match-request.yaml", vec![]),
        ("05-headers.yaml", vec![]),
        ("06-tcp.yaml", vec![]),
        ("07-tls.yaml", vec![gateway("spec.gateways[0]", "mygateway")]),
        ("08-redirect.yaml", vec![]),
        ("09-direct-response.yaml", vec![]),
        ("10-rewrite.yaml", vec![]),
        ("11-regex-rewrite.yaml", vec![]),
        ("12-retries.yaml", vec![]),
        ("13-cors.yaml", vec![]),
        ("14-fault-delay.yaml", vec![]),
        ("15-fault-abort.yaml", vec![]),
        ("16-mirror.yaml", vec![]),
        ("17-mirrors.yaml", vec![]),
        (
            "18-delegate.yaml",
            // Accepted but for the gateway: delegation is supported.
            vec![gateway("spec.gateways[0]", "mygateway")],
        ),
        ("19-source-labels.yaml", vec![]),
    ]
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/istio-examples")
}

fn errors_of(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(examples().join(file)).unwrap();
    let documents = yaml_documents(&text);
    assert_eq!(documents.len(), 1, "{file}: one document");
    let object = documents[0].value.clone().unwrap();
    assert_eq!(object["apiVersion"], API_VERSION, "{file}");
    assert_eq!(object["kind"], "VirtualService", "{file}");
    let spec: VirtualServiceSpec =
        from_value(object["spec"].clone()).unwrap_or_else(|err| panic!("{file}: does not parse: {err}"));
    validate_virtual_service(&spec).iter().map(ToString::to_string).collect()
}

#[test]
fn istios_examples_are_accepted_or_refused_only_for_what_is_not_supported_yet() {
    for (file, want) in expected() {
        assert_eq!(errors_of(file), want, "{file}");
    }
}

#[test]
fn every_example_file_is_checked() {
    let checked: Vec<&str> = expected().iter().map(|(file, _)| *file).collect();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            assert!(checked.contains(&name.as_str()), "{name} has no expectation in this test");
        }
    }
}
