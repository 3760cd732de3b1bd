//! Mutual TLS between sidecars, with real handshakes on loopback: a standalone operator with a CA, a client
//! proxy (explicit outbound) and a server proxy (explicit inbound in front of a backend), each with its own
//! workload token. Checks what users rely on: traffic between meshed workloads is TLS with the expected SPIFFE
//! ids on the wire, plaintext clients still reach a PERMISSIVE server, and certificates from another CA, servers
//! with the wrong identity and tokens for another workload are refused; certificates and roots rotate under load
//! without a failed request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::mesh_tls::*;
use support::{Backend, Proxy, get, sample};
use weft_xds::SpiffeId;

/// The `slow` Service with four-second certificates (renewed every two seconds) and 20 requests per upstream
/// connection, so new handshakes keep happening with the newest certificates.
fn rotating(listen: std::net::SocketAddr) -> String {
    let rule = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\n\
                metadata: {name: slow, namespace: default}\n\
                spec: {host: slow, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 20}}}}\n";
    format!("{}{rule}", service_yaml(listen, "server"))
}

/// Two clients sending requests through `outbound`, one after another, until `stop` is set.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl Load {
    fn start(outbound: std::net::SocketAddr) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..2)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u32, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok < 100_000 {
                        match get(outbound, "slow", "/", &[]).await {
                            Ok((StatusCode::OK, _)) => ok += 1,
                            other => failed.push(format!("{other:?}")),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the load; the requests that succeeded, asserting that none failed (`during`, for the message).
    async fn finish(self, during: &str, client: &Proxy) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for worker in self.workers {
            let (ok, failed) = worker.await.unwrap();
            assert!(failed.is_empty(), "failed requests during {during}: {failed:?}\nclient log:\n{}", client.output());
            total += ok;
        }
        assert!(total > 100, "the load ran: {total} requests");
        total
    }
}

const ISSUED: &str = r#"weft_proxy_certificate_requests_total{result="issued"}"#;

