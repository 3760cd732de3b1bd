//! The mutual TLS tests' mesh: a standalone operator with a CA in this process, the files proxies need (the
//! trust bundle, one token per workload), sidecars with and without identities, and clients that speak the
//! sidecars' TLS themselves (to check what is on the wire).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ParsedCertificate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_operator::app::{CertificateAuthority, Listeners, SecurePort};
use weft_operator::ca::{Authenticator, Authority, Issuance};
use weft_proxy::identity::tls::peer_identity;
use weft_proxy::tls_verify::{CheckedVerifier, NameCheck};
use weft_xds::SpiffeId;

use super::{Backend, Proxy};

pub const TRUST_DOMAIN: &str = "cluster.local";

/// A standalone operator with a CA, and the files proxies need: the trust bundle and one token per workload.
pub struct Mesh {
    pub xds: SocketAddr,
    pub secure: SocketAddr,
    pub dir: tempfile::TempDir,
    pub authority: Arc<Authority>,
    lifetime: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mesh {
    /// `config`: the YAML the operator serves.
    pub async fn start(config: &str) -> Self {
        Self::start_with(config, Duration::from_secs(3600)).await
    }

    /// With workload certificates living at most `lifetime`.
    pub async fn start_with(config: &str, lifetime: Duration) -> Self {
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
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (task, xds, secure) = serve(dir.path(), authority.clone(), lifetime, any, any).await;
        Self { xds, secure, dir, authority, lifetime, task }
    }

    /// Stops the operator and starts it again on the same ports, signing with `authority` (a root rotation).
    pub async fn restart_with(&mut self, authority: Authority) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.authority = Arc::new(authority);
        let (task, _, _) = serve(self.dir.path(), self.authority.clone(), self.lifetime, self.xds, self.secure).await;
        self.task = task;
    }

    /// Replaces the YAML the operator serves (written aside and renamed, as `kubectl apply` replaces an object
    /// whole).
    pub fn apply(&self, config: &str) {
        let staged = self.dir.path().join("mesh.yaml.new");
        std::fs::write(&staged, config).unwrap();
        std::fs::rename(&staged, self.dir.path().join("config/mesh.yaml")).unwrap();
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("ca/root-cert.pem")
    }

    /// The flags that give a proxy the identity of `account` (namespace `default`).
    pub fn identity_args(&self, account: &str) -> Vec<String> {
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
    pub fn certificate_for(&self, account: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.certificate_at(account, SystemTime::now())
    }

    /// [`Mesh::certificate_for`], issued at `at` (ten minutes long: in the past, one that has expired).
    pub fn certificate_at(
        &self,
        account: &str,
        at: SystemTime,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (chain, request) = self.signed_at(account, at);
        let chain = chain.iter().map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).collect();
        (chain, PrivateKeyDer::Pkcs8(request.key_der.into()))
    }

    /// [`Mesh::certificate_for`] in PEM: (chain, key).
    pub fn pem_certificate_for(&self, account: &str) -> (String, String) {
        let (chain, request) = self.signed_for(account);
        (chain.concat(), request.key_pem)
    }

    pub fn signed_for(&self, account: &str) -> (Vec<String>, weft_proxy::identity::csr::Request) {
        self.signed_at(account, SystemTime::now())
    }

    /// A ten-minute certificate for `account` issued at `at` (in the past: one that has expired).
    pub fn signed_at(&self, account: &str, at: SystemTime) -> (Vec<String>, weft_proxy::identity::csr::Request) {
        let id = SpiffeId::new(TRUST_DOMAIN, "default", account);
        let request = weft_proxy::identity::csr::new_request(&id).unwrap();
        let lifetime = Duration::from_secs(600);
        (self.authority.sign_workload(&request.csr_pem, &id, lifetime, at).unwrap(), request)
    }
}

/// The operator of `dir` on `xds` and `secure` (port 0: any), signing with `authority`.
async fn serve(
    dir: &Path,
    authority: Arc<Authority>,
    lifetime: Duration,
    xds: SocketAddr,
    secure: SocketAddr,
) -> (tokio::task::JoinHandle<()>, SocketAddr, SocketAddr) {
    let serving =
        authority.sign_server(&["127.0.0.1".to_string()], Duration::from_secs(3600), SystemTime::now()).unwrap();
    let (secure_listener, xds_listener) = (bind(secure).await, bind(xds).await);
    let addresses = (xds_listener.local_addr().unwrap(), secure_listener.local_addr().unwrap());
    let listeners = Listeners {
        xds: Some(xds_listener),
        health: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        proxy_scope: Default::default(),
        root_namespace: weft_operator::index::ROOT_NAMESPACE.into(),
        secure: Some(SecurePort {
            listener: secure_listener,
            ca: CertificateAuthority {
                serving: tonic::transport::Identity::from_pem(serving.chain_pem, serving.key_pem),
                authority,
                authenticator: Authenticator::TokenFiles(dir.join("tokens")),
                issuance: Issuance { trust_domain: TRUST_DOMAIN.into(), max_lifetime: lifetime },
            },
        }),
    };
    let config_dir = dir.join("config");
    let task = tokio::spawn(async move {
        let _ = weft_operator::app::serve_standalone(config_dir, listeners, std::future::pending()).await;
    });
    (task, addresses.0, addresses.1)
}

