//! The outbound capture listener (:15001): the pod's outbound TCP arrives here, redirected by iptables.
//!
//! Per connection: a TCP or TLS route of the original destination's port takes the connection when it matches
//! ([`l4`]: by address, and by the ClientHello's server name). Otherwise the port decides. A port with no routes is
//! not a mesh port: TCP to the original destination at once (`passthrough`). A port every Service declares HTTP on
//! is served as HTTP at once, however long the client takes to send (Istio's explicit protocol selection); one
//! every Service declares another protocol on (`tcp`, `mysql`, ...) is TCP at once, however long the client
//! waits for the server to speak.
//! Otherwise the first bytes are peeked (not consumed) for as long as the listener says
//! ([`weft_xds::detection`]); HTTP is served and routed by the port's route table (`http`), anything else,
//! including silence from a server-first protocol, is forwarded as TCP (`tcp`): to the Service it was dialled for
//! when the address is a Service's cluster IP or endpoint ([`l4::service_target`]; a cluster IP of a Service outside
//! the proxy's scope is asked for on demand first, [`l4::service_target_asked`]), else as dialled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::drain::ConnectionWatch;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::sniff::{Sniffed, sniff};
use super::{destination_of, l4, tcp};
use crate::counted::Counted;
use crate::drain::Drain;
use crate::http::{Destination, Forwarder, serve_connection};
use crate::listen::accept;
use crate::metrics::{Direction, Mode};
use weft_xds::detection::Detection;

/// How much to look at: enough for a request line.
const SNIFF_BYTES: usize = 1024;
/// Pause between peeks while the first bytes trickle in.
const SNIFF_POLL: Duration = Duration::from_millis(2);

/// Serves `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, forwarder: Arc<Forwarder>, drain: &Drain) {
    loop {
        let (stream, peer) = accept(&listener).await;
        tokio::spawn(handle(stream, peer, forwarder.clone(), drain.watcher()));
    }
}

async fn handle(stream: TcpStream, peer: SocketAddr, forwarder: Arc<Forwarder>, watcher: ConnectionWatch) {
    let Some(original) = destination_of(&stream, peer, Direction::Outbound, &forwarder.metrics) else { return };
    if let Some(routed) = l4::route(&stream, original, &forwarder).await {
        forward_to(stream, routed, (peer, original), &forwarder).await;
        drop(watcher);
        return;
    }
    let mode = classify(&stream, &forwarder, original.port()).await;
    tracing::debug!(%peer, %original, mode = mode.as_str(), "outbound connection");
    if mode == Mode::Tcp {
        let target = match l4::service_target(original, &forwarder) {
            None => l4::service_target_asked(original, &forwarder).await,
            held => held,
        };
        if let Some(target) = target {
            forward_to(stream, target, (peer, original), &forwarder).await;
            drop(watcher);
            return;
        }
    }
    let io = Counted::new(stream, forwarder.metrics.connection(Direction::Outbound, mode));
    match mode {
        Mode::Http => serve_connection(io, forwarder, (Destination::Original(original), peer), watcher).await,
        Mode::Tcp | Mode::Passthrough => {
            let flow = tcp::Flow {
                direction: Direction::Outbound,
                peer,
                idle: forwarder.timeouts.idle,
                metrics: &forwarder.metrics,
                service: forwarder.metrics.golden.unknown_service(),
                peer_principal: None,
            };
            tcp::forward(io, original, flow).await;
            drop(watcher);
        }
    }
}

/// Forwards a TCP connection to the endpoint a route, or the Service it was dialled for, chose: in mutual TLS when
/// the endpoint runs a sidecar. Closed when the cluster has no endpoint to take it (as Envoy's TCP proxy does).
async fn forward_to(
    stream: TcpStream,
    target: Result<l4::L4Target, String>,
    (peer, original): (SocketAddr, SocketAddr),
    forwarder: &Forwarder,
) {
    let target = match target {
        Ok(target) => target,
        Err(reason) => {
            forwarder.metrics.refused(Direction::Outbound, "no_healthy_upstream");
            tracing::debug!(%peer, %original, reason, "tcp connection has nowhere to go; closed");
            return;
        }
    };
    tracing::debug!(%peer, %original, cluster = target.cluster, endpoint = %target.endpoint, "tcp to a cluster");
    let io = Counted::new(stream, forwarder.metrics.connection(Direction::Outbound, Mode::Tcp));
    let idle = target.idle_timeout.map_or(forwarder.timeouts.idle, |t| (!t.is_zero()).then_some(t));
    let (service, _) = forwarder.metrics.golden.service_of_cluster(&target.cluster);
    let metrics = &forwarder.metrics;
    let flow = tcp::Flow { direction: Direction::Outbound, peer, idle, metrics, service, peer_principal: None };
    tcp::forward_with(io, target.endpoint, target.tls.as_deref(), flow).await;
    drop(target.lease);
}

async fn classify(stream: &TcpStream, forwarder: &Forwarder, port: u16) -> Mode {
    let detection = {
        let runtime = forwarder.runtime.borrow();
        let config = &runtime.config;
        // A mesh port: a listener, and the route table it names has arrived.
        match config.listener_for_port(port) {
            Some(listener) if config.routes.contains_key(&listener.route_config) => listener.detection,
            _ => return Mode::Passthrough,
        }
    };
    match detection {
        Detection::Off => Mode::Http,
        Detection::Tcp => Mode::Tcp,
        Detection::Within(timeout) if sniff_stream(stream, timeout).await.is_http() => Mode::Http,
        Detection::Within(_) => Mode::Tcp,
    }
}

/// Peeks at the first bytes until [`sniff`] can tell, the client closes, or `timeout` passes (then: not HTTP).
async fn sniff_stream(stream: &TcpStream, timeout: Option<Duration>) -> Sniffed {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut buffer = [0u8; SNIFF_BYTES];
    loop {
        let peeked = match until(deadline, stream.peek(&mut buffer)).await {
            Some(Ok(0)) | Some(Err(_)) | None => return Sniffed::Other,
            Some(Ok(n)) => n,
        };
        match sniff(&buffer[..peeked], peeked == buffer.len()) {
            Sniffed::NeedMore => {}
            verdict => return verdict,
        }
        // Peeking again returns at once with the same bytes; wait a little for more to arrive.
        let pause = Instant::now() + SNIFF_POLL;
        tokio::time::sleep_until(deadline.map_or(pause, |d| pause.min(d))).await;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Sniffed::Other;
        }
    }
}

/// `work`'s output, unless `deadline` passes first.
async fn until<F: std::future::Future>(deadline: Option<Instant>, work: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}
