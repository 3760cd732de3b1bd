//! Checks of an AuthorizationPolicy the schema cannot express, with Istio's rules: one way of choosing
//! workloads, a source or operation in each `from` or `to` and none empty, wildcards only at the start or end,
//! addresses and ports that parse, `when` keys Weft evaluates with values to compare. `CUSTOM` (an external
//! authorizer) is refused: Weft has none.

use super::labels::check_labels;
use crate::FieldError;
use crate::authorization_policy::{
    AuthorizationAction, AuthorizationPolicySpec, Condition, ConditionKey, Operation, Rule, Source, Wildcard,
    WorkloadPolicy, ip_block, port_number,
};
use crate::field_path::Path;

/// Every problem in an AuthorizationPolicy spec; empty when it is valid.
pub fn validate_authorization_policy(spec: &AuthorizationPolicySpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    if spec.action == AuthorizationAction::Custom {
        errors.push(
            root.field("action")
                .error("CUSTOM (an external authorizer) is not supported by Weft; use ALLOW, DENY or AUDIT"),
        );
    }
    check_workloads(spec, &mut errors);
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        check_rule(&root.field("rules").index(i), rule, &mut errors);
    }
    errors
}

/// Whether a rule is one Weft can enforce as written (no problem validation would report). The translation
/// asks, so that a rule which reached it unvalidated fails closed instead of losing a test.
pub fn rule_is_enforceable(rule: &Rule) -> bool {
    let mut errors = Vec::new();
    check_rule(&Path::root("rule"), rule, &mut errors);
    errors.is_empty()
}

fn check_rule(rule_path: &Path, rule: &Rule, errors: &mut Vec<FieldError>) {
    for (j, from) in rule.from.iter().enumerate() {
        let path = rule_path.field("from").index(j).field("source");
        match &from.source {
            Some(source) => check_source(&path, source, errors),
            None => errors.push(path.error("a from entry needs a source")),
        }
    }
    for (j, to) in rule.to.iter().enumerate() {
        let path = rule_path.field("to").index(j).field("operation");
        match &to.operation {
            Some(operation) => check_operation(&path, operation, errors),
            None => errors.push(path.error("a to entry needs an operation")),
        }
    }
    for (j, condition) in rule.when.iter().enumerate() {
        check_condition(&rule_path.field("when").index(j), condition, errors);
    }
}

/// The checks of how a workload policy chooses its workloads: one way of choosing, selector labels a pod can
/// carry, Services as targets.
pub(super) fn check_workloads(spec: &impl WorkloadPolicy, errors: &mut Vec<FieldError>) {
    let root = Path::root("spec");
    if let Some(selector) = spec.selector() {
        check_labels(&root.field("selector").field("matchLabels"), &selector.match_labels, errors);
    }
    if spec.selector().is_some() && spec.targets().next().is_some() {
        errors.push(root.field("targetRefs").error("only one of selector and targetRefs may be set"));
    }
    if spec.target_ref().is_some() && !spec.target_refs().is_empty() {
        errors.push(root.field("targetRef").error("only one of targetRef and targetRefs may be set"));
    }
    for (path, target) in spec.targets().filter(|(_, target)| !target.is_service()) {
        errors.push(FieldError::new(
            path,
            format!(
                "kind {:?} (group {:?}) is not supported: a sidecar policy attaches to a Service (group \"\")",
                target.kind, target.group
            ),
        ));
    }
}

fn check_source(path: &Path, source: &Source, errors: &mut Vec<FieldError>) {
    if *source == Source::default() {
        errors.push(path.error("a source must set at least one field"));
    }
    let wildcards = [
        ("principals", &source.principals),
        ("notPrincipals", &source.not_principals),
        ("namespaces", &source.namespaces),
        ("notNamespaces", &source.not_namespaces),
    ];
    for (field, values) in wildcards {
        check_wildcards(&path.field(field), values, errors);
    }
    let blocks = [
        ("ipBlocks", &source.ip_blocks),
        ("notIpBlocks", &source.not_ip_blocks),
        ("remoteIpBlocks", &source.remote_ip_blocks),
        ("notRemoteIpBlocks", &source.not_remote_ip_blocks),
    ];
    for (field, values) in blocks {
        check_ip_blocks(&path.field(field), values, errors);
    }
}

fn check_operation(path: &Path, operation: &Operation, errors: &mut Vec<FieldError>) {
    if *operation == Operation::default() {
        errors.push(path.error("an operation must set at least one field"));
    }
    let wildcards = [
        ("hosts", &operation.hosts),
        ("notHosts", &operation.not_hosts),
        ("methods", &operation.methods),
        ("notMethods", &operation.not_methods),
        ("paths", &operation.paths),
        ("notPaths", &operation.not_paths),
    ];
    for (field, values) in wildcards {
        check_wildcards(&path.field(field), values, errors);
    }
    for (field, values) in [("ports", &operation.ports), ("notPorts", &operation.not_ports)] {
        check_ports(&path.field(field), values, errors);
    }
}

