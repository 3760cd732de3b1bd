//! CORS (Istio's `corsPolicy`, Envoy's CORS filter): a preflight from an allowed origin is answered by the proxy;
//! an actual request from an allowed origin is forwarded and its response gets the CORS headers. Requests from
//! other origins pass untouched (their preflights too, unless the policy says not to forward them).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;

use super::{Next, RouteFuture, RouteStep};
use crate::config::policy::Cors;
use crate::http::Body;

/// What the CORS policy makes of a request. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a CORS request, or from an origin not allowed: sent on unchanged.
    PassOn,
    /// A preflight the proxy answers: `Some(origin)` allowed (with headers), `None` refused (without).
    AnswerPreflight(Option<HeaderValue>),
    /// An actual request from this allowed origin: its response gets the CORS headers.
    Allowed(HeaderValue),
}

pub fn verdict(cors: &Cors, method: &Method, headers: &HeaderMap) -> Verdict {
    let Some(origin) = headers.get(header::ORIGIN) else { return Verdict::PassOn };
    let preflight = method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    // As Envoy: a matcher that accepts "*" allows every origin.
    let text = origin.to_str().unwrap_or_default();
    let allowed = cors.allow_origins.iter().any(|m| m.matches(Some("*")) || m.matches(Some(text)));
    match (allowed, preflight) {
        (true, true) => Verdict::AnswerPreflight(Some(origin.clone())),
        (true, false) => Verdict::Allowed(origin.clone()),
        (false, true) if !cors.forward_unmatched_preflights => Verdict::AnswerPreflight(None),
        (false, _) => Verdict::PassOn,
    }
}

/// The proxy's answer to a preflight.
pub fn preflight_answer(cors: &Cors, origin: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    let Some(origin) = origin else { return response };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &cors.allow_methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.allow_headers),
        (header::ACCESS_CONTROL_MAX_AGE, &cors.max_age),
    ] {
        if let Ok(value) = HeaderValue::from_str(value)
            && !value.is_empty()
        {
            headers.insert(name, value);
        }
    }
    response
}

fn decorate(cors: &Cors, origin: HeaderValue, headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Ok(value) = HeaderValue::from_str(&cors.expose_headers)
        && !value.is_empty()
    {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
}

#[derive(Clone, Copy)]
pub struct CorsLayer<'a> {
    cors: &'a Cors,
}

impl<'a> CorsLayer<'a> {
    pub fn new(cors: &'a Cors) -> Self {
        Self { cors }
    }
}

impl<'a> RouteStep<'a> for CorsLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, request: Request<Body>) -> RouteFuture<'a> {
        let cors = self.cors;
        match verdict(cors, request.method(), request.headers()) {
            Verdict::PassOn => Box::pin(next.oneshot(request)),
            Verdict::AnswerPreflight(origin) => Box::pin(std::future::ready(Ok(preflight_answer(cors, origin)))),
            Verdict::Allowed(origin) => {
                let call = next.oneshot(request);
                Box::pin(futures_util::TryFutureExt::map_ok(call, move |mut response| {
                    decorate(cors, origin, response.headers_mut());
                    response
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringMatcher;

    fn cors(forward: bool) -> Cors {
        Cors {
            allow_origins: vec![StringMatcher::Exact("https://example.com".into())],
            allow_methods: "POST,GET".into(),
            allow_headers: "x-custom".into(),
            expose_headers: "x-trace".into(),
            max_age: "86400".into(),
            allow_credentials: true,
            forward_unmatched_preflights: forward,
        }
    }

    fn headers(origin: &str, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        if preflight {
            h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "POST".parse().unwrap());
        }
        h
    }

    #[test]
    fn preflights_from_allowed_origins_are_answered_with_the_policy() {
        let c = cors(true);
        let v = verdict(&c, &Method::OPTIONS, &headers("https://example.com", true));
        let Verdict::AnswerPreflight(origin) = v else { panic!("{v:?}") };
        let answer = preflight_answer(&c, origin);
        assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://example.com");
        assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "POST,GET");
        assert_eq!(answer.headers()[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn other_origins_pass_or_get_a_bare_answer() {
        let evil = headers("https://evil.example", true);
        assert_eq!(verdict(&cors(true), &Method::OPTIONS, &evil), Verdict::PassOn);
        assert_eq!(verdict(&cors(false), &Method::OPTIONS, &evil), Verdict::AnswerPreflight(None));
        assert_eq!(verdict(&cors(true), &Method::GET, &HeaderMap::new()), Verdict::PassOn, "not CORS");
        let actual = verdict(&cors(true), &Method::GET, &headers("https://example.com", false));
        assert_eq!(actual, Verdict::Allowed("https://example.com".parse().unwrap()));
        let any = Cors { allow_origins: vec![StringMatcher::Exact("*".into())], ..cors(true) };
        assert!(matches!(verdict(&any, &Method::GET, &headers("https://x.y", false)), Verdict::Allowed(_)));
    }
}
