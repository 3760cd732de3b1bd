//! The ADS server's streams: one task per stream feeding a pure state machine, state of the world
//! ([`super::sotw::AdsStream`]) or incremental ([`super::delta::DeltaStream`]), through one loop written once for
//! both ([`Protocol`]). Their gRPC edge is [`AdsService`].
//!
//! Streams end with a gRPC status that says why, in a few words: a malformed or over-size request, a missing
//! node id, or the operator shutting down (`UNAVAILABLE`, so proxies reconnect at once, to another replica, and
//! keep their config meanwhile). Text from the client is never echoed at length.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tonic::{Code, Request, Status, Streaming};
use weft_process::excerpt;
use weft_xds::{ProxyNode, ResourceType};

use super::grpc::AdsService;
use super::node::{Features, identify};
use super::protocol::{Answer, Protocol};
use super::shared::{Translations, Wanted};
use crate::app::{Published, SnapshotReceiver};
use crate::debug::registry::{ProxyView, Registration, Registry, Sent, unix_ms};
use crate::metrics::Metrics;
use weft_xds::ProxyScope;
use weft_xds::SpiffeId;
use weft_xds::identity::spiffe_id_of;

/// Responses waiting per stream to be written.
const OUTBOX: usize = 4;

/// Largest request accepted: tonic's default (4 MiB), named here because the error says it.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: SnapshotReceiver,
    translations: Arc<Translations>,
    /// For proxies that do not state their own.
    default_scope: ProxyScope,
    metrics: Arc<Metrics>,
    /// Becomes `true` when the operator stops: every stream ends with `UNAVAILABLE`.
    closing: watch::Receiver<bool>,
    /// On the TLS port: the trust domain whose workload certificate a proxy must present (see `Caller::may_be`).
    required_identity: Option<String>,
    /// Where streams show their proxy to the debug API.
    registry: Arc<Registry>,
}

impl AdsServer {
    pub fn new(
        snapshots: SnapshotReceiver,
        scope: ProxyScope,
        metrics: Arc<Metrics>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            snapshots,
            translations: Arc::default(),
            default_scope: scope,
            metrics,
            closing,
            required_identity: None,
            registry: Arc::default(),
        }
    }

    /// Streams register their proxies in `registry` (the debug API's), rather than in one of their own.
    pub fn registering_in(self, registry: Arc<Registry>) -> Self {
        Self { registry, ..self }
    }

    /// Streams must come with a workload certificate of `trust_domain` that may speak for the proxy's pod (the
    /// TLS port, where the certificate service lets proxies get one first).
    pub fn requiring_identity(self, trust_domain: String) -> Self {
        Self { required_identity: Some(trust_domain), ..self }
    }

    pub fn into_service(self) -> AdsService {
        AdsService::new(self)
    }
}

impl AdsServer {
    /// Starts the task that serves one stream of protocol `P`; the receiving end of its responses.
    pub(super) fn start<P: Protocol>(&self, request: Request<Streaming<P::Request>>) -> Responses<P::Response> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let caller = match &self.required_identity {
            None => Caller::Anyone,
            Some(trust_domain) => {
                let certificates = request.peer_certs();
                let identity = certificates.as_ref().and_then(|c| c.first()).and_then(|c| spiffe_id_of(c));
                Caller::Workload { trust_domain: trust_domain.clone(), identity }
            }
        };
        // Few responses wait per stream: a proxy that reads slowly holds little memory, and a later snapshot it
        // has not reached yet is translated only once it has (latest wins).
        let (tx, rx) = mpsc::channel(OUTBOX);
        let end = Arc::new(OnceLock::new());
        let stream = StreamContext::<P> {
            snapshots: self.snapshots.clone(),
            translations: self.translations.clone(),
            default_scope: self.default_scope,
            outbox: tx,
            end: end.clone(),
            peer,
            caller,
            metrics: self.metrics.clone(),
            closing: self.closing.clone(),
            registry: self.registry.clone(),
            protocol: PhantomData,
        };
        tokio::spawn(stream.serve(request.into_inner()));
        Responses { messages: rx, end }
    }
}

/// A stream's responses as its gRPC edge reads them: the messages in order, then the status the stream ends with.
pub(super) struct Responses<M> {
    pub messages: mpsc::Receiver<M>,
    /// Set when the operator ends the stream, and read once the messages sent before have gone (unset: OK). Apart
    /// from the messages so that it is never lost to a full outbox: a proxy that reads slowly still learns why.
    pub end: Arc<OnceLock<Status>>,
}

