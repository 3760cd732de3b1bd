//! Semantic checks the OpenAPI schema cannot express. Pure: a spec in, every problem (with its field path) out.
//! Used by the operator (standalone files, status conditions) and the validating webhook.

use std::collections::BTreeSet;

use crate::duration::parse_duration;
use crate::field_path::Path;
use crate::virtual_service::StringMatchKind;
use crate::{DestinationRuleSpec, FieldError, HttpMatchRequest, HttpRoute, StringMatch, VirtualServiceSpec};

/// The largest sum of a route's weights: Envoy refuses weighted clusters whose total exceeds a `uint32`.
pub const MAX_TOTAL_WEIGHT: i64 = u32::MAX as i64;

/// Every problem in a VirtualService spec; empty when it is valid.
pub fn validate_virtual_service(spec: &VirtualServiceSpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    if spec.hosts.is_empty() {
        errors.push(root.field("hosts").error("at least one host is required"));
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        check_host(&root.field("hosts").index(i), host, &mut errors);
    }
    // Istio refuses a VirtualService without routes: applied, it would cut its hosts off with 404s.
    if spec.http.is_empty() {
        errors.push(
            root.field("http")
                .error("at least one HTTP route is required (Weft does not support tcp or tls routes yet)"),
        );
    }
    for (i, rule) in spec.http.iter().enumerate() {
        check_http_route(&root.field("http").index(i), rule, &mut errors);
    }
    errors
}

/// Every problem in a DestinationRule spec; empty when it is valid.
pub fn validate_destination_rule(spec: &DestinationRuleSpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    check_host(&root.field("host"), &spec.host, &mut errors);
    let mut seen = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = root.field("subsets").index(i);
        if subset.name.is_empty() {
            errors.push(path.field("name").error("subset name is required"));
        } else if !is_dns_label(&subset.name) {
            errors.push(path.field("name").error(format!(
                "subset name {:?} must be a DNS label (lower-case letters, digits and '-')",
                subset.name
            )));
        } else if !seen.insert(subset.name.as_str()) {
            errors.push(path.field("name").error(format!("duplicate subset name {:?}", subset.name)));
        }
    }
    errors
}

fn check_host(path: &Path, host: &str, errors: &mut Vec<FieldError>) {
    if host.is_empty() {
        errors.push(path.error("host must not be empty"));
    } else if host.contains('*') {
        errors.push(path.error(format!("wildcard host {host:?} is not supported by Weft yet; name the Service")));
    } else if !host.split('.').all(is_dns_label) {
        errors.push(path.error(format!("host {host:?} is not a valid DNS name")));
    }
}

fn check_http_route(path: &Path, rule: &HttpRoute, errors: &mut Vec<FieldError>) {
    for (i, condition) in rule.matches.iter().enumerate() {
        check_match(&path.field("match").index(i), condition, errors);
    }
    if rule.route.is_empty() {
        errors.push(path.field("route").error("at least one destination is required"));
    }
    let mut total: i64 = 0;
    for (i, dest) in rule.route.iter().enumerate() {
        let dest_path = path.field("route").index(i);
        let d = &dest.destination;
        check_host(&dest_path.field("destination").field("host"), &d.host, errors);
        if let Some(subset) = &d.subset
            && !is_dns_label(subset)
        {
            errors.push(
                dest_path.field("destination").field("subset").error(format!("{subset:?} is not a valid subset name")),
            );
        }
        if let Some(port) = d.port
            && !(1..=65535).contains(&port.number)
        {
            errors.push(
                dest_path
                    .field("destination")
                    .field("port")
                    .field("number")
                    .error(format!("port {} is out of range 1-65535", port.number)),
            );
        }
        let weight = dest.weight.unwrap_or(0);
        if weight < 0 {
            errors.push(dest_path.field("weight").error(format!("weight {weight} must not be negative")));
        }
        total += i64::from(weight.max(0));
    }
    if rule.route.len() > 1 && total == 0 {
        errors.push(path.field("route").error("the weights of several destinations must not all be zero"));
    }
    if total > MAX_TOTAL_WEIGHT {
        errors.push(path.field("route").error(format!(
            "the weights add up to {total}, more than {MAX_TOTAL_WEIGHT} (the largest total Envoy accepts)"
        )));
    }
    if let Some(timeout) = &rule.timeout
        && let Err(message) = parse_duration(timeout)
    {
        errors.push(path.field("timeout").error(message));
    }
}

fn check_match(path: &Path, condition: &HttpMatchRequest, errors: &mut Vec<FieldError>) {
    if let Some(uri) = &condition.uri {
        check_string_match(&path.field("uri"), uri, false, errors);
        if let Some(StringMatchKind::Exact(p) | StringMatchKind::Prefix(p)) = uri.kind()
            && !p.starts_with('/')
        {
            errors.push(path.field("uri").error(format!("path {p:?} must start with '/'")));
        }
    }
    if let Some(method) = &condition.method {
        check_string_match(&path.field("method"), method, false, errors);
    }
    for (name, value) in &condition.headers {
        let header_path = path.field("headers").key(name);
        if http_header_name_is_invalid(name) {
            errors.push(header_path.error(format!("{name:?} is not a valid HTTP header name")));
        }
        check_string_match(&header_path, value, true, errors);
    }
}

