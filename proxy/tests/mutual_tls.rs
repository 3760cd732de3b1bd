//! Mutual TLS between sidecars, with real handshakes on loopback: a standalone operator with a CA, a client
//! proxy (explicit outbound) and a server proxy (explicit inbound in front of a backend), each with its own
//! workload token. Checks what users rely on: traffic between meshed workloads is TLS with the expected SPIFFE
//! ids on the wire, plaintext clients still reach a PERMISSIVE server, and certificates from another CA, servers
//! with the wrong identity and tokens for another workload are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Backend, Proxy, get, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_operator::app::{Listeners, SecurePort};
use weft_operator::ca::{Authenticator, Authority, Issuance};
use weft_proxy::identity::tls::peer_identity;
use weft_xds::SpiffeId;

const TRUST_DOMAIN: &str = "cluster.local";

/// A standalone operator with a CA, and the files proxies need: the trust bundle and one token per workload.
struct Mesh {
    xds: SocketAddr,
    secure: SocketAddr,
    dir: tempfile::TempDir,
    authority: Arc<Authority>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mesh {
    /// `config`: the YAML the operator serves.
    async fn start(config: &str) -> Self {
        Self::start_with(config, Duration::from_secs(3600)).await
    }

    /// With workload certificates living at most `lifetime`.
    async fn start_with(config: &str, lifetime: Duration) -> Self {
        let dir = tempfile::Builder::new().prefix("weft-mtls-test-").tempdir().unwrap();
        let authority =
            Arc::new(weft_operator::ca::store::load_or_create(&dir.path().join("ca"), TRUST_DOMAIN).unwrap());
        for (account, token) in [("client", "token-of-client"), ("server", "token-of-server")] {
            std::fs::create_dir_all(dir.path().join("tokens/default")).unwrap();
            std::fs::write(dir.path().join("tokens/default").join(account), token).unwrap();
            std::fs::write(dir.path().join(format!("{account}.token")), token).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/mesh.yaml"), config).unwrap();
        let serving =
            authority.sign_server(&["127.0.0.1".to_string()], Duration::from_secs(3600), SystemTime::now()).unwrap();
        let secure_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure = secure_listener.local_addr().unwrap();
        let xds_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let xds = xds_listener.local_addr().unwrap();
        let listeners = Listeners {
            xds: xds_listener,
            health: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            proxy_scope: Default::default(),
            secure: Some(SecurePort {
                listener: secure_listener,
                serving: tonic::transport::Identity::from_pem(serving.chain_pem, serving.key_pem),
                authority: authority.clone(),
                authenticator: Authenticator::TokenFiles(dir.path().join("tokens")),
                issuance: Issuance { trust_domain: TRUST_DOMAIN.into(), max_lifetime: lifetime },
            }),
        };
        let config_dir = dir.path().join("config");
        let task = tokio::spawn(async move {
            let _ = weft_operator::app::serve_standalone(config_dir, listeners, std::future::pending()).await;
        });
        Self { xds, secure, dir, authority, task }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("ca/root-cert.pem")
    }

    /// The flags that give a proxy the identity of `account` (namespace `default`).
    fn identity_args(&self, account: &str) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--ca-address".into(),
            format!("https://{}", self.secure),
            "--trust-bundle".into(),
            path(&self.bundle()),
            "--identity-token-file".into(),
            path(&self.dir.path().join(format!("{account}.token"))),
            "--service-account".into(),
            account.into(),
        ]
    }

    /// A workload certificate for `account`, signed by the mesh's CA: (chain, key).
    fn certificate_for(&self, account: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (chain, request) = self.signed_for(account);
        let chain = chain.iter().map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).collect();
        (chain, PrivateKeyDer::Pkcs8(request.key_der.into()))
    }

    /// [`Mesh::certificate_for`] in PEM: (chain, key).
    fn pem_certificate_for(&self, account: &str) -> (String, String) {
        let (chain, request) = self.signed_for(account);
        (chain.concat(), request.key_pem)
    }

    fn signed_for(&self, account: &str) -> (Vec<String>, weft_proxy::identity::csr::Request) {
        let id = SpiffeId::new(TRUST_DOMAIN, "default", account);
        let request = weft_proxy::identity::csr::new_request(&id).unwrap();
        let lifetime = Duration::from_secs(600);
        (self.authority.sign_workload(&request.csr_pem, &id, lifetime, SystemTime::now()).unwrap(), request)
    }
}

/// A Service `slow` whose one pod, running a sidecar as `account`, is reached at `endpoint`.
fn service_yaml(endpoint: SocketAddr, account: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: slow, namespace: default}}\n\
         spec:\n  selector: {{app: slow}}\n  ports: [{{name: http, port: 80, targetPort: {port}}}]\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: slow-1, namespace: default, labels: {{app: slow, security.weft.dev/tlsMode: weft}}}}\n\
         spec:\n  serviceAccountName: {account}\n  containers: [{{name: app, image: slow}}]\n\
         status: {{podIP: {ip}}}\n",
        port = endpoint.port(),
        ip = endpoint.ip(),
    )
}

/// An address on 127.0.0.3 nobody listens on (the server pod's "IP").
fn server_pod_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.3:0").unwrap().local_addr().unwrap()
}

