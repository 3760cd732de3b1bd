//! A request's consistent-hashing key, from the route's hash policies (a header, a cookie, a query parameter):
//! the values found, combined; `None` when none is present (the balancer then picks at random). A cookie the
//! proxy generated for this request ([`super::sticky`]) counts as sent. Pure.

use std::net::SocketAddr;

use http::{Request, header};

use super::sticky::Generated;
use crate::config::policy::HashPolicy;
use crate::upstream::hash_of;

pub fn key<B>(policies: &[HashPolicy], request: &Request<B>, client: SocketAddr) -> Option<u64> {
    let mut material: Vec<u8> = Vec::new();
    for policy in policies {
        let value = match policy {
            HashPolicy::Header(name) => request.headers().get(name).map(|v| v.as_bytes().to_vec()),
            HashPolicy::Cookie(policy) => cookie(request, &policy.name)
                .or_else(|| Generated::value_in(request, &policy.name))
                .map(String::into_bytes),
            HashPolicy::QueryParameter(name) => query_parameter(request, name).map(String::into_bytes),
            HashPolicy::SourceIp => Some(client.ip().to_string().into_bytes()),
        };
        if let Some(value) = value {
            material.extend_from_slice(&value);
            material.push(0);
        }
    }
    (!material.is_empty()).then(|| hash_of(&material))
}

/// The value of cookie `name`, without the double quotes it may be sent in; an empty value is no cookie (as
/// Envoy reads them).
pub fn cookie<B>(request: &Request<B>, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| unquoted(v)))
        .filter(|value| !value.is_empty())
}

fn unquoted(value: &str) -> String {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_string()
}

fn query_parameter<B>(request: &Request<B>, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| match pair.split_once('=') {
        Some((n, v)) if n == name => Some(v.to_string()),
        None if pair == name => Some(String::new()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::CookiePolicy;

    fn client() -> SocketAddr {
        "10.0.0.1:1000".parse().unwrap()
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(uri);
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_key_comes_from_what_the_policy_names() {
        let by_user = [HashPolicy::Header(http::HeaderName::from_static("x-user"))];
        let alice = key(&by_user, &request("/", &[("x-user", "alice")]), client());
        assert_eq!(alice, key(&by_user, &request("/other", &[("x-user", "alice")]), client()), "same user, same key");
        assert_ne!(alice, key(&by_user, &request("/", &[("x-user", "bob")]), client()));
        assert_eq!(key(&by_user, &request("/", &[]), client()), None, "no header: no key");
        let by_cookie = [HashPolicy::Cookie(CookiePolicy::read_only("session"))];
        let cookie = key(&by_cookie, &request("/", &[("cookie", "theme=dark; session=abc")]), client());
        assert_eq!(cookie, Some(hash_of(b"abc\0")));
        let quoted = key(&by_cookie, &request("/", &[("cookie", "session=\"abc\"")]), client());
        assert_eq!(quoted, cookie, "a quoted value is the same value");
        assert_eq!(key(&by_cookie, &request("/", &[("cookie", "session=")]), client()), None, "an empty value is none");
        let by_query = [HashPolicy::QueryParameter("cart".into())];
        assert_eq!(key(&by_query, &request("/?a=1&cart=7", &[]), client()), Some(hash_of(b"7\0")));
        let from = "10.0.0.7:40000".parse().unwrap();
        let by_client = key(&[HashPolicy::SourceIp], &request("/", &[]), from);
        assert_eq!(by_client, Some(hash_of(b"10.0.0.7\0")), "the address, not the port");
    }
}
