//! Originating TLS to a cluster's endpoints. The mesh's mutual TLS to an endpoint that runs a sidecar: a cluster
//! says whether it may ([`MeshTls`]: the destination's workload identities; to every endpoint for
//! `ISTIO_MUTUAL`), EDS says which endpoints run a sidecar, and the proxy's own certificate comes from its
//! identity. Or TLS origination with other certificates to every endpoint ([`super::origination`]). The handshake verifies the chain and trust domain; the peer's identity must then be
//! one of the destination's (any workload of the trust domain when the operator listed none, as Envoy does with
//! no SAN matcher). Without a certificate (no CA configured) the proxy speaks plaintext.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use weft_xds::mtls::Carried;
use weft_xds::origination::{Origination, Pem};

use super::origination::{Alpn, Originator};
use crate::config::cluster::MeshTls;
use crate::identity::CredentialsRx;
use crate::identity::tls::peer_identity;

/// A cluster's TLS: the proxy's credentials and the destination's identities, or its TLS origination, shared by
/// its endpoints.
#[derive(Default)]
pub struct ClusterTls {
    credentials: Option<CredentialsRx>,
    peers: RwLock<Option<Arc<MeshTls>>>,
    origination: RwLock<Option<Configured>>,
}

/// A TLS origination as configured, what building it gave (the message when a file could not be read), and
/// the modification times of its files when they were read.
struct Configured {
    settings: Origination,
    built: Result<Arc<Originator>, String>,
    stamps: Vec<Option<SystemTime>>,
}

impl Configured {
    fn build(settings: &Origination) -> Self {
        // Stamped before reading: a file replaced while it is read is read again next time.
        let stamps = file_stamps(settings);
        let built = Originator::build(settings).map(Arc::new);
        if let Err(err) = &built {
            tracing::warn!(sni = %settings.sni, error = %err, "TLS origination cannot be set up; connections will fail");
        }
        Self { settings: settings.clone(), built, stamps }
    }
}

/// When each file an origination names was last modified (`None`: unreadable). A mounted Secret or ConfigMap
/// is updated in place by the kubelet, and revocation lists must be replaced before they expire: a change is
/// read for the next connection, without new config.
fn file_stamps(settings: &Origination) -> Vec<Option<SystemTime>> {
    let pems = [settings.ca_certificates.as_ref(), settings.crl.as_ref()].into_iter().flatten();
    let client = settings.client_certificate.iter().flat_map(|(chain, key)| [chain, key]);
    pems.chain(client)
        .filter_map(|pem| match pem {
            Pem::File(path) => Some(std::fs::metadata(path).and_then(|m| m.modified()).ok()),
            Pem::Inline(_) => None,
        })
        .collect()
}

impl ClusterTls {
    pub fn new(credentials: Option<CredentialsRx>) -> Self {
        Self { credentials, ..Self::default() }
    }

    /// Takes the cluster's current settings; connections opened from now on follow them. An origination's files
    /// are read again when its settings change, or one of the files does.
    pub fn configure(&self, mesh: Option<&MeshTls>, origination: Option<&Origination>) {
        if let Ok(mut peers) = self.peers.write() {
            *peers = mesh.cloned().map(Arc::new);
        }
        let Ok(mut current) = self.origination.write() else { return };
        if current.as_ref().map(|c| &c.settings) == origination {
            return;
        }
        *current = origination.map(Configured::build);
    }

    /// The origination new connections use, built again first when one of its files changed.
    fn originator(&self) -> Option<Result<Arc<Originator>, String>> {
        let (settings, stale) = {
            let current = self.origination.read().ok()?;
            let current = current.as_ref()?;
            if file_stamps(&current.settings) == current.stamps {
                return Some(current.built.clone());
            }
            (current.settings.clone(), current.stamps.clone())
        };
        let mut current = self.origination.write().ok()?;
        // Another connection may have rebuilt it meanwhile, or new config arrived.
        if current.as_ref().is_some_and(|c| c.settings == settings && c.stamps == stale) {
            tracing::info!(sni = %settings.sni, "TLS origination files changed; read again");
            *current = Some(Configured::build(&settings));
        }
        current.as_ref().map(|c| c.built.clone())
    }

    /// Whether every endpoint is reached over TLS (`ISTIO_MUTUAL`, or TLS origination), not only those that run
    /// a sidecar.
    pub fn covers_every_endpoint(&self) -> bool {
        let mesh_all = self.peers.read().ok().and_then(|p| p.as_ref().map(|m| m.every_endpoint)).unwrap_or(false);
        mesh_all || self.origination.read().is_ok_and(|o| o.is_some())
    }

    /// `stream`, wrapped in TLS when the cluster asks for it; the handshake gets `limit`. A proxy with a CA but
    /// no certificate yet fails the connection rather than fall back to plaintext.
    pub async fn secure(&self, stream: TcpStream, limit: Duration, alpn: Alpn) -> io::Result<UpstreamIo> {
        if let Some(built) = self.originator() {
            let originator = built.map_err(|err| io::Error::other(format!("TLS origination: {err}")))?;
            let address = stream.peer_addr().ok();
            let tls = originator.connect(stream, limit, alpn).await.inspect_err(
                |err| tracing::warn!(endpoint = ?address, error = %err, "outbound TLS origination failed"),
            )?;
            return Ok(UpstreamIo::Tls(Box::new(tls)));
        }
        let peers = self.peers.read().ok().and_then(|p| p.clone());
        let (Some(peers), Some(credentials)) = (peers, self.credentials.as_ref()) else {
            return Ok(UpstreamIo::Plain(stream));
        };
        let Some(credentials) = credentials.borrow().clone() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no workload certificate yet"));
        };
        let name = ServerName::try_from(peers.server_name.clone()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("server name {:?}: {e}", peers.server_name))
        })?;
        let address = stream.peer_addr().ok();
        let carried = if alpn == Alpn::Tcp { Carried::Tcp } else { Carried::Http };
        let handshake = tokio_rustls::TlsConnector::from(credentials.client(carried)).connect(name, stream);
        let tls = match tokio::time::timeout(limit, handshake).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "mutual TLS handshake timed out")),
        }
        .inspect_err(|err| tracing::warn!(endpoint = ?address, error = %err, "outbound mutual TLS handshake failed"))?;
        let identity = peer_identity(tls.get_ref().1.peer_certificates()).map(|id| id.to_string());
        let allowed = identity.as_ref().is_some_and(|id| peers.identities.is_empty() || peers.identities.contains(id));
        if !allowed {
            tracing::warn!(endpoint = ?address, peer = ?identity, expected = ?peers.identities, "outbound mutual TLS: the peer is not a workload of the destination");
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the peer is not a workload of the destination",
            ));
        }
        Ok(UpstreamIo::Tls(Box::new(tls)))
    }
}

/// An upstream connection, plaintext or mutual TLS.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamIo {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The SPIFFE id the server's certificate carries (a sidecar's, verified in the handshake).
    pub fn peer_principal(&self) -> Option<Arc<str>> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(tls) => peer_identity(tls.get_ref().1.peer_certificates()).map(|id| Arc::from(id.to_string())),
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
