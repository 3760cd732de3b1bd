//! A Weft resource's `spec` from untyped JSON, with every problem at once: each field the
//! schema does not know (`spec.http[0].route[0].foo: not supported by Weft`), then each type error or broken
//! rule. A field Weft does not know is left out before the typed parse, so one unknown field does not hide the
//! others, nor the problems of the fields Weft does know.

use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::field_path::FieldError;
use crate::parse::from_value;
use crate::rate_limit::{HttpLocalRateLimitPolicy, HttpLocalRateLimitPolicySpec};
use crate::validate::{
    validate_authorization_policy, validate_destination_rule, validate_peer_authentication, validate_rate_limit,
    validate_virtual_service,
};
use crate::{
    AuthorizationPolicy, AuthorizationPolicySpec, DestinationRule, DestinationRuleSpec, PeerAuthentication,
    PeerAuthenticationSpec, VirtualService, VirtualServiceSpec,
};

/// Every problem of a VirtualService `spec`, or the parsed spec.
pub fn virtual_service_spec(spec: &Value) -> Result<VirtualServiceSpec, Vec<FieldError>> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(spec_schema::<VirtualService>);
    parse_spec(spec, schema, validate_virtual_service)
}

/// Every problem of a DestinationRule `spec`, or the parsed spec.
pub fn destination_rule_spec(spec: &Value) -> Result<DestinationRuleSpec, Vec<FieldError>> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(spec_schema::<DestinationRule>);
    parse_spec(spec, schema, validate_destination_rule)
}

/// Every problem of a PeerAuthentication `spec`, or the parsed spec.
pub fn peer_authentication_spec(spec: &Value) -> Result<PeerAuthenticationSpec, Vec<FieldError>> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(spec_schema::<PeerAuthentication>);
    parse_spec(spec, schema, validate_peer_authentication)
}

/// Every problem of an AuthorizationPolicy `spec`, or the parsed spec.
pub fn authorization_policy_spec(spec: &Value) -> Result<AuthorizationPolicySpec, Vec<FieldError>> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(spec_schema::<AuthorizationPolicy>);
    parse_spec(spec, schema, validate_authorization_policy)
}

/// Every problem of an HTTPLocalRateLimitPolicy `spec`, or the parsed spec.
pub fn rate_limit_spec(spec: &Value) -> Result<HttpLocalRateLimitPolicySpec, Vec<FieldError>> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(spec_schema::<HttpLocalRateLimitPolicy>);
    parse_spec(spec, schema, validate_rate_limit)
}

/// The OpenAPI schema of `spec` in the kind's CRD (what the API server checks too).
fn spec_schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions.first().and_then(|v| v.schema.as_ref()).and_then(|s| s.open_api_v3_schema.as_ref());
    let schema = serde_json::to_value(schema).unwrap_or_default();
    schema.pointer("/properties/spec").cloned().unwrap_or_default()
}

fn parse_spec<T: DeserializeOwned>(
    spec: &Value,
    schema: &Value,
    rules: fn(&T) -> Vec<FieldError>,
) -> Result<T, Vec<FieldError>> {
    let mut known = spec.clone();
    let mut errors = Vec::new();
    drop_unknown(&mut known, schema, "spec", &mut errors);
    match from_value::<T>(known) {
        Ok(parsed) => {
            errors.extend(rules(&parsed));
            if errors.is_empty() { Ok(parsed) } else { Err(errors) }
        }
        Err(err) => {
            let path = if err.path.is_empty() { "spec".to_string() } else { format!("spec.{}", err.path) };
            errors.push(FieldError::new(path, err.message));
            Err(errors)
        }
    }
}

/// Removes from `value` the fields `schema` does not have, noting each as an error at its path.
fn drop_unknown(value: &mut Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let values_schema = schema.get("additionalProperties").filter(|s| s.is_object());
            fields.retain(|key, _| {
                let known = properties.is_some_and(|p| p.contains_key(key)) || values_schema.is_some();
                if !known {
                    errors.push(FieldError::new(field(path, key), "not supported by Weft"));
                }
                known
            });
            for (key, inner) in fields.iter_mut() {
                let inner_schema = properties.and_then(|p| p.get(key)).or(values_schema);
                if let Some(inner_schema) = inner_schema {
                    drop_unknown(inner, inner_schema, &field(path, key), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    drop_unknown(item, item_schema, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// `path.key`, or `path[key]` when the key is not a plain identifier (a header name in a map, say).
fn field(path: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: Value = serde_saphyr::from_str(yaml).unwrap();
        match virtual_service_spec(&spec) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_unknown_field_and_every_broken_rule_is_reported_at_once() {
        let errors = problems(
            r#"
hosts: [reviews]
http:
- route:
  - destination: {host: reviews, foo: 1}
    weight: -1
  retries: {attempts: 2, budget: 1s}
  timeout: soon
  headers: {request: {set: {x-a: b}, sett: {x-b: c}}}
bogus: true
"#,
        );
        assert_eq!(
            errors,
            [
                "spec.bogus: not supported by Weft",
                "spec.http[0].headers.request.sett: not supported by Weft",
                "spec.http[0].retries.budget: not supported by Weft",
                "spec.http[0].route[0].destination.foo: not supported by Weft",
                "spec.http[0].route[0].weight: weight -1 must not be negative",
                "spec.http[0].timeout: duration \"soon\" does not start with a non-negative number",
            ]
        );
    }

    #[test]
    fn unknown_fields_of_tcp_and_tls_rules_are_named() {
        let errors = problems(
            "hosts: [db]\ntcp: [{match: [{port: 1, sni: x}], route: [{destination: {host: db}}], timeout: 1s}]\n\
             tls: [{match: [{sniHosts: [a.b], bogus: 1}], route: [{destination: {host: db}, headers: {}}]}]\n",
        );
        assert_eq!(
            errors,
            [
                "spec.tcp[0].timeout: not supported by Weft",
                "spec.tcp[0].match[0].sni: not supported by Weft",
                "spec.tls[0].match[0].bogus: not supported by Weft",
                "spec.tls[0].route[0].headers: not supported by Weft",
            ]
        );
    }

    #[test]
    fn map_keys_are_not_fields_and_a_type_error_still_names_its_path() {
        assert!(
            problems(
                "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {request: {set: {x-any-name: v}}}}]"
            )
            .is_empty()
        );
        assert_eq!(
            problems("hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: many}, extra: 1}]"),
            [
                "spec.http[0].extra: not supported by Weft",
                "spec.http[0].retries.attempts: invalid type: string \"many\", expected i32"
            ]
        );
    }
}
