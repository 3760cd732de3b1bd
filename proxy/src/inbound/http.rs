//! The inbound side's HTTP: a connection known to carry HTTP (plaintext, or a sidecar's mutual TLS terminated) is
//! served request by request and each request forwarded to the application over pooled connections, so it is
//! counted with the caller's identity (`weft_proxy_inbound_requests_total{source_principal}`) and the application
//! learns that identity from `x-forwarded-client-cert` (Istio's `SANITIZE_SET` for sidecars: a header the client
//! sent is dropped, the proxy's own set when the caller proved an identity). WebSocket upgrades are joined end
//! to end once the application answers `101`; as in Istio's sidecars no other protocol may be switched to (an
//! `h2c` upgrade is served as the HTTP/1.1 request it also is, any other is answered `403`), so every request
//! on a connection passes the checks below. Each request is authorized first, with the AuthorizationPolicies
//! in force when it arrives, on its path without dot segments ([`crate::http::path`], which is also the path the
//! application gets): a denied one is answered `403` (gRPC: `PERMISSION_DENIED`) by the proxy; then the port's
//! rate limit (HTTPLocalRateLimitPolicy), over which it is answered `429` (gRPC: `RESOURCE_EXHAUSTED`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use weft_xds::authz::{HttpRequest, Peer};

use crate::BoxError;
use crate::dataplane::Runtime;
use crate::drain::ConnectionWatch;
use crate::http::access_log::{Logged, UpstreamCluster};
use crate::http::authority::{AuthorityError, point_at, request_authority};
use crate::http::headers::strip_hop_by_hop;
use crate::http::local_reply::LocalReply;
use crate::http::passthrough::Passthrough;
use crate::http::path::normalize_uri;
use crate::http::route::grpc::is_grpc;
use crate::http::timeouts::Timeouts;
use crate::http::{Body, Observers, ServedBody, Serving, Upgrades, serve_http};
use crate::metrics::{Direction, InboundLabels, Metrics};
use crate::telemetry::report;
use crate::upstream::{Endpoint, UpstreamBody};

/// The header carrying the caller's identity to the application (Envoy's and Istio's).
pub const CLIENT_CERT_HEADER: &str = "x-forwarded-client-cert";

/// What serving inbound HTTP needs: connection pools to the application, metrics, timeouts.
pub struct InboundHttp {
    pools: Passthrough,
    metrics: Arc<Metrics>,
    timeouts: Timeouts,
    /// The config in force, for the AuthorizationPolicies.
    runtime: watch::Receiver<Arc<Runtime>>,
    observers: Observers,
}

/// One inbound connection's caller and where its requests go.
#[derive(Clone)]
pub struct Caller {
    /// The caller's address.
    peer: SocketAddr,
    /// The caller's SPIFFE id, when it proved one.
    principal: Option<Arc<str>>,
    /// The application's address.
    pub app: SocketAddr,
    /// The application's port, as policies name it.
    port: u16,
    /// The connection pool to it, looked up once per connection.
    pool: Endpoint,
    /// `By=<this workload>;URI=<the caller>` when the caller proved an identity.
    client_cert: Option<HeaderValue>,
    labels: InboundLabels,
    /// The cluster requests are counted under (Istio's inbound cluster name).
    cluster: Arc<str>,
}

impl InboundHttp {
    pub fn new(metrics: Arc<Metrics>, timeouts: Timeouts, runtime: watch::Receiver<Arc<Runtime>>) -> Self {
        Self { pools: Passthrough::default(), metrics, timeouts, runtime, observers: Observers::default() }
    }

    /// Requests are logged and traced by `observers`.
    pub fn observed_by(self, observers: Observers) -> Self {
        Self { observers, ..self }
    }

    /// The caller at `peer` on a connection to `app` through the application's `port`; identities (the
    /// caller's `principal`, this workload's `own`) are SPIFFE ids.
    pub fn caller(
        &self,
        peer: SocketAddr,
        (app, port): (SocketAddr, u16),
        principal: Option<&str>,
        own: Option<&str>,
    ) -> Caller {
        let client_cert = match (principal, own) {
            (Some(principal), Some(own)) => HeaderValue::from_str(&format!("By={own};URI={principal}")).ok(),
            _ => None,
        };
        let cluster = format!("inbound|{port}||").into();
        let pool = self.pools.endpoint(app);
        let labels = InboundLabels::new(port, principal);
        Caller { peer, principal: principal.map(Arc::from), app, port, pool, client_cert, labels, cluster }
    }