struct StreamContext<P: Protocol> {
    snapshots: SnapshotReceiver,
    translations: Arc<Translations>,
    default_scope: ProxyScope,
    outbox: mpsc::Sender<P::Response>,
    end: Arc<OnceLock<Status>>,
    peer: String,
    caller: Caller,
    metrics: Arc<Metrics>,
    closing: watch::Receiver<bool>,
    registry: Arc<Registry>,
    protocol: PhantomData<fn() -> P>,
}

/// Who opened a stream, as far as its connection says.
enum Caller {
    /// The plaintext port: the node id is taken at its word.
    Anyone,
    /// The TLS port: the workload certificate presented, if any, and the trust domain it must belong to.
    Workload { trust_domain: String, identity: Option<SpiffeId> },
}

impl Caller {
    /// Whether this caller may ask for the config of `node`: on the TLS port, only a workload of the trust
    /// domain in the node's own namespace, running as the pod's service account when the pod is known
    /// (`accounts`, by `namespace/name`; a pod not indexed yet is bound by namespace alone).
    fn may_be(&self, node: &ProxyNode, accounts: &BTreeMap<String, String>) -> Result<(), String> {
        match self {
            Self::Anyone => Ok(()),
            Self::Workload { identity: None, .. } => {
                Err("ADS on this port needs the proxy's workload certificate (TLS client certificate)".into())
            }
            Self::Workload { trust_domain, identity: Some(id) } => {
                let account = accounts.get(&format!("{}/{}", node.namespace, node.pod_name));
                let same_account = account.is_none_or(|account| *account == id.service_account);
                if id.trust_domain == *trust_domain && id.namespace == node.namespace && same_account {
                    Ok(())
                } else {
                    Err(format!("{id} may not ask for the config of {node}"))
                }
            }
        }
    }
}

/// The last NACK logged per type (version, message): a proxy repeating it is counted, not logged again.
type NackLog = BTreeMap<ResourceType, (String, String)>;

/// Why a stream ends, and the status the client gets.
enum End {
    /// The client closed its side or went away: nothing to tell it.
    ClientGone,
    /// The client is told, with a short status.
    Status(Status),
}

/// What wakes a stream up.
enum Event<R> {
    Request(R),
    Snapshot,
}

/// One stream's state besides the protocol's.
struct Session<P: Protocol> {
    state: P,
    node: Option<ProxyNode>,
    scope: ProxyScope,
    /// What the proxy reads beyond what every proxy does.
    features: Features,
    nacks: NackLog,
    /// The config this stream last translated: a snapshot that only changed status is not translated again.
    translated: u64,
    /// The virtual hosts the proxy asked for on demand.
    on_demand: BTreeSet<String>,
    /// The proxy's entry in the debug API, once it has identified itself.
    registration: Option<Registration>,
}

impl<P: Protocol> Session<P> {
    fn new(scope: ProxyScope) -> Self {
        Self {
            state: P::default(),
            node: None,
            scope,
            features: Features::default(),
            nacks: NackLog::new(),
            translated: 0,
            on_demand: BTreeSet::new(),
            registration: None,
        }
    }
}

impl<P: Protocol> StreamContext<P> {
    async fn serve(mut self, mut incoming: Streaming<P::Request>) {
        let mut session = Session::<P>::new(self.default_scope);
        let mut closing = self.closing.clone();
        let end = loop {
            let event = tokio::select! {
                message = incoming.message() => match message {
                    Ok(Some(request)) => Event::Request(request),
                    Ok(None) => break End::ClientGone,
                    Err(status) => break ended_by_client(&status),
                },
                changed = self.snapshots.changed(), if session.node.is_some() => match changed {
                    Ok(()) => Event::Snapshot,
                    Err(_) => break End::Status(shutting_down()),
                },
                () = stopping(&mut closing) => break End::Status(shutting_down()),
            };
            let handled = match event {
                Event::Request(request) => self.on_request(&mut session, &request).await.map(|r| (r, None)),
                Event::Snapshot => Ok(self.on_snapshot(&mut session).await),
            };
            let (responses, published_at) = match handled {
                Ok(handled) => handled,
                Err(end) => break end,
            };
            let (node, registration) = (session.node.as_ref(), session.registration.as_ref());
            if let Err(end) = self.send_all((node, registration), responses, published_at).await {
                break end;
            }
        };
        self.finish(session.node, end);
    }

