//! Header operations of a route and of the destination it picked (Istio's `headers.request` / `headers.response`,
//! at rule and destination level): on the request before it is sent, on the response before it is returned.

use futures_util::TryFutureExt;
use http::{HeaderMap, Request};
use tower::ServiceExt;

use super::{Next, RouteFuture, RouteStep};
use crate::config::policy::HeaderOps;
use crate::config::{RouteEntry, WeightedTarget};
use crate::http::Body;

/// Applies `ops` to `headers`: removals, then replacements, then additions (Envoy's order).
pub fn apply(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        headers.append(name.clone(), value.clone());
    }
}

/// The route's operations first, then the destination's (so a destination can override the rule).
#[derive(Clone, Copy)]
pub struct HeadersLayer<'a> {
    request: [&'a HeaderOps; 2],
    response: [&'a HeaderOps; 2],
}

impl<'a> HeadersLayer<'a> {
    /// `None` when neither the route nor the target has any operation.
    pub fn new(route: &'a RouteEntry, target: &'a WeightedTarget) -> Option<Self> {
        let layer = Self {
            request: [&route.request_headers, &target.request_headers],
            response: [&route.response_headers, &target.response_headers],
        };
        (!layer.request.iter().chain(&layer.response).all(|ops| ops.is_empty())).then_some(layer)
    }
}

impl<'a> RouteStep<'a> for HeadersLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, mut request: Request<Body>) -> RouteFuture<'a> {
        let config = self;
        for ops in config.request {
            apply(ops, request.headers_mut());
        }
        Box::pin(next.oneshot(request).map_ok(move |mut response| {
            for ops in config.response {
                apply(ops, response.headers_mut());
            }
            response
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn remove_then_set_then_add() {
        let pair = |n: &'static str, v: &'static str| (HeaderName::from_static(n), HeaderValue::from_static(v));
        let ops = HeaderOps {
            set: vec![pair("x-env", "canary")],
            add: vec![pair("x-trace", "b")],
            remove: vec![HeaderName::from_static("x-secret"), HeaderName::from_static("x-trace")],
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-env", HeaderValue::from_static("prod"));
        headers.append("x-env", HeaderValue::from_static("other"));
        headers.insert("x-secret", HeaderValue::from_static("s"));
        headers.insert("x-trace", HeaderValue::from_static("a"));
        apply(&ops, &mut headers);
        assert_eq!(headers.get_all("x-env").iter().collect::<Vec<_>>(), ["canary"], "set replaces every value");
        assert!(!headers.contains_key("x-secret"));
        assert_eq!(headers.get_all("x-trace").iter().collect::<Vec<_>>(), ["b"], "removed, then added");
    }
}
