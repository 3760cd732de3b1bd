//! Access logs: off by default; when on (`--access-log stdout`, set by the injector from the chart value or the
//! pod's `weft.dev/access-log` annotation), one JSON line per request on standard output once its response body
//! has ended, with the fields of Istio's JSON access log (Envoy's command operators): start time, method,
//! authority, path, protocol, response code and flags, duration, upstream cluster and host, bytes each way,
//! request id, trace id, plus the direction.
//!
//! Lines go through a bounded queue to a writer thread: a slow stdout never holds a request up; when the queue
//! is full the line is dropped and counted (`weft_proxy_access_log_dropped_total`).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Instant, SystemTime};

use http::{Request, Response, Version};
use serde::Serialize;

use super::Body;
use super::body_end::{OnBodyEnd, watch_end};
use super::request_id::{REQUEST_ID, trace_id};
use super::timeouts::connection::{InFlight, Side};
use crate::metrics::{Direction, Metrics};
use crate::upstream::UpstreamPeer;

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

/// The cluster a request was sent to, as the handler puts it on the response for the log.
#[derive(Debug, Clone)]
pub struct UpstreamCluster(pub Arc<str>);

/// Envoy's response flag for a reply the proxy wrote itself (`NR`, `UH`, `UF`, `UO`, `UT`, ...).
#[derive(Debug, Clone, Copy)]
pub struct ResponseFlag(pub &'static str);

/// Put on a request whose response is logged (or traced): handlers then name their cluster ([`UpstreamCluster`]).
#[derive(Debug, Clone, Copy)]
pub struct Logged;

/// Where access log lines go.
pub struct AccessLog {
    lines: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Lines written to standard output.
    pub fn stdout(metrics: Arc<Metrics>) -> std::io::Result<Arc<Self>> {
        Self::to_writer(std::io::stdout(), metrics)
    }

    /// Lines written to `writer`, by a thread of their own.
    pub fn to_writer(writer: impl Write + Send + 'static, metrics: Arc<Metrics>) -> std::io::Result<Arc<Self>> {
        let (lines, queue) = sync_channel(QUEUE);
        std::thread::Builder::new().name("weft-access-log".into()).spawn(move || write_lines(queue, writer))?;
        Ok(Arc::new(Self { lines, metrics }))
    }

    /// Notes what the log needs of a request before it is handled.
    pub fn begin<B>(&self, request: &mut Request<B>, direction: Direction, peer: SocketAddr) -> Pending {
        request.extensions_mut().insert(Logged);
        let headers = request.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let line = Line {
            start_time: rfc3339(SystemTime::now()),
            direction: direction.as_str(),
            method: request.method().to_string(),
            authority: super::authority::request_authority(request.version(), request.uri(), headers)
                .ok()
                .flatten()
                .map(|a| a.as_str().to_string()),
            path: request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
            protocol: protocol(request.version()),
            response_code: 0,
            response_flags: "-",
            bytes_received: 0,
            bytes_sent: 0,
            duration: 0,
            upstream_cluster: None,
            upstream_host: None,
            downstream_remote_address: peer.to_string(),
            user_agent: text("user-agent"),
            x_forwarded_for: text("x-forwarded-for"),
            request_id: text(REQUEST_ID.as_str()),
            trace_id: trace_id(headers).map(str::to_string),
        };
        Pending { line, started: Instant::now() }
    }

    /// The response, its body wrapped so that the line is written when it ends.
    /// `in_flight`: the request, whose body bytes it has counted.
    pub fn finish(
        self: &Arc<Self>,
        pending: Pending,
        mut response: Response<Body>,
        in_flight: InFlight,
    ) -> Response<Body> {
        let Pending { mut line, started } = pending;
        line.response_code = response.status().as_u16();
        let extensions = response.extensions_mut();
        line.response_flags = extensions.get::<ResponseFlag>().map_or("-", |f| f.0);
        line.upstream_cluster = extensions.remove::<UpstreamCluster>().map(|c| c.0);
        line.upstream_host = extensions.get::<UpstreamPeer>().map(|peer| peer.address.to_string());
        let log = self.clone();
        response.map(|body| watch_end(body, LineEnd { line, started, in_flight, log }))
    }

    fn write(&self, line: &Line) {
        let Ok(text) = serde_json::to_string(line) else { return };
        if let Err(TrySendError::Full(_)) = self.lines.try_send(text) {
            self.metrics.access_log_dropped();
        }
    }
}

/// A request's log line so far.
pub struct Pending {
    line: Line,
    started: Instant,
}

#[derive(Debug, Serialize)]
struct Line {
    start_time: String,
    direction: &'static str,
    method: String,
    authority: Option<String>,
    path: String,
    protocol: &'static str,
    response_code: u16,
    response_flags: &'static str,
    bytes_received: u64,
    bytes_sent: u64,
    /// Milliseconds from the request to the end of the response.
    duration: u64,
    upstream_cluster: Option<Arc<str>>,
    upstream_host: Option<String>,
    downstream_remote_address: String,
    user_agent: Option<String>,
    x_forwarded_for: Option<String>,
    request_id: Option<String>,
    trace_id: Option<String>,
}

/// Writes the request's line once its response body is over.
struct LineEnd {
    line: Line,
    started: Instant,
    in_flight: InFlight,
    log: Arc<AccessLog>,
}

impl OnBodyEnd for LineEnd {
    fn ended(self, sent: u64) {
        let Self { mut line, started, in_flight, log } = self;
        line.bytes_sent = sent;
        line.bytes_received = in_flight.body_bytes(Side::Request);
        line.duration = started.elapsed().as_millis() as u64;
        log.write(&line);
    }
}

fn write_lines(queue: Receiver<String>, writer: impl Write) {
    let mut out = std::io::BufWriter::new(writer);
    while let Ok(line) = queue.recv() {
        let _ = writeln!(out, "{line}");
        // Flushed whenever the queue is empty: lines appear at once when traffic is light, in batches when not.
        while let Ok(line) = queue.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// `2026-12-05T16:30:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_489_400_123);
        assert_eq!(rfc3339(time), "2026-12-05T16:50:00.123Z");
    }
}
