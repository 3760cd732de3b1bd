//! The inbound side: connections from other workloads to this pod's application. With `--transparent` they
//! arrive on the capture listener (:15006) and go on to their original destination; in explicit mode they
//! arrive on an `--inbound LISTEN=APP` port and go on to APP. Either way a sidecar's mutual TLS is terminated
//! here ([`mtls`]) and the application gets plaintext on its own port. Whether plaintext clients are served too
//! is the application port's PeerAuthentication mode (`PERMISSIVE`, the default; `STRICT`; `DISABLE`), from the
//! config the operator sends. A connection that carries HTTP is served request by request ([`http`]), with the
//! caller's identity; anything else is forwarded as TCP. Which one: what the Service whose endpoint the
//! connection is addressed to declares on its port (by port name, as the client's sidecar reads it too), else
//! what a sidecar says in its TLS (the ALPN mark of [`weft_xds::mtls::Carried`]), else the connection's first
//! bytes. A declared port is not left to the client: an HTTP port's requests meet its HTTP rate limits and
//! authorization however the client opens. Each request, or each connection that is not HTTP, is
//! authorized first ([`authz`]). Counted either way.

mod authz;
pub mod http;
pub mod mtls;
mod prefixed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_xds::ResourceType;
use weft_xds::authz::Peer;
use weft_xds::inbound::PeerMode;

use crate::counted::Counted;
use crate::dataplane::{Declared, Runtime};
use crate::drain::{ConnectionWatch, Drain};
use crate::identity::CredentialsRx;
use crate::listen::accept;
use crate::metrics::{Direction, Metrics, Mode};
use crate::transparent::{destination_of, tcp};
use http::InboundHttp;
use mtls::Accepted;
use weft_xds::detection::DETECTION_TIMEOUT;

/// What every inbound connection needs.
#[derive(Clone)]
pub struct Inbound {
    pub metrics: Arc<Metrics>,
    /// Connections idle this long are closed.
    pub idle: Option<Duration>,
    /// The workload certificate to terminate mutual TLS with; `None`: plaintext only.
    pub credentials: Option<CredentialsRx>,
    /// The config in force, for the PeerAuthentication modes.
    pub runtime: watch::Receiver<Arc<Runtime>>,
    /// Serves the connections that carry HTTP.
    pub http: Arc<InboundHttp>,
}

/// One accepted inbound connection, on its way to the application.
struct Connection<'a> {
    peer: SocketAddr,
    /// The application's address.
    destination: SocketAddr,
    /// The application's port, as PeerAuthentication and metrics name it.
    port: u16,
    /// This workload's identity, when it has one.
    own: Option<&'a str>,
    /// The caller's identity, when it proved one with mutual TLS.
    peer_identity: Option<String>,
    /// Keeps the proxy's drain waiting while the connection is open.
    watcher: ConnectionWatch,
}

/// How long a connection waits for the proxy's first config (which says what the inbound side accepts and
/// authorizes) before it is closed: the proxy enforces nothing it has not been told, so it waits rather than
/// guess.
const FIRST_CONFIG_WAIT: Duration = Duration::from_secs(10);

impl Inbound {
    /// Serves `listener` until the future is dropped. `app`: where connections go; `None`, to their original
    /// destination (captured by iptables).
    pub async fn serve(&self, listener: TcpListener, app: Option<SocketAddr>, drain: &Drain) {
        let listen_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        loop {
            let (stream, peer) = accept(&listener).await;
            let watcher = drain.watcher();
            let this = self.clone();
            tokio::spawn(async move { this.handle(stream, peer, app, listen_port, watcher).await });
        }
    }

