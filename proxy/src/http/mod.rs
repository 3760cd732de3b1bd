//! The HTTP data path: serving downstream connections, routing and forwarding each request, passthrough to
//! original destinations, and the proxy's own error replies.

pub mod access_log;
pub mod authority;
pub mod body_end;
mod drive;
mod first_bytes;
mod forward;
pub mod headers;
pub mod local_reply;
pub mod on_demand;
pub mod outbound;
pub mod passthrough;
pub mod path;
pub mod request_id;
pub mod route;
pub mod timeouts;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use forward::Destination;

use crate::config::Labels;
use crate::dataplane::Runtime;
use crate::drain::ConnectionWatch;
use crate::metrics::{ClusterTally, Direction, Metrics};
use crate::telemetry::BodySizes;
use crate::telemetry::trace::Tracer;
use access_log::AccessLog;
use drive::drive;
use first_bytes::{FirstBytes, Prefixed};
use on_demand::OnDemand;
use passthrough::Passthrough;
use timeouts::Timeouts;
use timeouts::connection::{Activity, InFlightBody, Side, TimedIo};

/// Request and response bodies as they travel through the proxy.
pub type Body = BoxBody<Bytes, crate::BoxError>;

/// What forwarding a request reads: the live runtime, the passthrough connection pools, the metrics, the
/// timeouts.
pub struct Forwarder {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub passthrough: Passthrough,
    pub metrics: Arc<Metrics>,
    pub timeouts: Timeouts,
    pub on_demand: OnDemand,
    /// The labels of the pod this proxy serves, for routes that match on the client's labels.
    pub labels: Labels,
    /// The access log and the tracer, when they are on.
    pub observers: Observers,
    /// What requests that reach no configured cluster are counted under.
    pub tallies: OwnTallies,
}

/// What follows each request besides the metrics: the access log and the tracer, each when it is on.
#[derive(Clone, Default)]
pub struct Observers {
    pub access_log: Option<Arc<AccessLog>>,
    pub tracer: Option<Arc<Tracer>>,
}

/// The tallies of requests the proxy answers itself (`none`) and of requests it passes through unrouted.
#[derive(Debug)]
pub struct OwnTallies {
    pub local: Arc<ClusterTally>,
    pub passthrough: Arc<ClusterTally>,
}

impl Forwarder {
    pub fn new(
        runtime: watch::Receiver<Arc<Runtime>>,
        metrics: Arc<Metrics>,
        timeouts: Timeouts,
        on_demand: OnDemand,
        labels: Labels,
    ) -> Self {
        let tallies = OwnTallies {
            local: Arc::new(metrics.outbound_cluster(forward::NO_CLUSTER)),
            passthrough: Arc::new(metrics.outbound_cluster(passthrough::PASSTHROUGH_CLUSTER)),
        };
        let passthrough = Passthrough::default();
        Self { runtime, passthrough, metrics, timeouts, on_demand, labels, observers: Observers::default(), tallies }
    }

    /// Requests are logged and traced by `observers`.
    pub fn observed_by(self, observers: Observers) -> Self {
        Self { observers, ..self }
    }

    /// Asks the control plane for the on-demand name `name` and waits for the answer, counted. A host waits
    /// [`on_demand::ON_DEMAND_TIMEOUT`] (the request has nowhere else to go). An address (`PORT/ADDRESS`, for
    /// traffic sent to an address no Service the proxy holds has) waits [`on_demand::ADDRESS_TIMEOUT`] at most and is
    /// not asked while the xDS stream is down: it can go where it was sent instead, and does not wait out an
    /// outage of the control plane. `None`: not asked.
    pub async fn ask(&self, name: &str, address: bool) -> Option<on_demand::Settled> {
        if address && !self.metrics.xds_connected() {
            return None;
        }
        let answer = self.on_demand.settle(name, &self.runtime);
        let settled = match address {
            true => {
                tokio::time::timeout(on_demand::ADDRESS_TIMEOUT, answer).await.unwrap_or(on_demand::Settled::TimedOut)
            }
            false => answer.await,
        };
        self.metrics.on_demand(address, settled);
        Some(settled)
    }
}

/// The body of a request as a handler gets it: counted in flight until it is done.
pub type ServedBody = InFlightBody<Incoming>;

