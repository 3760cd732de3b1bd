//! Answers a route gives without any upstream: redirects (Istio's `redirect`) and direct responses
//! (`directResponse`). Pure: the request's parts in, the response out.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};

use crate::config::policy::{DirectResponse, Redirect};
use crate::http::Body;
use crate::http::headers::port_of;

/// The redirect for a request to `authority` + `path_and_query` over `scheme`.
pub fn redirect(redirect: &Redirect, scheme: &str, authority: &str, path_and_query: &str) -> Response<Body> {
    let location = location(redirect, scheme, authority, path_and_query);
    let mut response = Response::new(empty());
    *response.status_mut() = redirect.status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Where a redirect sends the client: each part replaced when the redirect sets it, else the request's. The
/// request's port is kept only while the scheme is unchanged; the query is kept unless stripped or replaced.
fn location(redirect: &Redirect, scheme: &str, authority: &str, path_and_query: &str) -> String {
    let new_scheme = redirect.scheme.as_deref().unwrap_or(scheme);
    let request_port = port_of(authority);
    let request_host = match request_port {
        Some(port) => &authority[..authority.len() - port.to_string().len() - 1],
        None => authority,
    };
    let host = redirect.host.as_deref().unwrap_or(request_host);
    let port = redirect.port.or(request_port.filter(|_| new_scheme == scheme));
    let default_port = match new_scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default_port).map(|p| format!(":{p}")).unwrap_or_default();
    let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let path = redirect.path.as_deref().unwrap_or(path);
    let query = match query {
        Some(q) if !redirect.strip_query && !path.contains('?') => format!("?{q}"),
        _ => String::new(),
    };
    format!("{new_scheme}://{host}{port}{path}{query}")
}

pub fn respond(direct: &DirectResponse) -> Response<Body> {
    let mut response = Response::new(Full::new(direct.body.clone()).map_err(|never| match never {}).boxed());
    *response.status_mut() = direct.status;
    if !direct.body.is_empty() {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn redirect_to(path: Option<&str>, host: Option<&str>, scheme: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme: scheme.map(Into::into),
            host: host.map(Into::into),
            port,
            path: path.map(Into::into),
            strip_query: false,
            status: StatusCode::MOVED_PERMANENTLY,
        }
    }

    #[test]
    fn a_redirect_replaces_what_it_sets_and_keeps_the_rest() {
        let r = redirect_to(Some("/v1/bookRatings"), Some("newratings.default.svc.cluster.local"), None, None);
        assert_eq!(
            location(&r, "http", "ratings:9080", "/v1/getProductRatings?id=1"),
            "http://newratings.default.svc.cluster.local:9080/v1/bookRatings?id=1"
        );
        let https = redirect_to(None, None, Some("https"), None);
        assert_eq!(location(&https, "http", "shop:8080", "/cart"), "https://shop/cart", "the old port goes");
        let port = redirect_to(None, None, None, Some(8443));
        assert_eq!(location(&port, "http", "shop", "/"), "http://shop:8443/");
        let stripped = Redirect { strip_query: true, ..redirect_to(Some("/x"), None, None, None) };
        assert_eq!(location(&stripped, "http", "shop:80", "/a?b"), "http://shop/x");
    }

    #[test]
    fn a_redirect_answers_with_its_status_and_location() {
        let r = Redirect { status: StatusCode::TEMPORARY_REDIRECT, ..redirect_to(Some("/new"), None, None, None) };
        let response = redirect(&r, "http", "a:80", "/old");
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "http://a/new");
    }
}
