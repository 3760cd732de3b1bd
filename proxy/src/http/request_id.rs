//! Request ids and trace ids. Every request leaves the proxy with an `x-request-id` (a random UUID when the client
//! sent none, as Envoy's `generate_request_id` does), so the hops of one request can be found in every access log;
//! trace context headers (W3C `traceparent`/`tracestate`, B3 single and multi header) pass through unchanged, and
//! the trace id they carry is read for the access log.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// A name made once: inserting by a `&str` name copies a custom name into a new allocation on every request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives the request an `x-request-id` when it has none (or an empty one).
///
/// The id is marked never to be indexed in HTTP/2 header compression (HPACK): one value per request would
/// fill the connection's header table with entries never used again, and h2 compares a new header with every
/// entry of its name before adding it (with 16 streams in flight, about 3 % of an HTTP/2 request's
/// instructions).
pub fn ensure_request_id(headers: &mut HeaderMap) {
    match headers.get_mut(&REQUEST_ID) {
        Some(value) if !value.is_empty() => value.set_sensitive(true),
        _ => {
            let mut value = new_request_id();
            value.set_sensitive(true);
            headers.insert(REQUEST_ID, value);
        }
    }
}

/// A random (version 4) UUID, in its 36-character text form (written in place: this runs for every request).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One 128-bit draw (an array would be drawn element by element).
    let mut bytes = rand::random::<u128>().to_le_bytes();
    // Version 4, variant 10xx (RFC 9562).
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    // Two hex digits per byte, a dash after the 4th, 6th, 8th and 10th byte (8-4-4-4-12).
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    // Owned by a reference-counted `Bytes`: a retry's copy of the headers shares it instead of first moving it
    // into a new shared allocation, as a value copied from a slice is on its first clone. Hex digits and dashes:
    // always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The trace id the request carries: from `traceparent` (W3C), else `b3` (single header), else `x-b3-traceid`.
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let hex = |id: &str| id.len() >= 16 && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(id) = text("traceparent").and_then(|t| t.split('-').nth(1)).filter(|id| id.len() == 32 && hex(id)) {
        return Some(id);
    }
    if let Some(id) = text("b3").and_then(|t| t.split('-').next()).filter(|id| hex(id)) {
        return Some(id);
    }
    text("x-b3-traceid").filter(|id| hex(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_an_id_gets_a_uuid_and_one_with_keeps_it() {
        let mut headers = HeaderMap::new();
        ensure_request_id(&mut headers);
        let id = headers[&REQUEST_ID].to_str().unwrap().to_string();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "RFC variant: {id}");
        let mut again = HeaderMap::new();
        ensure_request_id(&mut again);
        assert_ne!(again[&REQUEST_ID], headers[&REQUEST_ID], "random");
        ensure_request_id(&mut headers);
        assert_eq!(headers[&REQUEST_ID].to_str().unwrap(), id, "kept");
        // Never indexed by HPACK, made or kept.
        assert!(headers[&REQUEST_ID].is_sensitive() && again[&REQUEST_ID].is_sensitive());
        let mut client_s = HeaderMap::new();
        client_s.insert(REQUEST_ID, HeaderValue::from_static("from-the-client"));
        ensure_request_id(&mut client_s);
        assert!(client_s[&REQUEST_ID].is_sensitive());
    }

    #[test]
    fn the_trace_id_is_read_from_w3c_then_b3_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(trace_id(&headers), None);
        headers.insert("x-b3-traceid", HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7"));
        assert_eq!(trace_id(&headers), Some("80f198ee56343ba864fe8b2a57d3eff7"));
        headers.insert("b3", HeaderValue::from_static("a3ce929d0e0e4736-00f067aa0ba902b7-1"));
        assert_eq!(trace_id(&headers), Some("a3ce929d0e0e4736"));
        headers
            .insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(trace_id(&headers), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        headers.insert("traceparent", HeaderValue::from_static("garbage"));
        assert_eq!(trace_id(&headers), Some("a3ce929d0e0e4736"), "a malformed traceparent is passed over");
    }
}
