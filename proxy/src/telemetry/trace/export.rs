//! Sending finished spans to an OpenTelemetry collector over OTLP/gRPC (`TraceService/Export`, the generated
//! client of `opentelemetry-proto`). One task takes spans from the tracer's bounded queue and sends what has
//! gathered as one batch (up to [`BATCH`]), so batches grow with the rate and a quiet proxy sends at once. A
//! failed export drops its batch (counted; logged once per run of failures): spans are never worth holding
//! requests or memory for. On shutdown, once connections have drained, what is queued is sent (for up to
//! [`FLUSH_TIMEOUT`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use super::SpanRecord;
use crate::metrics::{Direction, Metrics};
use crate::telemetry::Workload;

/// Spans sent in one export at most.
pub const BATCH: usize = 512;
/// How long a stopping proxy waits for its queued spans to be sent.
pub const FLUSH_TIMEOUT: std::time::Duration = Duration::from_secs(2);
/// One export's time limit (OTLP exporters' default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `weft_proxy_trace_spans{outcome}`.
pub const EXPORTED: &str = "exported";
pub const DROPPED: &str = "dropped";
pub const FAILED: &str = "failed";

/// The collector's gRPC endpoint for `address` (`http://HOST:PORT` or `HOST:PORT`), checked before any port
/// binds; connected on first use, so a collector that starts later is fine.
pub fn collector_endpoint(address: &str) -> Result<Endpoint, String> {
    let uri = weft_process::telemetry::collector_uri(address)?;
    let endpoint = Endpoint::from_shared(uri.to_string()).map_err(|e| e.to_string())?;
    Ok(endpoint.connect_timeout(Duration::from_secs(5)).timeout(EXPORT_TIMEOUT).tcp_nodelay(true))
}

/// Exports what arrives on `spans` to `endpoint` until every sender is gone (then the task ends, once what was
/// queued has been sent). Call within the runtime.
pub fn start(
    endpoint: Endpoint,
    spans: mpsc::Receiver<SpanRecord>,
    resource: Resource,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let client = TraceServiceClient::new(endpoint.connect_lazy());
    tokio::spawn(run(client, spans, resource, metrics))
}

async fn run(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    mut spans: mpsc::Receiver<SpanRecord>,
    resource: Resource,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while spans.recv_many(&mut batch, BATCH).await > 0 {
        let count = batch.len() as u64;
        let request = export_request(&resource, batch.drain(..).map(|record| to_otlp(&record)).collect());
        match client.export(request).await {
            Ok(_) => {
                metrics.trace_spans(EXPORTED, count);
                if std::mem::take(&mut failing) {
                    tracing::info!("span export to the collector works again");
                }
            }
            Err(status) => {
                metrics.trace_spans(FAILED, count);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %status, "span export to the collector failed; spans are dropped until it works");
                }
            }
        }
    }
}

/// What the spans are from: the workload (`service.name` is its app, else its name), as OpenTelemetry's
/// resource conventions name them.
pub fn resource(own: &Workload, pod_name: &str) -> Resource {
    let service = if &*own.app == crate::telemetry::peer::UNKNOWN { &own.workload } else { &own.app };
    let attributes = vec![
        string("service.name", service),
        string("service.namespace", &own.namespace),
        string("service.version", &own.version),
        string("k8s.namespace.name", &own.namespace),
        string("k8s.pod.name", pod_name),
        string("telemetry.sdk.name", "weft-proxy"),
    ];
    Resource { attributes, ..Resource::default() }
}

fn export_request(resource: &Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let scope = InstrumentationScope {
        name: "weft-proxy".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    };
    let scope_spans = ScopeSpans { scope: Some(scope), spans, schema_url: String::new() };
    let resource_spans =
        ResourceSpans { resource: Some(resource.clone()), scope_spans: vec![scope_spans], schema_url: String::new() };
    ExportTraceServiceRequest { resource_spans: vec![resource_spans] }
}