/// `empty_means_present`: for headers, Istio reads `{}` as "the header is present".
fn check_string_match(path: &Path, m: &StringMatch, empty_means_present: bool, errors: &mut Vec<FieldError>) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()].iter().filter(|s| **s).count();
    match (set, m.kind()) {
        (0, _) if empty_means_present => {}
        (0, _) => errors.push(path.error("one of exact, prefix or regex is required")),
        (_, None) => errors.push(path.error("only one of exact, prefix or regex may be set")),
        (_, Some(StringMatchKind::Regex(re))) => {
            if let Err(err) = compile_full_match(re) {
                errors.push(path.field("regex").error(format!("invalid regex: {}", one_line(&err.to_string()))));
            }
        }
        _ => {}
    }
}

/// Compiles a regex that must match the whole input, as Istio (RE2 full match) and Envoy's `safe_regex` do.
pub fn compile_full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn http_header_name_is_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::from_value;

    fn vs(yaml: &str) -> Vec<String> {
        let spec: VirtualServiceSpec = from_value(serde_saphyr::from_str(yaml).unwrap()).unwrap();
        validate_virtual_service(&spec).iter().map(ToString::to_string).collect()
    }

    fn dr(yaml: &str) -> Vec<String> {
        let spec: DestinationRuleSpec = from_value(serde_saphyr::from_str(yaml).unwrap()).unwrap();
        validate_destination_rule(&spec).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_canary_is_valid() {
        let errors = vs(r#"
hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}, uri: {prefix: /api}}]
  route: [{destination: {host: reviews, subset: v2}}]
- route:
  - {destination: {host: reviews, subset: v1}, weight: 90}
  - {destination: {host: reviews, subset: v2}, weight: 10}
  timeout: 2s
"#);
        assert_eq!(errors, Vec::<String>::new());
    }

    #[test]
    fn each_problem_is_reported_with_its_path() {
        let errors = vs(r#"
hosts: ["*.example.com"]
http:
- match: [{uri: {exact: /a, prefix: /b}}, {uri: {regex: "(unclosed"}}, {method: {}}]
  route:
  - {destination: {host: reviews, port: {number: 70000}}, weight: -1}
  - {destination: {host: reviews}, weight: 0}
  timeout: ten
- route: []
"#);
        let expected = [
            "spec.hosts[0]: wildcard host",
            "spec.http[0].match[0].uri: only one of exact, prefix or regex",
            "spec.http[0].match[1].uri.regex: invalid regex",
            "spec.http[0].match[2].method: one of exact, prefix or regex is required",
            "spec.http[0].route[0].destination.port.number: port 70000 is out of range",
            "spec.http[0].route[0].weight: weight -1 must not be negative",
            "spec.http[0].route: the weights of several destinations must not all be zero",
            "spec.http[0].timeout: duration \"ten\" does not start with a non-negative number",
            "spec.http[1].route: at least one destination is required",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expected) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn weights_must_add_up_to_what_envoy_accepts() {
        let route = |weights: &[i64]| {
            let dests: Vec<String> =
                weights.iter().map(|w| format!("{{destination: {{host: r}}, weight: {w}}}")).collect();
            vs(&format!("hosts: [r]\nhttp: [{{route: [{}]}}]", dests.join(", ")))
        };
        let max = i32::MAX as i64;
        assert_eq!(
            route(&[max, max, max]),
            [
                "spec.http[0].route: the weights add up to 6442450941, more than 4294967295 (the largest total Envoy accepts)"
            ]
        );
        assert!(route(&[max, max, 1]).is_empty(), "a total of exactly 2^32-1 is accepted");
        assert!(route(&[90, 10]).is_empty());
    }

    #[test]
    fn a_virtual_service_needs_routes() {
        assert_eq!(
            vs("hosts: [reviews]"),
            ["spec.http: at least one HTTP route is required (Weft does not support tcp or tls routes yet)"]
        );
    }

    #[test]
    fn an_empty_header_match_means_present() {
        assert!(
            vs("hosts: [r]\nhttp: [{match: [{headers: {x-canary: {}}}], route: [{destination: {host: r}}]}]")
                .is_empty()
        );
    }

    #[test]
    fn subsets_must_be_unique_dns_labels() {
        let errors = dr("host: reviews\nsubsets: [{name: v1}, {name: v1}, {name: V_2}]");
        assert_eq!(
            errors,
            [
                "spec.subsets[1].name: duplicate subset name \"v1\"",
                "spec.subsets[2].name: subset name \"V_2\" must be a DNS label (lower-case letters, digits and '-')"
            ]
        );
    }

    #[test]
    fn load_balancer_names_are_istios() {
        assert!(dr("host: r\ntrafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}").is_empty());
        let bad: Result<DestinationRuleSpec, _> =
            from_value(serde_saphyr::from_str("host: r\ntrafficPolicy: {loadBalancer: {simple: FASTEST}}").unwrap());
        let err = bad.unwrap_err();
        assert_eq!(err.path, "trafficPolicy.loadBalancer.simple");
    }
}
