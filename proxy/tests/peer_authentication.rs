//! PeerAuthentication on a server sidecar, with real handshakes on loopback (a standalone operator with a CA,
//! a client sidecar and a server sidecar in front of a backend): under `STRICT` a plaintext client gets nothing
//! from the application while sidecars still get through over mutual TLS; a port-level `PERMISSIVE` opens one
//! port again; `DISABLE` makes the client's sidecar send plaintext. Every change is an edit of the operator's
//! files, applied to connections opened after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use support::mesh_tls::*;
use support::{eventually, get, sample};

const REFUSED: &str = r#"weft_proxy_tcp_refused_total{direction="inbound",reason="plaintext_strict"}"#;
const INBOUND_OK: &str = r#"weft_proxy_tls_handshakes_total{direction="inbound",result="ok"}"#;

/// The `slow` Service and a PeerAuthentication for its pods with `spec`.
fn with_policy(listen: SocketAddr, spec: &str) -> String {
    format!(
        "{}---\napiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\n\
         metadata: {{name: slow, namespace: default}}\nspec: {spec}\n",
        service_yaml(listen, "server")
    )
}

fn strict(listen: SocketAddr) -> String {
    with_policy(listen, "{selector: {matchLabels: {app: slow}}, mtls: {mode: STRICT}}")
}

async fn plaintext_gets_through(listen: SocketAddr) -> bool {
    matches!(get(listen, "slow", "/", &[]).await, Ok((StatusCode::OK, _)))
}

#[tokio::test]
async fn strict_refuses_plaintext_before_the_application_and_keeps_serving_sidecars() {
    let mut pair = Pair::start(strict, Duration::from_secs(3600)).await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);

    // A sidecar's mutual TLS gets through.
    let (status, body) = get(client.outbound, "slow", "/", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"), "client log:\n{}", client.output());
    assert!(sample(&server.metrics().await, INBOUND_OK) >= 1.0);
    while pair.backend.arrivals.try_recv().is_ok() {}

    // A plaintext client (no sidecar) is closed before a byte reaches the application.
    let refused = get(listen, "slow", "/", &[]).await;
    assert!(refused.is_err(), "plaintext under STRICT: {refused:?}\nserver log:\n{}", server.output());
    assert!(pair.backend.arrivals.try_recv().is_err(), "the application got nothing");
    assert!(sample(&server.metrics().await, REFUSED) >= 1.0, "counted");

    // A client of the mesh's own CA, but speaking TLS as a sidecar does, still gets through.
    let tls = tls_client(pair.mesh.certificate_for("client"), &pair.mesh.bundle());
    assert_eq!(get_over_tls(listen, tls).await.unwrap().1, "HTTP/1.1 200 OK");

    // A port-level PERMISSIVE for the port the Service targets opens it to plaintext again.
    let port_level = format!(
        "{{selector: {{matchLabels: {{app: slow}}}}, mtls: {{mode: STRICT}}, portLevelMtls: {{\"{}\": {{mode: PERMISSIVE}}}}}}",
        listen.port()
    );
    pair.mesh.apply(&with_policy(listen, &port_level));
    eventually("plaintext reaches the PERMISSIVE port", || plaintext_gets_through(listen)).await;

    // Back to STRICT.
    pair.mesh.apply(&strict(listen));
    eventually("plaintext is refused again", || async { get(listen, "slow", "/", &[]).await.is_err() }).await;
}

#[tokio::test]
async fn disable_takes_the_workload_out_of_mutual_tls_on_both_sides() {
    let disable = |listen| with_policy(listen, "{selector: {matchLabels: {app: slow}}, mtls: {mode: DISABLE}}");
    let pair = Pair::start(disable, Duration::from_secs(3600)).await;
    let (listen, server, client) = (pair.listen, &pair.server, &pair.client);

    // The client's sidecar sends plaintext (the operator tells it the endpoint takes no mutual TLS), and the
    // server's passes it on.
    for _ in 0..3 {
        let (status, _) = get(client.outbound, "slow", "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK, "client log:\n{}", client.output());
    }
    assert_eq!(sample(&server.metrics().await, INBOUND_OK), 0.0, "no mutual TLS was terminated");
    assert!(plaintext_gets_through(listen).await);

    // Back to the default (PERMISSIVE): sidecars talk mutual TLS again.
    pair.mesh.apply(&service_yaml(listen, "server"));
    eventually("the client's sidecar originates mutual TLS again", || async {
        let _ = get(client.outbound, "slow", "/", &[]).await;
        sample(&server.metrics().await, INBOUND_OK) >= 1.0
    })
    .await;
}