#[tokio::test]
async fn meshed_workloads_talk_mutual_tls_with_their_spiffe_ids_and_plaintext_still_reaches_a_permissive_server() {
    let pair = Pair::serving_as("server").await;
    let (listen, mesh, server, client) = (pair.listen, &pair.mesh, &pair.server, &pair.client);

    let (status, body) = get(client.outbound, "slow", "/", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"), "client log:\n{}", client.output());
    let handshakes =
        sample(&server.metrics().await, r#"weft_proxy_tls_handshakes_total{direction="inbound",result="ok"}"#);
    assert!(handshakes >= 1.0, "the client's sidecar reached the server's over mutual TLS");

    // On the wire: the server's sidecar presents the server's SPIFFE id and requires ours.
    let (peer, status_line) =
        get_over_tls(listen, tls_client(mesh.certificate_for("client"), &mesh.bundle())).await.unwrap();
    assert_eq!(peer.map(|p| p.to_string()).as_deref(), Some("spiffe://cluster.local/ns/default/sa/server"));
    assert_eq!(status_line, "HTTP/1.1 200 OK");

    // PERMISSIVE: a client without a sidecar still gets through in plaintext.
    let (status, _) = get(listen, "slow", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let (_, identity) = get(client.admin, "admin", "/certificate", &[]).await.unwrap();
    assert!(identity.contains("spiffe://cluster.local/ns/default/sa/client"), "{identity}");
    assert!(!identity.contains("PRIVATE KEY"), "the admin endpoint never shows the key");
}

/// A sidecar says what its connection carries with an ALPN mark offered before the mesh's own: the server's
/// sidecar chooses the mark and serves a marked connection as it says, without reading its first bytes (HTTP
/// request by request; TCP forwarded as it is, so a server-first protocol is not kept waiting), while a client
/// offering the mesh's ALPN alone (a sidecar from before the marks) is still served, told apart by its bytes.
#[tokio::test]
async fn the_clients_alpn_mark_says_what_a_connection_carries() {
    use weft_xds::mtls::{Carried, MTLS_ALPN, MTLS_HTTP_ALPN, MTLS_TCP_ALPN};
    let pair = Pair::serving_as("server").await;
    let (listen, mesh, server) = (pair.listen, &pair.mesh, &pair.server);
    let inbound = |mode: &str| format!(r#"weft_proxy_tcp_connections_total{{direction="inbound",mode="{mode}"}}"#);
    let cases = [
        (Carried::Http.offer(), MTLS_HTTP_ALPN, "http"),
        (Carried::Tcp.offer(), MTLS_TCP_ALPN, "tcp"),
        (vec![MTLS_ALPN.to_vec()], MTLS_ALPN, "http"),
    ];
    for (offer, chosen, mode) in cases {
        let mut config = tls_client(mesh.certificate_for("client"), &mesh.bundle());
        config.alpn_protocols = offer;
        let before = sample(&server.metrics().await, &inbound(mode));
        let (_, status, alpn) = get_over_tls_with_alpn(listen, config).await.unwrap();
        let chosen_text = String::from_utf8_lossy(chosen);
        assert_eq!(status, "HTTP/1.1 200 OK", "the request reaches the app ({chosen_text})");
        assert_eq!(alpn.as_deref(), Some(chosen), "the server's sidecar chose {chosen_text}");
        let after = sample(&server.metrics().await, &inbound(mode));
        assert_eq!(after - before, 1.0, "a connection offering {chosen_text} is served as {mode}");
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_by_the_server_sidecar() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    let mesh = Mesh::start(&service_yaml(listen, "server")).await;
    let server = server_proxy(&mesh, listen, backend.address);
    server.wait_ready(StatusCode::OK).await;

    let stranger = Mesh::start("").await;
    let forged = stranger.certificate_for("client");
    assert_refused(listen, tls_client(forged, &mesh.bundle()), &server, "another CA's certificate").await;
}

/// A request over `config`'s TLS to `listen` gets no answer from the app, and the server counts the refusal.
async fn assert_refused(listen: std::net::SocketAddr, config: rustls::ClientConfig, server: &Proxy, what: &str) {
    let result = get_over_tls(listen, config).await;
    assert!(!matches!(&result, Ok((_, line)) if line.contains("200")), "{what} got through: {result:?}");
    let failed =
        sample(&server.metrics().await, r#"weft_proxy_tls_handshakes_total{direction="inbound",result="failed"}"#);
    assert!(failed >= 1.0, "the refused handshake is counted");
}

#[tokio::test]
async fn an_expired_certificate_of_the_mesh_is_refused_by_the_server_sidecar() {
    let pair = Pair::serving_as("server").await;
    let (mesh, server) = (&pair.mesh, &pair.server);
    let expired = mesh.certificate_at("client", std::time::SystemTime::now() - Duration::from_secs(3600));
    assert_refused(pair.listen, tls_client(expired, &mesh.bundle()), server, "an expired certificate").await;
}

#[tokio::test]
async fn a_server_without_the_destinations_identity_gets_no_request() {
    // The Service's pod runs as `reviews`; the sidecar answering at its address is `server`.
    let pair = Pair::serving_as("reviews").await;
    let client = &pair.client;
    let (status, _) = get(client.outbound, "slow", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(client.output().contains("the peer is not a workload of the destination"), "{}", client.output());
}

#[tokio::test]
async fn a_token_gets_a_certificate_only_for_its_own_workload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mesh = Mesh::start("").await;
    let settings = |account: &str, token: &str| weft_proxy::identity::IdentitySettings {
        ca_address: format!("https://{}", mesh.secure),
        roots_file: mesh.bundle(),
        token_file: mesh.dir.path().join(format!("{token}.token")),
        id: SpiffeId::new(TRUST_DOMAIN, "default", account),
        lifetime: Duration::from_secs(600),
    };
    let own = weft_proxy::identity::client::fetch(&settings("client", "client")).await.unwrap();
    assert_eq!(own.id.to_string(), "spiffe://cluster.local/ns/default/sa/client");
    let err = weft_proxy::identity::client::fetch(&settings("server", "client")).await.unwrap_err().to_string();
    assert!(err.contains("refused") && err.contains("sa/server"), "{err}");
    std::fs::write(mesh.dir.path().join("nobody.token"), "not-a-token").unwrap();
    let err = weft_proxy::identity::client::fetch(&settings("client", "nobody")).await.unwrap_err().to_string();
    assert!(err.contains("Unauthenticated"), "{err}");
}

#[tokio::test]
async fn certificates_rotate_under_continuous_load_without_a_failed_request() {
    let pair = Pair::start(rotating, Duration::from_secs(4)).await;
    let (server, client) = (&pair.server, &pair.client);
    let before = [sample(&client.metrics().await, ISSUED), sample(&server.metrics().await, ISSUED)];
    let load = Load::start(client.outbound);
    // Under load until both sidecars renewed their certificates three times.
    renewed(&[client, server], &before, 3.0).await;
    let total = load.finish("rotation", client).await;
    let handshakes =
        sample(&server.metrics().await, r#"weft_proxy_tls_handshakes_total{direction="inbound",result="ok"}"#);
    assert!(
        handshakes >= f64::from(total) / 20.0 - 2.0,
        "new connections all along: {handshakes} handshakes, {total} requests"
    );
}

#[tokio::test]
async fn a_server_sidecar_without_a_certificate_refuses_mutual_tls_rather_than_pass_it_to_the_app() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    let mesh = Mesh::start(&service_yaml(listen, "server")).await;
    // The pod says it speaks mutual TLS, but its sidecar was started without a CA.
    let args = ["--inbound".to_string(), format!("{listen}={}", backend.address)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Proxy::start_as("slow-1", mesh.xds, &args);
    server.wait_ready(StatusCode::OK).await;
    let result = get_over_tls(listen, tls_client(mesh.certificate_for("client"), &mesh.bundle())).await;
    assert!(result.is_err(), "the handshake reached something: {result:?}");
    let mut arrivals = backend.arrivals;
    assert!(arrivals.try_recv().is_err(), "the application never sees the handshake");
    let failed =
        sample(&server.metrics().await, r#"weft_proxy_tls_handshakes_total{direction="inbound",result="failed"}"#);
    assert_eq!(failed, 1.0);
}

#[tokio::test]
async fn on_the_tls_port_a_proxy_gets_config_only_as_its_own_namespace_and_pod() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mesh = Mesh::start(&service_yaml(server_pod_address(), "server")).await;
    let own = ads_over_tls(
        &mesh,
        "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local",
        Some(mesh.pem_certificate_for("client")),
    )
    .await;
    assert!(own.is_ok(), "its own namespace: {own:?}");
    let other = ads_over_tls(
        &mesh,
        "sidecar~10.0.0.2~web-1.shop~shop.svc.cluster.local",
        Some(mesh.pem_certificate_for("client")),
    )
    .await;
    assert_eq!(other.unwrap_err().code(), tonic::Code::PermissionDenied, "a certificate of default asking as shop");
    let wrong_account = ads_over_tls(
        &mesh,
        "sidecar~127.0.0.3~slow-1.default~default.svc.cluster.local",
        Some(mesh.pem_certificate_for("client")),
    )
    .await;
    assert_eq!(
        wrong_account.unwrap_err().code(),
        tonic::Code::PermissionDenied,
        "pod slow-1 runs as `server`; a certificate of `client` may not speak for it"
    );
    let right_account = ads_over_tls(
        &mesh,
        "sidecar~127.0.0.3~slow-1.default~default.svc.cluster.local",
        Some(mesh.pem_certificate_for("server")),
    )
    .await;
    assert!(right_account.is_ok(), "its own pod: {right_account:?}");
    let anonymous = ads_over_tls(&mesh, "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local", None).await;
    assert_eq!(anonymous.unwrap_err().code(), tonic::Code::PermissionDenied, "no certificate");
}

/// Waits until each proxy got `more` certificates beyond `before` (its count of issued ones).
async fn renewed(proxies: &[&Proxy], before: &[f64], more: f64) -> Vec<f64> {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut now = Vec::new();
        for proxy in proxies {
            now.push(sample(&proxy.metrics().await, ISSUED));
        }
        if now.iter().zip(before).all(|(now, before)| *now >= before + more) {
            return now;
        }
        assert!(std::time::Instant::now() < until, "certificates not renewed: {before:?} -> {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_root_rotation_under_load_completes_without_a_failed_request() {
    let mut pair = Pair::start(rotating, Duration::from_secs(4)).await;
    let listen = pair.listen;
    let load = Load::start(pair.client.outbound);
    let proxies = [&pair.server, &pair.client];
    let counts = renewed(&proxies, &[0.0, 0.0], 1.0).await;
    let old_root = std::fs::read_to_string(pair.mesh.bundle()).unwrap();
    let new = weft_operator::ca::authority::Authority::generate(TRUST_DOMAIN, std::time::SystemTime::now()).unwrap();
    let both = format!("{old_root}{}", new.root_cert);
    // 1. Both roots in the bundle; every sidecar renews and now trusts both.
    std::fs::write(pair.mesh.bundle(), &both).unwrap();
    let counts = renewed(&proxies, &counts, 2.0).await;
    // 2. The CA signs with the new root; every sidecar renews onto it.
    let files = weft_operator::ca::authority::CaFiles { root_cert: both, ..new.clone() };
    pair.mesh.restart_with(weft_operator::ca::Authority::from_files(files).unwrap()).await;
    let counts = renewed(&proxies, &counts, 2.0).await;
    // 3. The old root leaves the bundle.
    std::fs::write(pair.mesh.bundle(), &new.root_cert).unwrap();
    renewed(&proxies, &counts, 2.0).await;
    load.finish("the root rotation", &pair.client).await;
    // The server's sidecar now presents a certificate of the new root: a client trusting only it gets through.
    let (peer, status) =
        get_over_tls(listen, tls_client(pair.mesh.certificate_for("client"), &pair.mesh.bundle())).await.unwrap();
    assert_eq!(
        (peer.map(|p| p.to_string()), status.as_str()),
        (Some("spiffe://cluster.local/ns/default/sa/server".into()), "HTTP/1.1 200 OK")
    );
}
