//! Checks of a PeerAuthentication the schema cannot express, with Istio's rules: port-level modes only for a
//! workload policy (a port number only means something for known pods), ports in range, selector labels a pod
//! can carry.

use super::labels::check_labels;
use crate::FieldError;
use crate::field_path::Path;
use crate::peer_authentication::{PeerAuthenticationSpec, valid_port};

/// Every problem in a PeerAuthentication spec; empty when it is valid.
pub fn validate_peer_authentication(spec: &PeerAuthenticationSpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    if let Some(selector) = &spec.selector {
        check_labels(&root.field("selector").field("matchLabels"), &selector.match_labels, &mut errors);
    }
    let levels = root.field("portLevelMtls");
    if !spec.port_level_mtls.is_empty() && spec.workload_labels().is_none() {
        errors.push(levels.error(
            "portLevelMtls requires a selector with matchLabels: port numbers only mean something for a known \
             set of pods (a mesh- or namespace-wide policy sets one mode for every port)",
        ));
    }
    for port in spec.port_level_mtls.keys() {
        if valid_port(port).is_none() {
            errors.push(levels.key(port).error(format!("port {port:?} must be a number between 1 and 65535")));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: PeerAuthenticationSpec = serde_saphyr::from_str(yaml).unwrap_or_default();
        validate_peer_authentication(&spec).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn istio_examples_are_valid() {
        assert!(problems("mtls: {mode: STRICT}").is_empty());
        assert!(
            problems(
                "selector: {matchLabels: {app: db}}\nmtls: {mode: STRICT}\nportLevelMtls: {9090: {mode: DISABLE}}"
            )
            .is_empty()
        );
    }

    #[test]
    fn port_levels_need_a_workload_selector_and_valid_ports() {
        let errors = problems("mtls: {mode: STRICT}\nportLevelMtls: {8080: {mode: PERMISSIVE}}");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("spec.portLevelMtls: portLevelMtls requires a selector"), "{errors:?}");
        assert_eq!(problems("selector: {matchLabels: {}}\nportLevelMtls: {80: {mode: STRICT}}").len(), 1);
        assert_eq!(
            problems("selector: {matchLabels: {app: db}}\nportLevelMtls: {0: {mode: STRICT}, http: {mode: STRICT}}"),
            [
                "spec.portLevelMtls[\"0\"]: port \"0\" must be a number between 1 and 65535",
                "spec.portLevelMtls[\"http\"]: port \"http\" must be a number between 1 and 65535"
            ]
        );
    }

    #[test]
    fn selector_labels_follow_kubernetes_syntax() {
        let errors = problems("selector: {matchLabels: {\"*\": db}}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("spec.selector.matchLabels[\"*\"]"), "{errors:?}");
    }
}
