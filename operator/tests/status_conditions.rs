//! Status as a pure function of the snapshot: one case per condition reason.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use weft_crds::FieldError;
use weft_operator::index::Index;
use weft_operator::source::file::parse_file;
use weft_operator::source::{Event, Kind, Rejection, ResourceKey};
use weft_operator::status::{StatusTarget, needs_write, render, targets};

const BASE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  ports: [{name: http, port: 9080}]\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop, generation: 2}\n\
spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n";

fn vs(spec: &str) -> String {
    format!(
        "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop, generation: 7}}\nspec:\n{spec}"
    )
}

fn index_of(yaml: &str) -> Index {
    let parsed = parse_file(&PathBuf::from("t.yaml"), yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let mut index = Index::default();
    for r in parsed.resources {
        index.apply(Event::Applied(r));
    }
    index
}

fn target(index: &Index, kind: Kind) -> StatusTarget {
    targets(&index.clone().snapshot()).into_iter().find(|t| t.key.kind == kind).expect("a status target")
}

/// (type, status, reason, message) of each condition.
fn conditions(t: &StatusTarget) -> Vec<(String, String, String, String)> {
    t.conditions
        .iter()
        .map(|c| (c.type_.to_string(), c.status.to_string(), c.reason.to_string(), c.message.clone()))
        .collect()
}

#[test]
fn a_valid_rule_with_known_refs_is_accepted_and_resolved() {
    let index = index_of(&format!(
        "{BASE}{}",
        vs("  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: v2}}]}]\n")
    ));
    let t = target(&index, Kind::VirtualService);
    assert_eq!(t.generation, Some(7));
    let c = conditions(&t);
    assert_eq!((c[0].0.as_str(), c[0].1.as_str(), c[0].2.as_str()), ("Accepted", "True", "Accepted"));
    assert_eq!((c[1].0.as_str(), c[1].1.as_str(), c[1].2.as_str()), ("ResolvedRefs", "True", "ResolvedRefs"));
    let dr = conditions(&target(&index, Kind::DestinationRule));
    assert_eq!(dr[1].1, "True");
}

#[test]
fn an_unknown_host_names_the_field() {
    let index =
        index_of(&format!("{BASE}{}", vs("  hosts: [reviews]\n  http: [{route: [{destination: {host: ratings}}]}]\n")));
    let c = conditions(&target(&index, Kind::VirtualService));
    assert_eq!((c[1].1.as_str(), c[1].2.as_str()), ("False", "UnknownHost"));
    assert_eq!(c[1].3, "spec.http[0].route[0].destination.host: no Service ratings.shop.svc.cluster.local");
}

#[test]
fn tcp_and_tls_destinations_are_checked_too() {
    let rules = "  hosts: [reviews]\n  tcp: [{route: [{destination: {host: reviews}}]}]\n  \
                 tls: [{match: [{sniHosts: [a.example.com]}], route: [{destination: {host: reviews, subset: v9}}]}]\n";
    let index = index_of(&format!("{BASE}{}", vs(rules)));
    let c = conditions(&target(&index, Kind::VirtualService));
    assert_eq!((c[0].1.as_str(), c[1].1.as_str(), c[1].2.as_str()), ("True", "False", "UnknownSubset"));
    assert!(c[1].3.starts_with("spec.tls[0].route[0].destination.subset:"), "{}", c[1].3);
}

#[test]
fn an_unknown_subset_lists_the_known_ones() {
    let index = index_of(&format!(
        "{BASE}{}",
        vs("  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: v3}}]}]\n")
    ));
    let c = conditions(&target(&index, Kind::VirtualService));
    assert_eq!((c[1].1.as_str(), c[1].2.as_str()), ("False", "UnknownSubset"));
    assert!(c[1].3.starts_with("spec.http[0].route[0].destination.subset:"), "{}", c[1].3);
    assert!(c[1].3.contains("(DestinationRule subsets: v1, v2)"), "{}", c[1].3);
}

#[test]
fn an_unknown_port_names_the_field() {
    let index = index_of(&format!(
        "{BASE}{}",
        vs("  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, port: {number: 80}}}]}]\n")
    ));
    let c = conditions(&target(&index, Kind::VirtualService));
    assert_eq!(
        (c[1].2.as_str(), c[1].3.as_str()),
        (
            "UnknownPort",
            "spec.http[0].route[0].destination.port.number: Service reviews.shop.svc.cluster.local has no port 80"
        )
    );
}

#[test]
fn a_host_that_is_not_a_service_is_reported() {
    let index = index_of(&format!(
        "{BASE}{}",
        vs("  hosts: [reviews, shop.example.com]\n  http: [{route: [{destination: {host: reviews}}]}]\n")
    ));
    let c = conditions(&target(&index, Kind::VirtualService));
    assert_eq!((c[1].2.as_str(), c[1].3.as_str()), ("UnknownHost", "spec.hosts[1]: no Service shop.example.com"));
}

#[test]
fn a_wildcard_host_is_resolved_when_it_matches_some_service() {
    let with_hosts = |hosts: &str| {
        let index = index_of(&format!(
            "{BASE}{}",
            vs(&format!("  hosts: {hosts}\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"))
        ));
        conditions(&target(&index, Kind::VirtualService))[1].clone()
    };
    let matches = with_hosts(r#"["*.shop.svc.cluster.local", "*"]"#);
    assert_eq!((matches.1.as_str(), matches.2.as_str()), ("True", "ResolvedRefs"));
    let none = with_hosts(r#"["*.example.com"]"#);
    assert_eq!((none.2.as_str(), none.3.as_str()), ("UnknownHost", "spec.hosts[0]: no Service matches *.example.com"));
}

#[test]
fn a_missing_or_hidden_delegate_is_unresolved() {
    let root = vs("  hosts: [reviews]\n  http: [{delegate: {name: api}}, {delegate: {name: api, namespace: team}}]\n");
    let hidden = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: api, namespace: team}\nspec: {exportTo: [\".\"], http: [{route: [{destination: {host: reviews.shop}}]}]}\n";
    let index = index_of(&format!("{BASE}{root}{hidden}"));
    let resolved = target(&index, Kind::VirtualService);
    assert_eq!(resolved.key.name, "reviews");
    let c = conditions(&resolved);
    assert_eq!(
        (c[1].1.as_str(), c[1].2.as_str(), c[1].3.as_str()),
        (
            "False",
            "UnknownDelegate",
            "spec.http[0].delegate: no VirtualService shop/api; spec.http[1].delegate: VirtualService team/api is not exported to namespace shop"
        )
    );
}

#[test]
fn a_destination_rule_for_a_missing_service_is_unresolved() {
    let yaml = "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: x, namespace: shop}\nspec: {host: ghost}\n";
    let c = conditions(&target(&index_of(yaml), Kind::DestinationRule));
    assert_eq!(
        (c[0].1.as_str(), c[1].2.as_str(), c[1].3.as_str()),
        ("True", "UnknownHost", "spec.host: no Service ghost.shop.svc.cluster.local")
    );
}

#[test]
fn an_invalid_rule_is_not_accepted_and_the_message_names_the_field() {
    let mut index = index_of(BASE);
    let key = ResourceKey { kind: Kind::VirtualService, namespace: "shop".into(), name: "reviews".into() };
    let errors = vec![FieldError::new("spec.http[0].route[0].weight", "weight -5 must not be negative")];
    index.apply(Event::Rejected(Rejection { key, generation: Some(8), errors, status: None }));
    let t = target(&index, Kind::VirtualService);
    let c = conditions(&t);
    assert_eq!(t.generation, Some(8));
    assert_eq!((c[0].1.as_str(), c[0].2.as_str()), ("False", "Invalid"));
    assert_eq!(c[0].3, "spec.http[0].route[0].weight: weight -5 must not be negative");
    assert_eq!((c[1].1.as_str(), c[1].2.as_str()), ("Unknown", "Invalid"));
}

#[test]
fn status_is_written_only_when_it_changes_and_keeps_transition_times() {
    let index =
        index_of(&format!("{BASE}{}", vs("  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews}}]}]\n")));
    let mut t = target(&index, Kind::VirtualService);
    assert!(needs_write(&t), "no status yet");
    let earlier = Time(Timestamp::from_second(1_700_000_000).unwrap());
    t.current = Some(render(&t, &earlier));
    assert!(!needs_write(&t), "same conditions, same generation");
    let later = Time(Timestamp::from_second(1_700_000_100).unwrap());
    assert_eq!(render(&t, &later).conditions[0].last_transition_time, earlier, "unchanged status keeps its time");
    t.generation = Some(8);
    assert!(needs_write(&t), "a new generation must be observed");
    t.conditions[1].status = "False";
    assert_eq!(render(&t, &later).conditions[1].last_transition_time, later, "a flipped status gets a new time");
}

#[test]
fn a_peer_authentication_is_accepted_or_names_the_invalid_field_and_has_no_refs_condition() {
    let yaml = "apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: shop, generation: 3}\nspec: {mtls: {mode: STRICT}}\n";
    let mut index = index_of(yaml);
    let t = target(&index, Kind::PeerAuthentication);
    assert_eq!(t.generation, Some(3));
    let c = conditions(&t);
    assert_eq!(c.len(), 1, "a PeerAuthentication names no hosts: Accepted only");
    assert_eq!((c[0].0.as_str(), c[0].1.as_str()), ("Accepted", "True"));
    // The file source rejects an invalid one with every problem; its status says so.
    let invalid =
        yaml.replace("{mtls: {mode: STRICT}}", "{mtls: {mode: STRICT}, portLevelMtls: {\"80\": {mode: DISABLE}}}");
    let parsed = parse_file(&PathBuf::from("t.yaml"), &invalid);
    assert!(parsed.resources.is_empty());
    let key = ResourceKey { kind: Kind::PeerAuthentication, namespace: "shop".into(), name: "strict".into() };
    let errors = vec![FieldError::new("spec.portLevelMtls", "portLevelMtls requires a selector with matchLabels")];
    index.apply(Event::Rejected(Rejection { key, generation: Some(4), errors, status: None }));
    let c = conditions(&target(&index, Kind::PeerAuthentication));
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].1.as_str(), c[0].2.as_str()), ("False", "Invalid"));
    assert!(c[0].3.starts_with("spec.portLevelMtls: portLevelMtls requires a selector"), "{}", c[0].3);
}

#[test]
fn an_authorization_policy_targeting_a_missing_service_is_unresolved() {
    let policy = |targets: &str| {
        format!(
            "{BASE}---\napiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: ap, \
             namespace: shop, generation: 2}}\nspec: {{targetRefs: [{targets}]}}\n"
        )
    };
    let found = conditions(&target(&index_of(&policy("{kind: Service, name: reviews}")), Kind::AuthorizationPolicy));
    assert_eq!(found.len(), 2);
    assert_eq!((found[1].0.as_str(), found[1].1.as_str()), ("ResolvedRefs", "True"));
    let missing = policy(
        "{kind: Service, name: reviews}, {kind: Service, name: ratings}, {kind: Service, name: reviews, namespace: other}",
    );
    let c = conditions(&target(&index_of(&missing), Kind::AuthorizationPolicy));
    assert_eq!((c[0].0.as_str(), c[0].1.as_str()), ("Accepted", "True"));
    assert_eq!((c[1].1.as_str(), c[1].2.as_str()), ("False", "TargetNotFound"));
    assert_eq!(
        c[1].3,
        "spec.targetRefs[1]: no Service shop/ratings; spec.targetRefs[2]: a policy may only target Services of its \
         own namespace shop"
    );
}

#[test]
fn a_rate_limit_policy_is_accepted_and_its_targets_resolved() {
    let yaml = format!(
        "{BASE}---\napiVersion: security.weft.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {{name: rl, \
         namespace: shop}}\nspec: {{targetRef: {{kind: Service, name: ratings}}, total: {{requestsPerSecond: 5}}}}\n"
    );
    let c = conditions(&target(&index_of(&yaml), Kind::HttpLocalRateLimitPolicy));
    assert_eq!((c[0].0.as_str(), c[0].1.as_str()), ("Accepted", "True"));
    assert_eq!(
        (c[1].1.as_str(), c[1].2.as_str(), c[1].3.as_str()),
        ("False", "TargetNotFound", "spec.targetRef: no Service shop/ratings")
    );
}
