//! Tests of the validation: each accepted field, each refusal, and every problem reported at once.

use super::*;
use crate::DestinationRuleSpec;
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
hosts: ["a.*.com"]
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
        "spec.http[1].route: one of route, redirect or directResponse is required",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn weights_must_add_up_to_what_envoy_accepts() {
    let route = |weights: &[i64]| {
        let dests: Vec<String> = weights.iter().map(|w| format!("{{destination: {{host: r}}, weight: {w}}}")).collect();
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
    assert_eq!(vs("hosts: [reviews]"), ["spec: at least one route is required (http, tcp or tls)"]);
}

#[test]
fn an_empty_header_match_means_present() {
    assert!(
        vs("hosts: [r]\nhttp: [{match: [{headers: {x-canary: {}}}], route: [{destination: {host: r}}]}]").is_empty()
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

#[test]
fn every_supported_field_is_accepted() {
    let errors = vs(r#"
hosts: [reviews]
gateways: [mesh]
exportTo: ["*"]
http:
- name: all-of-it
  match:
  - uri: {prefix: /api}
    ignoreUriCase: true
    scheme: {exact: http}
    method: {exact: GET}
    authority: {prefix: reviews}
    headers: {x-user: {regex: "a.*"}}
    withoutHeaders: {x-debug: {}}
    queryParams: {v: {exact: "2"}, q: {regex: "[0-9]+"}, flag: {exact: ""}}
    port: 9080
    sourceNamespace: shop
    gateways: [mesh]
  route:
  - destination: {host: reviews, subset: v1}
    weight: 90
    headers: {request: {set: {x-dest: v1}}, response: {remove: [x-internal]}}
  - {destination: {host: reviews, subset: v2}, weight: 10}
  rewrite: {uri: /v2/api, authority: reviews.internal}
  timeout: 5s
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,503", retryRemoteLocalities: false, retryIgnorePreviousHosts: true}
  fault:
    delay: {fixedDelay: 5s, percentage: {value: 0.1}}
    abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}
  mirror: {host: ratings}
  mirrorPercentage: {value: 12.5}
  headers:
    request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
    response: {set: {x-d: "3"}}
- match: [{uri: {exact: /old}}]
  redirect: {uri: /new, authority: example.com, port: 8080, scheme: https, redirectCode: 308}
- match: [{uri: {exact: /health}}]
  directResponse: {status: 200, body: {string: ok}}
  headers: {response: {set: {content-type: text/plain}}}
- match: [{uri: {exact: /bytes}}]
  directResponse: {status: 503, body: {bytes: aGVsbG8=}}
- route: [{destination: {host: reviews}}]
  rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1"}}
  mirrors:
  - {destination: {host: ratings}, percentage: {value: 5}}
  - {destination: {host: details}}
  fault: {abort: {httpStatus: 503}, delay: {fixedDelay: 1s, percent: 10}}
  retries: {attempts: 0}
"#);
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn what_weft_does_not_support_yet_is_refused_by_name() {
    let errors = vs(r#"
hosts: [reviews]
gateways: [mesh, istio-system/ingress]
http:
- match: [{sourceLabels: {app: web}, gateways: [my-gateway], statPrefix: reviews}]
  delegate: {name: other}
- route: [{destination: {host: reviews}}]
  retries: {attempts: 2, retryRemoteLocalities: true, retryIgnorePreviousHosts: false, backoff: 0s}
  fault: {abort: {http2Error: REFUSED_STREAM}, delay: {exponentialDelay: 1s}}
- redirect: {uri: /x, derivePort: FROM_REQUEST_PORT}
tls: [{match: [{sniHosts: [reviews], sourceLabels: {"-app": web}}], route: [{destination: {host: reviews}}]}]
tcp: [{match: [{sourceNamespace: shop, gateways: [my-gateway]}], route: [{destination: {host: reviews}}]}]
exportTo: ["."]
"#);
    assert_eq!(
        errors,
        [
            "spec.gateways[1]: gateway \"istio-system/ingress\" is not supported by Weft yet: Weft has only the mesh (\"mesh\"), no gateways yet",
            "spec.http[0].match[0].gateways[0]: gateway \"my-gateway\" is not supported by Weft yet: Weft has only the mesh (\"mesh\"), no gateways yet",
            "spec.http[0].match[0].statPrefix: per-route statistics (statPrefix) is not supported by Weft yet",
            "spec.http[1].retries.retryRemoteLocalities: retrying in other localities (Envoy's previous_priorities) is not supported by Weft yet",
            "spec.http[1].retries.backoff: must be greater than 0",
            "spec.http[1].fault.delay.exponentialDelay: an exponential delay (nor by Istio) is not supported by Weft yet",
            "spec.http[1].fault.abort.http2Error: aborting with an HTTP/2 error (http2Error) is not supported by Weft yet",
            "spec.http[2].redirect.derivePort: derivePort; set port is not supported by Weft yet",
            "spec.tls[0].match[0].sourceLabels[\"-app\"]: label key \"-app\" must be [prefix/]name with a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            "spec.tcp[0].match[0].gateways[0]: gateway \"my-gateway\" is not supported by Weft yet: Weft has only the mesh (\"mesh\"), no gateways yet",
        ]
    );
}

#[test]
fn source_labels_must_be_kubernetes_labels() {
    let errors = vs(r#"
hosts: [reviews]
http:
- match: [{sourceLabels: {app: web, app.kubernetes.io/name: web, version: ""}}]
  route: [{destination: {host: reviews}}]
- match: [{sourceLabels: {"-app": web, "Bad.Prefix/app": web, version: "v 2"}}]
  route: [{destination: {host: reviews}}]
"#);
    assert_eq!(
        errors,
        [
            "spec.http[1].match[0].sourceLabels[\"-app\"]: label key \"-app\" must be [prefix/]name with a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            "spec.http[1].match[0].sourceLabels[\"Bad.Prefix/app\"]: label key \"Bad.Prefix/app\" has a prefix that is not a DNS subdomain (lowercase letters, digits, '-', '.')",
            "spec.http[1].match[0].sourceLabels[\"version\"]: label value \"v 2\" must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ]
    );
}

#[test]
fn subset_labels_must_be_kubernetes_labels() {
    let errors =
        dr("host: reviews\nsubsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v/2}}]\n");
    assert_eq!(
        errors,
        [
            "spec.subsets[1].labels[\"version\"]: label value \"v/2\" must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ]
    );
}

#[test]
fn tcp_and_tls_rules_are_valid_alone() {
    let errors = vs(r#"
hosts: [db]
tcp:
- match: [{port: 3306, destinationSubnets: [10.0.0.0/8, 10.1.2.3, "fd00::/8"], gateways: [mesh]}]
  route:
  - {destination: {host: db, subset: v1}, weight: 80}
  - {destination: {host: db, subset: v2, port: {number: 3307}}, weight: 20}
- route: [{destination: {host: db}}]
tls:
- match: [{port: 443, sniHosts: [login.example.com, "*.example.com"]}]
  route: [{destination: {host: db}}]
"#);
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn every_problem_of_tcp_and_tls_rules_is_reported_with_its_path() {
    let errors = vs(r#"
hosts: [db]
tcp:
- match: [{port: 0, destinationSubnets: [10.0.0.0/33, db], sourceLabels: {app: web}}]
  route:
  - {destination: {host: Db}, weight: -1}
  - {destination: {host: db}, weight: 0}
- route: []
tls:
- match: [{sniHosts: []}, {sniHosts: ["", "a.*.com", "*", "Login.example.com"], sourceNamespace: shop}]
  route: [{destination: {host: db}, weight: 2147483647}, {destination: {host: db}, weight: 2147483647}, {destination: {host: db}, weight: 2147483647}]
- match: []
  route: [{destination: {host: db, port: {number: 70000}}}]
"#);
    assert_eq!(
        errors,
        [
            "spec.tls[0].match[0].sniHosts: at least one SNI host is required",
            "spec.tls[0].match[1].sniHosts[0]: SNI host must not be empty",
            "spec.tls[0].match[1].sniHosts[1]: SNI host \"a.*.com\": a wildcard is allowed only as a prefix of a domain (\"*.example.com\")",
            "spec.tls[0].match[1].sniHosts[2]: SNI host \"*\": a wildcard is allowed only as a prefix of a domain (\"*.example.com\")",
            "spec.tls[0].match[1].sniHosts[3]: SNI host \"Login.example.com\" is not a valid DNS name",
            "spec.tls[0].route: the weights add up to 6442450941, more than 4294967295 (the largest total Envoy accepts)",
            "spec.tls[1].match: a tls rule needs at least one match (with sniHosts)",
            "spec.tls[1].route[0].destination.port.number: port 70000 is out of range 1-65535",
            "spec.tcp[0].match[0].destinationSubnets[0]: \"10.0.0.0/33\" is not an IP address or a subnet (a.b.c.d, a.b.c.d/xx, or IPv6 alike)",
            "spec.tcp[0].match[0].destinationSubnets[1]: \"db\" is not an IP address or a subnet (a.b.c.d, a.b.c.d/xx, or IPv6 alike)",
            "spec.tcp[0].match[0].port: port 0 is out of range 1-65535",
            "spec.tcp[0].route[0].destination.host: host \"Db\" is not a valid DNS name",
            "spec.tcp[0].route[0].weight: weight -1 must not be negative",
            "spec.tcp[0].route: the weights of several destinations must not all be zero",
            "spec.tcp[1].route: at least one destination is required",
        ]
    );
}

#[test]
fn a_tls_rule_needs_its_match() {
    let spec: Result<VirtualServiceSpec, _> =
        from_value(serde_saphyr::from_str("hosts: [db]\ntls: [{route: [{destination: {host: db}}]}]").unwrap());
    assert!(spec.is_err(), "tls[].match is required, as in Istio");
}

/// A rule with a mistake in every new field (and action fields that exclude each other).
const EVERY_PROBLEM: &str = r#"
hosts: [reviews]
http:
- match:
  - queryParams: {v: {prefix: "1"}, w: {}}
    withoutHeaders: {"bad header": {}}
    port: 0
    sourceNamespace: Shop_1
  route: [{destination: {host: reviews}, headers: {request: {set: {host: x}}}}]
  redirect: {redirectCode: 304, port: 70000}
  directResponse: {status: 700, body: {string: a, bytes: b}}
  rewrite: {uri: /a, uriRegexRewrite: {match: "(", rewrite: x}}
  timeout: 1x
  retries: {attempts: -1, perTryTimeout: 0s, retryOn: "5xx,sometimes,999"}
  fault: {delay: {percentage: {value: 101}}, abort: {httpStatus: 100, grpcStatus: NOPE}}
  mirror: {host: ratings, port: {number: 0}}
  mirrorPercent: 101
  mirrors: [{destination: {host: "*.x"}, percentage: {value: -1}}]
  headers: {response: {add: {":status": "1"}}, request: {remove: [""], set: {x-a: "a\nb"}}}
"#;

#[test]
fn every_problem_of_the_new_fields_at_once() {
    let errors = vs(EVERY_PROBLEM);
    let expected = [
        "spec.http[0].match[0].port: port 0 is out of range 1-65535",
        "spec.http[0].match[0].queryParams[\"v\"].prefix: query parameters are matched by exact or regex only",
        "spec.http[0].match[0].queryParams[\"w\"]: one of exact, prefix or regex is required",
        "spec.http[0].match[0].withoutHeaders[\"bad header\"]: \"bad header\" is not a valid HTTP header name",
        "spec.http[0].match[0].sourceNamespace: \"Shop_1\" is not a valid namespace name",
        "spec.http[0].route[0].headers.request.set[\"host\"]: the authority cannot be changed with a header operation",
        "spec.http[0].redirect: redirect cannot be used with route",
        "spec.http[0].redirect.port: port 70000 is out of range 1-65535",
        "spec.http[0].redirect.redirectCode: redirect code 304 is not one of 301, 302, 303, 307, 308",
        "spec.http[0].directResponse: directResponse cannot be used with route",
        "spec.http[0].directResponse: directResponse cannot be used with redirect",
        "spec.http[0].directResponse.status: status 700 is out of range 200-599",
        "spec.http[0].directResponse.body: only one of string or bytes may be set",
        "spec.http[0].rewrite: rewrite cannot be used with redirect",
        "spec.http[0].rewrite: only one of uri or uriRegexRewrite may be set",
        "spec.http[0].rewrite.uriRegexRewrite.match: invalid regex",
        "spec.http[0].timeout: timeout cannot be used with redirect",
        "spec.http[0].timeout: duration \"1x\" has unknown unit",
        "spec.http[0].retries: retries cannot be used with redirect",
        "spec.http[0].retries.attempts: attempts -1 must not be negative",
        "spec.http[0].retries.perTryTimeout: perTryTimeout must be at least 1ms",
        "spec.http[0].retries.retryOn: \"sometimes\" is neither a retry condition",
        "spec.http[0].retries.retryOn: \"999\" is neither a retry condition",
        "spec.http[0].fault: fault cannot be used with redirect",
        "spec.http[0].fault.delay.fixedDelay: fixedDelay is required",
        "spec.http[0].fault.delay.percentage.value: percentage 101 is out of range 0-100",
        "spec.http[0].fault.abort: only one of httpStatus, grpcStatus or http2Error may be set",
        "spec.http[0].fault.abort.httpStatus: HTTP status 100 is out of range 200-599",
        "spec.http[0].fault.abort.grpcStatus: \"NOPE\" is not a gRPC status name",
        "spec.http[0].mirror: mirror cannot be used with redirect",
        "spec.http[0].mirror.port.number: port 0 is out of range 1-65535",
        "spec.http[0].mirrorPercent: percent 101 is out of range 0-100",
        "spec.http[0].mirrors: mirrors cannot be used with redirect",
        "spec.http[0].mirrors: mirror and mirrors cannot both be set",
        "spec.http[0].mirrors[0].destination.host: wildcard host \"*.x\" is not supported by Weft yet",
        "spec.http[0].mirrors[0].percentage.value: percentage -1 is out of range 0-100",
        "spec.http[0].headers.request.set[\"x-a\"]: a header value must not contain CR, LF or NUL",
        "spec.http[0].headers.request.remove[0]: \"\" is not a valid HTTP header name",
        "spec.http[0].headers.response.add[\":status\"]: pseudo-header \":status\" cannot be changed",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn a_fault_needs_something_to_inject_and_an_abort_an_error() {
    assert_eq!(
        vs("hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {abort: {percentage: {value: 1}}}}]"),
        ["spec.http[0].fault.abort: one of httpStatus or grpcStatus is required"]
    );
    assert_eq!(
        vs("hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {}}]"),
        ["spec.http[0].fault: a fault needs a delay, an abort, or both"]
    );
}

#[test]
fn mirror_percentages_need_a_mirror_and_bodies_need_base64() {
    assert_eq!(
        vs("hosts: [r]\nhttp: [{route: [{destination: {host: r}}], mirrorPercentage: {value: 5}}]"),
        ["spec.http[0].mirrorPercentage: mirrorPercentage (or mirrorPercent) needs mirror"]
    );
    assert_eq!(
        vs("hosts: [r]\nhttp: [{directResponse: {status: 200, body: {bytes: \"not base64!\"}}}]"),
        ["spec.http[0].directResponse.body.bytes: bytes must be base64 (standard alphabet, padded)"]
    );
}

#[test]
fn cors_policies_are_checked_field_by_field() {
    let ok = vs(r#"
hosts: [reviews]
http:
- route: [{destination: {host: reviews}}]
  corsPolicy:
    allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\.example\\.com"}]
    allowMethods: [POST, GET]
    allowHeaders: [x-custom]
    exposeHeaders: ["*"]
    maxAge: 24h
    allowCredentials: true
    unmatchedPreflights: IGNORE
"#);
    assert_eq!(ok, Vec::<String>::new());
    let errors = vs(r#"
hosts: [reviews]
http:
- route: [{destination: {host: reviews}}]
  corsPolicy: {allowOrigins: [{}], allowMethods: ["GE T"], allowHeaders: ["x y"], maxAge: 1.5s}
  headers: {request: {set: {x-client: "%DOWNSTREAM_REMOTE_ADDRESS%", x-sale: "50%% off"}}}
"#);
    assert_eq!(
        errors,
        [
            "spec.http[0].corsPolicy.allowOrigins[0]: one of exact, prefix or regex is required",
            "spec.http[0].corsPolicy.allowMethods[0]: \"GE T\" is not an HTTP method",
            "spec.http[0].corsPolicy.allowHeaders[0]: \"x y\" is not a valid HTTP header name",
            "spec.http[0].corsPolicy.maxAge: maxAge is sent in whole seconds; write it without a fraction",
            "spec.http[0].headers.request.set[\"x-client\"]: Envoy's %VARIABLE% substitutions in header values are not supported by Weft yet (write a literal % as %%)",
        ]
    );
}

#[test]
fn a_direct_response_body_is_at_most_a_mebibyte() {
    let body = "x".repeat(crate::validate::MAX_DIRECT_RESPONSE_BODY + 1);
    let errors = vs(&format!("hosts: [r]\nhttp: [{{directResponse: {{status: 200, body: {{string: {body}}}}}}}]"));
    assert_eq!(errors, ["spec.http[0].directResponse.body: a direct response body may hold at most 1048576 bytes"]);
}

#[test]
fn export_to_takes_this_namespace_every_namespace_or_namespace_names() {
    let http = "hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews}}]}]\n";
    for ok in [r#"["."]"#, r#"["*"]"#, r#"[".", shop, bank]"#, "[shop]", "[]"] {
        assert_eq!(vs(&format!("{http}exportTo: {ok}")), Vec::<String>::new(), "{ok}");
    }
    assert_eq!(
        vs(&format!(r#"{http}exportTo: ["~", Shop, shop, shop, "*"]"#)),
        [
            "spec.exportTo[0]: exportTo entry \"~\" must be \".\" (this namespace), \"*\" (every namespace) or a namespace name",
            "spec.exportTo[1]: exportTo entry \"Shop\" must be \".\" (this namespace), \"*\" (every namespace) or a namespace name",
            "spec.exportTo[3]: duplicate exportTo entry \"shop\"",
            "spec.exportTo: \"*\" (every namespace) cannot be listed with other exportTo entries",
        ]
    );
    let tcp = "hosts: [db]\ntcp: [{route: [{destination: {host: db}}]}]\n";
    assert_eq!(vs(&format!(r#"{tcp}exportTo: ["*"]"#)), Vec::<String>::new(), "tcp rules exported everywhere");
    assert_eq!(vs(tcp), Vec::<String>::new(), "exported everywhere by default");
    assert_eq!(vs(&format!(r#"{tcp}exportTo: ["."]"#)), Vec::<String>::new(), "tcp rules for one namespace");
}

#[test]
fn rule_hosts_may_be_wildcards_destinations_not() {
    let rule =
        |host: &str| vs(&format!("hosts: [\"{host}\"]\nhttp: [{{route: [{{destination: {{host: reviews}}}}]}}]"));
    for ok in ["*", "*.example.com", "*.bank.svc.cluster.local", "reviews"] {
        assert_eq!(rule(ok), Vec::<String>::new(), "{ok}");
    }
    let only_first = "a wildcard is allowed only alone (\"*\") or as the first label of a domain (\"*.example.com\")";
    assert_eq!(rule("a.*.com"), [format!("spec.hosts[0]: wildcard host \"a.*.com\": {only_first}")]);
    assert_eq!(rule("*.*.com"), [format!("spec.hosts[0]: wildcard host \"*.*.com\": {only_first}")]);
    assert_eq!(rule("*."), [format!("spec.hosts[0]: wildcard host \"*.\": {only_first}")]);
    assert_eq!(
        rule("*foo.com"),
        [
            "spec.hosts[0]: wildcard host \"*foo.com\", a wildcard within a label (use a whole label: \"*.example.com\"), is not supported by Weft yet"
        ]
    );
    let to_wildcard = vs("hosts: [reviews]\nhttp: [{route: [{destination: {host: \"*.bank\"}}]}]");
    assert_eq!(
        to_wildcard,
        [
            "spec.http[0].route[0].destination.host: wildcard host \"*.bank\" is not supported by Weft yet; name the Service"
        ]
    );
    for ok in ["*", "*.example.com", "*.bank.svc.cluster.local", "*.bank"] {
        assert_eq!(
            dr(&format!("host: \"{ok}\"\nsubsets: [{{name: v1, labels: {{version: v1}}}}]")),
            Vec::<String>::new()
        );
    }
    assert_eq!(dr("host: \"a.*.com\""), [format!("spec.host: wildcard host \"a.*.com\": {only_first}")]);
    assert_eq!(
        dr("host: \"*foo.com\""),
        [
            "spec.host: wildcard host \"*foo.com\", a wildcard within a label (use a whole label: \"*.example.com\"), is not supported by Weft yet"
        ]
    );
    assert_eq!(dr("host: \"\""), ["spec.host: host must not be empty"]);
}

#[test]
fn a_destination_rule_is_exported_as_a_virtual_service_is() {
    for ok in [r#"["."]"#, r#"["*"]"#, "[]", r#"[shop, "."]"#, "[shop, web]"] {
        assert_eq!(dr(&format!("host: reviews\nexportTo: {ok}")), Vec::<String>::new(), "{ok}");
    }
    assert_eq!(
        dr(r#"{host: reviews, exportTo: ["~", Shop, shop, shop, "*"]}"#),
        [
            "spec.exportTo[0]: exportTo entry \"~\" must be \".\" (this namespace), \"*\" (every namespace) or a namespace name",
            "spec.exportTo[1]: exportTo entry \"Shop\" must be \".\" (this namespace), \"*\" (every namespace) or a namespace name",
            "spec.exportTo[3]: duplicate exportTo entry \"shop\"",
            "spec.exportTo: \"*\" (every namespace) cannot be listed with other exportTo entries",
        ]
    );
}

#[test]
fn a_workload_selector_takes_kubernetes_labels() {
    assert_eq!(dr("host: reviews\nworkloadSelector: {matchLabels: {app: ratings}}"), Vec::<String>::new());
    assert_eq!(
        dr("host: reviews\nworkloadSelector: {matchLabels: {app: \"-x\"}}"),
        [
            "spec.workloadSelector.matchLabels[\"app\"]: label value \"-x\" must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ]
    );
}

#[test]
fn a_rule_delegates_instead_of_acting_and_a_delegate_has_no_hosts() {
    let root = "hosts: [reviews]\nhttp:\n- match: [{uri: {prefix: /v2}}]\n  delegate: {name: reviews-v2, namespace: team}\n  timeout: 2s\n- delegate: {name: rest}\n";
    assert_eq!(vs(root), Vec::<String>::new(), "a root, with a timeout its delegate's rules inherit");
    let delegate =
        "http: [{match: [{uri: {prefix: /v2/a}}], route: [{destination: {host: reviews}}]}]\nexportTo: [\".\"]";
    assert_eq!(vs(delegate), Vec::<String>::new(), "a delegate: no hosts");
    assert_eq!(
        vs("hosts: [r]\nhttp: [{delegate: {name: \"\"}, route: [{destination: {host: r}}], redirect: {uri: /x}}]"),
        [
            "spec.http[0].redirect: redirect cannot be used with route",
            "spec.http[0].delegate.name: the name of the VirtualService to delegate to is required",
            "spec.http[0].delegate: delegate cannot be used with route: the delegate's rules act",
            "spec.http[0].delegate: delegate cannot be used with redirect: the delegate's rules act",
        ]
    );
    assert_eq!(
        vs("gateways: [mesh]\nhttp: [{delegate: {name: deeper}}]\ntcp: [{route: [{destination: {host: db}}]}]"),
        [
            "spec.gateways: a VirtualService without hosts is a delegate: it cannot have gateways (give it hosts, or move them to the VirtualService that delegates to it)",
            "spec.tcp: a VirtualService without hosts is a delegate: it cannot have tcp (give it hosts, or move them to the VirtualService that delegates to it)",
            "spec.http[0].delegate: a VirtualService without hosts is a delegate and cannot delegate further (one level only)",
        ]
    );
    assert_eq!(
        vs("hosts: []"),
        [
            "spec.hosts: at least one host is required (or, for a delegate, http rules)",
            "spec: at least one route is required (http, tcp or tls)"
        ]
    );
}

#[test]
fn locality_settings_follow_istio_s_rules() {
    let valid = [
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true, failover: [{from: us-east, to: \
         eu-west}]}}, outlierDetection: {consecutive5xxErrors: 1}}",
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: \"us-west/zone1/*\", to: \
         {\"us-west/zone1/*\": 80, \"us-west/zone2/*\": 20}}]}}}",
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {failoverPriority: \
         [topology.kubernetes.io/region, topology.kubernetes.io/zone]}}}",
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {enabled: false}}}",
    ];
    for yaml in valid {
        assert_eq!(dr(yaml), Vec::<String>::new(), "{yaml}");
    }
    let errors = dr("host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: \"a/*/c\", to: \
                     {\"a/b\": 60, \"x/*\": 30}}], failover: [{from: a, to: a}, {from: \"a/b\", to: b}], \
                     failoverPriority: [app]}}}");
    let lb = "spec.trafficPolicy.loadBalancer.localityLbSetting";
    assert_eq!(
        errors,
        [
            format!("{lb}: only one of distribute or failover may be set"),
            format!(
                "{lb}.distribute[0].from: \"a/*/c\": a part may not be empty, and '*' may only be the whole last part"
            ),
            format!("{lb}.distribute[0].to: the shares add up to 90, not 100"),
            format!("{lb}.failover[0]: failover must be from one region to another"),
            format!("{lb}.failover[1].from: \"a/b\" is not a region"),
            format!(
                "{lb}.failoverPriority[0]: \"app\": failoverPriority on workload labels is not supported by Weft yet; \
                 use topology.kubernetes.io/region, topology.kubernetes.io/zone, topology.istio.io/subzone, \
                 topology.istio.io/network"
            ),
        ]
    );
}
