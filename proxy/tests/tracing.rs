//! Tracing as a user turns it on (`--trace-collector`, `--trace-sampling`): a request that arrives with a
//! sampled trace leaves with the proxy's span as its parent, and that span reaches an OTLP collector (outbound
//! as a CLIENT span, inbound as a SERVER span) with where the request went; requests the client did not sample,
//! or that the rate leaves out, are carried on but not exported. Without a collector the headers pass through
//! untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::{Backend, CLUSTER, Operator, Proxy, eventually, free_port, get, sample};
use tokio::sync::mpsc;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/gRPC collector on loopback, handing over every span it receives, with its resource's `service.name`.
struct Collector {
    address: SocketAddr,
    spans: mpsc::UnboundedReceiver<(String, Span)>,
}

/// Hands spans over; answers the first export only after `hold_first` (a slow collector).
struct Receiver {
    spans: mpsc::UnboundedSender<(String, Span)>,
    hold_first: Option<Duration>,
    answered: std::sync::atomic::AtomicBool,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = self.spans.send((service.clone(), span));
            }
        }
        let first = !self.answered.swap(true, std::sync::atomic::Ordering::SeqCst);
        if let (true, Some(hold)) = (first, self.hold_first) {
            tokio::time::sleep(hold).await;
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> Self {
        Self::start_holding_first(None).await
    }

    async fn start_holding_first(hold_first: Option<Duration>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, spans) = mpsc::unbounded_channel();
        let receiver = Receiver { spans: tx, hold_first, answered: Default::default() };
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let service = TraceServiceServer::new(receiver);
            let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
        });
        Self { address, spans }
    }

    /// The next span exported, within ten seconds.
    async fn next(&mut self) -> (String, Span) {
        let span = tokio::time::timeout(Duration::from_secs(10), self.spans.recv()).await;
        span.expect("no span reached the collector within 10 s").unwrap()
    }
}

/// The traceparent the backend received for a request with `headers`, through `to`.
async fn traceparent_seen(to: SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("x-echo-header", "traceparent")];
    all.extend_from_slice(headers);
    let (status, seen) = get(to, "slow", "/orders/7", &all).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    seen
}

/// `(trace id, parent id, flags)` of a traceparent.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "not a traceparent: {traceparent}");
    (fields[1].to_string(), fields[2].to_string(), fields[3].to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()?.value)
}

#[tokio::test]
async fn sampled_requests_leave_with_the_proxys_span_and_it_reaches_the_collector() {
    let backend = Backend::start().await;
    let mut collector = Collector::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let inbound = free_port();
    let proxy = Proxy::start_as(
        "productpage-1",
        xds,
        &[
            "--trace-collector",
            &format!("http://{}", collector.address),
            "--trace-sampling",
            "0",
            "--inbound",
            &format!("{inbound}={}", backend.address),
            "--pod-labels",
            "app=productpage,version=v1",
        ],
    );
    proxy.wait_ready(StatusCode::OK).await;

    // The client sampled this one: the backend sees the same trace with the proxy's span as parent.
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (trace, proxy_span, flags) = parts(&traceparent_seen(proxy.outbound, &[("traceparent", &sampled)]).await);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
    assert_ne!(proxy_span, CLIENT_SPAN, "the proxy's own span is the parent now");

    // Not sampled: by the client, or by the rate (0 %) for a request that starts a trace. Carried on, not sent.
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let (trace, _, flags) = parts(&traceparent_seen(proxy.outbound, &[("traceparent", &unsampled)]).await);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "00"));
    let (new_trace, _, flags) = parts(&traceparent_seen(proxy.outbound, &[]).await);
    assert_ne!(new_trace, CLIENT_TRACE, "a request without context starts a trace");
    assert_eq!(flags, "00", "0 % sampling");

    let (service, span) = collector.next().await;
    assert_eq!(service, "productpage", "the app label names the service");
    assert_eq!((hex(&span.trace_id), hex(&span.parent_span_id)), (CLIENT_TRACE.into(), CLIENT_SPAN.into()));
    assert_eq!(hex(&span.span_id), proxy_span, "the exported span is the one the backend saw as parent");
    assert_eq!((span.name.as_str(), span.kind), ("slow/*", SpanKind::Client as i32));
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    assert_eq!(attribute(&span, "http.response.status_code"), Some(Value::IntValue(200)));
    assert_eq!(attribute(&span, "upstream_cluster"), Some(Value::StringValue(CLUSTER.into())));
    assert_eq!(attribute(&span, "url.path"), Some(Value::StringValue("/orders/7".into())));

    // Inbound: a sampled request to the pod's port gets a SERVER span.
    let (trace, inbound_span, _) = parts(&traceparent_seen(inbound, &[("traceparent", &sampled)]).await);
    assert_eq!(trace, CLIENT_TRACE);
    let (_, span) = collector.next().await;
    assert_eq!(span.kind, SpanKind::Server as i32, "the next span exported is the inbound one: none in between");
    assert_eq!((hex(&span.span_id), hex(&span.parent_span_id)), (inbound_span, CLIENT_SPAN.into()));

    // Counted once the collector has answered the export.
    let exported = || async { sample(&proxy.metrics().await, "weft_proxy_trace_spans_total{outcome=\"exported\"}") };
    eventually("two spans are counted exported", || async { exported().await == 2.0 }).await;
}