/// Serves one downstream connection, HTTP/1.1 or HTTP/2 with prior knowledge (detected), forwarding each request
/// towards `destination`. The connection closes gracefully (in-flight requests finish, HTTP/2 gets GOAWAY) when
/// the proxy drains (`watch`) or the connection has been idle for the idle timeout.
pub async fn serve_connection<I>(
    io: I,
    forwarder: Arc<Forwarder>,
    (destination, peer): (Destination, SocketAddr),
    watch: ConnectionWatch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let serving = Serving {
        timeouts: forwarder.timeouts,
        metrics: forwarder.metrics.clone(),
        observers: forwarder.observers.clone(),
        direction: Direction::Outbound,
        peer,
    };
    let handler = move |request: Request<ServedBody>| {
        let forwarder = forwarder.clone();
        async move { forward::handle(request, &forwarder, (destination, peer)).await }
    };
    // Outbound carries no upgrades yet (hop-by-hop headers are stripped), so hyper is not asked to take the
    // connection over after a 101 or a CONNECT's 2xx.
    serve_http(io, serving, Upgrades::No, handler, watch).await;
}

/// Whether a connection's requests may switch protocols (HTTP/1.1 `Upgrade`, `CONNECT`).
/// What serving one HTTP connection needs besides its handler.
#[derive(Clone)]
pub struct Serving {
    pub timeouts: Timeouts,
    pub metrics: Arc<Metrics>,
    pub observers: Observers,
    pub direction: Direction,
    /// The client's address.
    pub peer: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrades {
    Yes,
    No,
}

/// Serves one downstream connection, HTTP/1.1 (with `upgrades`, those too) or HTTP/2 with prior knowledge
/// (detected), answering each request with `handler`, under the connection-level timeouts; closes it gracefully
/// (in-flight requests finish, HTTP/2 gets GOAWAY) when the proxy drains (`watch`) or it has been idle too long.
pub async fn serve_http<I, H, F>(io: I, serving: Serving, upgrades: Upgrades, handler: H, mut watch: ConnectionWatch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<ServedBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Activity::new();
    let Serving { timeouts, metrics, observers, direction, peer } = serving;
    let mut io = TimedIo::http(io, activity.clone(), timeouts, metrics);
    // Nothing more is made for a connection until its client sends something (see `first_bytes`); the idle
    // and request-header timeouts (kept by the I/O) and draining apply meanwhile.
    let first = tokio::select! {
        first = FirstBytes::read(&mut io) => first,
        () = watch.draining() => None,
        () = activity.idle_expired() => None,
    };
    let Some(first) = first else { return };
    let io = Prefixed::new(first, io);
    let service = {
        let activity = activity.clone();
        service_fn(move |mut request: Request<Incoming>| {
            let handler = handler.clone();
            // The request is in flight (for the connection's timeouts) until its body and its response's are done.
            let in_flight = activity.request_started();
            request_id::ensure_request_id(request.headers_mut());
            // Before the log, which records the trace id the request leaves with.
            let traced = observers.tracer.as_ref().and_then(|t| Some((t.clone(), t.begin(&mut request, direction)?)));
            let logged =
                observers.access_log.as_ref().map(|log| (log.clone(), log.begin(&mut request, direction, peer)));
            let request = request.map(|body| InFlightBody::new(body, in_flight.clone(), Side::Request));
            // Boxed once here: hyper moves the request's future into its connection state and, on HTTP/2, into a
            // task of its own; moving a pointer instead of the whole (several KB) future is measurably cheaper.
            Box::pin(async move {
                let mut response = handler(request).await;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    in_flight.switched_protocols();
                }
                if let Some(sizes) = response.extensions_mut().remove::<BodySizes>() {
                    in_flight.report_sizes(sizes);
                }
                if let Some((tracer, span)) = traced {
                    response = tracer.finish(span, response);
                }
                if let Some((log, pending)) = logged {
                    response = log.finish(pending, response, in_flight.clone());
                }
                Ok::<_, Infallible>(response.map(|body| InFlightBody::new(body, in_flight, Side::Response).boxed()))
            })
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let io = TokioIo::new(io);
    // Boxed: the connection task's own future stays small for the time it waits for first bytes.
    match upgrades {
        Upgrades::Yes => {
            let connection = Box::pin(builder.serve_connection_with_upgrades(io, service));
            drive(connection, |c| c.graceful_shutdown(), &activity, watch).await
        }
        Upgrades::No => {
            let connection = Box::pin(builder.serve_connection(io, service));
            drive(connection, |c| c.graceful_shutdown(), &activity, watch).await
        }
    }
}
