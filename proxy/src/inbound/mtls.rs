//! Terminating a sidecar's mutual TLS. A connection whose ClientHello offers the mesh ALPN
//! ([`weft_xds::mtls::MTLS_ALPN`]) is a sidecar's: the handshake requires its workload certificate, chained to
//! the trust bundle, and yields its identity. Anything else (plaintext, or an application's own TLS, which
//! offers other protocols) passes through untouched.

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use weft_xds::SpiffeId;
use weft_xds::mtls::MTLS_ALPN;

use crate::hello::{may_be_tls, peek_hello};
use crate::identity::Credentials;
use crate::identity::tls::peer_identity;
use crate::metrics::{Direction, Metrics};

pub enum Accepted {
    /// Not a sidecar's TLS: the bytes are left for the application.
    Plaintext(TcpStream),
    /// A sidecar's mutual TLS, terminated.
    Mutual { stream: Box<TlsStream<TcpStream>>, peer_identity: SpiffeId },
    /// The handshake failed (counted and logged); the connection is closed.
    Failed,
}

/// Tells a sidecar's mutual TLS from anything else and terminates it; without credentials, everything is
/// plaintext.
pub async fn accept(stream: TcpStream, credentials: Option<&Credentials>, metrics: &Metrics) -> Accepted {
    let Some(credentials) = credentials else { return Accepted::Plaintext(stream) };
    let mut first = [0u8; 1];
    // A client that speaks first sends its first byte at once; a server-first protocol's client sends nothing,
    // and the hello peek below gives up after its timeout.
    if matches!(stream.peek(&mut first).await, Ok(1)) && !may_be_tls(&first) {
        return Accepted::Plaintext(stream);
    }
    let offers_mesh = peek_hello(&stream).await.is_some_and(|hello| hello.alpn.iter().any(|p| p == MTLS_ALPN));
    if !offers_mesh {
        return Accepted::Plaintext(stream);
    }
    let peer = stream.peer_addr().ok();
    match tokio_rustls::TlsAcceptor::from(credentials.server.clone()).accept(stream).await {
        Ok(tls) => match peer_identity(tls.get_ref().1.peer_certificates()) {
            Some(peer_identity) => {
                metrics.handshake(Direction::Inbound, "ok");
                Accepted::Mutual { stream: Box::new(tls), peer_identity }
            }
            None => {
                metrics.handshake(Direction::Inbound, "wrong_peer");
                tracing::warn!(?peer, "inbound mutual TLS: the client certificate names no workload");
                Accepted::Failed
            }
        },
        Err(err) => {
            metrics.handshake(Direction::Inbound, "failed");
            tracing::warn!(?peer, error = %err, "inbound mutual TLS handshake failed");
            Accepted::Failed
        }
    }
}
