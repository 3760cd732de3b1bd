//! The validating webhook for Weft CRDs (every kind of `weft_crds::kinds`). Pure: an AdmissionReview request in, allowed or denied with every problem
//! and its field path out, from `weft_crds::spec`: the same checks the operator applies to standalone files.

use serde_json::Value;
use weft_crds::FieldError;

use crate::admission::{AdmissionRequest, AdmissionResponse, Operation};

/// HTTP-like code of a denial for an invalid object, as the API server uses for its own validation.
const INVALID: u16 = 422;

/// The validating webhook's answer. DELETE and CONNECT are always allowed. Kinds this webhook does not know
/// (a registration broader than the chart's) are allowed with a warning: refusing them would block resources
/// Weft has no opinion about.
pub fn review(request: &AdmissionRequest) -> AdmissionResponse {
    let uid = request.uid.as_str();
    if matches!(request.operation, Operation::Delete | Operation::Connect) {
        return AdmissionResponse::allow(uid);
    }
    let kind = &request.kind;
    let Some(weft_kind) = weft_crds::kinds::by_gvk(&kind.group, &kind.version, &kind.kind) else {
        let gvk = format!("{}/{} {}", kind.group, kind.version, kind.kind);
        return AdmissionResponse::allow(uid)
            .with_warning(format!("weft-webhook does not validate {gvk}; allowed without checks"));
    };
    let problems = problems(request.object.as_ref(), weft_kind.check);
    if problems.is_empty() {
        return AdmissionResponse::allow(uid);
    }
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    AdmissionResponse::deny(
        uid,
        INVALID,
        format!("{} {} is invalid: {}", kind.kind, object_name(request), list.join("; ")),
    )
}

/// Every problem of the object's spec: each unknown field, then the first type error or each rule broken.
fn problems(object: Option<&Value>, check: fn(&Value) -> Result<Value, Vec<FieldError>>) -> Vec<FieldError> {
    let Some(spec) = object.and_then(|o| o.get("spec")) else {
        return vec![FieldError::new("spec", "is required")];
    };
    check(spec).err().unwrap_or_default()
}