/// The server's sidecar in front of `backend`, with the identity `server`.
fn server_proxy(mesh: &Mesh, listen: SocketAddr, backend: SocketAddr) -> Proxy {
    let mut args = mesh.identity_args("server");
    args.extend(["--inbound".to_string(), format!("{listen}={backend}")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_as("slow-1", mesh.xds, &args)
}

/// The client's sidecar, taking its config over TLS from the operator's secure port.
fn client_proxy(mesh: &Mesh) -> Proxy {
    let mut args = mesh.identity_args("client");
    args.extend(["--xds-address".to_string(), format!("https://127.0.0.1:{}", mesh.secure.port())]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(mesh.xds, &args)
}

/// A TLS client as a sidecar would connect, presenting `certificate`, trusting `roots`.
fn tls_client(
    certificate: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    roots: &Path,
) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_file_iter(roots).unwrap() {
        store.add(root.unwrap()).unwrap();
    }
    // Sidecar certificates name SPIFFE ids, not DNS names: the chain is checked by the proxy's own verifier,
    // here the test only needs the handshake and reads the identity itself.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone()).build().unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(IgnoreName(verifier)))
        .with_client_auth_cert(certificate.0, certificate.1)
        .unwrap();
    config.alpn_protocols = vec![weft_xds::mtls::MTLS_ALPN.to_vec()];
    config
}

/// Checks the chain, not the name (sidecar certificates carry no DNS name).
#[derive(Debug)]
struct IgnoreName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One HTTP/1.1 GET over `config`'s TLS to `to`; the peer's identity and the response's status line.
async fn get_over_tls(to: SocketAddr, config: rustls::ClientConfig) -> std::io::Result<(Option<SpiffeId>, String)> {
    let stream = TcpStream::connect(to).await?;
    let name = ServerName::try_from("slow.default.svc.cluster.local").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await?;
    let peer = peer_identity(tls.get_ref().1.peer_certificates());
    tls.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\nconnection: close\r\n\r\n").await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok((peer, text.lines().next().unwrap_or_default().to_string()))
}

#[tokio::test]
async fn meshed_workloads_talk_mutual_tls_with_their_spiffe_ids_and_plaintext_still_reaches_a_permissive_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    let mesh = Mesh::start(&service_yaml(listen, "server")).await;
    let server = server_proxy(&mesh, listen, backend.address);
    let client = client_proxy(&mesh);
    server.wait_ready(StatusCode::OK).await;
    client.wait_ready(StatusCode::OK).await;

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
    let result = get_over_tls(listen, tls_client(forged, &mesh.bundle())).await;
    assert!(
        !matches!(&result, Ok((_, line)) if line.contains("200")),
        "another CA's certificate got through: {result:?}"
    );
    let failed =
        sample(&server.metrics().await, r#"weft_proxy_tls_handshakes_total{direction="inbound",result="failed"}"#);
    assert!(failed >= 1.0, "the refused handshake is counted");
}

#[tokio::test]
async fn a_server_without_the_destinations_identity_gets_no_request() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    // The Service's pod runs as `reviews`; the sidecar answering at its address is `server`.
    let mesh = Mesh::start(&service_yaml(listen, "reviews")).await;
    let server = server_proxy(&mesh, listen, backend.address);
    let client = client_proxy(&mesh);
    server.wait_ready(StatusCode::OK).await;
    client.wait_ready(StatusCode::OK).await;
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = Backend::start().await;
    let listen = server_pod_address();
    // Four-second certificates: renewed every two seconds, so a few rotations happen while the load runs; each
    // upstream connection takes 20 requests, so new handshakes keep happening with the newest certificates.
    let rule = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\n\
                metadata: {name: slow, namespace: default}\n\
                spec: {host: slow, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 20}}}}\n";
    let config = format!("{}{rule}", service_yaml(listen, "server"));
    let mesh = Mesh::start_with(&config, Duration::from_secs(4)).await;
    let server = server_proxy(&mesh, listen, backend.address);
    let client = client_proxy(&mesh);
    server.wait_ready(StatusCode::OK).await;
    client.wait_ready(StatusCode::OK).await;
    let issued = |metrics: &str| sample(metrics, r#"weft_proxy_certificate_requests_total{result="issued"}"#);
    let before = (issued(&client.metrics().await), issued(&server.metrics().await));
    let until = tokio::time::Instant::now() + Duration::from_secs(7);
    let outbound = client.outbound;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while tokio::time::Instant::now() < until && ok < 20_000 {
                    match get(outbound, "slow", "/", &[]).await {
                        Ok((StatusCode::OK, _)) => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.await.unwrap();
        assert!(failed.is_empty(), "failed requests during rotation: {failed:?}\nclient log:\n{}", client.output());
        total += ok;
    }
    let after = (issued(&client.metrics().await), issued(&server.metrics().await));
    assert!(total > 100, "the load ran: {total} requests");
    assert!(after.0 >= before.0 + 2.0 && after.1 >= before.1 + 2.0, "both sidecars rotated: {before:?} -> {after:?}");
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

/// One ADS request on the operator's TLS port as `node_id`, presenting `certificate` (or none): the stream's
/// first answer, or the status it ended with.
async fn ads_over_tls(mesh: &Mesh, node_id: &str, certificate: Option<(String, String)>) -> Result<(), tonic::Status> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let roots = std::fs::read(mesh.bundle()).unwrap();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(roots));
    if let Some((chain, key)) = certificate {
        tls = tls.identity(Identity::from_pem(chain, key));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", mesh.secure.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = DiscoveryRequest {
        node: Some(Node { id: node_id.into(), ..Default::default() }),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    // The stream stays open after the one request, as a proxy's does.
    use tokio_stream::StreamExt as _;
    let requests = tokio_stream::iter([request]).chain(tokio_stream::pending());
    let mut answers = client.stream_aggregated_resources(requests).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("an answer") {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(tonic::Status::aborted("stream ended without an answer")),
        Err(status) => Err(status),
    }
}

#[tokio::test]
async fn on_the_tls_port_a_proxy_gets_config_only_for_its_own_namespace() {
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
    let anonymous = ads_over_tls(&mesh, "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local", None).await;
    assert_eq!(anonymous.unwrap_err().code(), tonic::Code::PermissionDenied, "no certificate");
}