    /// Serves one connection's requests until it closes or the proxy drains.
    pub async fn serve<I>(self: Arc<Self>, io: I, caller: Caller, watch: ConnectionWatch)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let serving = Serving {
            timeouts: self.timeouts,
            metrics: self.metrics.clone(),
            observers: self.observers.clone(),
            direction: Direction::Inbound,
            peer: caller.peer,
        };
        let handler = move |request| {
            let (this, caller) = (self.clone(), caller.clone());
            async move { this.forward(request, &caller).await }
        };
        serve_http(io, serving, Upgrades::Yes, handler, watch).await;
    }

    /// Answers a request (the application's answer, or the proxy's refusal) and reports it.
    async fn forward(&self, mut request: Request<ServedBody>, caller: &Caller) -> Response<Body> {
        let started = Instant::now();
        let logged = request.extensions().get::<Logged>().is_some();
        let golden = &self.metrics.golden;
        let peer = report::take_caller(golden, caller.principal.as_ref(), request.headers_mut());
        let grpc = is_grpc(request.headers());
        // Hosts that disagree (two `Host`s, a URI's against `Host`) are refused: policies test the one host the
        // application then gets.
        let authority = request_authority(request.version(), request.uri(), request.headers());
        let service = {
            let host = authority.as_ref().ok().and_then(Option::as_ref).map_or("", Authority::as_str);
            let runtime = self.runtime.borrow();
            golden.service_of_authority(host, &golden.own_namespace(), |h| runtime.services.contains(h))
        };
        let mut response = self.answer(request, caller, (started, grpc), authority).await;
        let seen =
            report::Inbound { caller: peer.as_deref(), principal: caller.principal.as_ref(), service: &service, grpc };
        report::report_inbound(golden, seen, &mut response, started.elapsed());
        if logged {
            response.extensions_mut().insert(UpstreamCluster(caller.cluster.clone()));
        }
        response
    }

    async fn answer(
        &self,
        mut request: Request<ServedBody>,
        caller: &Caller,
        (started, grpc): (Instant, bool),
        authority: Result<Option<Authority>, AuthorityError>,
    ) -> Response<Body> {
        normalize_uri(request.uri_mut());
        let authority = match authority {
            Ok(Some(authority)) => Ok(authority),
            // The application's address always parses as an authority; refused as unnamed if it somehow did not.
            Ok(None) => Authority::try_from(caller.app.to_string()).map_err(|_| LocalReply::MissingHost),
            Err(err) => Err(LocalReply::BadAuthority(err)),
        };
        let runtime = self.runtime.borrow().clone();
        let refusal = match &authority {
            Err(reply) => Some(*reply),
            Ok(authority) if !self.authorized(&runtime, &request, authority.as_str(), caller) => {
                Some(LocalReply::AccessDenied)
            }
            Ok(_) => self.within_limits(&runtime, caller).err(),
        };
        drop(runtime);
        let authority = match (refusal, authority) {
            (None, Ok(authority)) => authority,
            (reply, _) => {
                let response = reply.unwrap_or(LocalReply::AccessDenied).into_response_for(grpc);
                self.metrics.inbound_request(&caller.labels, response.status());
                return response;
            }
        };
        let upgrade = match requested_upgrade(&request) {
            Upgrade::None | Upgrade::H2c => None,
            Upgrade::WebSocket => Some(hyper::upgrade::on(&mut request)),
            Upgrade::Other => {
                let response = LocalReply::UpgradeRefused.into_response_for(grpc);
                self.metrics.inbound_request(&caller.labels, response.status());
                return response;
            }
        };
        let request = prepare(request, authority, caller, upgrade.is_some());
        let response = match caller.pool.send(request).await {
            Ok(response) => answer(response, upgrade, grpc),
            Err(err) => {
                tracing::debug!(app = %caller.app, error = %err, "inbound request to the application failed");
                LocalReply::ConnectFailure.into_response_for(grpc)
            }
        };
        self.metrics.request(Direction::Inbound, &caller.cluster, response.status(), started.elapsed());
        self.metrics.inbound_request(&caller.labels, response.status());
        response
    }
}

