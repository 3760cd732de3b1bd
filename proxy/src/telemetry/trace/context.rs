//! Trace context in and out of a request, pure: what the client sent (W3C `traceparent`, B3 single header
//! `b3`, B3 multi headers `x-b3-*`), the proxy's decision (its own span, a child of the client's; sampled as the
//! client decided, else at the configured rate), and the headers that carry that span on (`traceparent` always,
//! and B3 in the form the request used, so applications that only forward B3 keep their traces whole).
//! `tracestate` passes through untouched in a trace the caller started, and is dropped from a trace the proxy
//! starts (W3C); the caller's other trace flags and B3's debug flag are kept.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The B3 form a request used, to answer in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Form {
    None,
    Single,
    Multi,
}

/// A trace id and a span id in it.
pub type TraceIds = (u128, u64);

/// What a request says about its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The trace and the client's span, when it sent them.
    pub ids: Option<TraceIds>,
    /// The client's sampling decision, when it made one.
    pub sampled: Option<bool>,
    /// B3's debug flag (`d`, `X-B3-Flags: 1`): sampled, and to be passed on as debug.
    pub debug: bool,
    /// The W3C trace flags besides `sampled` (e.g. level 2's random flag), passed on.
    pub flags: u8,
    pub b3: B3Form,
}

/// The proxy's span for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The client's span, when the request came with one.
    pub parent: Option<u64>,
    pub sampled: bool,
    pub debug: bool,
    /// W3C trace flags besides `sampled`.
    pub flags: u8,
}

/// Fresh random values for a decision: a trace id (used when the request has none), a span id, and a draw in
/// [0, 1) for the sampling rate.
#[derive(Debug, Clone, Copy)]
pub struct Dice {
    pub trace_id: u128,
    pub span_id: u64,
    pub draw: f64,
}

impl Dice {
    pub fn roll() -> Self {
        // Zero ids are invalid in both W3C and B3.
        Self { trace_id: rand::random::<u128>().max(1), span_id: rand::random::<u64>().max(1), draw: rand::random() }
    }
}

/// Reads the request's trace context: `traceparent` first, then `b3`, then `x-b3-*`; malformed headers are
/// passed over (as if absent).
pub fn incoming(headers: &HeaderMap) -> Incoming {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let b3 = if text(&B3).is_some() {
        B3Form::Single
    } else if text(&B3_TRACE_ID).is_some() || text(&B3_SAMPLED).is_some() || text(&B3_FLAGS).is_some() {
        B3Form::Multi
    } else {
        B3Form::None
    };
    let none = Incoming { ids: None, sampled: None, debug: false, flags: 0, b3 };
    if let Some((ids, flags)) = text(&TRACEPARENT).and_then(parse_traceparent) {
        return Incoming { ids: Some(ids), sampled: Some(flags & 1 == 1), flags: flags & !1, ..none };
    }
    if let Some((ids, sampled, debug)) = text(&B3).and_then(parse_b3_single) {
        return Incoming { ids, sampled, debug, ..none };
    }
    let ids = text(&B3_TRACE_ID).and_then(trace_id_hex).zip(text(&B3_SPAN_ID).and_then(span_id_hex));
    let debug = text(&B3_FLAGS) == Some("1");
    let sampled = match text(&B3_SAMPLED) {
        _ if debug => Some(true),
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        _ => None,
    };
    Incoming { ids, sampled, debug, ..none }
}

/// The proxy's span: a child of the client's, in its trace; sampled as the client decided, else when the draw
/// falls under `sampling_percent`.
pub fn decide(incoming: &Incoming, sampling_percent: f64, dice: Dice) -> SpanContext {
    let sampled = incoming.sampled.unwrap_or(dice.draw * 100.0 < sampling_percent);
    let (trace_id, parent) = match incoming.ids {
        Some((trace, span)) => (trace, Some(span)),
        None => (dice.trace_id, None),
    };
    SpanContext { trace_id, span_id: dice.span_id, parent, sampled, debug: incoming.debug, flags: incoming.flags }
}

