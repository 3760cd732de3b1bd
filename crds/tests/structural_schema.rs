//! The API server refuses CRDs whose schemas are not structural, and prunes fields a schema does not declare. These
//! checks follow the rules of "Specifying a structural schema" in the Kubernetes CRD documentation.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::CustomResourceExt;
use serde_json::Value;
use weft_crds::{DestinationRule, PeerAuthentication, VirtualService};

const COMBINATORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];
const FORBIDDEN_ANYWHERE: [&str; 5] = ["$ref", "definitions", "$schema", "id", "uniqueItems"];
const FORBIDDEN_IN_COMBINATORS: [&str; 5] = ["type", "description", "default", "additionalProperties", "nullable"];

fn check(node: &Value, path: &str, in_combinator: bool, errors: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    for key in FORBIDDEN_ANYWHERE {
        if object.contains_key(key) {
            errors.push(format!("{path}: `{key}` is not allowed"));
        }
    }
    let escapes = ["x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"]
        .iter()
        .any(|k| object.get(*k) == Some(&Value::Bool(true)));
    if in_combinator {
        for key in FORBIDDEN_IN_COMBINATORS {
            if object.contains_key(key) {
                errors.push(format!("{path}: `{key}` inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !escapes && object.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        errors.push(format!("{path}: every schema node needs a type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        errors.push(format!("{path}: properties and additionalProperties are mutually exclusive"));
    }
    if object.contains_key("patternProperties") {
        errors.push(format!("{path}: patternProperties is not allowed in a structural schema"));
    }
    if matches!(object.get("additionalProperties"), Some(Value::Bool(_))) {
        errors.push(format!("{path}: additionalProperties must be a schema, not a boolean"));
    }
    if object.get("type").and_then(Value::as_str) == Some("array") && !object.contains_key("items") {
        errors.push(format!("{path}: arrays need items"));
    }
    if let Some(keys) = object.get("x-kubernetes-list-map-keys").and_then(Value::as_array) {
        let required = object["items"]["required"].as_array().cloned().unwrap_or_default();
        for key in keys {
            if !required.contains(key) {
                errors.push(format!("{path}: list map key {key} must be required in items"));
            }
        }
    }
    for (name, child) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
        check(child, &format!("{path}.{name}"), in_combinator, errors);
    }
    if let Some(items) = object.get("items") {
        check(items, &format!("{path}[]"), in_combinator, errors);
    }
    if let Some(extra @ Value::Object(_)) = object.get("additionalProperties") {
        check(extra, &format!("{path}{{*}}"), in_combinator, errors);
    }
    for combinator in COMBINATORS {
        for (i, branch) in object.get(combinator).and_then(Value::as_array).into_iter().flatten().enumerate() {
            check(branch, &format!("{path}/{combinator}[{i}]"), true, errors);
        }
    }
}

fn schema_errors(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Vec<String> {
    let mut errors = Vec::new();
    for version in &crd.spec.versions {
        let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        check(&schema, &format!("{}/{}", crd.spec.names.kind, version.name), false, &mut errors);
        let metadata = &schema["properties"]["metadata"];
        if metadata.get("properties").is_some() {
            errors.push("metadata may only restrict name and generateName".into());
        }
    }
    errors
}

#[test]
fn every_weft_crd_has_a_structural_schema() {
    for crd in weft_crds::kinds::ALL.iter().map(|kind| (kind.crd)()) {
        let errors = schema_errors(&crd);
        assert!(errors.is_empty(), "{} is not structural:\n{}", crd.spec.names.kind, errors.join("\n"));
    }
}

#[test]
fn the_checker_rejects_what_kubernetes_rejects() {
    let mut errors = Vec::new();
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "closed": {"type": "object", "additionalProperties": false},
            "choice": {"type": "object", "oneOf": [{"type": "object", "required": ["a"]}]},
            "referenced": {"$ref": "#/definitions/x"}
        }
    });
    check(&bad, "bad", false, &mut errors);
    for expected in [
        ".untyped: every schema node",
        ".both: properties and additionalProperties",
        ".closed: additionalProperties must",
        "oneOf[0]: `type` inside",
        ".referenced: `$ref`",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "missing {expected:?} in {errors:#?}");
    }
}

#[test]
fn status_is_a_subresource_and_the_printer_columns_point_at_real_fields() {
    for crd in weft_crds::kinds::ALL.iter().map(|kind| (kind.crd)()) {
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
        let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        for column in version.additional_printer_columns.iter().flatten() {
            let first = column.json_path.trim_start_matches('.').split(['.', '[']).next().unwrap();
            assert!(
                first == "metadata" || schema["properties"].get(first).is_some(),
                "{}: column {} reads {}",
                crd.spec.names.kind,
                column.name,
                column.json_path
            );
        }
    }
    assert_eq!(VirtualService::crd().spec.names.short_names, Some(vec!["vs".to_string()]));
    assert_eq!(DestinationRule::crd().spec.names.short_names, Some(vec!["dr".to_string()]));
    assert_eq!(PeerAuthentication::crd().spec.names.short_names, Some(vec!["pa".to_string()]));
}
