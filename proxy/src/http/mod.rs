//! The HTTP data path: the outbound listener, request forwarding, and the proxy's own error replies.

mod forward;
mod headers;
pub mod local_reply;
pub mod outbound;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// Request and response bodies as they travel through the proxy.
pub type Body = BoxBody<Bytes, crate::BoxError>;