    /// One connection: to the application, as the PeerAuthentication mode of its port allows. The port is the
    /// one the connection was addressed to: its original destination, or in explicit mode the port this
    /// listener listens on (the Service's `targetPort`, which is how the operator knows the endpoint).
    async fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        app: Option<SocketAddr>,
        listen_port: u16,
        watcher: ConnectionWatch,
    ) {
        let metrics = &self.metrics;
        let (destination, port) = match app {
            Some(app) => (app, listen_port),
            None => match destination_of(&stream, peer, Direction::Inbound, metrics) {
                Some(original) => (original, original.port()),
                None => return,
            },
        };
        let Some(mode) = self.mode_for(port).await else {
            metrics.refused(Direction::Inbound, "no_config");
            tracing::warn!(%peer, "inbound connection closed: no config from the operator yet");
            return;
        };
        let credentials = self.credentials.as_ref().and_then(|rx| rx.borrow().clone());
        let own = credentials.as_ref().map(|c| c.id.to_string());
        let mut connection = Connection { peer, destination, port, own: own.as_deref(), peer_identity: None, watcher };
        let declared = self.runtime.borrow().declared_protocol(&destination);
        tracing::debug!(%peer, %destination, ?mode, ?declared, "inbound connection");
        match (mtls::accept(stream, mode, credentials.as_deref(), metrics).await, declared) {
            (Accepted::Plaintext { stream, .. }, Some(Declared::Http)) => self.serve_http(stream, connection).await,
            (Accepted::Plaintext { stream, silent: false }, None) => self.forward(stream, connection).await,
            (Accepted::Plaintext { stream, .. }, _) => self.forward_tcp(stream, &connection).await,
            (Accepted::Mutual { stream, peer_identity, carried }, declared) => {
                tracing::debug!(%peer, peer_identity = %peer_identity, %destination, ?carried, "inbound mutual TLS");
                connection.peer_identity = Some(peer_identity.to_string());
                // The Service's declaration first; else the client's sidecar said what it sends: no need to wait
                // for the first bytes.
                match declared.or(carried.map(Declared::from)) {
                    Some(Declared::Tcp) => self.forward_tcp(stream, &connection).await,
                    Some(Declared::Http) => self.serve_http(stream, connection).await,
                    None => self.forward(stream, connection).await,
                }
            }
            (Accepted::Failed, _) => {}
        }
    }

    /// Forwards a connection to the application: request by request when it carries HTTP, else as TCP.
    async fn forward<I>(&self, io: I, connection: Connection<'_>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sniffed, io) = prefixed::sniff_io(io, DETECTION_TIMEOUT).await;
        if !sniffed.is_http() {
            return self.forward_tcp(io, &connection).await;
        }
        self.serve_http(io, connection).await;
    }

    /// Serves a connection that carries HTTP, request by request.
    async fn serve_http<I>(&self, io: I, connection: Connection<'_>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { peer, destination, port, own, peer_identity, watcher } = connection;
        let io = Counted::new(io, self.metrics.connection(Direction::Inbound, Mode::Http));
        let caller = self.http.caller(peer, (destination, port), peer_identity.as_deref(), own);
        self.http.clone().serve(io, caller, watcher).await;
    }

    /// Forwards a connection that is not HTTP, if the AuthorizationPolicies in force allow it: else it is closed
    /// before a byte reaches the application.
    async fn forward_tcp<I: AsyncRead + AsyncWrite + Unpin>(&self, io: I, connection: &Connection<'_>) {
        let metrics = &self.metrics;
        let runtime = self.runtime.borrow().clone();
        if let Some(policy) = &runtime.config.inbound {
            let principal = connection.peer_identity.as_deref();
            let peer = Peer { ip: connection.peer.ip(), principal, port: connection.port };
            if !authz::allows(&policy.authz.tcp, &peer, None, metrics) {
                metrics.refused(Direction::Inbound, "authz_denied");
                return;
            }
        }
        // The Service the application serves on this address, when this proxy holds it (its namespace's, in the
        // default scope): an endpoint of it is this pod's address and port.
        let service = match runtime.endpoint_clusters.get(&connection.destination) {
            Some(cluster) => metrics.golden.service_of_cluster(cluster).0,
            None => metrics.golden.unknown_service(),
        };
        let flow = tcp::Flow {
            direction: Direction::Inbound,
            peer: connection.peer,
            idle: self.idle,
            metrics,
            service,
            peer_principal: connection.peer_identity.as_deref().map(Arc::from),
        };
        let io = Counted::new(io, metrics.connection(Direction::Inbound, Mode::Tcp));
        tcp::forward(io, connection.destination, flow).await;
    }

    /// The PeerAuthentication mode of the application's `port` in the config in force once listeners have
    /// arrived (without an identity there is no mutual TLS to require: `PERMISSIVE`); `None` when none arrives
    /// in time.
    async fn mode_for(&self, port: u16) -> Option<PeerMode> {
        let mut runtime = self.runtime.clone();
        let has_listeners = |r: &Arc<Runtime>| r.config.versions.contains_key(ResourceType::Listener.short_name());
        let runtime = tokio::time::timeout(FIRST_CONFIG_WAIT, runtime.wait_for(has_listeners)).await.ok()?.ok()?;
        if self.credentials.is_none() {
            return Some(PeerMode::Permissive);
        }
        Some(runtime.config.inbound.as_ref().map(|policy| policy.mode_for(port)).unwrap_or_default())
    }
}
