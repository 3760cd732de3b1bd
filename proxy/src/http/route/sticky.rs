//! Envoy's generated cookie for consistent hashing (Istio's `consistentHash.httpCookie` with a `ttl`): a request
//! without the cookie is hashed by a value the proxy makes up, and its response sets that cookie, so the client's
//! next requests go to the same endpoint.

use std::net::SocketAddr;

use futures_util::TryFutureExt;
use http::{HeaderValue, Request, header};
use tower::ServiceExt;

use super::hash::cookie;
use super::{Next, RouteFuture, RouteStep};
use crate::config::policy::{CookiePolicy, HashPolicy};
use crate::http::Body;
use crate::upstream::hash_of;

/// The cookie generated for a request; rides in its extensions for [`super::hash`].
#[derive(Debug, Clone)]
pub struct Generated {
    name: String,
    value: String,
}

impl Generated {
    /// The value generated for cookie `name` of `request`, if one was.
    pub fn value_in<B>(request: &Request<B>, name: &str) -> Option<String> {
        request.extensions().get::<Self>().filter(|g| g.name == name).map(|g| g.value.clone())
    }
}

/// The route's first cookie policy that sets its cookie.
#[derive(Clone, Copy)]
pub struct StickyLayer<'a> {
    policy: &'a CookiePolicy,
    client: SocketAddr,
}

impl<'a> StickyLayer<'a> {
    /// `None` when no cookie policy has a `ttl`.
    pub fn new(policies: &'a [HashPolicy], client: SocketAddr) -> Option<Self> {
        policies.iter().find_map(|p| match p {
            HashPolicy::Cookie(policy) if policy.ttl.is_some() => Some(Self { policy, client }),
            _ => None,
        })
    }
}

impl<'a> RouteStep<'a> for StickyLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, mut request: Request<Body>) -> RouteFuture<'a> {
        if cookie(&request, &self.policy.name).is_some() {
            return Box::pin(next.oneshot(request));
        }
        let value = cookie_value(self.client);
        let header = set_cookie(self.policy, &value);
        request.extensions_mut().insert(Generated { name: self.policy.name.clone(), value });
        Box::pin(next.oneshot(request).map_ok(move |mut response| {
            if let Some(header) = header {
                response.headers_mut().append(header::SET_COOKIE, header);
            }
            response
        }))
    }
}

/// As Envoy: a hash of the client's address (one connection, one value), in hex.
fn cookie_value(client: SocketAddr) -> String {
    let hash = hash_of(client.to_string().as_bytes());
    format!("{hash:016x}")
}

/// `name="value"; Max-Age=S; Path=P; HttpOnly`, Envoy's shape; a zero ttl makes a session cookie (no `Max-Age`).
/// `None` if the name cannot be sent in a header (validation refuses such names).
fn set_cookie(policy: &CookiePolicy, value: &str) -> Option<HeaderValue> {
    let mut text = format!("{}=\"{value}\"", policy.name);
    // Whole seconds, as Envoy writes them; under one second is a session cookie (`Max-Age=0` would delete it).
    if let Some(ttl) = policy.ttl.filter(|t| t.as_secs() > 0) {
        text.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !policy.path.is_empty() {
        text.push_str(&format!("; Path={}", policy.path));
    }
    text.push_str("; HttpOnly");
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(ttl: Duration, path: &str) -> CookiePolicy {
        CookiePolicy { name: "user".into(), ttl: Some(ttl), path: path.into() }
    }

    #[test]
    fn the_cookie_has_envoys_shape() {
        let lasting = set_cookie(&policy(Duration::from_secs(3600), "/shop"), "00ab").unwrap();
        assert_eq!(lasting, "user=\"00ab\"; Max-Age=3600; Path=/shop; HttpOnly");
        let session = set_cookie(&policy(Duration::ZERO, ""), "00ab").unwrap();
        assert_eq!(session, "user=\"00ab\"; HttpOnly", "a zero ttl: a session cookie");
        let short = set_cookie(&policy(Duration::from_millis(500), ""), "00ab").unwrap();
        assert_eq!(short, "user=\"00ab\"; HttpOnly", "never Max-Age=0, which deletes the cookie");
    }

    #[test]
    fn one_client_address_makes_one_value() {
        let client: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        assert_eq!(cookie_value(client), cookie_value(client));
        assert_ne!(cookie_value(client), cookie_value("10.0.0.7:40001".parse().unwrap()));
        assert_eq!(cookie_value(client).len(), 16);
    }

    #[test]
    fn only_a_cookie_policy_with_a_ttl_sets_a_cookie() {
        let read_only = [HashPolicy::Cookie(CookiePolicy::read_only("user")), HashPolicy::SourceIp];
        let client = "10.0.0.7:40000".parse().unwrap();
        assert!(StickyLayer::new(&read_only, client).is_none());
        let setting = [HashPolicy::SourceIp, HashPolicy::Cookie(policy(Duration::ZERO, ""))];
        assert!(StickyLayer::new(&setting, client).is_some());
    }
}