#[tokio::test]
async fn the_rate_samples_requests_that_start_a_trace() {
    let backend = Backend::start().await;
    let mut collector = Collector::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let collector_address = format!("http://{}", collector.address);
    let proxy = Proxy::start(xds, &["--trace-collector", &collector_address, "--trace-sampling", "100"]);
    proxy.wait_ready(StatusCode::OK).await;

    let b3 = [
        ("x-b3-traceid", "80f198ee56343ba8"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-echo-header", "x-b3-parentspanid"),
    ];
    let (status, parent) = get(proxy.outbound, "slow", "/", &b3).await.unwrap();
    assert_eq!((status, parent.as_str()), (StatusCode::OK, "e457b5a2e4d86bd1"), "B3 is answered in B3");
    let (_, span) = collector.next().await;
    assert_eq!(hex(&span.trace_id), "000000000000000080f198ee56343ba8", "B3 without a decision: the rate's (100 %)");

    let (trace, proxy_span, flags) = parts(&traceparent_seen(proxy.outbound, &[]).await);
    assert_eq!(flags, "01");
    let (_, span) = collector.next().await;
    assert_eq!((hex(&span.trace_id), hex(&span.span_id)), (trace, proxy_span));
    assert!(span.parent_span_id.is_empty(), "the trace starts at the proxy");
}

#[tokio::test]
async fn without_a_collector_trace_headers_pass_through_untouched() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    assert_eq!(traceparent_seen(proxy.outbound, &[("traceparent", &sampled)]).await, sampled);
    assert_eq!(traceparent_seen(proxy.outbound, &[]).await, "(none)");
    assert!(!proxy.metrics().await.contains("weft_proxy_trace_spans_total{"), "nothing traced");
}

#[tokio::test]
async fn spans_still_queued_when_the_proxy_stops_are_sent_before_it_exits() {
    let backend = Backend::start().await;
    // The first export is held for a while, so the second span waits in the queue when SIGTERM comes.
    let mut collector = Collector::start_holding_first(Some(Duration::from_millis(800))).await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let collector_address = format!("http://{}", collector.address);
    let mut proxy = Proxy::start(xds, &["--trace-collector", &collector_address, "--trace-sampling", "100"]);
    proxy.wait_ready(StatusCode::OK).await;
    let (first, _, _) = parts(&traceparent_seen(proxy.outbound, &[]).await);
    let (_, span) = collector.next().await;
    assert_eq!(hex(&span.trace_id), first, "the first export is on its way (and held)");
    let (second, _, _) = parts(&traceparent_seen(proxy.outbound, &[]).await);
    proxy.signal_term();
    assert!(proxy.wait_exit(Duration::from_secs(10)).await.success(), "{}", proxy.output());
    let (_, span) = collector.next().await;
    assert_eq!(hex(&span.trace_id), second, "the queued span was sent before the proxy exited");
}
