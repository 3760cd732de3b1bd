//! Terminating a sidecar's mutual TLS, as the port's PeerAuthentication mode says. A connection whose
//! ClientHello offers the mesh ALPN ([`weft_xds::mtls::MTLS_ALPN`]) is a sidecar's: the handshake requires its
//! workload certificate, chained to the trust bundle, and yields its identity. Anything else (plaintext, or an
//! application's own TLS, which offers other protocols) passes through untouched under `PERMISSIVE`, and is
//! closed under `STRICT` before a byte reaches the application. Under `DISABLE` nothing is looked at.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use weft_xds::SpiffeId;
use weft_xds::inbound::PeerMode;
use weft_xds::mtls::{Carried, MTLS_ALPN};

use crate::hello::{may_be_tls, peek_hello};
use crate::identity::Credentials;
use crate::identity::tls::peer_identity;
use crate::metrics::{Direction, Metrics};

pub enum Accepted {
    /// Not a sidecar's TLS: the bytes are left for the application. `silent`: the client sent nothing in time
    /// (a server-first protocol), so there is nothing more to look at.
    Plaintext { stream: TcpStream, silent: bool },
    /// A sidecar's mutual TLS, terminated; what it carries when the client said ([`Carried`]).
    Mutual { stream: Box<TlsStream<TcpStream>>, peer_identity: SpiffeId, carried: Option<Carried> },
    /// The handshake failed, or the connection is not allowed (counted and logged); it is closed.
    Failed,
}

/// How long a client may take to send its first byte before the connection is taken as plaintext (a
/// server-first protocol's client sends nothing until the server's greeting).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a sidecar's handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells a sidecar's mutual TLS from anything else and terminates it, or lets the rest through or not as `mode`
/// says. Without credentials (no CA configured) everything else is plaintext, and a sidecar's TLS is refused:
/// the application would get handshake bytes.
pub async fn accept(
    stream: TcpStream,
    mode: PeerMode,
    credentials: Option<&Credentials>,
    metrics: &Metrics,
) -> Accepted {
    if mode == PeerMode::Disable {
        return Accepted::Plaintext { stream, silent: false };
    }
    let peer = stream.peer_addr().ok();
    let first = first_bytes(&stream).await;
    if first != First::MeshTls {
        if mode == PeerMode::Strict {
            metrics.refused(Direction::Inbound, "plaintext_strict");
            tracing::debug!(?peer, "inbound plaintext refused: the port's PeerAuthentication mode is STRICT");
            return Accepted::Failed;
        }
        return Accepted::Plaintext { stream, silent: first == First::Silent };
    }
    let Some(credentials) = credentials else {
        metrics.handshake(Direction::Inbound, "failed");
        tracing::warn!(
            ?peer,
            "a sidecar's mutual TLS arrived, but this proxy has no workload certificate (--ca-address)"
        );
        return Accepted::Failed;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(credentials.server.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => return failed(metrics, peer, &err.to_string()),
        Err(_) => return failed(metrics, peer, "timed out"),
    };
    // The bundle may hold other trust domains' roots (federation, a rotation): the peer must be one of ours.
    match peer_identity(tls.get_ref().1.peer_certificates()) {
        Some(peer_identity) if peer_identity.trust_domain == credentials.id.trust_domain => {
            metrics.handshake(Direction::Inbound, "ok");
            let carried = Carried::of_chosen(tls.get_ref().1.alpn_protocol());
            Accepted::Mutual { stream: Box::new(tls), peer_identity, carried }
        }
        other => {
            metrics.handshake(Direction::Inbound, "wrong_peer");
            tracing::warn!(?peer, peer_identity = ?other.map(|id| id.to_string()), "inbound mutual TLS: the client is no workload of this trust domain");
            Accepted::Failed
        }
    }
}

/// What a connection opens with.
#[derive(Debug, PartialEq, Eq)]
enum First {
    /// Nothing in time (a server-first protocol), or the client closed.
    Silent,
    /// A ClientHello offering the mesh ALPN: a sidecar's TLS.
    MeshTls,
    /// Anything else.
    Other,
}

async fn first_bytes(stream: &TcpStream) -> First {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if may_be_tls(&first) => {}
        Ok(Ok(1)) => return First::Other,
        _ => return First::Silent,
    }
    match peek_hello(stream).await {
        Some(hello) if hello.alpn.iter().any(|p| p == MTLS_ALPN) => First::MeshTls,
        _ => First::Other,
    }
}

fn failed(metrics: &Metrics, peer: Option<std::net::SocketAddr>, why: &str) -> Accepted {
    metrics.handshake(Direction::Inbound, "failed");
    tracing::warn!(?peer, error = why, "inbound mutual TLS handshake failed");
    Accepted::Failed
}
