//! Distributed tracing, off unless a collector is set (`--trace-collector`, the chart's `tracing.collector`):
//! each request through the proxy, outbound and inbound, gets a span of its own, a child of the client's
//! (Envoy's and Istio's sidecar spans). Every request leaves with the proxy's span in its trace headers
//! ([`context`]); the sampled ones (the client's decision, else `--trace-sampling` percent, Istio's default 1 %)
//! are exported to the collector over OTLP/gRPC ([`export`]) when their response has been sent.
//!
//! Span names are Istio's `<authority>/*`, kinds `CLIENT` (outbound) and `SERVER` (inbound); attributes follow
//! OpenTelemetry's HTTP conventions (`http.request.method`, `url.path`, `server.address`, `server.port`,
//! `http.response.status_code`, `network.protocol.version`) plus Istio's `upstream_cluster`, `response_flags`,
//! `guid:x-request-id` and `node_id`; the status is an error for 5xx, and for 4xx on client spans (OpenTelemetry's
//! rule; Envoy marks only 5xx).

pub mod context;
pub mod export;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response, Version};
use tokio::sync::mpsc;

use crate::http::Body;
use crate::http::access_log::{Logged, ResponseFlag, UpstreamCluster};
use crate::http::body_end::{OnBodyEnd, watch_end};
use crate::http::request_id::REQUEST_ID;
use crate::metrics::{Direction, Metrics};
use crate::upstream::UpstreamPeer;
use context::{Dice, SpanContext};

/// Spans waiting for the exporter at most; more are dropped and counted.
const QUEUE: usize = 4096;
/// Longest path, authority and request id kept in a span (Envoy's `max_path_tag_length` is 256): a client that
/// forces sampling cannot make the queue hold its huge URIs.
const MAX_TAG: usize = 256;
/// Longest `tracestate` kept (W3C's limit for propagation).
const MAX_TRACESTATE: usize = 512;

/// Where spans go and how many requests start one.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/gRPC collector, `http://HOST:PORT`.
    pub collector: String,
    /// Percent of requests without a sampling decision that are traced, 0 to 100.
    pub sampling_percent: f64,
}

/// Starts and ends the spans of requests; cheap to share.
pub struct Tracer {
    sampling_percent: f64,
    spans: mpsc::Sender<SpanRecord>,
    metrics: Arc<Metrics>,
    node_id: Arc<str>,
}

/// A sampled request's span while it is being answered.
pub struct OpenSpan {
    record: SpanRecord,
}

/// One finished span, as the exporter turns it into OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub context: SpanContext,
    pub trace_state: Option<String>,
    pub direction: Direction,
    pub start: SystemTime,
    pub end: SystemTime,
    pub method: String,
    pub authority: Option<String>,
    pub path: String,
    pub protocol: &'static str,
    pub request_id: Option<String>,
    pub status: u16,
    pub response_flags: &'static str,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_host: Option<SocketAddr>,
    pub node_id: Arc<str>,
    pub bytes_sent: u64,
}

impl Tracer {
    /// A tracer whose sampled spans go to `spans` (the exporter's queue, see [`export::start`]).
    pub fn new(sampling_percent: f64, spans: mpsc::Sender<SpanRecord>, metrics: Arc<Metrics>, node_id: &str) -> Self {
        Self { sampling_percent, spans, metrics, node_id: Arc::from(node_id) }
    }

    /// The queue a tracer's spans go through.
    pub fn queue() -> (mpsc::Sender<SpanRecord>, mpsc::Receiver<SpanRecord>) {
        mpsc::channel(QUEUE)
    }

    /// Gives the request the proxy's span in its trace headers; the span to finish when it is sampled.
    pub fn begin<B>(&self, request: &mut Request<B>, direction: Direction) -> Option<OpenSpan> {
        let incoming = context::incoming(request.headers());
        let span = context::decide(&incoming, self.sampling_percent, Dice::roll());
        context::propagate(request.headers_mut(), &span, incoming.b3);
        if !span.sampled {
            return None;
        }
        // Handlers name the cluster they used on the response of a logged request.
        request.extensions_mut().insert(Logged);
        let headers = request.headers();
        let text = |name: &str, max| headers.get(name).and_then(|v| v.to_str().ok()).map(|t| clipped(t, max));
        let authority = crate::http::authority::request_authority(request.version(), request.uri(), headers);
        let record = SpanRecord {
            context: span,
            trace_state: text("tracestate", MAX_TRACESTATE),
            direction,
            start: SystemTime::now(),
            end: SystemTime::UNIX_EPOCH,
            method: clipped(request.method().as_str(), MAX_TAG),
            authority: authority.ok().flatten().map(|a| clipped(a.as_str(), MAX_TAG)),
            path: clipped(request.uri().path(), MAX_TAG),
            protocol: protocol_version(request.version()),
            request_id: text(REQUEST_ID.as_str(), MAX_TAG),
            status: 0,
            response_flags: "-",
            upstream_cluster: None,
            upstream_host: None,
            node_id: self.node_id.clone(),
            bytes_sent: 0,
        };
        Some(OpenSpan { record })
    }

    /// The response, its body wrapped so that the span ends (and is queued for export) when the body does.
    pub fn finish(self: &Arc<Self>, open: OpenSpan, response: Response<Body>) -> Response<Body> {
        let mut record = open.record;
        record.status = response.status().as_u16();
        let extensions = response.extensions();
        record.response_flags = extensions.get::<ResponseFlag>().map_or("-", |f| f.0);
        record.upstream_cluster = extensions.get::<UpstreamCluster>().map(|c| c.0.clone());
        record.upstream_host = extensions.get::<UpstreamPeer>().map(|peer| peer.address);
        let tracer = self.clone();
        response.map(|body| watch_end(body, SpanEnd { record, tracer }))
    }

    fn queue_span(&self, record: SpanRecord) {
        if self.spans.try_send(record).is_err() {
            self.metrics.trace_spans(export::DROPPED, 1);
        }
    }
}

/// Ends a span when its response body is over.
struct SpanEnd {
    record: SpanRecord,
    tracer: Arc<Tracer>,
}

impl OnBodyEnd for SpanEnd {
    fn ended(self, sent: u64) {
        let Self { mut record, tracer } = self;
        record.end = SystemTime::now();
        record.bytes_sent = sent;
        tracer.queue_span(record);
    }
}

/// `text`, cut to at most `max` bytes on a character boundary.
fn clipped(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// OpenTelemetry's `network.protocol.version`.
fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tags_are_cut_on_a_character_boundary() {
        assert_eq!(clipped("/short", MAX_TAG), "/short");
        assert_eq!(clipped(&"a".repeat(10_000), MAX_TAG).len(), MAX_TAG);
        assert_eq!(clipped("aé", 2), "a", "not inside the two bytes of é");
    }
}
