//! Test support: a throwaway CA (rcgen), the webhook server on a loopback port, and a minimal HTTPS client
//! (hyper + tokio-rustls with ring) that trusts only that CA.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod binary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_webhook::config::{InjectConfig, SidecarMode};
use weft_webhook::limits::Limits;
use weft_webhook::server::AppState;
use weft_webhook::tls::CertReloader;

/// A CA that issues serving certificates for `localhost` and `127.0.0.1`.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A serving certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "weft-webhook test CA");
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn ca(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn leaf(&self) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

/// Writes a leaf's files the way a secret volume update does: new files renamed over the old ones.
pub fn write_leaf(leaf: &Leaf, cert: &Path, key: &Path) {
    for (path, text) in [(key, &leaf.key_pem), (cert, &leaf.cert_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

pub fn inject_config(mode: SidecarMode) -> InjectConfig {
    InjectConfig::with_defaults("weft-proxy:wire", mode)
}

/// The webhook serving on 127.0.0.1 with a fresh certificate; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub pki: Pki,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Set by [`TestServer::start_manual_reload`]: the test calls `check()` itself instead of a background poll.
    pub reloader: Option<CertReloader>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Reloads the certificate in the background every 50 ms.
    pub async fn start(mode: SidecarMode) -> Self {
        Self::start_inner(mode, true, Limits::default()).await
    }

    /// Leaves certificate reloads to the test (`self.reloader`).
    pub async fn start_manual_reload(mode: SidecarMode) -> Self {
        Self::start_inner(mode, false, Limits::default()).await
    }

    /// With request limits of the test's choosing.
    pub async fn start_with_limits(limits: Limits) -> Self {
        Self::start_inner(SidecarMode::Native, true, limits).await
    }

    async fn start_inner(mode: SidecarMode, poll: bool, limits: Limits) -> Self {
        weft_webhook::install_crypto_provider();
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        write_leaf(&pki.leaf(), &cert, &key);
        let reloader = CertReloader::load(&cert, &key).await.unwrap();
        let tls = reloader.config();
        let reloader = if poll {
            tokio::spawn(reloader.run(Duration::from_millis(50)));
            None
        } else {
            Some(reloader)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(inject_config(mode), limits);
        tokio::spawn(weft_webhook::server::serve(listener, tls, state, async move {
            let _ = stopped.await;
        }));
        Self { addr, pki, cert, key, reloader, _dir: dir, stop: Some(stop) }
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        request(self.addr, &self.pki.ca(), "POST", path, body.into(), false).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A TLS connection to `addr` that trusts only `ca` and checks the name `localhost`.
pub async fn connect(addr: SocketAddr, ca: &CertificateDer<'static>, alpn: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// The leaf certificate the server presents now.
pub async fn presented_certificate(addr: SocketAddr, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let stream = connect(addr, ca, b"http/1.1").await;
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// One request over a fresh connection, HTTP/1.1 or (as the API server usually speaks) HTTP/2.
pub async fn request(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Bytes,
    http2: bool,
) -> (StatusCode, Bytes) {
    let stream = connect(addr, ca, if http2 { b"h2" } else { b"http/1.1" }).await;
    // HTTP/2 needs scheme and authority in the URI; HTTP/1.1 sends the path and a Host header.
    let uri = if http2 { format!("https://localhost:{}{path}", addr.port()) } else { path.to_string() };
    let mut builder = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if !http2 {
        builder = builder.header("host", format!("localhost:{}", addr.port()));
    }
    let request = builder.body(Full::new(body)).unwrap();
    let response = if http2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}