impl InboundHttp {
    /// Whether the AuthorizationPolicies in force now allow the request.
    fn authorized(&self, runtime: &Runtime, request: &Request<ServedBody>, authority: &str, caller: &Caller) -> bool {
        let Some(policy) = &runtime.config.inbound else { return true };
        let peer = Peer { ip: caller.peer.ip(), principal: caller.principal.as_deref(), port: caller.port };
        let asked = HttpRequest {
            method: request.method().as_str(),
            path: request.uri().path(),
            authority,
            headers: request.headers(),
        };
        super::authz::allows(&policy.authz.http, &peer, Some(&asked), &self.metrics)
    }

    /// Whether the port's rate limit admits one more request from the caller; the reply when it does not.
    fn within_limits(&self, runtime: &Runtime, caller: &Caller) -> Result<(), LocalReply> {
        let Some(limiter) = runtime.limits.for_port(caller.port) else { return Ok(()) };
        limiter.admit(caller.principal.as_deref()).map_err(|refused| {
            self.metrics.rate_limited(&limiter.config.policy, refused.as_str());
            tracing::debug!(
                policy = &*limiter.config.policy,
                limit = refused.as_str(),
                port = caller.port,
                principal = caller.principal.as_deref().unwrap_or(""),
                "inbound request over a rate limit"
            );
            LocalReply::RateLimited
        })
    }
}

/// What protocol switch an HTTP/1.1 request asks for (`Connection: upgrade` with `Upgrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    /// The one upgrade Istio's sidecars allow (its `upgrade_configs`).
    WebSocket,
    /// HTTP/2 over cleartext: Envoy drops the upgrade and answers the HTTP/1.1 request.
    H2c,
    /// Anything else: Envoy refuses it (`403`, `upgrade_failed`).
    Other,
}

fn requested_upgrade<B>(request: &Request<B>) -> Upgrade {
    let headers = request.headers();
    let asked = request.version() == Version::HTTP_11
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")));
    let Some(protocol) = headers.get(header::UPGRADE).filter(|_| asked) else { return Upgrade::None };
    let protocol = protocol.as_bytes().trim_ascii();
    if protocol.eq_ignore_ascii_case(b"websocket") {
        Upgrade::WebSocket
    } else if protocol.eq_ignore_ascii_case(b"h2c") {
        Upgrade::H2c
    } else {
        Upgrade::Other
    }
}

/// The request as the application gets it: its authority, no hop-by-hop headers (but the upgrade's), the
/// caller's identity in `x-forwarded-client-cert` and only there.
fn prepare(request: Request<ServedBody>, authority: Authority, caller: &Caller, upgrading: bool) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    point_at(&mut parts, authority, true);
    let upgrade_to = upgrading.then(|| parts.headers.get(header::UPGRADE).cloned()).flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade_to {
        parts.headers.insert(header::UPGRADE, protocol);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    parts.headers.remove(CLIENT_CERT_HEADER);
    if let Some(value) = &caller.client_cert {
        parts.headers.insert(CLIENT_CERT_HEADER, value.clone());
    }
    Request::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// The application's response as the caller gets it; a `101` joins the two upgraded connections. A `101` to a
/// request that asked for no upgrade is the application's error: passing it on would leave the caller on a
/// connection neither side can read.
fn answer(mut response: Response<UpstreamBody>, upgrade: Option<OnUpgrade>, grpc: bool) -> Response<Body> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    match upgrade {
        Some(downstream) if switching => {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(join(downstream, upstream));
        }
        _ if switching => {
            tracing::debug!("the application switched protocols unasked");
            return LocalReply::ConnectFailure.into_response_for(grpc);
        }
        _ => strip_hop_by_hop(response.headers_mut()),
    }
    response.map(|body| body.map_err(BoxError::from).boxed())
}

/// Copies bytes both ways between the caller's and the application's upgraded connections until both are done.
async fn join(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (Ok(downstream), Ok(upstream)) = tokio::join!(downstream, upstream) else {
        tracing::debug!("an upgrade did not complete");
        return;
    };
    let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
    if let Err(err) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(error = %err, "upgraded connection ended with an error");
    }
}
