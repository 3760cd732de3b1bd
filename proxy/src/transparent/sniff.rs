//! Protocol detection on the first bytes of a captured connection. Pure: bytes in, verdict out. The bytes are
//! peeked, not consumed, so whatever the verdict they still reach the upstream or the HTTP server.

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// An HTTP/1.x request line (`METHOD SP target SP HTTP/1.x`).
    Http1,
    /// The HTTP/2 prior-knowledge connection preface.
    Http2,
    /// Anything else: TLS, a database protocol, random bytes.
    Other,
    /// Consistent with HTTP so far; more bytes are needed to tell.
    NeedMore,
}

impl Sniffed {
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http1 | Self::Http2)
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HTTP1_VERSION: &[u8] = b"HTTP/1.";
/// Longer than any registered method (the longest, `UPDATEREDIRECTREF`, has 17 characters).
const MAX_METHOD: usize = 24;

/// Classifies the first bytes of a connection. `full`: no more bytes will be looked at (the peek buffer is full),
/// so a request line still going on is taken as HTTP when it is one so far up to a long request target.
pub fn sniff(bytes: &[u8], full: bool) -> Sniffed {
    if bytes.is_empty() {
        return Sniffed::NeedMore;
    }
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() { Sniffed::Http2 } else { Sniffed::NeedMore };
    }
    match request_line(bytes) {
        Sniffed::NeedMore if full => long_target(bytes),
        verdict => verdict,
    }
}

/// `METHOD SP request-target SP HTTP/1.d`, judged as far as `bytes` go.
fn request_line(bytes: &[u8]) -> Sniffed {
    let method = bytes.iter().take_while(|b| is_tchar(**b)).count();
    if method == 0 || method > MAX_METHOD {
        return Sniffed::Other;
    }
    let Some(rest) = expect_space(&bytes[method..]) else { return verdict_at_end(&bytes[method..]) };
    let target = rest.iter().take_while(|b| is_target_byte(**b)).count();
    if target == 0 {
        return verdict_at_end(rest);
    }
    let Some(version) = expect_space(&rest[target..]) else { return verdict_at_end(&rest[target..]) };
    let shown = version.len().min(HTTP1_VERSION.len());
    if version[..shown] != HTTP1_VERSION[..shown] {
        return Sniffed::Other;
    }
    match version.get(HTTP1_VERSION.len()) {
        None => Sniffed::NeedMore,
        Some(digit) if digit.is_ascii_digit() => Sniffed::Http1,
        Some(_) => Sniffed::Other,
    }
}

/// The rest after a single space, if `bytes` starts with one.
fn expect_space(bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(b" ")
}

/// Where a space was expected: the input ended (need more) or something else came (not HTTP).
fn verdict_at_end(bytes: &[u8]) -> Sniffed {
    if bytes.is_empty() { Sniffed::NeedMore } else { Sniffed::Other }
}

/// A full buffer that is a method, a space and target characters: a request with a very long target.
fn long_target(bytes: &[u8]) -> Sniffed {
    let method = bytes.iter().take_while(|b| is_tchar(**b)).count();
    match bytes[method..].strip_prefix(b" ") {
        Some(target) if !target.is_empty() && target.iter().all(|b| is_target_byte(*b)) => Sniffed::Http1,
        _ => Sniffed::Other,
    }
}

/// RFC 9110 `tchar`: the characters of a method token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII: what a request target is made of.
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_request_lines_of_every_common_method() {
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PROPFIND"] {
            let line = format!("{method} /a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(sniff(line.as_bytes(), false), Sniffed::Http1, "{method}");
        }
        assert_eq!(sniff(b"GET http://example.com/ HTTP/1.0\r\n", false), Sniffed::Http1);
        assert_eq!(sniff(b"CONNECT example.com:443 HTTP/1.1\r\n", false), Sniffed::Http1);
        assert_eq!(sniff(b"OPTIONS * HTTP/1.1\r\n", false), Sniffed::Http1);
    }

    #[test]
    fn the_http2_preface_is_http2() {
        assert_eq!(sniff(H2_PREFACE, false), Sniffed::Http2);
        let mut with_settings = H2_PREFACE.to_vec();
        with_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(sniff(&with_settings, false), Sniffed::Http2);
    }

    #[test]
    fn partial_input_waits_for_more() {
        for partial in
            [&b"G"[..], b"GET", b"GET ", b"GET /index", b"GET / ", b"GET / HTT", b"GET / HTTP/1.", b"PRI * HT"]
        {
            assert_eq!(sniff(partial, false), Sniffed::NeedMore, "{:?}", String::from_utf8_lossy(partial));
        }
        // Every prefix of a real request is either undecided or HTTP, never "other".
        let request = b"POST /upload HTTP/1.1\r\n";
        for end in 1..request.len() {
            assert_ne!(sniff(&request[..end], false), Sniffed::Other, "prefix of {end} bytes");
        }
        for end in 1..H2_PREFACE.len() {
            assert_eq!(sniff(&H2_PREFACE[..end], false), Sniffed::NeedMore, "preface prefix of {end} bytes");
        }
    }

    #[test]
    fn a_tls_client_hello_is_not_http() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
        assert_eq!(sniff(&hello, false), Sniffed::Other);
    }

    #[test]
    fn other_protocols_and_random_bytes_are_not_http() {
        for bytes in [
            &b"hello weft\n"[..],
            b"ping\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f", // PostgreSQL SSLRequest
            b"*1\r\n$4\r\nPING\r\n",             // Redis
            b"GET  / HTTP/1.1\r\n",              // two spaces
            b"GET / HTTP/2.0\r\n",
            b"GET / FTP/1.1\r\n",
            b"GET /\r\n", // HTTP/0.9
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n",
        ] {
            assert_eq!(sniff(bytes, false), Sniffed::Other, "{:?}", String::from_utf8_lossy(bytes));
        }
        // Pseudo-random bytes (xorshift), many seeds: never HTTP.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..32)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(!sniff(&bytes, true).is_http(), "{bytes:?}");
        }
    }

    #[test]
    fn a_full_buffer_inside_a_long_target_is_http() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(5000));
        assert_eq!(sniff(&long.as_bytes()[..1024], true), Sniffed::Http1);
        assert_eq!(sniff(&long.as_bytes()[..1024], false), Sniffed::NeedMore);
        assert_eq!(sniff(b"GET", true), Sniffed::Other, "a full buffer that is only a method is not enough");
    }

    #[test]
    fn nothing_yet_waits() {
        assert_eq!(sniff(b"", false), Sniffed::NeedMore);
    }
}