fn check_condition(path: &Path, condition: &Condition, errors: &mut Vec<FieldError>) {
    if condition.values.is_empty() && condition.not_values.is_empty() {
        errors.push(path.error("a condition needs values or notValues"));
    }
    let key = match ConditionKey::parse(&condition.key) {
        Ok(key) => key,
        Err(problem) => return errors.push(path.field("key").error(problem)),
    };
    for (field, values) in [("values", &condition.values), ("notValues", &condition.not_values)] {
        let path = path.field(field);
        match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp => check_ip_blocks(&path, values, errors),
            ConditionKey::DestinationPort => check_ports(&path, values, errors),
            _ => check_wildcards(&path, values, errors),
        }
    }
}

fn check_wildcards(path: &Path, values: &[String], errors: &mut Vec<FieldError>) {
    for (i, value) in values.iter().enumerate() {
        if Wildcard::of(value).is_none() {
            errors.push(
                path.index(i).error(format!("{value:?}: a '*' wildcard may only be the first or last character")),
            );
        }
    }
}

fn check_ip_blocks(path: &Path, values: &[String], errors: &mut Vec<FieldError>) {
    for (i, value) in values.iter().enumerate() {
        if ip_block(value).is_none() {
            errors.push(path.index(i).error(format!("{value:?} is neither an IP address nor a CIDR range")));
        }
    }
}

fn check_ports(path: &Path, values: &[String], errors: &mut Vec<FieldError>) {
    for (i, value) in values.iter().enumerate() {
        if port_number(value).is_none() {
            errors.push(path.index(i).error(format!("port {value:?} must be a number between 1 and 65535")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: AuthorizationPolicySpec = serde_saphyr::from_str(yaml).expect("the test's YAML parses");
        validate_authorization_policy(&spec).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn istio_examples_are_valid() {
        let examples = [
            "{}",
            "action: DENY\nrules: [{from: [{source: {notNamespaces: [foo]}}]}]",
            "selector: {matchLabels: {app: httpbin}}\naction: ALLOW\nrules: [{from: [{source: {principals: \
             [cluster.local/ns/default/sa/sleep]}}], to: [{operation: {methods: [GET], paths: [\"/info*\"]}}], \
             when: [{key: \"request.headers[version]\", values: [v1, v2]}]}]",
            "rules: [{to: [{operation: {ports: [\"9000\"]}}]}]",
            "rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 1.2.3.4]}}], when: [{key: source.ip, notValues: \
             [10.1.0.0/16]}]}]",
            "targetRefs: [{kind: Service, group: \"\", name: productpage}]\nrules: [{}]",
            "action: AUDIT\nrules: [{to: [{operation: {paths: [\"*.html\", \"*\"]}}]}]",
        ];
        for example in examples {
            assert_eq!(problems(example), Vec::<String>::new(), "{example}");
        }
    }

    #[test]
    fn every_problem_is_named_with_its_field_path() {
        let errors = problems(
            "action: CUSTOM\nselector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Gateway, group: \
             gateway.networking.k8s.io, name: g}]\nrules: [{from: [{}, {source: {}}], to: [{operation: {paths: \
             [\"/a*b\"], ports: [\"0\"]}}], when: [{key: \"request.auth.claims[iss]\", values: [x]}, {key: source.ip, \
             values: [\"10.0.0.0/33\"]}, {key: destination.port}]}]",
        );
        let expected = [
            "spec.action: CUSTOM",
            "spec.targetRefs: only one of selector and targetRefs",
            "spec.targetRefs[0]: kind \"Gateway\"",
            "spec.rules[0].from[0].source: a from entry needs a source",
            "spec.rules[0].from[1].source: a source must set at least one field",
            "spec.rules[0].to[0].operation.paths[0]: \"/a*b\": a '*' wildcard",
            "spec.rules[0].to[0].operation.ports[0]: port \"0\"",
            "spec.rules[0].when[0].key: \"request.auth.claims[iss]\" needs JWT",
            "spec.rules[0].when[1].values[0]: \"10.0.0.0/33\" is neither",
            "spec.rules[0].when[2]: a condition needs values or notValues",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, start) in errors.iter().zip(expected) {
            assert!(error.starts_with(start), "{error:?} should start with {start:?}");
        }
    }

    #[test]
    fn wildcards_and_addresses_parse_as_istio_writes_them() {
        assert_eq!(Wildcard::of("*"), Some(Wildcard::Any));
        assert_eq!(Wildcard::of("/api/*"), Some(Wildcard::Prefix("/api/")));
        assert_eq!(Wildcard::of("*.html"), Some(Wildcard::Suffix(".html")));
        assert_eq!(Wildcard::of("a*b"), None);
        assert_eq!(ip_block("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(ip_block("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(ip_block("10.0.0.0/33"), None);
        assert_eq!(ConditionKey::parse("request.headers[x-user]"), Ok(ConditionKey::RequestHeader("x-user")));
    }
}