/// Sets the headers that carry `span` to the next hop: `traceparent`, and the request's B3 form.
pub fn propagate(headers: &mut HeaderMap, span: &SpanContext, b3: B3Form) {
    let flag = if span.sampled { "1" } else { "0" };
    let trace = format!("{:032x}", span.trace_id);
    let flags = span.flags | u8::from(span.sampled);
    insert_id(headers, TRACEPARENT, format!("00-{trace}-{:016x}-{flags:02x}", span.span_id));
    if span.parent.is_none() {
        // A trace that starts here has no vendor state yet.
        headers.remove(TRACESTATE);
    }
    // B3 keeps a 64-bit trace id at 64 bits.
    let b3_trace = if span.trace_id >> 64 == 0 { &trace[16..] } else { &trace[..] };
    match b3 {
        B3Form::None => {}
        B3Form::Single => {
            let parent = span.parent.map(|p| format!("-{p:016x}")).unwrap_or_default();
            let sampling = if span.debug { "d" } else { flag };
            insert_id(headers, B3, format!("{b3_trace}-{:016x}-{sampling}{parent}", span.span_id));
        }
        B3Form::Multi => {
            insert_id(headers, B3_TRACE_ID, b3_trace.to_string());
            insert_id(headers, B3_SPAN_ID, format!("{:016x}", span.span_id));
            match span.parent {
                Some(parent) => insert_id(headers, B3_PARENT_SPAN_ID, format!("{parent:016x}")),
                None => {
                    headers.remove(B3_PARENT_SPAN_ID);
                }
            }
            // Debug implies sampled and is sent alone (B3).
            if span.debug {
                insert(headers, B3_FLAGS, "1".to_string());
                headers.remove(B3_SAMPLED);
            } else {
                insert(headers, B3_SAMPLED, flag.to_string());
                headers.remove(B3_FLAGS);
            }
        }
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Hex digits and dashes only: always a valid header value.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// [`insert`] for a value new with each request (an id): never indexed by HTTP/2 header compression, as
/// `x-request-id` (see `crate::http::request_id::ensure_request_id`).
fn insert_id(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(mut value) = HeaderValue::try_from(value) {
        value.set_sensitive(true);
        headers.insert(name, value);
    }
}

/// `version-traceid-parentid-flags`; version `ff` and all-zero ids are invalid; version 00 has nothing after
/// the flags, later versions may.
/// The ids and the trace flags.
fn parse_traceparent(text: &str) -> Option<(TraceIds, u8)> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex_of(version, 2) || version == "ff" || !hex_of(trace, 32) || !hex_of(span, 16) || !hex_of(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let ids = (nonzero_u128(trace)?, nonzero_u64(span)?);
    Some((ids, u8::from_str_radix(flags, 16).ok()?))
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or only `{sampling}` (`0`, `1`, `d`): the ids, the
/// decision and whether it is debug.
fn parse_b3_single(text: &str) -> Option<(Option<TraceIds>, Option<bool>, bool)> {
    let sampling = |s: &str| match s {
        "1" => Some((Some(true), false)),
        "d" => Some((Some(true), true)),
        "0" => Some((Some(false), false)),
        _ => None,
    };
    let mut parts = text.trim().split('-');
    let first = parts.next()?;
    let Some(span) = parts.next() else {
        let (sampled, debug) = sampling(first)?;
        return Some((None, sampled, debug));
    };
    let ids = (trace_id_hex(first)?, span_id_hex(span)?);
    let (sampled, debug) = match parts.next() {
        Some(s) => sampling(s)?,
        None => (None, false),
    };
    Some((Some(ids), sampled, debug))
}

/// A B3 trace id: 16 or 32 hex digits, not zero.
fn trace_id_hex(text: &str) -> Option<u128> {
    (text.len() == 16 || text.len() == 32).then_some(())?;
    nonzero_u128(text)
}

fn span_id_hex(text: &str) -> Option<u64> {
    (text.len() == 16).then_some(())?;
    nonzero_u64(text)
}

fn nonzero_u128(text: &str) -> Option<u128> {
    u128::from_str_radix(text, 16).ok().filter(|id| *id != 0)
}

fn nonzero_u64(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok().filter(|id| *id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const CLIENT_SPAN: u64 = 0x00f067aa0ba902b7;
    const DICE: Dice = Dice { trace_id: 0x1234, span_id: 0xabcdef, draw: 0.5 };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn a_w3c_parent_is_followed_and_replaced_by_the_proxys_span() {
        let mut h = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
        let incoming = incoming(&h);
        let expected =
            Incoming { ids: Some((TRACE, CLIENT_SPAN)), sampled: Some(true), debug: false, flags: 0, b3: B3Form::None };
        assert_eq!(incoming, expected);
        let span = decide(&incoming, 0.0, DICE);
        let expected = SpanContext {
            trace_id: TRACE,
            span_id: 0xabcdef,
            parent: Some(CLIENT_SPAN),
            sampled: true,
            debug: false,
            flags: 0,
        };
        assert_eq!(span, expected);
        propagate(&mut h, &span, incoming.b3);
        assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000abcdef-01");
        assert!(h.get("b3").is_none() && h.get("x-b3-traceid").is_none(), "no B3 added where none was");
    }

    #[test]
    fn the_clients_decision_wins_over_the_rate() {
        let unsampled = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")]);
        assert!(!decide(&incoming(&unsampled), 100.0, DICE).sampled);
        let deferred = headers(&[("x-b3-traceid", "80f198ee56343ba8"), ("x-b3-spanid", "e457b5a2e4d86bd1")]);
        let deferred = incoming(&deferred);
        assert_eq!(deferred.sampled, None, "B3 without X-B3-Sampled defers the decision");
        assert!(decide(&deferred, 50.1, DICE).sampled && !decide(&deferred, 50.0, DICE).sampled);
        let debug = headers(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")]);
        assert_eq!(incoming(&debug).sampled, Some(true), "debug forces sampling");
    }

    #[test]
    fn without_context_a_trace_starts_here_at_the_rate() {
        let none = incoming(&HeaderMap::new());
        let span = decide(&none, 60.0, DICE);
        let expected =
            SpanContext { trace_id: 0x1234, span_id: 0xabcdef, parent: None, sampled: true, debug: false, flags: 0 };
        assert_eq!(span, expected);
        assert!(!decide(&none, 0.0, Dice { draw: 0.0, ..DICE }).sampled, "0 % samples nothing");
        assert!(decide(&none, 100.0, Dice { draw: 0.999_999, ..DICE }).sampled, "100 % samples everything");
        let mut h = headers(&[("tracestate", "vendor=stale")]);
        let started_here = decide(&incoming(&h), 1.0, Dice { draw: 1.0, ..DICE });
        propagate(&mut h, &started_here, none.b3);
        assert_eq!(h["traceparent"], "00-00000000000000000000000000001234-0000000000abcdef-00");
        assert!(h.get("tracestate").is_none(), "a trace started here has no vendor state");
    }

    #[test]
    fn b3_single_and_multi_are_answered_in_kind() {
        let mut single = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]);
        let found = incoming(&single);
        assert_eq!(found.b3, B3Form::Single);
        assert_eq!(found.ids, Some((0x80f198ee56343ba864fe8b2a57d3eff7, 0xe457b5a2e4d86bd1)));
        let span = decide(&found, 0.0, DICE);
        propagate(&mut single, &span, found.b3);
        assert_eq!(single["b3"], "80f198ee56343ba864fe8b2a57d3eff7-0000000000abcdef-1-e457b5a2e4d86bd1");
        assert_eq!(single["traceparent"], "00-80f198ee56343ba864fe8b2a57d3eff7-0000000000abcdef-01");

        let mut multi = headers(&[
            ("x-b3-traceid", "80f198ee56343ba8"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]);
        let found = incoming(&multi);
        propagate(&mut multi, &decide(&found, 100.0, DICE), found.b3);
        assert_eq!(multi["x-b3-traceid"], "80f198ee56343ba8", "a 64-bit id stays 64-bit");
        assert_eq!(multi["x-b3-spanid"], "0000000000abcdef");
        assert_eq!(multi["x-b3-parentspanid"], "e457b5a2e4d86bd1");
        assert_eq!(multi["x-b3-sampled"], "0", "the client said no");
        // Ids are never indexed by HTTP/2 header compression (a new value per request); flags may be.
        let sensitive = |h: &HeaderMap, name: &str| h[name].is_sensitive();
        assert!(sensitive(&single, "b3") && sensitive(&single, "traceparent"));
        assert!(["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid"].iter().all(|n| sensitive(&multi, n)));
        assert!(!sensitive(&multi, "x-b3-sampled"));
        assert_eq!(
            incoming(&headers(&[("b3", "0")])),
            Incoming { ids: None, sampled: Some(false), debug: false, flags: 0, b3: B3Form::Single }
        );
    }

    #[test]
    fn debug_other_flags_and_the_callers_tracestate_are_kept() {
        let mut w3c = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
            ("tracestate", "vendor=1"),
        ]);
        let found = incoming(&w3c);
        propagate(&mut w3c, &decide(&found, 0.0, DICE), found.b3);
        assert_eq!(w3c["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000abcdef-03", "random flag kept");
        assert_eq!(w3c["tracestate"], "vendor=1");
        let mut single = headers(&[("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-d")]);
        let found = incoming(&single);
        propagate(&mut single, &decide(&found, 0.0, DICE), found.b3);
        assert_eq!(single["b3"], "80f198ee56343ba8-0000000000abcdef-d-e457b5a2e4d86bd1");
        let mut multi =
            headers(&[("x-b3-traceid", "80f198ee56343ba8"), ("x-b3-spanid", "e457b5a2e4d86bd1"), ("x-b3-flags", "1")]);
        let found = incoming(&multi);
        propagate(&mut multi, &decide(&found, 0.0, DICE), found.b3);
        assert_eq!((multi["x-b3-flags"].to_str().unwrap(), multi.get("x-b3-sampled")), ("1", None), "debug alone");
        assert_eq!(multi["traceparent"], "00-000000000000000080f198ee56343ba8-0000000000abcdef-01");
    }

    #[test]
    fn malformed_context_is_passed_over() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let h: HeaderMap = [(TRACEPARENT, HeaderValue::from_static(bad))].into_iter().collect();
            assert_eq!(incoming(&h).ids, None, "{bad}");
        }
        let later = headers(&[("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")]);
        assert!(incoming(&later).ids.is_some(), "a later version may carry more fields");
        assert_eq!(incoming(&headers(&[("b3", "xyz-e457b5a2e4d86bd1")])).ids, None);
    }
}