/// Binds `address`, waiting for a port just released (a restarted operator) to be free again.
async fn bind(address: SocketAddr) -> TcpListener {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(err) => assert!(std::time::Instant::now() < until, "binding {address}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Service `slow` whose one pod, running a sidecar as `account`, is reached at `endpoint`.
pub fn service_yaml(endpoint: SocketAddr, account: &str) -> String {
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

/// A backend behind a server sidecar (pod `slow-1`, identity `server`), a client sidecar (identity `client`)
/// and the mesh serving `config` (made from the server pod's address), both sidecars ready.
pub struct Pair {
    pub backend: Backend,
    pub listen: SocketAddr,
    pub mesh: Mesh,
    pub server: Proxy,
    pub client: Proxy,
}

impl Pair {
    pub async fn start(config: impl FnOnce(SocketAddr) -> String, lifetime: Duration) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let backend = Backend::start().await;
        let listen = server_pod_address();
        let mesh = Mesh::start_with(&config(listen), lifetime).await;
        let server = server_proxy(&mesh, listen, backend.address);
        let client = client_proxy(&mesh);
        server.wait_ready(http::StatusCode::OK).await;
        client.wait_ready(http::StatusCode::OK).await;
        Self { backend, listen, mesh, server, client }
    }

    /// The `slow` Service (its pod running as `account`) with one-hour certificates.
    pub async fn serving_as(account: &str) -> Self {
        Self::start(|listen| service_yaml(listen, account), Duration::from_secs(3600)).await
    }
}

/// An address on 127.0.0.3 nobody listens on (the server pod's "IP").
pub fn server_pod_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.3:0").unwrap().local_addr().unwrap()
}

/// The server's sidecar in front of `backend`, with the identity `server`.
pub fn server_proxy(mesh: &Mesh, listen: SocketAddr, backend: SocketAddr) -> Proxy {
    server_proxy_with(mesh, listen, backend, &[])
}

/// [`server_proxy`] with `extra` flags.
pub fn server_proxy_with(mesh: &Mesh, listen: SocketAddr, backend: SocketAddr, extra: &[&str]) -> Proxy {
    let mut args = mesh.identity_args("server");
    args.extend(["--inbound".to_string(), format!("{listen}={backend}")]);
    args.extend(extra.iter().map(|flag| flag.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_as("slow-1", mesh.xds, &args)
}

/// The client's sidecar, taking its config over TLS from the operator's secure port.
pub fn client_proxy(mesh: &Mesh) -> Proxy {
    let mut args = mesh.identity_args("client");
    args.extend(["--xds-address".to_string(), format!("https://127.0.0.1:{}", mesh.secure.port())]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(mesh.xds, &args)
}

/// A TLS client as a sidecar would connect, presenting `certificate`, trusting `roots`.
pub fn tls_client(
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
    let verifier = CheckedVerifier::new(Arc::new(store), AnyName, provider.clone());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(certificate.0, certificate.1)
        .unwrap();
    config.alpn_protocols = vec![weft_xds::mtls::MTLS_ALPN.to_vec()];
    config
}

/// Takes any name: sidecar certificates carry SPIFFE ids, which the test reads itself.
#[derive(Debug)]
struct AnyName;

impl NameCheck for AnyName {
    fn check(&self, _: &ParsedCertificate<'_>, _: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// One HTTP/1.1 GET over `config`'s TLS to `to`; the peer's identity and the response's status line.
pub async fn get_over_tls(to: SocketAddr, config: rustls::ClientConfig) -> std::io::Result<(Option<SpiffeId>, String)> {
    get_over_tls_with_alpn(to, config).await.map(|(peer, status, _)| (peer, status))
}

/// [`get_over_tls`], and the ALPN protocol the server chose.
pub async fn get_over_tls_with_alpn(
    to: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<(Option<SpiffeId>, String, Option<Vec<u8>>)> {
    let stream = TcpStream::connect(to).await?;
    let name = ServerName::try_from("slow.default.svc.cluster.local").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await?;
    let peer = peer_identity(tls.get_ref().1.peer_certificates());
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET / HTTP/1.1\r\nhost: slow\r\nconnection: close\r\n\r\n").await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok((peer, text.lines().next().unwrap_or_default().to_string(), alpn))
}

/// One ADS request on the operator's TLS port as `node_id`, presenting `certificate` (or none): the stream's
/// first answer, or the status it ended with.
pub async fn ads_over_tls(
    mesh: &Mesh,
    node_id: &str,
    certificate: Option<(String, String)>,
) -> Result<(), tonic::Status> {
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