/// `namespace/name` for the message; objects created with `generateName` have no name yet.
fn object_name(request: &AdmissionRequest) -> String {
    let meta = request.object.as_ref().and_then(|o| o.get("metadata"));
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str).map(str::to_string);
    let name = request.name.clone().or_else(|| field("name")).or_else(|| field("generateName").map(|g| g + "*"));
    let name = name.unwrap_or_else(|| "(unnamed)".to_string());
    match &request.namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(operation: &str, kind: &str, object: Value) -> AdmissionRequest {
        serde_json::from_value(json!({
            "uid": "u1",
            "kind": {"group": "networking.weft.dev", "version": "v1alpha1", "kind": kind},
            "namespace": "shop",
            "operation": operation,
            "object": object,
        }))
        .unwrap()
    }

    fn vs(spec: Value) -> Value {
        json!({"apiVersion": "networking.weft.dev/v1alpha1", "kind": "VirtualService",
               "metadata": {"name": "reviews"}, "spec": spec})
    }

    #[test]
    fn a_valid_virtual_service_is_allowed() {
        let spec = json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]});
        assert_eq!(review(&request("CREATE", "VirtualService", vs(spec))), AdmissionResponse::allow("u1"));
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        // No hosts is a delegate, valid: a host that is not a DNS name is the first problem here.
        let spec = json!({"hosts": ["Bad_Host"], "http": [{"route": [{"destination": {"host": "r"}, "weight": -5}]}]});
        let response = review(&request("UPDATE", "VirtualService", vs(spec)));
        assert!(!response.allowed);
        let status = response.status.unwrap();
        assert_eq!(status.code, 422);
        assert_eq!(
            status.message,
            "VirtualService shop/reviews is invalid: spec.hosts[0]: host \"Bad_Host\" is not a valid DNS name; \
             spec.http[0].route[0].weight: weight -5 must not be negative"
        );
    }

    #[test]
    fn type_and_unknown_field_errors_carry_the_spec_path() {
        let spec = json!({"host": "reviews", "subsets": [{"name": "v1", "labelz": {}}, {"name": "V2", "x": 1}]});
        let object = json!({"metadata": {"generateName": "reviews-"}, "spec": spec});
        let message = review(&request("CREATE", "DestinationRule", object)).status.unwrap().message;
        assert_eq!(
            message,
            "DestinationRule shop/reviews-* is invalid: spec.subsets[0].labelz: not supported by Weft; \
             spec.subsets[1].x: not supported by Weft; spec.subsets[1].name: subset name \"V2\" must be a DNS label \
             (lower-case letters, digits and '-')",
            "every unknown field and every broken rule at once"
        );
        let typed = json!({"metadata": {"name": "r"}, "spec": {"host": "reviews", "subsets": "v1"}});
        let message = review(&request("CREATE", "DestinationRule", typed)).status.unwrap().message;
        assert!(message.starts_with("DestinationRule shop/r is invalid: spec.subsets: invalid type"), "{message}");
        let message = review(&request("CREATE", "DestinationRule", json!({"metadata": {}}))).status.unwrap().message;
        assert_eq!(message, "DestinationRule shop/(unnamed) is invalid: spec: is required");
    }

    #[test]
    fn a_peer_authentication_is_checked_with_istio_s_rules() {
        let mut request = request(
            "CREATE",
            "PeerAuthentication",
            json!({"metadata": {"name": "db"},
            "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"9090": {"mode": "DISABLE"}}}}),
        );
        request.kind.group = weft_crds::SECURITY_GROUP.into();
        let message = review(&request).status.unwrap().message;
        assert!(
            message.starts_with(
                "PeerAuthentication shop/db is invalid: spec.portLevelMtls: portLevelMtls requires a selector"
            ),
            "{message}"
        );
        request.object = Some(json!({"metadata": {"name": "db"}, "spec": {"mtls": {"mode": "STRICT"}}}));
        assert_eq!(review(&request), AdmissionResponse::allow("u1"));
        request.object = Some(json!({"metadata": {"name": "db"}, "spec": {"mtls": {"mode": "STRICTER"}}}));
        assert!(review(&request).status.unwrap().message.contains("spec.mtls.mode"));
    }

    #[test]
    fn an_authorization_policy_is_checked_with_istio_s_rules() {
        let spec = json!({"action": "CUSTOM", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]});
        let mut request = request("CREATE", "AuthorizationPolicy", json!({"metadata": {"name": "ap"}, "spec": spec}));
        request.kind.group = weft_crds::SECURITY_GROUP.into();
        let message = review(&request).status.unwrap().message;
        assert!(message.starts_with("AuthorizationPolicy shop/ap is invalid: "), "{message}");
        assert!(message.contains("spec.rules[0].from[0].source.requestPrincipals: not supported by Weft"), "{message}");
        assert!(message.contains("spec.action: CUSTOM (an external authorizer) is not supported"), "{message}");
        let valid = json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]});
        request.object = Some(json!({"metadata": {"name": "ap"}, "spec": valid}));
        assert_eq!(review(&request), AdmissionResponse::allow("u1"));
    }

    #[test]
    fn a_rate_limit_is_checked_with_linkerd_s_rules() {
        let spec = json!({"total": {"requestsPerSecond": 10}, "identity": {"requestsPerSecond": 20}});
        let mut request =
            request("CREATE", "HTTPLocalRateLimitPolicy", json!({"metadata": {"name": "rl"}, "spec": spec}));
        request.kind.group = weft_crds::SECURITY_GROUP.into();
        let message = review(&request).status.unwrap().message;
        assert_eq!(
            message,
            "HTTPLocalRateLimitPolicy shop/rl is invalid: spec.identity.requestsPerSecond: 20 is more than the \
             total's 10 requests per second"
        );
        request.object = Some(json!({"metadata": {"name": "rl"}, "spec": {"identity": {"requestsPerSecond": 20}}}));
        assert_eq!(review(&request), AdmissionResponse::allow("u1"));
    }

    #[test]
    fn deletes_and_unknown_kinds_are_allowed() {
        assert_eq!(review(&request("DELETE", "VirtualService", Value::Null)), AdmissionResponse::allow("u1"));
        let response = review(&request("CREATE", "Gateway", json!({"spec": {}})));
        assert!(response.allowed);
        assert_eq!(
            response.warnings,
            ["weft-webhook does not validate networking.weft.dev/v1alpha1 Gateway; allowed without checks"]
        );
    }
}