    /// A request from the proxy: the first one identifies it; subscriptions to on-demand names are translated
    /// before they are answered.
    async fn on_request(&mut self, session: &mut Session<P>, request: &P::Request) -> Result<Vec<P::Response>, End> {
        if session.node.is_none() {
            let (node, scope) = identify(P::node(request), self.default_scope)
                .map_err(|message| End::Status(Status::invalid_argument(message)))?;
            let accounts =
                self.snapshots.borrow().as_ref().map(|p| p.snapshot.pod_accounts.clone()).unwrap_or_default();
            if let Err(refusal) = self.caller.may_be(&node, &accounts) {
                tracing::warn!(peer = %self.peer, proxy = %node, "{refusal}");
                return Err(End::Status(Status::permission_denied(refusal)));
            }
            if let Some(warning) = &scope.warning {
                tracing::warn!(peer = %self.peer, proxy = %node, "{warning}");
            }
            let scope = scope.scope;
            session.features = Features::of(P::node(request));
            tracing::info!(peer = %self.peer, proxy = %node, %scope, features = ?session.features, "proxy connected");
            self.metrics.proxy_connected(matches!(self.caller, Caller::Anyone));
            session.registration = Some(self.register(&node, scope));
            session.node = Some(node);
            session.scope = scope;
            session.translated = 0;
        }
        if let Some(names) = session.state.on_demand_after(request) {
            session.on_demand = names;
            session.translated = 0;
        }
        let mut responses = Vec::new();
        let current = if session.translated == 0 { self.snapshots.borrow_and_update().clone() } else { None };
        if let Some(published) = current {
            responses = self.translate(session, &published).await;
        }
        let step = session.state.on_request(request);
        if let (Some(answer), Some(registration)) = (&step.answer, &session.registration) {
            registration.answered(P::response_nonce(request), answer);
        }
        self.log_step(session.node.as_ref(), &step.answer, step.ignored.as_deref(), &mut session.nacks);
        responses.extend(step.responses);
        Ok(responses)
    }

    /// A new snapshot: its config translated for the proxy, unless it is the one the proxy has.
    async fn on_snapshot(&mut self, session: &mut Session<P>) -> (Vec<P::Response>, Option<Instant>) {
        let current = self.snapshots.borrow_and_update().clone();
        match current {
            Some(published) if published.config != session.translated => {
                (self.translate(session, &published).await, Some(published.at))
            }
            _ => (Vec::new(), None),
        }
    }

    async fn translate(&self, session: &mut Session<P>, published: &Arc<Published>) -> Vec<P::Response> {
        let Some(node) = &session.node else { return Vec::new() };
        session.translated = published.config;
        let on_demand = P::ON_DEMAND.then_some(&session.on_demand);
        let verified = matches!(self.caller, Caller::Workload { identity: Some(_), .. });
        let declared_tcp = session.features.declared_tcp;
        let wanted = Wanted { node, scope: session.scope, on_demand, declared_tcp, verified };
        let resources = self.translations.for_proxy(published, wanted).await;
        if let Some(registration) = &session.registration {
            registration.translated(published.config, resources.clone());
        }
        session.state.on_resources(resources)
    }

    /// The registry entry of a proxy that just identified itself.
    fn register(&self, node: &ProxyNode, scope: ProxyScope) -> Registration {
        self.registry.register(ProxyView {
            node: node.to_string(),
            pod: node.pod_name.clone(),
            namespace: node.namespace.clone(),
            peer: self.peer.clone(),
            protocol: P::NAME.to_string(),
            scope: scope.to_string(),
            tls: matches!(self.caller, Caller::Workload { .. }),
            connected_unix_ms: unix_ms(SystemTime::now()),
            config: 0,
            types: Default::default(),
        })
    }

