//! Request mirroring (Istio's `mirror` / `mirrors`, Envoy's `request_mirror_policies`): a share of requests is
//! copied to another cluster, fire-and-forget. The copy's authority gets `-shadow` appended to its host, as
//! Envoy does; its response is read and dropped; it never delays or fails the original. The copy's body is read
//! from what the original sends ([`super::replay`]), so a mirror never reads the client faster than the
//! original's upstream does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{HeaderValue, Request, Uri, Version, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::replay::Replay;
use super::{Next, RouteFuture, RouteStep, copy_request};
use crate::config::policy::Mirror;
use crate::dataplane::Runtime;
use crate::http::Body;
use crate::metrics::{Metrics, RouteEvent};
use crate::upstream::ClusterBalancer;

/// How long a copy may take at most, start to end: Envoy's default route timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy)]
pub struct MirrorLayer<'a> {
    mirrors: &'a [Mirror],
    runtime: &'a Runtime,
    metrics: &'a Arc<Metrics>,
    /// Where the client dialled, for a mirror to an original-destination cluster.
    original: Option<SocketAddr>,
}

impl<'a> MirrorLayer<'a> {
    pub fn new(
        mirrors: &'a [Mirror],
        (runtime, metrics): (&'a Runtime, &'a Arc<Metrics>),
        original: Option<SocketAddr>,
    ) -> Self {
        Self { mirrors, runtime, metrics, original }
    }
}

impl<'a> RouteStep<'a> for MirrorLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, request: Request<Body>) -> RouteFuture<'a> {
        let chosen: Vec<&Mirror> = self.mirrors.iter().filter(|m| m.share.contains(rand::random())).collect();
        if chosen.is_empty() {
            return Box::pin(next.oneshot(request));
        }
        let (mut head, body) = request.into_parts();
        let replay = head.extensions.get::<Replay>().cloned().unwrap_or_else(|| Replay::new(body));
        for mirror in chosen {
            let metrics = self.metrics.clone();
            match self.runtime.clusters.get(&mirror.cluster) {
                Some(cluster) => {
                    let copy = shadow(copy_request(&head, replay.follower()));
                    let to = (cluster.balancer.clone(), self.original);
                    tokio::spawn(send_copy(to, copy, mirror.cluster.clone(), metrics));
                }
                None => metrics.route_event(&mirror.cluster, RouteEvent::MirrorFailed),
            }
        }
        head.extensions.insert(replay.clone());
        Box::pin(next.oneshot(Request::from_parts(head, replay.leader())))
    }
}

async fn send_copy(
    (balancer, original): (Arc<ClusterBalancer>, Option<SocketAddr>),
    request: Request<Body>,
    cluster: String,
    metrics: Arc<Metrics>,
) {
    let sent = async {
        let (_, response) = balancer.call(request, &[], None, original)?;
        let mut body = response.await?.into_body();
        // Read to the end so the connection can be reused.
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok::<_, crate::BoxError>(())
    };
    let event = match tokio::time::timeout(MIRROR_TIMEOUT, sent).await {
        Ok(Ok(())) => RouteEvent::Mirror,
        Ok(Err(_)) | Err(_) => RouteEvent::MirrorFailed,
    };
    metrics.route_event(&cluster, event);
}

/// The copy's authority: `host-shadow[:port]`.
fn shadow(mut request: Request<Body>) -> Request<Body> {
    let Some(authority) = request.uri().authority() else { return request };
    let shadowed = match authority.port() {
        Some(port) => format!("{}-shadow:{port}", authority.host()),
        None => format!("{}-shadow", authority.host()),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(parsed) = Authority::try_from(shadowed.as_str()) {
        parts.authority = Some(parsed);
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    if request.version() != Version::HTTP_2
        && let Ok(host) = HeaderValue::from_str(&shadowed)
    {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_goes_to_the_shadow_host() {
        let request = |uri: &str| {
            let mut r = Request::new(Body::default());
            *r.uri_mut() = uri.parse().unwrap();
            r
        };
        let copy = shadow(request("http://reviews.shop:9080/a?b=1"));
        assert_eq!(copy.uri().to_string(), "http://reviews.shop-shadow:9080/a?b=1");
        assert_eq!(copy.headers()[header::HOST], "reviews.shop-shadow:9080");
        assert_eq!(shadow(request("http://reviews/")).uri().authority().unwrap().as_str(), "reviews-shadow");
    }
}