/// One span in OTLP's terms. Pure.
pub fn to_otlp(record: &SpanRecord) -> Span {
    let context = &record.context;
    let (kind, error_from) = match record.direction {
        Direction::Outbound => (SpanKind::Client, 400),
        Direction::Inbound => (SpanKind::Server, 500),
    };
    let authority = record.authority.as_deref().unwrap_or("-");
    let parsed = authority.parse::<http::uri::Authority>().ok();
    let host = parsed.as_ref().map_or(authority, |a| a.host());
    let port = parsed.as_ref().and_then(|a| a.port_u16());
    let mut attributes = vec![
        string("http.request.method", &record.method),
        string("url.path", &record.path),
        string("server.address", host.trim_start_matches('[').trim_end_matches(']')),
        integer("http.response.status_code", record.status.into()),
        string("network.protocol.version", record.protocol),
        string("response_flags", record.response_flags),
        string("node_id", &record.node_id),
        integer("http.response.body.size", record.bytes_sent as i64),
    ];
    attributes.extend(port.map(|port| integer("server.port", port.into())));
    attributes.extend(record.upstream_cluster.as_deref().map(|cluster| string("upstream_cluster", cluster)));
    attributes.extend(record.upstream_host.map(|host| string("upstream_address", &host.to_string())));
    attributes.extend(record.request_id.as_deref().map(|id| string("guid:x-request-id", id)));
    let code = if record.status >= error_from { StatusCode::Error } else { StatusCode::Unset };
    Span {
        trace_id: context.trace_id.to_be_bytes().to_vec(),
        span_id: context.span_id.to_be_bytes().to_vec(),
        parent_span_id: context.parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        trace_state: record.trace_state.clone().unwrap_or_default(),
        // W3C trace flags: sampled.
        flags: 1,
        name: format!("{authority}/*"),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(record.start),
        end_time_unix_nano: unix_nanos(record.end),
        attributes,
        status: Some(Status { message: String::new(), code: code as i32 }),
        ..Span::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn string(key: &str, value: &str) -> KeyValue {
    let value = Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) });
    KeyValue { key: key.to_string(), value, ..KeyValue::default() }
}

fn integer(key: &str, value: i64) -> KeyValue {
    let value = Some(AnyValue { value: Some(any_value::Value::IntValue(value)) });
    KeyValue { key: key.to_string(), value, ..KeyValue::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::context::SpanContext;

    fn record(direction: Direction, status: u16) -> SpanRecord {
        SpanRecord {
            context: SpanContext {
                trace_id: 0x0102,
                span_id: 0x0a0b,
                parent: Some(0x0c),
                sampled: true,
                debug: false,
                flags: 0,
            },
            trace_state: Some("vendor=1".into()),
            direction,
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
            end: SystemTime::UNIX_EPOCH + Duration::from_millis(1_502),
            method: "GET".into(),
            authority: Some("reviews:9080".into()),
            path: "/reviews/1".into(),
            protocol: "1.1",
            request_id: Some("r-1".into()),
            status,
            response_flags: "-",
            upstream_cluster: Some(Arc::from("outbound|9080||reviews.default.svc.cluster.local")),
            upstream_host: Some("10.0.0.7:9080".parse().unwrap()),
            node_id: Arc::from("sidecar~10.0.0.1~productpage-1.default~default.svc.cluster.local"),
            bytes_sent: 42,
        }
    }

    fn attribute(span: &Span, key: &str) -> Option<any_value::Value> {
        span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()?.value)
    }

    #[test]
    fn a_record_becomes_an_otlp_span_with_ids_kind_times_and_attributes() {
        let span = to_otlp(&record(Direction::Outbound, 200));
        let mut trace = [0u8; 16];
        trace[14..].copy_from_slice(&[1, 2]);
        assert_eq!(span.trace_id, trace);
        assert_eq!(span.span_id, [0, 0, 0, 0, 0, 0, 0x0a, 0x0b]);
        assert_eq!(span.parent_span_id, [0, 0, 0, 0, 0, 0, 0, 0x0c]);
        assert_eq!((span.name.as_str(), span.kind), ("reviews:9080/*", SpanKind::Client as i32));
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1_500_000_000, 1_502_000_000));
        assert_eq!(span.trace_state, "vendor=1");
        assert_eq!(attribute(&span, "http.response.status_code"), Some(any_value::Value::IntValue(200)));
        assert_eq!(attribute(&span, "server.address"), Some(any_value::Value::StringValue("reviews".into())));
        assert_eq!(attribute(&span, "server.port"), Some(any_value::Value::IntValue(9080)));
        let cluster = "outbound|9080||reviews.default.svc.cluster.local".to_string();
        assert_eq!(attribute(&span, "upstream_cluster"), Some(any_value::Value::StringValue(cluster)));
        assert_eq!(attribute(&span, "guid:x-request-id"), Some(any_value::Value::StringValue("r-1".into())));
        assert_eq!(span.status.unwrap().code, StatusCode::Unset as i32);
    }

    #[test]
    fn errors_are_5xx_and_also_4xx_on_the_client_side() {
        let code = |direction, status| to_otlp(&record(direction, status)).status.unwrap().code;
        assert_eq!(code(Direction::Outbound, 404), StatusCode::Error as i32);
        assert_eq!(code(Direction::Inbound, 404), StatusCode::Unset as i32);
        assert_eq!(code(Direction::Inbound, 503), StatusCode::Error as i32);
    }

    #[test]
    fn collector_addresses_are_checked() {
        assert_eq!(collector_endpoint("otel:4317").unwrap().uri().to_string(), "http://otel:4317/");
        assert!(collector_endpoint("http://10.0.0.9:4317").is_ok());
        assert!(collector_endpoint("https://otel:4317").unwrap_err().contains("plaintext"));
        assert!(collector_endpoint("http://otel").is_err(), "OTLP has no default port");
    }
}