    /// Tells the client why its stream ends, after the responses already waiting (never waiting for a client that
    /// does not read), and logs it.
    fn finish(&self, node: Option<ProxyNode>, end: End) {
        let proxy = node.as_ref().map(ToString::to_string).unwrap_or_default();
        match end {
            End::ClientGone => tracing::debug!(peer = %self.peer, %proxy, "ADS stream closed by the client"),
            End::Status(status) => {
                tracing::info!(peer = %self.peer, %proxy, code = ?status.code(), reason = status.message(), "ending ADS stream");
                let _ = self.end.set(status);
            }
        }
        if node.is_some() {
            tracing::info!(peer = %self.peer, %proxy, "proxy disconnected");
            self.metrics.proxy_disconnected(matches!(self.caller, Caller::Anyone));
        }
    }

    /// Sends responses in order; how the stream ends when the proxy is gone or the operator stops meanwhile (a
    /// proxy that does not read must not keep its stream, and the operator, waiting).
    async fn send_all(
        &self,
        (node, registration): (Option<&ProxyNode>, Option<&Registration>),
        responses: Vec<P::Response>,
        since: Option<Instant>,
    ) -> Result<(), End> {
        let mut closing = self.closing.clone();
        for response in responses {
            let kind = P::kind(&response);
            let bytes = prost::Message::encoded_len(&response);
            tracing::debug!(proxy = ?node, kind = kind.map(|k| k.short_name()), bytes, "push");
            let sent = kind.zip(registration).map(|(kind, registration)| {
                let (nonce, version, resources) = P::sent(&response);
                let sent = Sent {
                    nonce: nonce.into(),
                    version: version.into(),
                    resources,
                    unix_ms: unix_ms(SystemTime::now()),
                };
                (registration, kind, sent)
            });
            tokio::select! {
                sent = self.outbox.send(response) => sent.map_err(|_| End::ClientGone)?,
                () = stopping(&mut closing) => return Err(End::Status(shutting_down())),
            }
            if let Some((registration, kind, sent)) = sent {
                registration.sent(kind, sent);
            }
            if let Some(kind) = kind {
                self.metrics.push(kind, bytes, since.map(|s| s.elapsed()));
            }
        }
        Ok(())
    }

    fn log_step(&self, node: Option<&ProxyNode>, answer: &Option<Answer>, ignored: Option<&str>, nacks: &mut NackLog) {
        let proxy = node.map(ToString::to_string).unwrap_or_default();
        match answer {
            Some(Answer::Ack { kind, version }) => tracing::debug!(%proxy, kind = kind.short_name(), %version, "ACK"),
            Some(Answer::Nack { kind, version, message }) => {
                self.metrics.nack(*kind);
                let nack = (version.clone(), message.clone());
                if nacks.get(kind) == Some(&nack) {
                    tracing::debug!(%proxy, kind = kind.short_name(), %version, "proxy repeated its NACK");
                } else {
                    tracing::warn!(%proxy, kind = kind.short_name(), %version, detail = %excerpt(message), "proxy rejected config (NACK)");
                    nacks.insert(*kind, nack);
                }
            }
            None => {}
        }
        if let Some(reason) = ignored {
            tracing::debug!(%proxy, reason, "ignored request");
        }
    }
}

/// Completes when the operator stops (a plain `()`, so no watch guard is held across other branches' awaits).
async fn stopping(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

fn shutting_down() -> Status {
    Status::unavailable("weft-operator is shutting down; reconnect")
}

/// How a stream the client broke ends: malformed and over-size requests are answered with a short status; a
/// client that reset its stream or went away is not. Told apart by tonic's decoder messages, since an HTTP/2 reset
/// arrives with the same codes (`INTERNAL`, `RESOURCE_EXHAUSTED`).
fn ended_by_client(status: &Status) -> End {
    let message = status.message();
    let too_large = ["decoded message length too large", "size limit"].iter().any(|m| message.contains(m));
    let malformed = ["failed to decode Protobuf message", "protocol error: received message", "Error decompressing"]
        .iter()
        .any(|m| message.starts_with(m));
    if too_large && matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) {
        let limit = MAX_REQUEST_BYTES / (1024 * 1024);
        End::Status(Status::resource_exhausted(format!("request larger than the {limit} MiB limit")))
    } else if malformed && status.code() == Code::Internal {
        End::Status(Status::invalid_argument(format!("malformed DiscoveryRequest: {}", excerpt(message))))
    } else {
        tracing::debug!(code = ?status.code(), reason = %excerpt(message), "ADS stream broken by the client");
        End::ClientGone
    }
}
