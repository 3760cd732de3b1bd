//! Where requests meet the golden metrics: the peer header put on and taken off requests and responses, and
//! the report of each request, for the outbound side (the client's sidecar) and the inbound side (the server's).
//! A reported response carries its series' [`BodySizes`] in its extensions, for the serving connection to observe
//! once the request is over.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Response};

use super::golden::{BodySizes, GoldenMetrics, Reporter, RequestReport, ServiceLabels};
use super::peer::PEER_HEADER;
use crate::http::access_log::ResponseFlag;
use crate::upstream::UpstreamPeer;

/// Outbound, before the request goes: this sidecar's workload told to a mesh Service's sidecar, and never what
/// the application itself put in the header.
/// `in_mesh`: whether the request goes to a Service of the mesh.
pub fn tell_upstream(golden: &GoldenMetrics, in_mesh: bool, headers: &mut HeaderMap) {
    if in_mesh {
        headers.insert(PEER_HEADER, golden.own_header());
    } else {
        headers.remove(PEER_HEADER);
    }
}

/// Outbound, once the response head is back: the server's workload taken off the response (the application
/// never sees it) and the request reported. `in_mesh`: whether `service` is one of the mesh's.
pub fn report_outbound<B>(
    golden: &GoldenMetrics,
    (service, in_mesh): (&ServiceLabels, bool),
    response: &mut Response<B>,
    grpc: bool,
    took: Duration,
) {
    // Only a mesh Service's sidecar says who answered; anything else claiming to is not believed.
    let told = response.headers_mut().remove(PEER_HEADER);
    let peer = told.filter(|_| in_mesh).and_then(|h| golden.peers.decode(&h));
    // The server's identity, from the mutual TLS handshake of the connection that carried the request.
    let principal = response.extensions().get::<UpstreamPeer>().and_then(|peer| peer.principal.clone());
    let sizes = golden.record(RequestReport {
        reporter: Reporter::Source,
        peer: peer.as_deref(),
        peer_principal: principal.as_ref(),
        service,
        grpc,
        code: response.status().as_u16(),
        flags: flag_of(response),
        took,
    });
    response.extensions_mut().insert::<BodySizes>(sizes);
}

/// Inbound, before the request goes to the application: the caller's workload, believed only from a caller
/// that proved a sidecar identity (mutual TLS); the header is taken off either way.
pub fn take_caller(
    golden: &GoldenMetrics,
    principal: Option<&Arc<str>>,
    headers: &mut HeaderMap,
) -> Option<Arc<super::Workload>> {
    let told = headers.remove(PEER_HEADER)?;
    principal.and_then(|_| golden.peers.decode(&told))
}

/// What the inbound side knows of a request when it reports it.
pub struct Inbound<'a> {
    pub caller: Option<&'a super::Workload>,
    pub principal: Option<&'a Arc<str>>,
    /// The Service its authority names ([`GoldenMetrics::service_of_authority`]).
    pub service: &'a ServiceLabels,
    pub grpc: bool,
}

/// Inbound, with the application's answer: this sidecar's workload told to a caller's sidecar, and the request
/// reported.
pub fn report_inbound<B>(golden: &GoldenMetrics, request: Inbound<'_>, response: &mut Response<B>, took: Duration) {
    // The application's own header never goes out as this sidecar's word.
    response.headers_mut().remove(PEER_HEADER);
    if request.principal.is_some() {
        response.headers_mut().insert(PEER_HEADER, golden.own_header());
    }
    let sizes = golden.record(RequestReport {
        reporter: Reporter::Destination,
        peer: request.caller,
        peer_principal: request.principal,
        service: request.service,
        grpc: request.grpc,
        code: response.status().as_u16(),
        flags: flag_of(response),
        took,
    });
    response.extensions_mut().insert::<BodySizes>(sizes);
}

fn flag_of<B>(response: &Response<B>) -> &'static str {
    response.extensions().get::<ResponseFlag>().map_or("-", |f| f.0)
}
