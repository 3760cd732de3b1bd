#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use weft_operator::debug::registry::{Nack, ProxiesView, ProxyView, Sent, TypeView};

use super::*;

fn ready(name: &str) -> PodState {
    PodState { name: name.into(), phase: "Running".into(), ready: true }
}

fn proxy(pod: &str, nacked: bool) -> ProxyView {
    let sent = Sent { nonce: "7".into(), version: "3".into(), resources: 2, unix_ms: 1 };
    let nack = nacked.then(|| Nack { nonce: "7".into(), version: "3".into(), message: "bad route".into(), unix_ms: 2 });
    let acked = (!nacked).then(|| "7".to_string());
    let cds = TypeView { sent: Some(sent), acked_nonce: acked, nack };
    ProxyView {
        node: format!("sidecar~10.0.0.1~{pod}.shop~shop.svc.cluster.local"),
        pod: pod.into(),
        namespace: "shop".into(),
        peer: "10.0.0.1:5000".into(),
        protocol: "delta".into(),
        scope: "mesh".into(),
        tls: true,
        connected_unix_ms: 0,
        config: 1,
        types: BTreeMap::from([("CDS".to_string(), cds)]),
    }
}

/// A cluster where everything is as it should be.
fn healthy() -> Facts {
    Facts {
        server: Ok((1, 29, "v1.29.3".into())),
        crds: weft_crds::kinds::ALL
            .iter()
            .map(|k| (format!("{}.{}", k.plural, k.group), CrdState::Established))
            .collect(),
        operator_pods: vec![ready("weft-operator-1"), ready("weft-operator-2")],
        webhook_pods: vec![ready("weft-webhook-1")],
        webhook_configs: vec![
            ("weft-sidecar-injector".into(), Some(WebhookConfig { ca_bundle: true })),
            ("weft-validator".into(), Some(WebhookConfig { ca_bundle: true })),
        ],
        injected_namespaces: vec!["shop".into()],
        pods_without_sidecar: Vec::new(),
        proxies: Ok(vec![ProxiesView { now_unix_ms: 3, config: 1, proxies: vec![proxy("reviews-1", false)] }]),
        silent_operators: Vec::new(),
        unreadable: Vec::new(),
    }
}

fn failed(findings: &[Finding]) -> Vec<&str> {
    findings.iter().filter(|f| f.status == Status::Failed).map(|f| f.text.as_str()).collect()
}

#[test]
fn a_healthy_install_passes_every_check() {
    let findings = evaluate(&healthy(), false);
    assert!(findings.iter().all(|f| f.status == Status::Ok), "{findings:#?}");
    assert_eq!(findings.len(), 2 + weft_crds::kinds::ALL.len() + 2 + 2 + 2);
    let text = render(&findings);
    assert!(text.contains("[ok  ] 1 proxies connected, all in sync"), "{text}");
    assert!(text.ends_with("All checks passed.\n"), "{text}");
}

#[test]
fn each_broken_piece_fails_with_what_to_do() {
    let mut facts = healthy();
    facts.crds[1].1 = CrdState::Missing;
    facts.operator_pods = vec![PodState { name: "weft-operator-1".into(), phase: "Running".into(), ready: false }];
    facts.webhook_configs[0].1 = Some(WebhookConfig { ca_bundle: false });
    facts.webhook_configs[1].1 = None;
    facts.proxies = Ok(vec![ProxiesView { now_unix_ms: 3, config: 1, proxies: vec![proxy("reviews-2", true)] }]);
    let findings = evaluate(&facts, false);
    assert_eq!(
        failed(&findings),
        [
            "destinationrules.networking.weft.dev is missing",
            "no weft-operator pod is ready (weft-operator-1 Running, not ready)",
            "weft-sidecar-injector has no CA bundle: the API server cannot call the webhook",
            "weft-validator is missing",
            "proxies refused config: reviews-2.shop",
        ]
    );
    assert!(findings.iter().filter(|f| f.status == Status::Failed).all(|f| f.hint.is_some()), "{findings:#?}");
    assert!(render(&findings).ends_with("5 check(s) failed, 0 warning(s).\n"));
}

#[test]
fn an_unused_mesh_warns_and_an_unreachable_or_old_cluster_fails() {
    let mut facts = healthy();
    facts.injected_namespaces.clear();
    facts.proxies = Ok(Vec::new());
    facts.pods_without_sidecar = vec!["legacy-0.shop".into()];
    let findings = evaluate(&facts, false);
    let warned: Vec<&str> = findings.iter().filter(|f| f.status == Status::Warning).map(|f| f.text.as_str()).collect();
    assert_eq!(
        warned,
        ["no namespace is labelled for injection", "pods without a sidecar in injected namespaces: legacy-0.shop"]
    );
    let old = Facts { server: Ok((1, 21, "v1.21.14".into())), ..healthy() };
    assert_eq!(failed(&evaluate(&old, true)), ["Kubernetes 1.21 is older than Weft supports"]);
    assert_eq!(evaluate(&old, true).len(), 2, "--pre checks only the cluster");
    let unreachable = Facts { server: Err("connection refused".into()), ..Facts::default() };
    let findings = evaluate(&unreachable, false);
    assert_eq!(failed(&findings), ["cannot reach the Kubernetes API"]);
    assert_eq!(findings.len(), 1, "nothing else can be checked");
}

#[test]
fn a_read_that_is_not_allowed_fails_its_section_only() {
    let mut facts = healthy();
    facts.operator_pods.clear();
    facts.unreadable = vec![("control plane", "listing pods of weft-system: forbidden".into())];
    let findings = evaluate(&facts, false);
    assert_eq!(failed(&findings), ["cannot read: listing pods of weft-system: forbidden"]);
    assert!(!render(&findings).contains("no weft-operator pod"), "the unread section's own check is left out");
    assert!(findings.iter().any(|f| f.section == "webhook" && f.status == Status::Ok), "other sections still run");
}

#[test]
fn an_operator_that_does_not_answer_is_a_warning_when_another_did() {
    let mut facts = healthy();
    facts.silent_operators = vec!["weft-operator-2: timed out".into()];
    let findings = evaluate(&facts, false);
    assert!(failed(&findings).is_empty(), "{findings:#?}");
    let warned: Vec<&str> = findings.iter().filter(|f| f.status == Status::Warning).map(|f| f.text.as_str()).collect();
    assert_eq!(warned, ["an operator did not answer: weft-operator-2: timed out"]);
    assert!(findings.iter().any(|f| f.text == "1 proxies connected, all in sync"), "the answer that came counts");
}
