//! The one authority of a request: the host it is routed by is the host the upstream sees. Requests that name two
//! different hosts, or one badly, are refused with 400 rather than routed by one and forwarded with the other
//! (the request-smuggling and routing-bypass shapes of RFC 9112 section 3.2 and RFC 9113 section 8.3.1).

use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri, Version, header};

/// Why a request's authority cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    /// More than one `Host` header.
    DuplicateHost,
    /// A `Host` value that is not `host[:port]`.
    InvalidHost,
    /// The request target's (or `:authority`'s) host differs from the `Host` header's.
    Conflict,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
}

impl AuthorityError {
    pub fn message(self) -> &'static str {
        match self {
            Self::DuplicateHost => "more than one Host header",
            Self::InvalidHost => "invalid Host header",
            Self::Conflict => "the Host header differs from the request's authority",
            Self::MissingHost => "missing Host header",
        }
    }
}

/// The authority a request addresses: the absolute-form target's (HTTP/1) or `:authority` (HTTP/2), else the
/// `Host` header; `None` for an HTTP/1.0 or HTTP/2 request that names none. Pure.
pub fn request_authority(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Authority>, AuthorityError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::DuplicateHost);
    }
    let host = match host {
        Some(value) => {
            let text = value.to_str().map_err(|_| AuthorityError::InvalidHost)?;
            let parsed: Authority = text.parse().map_err(|_| AuthorityError::InvalidHost)?;
            if parsed.as_str().contains('@') || parsed.host().is_empty() {
                return Err(AuthorityError::InvalidHost);
            }
            Some(parsed)
        }
        None => None,
    };
    if uri.authority().is_some_and(|target| target.as_str().contains('@')) {
        return Err(AuthorityError::InvalidHost);
    }
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
    let same = |a: &Authority, b: &Authority| {
        a.host().eq_ignore_ascii_case(b.host())
            && a.port_u16().unwrap_or(default_port) == b.port_u16().unwrap_or(default_port)
    };
    match (uri.authority(), host) {
        (Some(target), Some(host)) if !same(target, &host) => Err(AuthorityError::Conflict),
        (Some(target), _) => Ok(Some(target.clone())),
        (None, Some(host)) => Ok(Some(host)),
        (None, None) if version == Version::HTTP_11 => Err(AuthorityError::MissingHost),
        (None, None) => Ok(None),
    }
}

/// Points a request at `authority`: its URI in absolute form with that authority (the path shared with the
/// request's, not copied and parsed again) and, `with_host`, a `Host` header saying it, kept as it is when it
/// already does (the usual HTTP/1.1 request); without, no `Host` (HTTP/2 carries the URI's as `:authority`).
pub fn point_at(parts: &mut http::request::Parts, authority: Authority, with_host: bool) {
    let host_says_it =
        parts.headers.get(header::HOST).is_some_and(|host| host.as_bytes() == authority.as_str().as_bytes());
    if !(with_host && host_says_it) {
        parts.headers.remove(header::HOST);
        if with_host && let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut target = uri::Parts::default();
    (target.scheme, target.authority, target.path_and_query) = (Some(Scheme::HTTP), Some(authority), Some(path));
    if let Ok(target) = Uri::from_parts(target) {
        parts.uri = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(version: Version, uri: &str, hosts: &[&str]) -> Result<Option<String>, AuthorityError> {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, host.parse().unwrap());
        }
        Ok(request_authority(version, &uri.parse().unwrap(), &headers)?.map(|a| a.as_str().to_string()))
    }

    #[test]
    fn one_host_is_the_authority() {
        assert_eq!(authority(Version::HTTP_11, "/x", &["reviews:9080"]), Ok(Some("reviews:9080".into())));
        assert_eq!(authority(Version::HTTP_2, "http://reviews/x", &[]), Ok(Some("reviews".into())));
        assert_eq!(authority(Version::HTTP_11, "http://a/x", &["A"]), Ok(Some("a".into())), "case is not a conflict");
        assert_eq!(authority(Version::HTTP_11, "http://a/x", &["a:80"]), Ok(Some("a".into())), "nor the default port");
        assert_eq!(authority(Version::HTTP_10, "/x", &[]), Ok(None));
    }

    #[test]
    fn two_hosts_or_a_bad_one_are_refused() {
        assert_eq!(authority(Version::HTTP_11, "/x", &["a", "b"]), Err(AuthorityError::DuplicateHost));
        assert_eq!(authority(Version::HTTP_11, "/x", &["a", "a"]), Err(AuthorityError::DuplicateHost));
        assert_eq!(authority(Version::HTTP_11, "http://a/x", &["b"]), Err(AuthorityError::Conflict));
        assert_eq!(authority(Version::HTTP_2, "http://reviews/x", &["evil.example"]), Err(AuthorityError::Conflict));
        assert_eq!(authority(Version::HTTP_11, "/x", &["a b"]), Err(AuthorityError::InvalidHost));
        assert_eq!(authority(Version::HTTP_11, "/x", &["user@a"]), Err(AuthorityError::InvalidHost));
        assert_eq!(authority(Version::HTTP_2, "http://user@a/x", &[]), Err(AuthorityError::InvalidHost));
        assert_eq!(authority(Version::HTTP_11, "http://a:8080/x", &["a"]), Err(AuthorityError::Conflict));
        assert_eq!(authority(Version::HTTP_11, "/x", &[]), Err(AuthorityError::MissingHost));
    }

    /// The request `point_at` leaves: its URI and its `Host` headers, in order.
    fn pointed(uri: &str, headers: &[(&str, &str)], authority: &str, with_host: bool) -> (String, Vec<String>) {
        let mut request = http::Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        point_at(&mut parts, authority.parse().unwrap(), with_host);
        let names = parts.headers.keys().map(|n| n.as_str().to_string()).collect();
        let hosts: Vec<String> =
            parts.headers.get_all(header::HOST).iter().map(|h| h.to_str().unwrap().into()).collect();
        assert!(hosts.len() <= 1, "one Host at most: {hosts:?}");
        (format!("{} host={}", parts.uri, hosts.first().map_or("-", String::as_str)), names)
    }

    #[test]
    fn a_request_pointed_at_its_authority_says_it_once_and_keeps_its_headers_in_order() {
        let client = [("host", "reviews:9080"), ("x-first", "1")];
        let (target, names) = pointed("/p?q=1", &client, "reviews:9080", true);
        assert_eq!(target, "http://reviews:9080/p?q=1 host=reviews:9080");
        assert_eq!(names, ["host", "x-first"], "a Host that already says it is left where it is");
        let (target, _) = pointed("http://Reviews/p", &[("host", "reviews")], "Reviews", true);
        assert_eq!(target, "http://Reviews/p host=Reviews", "written again when it says it differently");
        let (target, names) = pointed("/p", &client, "ratings", false);
        assert_eq!((target.as_str(), names), ("http://ratings/p host=-", vec!["x-first".to_string()]), "HTTP/2");
    }
}
