//! Golden metrics per workload pair (Istio's standard metrics under Weft's names): every request counted and
//! timed by the sidecar on each side, with who sent it and who answered it.
//!
//! - [`peer`]: how a sidecar learns who is on the other end: each side sends its own workload's name,
//!   namespace, app and version to the other in `x-weft-peer` (requests to mesh Services, responses to callers
//!   that proved a sidecar identity), and takes the other's only from a sidecar (Istio's metadata exchange).
//! - [`golden`]: `weft_requests_total`, `weft_request_duration_milliseconds`, `weft_request_bytes` and
//!   `weft_response_bytes` with Istio's labels.
//! - [`tcp`]: `weft_tcp_*` for connections forwarded as TCP.
//! - [`trace`]: a span per request, trace context carried on, sampled spans exported over OTLP.

pub mod golden;
pub mod peer;
pub mod report;
pub mod tcp;
pub mod trace;

pub use golden::{BodySizes, GoldenMetrics, Reporter, RequestReport, ServiceLabels};
pub use peer::{PEER_HEADER, PeerCache, Workload};
