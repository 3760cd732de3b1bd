//! AuthorizationPolicy on a server sidecar, with real identities on loopback (a standalone operator with a CA,
//! a client sidecar with the identity `client`, a server sidecar in front of a backend): only the allowed
//! caller's requests reach the application, others get `403` from the proxy; a connection that is not HTTP is
//! closed before a byte reaches the application; a dry-run policy only reports; an edit applies to the next
//! request while allowed requests keep succeeding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::mesh_tls::*;
use support::{eventually, get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `slow` Service and these AuthorizationPolicies (`name: spec`, each with `metadata` extras) in its
/// namespace.
fn with_policies(listen: SocketAddr, policies: &[(&str, &str)]) -> String {
    let mut yaml = service_yaml(listen, "server");
    for (name, spec) in policies {
        yaml.push_str(&format!(
            "---\napiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\n\
             metadata: {{name: {name}, namespace: default{extra}}}\nspec: {spec}\n",
            extra = if name.starts_with("dry-") { ", annotations: {weft.dev/dry-run: \"true\"}" } else { "" },
        ));
    }
    yaml
}

const ALLOW_CLIENT: (&str, &str) = (
    "allow-client",
    "{selector: {matchLabels: {app: slow}}, rules: [{from: [{source: {principals: \
     [cluster.local/ns/default/sa/client]}}], to: [{operation: {methods: [GET]}}]}]}",
);
const DENY_ADMIN: (&str, &str) = ("deny-admin", "{action: DENY, rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]}");

fn decisions(action: &str, result: &str, policy: &str) -> String {
    format!(r#"weft_proxy_authz_decisions_total{{action="{action}",result="{result}",policy="{policy}"}}"#)
}

#[tokio::test]
async fn only_the_allowed_identity_reaches_the_application() {
    let mut pair =
        Pair::start(|listen| with_policies(listen, &[ALLOW_CLIENT, DENY_ADMIN]), Duration::from_secs(3600)).await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);

    let (status, body) = get(client.outbound, "slow", "/items", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"), "server log:\n{}", server.output());
    while pair.backend.arrivals.try_recv().is_ok() {}

    // The DENY policy wins over the ALLOW one; a path with dot segments is decided as the application reads it.
    for path in ["/admin/users", "/items/../admin"] {
        let (status, body) = get(client.outbound, "slow", path, &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied\n"), "{path}");
    }
    // A caller without an identity, and one with another identity, match no ALLOW rule.
    let (status, _) = get(listen, "slow", "/items", &[]).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let intruder = tls_client(pair.mesh.certificate_for("intruder"), &pair.mesh.bundle());
    assert_eq!(get_over_tls(listen, intruder).await.unwrap().1, "HTTP/1.1 403 Forbidden");
    // Hosts that disagree are refused: a policy on hosts tests the host the application gets.
    let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    stream.write_all(b"GET http://public/ HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(pair.backend.arrivals.try_recv().is_err(), "no denied request reached the application");

    let metrics = server.metrics().await;
    assert!(sample(&metrics, &decisions("allow", "allowed", "default/allow-client")) >= 1.0, "{metrics}");
    assert_eq!(sample(&metrics, &decisions("deny", "denied", "default/deny-admin")), 2.0);
    assert_eq!(sample(&metrics, r#"weft_proxy_authz_decisions_total{action="allow",result="denied",policy=""}"#), 2.0);
}

#[tokio::test]
async fn a_connection_that_is_not_http_is_closed_before_the_application() {
    let pair = Pair::start(|listen| with_policies(listen, &[ALLOW_CLIENT]), Duration::from_secs(3600)).await;
    let mut stream = tokio::net::TcpStream::connect(pair.listen).await.unwrap();
    stream.write_all(b"\x00\x01 a binary protocol\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed without an answer: {read:?} {answer:?}");
    let metrics = pair.server.metrics().await;
    assert_eq!(sample(&metrics, r#"weft_proxy_tcp_refused_total{direction="inbound",reason="authz_denied"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"weft_proxy_tcp_connections_total{direction="inbound",mode="tcp"}"#), 0.0);
}

#[tokio::test]
async fn a_dry_run_reports_and_an_edit_applies_to_the_next_request_without_failing_allowed_ones() {
    let dry_run = ("dry-deny-all", "{action: DENY, rules: [{}]}");
    let pair = Pair::start(|listen| with_policies(listen, &[dry_run]), Duration::from_secs(3600)).await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);
    let (status, _) = get(client.outbound, "slow", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "a dry run enforces nothing");
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, &decisions("deny", "dry_run_denied", "default/dry-deny-all")), 1.0, "{metrics}");
    assert!(server.output().contains("dry run: a policy would have denied this"));

    // Allowed requests run while the DENY for /admin comes and goes.
    let (stop, failures, done) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, failures, done, outbound) = (stop.clone(), failures.clone(), done.clone(), client.outbound);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(outbound, "slow", "/items", &[]).await {
                    Ok((StatusCode::OK, _)) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    for _ in 0..3 {
        let applied = Instant::now();
        pair.mesh.apply(&with_policies(listen, &[DENY_ADMIN]));
        eventually("the DENY policy applies", || async {
            matches!(get(client.outbound, "slow", "/admin", &[]).await, Ok((StatusCode::FORBIDDEN, _)))
        })
        .await;
        println!("DENY in force {:?} after the edit", applied.elapsed());
        pair.mesh.apply(&with_policies(listen, &[]));
        eventually("the DENY policy is gone", || async {
            matches!(get(client.outbound, "slow", "/admin", &[]).await, Ok((StatusCode::OK, _)))
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(done.load(Ordering::Relaxed) > 0);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "allowed requests failed during the edits");
}
